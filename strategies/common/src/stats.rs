//! Per-worker counters, shared with the master, and the stats file.
//!
//! Each worker increments its own slot in a shared mapping (one writer per
//! slot, relaxed atomics: a few nanoseconds per event). The master reads the
//! slots when a worker exits, adds the CPU time and context switches `wait4`
//! reports for it, and at shutdown writes everything as one JSON document
//! (`--stats-out`), replaced workers included.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use crate::sys::process::{Exit, Usage};
use crate::sys::shm::{map_shared_zeroed, shared_struct};

/// The most workers one server may run (slots in the shared mapping).
pub const MAX_WORKERS: usize = 1024;

shared_struct! {
    /// One worker's live counters. Cache-line aligned so that workers on
    /// different CPUs never write the same line.
    #[repr(C, align(64))]
    #[derive(Default)]
    pub struct WorkerCounters {
        /// Connections this worker accepted (or, for master-pass, received).
        pub connections: AtomicU64,
        /// 200 responses fully written.
        pub requests: AtomicU64,
        /// Requests answered with an error status (400, 404) instead of served.
        pub bad_requests: AtomicU64,
        /// Times the listener woke this worker (readiness events for the listener).
        pub listener_wakeups: AtomicU64,
        /// `accept()` calls that found the queue empty (`EAGAIN`): another worker
        /// took the connection this wakeup was for.
        pub accept_eagain: AtomicU64,
        /// Connections open right now.
        pub open_connections: AtomicU64,
        /// Messages from the master whose descriptors were cut off (`MSG_CTRUNC`).
        pub fd_truncations: AtomicU64,
        /// Requests timed out by `--header-timeout` (answered 408), and fresh
        /// connections closed by it because nothing arrived.
        pub header_timeouts: AtomicU64,
        /// Idle keep-alive connections closed by `--keepalive-timeout`.
        pub idle_timeouts: AtomicU64,
        /// Times the worker reached `--max-conns` and stopped taking connections.
        pub max_conns_pauses: AtomicU64,
        /// `shared:epoll-exclusive` (nginx's `ngx_reorder_accept_events`):
        /// times the worker took the listener out of its epoll and added it
        /// back, to the end of the kernel's queue of exclusive waiters.
        pub listener_reorders: AtomicU64,
        /// nginx's `ngx_accept_disabled > 0` (the worker has more than 7/8 of
        /// `--max-conns` open): `shared:accept-mutex`, loop turns in which the
        /// worker did not try the lock; `shared:epoll-exclusive`, accepts
        /// after which it reordered for that reason.
        pub accept_disabled_turns: AtomicU64,
        /// Connections this worker has finished (closed), bumped before the
        /// socket is closed, so a client that sees the close sees the count.
        /// `master-pass:pipelined`'s master reads it to learn a worker's
        /// outstanding connections without a message per close.
        pub closed: AtomicU64,
    }
}

shared_struct! {
    /// One worker slot's counters in the load map of
    /// `reuseport:ebpf-least-loaded` (an mmapable BPF array the master maps
    /// before fork): its eBPF program reads both and adds to `assigned`, the
    /// slot's worker adds to `finished`. One cache line per slot.
    #[repr(C, align(64))]
    pub struct LoadSlot {
        /// Connections the program gave this slot's listener, plus the
        /// master's corrections (see the strategy's drift correction).
        pub assigned: AtomicU64,
        /// Connections this slot's workers have closed.
        pub finished: AtomicU64,
    }
}

shared_struct! {
    /// The word behind the cross-process accept mutex: the pid of the holder, or 0.
    #[repr(C, align(64))]
    pub struct LockWord(pub AtomicI32);
}

/// Everything the master shares with its workers.
#[derive(Clone, Copy)]
pub struct Shared {
    /// One slot per worker index.
    pub slots: &'static [WorkerCounters],
    /// The accept mutex (used by `shared:accept-mutex` only).
    pub accept_mutex: &'static LockWord,
}

impl Shared {
    /// Maps the shared memory for `workers` workers. Call before the first fork.
    pub fn map(workers: usize) -> io::Result<Shared> {
        Ok(Shared {
            slots: map_shared_zeroed(workers)?,
            accept_mutex: &map_shared_zeroed(1)?[0],
        })
    }
}

/// A copy of one slot's counters at a point in time.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// See [`WorkerCounters::connections`].
    pub connections: u64,
    /// See [`WorkerCounters::requests`].
    pub requests: u64,
    /// See [`WorkerCounters::bad_requests`].
    pub bad_requests: u64,
    /// See [`WorkerCounters::listener_wakeups`].
    pub listener_wakeups: u64,
    /// See [`WorkerCounters::accept_eagain`].
    pub accept_eagain: u64,
    /// See [`WorkerCounters::fd_truncations`].
    pub fd_truncations: u64,
    /// See [`WorkerCounters::header_timeouts`].
    pub header_timeouts: u64,
    /// See [`WorkerCounters::idle_timeouts`].
    pub idle_timeouts: u64,
    /// See [`WorkerCounters::max_conns_pauses`].
    pub max_conns_pauses: u64,
    /// See [`WorkerCounters::listener_reorders`].
    pub listener_reorders: u64,
    /// See [`WorkerCounters::accept_disabled_turns`].
    pub accept_disabled_turns: u64,
    /// See [`WorkerCounters::closed`].
    pub closed: u64,
}

