//! The master process: forks the workers, supervises them, and stops them.
//!
//! The master is single-threaded (a requirement for forking safely) and runs
//! one mio loop over a signalfd (SIGCHLD, SIGTERM, SIGINT), the control
//! channel of every worker and whatever its strategy registers (the listener,
//! for master-pass). It
//! - forks each worker with a fresh control channel ([`spawn`]); the child
//!   asks for `SIGKILL` when the master dies, sweeps every inherited
//!   descriptor its strategy does not give it, and runs the strategy's
//!   worker;
//! - prints the ready line once every worker has said it is ready;
//! - reaps workers with `wait4` (exit status, CPU time, context switches) and
//!   re-forks one that died while the server runs, saying so on stderr;
//! - on SIGTERM/SIGINT forwards SIGTERM to every worker, SIGKILLs any that is
//!   still there after [`KILL_AFTER`], and exits once all are reaped;
//! - on SIGHUP runs a rolling restart ([`rolling`]).

pub mod rolling;
pub mod spawn;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;

use crate::channel::Frame;
use crate::config::ServerConfig;
use crate::signals::{block, SignalStream};
use crate::stats::{MasterRecord, Shared, StatsReport, WorkerEnd, WorkerRecord};
use crate::strategy::{Master, Strategy, WorkerHandle, CHANNEL_BASE, STRATEGY_TOKEN_LIMIT};
use crate::sys::process::{own_usage, reap_one};

use rolling::{Phase, Rolling};

/// How long stopping workers get before the master SIGKILLs them. Workers
/// drain for at most [`crate::worker::DRAIN_GRACE`] (1 s), so SIGTERM to the
/// master ends everything within 2 s.
pub const KILL_AFTER: Duration = Duration::from_millis(1500);

const SIGNALS: Token = Token(STRATEGY_TOKEN_LIMIT);

/// A replacement that dies before it is ready this many times in a row
/// means the slot cannot run: the server gives up instead of fork-looping.
const MAX_EARLY_DEATHS: u32 = 5;

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
