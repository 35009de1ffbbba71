//! `summary.json`: everything the report shows, computed from the runs.
//! Its layout is versioned ([`SCHEMA`]) and described by
//! `harness/summary.schema.json`; a test validates real output against it.

use serde::{Deserialize, Serialize};

use crate::model::environment::Environment;
use crate::model::warnings::Warning;

/// Version tag of this layout.
pub const SCHEMA: &str = "prefork-lab.harness.summary.v4";

/// The whole comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// When the summary was made, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// When the session started, ms since the Unix epoch (`harness report`
    /// re-renders later: this is the date of the measurements).
    #[serde(default)]
    pub session_started_unix_ms: Option<u64>,
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
    /// What the latest traces showed ("Under the hood"); `None` when none
    /// was found.
    #[serde(default)]
    pub under_the_hood: Option<crate::model::hood::Hood>,
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
    /// The least warm-up of each run, s (each is warmed until steady).
    pub warmup_s: f64,
    /// The most warm-up of each run, s (`None`: each target's own cap).
    #[serde(default)]
    pub warmup_cap_s: Option<f64>,
    /// `--quick`.
    pub quick: bool,
    /// `--full`.
    #[serde(default)]
    pub full: bool,
    /// TEST ONLY: targets slowed on purpose (`TARGET=US`); a session with
    /// any is not a measurement to publish.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test_only_inject_cpu_us: Vec<String>,
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
    /// What its per-worker spread of connections shows: `burst` or `steady`.
    #[serde(default)]
    pub fairness: String,
    /// A fault scenario: its kind (`worker-crash`, `rolling-restart`,
    /// `slow-worker`, `overload`).
    #[serde(default)]
    pub fault: Option<String>,
    /// A fault scenario's own measured time, s (instead of `duration_s`).
    #[serde(default)]
    pub measured_s: Option<f64>,
    /// Open loop: the capacity its rate is a share of, measured with
    /// `keepalive` or `close` connections (a summary from before this was
    /// recorded: keepalive).
    #[serde(default = "keepalive")]
    pub calibration: String,
}

fn keepalive() -> String {
    "keepalive".into()
}

/// A target's capacity for one worker count: closed loop, keep-alive, the
/// open-loop workloads' request. The offered rates are shares of
/// [`CALIBRATION_TARGET`](crate::model::workload::CALIBRATION_TARGET)'s, so
/// every target is offered the same load; each target's own capacity says
/// how close that load is to what it can do.
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
    /// With `keepalive` or `close` connections (before this was recorded:
    /// keepalive).
    #[serde(default = "keepalive")]
    pub mode: String,
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
    /// Of those, steady (only these count for winners and findings).
    pub steady_rounds: usize,
    /// What its per-worker spread shows: `burst` (connections opened
    /// together at the start and kept) or `steady` (connections keep
    /// arriving during the measured window).
    pub fairness_kind: String,
    /// Open loop: the rate offered, req/s.
    pub offered_rps: Option<f64>,
    /// Open loop: the target's own capacity (its calibration), req/s.
    pub own_capacity_rps: Option<f64>,
    /// Open loop: the offered rate as a share of the target's own capacity.
    pub offered_share_of_own: Option<f64>,
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
    /// Of those, requests that got no answer within the load generator's
    /// timeout, over all rounds.
    #[serde(default)]
    pub timeouts: u64,
    /// Connections whose request had waited more than half of a measured
    /// window for its response when the window ended, over all rounds
    /// (loadgen's `starved_connections`): clients the server left waiting.
    /// A few are the tail (a SYN dropped and sent again a second later);
    /// most of them are a server that serves fewer connections at once than
    /// the clients open (see [`Cell::starved_share`]).
    #[serde(default)]
    pub starved_connections: u64,
    /// The share of the load generator's connections that starved, median
    /// over rounds. Classic pre-fork under keep-alive serves one connection
    /// per worker and leaves every other client in the accept queue for the
    /// whole run (62 of 64 with 2 workers) while the few it serves make its
    /// throughput and tail look good: a cell above
    /// [`crate::analyse::steady::STARVED_SHARE`], or with a timeout, counts
    /// for no winner and no best-against-worst finding.
    #[serde(default)]
    pub starved_share: f64,
    /// Errors over requests attempted, all rounds.
    pub error_rate: f64,
    /// Kernel counters, added over rounds.
    pub kernel: KernelJson,
    /// Workers replaced during the runs.
    pub replacements: u64,
    /// What the server spent per request and per connection.
    pub cost: Cost,
    /// Warm-up each round needed, s.
    pub warmup_s: Spread,
    /// The warm-up of the round with the median warm-up, slice by slice:
    /// successful requests per second of each `warmup_slice_s` slice (for
    /// the report's warm-up plot; empty when the runs recorded none).
    #[serde(default)]
    pub warmup_timeline: Vec<f64>,
    /// Width of each slice of `warmup_timeline`, s (0 when it is empty).
    #[serde(default)]
    pub warmup_slice_s: f64,
    /// Each round's own figures, in run order (pairs of cells are compared
    /// round by round: the rounds interleave).
    pub per_round: Vec<RoundFigures>,
    /// The run files of this cell, relative to the results directory.
    pub runs: Vec<String>,
}

