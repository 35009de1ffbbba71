//! The workloads a target is measured under: the steady ones and the fault
//! scenarios, with what goes wrong in each and when.

use crate::model::names::migrate_req;
use crate::model::summary::WorkloadJson;

/// The request target every open-loop workload uses, and the calibration.
pub const CALIBRATION_PATH: &str = "/?cpu_us=50";

/// The target whose capacity the open-loop rates are shares of (every
/// target is offered the same rate).
pub const CALIBRATION_TARGET: &str = "reuseport";

/// Keep-alive connections of the steady-fairness workloads are closed by
/// the client after this many responses and replaced, as clients and
/// proxies recycle theirs (nginx closes one after 1000 requests by
/// default), so that connections keep arriving during the measured window.
pub const REQUESTS_PER_CONN: &str = "100";

/// How the capacity an open-loop workload's rate is a share of was
/// measured: the workload's own kind of connection, so that 50% of it is
/// half of what the server can do for that workload, not of something
/// cheaper (a new connection per request costs several times a keep-alive
/// request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capacity {
    /// Closed loop, 64 keep-alive connections.
    KeepAlive,
    /// Closed loop, a new connection per request, 32 at a time.
    Close,
}

impl Capacity {
    /// As recorded (`keepalive`, `close`).
    pub fn name(self) -> &'static str {
        match self {
            Capacity::KeepAlive => "keepalive",
            Capacity::Close => "close",
        }
    }

    /// The loadgen arguments of the calibration run.
    pub fn loadgen_args(self) -> Vec<String> {
        let (mode, conns) = match self {
            Capacity::KeepAlive => ("keepalive", "64"),
            Capacity::Close => ("close", "32"),
        };
        [
            "--mode",
            mode,
            "--connections",
            conns,
            "--path",
            CALIBRATION_PATH,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

/// What a workload's per-worker spread of connections shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FairnessKind {
    /// Where connections opened together at the start landed: they stay
    /// for the whole run, so whichever worker ran in the first
    /// milliseconds keeps them.
    Burst,
    /// Connections keep arriving during the measured window (a new one per
    /// request, or recycled keep-alive connections): the steady spread.
    Steady,
}

impl FairnessKind {
    /// As recorded.
    pub fn name(self) -> &'static str {
        match self {
            FairnessKind::Burst => "burst",
            FairnessKind::Steady => "steady",
        }
    }
}

/// How a workload drives load.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Name (`--workloads`).
    pub name: &'static str,
    /// One line on what it is.
    pub description: &'static str,
    /// loadgen arguments, without target/duration/json/rate.
    pub args: &'static [&'static str],
    /// Open loop at this share of the calibrated capacity.
    pub capacity_share: Option<f64>,
    /// How that capacity is measured.
    pub capacity: Capacity,
    /// What its per-worker spread shows.
    pub fairness: FairnessKind,
    /// A fault scenario: what goes wrong during the run, and its own
    /// measured time (the scenario's timing is part of its definition, so
    /// `--duration` does not change it).
    pub fault: Option<Fault>,
}

/// What a fault scenario does, at offsets from the start of the measured
/// window (every injection is also recorded with its wall-clock time, so the
/// analysis aligns it with loadgen's timeline whatever the start-up delays).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// One worker hangs (SIGSTOP) at `at_ms` and is killed (SIGKILL)
    /// `hang_ms` later, as a watchdog kills a wedged worker; the master
    /// replaces it. While it hangs, whatever the strategy gives it waits; at
    /// the kill, what it held is lost unless the mechanism hands it on.
    WorkerCrash {
        /// When it hangs.
        at_ms: u64,
        /// How long until the kill.
        hang_ms: u64,
    },
    /// A graceful rolling restart of every worker, one at a time, asked at
    /// `at_ms` (SIGHUP to lab-server's master, nginx's reload, the Node
    /// primary's one-by-one replacement).
    RollingRestart {
        /// When.
        at_ms: u64,
    },
    /// One worker stopped (SIGSTOP) for `stop_ms`, every `every_ms` from
    /// `first_ms`, `times` times, then continued (SIGCONT).
    SlowWorker {
        /// First stop.
        first_ms: u64,
        /// Period.
        every_ms: u64,
        /// Length of each stop.
        stop_ms: u64,
        /// How many stops.
        times: u64,
    },
    /// The offered rate jumps to `share` of the calibrated capacity from
    /// `from_ms` to `to_ms` (loadgen `--rate-step`), then falls back.
    Overload {
        /// Start of the surge.
        from_ms: u64,
        /// End of the surge.
        to_ms: u64,
        /// Offered rate during the surge, as a share of capacity.
        share: f64,
    },
}

