//! One generator thread: a mio event loop over its share of the connections.
//!
//! Closed loop (no `--rate`): every connection sends its next request as soon
//! as the previous response is in (wrk). Open loop (`--rate`): requests fall
//! due on the thread's [`Schedule`]; a due request goes to the first idle
//! connection (or, in `close` mode, opens one); when none is free it waits in
//! a queue, and its latency keeps growing from its due time, so a stall is
//! charged in full (wrk2). Service time is measured from the actual send.
//!
//! Requests due (closed loop: sent) in the warm-up are served but not
//! measured; requests due in the measured window are, including their errors.
//!
//! The timeline keys every measured request by its due time (closed loop:
//! its send time): a slice says what became of the requests that arrived in
//! it, however late they completed or failed.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use nix::time::{clock_gettime, ClockId};

use crate::config::{Mode, RunConfig};
use crate::errors::{ErrorCounts, ErrorKind};
use crate::histo::{new_histogram, record, MAX_US};
use crate::response::ResponseReader;
use crate::rng::Rng;
use crate::schedule::Schedule;

/// A connection whose connect was refused is retried after this long, so that
/// a server that is down is not hammered in a tight loop.
const RETRY_AFTER: Duration = Duration::from_millis(10);
/// How often in-flight requests are checked against `--timeout`.
const TIMEOUT_TICK: Duration = Duration::from_millis(10);
/// How long a `close`-mode connection waits for the server's FIN after a
/// whole response before closing itself.
const EOF_WAIT: Duration = Duration::from_secs(1);

/// Requests and connections one worker (by `X-Worker`) served.
#[derive(Clone, Debug)]
pub struct WorkerTally {
    /// Measured responses from this worker.
    pub requests: u64,
    /// Connections on which this worker sent a measured response.
    pub connections: u64,
    /// Latency of its successful measured responses, µs.
    pub latency: Histogram<u64>,
}

impl Default for WorkerTally {
    fn default() -> WorkerTally {
        WorkerTally {
            requests: 0,
            connections: 0,
            latency: new_histogram(),
        }
    }
}

/// One slice of the timeline: the measured requests due in it (closed loop:
/// sent in it), and what became of them.
#[derive(Clone, Debug, Default)]
pub struct SliceTally {
    /// Requests due in the slice.
    pub due: u64,
    /// Of those, successful.
    pub ok: u64,
    /// Of those, failed, by kind; plus `idle_connect_errors`.
    pub errors: ErrorCounts,
    /// Keep-alive (re)connects without a request that failed in the slice
    /// (counted in `errors` too, keyed by when they failed).
    pub idle_connect_errors: u64,
    /// Latency of the successful ones, µs; created on the first.
    pub latency: Option<Histogram<u64>>,
}

impl SliceTally {
    /// Records one successful request's latency.
    fn record_ok(&mut self, latency_us: u64) {
        self.ok += 1;
        let h = self.latency.get_or_insert_with(small_histogram);
        // Not `record`: a saturating record clamps to the current bounds
        // instead of growing them.
        h.record(latency_us.clamp(1, MAX_US))
            .expect("an auto-resizing histogram takes any value within the lab's bounds");
    }
}

/// An empty histogram with the lab's precision that grows as values come
/// (a slice's histogram stays a few KiB unless its latencies are large);
/// values are clamped to the lab's bounds, and [`crate::result`] adds it into
/// one with the lab's bounds before it is written.
pub(crate) fn small_histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 2, 3).expect("valid bounds");
    h.auto(true);
    h
}

/// One second of the measured window.
#[derive(Clone, Debug)]
pub struct SecondTally {
    /// Latency of the successful requests that completed in this second.
    pub latency: Histogram<u64>,
    /// Successful requests completed.
    pub ok: u64,
    /// Errors in this second.
    pub errors: u64,
}

