//! One generator thread: a mio event loop over its share of the connections.
//!
//! Closed loop (no `--rate`): every connection sends its next request as soon
//! as the previous response is in (wrk): in the write phase that follows the
//! batch of events the response came in. Open loop (`--rate`): requests fall
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

mod conn;

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use nix::time::{clock_gettime, ClockId};

use crate::config::{Mode, RunConfig};
use crate::errors::ErrorKind;
use crate::response::Response;
use crate::rng::Rng;
use crate::schedule::Schedule;
use crate::tally::{Answer, Window};
pub use crate::tally::{SecondTally, SliceTally, ThreadResult, WorkerTally};
use conn::{ConnectStatus, InFlight, ReadOutcome, Slot, State};

/// A connection whose connect was refused is retried after this long, so that
/// a server that is down is not hammered in a tight loop.
const RETRY_AFTER: Duration = Duration::from_millis(10);
/// How often in-flight requests are checked against `--timeout`.
const TIMEOUT_TICK: Duration = Duration::from_millis(10);
/// Closed loop: how long the generator polls without sleeping, when no event
/// is ready, before it blocks in `epoll_wait`. A generator that keeps up
/// with its server would otherwise sleep between responses, and the server
/// would pay for waking it in its `write` (a cross-CPU wakeup: on a VM an
/// IPI and an exit); see `loadgen/BENCHMARKS.md`.
const BUSY_POLL: Duration = Duration::from_micros(50);
/// How long a `close`-mode connection waits for the server's FIN after a
/// whole response before closing itself.
const EOF_WAIT: Duration = Duration::from_secs(1);

