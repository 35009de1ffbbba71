//! Running a session: calibrate, run the planned matrix with a progress bar,
//! write each run as it ends, then analyse and report.

mod one;
pub mod plan;
mod remote;
mod session;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use remote::RemoteOpts;
use remote::RemoteSetup;

use crate::analyse::summarize;
use crate::measure::environment::capture as capture_environment;
use crate::measure::procs::Binaries;
use crate::measure::targets::TargetSpec;
use crate::model::record::RunRecord;
use crate::model::remote::RemoteJson;
use crate::model::session::{Session, SESSION_SCHEMA};
use crate::model::summary::{BenchConfigJson, Summary};
use crate::model::workload::Workload;
use crate::store::results::{create_session_dir, update_latest, write_json};

/// A server that is not ready within this long fails the session.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often accept queues are sampled during a run.
pub const QUEUE_SAMPLE: Duration = Duration::from_millis(50);

/// A bench session's configuration, checked.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Targets (strategy names).
    pub targets: Vec<String>,
    /// The targets the fault scenarios run on (a subset of `targets`).
    pub fault_targets: Vec<String>,
    /// Workloads.
    pub workloads: Vec<&'static Workload>,
    /// Worker counts.
    pub workers: Vec<usize>,
    /// Rounds of the matrix.
    pub rounds: usize,
    /// Measured time per run.
    pub duration: Duration,
    /// The least warm-up per run (each is warmed until steady).
    pub warmup: Duration,
    /// The most warm-up per run (`None`: each target's own cap).
    pub warmup_cap: Option<Duration>,
    /// `--quick`.
    pub quick: bool,
    /// `--full`.
    pub full: bool,
    /// TEST ONLY: lab targets whose server burns this many extra µs of CPU
    /// per request (`--test-only-inject-cpu-us TARGET=US`).
    pub inject_cpu_us: Vec<(String, u64)>,
    /// Where sessions go (`results/`).
    pub results_root: PathBuf,
    /// Seed of the run order.
    pub seed: u64,
    /// The lab-server to measure, instead of the one beside the harness.
    pub server_bin: Option<PathBuf>,
    /// How long a server may take to print its ready line.
    pub ready_timeout: Duration,
    /// Load generators and the server on other hosts, over ssh.
    pub remote: Option<RemoteOpts>,
}

impl BenchConfig {
    /// TEST ONLY: the extra CPU per request `target` is run with.
    fn injected(&self, target: &str) -> u64 {
        self.inject_cpu_us
            .iter()
            .find(|(t, _)| t == target)
            .map_or(0, |(_, us)| *us)
    }

    fn json(&self) -> BenchConfigJson {
        BenchConfigJson {
            targets: self.targets.clone(),
            workloads: self.workloads.iter().map(|w| w.json()).collect(),
            workers: self.workers.clone(),
            rounds: self.rounds,
            duration_s: self.duration.as_secs_f64(),
            warmup_s: self.warmup.as_secs_f64(),
            warmup_cap_s: self.warmup_cap.map(|d| d.as_secs_f64()),
            quick: self.quick,
            full: self.full,
            test_only_inject_cpu_us: self
                .inject_cpu_us
                .iter()
                .map(|(t, us)| format!("{t}={us}"))
                .collect(),
            remote: self.remote.as_ref().map(|r| RemoteJson {
                loadgen_hosts: r.loadgen_hosts.iter().map(|h| h.name.clone()).collect(),
                server_host: r.server_host.as_ref().map(|h| h.name.clone()),
            }),
        }
    }
}

/// CPU placement: disjoint sets when the machine has room, else none.
#[derive(Clone, Debug)]
struct Placement {
    server: Vec<usize>,
    loadgen: Vec<usize>,
    loadgen_threads: usize,
}