impl Fault {
    /// The measured time of a run of this scenario.
    pub fn measured_ms(&self) -> u64 {
        match self {
            Fault::WorkerCrash { .. } => 1200,
            Fault::RollingRestart { .. } => 1500,
            Fault::SlowWorker { .. } => 1400,
            Fault::Overload { .. } => 3000,
        }
    }

    /// Short name of the mechanism, for records.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::WorkerCrash { .. } => "worker-crash",
            Fault::RollingRestart { .. } => "rolling-restart",
            Fault::SlowWorker { .. } => "slow-worker",
            Fault::Overload { .. } => "overload",
        }
    }
}

/// The loadgen arguments every fault scenario shares: open loop (Poisson),
/// a new connection per request, so that every request goes through the
/// accept path the strategies differ in; `GET /`, which nginx serves too. Up to 2048 requests at once: more
/// than a listen backlog (511), so an overload can fill accept queues.
const FAULT_ARGS: &[&str] = &[
    "--mode",
    "close",
    "--connections",
    "2048",
    "--arrivals",
    "poisson",
    "--path",
    "/",
];

/// The fault scenarios' steady load: a quarter of the calibrated capacity.
const FAULT_SHARE: f64 = 0.25;

/// The default workloads.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "keepalive",
        description: "closed loop, keep-alive, 64 connections, GET / (cheap requests)",
        args: &["--mode", "keepalive", "--connections", "64", "--path", "/"],
        capacity_share: None,
        capacity: Capacity::KeepAlive,
        fairness: FairnessKind::Burst,
        fault: None,
    },
    Workload {
        name: "recycled",
        description: "closed loop, keep-alive, 64 connections, each closed by the client after 100 responses and replaced, GET / (the steady spread of keep-alive connections)",
        args: &["--mode", "keepalive", "--connections", "64", "--requests-per-conn", REQUESTS_PER_CONN, "--path", "/"],
        capacity_share: None,
        capacity: Capacity::KeepAlive,
        fairness: FairnessKind::Steady,
        fault: None,
    },
    Workload {
        name: "close",
        description: "closed loop, a new TCP connection per request, 32 at a time, GET /",
        args: &["--mode", "close", "--connections", "32", "--path", "/"],
        capacity_share: None,
        capacity: Capacity::KeepAlive,
        fairness: FairnessKind::Steady,
        fault: None,
    },
    Workload {
        name: "open-50",
        description: "open loop (Poisson) at 50% of capacity, keep-alive, 64 connections recycled after 100 responses, 50 us of CPU per request",
        args: &["--mode", "keepalive", "--connections", "64", "--requests-per-conn", REQUESTS_PER_CONN, "--arrivals", "poisson", "--path", CALIBRATION_PATH],
        capacity_share: Some(0.5),
        capacity: Capacity::KeepAlive,
        fairness: FairnessKind::Steady,
        fault: None,
    },
    Workload {
        name: "open-90",
        description: "open loop (Poisson) at 90% of capacity, keep-alive, 64 connections recycled after 100 responses, 50 us of CPU per request",
        args: &["--mode", "keepalive", "--connections", "64", "--requests-per-conn", REQUESTS_PER_CONN, "--arrivals", "poisson", "--path", CALIBRATION_PATH],
        capacity_share: Some(0.9),
        capacity: Capacity::KeepAlive,
        fairness: FairnessKind::Steady,
        fault: None,
    },
    Workload {
        name: "heavy-tail",
        description: "open loop (Poisson) at 50% of capacity, keep-alive, 64 connections recycled after 100 responses, 99% of requests 20 us of CPU, 1% 2000 us",
        args: &["--mode", "keepalive", "--connections", "64", "--requests-per-conn", REQUESTS_PER_CONN, "--arrivals", "poisson", "--mix", "99:/?cpu_us=20,1:/?cpu_us=2000"],
        capacity_share: Some(0.5),
        capacity: Capacity::KeepAlive,
        fairness: FairnessKind::Steady,
        fault: None,
    },
    Workload {
        name: "heavy-tail-close",
        description: "open loop (Poisson) at 50% of capacity measured with a new connection per request, a new connection per request (up to 256 at once), 99% of requests 20 us of CPU, 1% 2000 us: where an accept strategy can steer each request",
        args: &["--mode", "close", "--connections", "256", "--arrivals", "poisson", "--mix", "99:/?cpu_us=20,1:/?cpu_us=2000"],
        capacity_share: Some(0.5),
        capacity: Capacity::Close,
        fairness: FairnessKind::Steady,
        fault: None,
    },
    Workload {
        name: "worker-crash",
        description: "fault: open loop (Poisson) at 25% of capacity, a new connection per request; the busiest worker hangs (SIGSTOP) 0.4 s into the measured window (1.2 s), is SIGKILLed 200 ms later as a watchdog would, and is replaced by the master",
        args: FAULT_ARGS,
        capacity_share: Some(FAULT_SHARE),
        capacity: Capacity::KeepAlive,
        fairness: FairnessKind::Steady,
        fault: Some(Fault::WorkerCrash {
            at_ms: 400,
            hang_ms: 200,
        }),
    },
    Workload {
        name: "rolling-restart",
        description: "fault: open loop (Poisson) at 25% of capacity, a new connection per request; every worker replaced gracefully, one at a time, from 0.4 s (of 1.5 s)",
        args: FAULT_ARGS,
        capacity_share: Some(FAULT_SHARE),
        capacity: Capacity::KeepAlive,
        fairness: FairnessKind::Steady,
        fault: Some(Fault::RollingRestart { at_ms: 400 }),
    },
    Workload {
        name: "slow-worker",
        description: "fault: open loop (Poisson) at 25% of capacity, a new connection per request; the busiest worker stopped (SIGSTOP) for 200 ms at 0.3 s and again at 0.9 s (of 1.4 s)",
        args: FAULT_ARGS,
        capacity_share: Some(FAULT_SHARE),
        capacity: Capacity::KeepAlive,
        fairness: FairnessKind::Steady,
        fault: Some(Fault::SlowWorker {
            first_ms: 300,
            every_ms: 600,
            stop_ms: 200,
            times: 2,
        }),
    },
    Workload {
        name: "overload",
        description: "fault: open loop (Poisson), a new connection per request, up to 2048 at once; 25% of capacity, then 150% for 0.8 s from 0.4 s, then 25% again while the backlog drains (3 s in all)",
        args: FAULT_ARGS,
        capacity_share: Some(FAULT_SHARE),
        capacity: Capacity::KeepAlive,
        fairness: FairnessKind::Steady,
        fault: Some(Fault::Overload {
            from_ms: 400,
            to_ms: 1200,
            share: 1.5,
        }),
    },
];