/// A thread whose every connect failed for this long stops early: the target
/// does not accept connections, and running out the duration would tell
/// nothing more.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(1);

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
    window: Window,
    poll: Poll,
    slots: Vec<Slot>,
    /// Keep-alive slots connected and without a request (closed loop: until
    /// the next write phase).
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
        Ok(Generator {
            cfg,
            clock,
            window: Window {
                start: clock.measure_start,
                end: clock.end,
                slice_ns: (cfg.timeline_interval.as_nanos() as u64).max(1),
            },
            poll: Poll::new()?,
            slots: (0..n).map(|_| Slot::new()).collect(),
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
        let mut end_seen = false;
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
            if ended && !end_seen {
                end_seen = true;
                self.result.starved_connections = self.starved(now);
            }
            self.dispatch(now);
            if ended && self.queue.is_empty() {
                // The run is over and nothing is left to send: a keep-alive
                // connection with no request on it is closed now rather than
                // held while the last answers come in, as a load test's
                // clients go away at its end. A server that serves one
                // connection per process (classic pre-fork) would otherwise
                // keep a worker on it until its keep-alive timeout, and the
                // clients queued behind would time out for that alone.
                while let Some(i) = self.idle.pop() {
                    self.close_slot(i);
                }
            }
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
            // Closed loop with requests out, the next event is at most a
            // server's turn away: look for it a little before sleeping.
            let busy_poll = self.closed_loop() && !ended && self.in_flight > 0;
            if !self.poll_events(&mut events, wake, busy_poll)? {
                continue;
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
        for due in self.queue.drain(..) {
            self.result.unfinished(&self.window, due, false);
        }
        for slot in &self.slots {
            if let Some(r) = slot.req {
                self.result.unfinished(&self.window, r.due, true);
            }
        }
        Ok(())
    }

    /// Connections whose request, at the end of the measured window, had
    /// waited more than half of it since it was sent (or since its
    /// connection began to open) without a byte of response: clients the
    /// server left in its accept queue, or otherwise ignored, while it
    /// served others. A connection with no request on it (open loop, idle)
    /// waits for nothing and does not count.
    fn starved(&self, now: Instant) -> u64 {
        let half = self
            .clock
            .end
            .saturating_duration_since(self.clock.measure_start)
            / 2;
        self.slots
            .iter()
            .filter_map(|s| {
                let req = s.req.as_ref()?;
                if req.first_byte.is_some() {
                    return None;
                }
                req.sent.or(s.connecting_since)
            })
            .filter(|since| now.saturating_duration_since(*since) > half)
            .count() as u64
    }

    /// Waits for events until `wake`; with `busy_poll`, first polls without
    /// sleeping for up to [`BUSY_POLL`]. False if a signal interrupted it.
    fn poll_events(
        &mut self,
        events: &mut Events,
        wake: Instant,
        busy_poll: bool,
    ) -> io::Result<bool> {
        if busy_poll {
            let until = (Instant::now() + BUSY_POLL).min(wake);
            loop {
                match self.poll.poll(events, Some(Duration::ZERO)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(false),
                    Err(e) => return Err(e),
                }
                if !events.is_empty() {
                    return Ok(true);
                }
                if Instant::now() >= until {
                    break;
                }
            }
        }
        let timeout = wake.saturating_duration_since(Instant::now());
        match self.poll.poll(events, Some(timeout)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(e),
        }
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
            // Keep-alive: the write phase. Every connection whose response
            // (or connect) came in the last batch of events sends its next
            // request now, back to back, after the whole batch was read
            // (see BENCHMARKS.md); each send is stamped with its own clock
            // read, so that its latency starts when it was written. Closed
            // loop, a request is due when it is sent: none is sent once the
            // measured window is over (it would be served and counted
            // nowhere).
            while let Some(i) = self.idle.pop() {
                let now = Instant::now();
                if now >= self.clock.end {
                    self.idle.push(i);
                    break;
                }
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
            // Once the run is over, a connection is opened only for a
            // request still waiting to be sent.
            let over = now >= self.clock.end && self.queue.is_empty();
            while let Some(i) = if over { None } else { self.pop_free(now) } {
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
        self.window.contains(due)
    }

    /// Opens a connection on slot `i`; with `due`, it carries that request.
    fn connect(&mut self, i: usize, due: Option<Instant>, now: Instant) {
        self.slots[i].reset();
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
                self.result.sent(&self.window, due, now);
            }
        }
        match self.slots[i].open(self.cfg.target, self.poll.registry(), Token(i), now) {
            Ok(()) => self.result.connections_opened += 1,
            Err(e) => self.fail(i, ErrorKind::of_connect(&e), now),
        }
    }

    fn pick_path(&mut self) -> usize {
        self.cfg.mix.pick(&mut self.rng)
    }

    /// Sends a request due at `due` on idle keep-alive slot `i`.
    fn send(&mut self, i: usize, due: Instant, now: Instant) {
        let path = self.pick_path();
        let measured = self.in_window(due);
        if measured {
            self.result.sent(&self.window, due, now);
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
        let Some(req) = self.slots[i].req else { return };
        if let Err(e) = self.slots[i].write_request(&self.requests[req.path]) {
            self.fail(i, ErrorKind::of_io(&e), now);
        }
    }

    fn on_event(&mut self, i: usize, writable: bool, readable: bool, error: bool) {
        if i >= self.slots.len() || !self.slots[i].is_open() {
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
                    match self.slots[i].connect_status() {
                        ConnectStatus::Pending => {}
                        ConnectStatus::Connected => self.connected(i, now),
                        ConnectStatus::Failed(e) => {
                            self.fail(i, ErrorKind::of_connect(&e), now);
                        }
                    }
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
                // The server closed an idle keep-alive connection (or sent
                // something unasked): reopen it; no request was lost.
                if readable && self.slots[i].idle_readable() {
                    self.idle.retain(|&s| s != i);
                    self.close_slot(i);
                }
            }
            State::AwaitEof => {
                if readable && self.slots[i].drain_to_eof() {
                    self.close_slot(i);
                }
            }
            State::Free => {}
        }
    }

    /// Slot `i`'s connect completed: send its request, or go idle.
    fn connected(&mut self, i: usize, now: Instant) {
        let slot = &mut self.slots[i];
        self.result.connected(slot.connecting_since.take(), now);
        slot.opened_at = Some(now);
        if let Some(req) = slot.req.as_mut() {
            req.sent = Some(now);
            slot.state = State::Busy;
            self.write_request(i, now);
        } else {
            // Closed loop: it sends its next request in the next write
            // phase (see `dispatch`); open loop: when one falls due.
            slot.state = State::Idle;
            self.idle.push(i);
        }
    }

    fn read_response(&mut self, i: usize, now: Instant) {
        match self.slots[i].read_response(&mut self.chunk, now) {
            ReadOutcome::Pending => {}
            ReadOutcome::Response(resp) => self.complete(i, resp, now),
            ReadOutcome::ResponseAtEof(resp) => {
                self.complete(i, resp, now);
                self.close_slot(i);
            }
            ReadOutcome::Closed => self.fail(i, ErrorKind::Closed, now),
            ReadOutcome::Malformed => self.fail(i, ErrorKind::Malformed, now),
            ReadOutcome::Failed(e) => self.fail(i, ErrorKind::of_io(&e), now),
        }
    }

    /// A whole response arrived for slot `i`'s request.
    fn complete(&mut self, i: usize, resp: Response, now: Instant) {
        let slot = &mut self.slots[i];
        let Some(req) = slot.req.take() else { return };
        self.in_flight -= 1;
        let answer = Answer {
            due: req.due,
            sent: req.sent,
            first_byte: req.first_byte,
            done: now,
            ok: (200..300).contains(&resp.status),
            worker: resp.worker,
            ttfb: self.cfg.mode == Mode::Close,
        };
        self.result
            .answered(&self.window, &answer, req.measured, &mut slot.credited);
        slot.served += 1;
        let age = slot.opened_at.map_or(Duration::ZERO, |t| now - t);
        if self.cfg.recycle.done(slot.served, age) && !resp.close {
            // Recycled (--requests-per-conn, --conn-lifetime): we close it,
            // as a client or proxy does, and a new connection takes the
            // slot in the next dispatch.
            self.close_slot(i);
        } else if resp.close || self.cfg.mode == Mode::Close {
            slot.state = State::AwaitEof;
            slot.eof_deadline = Some(now + EOF_WAIT);
            if slot.drain_to_eof() {
                self.close_slot(i);
            }
        } else {
            // Closed loop: it sends its next request in the next write
            // phase (see `dispatch`); open loop: when one falls due.
            slot.state = State::Idle;
            self.idle.push(i);
        }
    }

    /// Slot `i`'s request (if any) failed with `kind`; the connection closes.
    fn fail(&mut self, i: usize, kind: ErrorKind, now: Instant) {
        if let Some(req) = self.slots[i].req.take() {
            self.in_flight -= 1;
            self.result.failed(&self.window, req.due, kind, now);
        } else if kind == ErrorKind::Refused || kind == ErrorKind::ConnectOther {
            self.result.idle_connect_failed(&self.window, kind, now);
        }
        let connect_failed = matches!(kind, ErrorKind::Refused | ErrorKind::ConnectOther);
        self.close_slot(i);
        if connect_failed {
            self.slots[i].retry_at = Some(now + RETRY_AFTER);
        }
    }

    /// Closes slot `i`'s socket; the slot becomes free.
    fn close_slot(&mut self, i: usize) {
        if self.slots[i].close() {
            self.in_flight -= 1;
        }
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