fn placement(cpus: &[usize], workers: usize) -> Placement {
    let loadgen_threads = if cpus.len() >= 8 { 2 } else { 1 };
    if cpus.len() > workers + loadgen_threads {
        let split = cpus.len() - loadgen_threads;
        Placement {
            server: cpus[..split].to_vec(),
            loadgen: cpus[split..].to_vec(),
            loadgen_threads,
        }
    } else {
        Placement {
            server: Vec::new(),
            loadgen: Vec::new(),
            loadgen_threads,
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What the session produced.
pub struct Outcome {
    /// The session directory.
    pub dir: PathBuf,
    /// The summary written there.
    pub summary: Summary,
    /// Why it ended early, if it did (the results so far are still written).
    pub ended_early: Option<EndedEarly>,
}

/// Why a session ended before every planned run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndedEarly {
    /// SIGINT or SIGTERM stopped it.
    Interrupted(String),
    /// A run (or the calibration) failed.
    Failed(String),
}

impl EndedEarly {
    /// Why, in words (as `session.json` records it).
    pub fn why(&self) -> &str {
        match self {
            EndedEarly::Interrupted(why) | EndedEarly::Failed(why) => why,
        }
    }
}

/// Runs a whole session.
pub fn bench(cfg: &BenchConfig, stop: &AtomicBool) -> Result<Outcome, String> {
    let mut bins = Binaries::locate()?;
    if let Some(bin) = &cfg.server_bin {
        if !bin.is_file() {
            return Err(format!("--server-bin {}: no such file", bin.display()));
        }
        bins.lab_server = bin.clone();
    }
    let remote = match &cfg.remote {
        Some(o) => {
            if let Some(t) = cfg
                .targets
                .iter()
                .find(|t| TargetSpec::parse(t).is_some_and(|s| s.is_reference()))
            {
                return Err(format!(
                    "{t}: reference servers run on this machine on loopback only; leave them out (--strategies) when load or the server is on another host"
                ));
            }
            if o.server_host.is_some() {
                if let Some(w) = cfg.workloads.iter().find(|w| w.fault.is_some()) {
                    return Err(format!(
                        "{}: the fault scenarios need the server on this machine (the injector signals its processes); leave them out (--workloads) with --server-host",
                        w.name
                    ));
                }
            }
            let setup = RemoteSetup::connect(o, &bins)?;
            eprintln!(
                "harness: load from {}; server on {}",
                if o.loadgen_hosts.is_empty() {
                    "this machine".to_string()
                } else {
                    o.loadgen_hosts
                        .iter()
                        .map(|h| h.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                o.server_host
                    .as_ref()
                    .map_or("this machine".to_string(), |h| format!(
                        "{} ({})",
                        h.name,
                        setup.server_ip.as_deref().unwrap_or("?")
                    ))
            );
            Some(setup)
        }
        None => None,
    };
    let outcome = bench_with(cfg, &bins, remote.as_ref(), stop);
    if let Some(r) = &remote {
        r.remote.ssh.close(&r.hosts());
    }
    outcome
}

fn bench_with(
    cfg: &BenchConfig,
    bins: &Binaries,
    remote: Option<&RemoteSetup>,
    stop: &AtomicBool,
) -> Result<Outcome, String> {
    let dir = create_session_dir(&cfg.results_root)?;
    let environment = capture_environment();
    let mut session = Session {
        schema: SESSION_SCHEMA.into(),
        started_unix_ms: now_ms(),
        seed: cfg.seed,
        config: cfg.json(),
        environment: environment.clone(),
        calibration: Vec::new(),
        planned_runs: 0,
        completed_runs: 0,
        ended_early: None,
        skipped: Vec::new(),
    };
    write_json(&dir.join("session.json"), &session)?;
    let active = session::runnable_targets(cfg, &mut session)?;
    let planned = session::planned_runs(cfg, &active, &session);
    session.planned_runs = planned.len();
    // Written now, so that a session killed mid-way still says what it
    // planned (its report then says it is incomplete).
    write_json(&dir.join("session.json"), &session)?;
    let mut s = session::Runner {
        cfg,
        bins,
        remote,
        dir: &dir,
        cpus: &environment.cpus_allowed,
        stop,
        progress: session::Progress::new(),
    };
    s.announce(&planned, active.len());
    let mut records: Vec<RunRecord> = Vec::new();
    let mut ended_early = s.calibrate(&planned, &mut session)?;
    if ended_early.is_none() {
        ended_early = s.run_planned(&planned, &mut session, &mut records)?;
    }
    s.done();
    session.ended_early = ended_early.as_ref().map(|e| e.why().to_string());
    write_json(&dir.join("session.json"), &session)?;
    let summary = finish(&dir, &session, &records)?;
    update_latest(&cfg.results_root, &dir)?;
    Ok(Outcome {
        dir,
        summary,
        ended_early,
    })
}

/// Analyses the runs of a session and writes `summary.json` and the report:
/// what `harness report DIR` does with a session read back (store ->
/// analyse -> report).
pub fn finish(dir: &Path, session: &Session, records: &[RunRecord]) -> Result<Summary, String> {
    let mut summary = summarize(session, records, now_ms())?;
    // What the latest traces beside the session showed (never taken
    // during it: tracing slows what it watches).
    summary.under_the_hood = dir.parent().and_then(crate::trace::latest::digest);
    write_json(&dir.join("summary.json"), &summary)?;
    crate::report::render(&summary, dir)?;
    Ok(summary)
}
