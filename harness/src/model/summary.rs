//! `summary.json`: everything the report shows, computed from the runs.
//! Its layout is versioned ([`SCHEMA`]) and described by
//! `harness/summary.schema.json`; a test validates real output against it.

use serde::{Deserialize, Serialize};

use crate::model::environment::Environment;
use crate::model::warnings::Warning;

/// Version tag of this layout.
pub const SCHEMA: &str = "prefork-lab.harness.summary.v3";

/// The whole comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// When the summary was made, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// The machine and its settings.
    pub environment: Environment,
    /// What was asked for.
    pub config: BenchConfigJson,
    /// Capacity measured at the start of the session, per worker count.
    pub calibration: Vec<Calibration>,
    /// One cell per (target, workload, workers).
    pub cells: Vec<Cell>,
    /// The best target of each (workload, workers) by throughput and by p99.
    pub winners: Vec<Winner>,
    /// Sentences written from the data.
    pub findings: Vec<String>,
    /// Each reference server beside the lab strategy with its mechanism.
    pub comparisons: Vec<Comparison>,
    /// Targets and workloads that could not run, and why.
    pub skipped: Vec<Skipped>,
    /// The fault scenarios ("Under faults"), one cell per target and
    /// scenario.
    #[serde(default)]
    pub faults: Vec<crate::model::faults::FaultCell>,
    /// One-line findings on them.
    #[serde(default)]
    pub fault_findings: Vec<String>,
    /// Problems with the session, with advice.
    pub warnings: Vec<Warning>,
}

/// The bench's configuration as recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchConfigJson {
    /// Targets (strategy names) in the matrix.
    pub targets: Vec<String>,
    /// Workloads in the matrix.
    pub workloads: Vec<WorkloadJson>,
    /// Worker counts.
    pub workers: Vec<usize>,
    /// Rounds of the whole matrix.
    pub rounds: usize,
    /// Measured time of each run, s.
    pub duration_s: f64,
    /// Warm-up of each run, s.
    pub warmup_s: f64,
    /// `--quick`.
    pub quick: bool,
    /// Load generators or the server on other hosts (`None`: all here).
    #[serde(default)]
    pub remote: Option<crate::model::remote::RemoteJson>,
}

/// A workload as recorded.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WorkloadJson {
    /// Name (`--workloads`).
    pub name: String,
    /// One line on what it is.
    pub description: String,
    /// loadgen arguments that define it (without target, duration, json).
    pub loadgen_args: Vec<String>,
    /// Open loop: share of the calibrated capacity offered.
    pub capacity_share: Option<f64>,
    /// A fault scenario: its kind (`worker-crash`, `rolling-restart`,
    /// `slow-worker`, `overload`).
    #[serde(default)]
    pub fault: Option<String>,
    /// A fault scenario's own measured time, s (instead of `duration_s`).
    #[serde(default)]
    pub measured_s: Option<f64>,
}

/// Capacity for one worker count.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Calibration {
    /// Worker count.
    pub workers: usize,
    /// Strategy used to measure it.
    pub target: String,
    /// loadgen arguments of the measuring run.
    pub loadgen_args: Vec<String>,
    /// Closed-loop throughput measured, req/s.
    pub capacity_rps: f64,
}

/// Median, range and spread of one figure across rounds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    /// One value per round, in round order.
    pub values: Vec<f64>,
    /// Median of the values.
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// (max - min) / median, percent; 0 for a single round.
    pub spread_pct: f64,
}

/// Latency percentiles of all rounds' histograms added together, µs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencyJson {
    /// Successful requests measured.
    pub count: u64,
    /// Median, µs.
    pub p50_us: u64,
    /// 90th percentile, µs.
    pub p90_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Largest, µs.
    pub max_us: u64,
    /// (percentile in percent, 0..100, latency µs) pairs for the spectrum
    /// plot; the last is (100, max).
    pub spectrum: Vec<(f64, u64)>,
}

/// Fairness of one per-worker quantity.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FairnessJson {
    /// Jain's index (Σx)²/(n·Σx²): 1 even, 1/n one worker takes all. Median over rounds.
    pub jain: f64,
    /// Jain's index per round.
    pub jain_per_round: Vec<f64>,
    /// Largest worker's value over the mean (median over rounds).
    pub max_over_mean: f64,
    /// Coefficient of variation, stdev/mean (median over rounds).
    pub cv: f64,
    /// Shares of the total, largest first, of the round with the median
    /// throughput (for the per-worker share plot).
    pub shares: Vec<f64>,
}