/// What the server spent during a cell's measured windows (medians over
/// rounds; per request: over the requests answered meanwhile).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Cost {
    /// Server CPU time per request (master and workers), µs.
    pub cpu_us_per_request: Spread,
    /// The master's part, µs (0 where the master does nothing per request).
    pub master_cpu_us_per_request: Spread,
    /// The workers' part, µs.
    pub workers_cpu_us_per_request: Spread,
    /// Voluntary context switches of the master (all its threads) per request.
    pub master_vcs_per_request: Spread,
    /// Voluntary context switches of all workers (all threads) per request.
    pub workers_vcs_per_request: Spread,
    /// Voluntary context switches of the master per connection.
    pub master_vcs_per_connection: Spread,
    /// Voluntary context switches of all workers per connection.
    pub workers_vcs_per_connection: Spread,
    /// Involuntary context switches of the server per request.
    pub ivcs_per_request: Spread,
    /// Connections opened per request (1 when every request has its own).
    pub connections_per_request: f64,
}

/// One round of a cell.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RoundFigures {
    /// Round number.
    pub round: usize,
    /// Steady: it counts for winners and findings.
    pub steady: bool,
    /// Why it was not steady.
    #[serde(default)]
    pub why_not: Option<String>,
    /// Warm-up it needed, s.
    pub warmup_s: f64,
    /// Successful requests per second.
    pub throughput_rps: f64,
    /// p99 latency of this round, µs.
    pub p99_us: u64,
    /// Jain's index of connections per worker.
    pub jain_connections: f64,
    /// The largest worker's share of the connections.
    pub top_connection_share: f64,
    /// Server CPU time per request, µs.
    pub cpu_us_per_request: f64,
    /// The master's CPU time per request, µs.
    pub master_cpu_us_per_request: f64,
    /// The workers' CPU time per request, µs.
    pub workers_cpu_us_per_request: f64,
    /// Master's voluntary context switches per request.
    pub master_vcs_per_request: f64,
    /// Workers' voluntary context switches per request.
    pub workers_vcs_per_request: f64,
    /// Master's voluntary context switches per connection.
    pub master_vcs_per_connection: f64,
    /// Workers' voluntary context switches per connection.
    pub workers_vcs_per_connection: f64,
    /// Involuntary context switches of the server per request.
    pub ivcs_per_request: f64,
    /// CPU steal during the window, percent of the machine.
    pub steal_pct: f64,
    /// Other processes' CPU during the window, percent of the machine.
    pub other_cpu_pct: f64,
    /// `accept()` calls that found the queue empty per connection, from the
    /// server's own counts over its life (`None`: a server without them).
    #[serde(default)]
    pub eagain_per_connection: Option<f64>,
}

/// A ratio A/B of two cells' figures with its interval: the median of the
/// per-round ratios (paired by round) and a bootstrap 95% interval of it.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Interval {
    /// Lower bound.
    pub low: f64,
    /// The estimate (median of the paired ratios).
    pub estimate: f64,
    /// Upper bound.
    pub high: f64,
    /// Rounds paired (both steady).
    pub rounds: usize,
    /// The whole interval is outside the band of no difference (the
    /// minimum effect either way): a finding may be printed.
    pub significant: bool,
}

/// The best of one figure in one (workload, workers), and who it cannot be
/// told apart from.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Lead {
    /// The best target by the median over steady rounds.
    pub target: String,
    /// Its value (req/s, µs or Jain's index).
    pub value: f64,
    /// The next best.
    pub runner_up: Option<String>,
    /// Best over runner-up (p99, CPU: runner-up over best), so above 1
    /// means the best is better.
    pub lead: Option<Interval>,
    /// The targets not significantly worse than the best, the best first:
    /// one entry when it wins outright.
    pub tied: Vec<String>,
}

/// The best targets of one (workload, workers).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Winner {
    /// Workload name.
    pub workload: String,
    /// Worker count.
    pub workers: usize,
    /// Highest throughput (closed loop only: open loop serves what is offered).
    pub throughput: Option<Lead>,
    /// Lowest p99 latency.
    pub p99: Option<Lead>,
    /// Most even connection spread (Jain's index).
    pub fairest: Option<Lead>,
    /// Least server CPU per request.
    pub cheapest: Option<Lead>,
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
    /// Ours over theirs, throughput, with its interval.
    pub throughput_interval: Option<Interval>,
    /// Ours over theirs, p99, with its interval.
    pub p99_interval: Option<Interval>,
    /// Our CPU per request over theirs, with its interval.
    pub cpu_interval: Option<Interval>,
    /// Our CPU per request, µs.
    pub ours_cpu_us_per_request: f64,
    /// Theirs.
    pub theirs_cpu_us_per_request: f64,
}
