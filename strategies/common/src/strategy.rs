//! The two extension points: how connections reach the workers.
//!
//! Strategies differ only in how a connection reaches a worker; everything
//! else (forking, supervising, stopping, serving a request) is the same code
//! for all of them, so that a difference in the measurements comes from the
//! sharing. A strategy supplies two things:
//! - a [`Strategy`], in the master: what exists before fork, which
//!   descriptors a worker keeps, which [`Intake`] a worker runs, and (for
//!   master-pass) the master's own accept-and-dispatch through [`Master`];
//! - an [`Intake`], in each worker: how new connections come into the
//!   worker's event loop (`worker::run`), and how it stops taking
//!   them without losing one.
//!
//! # Adding a strategy, file by file
//!
//! Say `shared:foo`, a new way for the workers to share the inherited
//! listener (a new family, `foo:*`, gets its own crate instead: copy
//! `strategies/reuseport`, the smallest, and add it to the workspace's
//! `members` and `[workspace.dependencies]` in `Cargo.toml` and to
//! `strategies/lab-server/Cargo.toml`).
//! 1. `strategies/shared/src/foo.rs`: the worker side, a type implementing
//!    [`Intake`]. Its module comment says what the mechanism is, what it does
//!    at `--max-conns` ([`Intake::set_paused`]) and how it stops
//!    ([`Intake::stop`], [`Intake::quiesced`]). A listener the worker just
//!    polls needs no new intake: `lab_common::intake::ListenerIntake` takes the
//!    epoll mode (see `strategies/shared/src/epoll.rs`, a few lines).
//! 2. `strategies/shared/src/lib.rs`: `pub mod foo;`, a `Variant::Foo`, and
//!    its arm in `worker_main`, which runs `worker::run(env, intake,
//!    control)`. The master side ([`Strategy`]) is the shared listener's
//!    already; a new family implements it in its crate's `lib.rs` (or a
//!    `master.rs` when the master does more than prepare, as master-pass's).
//! 3. `strategies/lab-server/src/lib.rs`: one row in `STRATEGIES` (name, one
//!    line on what it is, how to build it). `--strategy`, its `--help` line
//!    and the unknown-name error all read that table.
//! 4. `strategies/lab-server/tests/util/mod.rs`: the name in
//!    `ALL_STRATEGIES` (a test checks it against `STRATEGIES`), so every
//!    cross-strategy test runs it; what is particular to it goes in
//!    `strategies/lab-server/tests/mechanism.rs`.
//! 5. A system call the standard library and `nix` do not wrap safely goes
//!    in `strategies/common/src/sys/`, the only place with `unsafe`.
//! 6. `harness/src/model/names.rs`: the name in `STRATEGIES`, to measure it (the
//!    harness runs lab-server as a process and keeps its own list).
//! 7. `ARCHITECTURE.md` and the README's strategy list: one line each.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use mio::event::Event;
use mio::{Interest, Poll, Registry, Token};
use nix::unistd::Pid;

use crate::channel::{Frame, FrameReader, FRAME_LEN};
pub use crate::config::{ServerConfig, WorkerEnv};
use crate::stats::{MasterRecord, Shared};
use crate::sys::fdpass::send_with_fds;

/// Master tokens below this value belong to the strategy.
pub const STRATEGY_TOKEN_LIMIT: usize = 1_000_000;

/// The master's token of worker slot `i`'s control channel is
/// `CHANNEL_BASE + i` (the supervisor registers them; [`Master`] changes
/// what a channel is watched for).
pub(crate) const CHANNEL_BASE: usize = STRATEGY_TOKEN_LIMIT + 1;

/// Worker tokens at or above this value belong to the intake; below are
/// connections.
pub const INTAKE_TOKEN_BASE: usize = usize::MAX / 2;

/// A strategy: how connections reach the workers.
///
/// The supervisor does everything that is the same for all strategies; a
/// strategy supplies what differs: what the master prepares before forking,
/// which descriptors a worker keeps, the worker's intake, and for
/// master-pass, the master's own accept-and-dispatch.
pub trait Strategy {
    /// In the master, before any fork: create what must exist there (the
    /// shared listener, master-pass's listener, reuseport's listeners, one
    /// per slot, or the worker-owned variants' port reservation). Returns the
    /// address the server serves.
    fn prepare(&mut self, config: &ServerConfig, shared: Shared) -> io::Result<SocketAddr>;

    /// Descriptors (besides its control channel) a new worker keeps.
    fn worker_fds(&self) -> Vec<RawFd>;