/// What one thread measured.
#[derive(Debug)]
pub struct ThreadResult {
    /// Latency from the due time, µs.
    pub latency: Histogram<u64>,
    /// Service time from the actual send, µs.
    pub service: Histogram<u64>,
    /// Connect time (every connection), µs.
    pub connect: Histogram<u64>,
    /// Time to first byte from the send (`close` mode), µs.
    pub ttfb: Histogram<u64>,
    /// Successful measured requests.
    pub ok: u64,
    /// Measured requests sent.
    pub sent: u64,
    /// Measured errors.
    pub errors: ErrorCounts,
    /// Successful warm-up requests (discarded).
    pub warmup_ok: u64,
    /// Warm-up errors (discarded).
    pub warmup_errors: u64,
    /// Per `X-Worker` tallies.
    pub workers: HashMap<u32, WorkerTally>,
    /// Measured responses without an `X-Worker` header.
    pub unattributed: u64,
    /// Per second of the measured window.
    pub series: Vec<SecondTally>,
    /// The timeline: one entry per `--timeline-interval` of the measured window.
    pub timeline: Vec<SliceTally>,
    /// Measured requests that were due but never sent: the run ended first
    /// (each is also an `unfinished` error).
    pub unsent: u64,
    /// Keep-alive (re)connects without a request that failed in the measured
    /// window (each is also a measured error).
    pub idle_connect_errors: u64,
    /// Largest delay between a request's due time and its send, µs.
    pub max_lag_us: u64,
    /// TCP connections opened.
    pub connections_opened: u64,
    /// This thread's CPU time over its wall time (0..1).
    pub cpu_busy: f64,
    /// The thread stopped early: no connection succeeded within
    /// [`GIVE_UP_AFTER`] and some were refused or failed.
    pub gave_up: bool,
    /// Connects that succeeded.
    pub connects_ok: u64,
}

/// A thread whose every connect failed for this long stops early: the target
/// does not accept connections, and running out the duration would tell
/// nothing more.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(1);

impl ThreadResult {
    fn new(slices: usize) -> ThreadResult {
        ThreadResult {
            latency: new_histogram(),
            service: new_histogram(),
            connect: new_histogram(),
            ttfb: new_histogram(),
            ok: 0,
            sent: 0,
            errors: ErrorCounts::default(),
            warmup_ok: 0,
            warmup_errors: 0,
            workers: HashMap::new(),
            unattributed: 0,
            series: Vec::new(),
            timeline: vec![SliceTally::default(); slices],
            unsent: 0,
            idle_connect_errors: 0,
            max_lag_us: 0,
            connections_opened: 0,
            cpu_busy: 0.0,
            gave_up: false,
            connects_ok: 0,
        }
    }

    fn second(&mut self, index: usize) -> &mut SecondTally {
        while self.series.len() <= index {
            self.series.push(SecondTally {
                latency: new_histogram(),
                ok: 0,
                errors: 0,
            });
        }
        &mut self.series[index]
    }
}

/// The clock of a run, shared by all threads.
#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    /// Start of the warm-up (due time 0).
    pub t0: Instant,
    /// Start of the measured window.
    pub measure_start: Instant,
    /// End of the measured window: nothing is due after it.
    pub end: Instant,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    due: Instant,
    sent: Option<Instant>,
    first_byte: Option<Instant>,
    deadline: Instant,
    path: usize,
    written: usize,
    measured: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No socket.
    Free,
    /// connect() in progress.
    Connecting,
    /// Connected, no request (keep-alive).
    Idle,
    /// A request in flight.
    Busy,
    /// `close` mode: response complete, waiting for the server's FIN.
    AwaitEof,
}

struct Slot {
    stream: Option<TcpStream>,
    state: State,
    req: Option<InFlight>,
    rbuf: Vec<u8>,
    reader: ResponseReader,
    /// Workers already credited with this connection.
    credited: Option<u32>,
    retry_at: Option<Instant>,
    eof_deadline: Option<Instant>,
    /// When the current connect() started.
    connecting_since: Option<Instant>,
}

