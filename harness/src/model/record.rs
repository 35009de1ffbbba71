//! One run's raw data, written to `runs/NNNN-....json` as soon as the run
//! ends. Everything the analysis needs is in these files (plus
//! `session.json`), so `harness report DIR` can redo the analysis.

use serde::{Deserialize, Serialize};

use crate::model::faults::FaultRecord;
use crate::model::kernel::{Counters, ProcUsage, QueueSamples};
use crate::model::remote::PartJson;

/// Version tag of a run file.
pub const RUN_SCHEMA: &str = "prefork-lab.harness.run.v2";

/// The run files of earlier versions, still read: v1 has no
/// `steadiness`, `noise` or `usage_window`.
pub const RUN_SCHEMAS_READ: &[&str] = &[RUN_SCHEMA, "prefork-lab.harness.run.v1"];

/// One run: one target, one workload, one worker count, one round.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    /// Always [`RUN_SCHEMA`].
    pub schema: String,
    /// Position in the session's run order, from 1.
    pub index: usize,
    /// Strategy or reference server.
    pub target: String,
    /// Workload name.
    pub workload: String,
    /// Worker processes.
    pub workers: usize,
    /// Round, from 1.
    pub round: usize,
    /// Open loop: the rate offered, req/s.
    pub offered_rps: Option<f64>,
    /// Start, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// Wall time of the whole run (start to teardown), s.
    pub wall_s: f64,
    /// CPUs given to the server and the generator.
    pub pinning: Pinning,
    /// loadgen's JSON result.
    pub loadgen: loadgen::result::LoadResult,
    /// What the server side showed.
    pub server: ServerSide,
    /// What the kernel showed.
    pub kernel: KernelSide,
    /// A fault scenario: what was done to the server, and when.
    #[serde(default)]
    pub fault: Option<FaultRecord>,
    /// Load from other hosts, or a server on another host: who took part
    /// and each generator's share (`loadgen` above is their exact merge).
    #[serde(default)]
    pub remote: Option<RemoteRun>,
    /// How long the run was warmed up, and whether its measured window was
    /// steady (absent in v1 run files).
    #[serde(default)]
    pub steadiness: Option<Steadiness>,
    /// What else used the machine's CPUs during the measured window.
    #[serde(default)]
    pub noise: Option<Noise>,
}

impl RunRecord {
    /// Requests the server answered while its processes' usage
    /// (`server.processes`) was measured: the measured loadgen process's
    /// (its warm-up is 0 since run files v2; v1's had one).
    pub fn requests_in_usage_window(&self) -> u64 {
        let l = &self.loadgen;
        l.ok + l.errors.total() + l.warmup.ok + l.warmup.errors
    }

    /// Whether the run counts for winners and findings: steady, or from a
    /// version of the harness that did not test it (v1).
    pub fn steady(&self) -> bool {
        self.steadiness.as_ref().is_none_or(|s| s.steady)
    }
}

/// How a run reached its steady state before it was measured, and whether
/// the measured window itself was steady.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Steadiness {
    /// Load time spent warming up (the probes), s.
    pub warmup_s: f64,
    /// The most warm-up this target was allowed, s.
    pub warmup_cap_s: f64,
    /// Width of each warm-up slice, s.
    pub slice_s: f64,
    /// The warm-up, slice by slice, in order (several loadgen probes, each
    /// on fresh connections, back to back).
    pub warmup_slices: Vec<ProbeSlice>,
    /// Requests the warm-up probes got answered, per worker (`X-Worker`):
    /// with the measured window's tallies, everything the server served.
    #[serde(default)]
    pub warmup_requests_by_worker: Vec<WorkerRequests>,
    /// The warm-up ended because its last slices agreed (false: at the cap).
    pub warmed: bool,
    /// The measured window's trend.
    pub trend: Trend,
    /// Warmed and without a trend: the run counts for winners and findings.
    pub steady: bool,
    /// Why not, in words; `None` when steady.
    pub why_not: Option<String>,
}

/// Requests one worker answered.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkerRequests {
    /// Its pid (`X-Worker`).
    pub worker: u32,
    /// Requests.
    pub requests: u64,
}

/// One slice of a warm-up probe.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ProbeSlice {
    /// Successful requests per second.
    pub throughput_rps: f64,
    /// 99th percentile latency, µs (0 if none).
    pub p99_us: u64,
    /// Successful requests in it.
    pub ok: u64,
    /// Failed requests in it.
    pub errors: u64,
}

/// The measured window's trend: a least-squares line through the
/// per-slice throughput, and the tail of each half.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Trend {
    /// Slices of the timeline used.
    pub slices: usize,
    /// Change of throughput over the window along the fitted line, as a
    /// share of the mean (+0.2: 20% more at the end than at the start).
    pub throughput_change: f64,
    /// 99% interval of that change.
    pub throughput_change_ci: [f64; 2],
    /// p99 of the first half of the window, µs.
    pub first_half_p99_us: u64,
    /// p99 of the second half, µs.
    pub second_half_p99_us: u64,
    /// Kendall's rank correlation of the slices' p99 with time (-1: falling
    /// all along, +1: rising all along; 0 for bursts at random moments),
    /// over the slices with enough requests for a p99.
    #[serde(default)]
    pub p99_tau: f64,
    /// Its z score (|z| > 1.96: a monotone trend, not chance).
    #[serde(default)]
    pub p99_tau_z: f64,
}