    /// Descriptors only the worker of `slot` keeps, besides [`Strategy::worker_fds`]
    /// (reuseport: its own slot's listener, which the master holds for every
    /// slot).
    fn worker_slot_fds(&self, _slot: usize) -> Vec<RawFd> {
        Vec::new()
    }

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
    /// The master's end of its control channel (`None` once it closed).
    pub(crate) channel: Option<mio::net::UnixStream>,
    /// Frames read from it so far.
    pub(crate) frames: FrameReader,
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

    /// Whether the master hears when worker `slot`'s channel becomes
    /// writable ([`Strategy::on_writable`]); it does from the fork on. A unix
    /// socket becomes writable again each time the worker reads from it, so
    /// a strategy that sends often and rarely finds the channel full turns
    /// this off while it has nothing waiting, and on when a send finds the
    /// channel full: otherwise every read by the worker wakes the master.
    pub fn watch_writable(&mut self, slot: usize, on: bool) -> io::Result<()> {
        let Some(chan) = self.workers[slot].as_mut().and_then(|w| w.channel.as_mut()) else {
            return Ok(()); // gone: nothing to watch
        };
        let interest = if on {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        self.registry
            .reregister(chan, Token(CHANNEL_BASE + slot), interest)
    }

    /// Sends `frame` with `fd` attached to worker `slot` in one `sendmsg`.
    /// `Ok(false)`: the channel is full (try again when it is writable).
    /// An error means the worker is gone (its channel is closed).
    pub fn send_fd(&mut self, slot: usize, frame: Frame, fd: BorrowedFd<'_>) -> io::Result<bool> {
        self.send_fds(slot, frame, &[fd])
    }

    /// Sends `frame` with every descriptor of `fds` attached to worker `slot`
    /// in one `sendmsg` (all or none); as [`Master::send_fd`] otherwise.
    pub fn send_fds(
        &mut self,
        slot: usize,
        frame: Frame,
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<bool> {
        let chan = self.workers[slot]
            .as_ref()
            .and_then(|w| w.channel.as_ref())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        match send_with_fds(chan.as_fd(), &frame.encode(), fds) {
            Ok(n) if n == FRAME_LEN => Ok(true),
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

/// A connection handed over by the intake.
pub struct Accepted {
    /// The connected socket, non-blocking and close-on-exec.
    pub fd: OwnedFd,
    /// For master-pass: the master's sequence number.
    pub tag: Option<u32>,
}

/// How a strategy brings new connections into a worker.
pub trait Intake {
    /// Registers the intake's sources in `poll` with tokens at or above
    /// [`INTAKE_TOKEN_BASE`]. Gets the control channel; returns it unless the
    /// intake uses it itself (master-pass).
    fn register(&mut self, poll: &Poll, control: UnixStream) -> io::Result<Option<UnixStream>>;

    /// Called before each `epoll_wait`; may cap its timeout.
    fn before_poll(&mut self, _poll: &Poll) -> io::Result<Option<Duration>> {
        Ok(None)
    }

    /// An event for one of the intake's tokens; new connections go to `out`.
    fn on_event(&mut self, event: &Event, poll: &Poll, out: &mut Vec<Accepted>) -> io::Result<()>;

    /// All events of one wakeup have been handled.
    fn after_events(&mut self, _poll: &Poll) -> io::Result<()> {
        Ok(())
    }

    /// A connection that came with `tag` was closed.
    fn on_closed(&mut self, _tag: u32, _poll: &Poll) -> io::Result<()> {
        Ok(())
    }

    /// A connection this worker took was closed, whichever way: a count
    /// (`reuseport:ebpf-least-loaded` adds it to its slot's `finished`).
    fn connection_closed(&mut self) {}

    /// The worker reached (`true`) or left (`false`) its `--max-conns` cap:
    /// stop taking new connections until it is called with `false`. Not
    /// called once the worker is stopping.
    fn set_paused(&mut self, _poll: &Poll, _paused: bool) -> io::Result<()> {
        Ok(())
    }

    /// The worker is shutting down: stop taking new connections. A
    /// connection the intake has already taken (or must still take so as not
    /// to lose it) goes to `out` and is served.
    fn stop(&mut self, _poll: &Poll, _out: &mut Vec<Accepted>) -> io::Result<()> {
        Ok(())
    }

    /// After [`Intake::stop`]: whether nothing more can arrive, so that the
    /// worker may exit once its connections are done.
    fn quiesced(&self) -> bool {
        true
    }
}