impl WorkerCounters {
    /// Reads every counter.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            connections: self.connections.load(Relaxed),
            requests: self.requests.load(Relaxed),
            bad_requests: self.bad_requests.load(Relaxed),
            listener_wakeups: self.listener_wakeups.load(Relaxed),
            accept_eagain: self.accept_eagain.load(Relaxed),
            fd_truncations: self.fd_truncations.load(Relaxed),
            header_timeouts: self.header_timeouts.load(Relaxed),
            idle_timeouts: self.idle_timeouts.load(Relaxed),
            max_conns_pauses: self.max_conns_pauses.load(Relaxed),
            listener_reorders: self.listener_reorders.load(Relaxed),
            accept_disabled_turns: self.accept_disabled_turns.load(Relaxed),
            closed: self.closed.load(Relaxed),
        }
    }

    /// Zeroes the slot for the next worker that takes it.
    pub fn reset(&self) {
        for c in [
            &self.connections,
            &self.requests,
            &self.bad_requests,
            &self.listener_wakeups,
            &self.accept_eagain,
            &self.open_connections,
            &self.fd_truncations,
            &self.header_timeouts,
            &self.idle_timeouts,
            &self.max_conns_pauses,
            &self.listener_reorders,
            &self.accept_disabled_turns,
            &self.closed,
        ] {
            c.store(0, Relaxed);
        }
    }

    /// Adds one to `counter` (a field of this slot).
    #[inline]
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// One worker process's life, as written to the stats file.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerRecord {
    /// Worker index (0..workers); a replacement takes the slot of the dead one.
    pub slot: usize,
    /// 0 for the first process in a slot, +1 for each replacement.
    pub generation: u64,
    /// Process id.
    pub pid: i32,
    /// Counters at exit.
    #[serde(flatten)]
    pub counters: CounterSnapshot,
    /// CPU time and context switches, from `wait4`.
    #[serde(flatten)]
    pub usage: UsageRecord,
    /// How the process ended, e.g. "exited with code 0", "was killed by SIGKILL".
    pub exit: String,
    /// Whether the master replaced it because it died while the server was
    /// running (a crash or a kill): false for a worker retired by a rolling
    /// restart, although that one is replaced too.
    pub replaced: bool,
    /// Whether it was retired by a rolling restart (SIGHUP to the master):
    /// asked to stop gracefully and replaced once it exited. Its `exit` says
    /// "was killed by SIGKILL" if it overran the drain time.
    pub retired: bool,
}

/// [`Usage`] with serde field names that carry their unit.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct UsageRecord {
    /// User CPU time, µs.
    pub cpu_user_us: u64,
    /// System CPU time, µs.
    pub cpu_system_us: u64,
    /// Voluntary context switches.
    pub voluntary_ctxt_switches: u64,
    /// Involuntary context switches.
    pub involuntary_ctxt_switches: u64,
}

impl From<Usage> for UsageRecord {
    fn from(u: Usage) -> Self {
        UsageRecord {
            cpu_user_us: u.cpu_user_us,
            cpu_system_us: u.cpu_system_us,
            voluntary_ctxt_switches: u.voluntary_ctxt_switches,
            involuntary_ctxt_switches: u.involuntary_ctxt_switches,
        }
    }
}

impl WorkerRecord {
    /// Builds the record of a worker that has just been reaped.
    pub fn new(
        slot: usize,
        generation: u64,
        pid: i32,
        counters: CounterSnapshot,
        usage: Usage,
        exit: Exit,
        end: WorkerEnd,
    ) -> Self {
        WorkerRecord {
            slot,
            generation,
            pid,
            counters,
            usage: usage.into(),
            exit: exit.to_string(),
            replaced: end == WorkerEnd::Replaced,
            retired: end == WorkerEnd::Retired,
        }
    }
}

/// Why a worker's life ended, as the master saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerEnd {
    /// It died while the server ran (crash, kill) and was replaced.
    Replaced,
    /// A rolling restart retired it gracefully (and replaced it).
    Retired,
    /// The server stopped (or gave up) with it.
    Stopped,
}