impl Workload {
    /// By name.
    pub fn by_name(name: &str) -> Option<&'static Workload> {
        WORKLOADS.iter().find(|w| w.name == name)
    }

    /// Whether its connections carry more than one request: false when
    /// loadgen runs in `--mode close` (one request per connection). A
    /// server that can turn keep-alive off (Apache's `KeepAlive Off`) then
    /// closes each connection itself, as it would for such clients.
    pub fn keeps_alive(&self) -> bool {
        let mut it = self.args.iter();
        while let Some(&arg) = it.next() {
            let mode = match arg.strip_prefix("--mode") {
                Some("") => it.next().copied(),
                Some(rest) => rest.strip_prefix('='),
                None => None,
            };
            if mode == Some("close") {
                return false;
            }
        }
        true
    }

    /// As recorded in the summary.
    pub fn json(&self) -> WorkloadJson {
        WorkloadJson {
            name: self.name.into(),
            description: self.description.into(),
            loadgen_args: self.args.iter().map(|s| s.to_string()).collect(),
            capacity_share: self.capacity_share,
            fairness: self.fairness.name().into(),
            fault: self.fault.map(|f| f.kind().to_string()),
            measured_s: self.fault.map(|f| f.measured_ms() as f64 / 1000.0),
            calibration: self.capacity.name().into(),
        }
    }
}

/// Whether the cell (`target`, `workload`) exists at all: the
/// `+migrate` variants only differ from their base when a listener closes,
/// so they run only the worker-crash and rolling-restart scenarios.
pub fn applies(target: &str, workload: &Workload) -> bool {
    !migrate_req(target)
        || matches!(
            workload.fault,
            Some(Fault::WorkerCrash { .. } | Fault::RollingRestart { .. })
        )
}
