//! The master process: forks the workers, supervises them, and stops them.
//!
//! The master is single-threaded (a requirement for forking safely) and runs
//! one mio loop over a signalfd (SIGCHLD, SIGTERM, SIGINT), the control
//! channel of every worker and whatever its strategy registers (the listener,
//! for master-pass). It
//! - forks each worker with a fresh control channel; the child asks for
//!   `SIGKILL` when the master dies, sweeps every inherited descriptor its
//!   strategy does not give it, and runs the strategy's worker;
//! - prints the ready line once every worker has said it is ready;
//! - reaps workers with `wait4` (exit status, CPU time, context switches) and
//!   re-forks one that died while the server runs, saying so on stderr;
//! - on SIGTERM/SIGINT forwards SIGTERM to every worker, SIGKILLs any that is
//!   still there after [`KILL_AFTER`], and exits once all are reaped;
//! - on SIGHUP runs a rolling restart (below).
//!
//! # Rolling restart (SIGHUP to the master)
//!
//! Every worker that was running and ready when the SIGHUP arrived is
//! replaced in turn, slot 0, 1, ...: the master stops routing to it
//! ([`Strategy::on_retire`]), marks it retiring (it leaves
//! [`Master::ready_slots`]), sends it SIGTERM (the worker stops taking new
//! connections, finishes what it has and exits: see [`crate::worker`]), reaps
//! it, forks the replacement into the same slot (generation + 1), and goes on
//! to the next slot only once the replacement has said `Ready`. On stderr:
//!
//! ```text
//! lab-server: rolling restart: begins (N workers)
//! lab-server: rolling restart: slot 0 pid 123 -> pid 456
//! ...
//! lab-server: rolling restart: done (N workers replaced)
//! ```
//!
//! - A retiring worker still there [`KILL_AFTER`] after its SIGTERM is sent
//!   SIGKILL (`lab-server: rolling restart: slot S pid P did not exit within
//!   1.5s; sending SIGKILL`); it still counts as retired.
//! - A retired worker's exit is not a crash: it is not an early death, not
//!   in `replacements`, and its stats record says `"retired": true,
//!   "replaced": false`; `retirements` and `rolling_restarts` count them.
//! - A SIGHUP while a restart runs is ignored with a stderr line (`SIGHUP
//!   ignored: a rolling restart is in progress (slot S of N)`): the
//!   replacements are forked from the same master, so a second pass would
//!   bring nothing new. A SIGHUP before the ready line or while stopping is
//!   ignored too, with a line.
//! - A worker that dies (crash, kill) during a restart is replaced as usual;
//!   a slot whose worker was replaced that way after the SIGHUP is skipped
//!   (its worker is new already), with a line.
//! - SIGTERM/SIGINT during a restart abandons it (a line) and stops
//!   everything as usual.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;

use crate::channel::{Frame, FrameReader};
use crate::conn::Timeouts;
use crate::signals::{block, SignalStream};
use crate::stats::{MasterRecord, Shared, StatsReport, StatsSink, WorkerEnd, WorkerRecord};
use crate::sys::fdpass::send_with_fd;
use crate::sys::fds::close_all_except;
use crate::sys::process::{die_with_parent, exit_now, fork, own_usage, reap_one, Forked};
use crate::worker::WorkerEnv;

/// How long stopping workers get before the master SIGKILLs them. Workers
/// drain for at most [`crate::worker::DRAIN_GRACE`] (1 s), so SIGTERM to the
/// master ends everything within 2 s.
pub const KILL_AFTER: Duration = Duration::from_millis(1500);

/// Master tokens below this value belong to the strategy.
pub const STRATEGY_TOKEN_LIMIT: usize = 1_000_000;
const SIGNALS: Token = Token(STRATEGY_TOKEN_LIMIT);
const CHANNEL_BASE: usize = STRATEGY_TOKEN_LIMIT + 1;

/// A replacement that dies before it is ready this many times in a row
/// means the slot cannot run: the server gives up instead of fork-looping.
const MAX_EARLY_DEATHS: u32 = 5;