/// Runs one thread's share of the load.
pub fn run_thread(cfg: &RunConfig, thread: usize, clock: RunClock) -> io::Result<ThreadResult> {
    let cpu_start = thread_cpu();
    let wall_start = Instant::now();
    let mut g = Generator::new(cfg, thread, clock)?;
    g.run()?;
    let wall = wall_start.elapsed().as_secs_f64();
    g.result.cpu_busy = if wall > 0.0 {
        (thread_cpu() - cpu_start).as_secs_f64() / wall
    } else {
        0.0
    };
    Ok(g.result)
}

fn thread_cpu() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

struct Generator<'a> {
    cfg: &'a RunConfig,
    clock: RunClock,
    poll: Poll,
    slots: Vec<Slot>,
    /// Keep-alive slots connected and without a request.
    idle: Vec<usize>,
    /// Slots without a socket, ready to connect (close mode, or to reconnect).
    free: Vec<usize>,
    /// Open loop: requests that are due and wait for a connection.
    queue: VecDeque<Instant>,
    schedule: Option<Schedule>,
    requests: Vec<Vec<u8>>,
    rng: Rng,
    result: ThreadResult,
    in_flight: usize,
    /// One read buffer for all connections (never zeroed per read).
    chunk: Box<[u8]>,
    /// Width of a timeline slice, ns (> 0).
    slice_ns: u64,
}

impl<'a> Generator<'a> {
    fn new(cfg: &'a RunConfig, thread: usize, clock: RunClock) -> io::Result<Self> {
        let n = cfg.connections_of(thread);
        let host = cfg.target.to_string();
        let conn_header = if cfg.mode == Mode::Close {
            "Connection: close\r\n"
        } else {
            ""
        };
        let requests = cfg
            .mix
            .paths()
            .map(|p| format!("GET {p} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: prefork-lab-loadgen\r\n{conn_header}\r\n").into_bytes())
            .collect();
        let slots = (0..n)
            .map(|_| Slot {
                stream: None,
                state: State::Free,
                req: None,
                rbuf: Vec::with_capacity(4096),
                reader: ResponseReader::default(),
                credited: None,
                retry_at: None,
                eof_deadline: None,
                connecting_since: None,
            })
            .collect();
        Ok(Generator {
            cfg,
            clock,
            poll: Poll::new()?,
            slots,
            idle: Vec::with_capacity(n),
            free: (0..n).rev().collect(),
            queue: VecDeque::new(),
            schedule: cfg
                .rate_plan()
                .map(|plan| Schedule::new(cfg.arrivals, plan, cfg.threads, thread, cfg.seed)),
            requests,
            rng: Rng::new(
                cfg.seed
                    .wrapping_add(thread as u64)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ),
            result: ThreadResult::new(cfg.timeline_slices()),
            in_flight: 0,
            chunk: vec![0u8; 64 * 1024].into_boxed_slice(),
            slice_ns: (cfg.timeline_interval.as_nanos() as u64).max(1),
        })
    }