/// Per-worker fairness of connections, requests and CPU time.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Fairness {
    /// Connections accepted (or received) per worker, from the server.
    pub connections: FairnessJson,
    /// Requests served per worker, from the server.
    pub requests: FairnessJson,
    /// CPU time per worker, from /proc.
    pub cpu: FairnessJson,
}

/// Kernel counters added over the rounds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct KernelJson {
    /// TcpExt ListenOverflows.
    pub listen_overflows: u64,
    /// TcpExt ListenDrops.
    pub listen_drops: u64,
    /// TcpExt TCPReqQFullDrop.
    pub req_q_full_drop: u64,
    /// TcpExt TCPMigrateReqSuccess.
    pub migrate_req_success: u64,
    /// TcpExt TCPMigrateReqFailure.
    pub migrate_req_failure: u64,
    /// Tcp OutRsts.
    pub out_rsts: u64,
    /// Deepest accept queue seen on any listener of the port.
    pub max_accept_queue: u64,
}

/// One (target, workload, workers) cell.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cell {
    /// Strategy or reference server.
    pub target: String,
    /// Strategy family: master-pass, shared, reuseport; nginx or node for references.
    pub family: String,
    /// A reference server (nginx, Node.js), not a lab strategy.
    pub reference: bool,
    /// Where the per-worker connection and request counts come from: the
    /// server's own stats file, or the load generator's `X-Worker` tallies
    /// (references, which keep no such counts).
    pub counts_from: String,
    /// Workload name.
    pub workload: String,
    /// Worker processes.
    pub workers: usize,
    /// Rounds that ran.
    pub rounds: usize,
    /// Open loop: the rate offered, req/s.
    pub offered_rps: Option<f64>,
    /// Successful requests per second, across rounds.
    pub throughput_rps: Spread,
    /// Latency, all rounds' histograms added.
    pub latency: LatencyJson,
    /// p99 latency per round, µs (its spread; never averaged).
    pub p99_us_per_round: Spread,
    /// Per-worker fairness.
    pub fairness: Fairness,
    /// Accepts that found the queue empty per connection served (median over
    /// rounds); null where the server does not count them (references).
    pub wasted_wakeups_per_connection: Option<f64>,
    /// The master's CPU time as a share of the server's (median over rounds).
    pub master_cpu_share: f64,
    /// Errors over all rounds.
    pub errors: u64,
    /// Errors over requests attempted, all rounds.
    pub error_rate: f64,
    /// Kernel counters, added over rounds.
    pub kernel: KernelJson,
    /// Workers replaced during the runs.
    pub replacements: u64,
    /// The run files of this cell, relative to the results directory.
    pub runs: Vec<String>,
}

/// The best target of one (workload, workers).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Winner {
    /// Workload name.
    pub workload: String,
    /// Worker count.
    pub workers: usize,
    /// Highest median throughput.
    pub throughput_target: String,
    /// Its median throughput, req/s.
    pub throughput_rps: f64,
    /// Lowest p99 latency (all rounds merged).
    pub p99_target: String,
    /// Its p99, µs.
    pub p99_us: u64,
    /// Most even connection spread (Jain's index).
    pub fairest_target: String,
    /// Its Jain's index of connections.
    pub fairest_jain: f64,
}

/// A target or a (target, workload) that did not run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Skipped {
    /// Target name.
    pub target: String,
    /// The workload it cannot serve; null when the target could not run at all.
    pub workload: Option<String>,
    /// Why, with what to do about it.
    pub reason: String,
}

/// A reference server beside the lab strategy that shares its mechanism.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Comparison {
    /// Workload.
    pub workload: String,
    /// Worker count.
    pub workers: usize,
    /// The lab strategy.
    pub ours: String,
    /// The reference server.
    pub theirs: String,
    /// Our median throughput, req/s.
    pub ours_rps: f64,
    /// Theirs, req/s.
    pub theirs_rps: f64,
    /// Ours over theirs.
    pub throughput_ratio: f64,
    /// Our p99, µs (merged rounds).
    pub ours_p99_us: u64,
    /// Theirs, µs.
    pub theirs_p99_us: u64,
    /// Ours over theirs (below 1: ours has the shorter tail).
    pub p99_ratio: f64,
    /// Our Jain's index of connections.
    pub ours_jain: f64,
    /// Theirs.
    pub theirs_jain: f64,
}