/// The server's configuration, as the command line gave it.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Strategy name (for the ready line and the stats file).
    pub strategy: String,
    /// Number of worker processes.
    pub workers: usize,
    /// Address to listen on (port 0: the kernel picks one).
    pub listen: SocketAddr,
    /// `listen()` backlog.
    pub backlog: i32,
    /// Where to write the stats file at shutdown.
    pub stats: Option<StatsSink>,
    /// Extra CPU per request, µs (test-only slowdown; 0 normally).
    pub injected_cpu_us: u64,
    /// `--header-timeout` and `--keepalive-timeout`.
    pub timeouts: Timeouts,
    /// `--max-conns`: connections open at once per worker.
    pub max_conns: usize,
}

/// A strategy: how connections reach the workers.
///
/// The supervisor does everything that is the same for all strategies; a
/// strategy supplies what differs: what the master prepares before forking,
/// which descriptors a worker keeps, the worker's intake, and for
/// master-pass, the master's own accept-and-dispatch.
pub trait Strategy {
    /// In the master, before any fork: create what must exist there (the
    /// shared listener, master-pass's listener, reuseport's port
    /// reservation). Returns the address the server serves.
    fn prepare(&mut self, config: &ServerConfig, shared: Shared) -> io::Result<SocketAddr>;

    /// Descriptors (besides its control channel) a new worker keeps.
    fn worker_fds(&self) -> Vec<RawFd>;

    /// In the forked child, after the sweep: run the worker to its end.
    fn worker_main(&mut self, env: WorkerEnv, control: UnixStream) -> io::Result<()>;

    /// Whether workers must be started one at a time, each after the previous
    /// one is ready (reuseport:cbpf-cpu, whose program indexes listeners in
    /// the order they joined the group).
    fn serial_start(&self) -> bool {
        false
    }

    /// Registers the master's own sources (tokens below [`STRATEGY_TOKEN_LIMIT`]).
    fn master_register(&mut self, _registry: &Registry) -> io::Result<()> {
        Ok(())
    }

    /// An event for one of the master's own sources.
    fn master_event(&mut self, _event: &Event, _m: &mut Master<'_>) -> io::Result<()> {
        Ok(())
    }

    /// A rolling restart is about to retire worker `slot` (it is already
    /// marked retiring, so [`Master::ready_slots`] leaves it out): stop
    /// routing connections to it. Called before the worker gets its SIGTERM.
    fn on_retire(&mut self, _slot: usize, _m: &mut Master<'_>) -> io::Result<()> {
        Ok(())
    }

    /// Worker `slot` said it is ready.
    fn on_ready(&mut self, _slot: usize, _m: &mut Master<'_>) -> io::Result<()> {
        Ok(())
    }

    /// A frame other than `Ready` from worker `slot`.
    fn on_frame(&mut self, _slot: usize, _frame: Frame, _m: &mut Master<'_>) -> io::Result<()> {
        Ok(())
    }

    /// Worker `slot`'s channel can take more data.
    fn on_writable(&mut self, _slot: usize, _m: &mut Master<'_>) -> io::Result<()> {
        Ok(())
    }

    /// Worker `slot` (process `pid`) is gone: reaped, or its channel closed.
    fn on_worker_gone(&mut self, _slot: usize, _pid: Pid, _m: &mut Master<'_>) -> io::Result<()> {
        Ok(())
    }

    /// The server is stopping: stop taking connections.
    fn stop_master(&mut self, _registry: &Registry) -> io::Result<()> {
        Ok(())
    }

    /// The master's counters for the stats file.
    fn master_record(&self) -> MasterRecord {
        MasterRecord::default()
    }
}

/// A live worker as the master sees it.
pub struct WorkerHandle {
    /// Its pid.
    pub pid: Pid,
    /// How many workers held this slot before it.
    pub generation: u64,
    /// Whether it has said `Ready`.
    pub ready: bool,
    /// Whether a rolling restart is retiring it.
    pub retiring: bool,
    channel: Option<mio::net::UnixStream>,
    frames: FrameReader,
}

/// What a strategy's master-side code may use.
pub struct Master<'a> {
    /// Every slot's live worker, if any.
    pub workers: &'a mut [Option<WorkerHandle>],
    /// The master's poll registry.
    pub registry: &'a Registry,
}