/// What else used the machine's CPUs during a run's measured window: CPU
/// time stolen by the hypervisor and the CPU time of processes that are
/// not part of the run (neither the server, the load generator, the
/// harness nor a kernel thread).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Noise {
    /// Length of the window, s.
    pub window_s: f64,
    /// Steal time over all CPU time of the machine, percent (`/proc/stat`).
    pub steal_pct: f64,
    /// CPU time of the other processes over all CPU time of the machine,
    /// percent.
    pub other_cpu_pct: f64,
    /// The busiest of those processes (at most 3).
    pub others: Vec<OtherProcess>,
}

/// A process that is not part of the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct OtherProcess {
    /// Pid.
    pub pid: i32,
    /// Its command name.
    pub comm: String,
    /// CPU time during the window, ms.
    pub cpu_ms: f64,
}

impl RunRecord {
    /// The file it is stored in, relative to the results directory.
    pub fn file_name(&self) -> String {
        let safe = self.target.replace([':', '/'], "_");
        format!(
            "runs/{:04}-{safe}-{}-w{}-r{}.json",
            self.index, self.workload, self.workers, self.round
        )
    }
}

/// The hosts of one run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RemoteRun {
    /// The server's host (`None`: the harness's machine).
    pub server_host: Option<String>,
    /// Each generator's part (empty: one generator on the harness's machine).
    pub parts: Vec<PartJson>,
}

/// CPU placement of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Pinning {
    /// CPUs the server was restricted to (empty: not pinned).
    pub server_cpus: Vec<usize>,
    /// CPUs the load generator was restricted to (empty: not pinned).
    pub loadgen_cpus: Vec<usize>,
    /// Whether the two sets were disjoint.
    pub disjoint: bool,
}

/// The server's side of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerSide {
    /// Master pid from the ready line.
    pub master_pid: i32,
    /// Worker pids from the ready line.
    pub worker_pids: Vec<i32>,
    /// Per process, CPU time and context switches during the load (from
    /// `/proc`, measured from just before the load to just after it).
    pub processes: Vec<ProcRecord>,
    /// The server's own stats file (`--stats-out`), if it wrote one.
    pub stats: Option<ServerStats>,
}

/// One server process's usage during the load.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProcRecord {
    /// Pid.
    pub pid: i32,
    /// The master (true) or a worker.
    pub master: bool,
    /// Usage during the load.
    #[serde(flatten)]
    pub usage: ProcUsage,
}

/// The kernel's side of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KernelSide {
    /// TcpExt/Tcp counters: after - before (system-wide: this machine only
    /// runs the lab during a session).
    pub counters: Counters,
    /// Accept-queue depth per listening socket, sampled during the load.
    pub accept_queue: QueueSamples,
    /// `net.ipv4.tcp_migrate_req` during the run (absent: no such setting).
    #[serde(default)]
    pub tcp_migrate_req: Option<u64>,
}

/// lab-server's stats file, as the harness reads it (`prefork-lab.server-stats.v1`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServerStats {
    /// Schema tag.
    pub schema: String,
    /// Master figures.
    #[serde(default)]
    pub master: MasterStats,
    /// Every worker process that ran.
    #[serde(default)]
    pub workers: Vec<WorkerStats>,
    /// Workers replaced.
    #[serde(default)]
    pub replacements: u64,
    /// Of those, replaced gracefully by a rolling restart.
    #[serde(default)]
    pub retirements: u64,
    /// Rolling restarts completed.
    #[serde(default)]
    pub rolling_restarts: u64,
}

/// The master's figures in the stats file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MasterStats {
    /// User CPU, µs.
    #[serde(default)]
    pub cpu_user_us: u64,
    /// System CPU, µs.
    #[serde(default)]
    pub cpu_system_us: u64,
    /// master-pass: connections accepted by the master.
    #[serde(default)]
    pub connections_accepted: u64,
    /// master-pass: connections the master handed to another worker after
    /// the first one refused them or died before acknowledging them.
    #[serde(default)]
    pub connections_rerouted: Option<u64>,
    /// master-pass: times the master's listener was reported readable
    /// (`connections_accepted / listener_wakeups`: accepts per wakeup).
    #[serde(default)]
    pub listener_wakeups: u64,
    /// master-pass: the master's accepts that found the queue empty.
    #[serde(default)]
    pub accept_eagain: u64,
    /// master-pass (Node-exact): descriptors in flight to a worker that died,
    /// closed instead of re-routed.
    #[serde(default)]
    pub connections_lost_in_flight: u64,
}

/// One worker's figures in the stats file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WorkerStats {
    /// Slot (0..workers).
    #[serde(default)]
    pub slot: usize,
    /// How many workers held the slot before this one.
    #[serde(default)]
    pub generation: u64,
    /// Pid.
    pub pid: i32,
    /// How it ended (`exited 0`, `killed by SIGKILL`...).
    #[serde(default)]
    pub exit: String,
    /// It was retired by a rolling restart (not a crash).
    #[serde(default)]
    pub retired: bool,
    /// Connections accepted or received.
    #[serde(default)]
    pub connections: u64,
    /// Requests served.
    #[serde(default)]
    pub requests: u64,
    /// Accepts that found the queue empty.
    #[serde(default)]
    pub accept_eagain: u64,
    /// Listener wakeups.
    #[serde(default)]
    pub listener_wakeups: u64,
    /// nginx twins: times the worker removed and re-added its listener
    /// (`ngx_reorder_accept_events`).
    #[serde(default)]
    pub listener_reorders: u64,
    /// nginx twins: loop turns or accepts made while `ngx_accept_disabled`
    /// was positive.
    #[serde(default)]
    pub accept_disabled_turns: u64,
    /// User CPU, µs.
    #[serde(default)]
    pub cpu_user_us: u64,
    /// System CPU, µs.
    #[serde(default)]
    pub cpu_system_us: u64,
}