/// The stats file (`--stats-out`).
#[derive(Debug, Serialize)]
pub struct StatsReport {
    /// Always [`StatsReport::SCHEMA`].
    pub schema: &'static str,
    /// Strategy name as given to `--strategy`.
    pub strategy: String,
    /// The address the server listened on.
    pub addr: String,
    /// The master's pid.
    pub master_pid: i32,
    /// Workers configured (`--workers`).
    pub workers_configured: usize,
    /// Worker processes the master had to replace because they died (crash
    /// replacements; retirements by a rolling restart are not counted here).
    pub replacements: u64,
    /// Workers retired gracefully by rolling restarts (SIGHUP), each replaced
    /// by a new process in its slot.
    pub retirements: u64,
    /// Rolling restarts that went through every slot.
    pub rolling_restarts: u64,
    /// The master's own figures.
    pub master: MasterRecord,
    /// Every worker process that ran, in the order they were reaped.
    pub workers: Vec<WorkerRecord>,
}

impl StatsReport {
    /// Version tag of this document's layout.
    pub const SCHEMA: &'static str = "prefork-lab.server-stats.v1";
}

/// The master's figures in the stats file.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MasterRecord {
    /// CPU time and context switches of the master itself.
    #[serde(flatten)]
    pub usage: UsageRecord,
    /// Connections the master accepted (master-pass only; 0 otherwise).
    pub connections_accepted: u64,
    /// Descriptors the master passed to workers (master-pass only).
    pub connections_passed: u64,
    /// Connections sent again to another worker because the first one refused
    /// or died before acknowledging (master-pass only).
    pub connections_rerouted: u64,
    /// Connections the master dropped because no worker could take them.
    pub connections_dropped: u64,
    /// Times the master's listener was reported readable (master-pass only):
    /// `connections_accepted / listener_wakeups` is the accepts per wakeup
    /// (1 for a master that accepts one connection per loop iteration, as
    /// Node's libuv >= 1.45 does; more for one that accepts until `EAGAIN`).
    pub listener_wakeups: u64,
    /// The master's `accept()` calls that found the queue empty (`EAGAIN`;
    /// master-pass only): one per wakeup for a master that accepts until
    /// the queue is empty, 0 for a level-triggered one-per-wakeup master.
    pub accept_eagain: u64,
    /// Descriptors the master had passed to a worker that died before
    /// acknowledging them, closed by the master instead of being re-routed
    /// (master-pass, Node's behaviour: those clients are lost); for
    /// `master-pass:pipelined`, descriptors sent to a worker that died before
    /// it received them (sent minus its `connections`), closed by the kernel
    /// with its channel.
    pub connections_lost_in_flight: u64,
    /// `sendmsg` calls that carried descriptors (master-pass):
    /// `connections_passed / fd_sendmsgs` is the descriptors per call (1 for
    /// every policy but `master-pass:pipelined`, which batches).
    pub fd_sendmsgs: u64,
    /// The most descriptors one `sendmsg` carried (master-pass).
    pub fd_sendmsg_largest: u64,
    /// `master-pass:pipelined`: times the master stopped accepting because
    /// every ready worker was at its credit window (the connections waited in
    /// the kernel's accept queue until a worker finished some).
    pub credit_stalls: u64,
    /// `reuseport:ebpf-least-loaded` only: the load map and its corrections.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub least_loaded: Option<LeastLoadedRecord>,
}

/// What `reuseport:ebpf-least-loaded`'s master reports in the stats file.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LeastLoadedRecord {
    /// Drift corrections applied, all slots together.
    pub corrections: u64,
    /// One entry per slot, in slot order, read at shutdown.
    pub slots: Vec<LeastLoadedSlot>,
}

/// One slot of [`LeastLoadedRecord`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct LeastLoadedSlot {
    /// Slot index.
    pub slot: usize,
    /// The socket cookie the sockarray holds for this slot (a lookup from
    /// user space returns it), `None` if the slot is empty.
    pub listener_cookie: Option<u64>,
    /// [`LoadSlot::assigned`].
    pub assigned: u64,
    /// [`LoadSlot::finished`].
    pub finished: u64,
    /// Drift corrections applied to this slot.
    pub corrections: u64,
    /// The sum of the corrections' differences (what the program's own
    /// count was off by).
    pub corrected_by: i64,
}

/// Where the stats file goes; checked at startup so that a bad path fails
/// before any worker is forked, and written at shutdown by the rules of the
/// `outfile` crate (a file whole or not at all, a device or FIFO in place, a
/// symlink followed).
#[derive(Debug, Clone)]
pub struct StatsSink {
    out: outfile::Output,
}

impl StatsSink {
    /// Checks that `path` can be written without creating it. `-` is
    /// refused: the master's standard output carries only the ready line.
    pub fn check(path: &Path) -> Result<StatsSink, String> {
        if path == Path::new("-") {
            return Err("--stats-out -: standard output carries only the ready line; give a file path (or /dev/stderr)".into());
        }
        let out = outfile::Output::check("--stats-out", path, outfile::Dash::FileName)?;
        Ok(StatsSink { out })
    }

    /// Writes the report.
    pub fn write(&self, report: &StatsReport) -> io::Result<()> {
        self.out.write_json(report).map_err(io::Error::other)
    }
}