impl Master<'_> {
    /// Slots whose worker is alive, ready and not retiring, in slot order.
    pub fn ready_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.as_ref().is_some_and(|w| w.ready && !w.retiring))
            .map(|(i, _)| i)
    }

    /// Whether slot's worker is alive, ready and not retiring: it may be
    /// given connections.
    pub fn can_take(&self, slot: usize) -> bool {
        self.workers
            .get(slot)
            .and_then(Option::as_ref)
            .is_some_and(|w| w.ready && !w.retiring)
    }

    /// The pid of slot's live worker.
    pub fn pid(&self, slot: usize) -> Option<Pid> {
        self.workers.get(slot)?.as_ref().map(|w| w.pid)
    }

    /// Sends `frame` with `fd` attached to worker `slot` in one `sendmsg`.
    /// `Ok(false)`: the channel is full (try again when it is writable).
    /// An error means the worker is gone (its channel is closed).
    pub fn send_fd(&mut self, slot: usize, frame: Frame, fd: BorrowedFd<'_>) -> io::Result<bool> {
        let chan = self.workers[slot]
            .as_ref()
            .and_then(|w| w.channel.as_ref())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        match send_with_fd(chan.as_fd(), &frame.encode(), fd) {
            Ok(n) if n == crate::channel::FRAME_LEN => Ok(true),
            // Unix stream sockets take a small write whole or not at all when
            // there is room; a short write would desynchronise the frames.
            Ok(n) => Err(io::Error::other(format!(
                "short write of {n} bytes on a control channel"
            ))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The ready line printed on stdout once every worker can accept.
#[derive(Serialize)]
struct ReadyLine<'a> {
    event: &'static str,
    addr: String,
    strategy: &'a str,
    master_pid: i32,
    worker_pids: Vec<i32>,
}

/// Runs the server to its end. Returns an error (for a one-line message) if
/// it could not start or a worker slot could not be kept running.
pub fn serve(config: ServerConfig, mut strategy: Box<dyn Strategy>) -> io::Result<()> {
    // Block before forking so that no signal is lost in a starting worker.
    let handled = [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGCHLD,
        Signal::SIGHUP,
    ];
    block(&handled)?;
    let mut signals = SignalStream::open(&handled)?;
    let shared = Shared::map(config.workers)?;
    let addr = strategy.prepare(&config, shared)?;

    let mut poll = Poll::new()?;
    poll.registry().register(
        &mut SourceFd(&signals.as_raw_fd()),
        SIGNALS,
        Interest::READABLE,
    )?;
    strategy.master_register(poll.registry())?;

    let mut sup = Supervisor {
        config,
        addr,
        shared,
        master_pid: Pid::this(),
        workers: (0..0).map(|_| None).collect(),
        generations: Vec::new(),
        early_deaths: Vec::new(),
        to_start: VecDeque::new(),
        records: Vec::new(),
        announced: false,
        stopping_since: None,
        replacements: 0,
        retirements: 0,
        rolling_restarts: 0,
        rolling: None,
    };
    sup.workers = (0..sup.config.workers).map(|_| None).collect();
    sup.generations = vec![0; sup.config.workers];
    sup.early_deaths = vec![0; sup.config.workers];
    sup.to_start = (0..sup.config.workers).collect();

    let result = sup.run(&mut poll, &mut signals, strategy.as_mut());
    if result.is_err() {
        sup.kill_all_and_reap(strategy.as_mut(), &poll);
    }
    let report = StatsReport {
        schema: StatsReport::SCHEMA,
        strategy: sup.config.strategy.clone(),
        addr: addr.to_string(),
        master_pid: sup.master_pid.as_raw(),
        workers_configured: sup.config.workers,
        replacements: sup.replacements,
        retirements: sup.retirements,
        rolling_restarts: sup.rolling_restarts,
        master: MasterRecord {
            usage: own_usage().into(),
            ..strategy.master_record()
        },
        workers: std::mem::take(&mut sup.records),
    };
    if let Some(sink) = &sup.config.stats {
        sink.write(&report)
            .map_err(|e| io::Error::new(e.kind(), format!("writing the stats file: {e}")))?;
    }
    result
}

struct Supervisor {
    config: ServerConfig,
    addr: SocketAddr,
    shared: Shared,
    master_pid: Pid,
    workers: Vec<Option<WorkerHandle>>,
    generations: Vec<u64>,
    early_deaths: Vec<u32>,
    to_start: VecDeque<usize>,
    records: Vec<WorkerRecord>,
    announced: bool,
    stopping_since: Option<Instant>,
    replacements: u64,
    retirements: u64,
    rolling_restarts: u64,
    rolling: Option<Rolling>,
}

/// A rolling restart in progress.
struct Rolling {
    /// Each slot's worker when the SIGHUP came (`None`: none was ready; its
    /// slot's next worker is new anyway).
    targets: Vec<Option<Pid>>,
    /// The slot being replaced.
    slot: usize,
    phase: Phase,
    replaced: usize,
}

enum Phase {
    /// SIGTERM sent to `old` at `since`; waiting for it to exit.
    Retiring {
        old: Pid,
        since: Instant,
        killed: bool,
    },
    /// `old` is gone; waiting for its slot's replacement to be ready.
    Starting { old: Pid },
}

impl Supervisor {
    fn run(
        &mut self,
        poll: &mut Poll,
        signals: &mut SignalStream,
        strategy: &mut dyn Strategy,
    ) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut killed = false;
        self.start_pending(poll, strategy)?;
        loop {
            if self.stopping_since.is_some() && self.workers.iter().all(Option::is_none) {
                return Ok(());
            }
            let deadline = match (self.stopping_since, self.retire_deadline()) {
                (Some(since), _) => Some(since + KILL_AFTER),
                (None, d) => d,
            };
            let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token() {
                    SIGNALS => {
                        for sig in signals.drain()? {
                            match sig {
                                Signal::SIGCHLD => self.reap(poll, strategy)?,
                                Signal::SIGHUP => self.begin_rolling(poll, strategy)?,
                                _ => self.begin_stop(poll, strategy)?,
                            }
                        }
                    }
                    Token(t) if t >= CHANNEL_BASE => {
                        self.channel_event(t - CHANNEL_BASE, event, poll, strategy)?
                    }
                    _ => {
                        let mut m = Master {
                            workers: &mut self.workers,
                            registry: poll.registry(),
                        };
                        strategy.master_event(event, &mut m)?;
                    }
                }
            }
            self.check_retire_deadline();
            if let Some(since) = self.stopping_since {
                if !killed && Instant::now() >= since + KILL_AFTER {
                    killed = true;
                    for w in self.workers.iter().flatten() {
                        eprintln!("lab-server: worker {} did not stop within {KILL_AFTER:?}; sending SIGKILL", w.pid);
                        let _ = kill(w.pid, Signal::SIGKILL);
                    }
                }
            }
        }
    }

    fn begin_stop(&mut self, poll: &Poll, strategy: &mut dyn Strategy) -> io::Result<()> {
        if self.stopping_since.is_some() {
            return Ok(());
        }
        self.stopping_since = Some(Instant::now());
        self.to_start.clear();
        if let Some(r) = self.rolling.take() {
            eprintln!(
                "lab-server: rolling restart: abandoned at slot {} ({} of {} workers replaced): the server is stopping",
                r.slot,
                r.replaced,
                r.targets.len()
            );
        }
        strategy.stop_master(poll.registry())?;
        for w in self.workers.iter().flatten() {
            let _ = kill(w.pid, Signal::SIGTERM);
        }
        Ok(())
    }

    /// Forks the workers waiting to start (one at a time if the strategy asks).
    fn start_pending(&mut self, poll: &Poll, strategy: &mut dyn Strategy) -> io::Result<()> {
        while let Some(&slot) = self.to_start.front() {
            if strategy.serial_start() && self.workers.iter().flatten().any(|w| !w.ready) {
                return Ok(());
            }
            self.to_start.pop_front();
            self.spawn(slot, poll, strategy)?;
        }
        Ok(())
    }

    fn spawn(&mut self, slot: usize, poll: &Poll, strategy: &mut dyn Strategy) -> io::Result<()> {
        let (master_end, worker_end) = UnixStream::pair()?;
        // Node's channel buffers: 64 KiB (see BACKGROUND.md).
        let sock = socket2::SockRef::from(&master_end);
        sock.set_send_buffer_size(64 * 1024)?;
        sock.set_recv_buffer_size(64 * 1024)?;
        let _ = std::io::stdout().flush();
        // SAFETY: the master is single-threaded (it never spawns a thread), so
        // the child can run arbitrary code after fork.
        match unsafe { fork() }? {
            Forked::Child => {
                let code = match self.child(slot, worker_end, strategy) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!(
                            "lab-server: worker slot {slot} (pid {}): {e}",
                            std::process::id()
                        );
                        1
                    }
                };
                // _exit: run none of the master's destructors in the child.
                exit_now(code);
            }
            Forked::Parent(pid) => {
                drop(worker_end);
                master_end.set_nonblocking(true)?;
                let mut channel = mio::net::UnixStream::from_std(master_end);
                poll.registry().register(
                    &mut channel,
                    Token(CHANNEL_BASE + slot),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                self.workers[slot] = Some(WorkerHandle {
                    pid,
                    generation: self.generations[slot],
                    ready: false,
                    retiring: false,
                    channel: Some(channel),
                    frames: FrameReader::default(),
                });
                Ok(())
            }
        }
    }

    /// The child side of a fork: never returns to the master's loop.
    fn child(
        &self,
        slot: usize,
        control: UnixStream,
        strategy: &mut dyn Strategy,
    ) -> io::Result<()> {
        die_with_parent(self.master_pid)?;
        let mut keep = strategy.worker_fds();
        keep.push(control.as_raw_fd());
        close_all_except(&keep)?;
        let env = WorkerEnv {
            slot,
            pid: std::process::id(),
            counters: &self.shared.slots[slot],
            shared: self.shared,
            injected_cpu_us: self.config.injected_cpu_us,
            timeouts: self.config.timeouts,
            max_conns: self.config.max_conns,
        };
        strategy.worker_main(env, control)
    }

    fn channel_event(
        &mut self,
        slot: usize,
        event: &Event,
        poll: &Poll,
        strategy: &mut dyn Strategy,
    ) -> io::Result<()> {
        if slot >= self.workers.len() {
            return Ok(());
        }
        if event.is_readable() || event.is_read_closed() {
            let mut buf = [0u8; 4096];
            loop {
                let Some(w) = self.workers[slot].as_mut() else {
                    return Ok(());
                };
                let Some(chan) = w.channel.as_mut() else {
                    return Ok(());
                };
                match chan.read(&mut buf) {
                    Ok(0) => {
                        // The worker is exiting; SIGCHLD follows. Stop polling
                        // the channel and let the strategy re-route at once.
                        let pid = w.pid;
                        if let Some(mut c) = w.channel.take() {
                            let _ = poll.registry().deregister(&mut c);
                        }
                        let mut m = Master {
                            workers: &mut self.workers,
                            registry: poll.registry(),
                        };
                        return strategy.on_worker_gone(slot, pid, &mut m);
                    }
                    Ok(n) => {
                        let frames = match w.frames.feed(&buf[..n]) {
                            Ok(f) => f,
                            Err(e) => {
                                eprintln!("lab-server: worker {}: {e}; killing it", w.pid);
                                let _ = kill(w.pid, Signal::SIGKILL);
                                return Ok(());
                            }
                        };
                        for frame in frames {
                            self.on_frame(slot, frame, poll, strategy)?;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                        // The worker died with our data unread (a descriptor
                        // it never received): end of stream, and the
                        // strategy must hear of it, or a connection the
                        // master still holds for it would be forgotten.
                        let pid = w.pid;
                        if let Some(mut c) = w.channel.take() {
                            let _ = poll.registry().deregister(&mut c);
                        }
                        let mut m = Master {
                            workers: &mut self.workers,
                            registry: poll.registry(),
                        };
                        return strategy.on_worker_gone(slot, pid, &mut m);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if event.is_writable() {
            let mut m = Master {
                workers: &mut self.workers,
                registry: poll.registry(),
            };
            strategy.on_writable(slot, &mut m)?;
        }
        Ok(())
    }

    fn on_frame(
        &mut self,
        slot: usize,
        frame: Frame,
        poll: &Poll,
        strategy: &mut dyn Strategy,
    ) -> io::Result<()> {
        match frame {
            Frame::Ready => {
                if let Some(w) = self.workers[slot].as_mut() {
                    w.ready = true;
                }
                self.early_deaths[slot] = 0;
                let mut m = Master {
                    workers: &mut self.workers,
                    registry: poll.registry(),
                };
                strategy.on_ready(slot, &mut m)?;
                if !self.announced
                    && self
                        .workers
                        .iter()
                        .all(|w| w.as_ref().is_some_and(|w| w.ready))
                {
                    self.announce()?;
                }
                self.start_pending(poll, strategy)?;
                self.rolling_ready(slot, poll, strategy)
            }
            other => {
                let mut m = Master {
                    workers: &mut self.workers,
                    registry: poll.registry(),
                };
                strategy.on_frame(slot, other, &mut m)
            }
        }
    }

    fn announce(&mut self) -> io::Result<()> {
        self.announced = true;
        let line = ReadyLine {
            event: "ready",
            addr: self.addr.to_string(),
            strategy: &self.config.strategy,
            master_pid: self.master_pid.as_raw(),
            worker_pids: self
                .workers
                .iter()
                .flatten()
                .map(|w| w.pid.as_raw())
                .collect(),
        };
        let mut out = io::stdout().lock();
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
        out.flush()
    }

    fn reap(&mut self, poll: &Poll, strategy: &mut dyn Strategy) -> io::Result<()> {
        while let Some((pid, exit, usage)) = reap_one()? {
            let Some(slot) = self
                .workers
                .iter()
                .position(|w| w.as_ref().is_some_and(|w| w.pid == pid))
            else {
                continue;
            };
            let handle = self.workers[slot].take().expect("slot found above");
            if let Some(mut c) = handle.channel {
                let _ = poll.registry().deregister(&mut c);
                // Its channel is still open here only if the worker died
                // before we saw end-of-stream: tell the strategy now.
                let mut m = Master {
                    workers: &mut self.workers,
                    registry: poll.registry(),
                };
                strategy.on_worker_gone(slot, pid, &mut m)?;
            }
            // A dead holder of the accept mutex would block every worker
            // forever (nginx's master does the same: ngx_shmtx_force_unlock).
            let _ = self.shared.accept_mutex.0.compare_exchange(
                pid.as_raw(),
                0,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Relaxed,
            );
            let counters = &self.shared.slots[slot];
            let replace = self.stopping_since.is_none();
            let end = match (handle.retiring, replace) {
                (true, _) => WorkerEnd::Retired,
                (false, true) => WorkerEnd::Replaced,
                (false, false) => WorkerEnd::Stopped,
            };
            self.records.push(WorkerRecord::new(
                slot,
                handle.generation,
                pid.as_raw(),
                counters.snapshot(),
                usage,
                exit,
                end,
            ));
            counters.reset();
            if !replace {
                continue;
            }
            if handle.retiring {
                // Graceful retirement: not a crash, not an early death.
                self.retirements += 1;
                self.generations[slot] += 1;
                self.to_start.push_back(slot);
                if let Some(r) = self.rolling.as_mut() {
                    if matches!(r.phase, Phase::Retiring { old, .. } if old == pid) {
                        r.phase = Phase::Starting { old: pid };
                    }
                }
                self.start_pending(poll, strategy)?;
                continue;
            }
            if !handle.ready {
                self.early_deaths[slot] += 1;
                if !self.announced {
                    return Err(io::Error::other(format!(
                        "worker slot {slot} (pid {pid}) {exit} before it was ready; its message is above"
                    )));
                }
                if self.early_deaths[slot] >= MAX_EARLY_DEATHS {
                    return Err(io::Error::other(format!(
                        "worker slot {slot} died {MAX_EARLY_DEATHS} times before it was ready; giving up"
                    )));
                }
            }
            self.generations[slot] += 1;
            self.replacements += 1;
            self.to_start.push_back(slot);
            self.start_pending(poll, strategy)?;
            match self.workers[slot].as_ref() {
                Some(new) => eprintln!(
                    "lab-server: worker slot {slot} (pid {pid}) {exit}; replaced by pid {}",
                    new.pid
                ),
                None => eprintln!(
                    "lab-server: worker slot {slot} (pid {pid}) {exit}; it will be replaced"
                ),
            }
        }
        Ok(())
    }

    /// SIGHUP: start a rolling restart (or say why not).
    fn begin_rolling(&mut self, poll: &Poll, strategy: &mut dyn Strategy) -> io::Result<()> {
        if self.stopping_since.is_some() {
            eprintln!("lab-server: SIGHUP ignored: the server is stopping");
            return Ok(());
        }
        if !self.announced {
            eprintln!("lab-server: SIGHUP ignored: the workers are not all ready yet");
            return Ok(());
        }
        if let Some(r) = &self.rolling {
            eprintln!(
                "lab-server: SIGHUP ignored: a rolling restart is in progress (slot {} of {})",
                r.slot,
                r.targets.len()
            );
            return Ok(());
        }
        let targets: Vec<Option<Pid>> = self
            .workers
            .iter()
            .map(|w| w.as_ref().filter(|w| w.ready && !w.retiring).map(|w| w.pid))
            .collect();
        eprintln!(
            "lab-server: rolling restart: begins ({} workers)",
            targets.len()
        );
        self.rolling = Some(Rolling {
            targets,
            slot: 0,
            phase: Phase::Starting {
                old: Pid::from_raw(0),
            },
            replaced: 0,
        });
        self.retire_next(0, poll, strategy)
    }

    /// Retires the first slot at or after `from` whose worker is still the
    /// one the restart found; ends the restart after the last slot.
    fn retire_next(
        &mut self,
        from: usize,
        poll: &Poll,
        strategy: &mut dyn Strategy,
    ) -> io::Result<()> {
        let Some(r) = self.rolling.as_mut() else {
            return Ok(());
        };
        for slot in from..r.targets.len() {
            let Some(old) = r.targets[slot] else {
                continue;
            };
            let current = self.workers[slot].as_ref();
            match current {
                Some(w) if w.pid == old && w.ready && !w.retiring => {}
                other => {
                    eprintln!(
                        "lab-server: rolling restart: slot {slot} skipped: pid {old} died meanwhile{}",
                        match other {
                            Some(w) if w.pid != old => format!(" and pid {} replaced it", w.pid),
                            _ => String::new(),
                        }
                    );
                    continue;
                }
            }
            r.slot = slot;
            r.phase = Phase::Retiring {
                old,
                since: Instant::now(),
                killed: false,
            };
            if let Some(w) = self.workers[slot].as_mut() {
                w.retiring = true;
            }
            let mut m = Master {
                workers: &mut self.workers,
                registry: poll.registry(),
            };
            // The master stops routing to it before the worker is told.
            strategy.on_retire(slot, &mut m)?;
            let _ = kill(old, Signal::SIGTERM);
            return Ok(());
        }
        let r = self.rolling.take().expect("checked above");
        self.rolling_restarts += 1;
        eprintln!(
            "lab-server: rolling restart: done ({} workers replaced)",
            r.replaced
        );
        Ok(())
    }

    /// Worker `slot` said ready: if it is the replacement the restart waits
    /// for, say so and go on to the next slot.
    fn rolling_ready(
        &mut self,
        slot: usize,
        poll: &Poll,
        strategy: &mut dyn Strategy,
    ) -> io::Result<()> {
        let Some(r) = self.rolling.as_mut() else {
            return Ok(());
        };
        let Phase::Starting { old } = r.phase else {
            return Ok(());
        };
        if r.slot != slot {
            return Ok(());
        }
        let Some(new) = self.workers[slot].as_ref().map(|w| w.pid) else {
            return Ok(());
        };
        r.replaced += 1;
        eprintln!("lab-server: rolling restart: slot {slot} pid {old} -> pid {new}");
        self.retire_next(slot + 1, poll, strategy)
    }

    /// When the retiring worker must have exited.
    fn retire_deadline(&self) -> Option<Instant> {
        match self.rolling.as_ref()?.phase {
            Phase::Retiring {
                since,
                killed: false,
                ..
            } => Some(since + KILL_AFTER),
            _ => None,
        }
    }

    /// SIGKILLs a retiring worker that overran its drain time.
    fn check_retire_deadline(&mut self) {
        let Some(r) = self.rolling.as_mut() else {
            return;
        };
        if let Phase::Retiring {
            old,
            since,
            ref mut killed,
        } = r.phase
        {
            if !*killed && Instant::now() >= since + KILL_AFTER {
                *killed = true;
                eprintln!(
                    "lab-server: rolling restart: slot {} pid {old} did not exit within {KILL_AFTER:?}; sending SIGKILL",
                    r.slot
                );
                let _ = kill(old, Signal::SIGKILL);
            }
        }
    }

    /// After a fatal error: no worker may outlive the master.
    fn kill_all_and_reap(&mut self, strategy: &mut dyn Strategy, poll: &Poll) {
        self.stopping_since.get_or_insert_with(Instant::now);
        self.to_start.clear();
        for w in self.workers.iter().flatten() {
            let _ = kill(w.pid, Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.workers.iter().any(Option::is_some) && Instant::now() < deadline {
            if self.reap(poll, strategy).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
