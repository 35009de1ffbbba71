//! Running a session: calibrate, run the planned matrix with a progress bar,
//! write each run as it ends, then analyse and report.

mod one;
pub mod plan;
mod remote;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};

use one::{run_one, RunSpec};
use plan::{plan, Planned};
pub use remote::RemoteOpts;
use remote::RemoteSetup;

use crate::analyse::summarize;
use crate::measure::environment::capture as capture_environment;
use crate::measure::faults;
use crate::measure::procs::Binaries;
use crate::measure::targets::TargetSpec;
use crate::model::names::migrate_req;
use crate::model::record::RunRecord;
use crate::model::remote::RemoteJson;
use crate::model::session::{Session, SESSION_SCHEMA};
use crate::model::summary::{BenchConfigJson, Calibration, Skipped, Summary};
use crate::model::workload::{applies, Workload, CALIBRATION_PATH};
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
    /// Warm-up per run.
    pub warmup: Duration,
    /// `--quick`.
    pub quick: bool,
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
    fn json(&self) -> BenchConfigJson {
        BenchConfigJson {
            targets: self.targets.clone(),
            workloads: self.workloads.iter().map(|w| w.json()).collect(),
            workers: self.workers.clone(),
            rounds: self.rounds,
            duration_s: self.duration.as_secs_f64(),
            warmup_s: self.warmup.as_secs_f64(),
            quick: self.quick,
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
    pub ended_early: Option<String>,
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
    // References whose server is not installed are skipped with a plain
    // message, not a failed bench; so is a workload a target cannot serve.
    let mut active: Vec<String> = Vec::new();
    for name in &cfg.targets {
        let spec = TargetSpec::parse(name).ok_or_else(|| format!("unknown target {name:?}"))?;
        let available = spec.available().and_then(|()| {
            if migrate_req(name) {
                faults::check_migrate_req()
                    .map_err(|e| format!("{e}: the +migrate runs are skipped"))
            } else {
                Ok(())
            }
        });
        match available {
            Ok(()) => active.push(name.clone()),
            Err(reason) => {
                eprintln!("harness: {name}: {reason}");
                session.skipped.push(Skipped {
                    target: name.clone(),
                    workload: None,
                    reason,
                });
            }
        }
    }
    if active.is_empty() {
        return Err("none of the targets asked for can run here (see the messages above)".into());
    }
    for name in &active {
        let spec = TargetSpec::parse(name).expect("parsed above");
        for w in &cfg.workloads {
            if !applies(name, w) {
                continue;
            }
            if let Err(reason) = spec.supports(w) {
                session.skipped.push(Skipped {
                    target: name.clone(),
                    workload: Some(w.name.into()),
                    reason,
                });
            }
        }
    }
    let planned: Vec<Planned> = plan(
        &active,
        &cfg.fault_targets,
        &cfg.workloads,
        &cfg.workers,
        cfg.rounds,
        cfg.seed,
    )
    .into_iter()
    .filter(|p| {
        !session
            .skipped
            .iter()
            .any(|s| s.target == p.target && s.workload.as_deref() == Some(p.workload.name))
    })
    .collect();
    session.planned_runs = planned.len();
    // Written now, so that a session killed mid-way still says what it
    // planned (its report then says it is incomplete).
    write_json(&dir.join("session.json"), &session)?;
    let per_run = cfg.warmup + cfg.duration + Duration::from_millis(200);
    let estimate: Duration = planned
        .iter()
        .map(|p| {
            let measured = p
                .workload
                .fault
                .map_or(cfg.duration, |f| Duration::from_millis(f.measured_ms()));
            let warmup =
                TargetSpec::parse(&p.target).map_or(cfg.warmup, |t| cfg.warmup.max(t.min_warmup()));
            warmup + measured + Duration::from_millis(200)
        })
        .sum();
    let needs_calibration = cfg.workloads.iter().any(|w| w.capacity_share.is_some());
    let calibrations = if needs_calibration {
        cfg.workers.len()
    } else {
        0
    };
    let bar = ProgressBar::new((planned.len() + calibrations) as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} runs, ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let say = |bar: &ProgressBar, line: String| {
        if tty {
            bar.set_message(line);
        } else {
            eprintln!("harness: {line}");
        }
    };
    eprintln!(
        "harness: {} runs ({} targets x {} workloads x {:?} workers x {} rounds), about {:.0} s; results in {}",
        planned.len(),
        active.len(),
        cfg.workloads.len(),
        cfg.workers,
        cfg.rounds,
        (estimate + per_run * calibrations as u32).as_secs_f64(),
        dir.display()
    );

    let mut ended_early = None;
    let mut records: Vec<RunRecord> = Vec::new();
    // Calibration: capacity per worker count, for the open-loop workloads.
    if needs_calibration {
        for &workers in &cfg.workers {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            say(&bar, format!("calibrating capacity with {workers} workers"));
            let args: Vec<String> = [
                "--mode",
                "keepalive",
                "--connections",
                "64",
                "--path",
                CALIBRATION_PATH,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let place = placement(&environment.cpus_allowed, workers);
            let probe = Planned {
                target: "reuseport".into(),
                workload: &crate::model::workload::WORKLOADS[0],
                workers,
                round: 0,
            };
            let spec = RunSpec {
                bins,
                remote,
                planned: &probe,
                workload_args: &args,
                rate: None,
                duration: cfg.duration.max(Duration::from_secs(1)),
                warmup: cfg.warmup,
                place: &place,
                dir: &dir,
                index: 0,
                ready_timeout: cfg.ready_timeout,
            };
            match run_one(&spec, stop) {
                Ok(r) => session.calibration.push(Calibration {
                    workers,
                    target: "reuseport".into(),
                    loadgen_args: args,
                    capacity_rps: r.loadgen.throughput_rps,
                }),
                Err(e) => {
                    ended_early = Some(format!("calibration with {workers} workers failed: {e}"));
                    break;
                }
            }
            bar.inc(1);
        }
        write_json(&dir.join("session.json"), &session)?;
    }
    if ended_early.is_none() {
        for (i, p) in planned.iter().enumerate() {
            if stop.load(Ordering::Relaxed) {
                ended_early = Some(format!(
                    "interrupted after {} of {} runs",
                    records.len(),
                    planned.len()
                ));
                break;
            }
            let capacity = session
                .calibration
                .iter()
                .find(|c| c.workers == p.workers)
                .map(|c| c.capacity_rps);
            let rate = p
                .workload
                .capacity_share
                .and_then(|share| capacity.map(|c| (c * share).max(1.0)));
            say(
                &bar,
                format!(
                    "{} / {} / {} workers / round {}",
                    p.target, p.workload.name, p.workers, p.round
                ),
            );
            let place = placement(&environment.cpus_allowed, p.workers);
            let mut args: Vec<String> = p.workload.args.iter().map(|s| s.to_string()).collect();
            if let (Some(fault), Some(rate), Some(capacity)) = (p.workload.fault, rate, capacity) {
                args.extend(faults::loadgen_args(&fault, rate, capacity));
            }
            let duration = p
                .workload
                .fault
                .map_or(cfg.duration, |f| Duration::from_millis(f.measured_ms()));
            let spec = RunSpec {
                bins,
                remote,
                planned: p,
                workload_args: &args,
                rate,
                duration,
                warmup: cfg.warmup,
                place: &place,
                dir: &dir,
                index: i + 1,
                ready_timeout: cfg.ready_timeout,
            };
            match run_one(&spec, stop) {
                Ok(record) => {
                    write_json(&dir.join(record.file_name()), &record)?;
                    records.push(record);
                    session.completed_runs = records.len();
                }
                Err(e) => {
                    ended_early = Some(if stop.load(Ordering::Relaxed) {
                        format!(
                            "interrupted after {} of {} runs",
                            records.len(),
                            planned.len()
                        )
                    } else {
                        format!(
                            "{} / {} / {} workers failed: {e}",
                            p.target, p.workload.name, p.workers
                        )
                    });
                    break;
                }
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    session.ended_early = ended_early.clone();
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
    let summary = summarize(session, records, now_ms())?;
    write_json(&dir.join("summary.json"), &summary)?;
    crate::report::render(&summary, dir)?;
    Ok(summary)
}