    fn closed_loop(&self) -> bool {
        self.schedule.is_none()
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TIMEOUT_TICK;
        // Keep-alive: open every connection up front (closed loop starts its
        // first request as each one connects; open loop keeps them idle).
        if self.cfg.mode == Mode::Keepalive {
            let now = Instant::now();
            while let Some(i) = self.free.pop() {
                self.connect(i, None, now);
            }
        }
        loop {
            let now = Instant::now();
            if self.result.connects_ok == 0
                && now >= self.clock.t0 + GIVE_UP_AFTER
                && self.result.errors.total() + self.result.warmup_errors > 0
            {
                self.result.gave_up = true;
                break;
            }
            // Take what fell due before deciding that the run is over, so that
            // a request due just before the end is never silently skipped.
            self.take_due(now);
            let ended = now >= self.clock.end;
            if ended
                && (self.in_flight == 0 && self.queue.is_empty()
                    || now >= self.clock.end + self.cfg.timeout)
            {
                break;
            }
            self.dispatch(now);
            if now >= next_tick {
                self.check_deadlines(now);
                next_tick = now + TIMEOUT_TICK;
            }
            let mut wake = next_tick.min(if ended {
                self.clock.end + self.cfg.timeout
            } else {
                self.clock.end
            });
            if let Some(s) = &self.schedule {
                if !ended {
                    wake = wake.min(self.clock.t0 + s.peek());
                }
            }
            let timeout = wake.saturating_duration_since(Instant::now());
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                let i = event.token().0;
                let error = event.is_error();
                self.on_event(
                    i,
                    event.is_writable(),
                    event.is_readable() || event.is_read_closed() || error,
                    error,
                );
            }
        }
        // Whatever is still queued or in flight was due in the run and never
        // answered: say so instead of dropping it silently.
        let queued: Vec<Instant> = self.queue.drain(..).collect();
        for due in queued {
            if self.in_window(due) {
                self.result.errors.count(ErrorKind::Unfinished);
                self.result.unsent += 1;
                let slice = self.slice(due);
                slice.due += 1;
                slice.errors.count(ErrorKind::Unfinished);
            }
        }
        for i in 0..self.slots.len() {
            if let Some(r) = self.slots[i].req {
                if r.measured {
                    self.result.errors.count(ErrorKind::Unfinished);
                    self.slice(r.due).errors.count(ErrorKind::Unfinished);
                }
            }
        }
        Ok(())
    }

    /// Open loop: move requests that are due into the queue.
    fn take_due(&mut self, now: Instant) {
        let Some(s) = self.schedule.as_mut() else {
            return;
        };
        loop {
            let due = self.clock.t0 + s.peek();
            if due > now || due >= self.clock.end {
                return;
            }
            s.take();
            self.queue.push_back(due);
        }
    }

    /// Hands work to connections.
    fn dispatch(&mut self, now: Instant) {
        if self.closed_loop() {
            if now >= self.clock.end {
                return;
            }
            // Keep-alive: idle connections send at once (normally they do so
            // on completion; this catches the ones that just connected).
            while let Some(i) = self.idle.pop() {
                self.send(i, now, now);
            }
            if self.cfg.mode == Mode::Close {
                while let Some(i) = self.pop_free(now) {
                    self.connect(i, Some(now), now);
                }
            } else {
                while let Some(i) = self.pop_free(now) {
                    self.connect(i, None, now);
                }
            }
            return;
        }
        // Open loop.
        if self.cfg.mode == Mode::Keepalive {
            while let Some(i) = self.pop_free(now) {
                self.connect(i, None, now);
            }
            while !self.queue.is_empty() {
                let Some(i) = self.idle.pop() else { break };
                let due = self.queue.pop_front().expect("non-empty");
                self.send(i, due, now);
            }
        } else {
            while !self.queue.is_empty() {
                let Some(i) = self.pop_free(now) else { break };
                let due = self.queue.pop_front().expect("non-empty");
                self.connect(i, Some(due), now);
            }
        }
    }

    fn pop_free(&mut self, now: Instant) -> Option<usize> {
        let pos = self
            .free
            .iter()
            .rposition(|&i| self.slots[i].retry_at.is_none_or(|t| t <= now))?;
        Some(self.free.swap_remove(pos))
    }

    fn in_window(&self, due: Instant) -> bool {
        due >= self.clock.measure_start && due < self.clock.end
    }

    /// The timeline slice of a measured request due at `due` (or of an event
    /// at that time in the measured window).
    fn slice(&mut self, due: Instant) -> &mut SliceTally {
        // `RunConfig::slice_of` in u64 nanoseconds (a run is at most days).
        let since = due.saturating_duration_since(self.clock.measure_start);
        let i = (since.as_nanos() as u64 / self.slice_ns) as usize;
        let last = self.result.timeline.len().saturating_sub(1);
        &mut self.result.timeline[i.min(last)]
    }

    /// A measured request due at `due` was sent (or its connect started).
    fn count_sent(&mut self, due: Instant, now: Instant) {
        self.result.sent += 1;
        self.slice(due).due += 1;
        self.note_lag(due, now);
    }

    /// Opens a connection on slot `i`; with `due`, it carries that request.
    fn connect(&mut self, i: usize, due: Option<Instant>, now: Instant) {
        let slot = &mut self.slots[i];
        slot.retry_at = None;
        slot.credited = None;
        slot.rbuf.clear();
        slot.reader.reset();
        if let Some(due) = due {
            let path = self.pick_path();
            let measured = self.in_window(due);
            self.slots[i].req = Some(InFlight {
                due,
                sent: None,
                first_byte: None,
                deadline: now + self.cfg.timeout,
                path,
                written: 0,
                measured,
            });
            self.in_flight += 1;
            if measured {
                self.count_sent(due, now);
            }
        }
        match TcpStream::connect(self.cfg.target) {
            Ok(mut stream) => {
                if let Err(e) = self.poll.registry().register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    self.fail(i, ErrorKind::of_connect(&e), now);
                    return;
                }
                self.result.connections_opened += 1;
                let slot = &mut self.slots[i];
                slot.stream = Some(stream);
                slot.state = State::Connecting;
                slot.connecting_since = Some(now);
            }
            Err(e) => self.fail(i, ErrorKind::of_connect(&e), now),
        }
    }

    fn pick_path(&mut self) -> usize {
        self.cfg.mix.pick(&mut self.rng)
    }

    fn note_lag(&mut self, due: Instant, now: Instant) {
        let lag = now.saturating_duration_since(due).as_micros() as u64;
        self.result.max_lag_us = self.result.max_lag_us.max(lag);
    }

    /// Sends a request due at `due` on idle keep-alive slot `i`.
    fn send(&mut self, i: usize, due: Instant, now: Instant) {
        let path = self.pick_path();
        let measured = self.in_window(due);
        if measured {
            self.count_sent(due, now);
        }
        self.slots[i].req = Some(InFlight {
            due,
            sent: Some(now),
            first_byte: None,
            deadline: now + self.cfg.timeout,
            path,
            written: 0,
            measured,
        });
        self.slots[i].state = State::Busy;
        self.in_flight += 1;
        self.write_request(i, now);
    }

    fn write_request(&mut self, i: usize, now: Instant) {
        let slot = &mut self.slots[i];
        let (Some(stream), Some(req)) = (slot.stream.as_mut(), slot.req.as_mut()) else {
            return;
        };
        let bytes = &self.requests[req.path];
        while req.written < bytes.len() {
            match stream.write(&bytes[req.written..]) {
                Ok(n) => req.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(i, ErrorKind::of_io(&e), now);
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, i: usize, writable: bool, readable: bool, error: bool) {
        if i >= self.slots.len() || self.slots[i].stream.is_none() {
            return;
        }
        let now = Instant::now();
        match self.slots[i].state {
            State::Connecting => {
                let carries_request = self.slots[i].req.is_some();
                if writable && !error && carries_request {
                    // Close mode's fast path: writable means connected; the
                    // request write itself reports a failed connect
                    // (ECONNREFUSED), so skip getsockopt + getpeername, two
                    // syscalls per request.
                    self.connected(i, now);
                } else if writable || readable {
                    self.finish_connect(i, now);
                }
            }
            State::Busy => {
                if writable {
                    self.write_request(i, now);
                }
                if readable && self.slots[i].state == State::Busy {
                    self.read_response(i, now);
                }
            }
            State::Idle => {
                if readable {
                    // The server closed an idle keep-alive connection (or sent
                    // something unasked): reopen it; no request was lost.
                    let mut buf = [0u8; 512];
                    let stream = self.slots[i].stream.as_mut().expect("checked");
                    match stream.read(&mut buf) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        _ => {
                            self.idle.retain(|&s| s != i);
                            self.close_slot(i);
                        }
                    }
                }
            }
            State::AwaitEof => {
                if readable {
                    self.read_eof(i, now);
                }
            }
            State::Free => {}
        }
    }

    fn finish_connect(&mut self, i: usize, now: Instant) {
        let stream = self.slots[i]
            .stream
            .as_mut()
            .expect("connecting slot has a stream");
        let status = match stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match stream.peer_addr() {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                Err(e) => Err(e),
            },
        };
        match status {
            Ok(false) => {} // not yet
            Err(e) => {
                let kind = ErrorKind::of_connect(&e);
                self.fail(i, kind, now);
            }
            Ok(true) => self.connected(i, now),
        }
    }

    /// Slot `i`'s connect completed: send its request, or go idle.
    fn connected(&mut self, i: usize, now: Instant) {
        self.result.connects_ok += 1;
        let slot = &mut self.slots[i];
        if let Some(start) = slot.connecting_since.take() {
            record(
                &mut self.result.connect,
                now.saturating_duration_since(start).as_micros() as u64,
            );
        }
        if let Some(req) = slot.req.as_mut() {
            req.sent = Some(now);
            slot.state = State::Busy;
            self.write_request(i, now);
        } else {
            slot.state = State::Idle;
            if self.closed_loop() && now < self.clock.end {
                self.send(i, now, now);
            } else {
                self.idle.push(i);
            }
        }
    }

    fn read_response(&mut self, i: usize, now: Instant) {
        loop {
            let slot = &mut self.slots[i];
            let chunk = &mut self.chunk;
            let stream = slot.stream.as_mut().expect("busy slot has a stream");
            match stream.read(chunk) {
                Ok(0) => {
                    let outcome = slot.reader.finish_at_eof();
                    match outcome {
                        Ok(Some(resp)) => {
                            self.complete(i, resp, now);
                            self.close_slot(i);
                        }
                        Ok(None) => self.fail(i, ErrorKind::Closed, now),
                        Err(_) => self.fail(i, ErrorKind::Closed, now),
                    }
                    return;
                }
                Ok(n) => {
                    if let Some(req) = slot.req.as_mut() {
                        req.first_byte.get_or_insert(now);
                    }
                    slot.rbuf.extend_from_slice(&chunk[..n]);
                    match slot.reader.feed(&mut slot.rbuf) {
                        Ok(Some(resp)) => {
                            self.complete(i, resp, now);
                            // Edge-triggered, but Linux reports every arrival,
                            // and nothing more is expected on this connection
                            // until the next request: no extra read to EAGAIN.
                            return;
                        }
                        Ok(None) => {}
                        Err(_) => {
                            self.fail(i, ErrorKind::Malformed, now);
                            return;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(i, ErrorKind::of_io(&e), now);
                    return;
                }
            }
        }
    }

    fn read_eof(&mut self, i: usize, _now: Instant) {
        let mut chunk = [0u8; 4096];
        let stream = self.slots[i]
            .stream
            .as_mut()
            .expect("awaiting slot has a stream");
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.close_slot(i);
    }

    /// A whole response arrived for slot `i`'s request.
    fn complete(&mut self, i: usize, resp: crate::response::Response, now: Instant) {
        let slot = &mut self.slots[i];
        let Some(req) = slot.req.take() else { return };
        self.in_flight -= 1;
        let ok = (200..300).contains(&resp.status);
        if req.measured {
            let second = now
                .saturating_duration_since(self.clock.measure_start)
                .as_secs() as usize;
            let mut ok_latency = None;
            if ok {
                let latency = now.saturating_duration_since(req.due).as_micros() as u64;
                ok_latency = Some(latency);
                record(&mut self.result.latency, latency);
                if let Some(sent) = req.sent {
                    record(
                        &mut self.result.service,
                        now.saturating_duration_since(sent).as_micros() as u64,
                    );
                    if self.cfg.mode == Mode::Close {
                        if let Some(fb) = req.first_byte {
                            record(
                                &mut self.result.ttfb,
                                fb.saturating_duration_since(sent).as_micros() as u64,
                            );
                        }
                    }
                }
                self.result.ok += 1;
                let sec = self.result.second(second);
                sec.ok += 1;
                record(&mut sec.latency, latency);
                self.slice(req.due).record_ok(latency);
            } else {
                self.result.errors.count(ErrorKind::Non2xx);
                self.result.second(second).errors += 1;
                self.slice(req.due).errors.count(ErrorKind::Non2xx);
            }
            match resp.worker {
                Some(w) => {
                    let slot = &mut self.slots[i];
                    let tally = self.result.workers.entry(w).or_default();
                    tally.requests += 1;
                    if let Some(latency) = ok_latency {
                        record(&mut tally.latency, latency);
                    }
                    if slot.credited != Some(w) {
                        slot.credited = Some(w);
                        tally.connections += 1;
                    }
                }
                None => self.result.unattributed += 1,
            }
        } else if ok {
            self.result.warmup_ok += 1;
        } else {
            self.result.warmup_errors += 1;
        }
        let slot = &mut self.slots[i];
        if resp.close || self.cfg.mode == Mode::Close {
            slot.state = State::AwaitEof;
            slot.eof_deadline = Some(now + EOF_WAIT);
            self.read_eof(i, now);
        } else {
            slot.state = State::Idle;
            if self.closed_loop() && now < self.clock.end {
                self.send(i, now, now);
            } else {
                self.idle.push(i);
            }
        }
    }

    /// Slot `i`'s request (if any) failed with `kind`; the connection closes.
    fn fail(&mut self, i: usize, kind: ErrorKind, now: Instant) {
        let slot = &mut self.slots[i];
        if let Some(req) = slot.req.take() {
            self.in_flight -= 1;
            if req.measured {
                self.result.errors.count(kind);
                let second = now
                    .saturating_duration_since(self.clock.measure_start)
                    .as_secs() as usize;
                self.result.second(second).errors += 1;
                self.slice(req.due).errors.count(kind);
            } else {
                self.result.warmup_errors += 1;
            }
        } else if kind == ErrorKind::Refused || kind == ErrorKind::ConnectOther {
            // A keep-alive (re)connect failed with no request on it: count it
            // as a measured error if we are measuring, so that a server that
            // refuses everything cannot look like an idle one.
            if self.in_window(now) {
                self.result.errors.count(kind);
                self.result.idle_connect_errors += 1;
                let slice = self.slice(now);
                slice.errors.count(kind);
                slice.idle_connect_errors += 1;
            } else {
                self.result.warmup_errors += 1;
            }
        }
        let connect_failed = matches!(kind, ErrorKind::Refused | ErrorKind::ConnectOther);
        self.close_slot(i);
        if connect_failed {
            self.slots[i].retry_at = Some(now + RETRY_AFTER);
        }
    }

    /// Closes slot `i`'s socket; the slot becomes free.
    fn close_slot(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        // Closing the only descriptor of a socket removes it from epoll; an
        // explicit EPOLL_CTL_DEL would be one more syscall per connection.
        drop(slot.stream.take());
        if slot.req.take().is_some() {
            self.in_flight -= 1;
        }
        slot.state = State::Free;
        slot.eof_deadline = None;
        slot.rbuf.clear();
        slot.reader.reset();
        self.free.push(i);
    }

    fn check_deadlines(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            match slot.state {
                State::Busy | State::Connecting => {
                    if let Some(req) = slot.req {
                        if now >= req.deadline {
                            self.fail(i, ErrorKind::Timeout, now);
                        }
                    } else if slot.state == State::Connecting
                        && slot
                            .connecting_since
                            .is_some_and(|start| now >= start + self.cfg.timeout)
                    {
                        self.fail(i, ErrorKind::Timeout, now);
                    }
                }
                State::AwaitEof => {
                    if slot.eof_deadline.is_some_and(|d| now >= d) {
                        self.close_slot(i);
                    }
                }
                State::Idle | State::Free => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_histogram_grows_to_hold_large_latencies_exactly() {
        let mut s = SliceTally::default();
        for us in [3, 900, 1_000_000, 3_000_000_000, u64::MAX] {
            s.record_ok(us);
        }
        let h = s.latency.as_ref().unwrap();
        assert_eq!((s.ok, h.len()), (5, 5));
        assert_eq!(h.max(), h.highest_equivalent(MAX_US));
        assert!(
            h.value_at_quantile(0.6) >= 999_000,
            "{}",
            h.value_at_quantile(0.6)
        );
        let mut lab = new_histogram();
        lab.add(h).unwrap();
        assert_eq!(lab.len(), 5);
        assert_eq!(lab.value_at_quantile(0.5), h.value_at_quantile(0.5));
    }
}
