//! Running a session: calibrate, run the planned matrix with a progress bar,
//! write each run as it ends, then analyse and report.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};

use crate::analysis;
use crate::environment::Environment;
use crate::faults::{self, Injector, MigrateReq, Victims};
use crate::kernel::{self, usage_delta, QueueSampler};
use crate::matrix::{plan, Planned, Workload, CALIBRATION_PATH};
use crate::procs::{run_loadgen, Binaries};
use crate::record::{KernelSide, Pinning, ProcRecord, RunRecord, ServerSide, RUN_SCHEMA};
use crate::remote::{Host, Remote, RemoteJson, Ssh};
use crate::results::{create_session_dir, update_latest, write_json};
use crate::session::{Session, SESSION_SCHEMA};
use crate::summary::{BenchConfigJson, Calibration, Skipped, Summary, SCHEMA};
use crate::targets::migrate_req;
use crate::targets::{Running, StartCtx, TargetSpec};
use crate::warnings::Warning;

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

/// `--loadgen-host`, `--server-host`, `--ssh-config`.
#[derive(Clone, Debug, Default)]
pub struct RemoteOpts {
    /// Where loadgen runs (empty: here).
    pub loadgen_hosts: Vec<Host>,
    /// Where lab-server runs.
    pub server_host: Option<Host>,
    /// `ssh -F`.
    pub ssh_config: Option<PathBuf>,
}

/// A session's connected hosts.
struct RemoteSetup {
    remote: Remote,
    /// The address a server here listens on so that the generators reach it.
    listen_ip: String,
    /// The server host's address, as the generators reach it.
    server_ip: Option<String>,
}

impl RemoteSetup {
    /// Connects to every host and copies the binaries each needs; the first
    /// failure is one line that names the host.
    fn connect(o: &RemoteOpts, bins: &Binaries) -> Result<RemoteSetup, String> {
        let ssh = Ssh::new(o.ssh_config.clone())?;
        let mut hosts = o.loadgen_hosts.clone();
        hosts.extend(o.server_host.clone());
        Self::connect_with(o, bins, ssh.clone()).inspect_err(|_| ssh.close(&hosts))
    }

    fn connect_with(o: &RemoteOpts, bins: &Binaries, ssh: Ssh) -> Result<RemoteSetup, String> {
        let mut listen_ip = None;
        for h in &o.loadgen_hosts {
            let (me, _) = ssh.connect(h)?;
            listen_ip.get_or_insert(me);
            ssh.deploy(h, &bins.loadgen)?;
        }
        let mut server_ip = None;
        if let Some(h) = &o.server_host {
            let (me, there) = ssh.connect(h)?;
            listen_ip.get_or_insert(me);
            server_ip = Some(there);
            ssh.deploy(h, &bins.lab_server)?;
        }
        Ok(RemoteSetup {
            remote: Remote {
                ssh,
                loadgen_hosts: o.loadgen_hosts.clone(),
                server_host: o.server_host.clone(),
            },
            listen_ip: listen_ip.unwrap_or_else(|| "127.0.0.1".into()),
            server_ip,
        })
    }

    fn hosts(&self) -> Vec<Host> {
        let mut v = self.remote.loadgen_hosts.clone();
        v.extend(self.remote.server_host.clone());
        v
    }
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

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
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
    let environment = Environment::capture();
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
            if !crate::targets::applies(name, w) {
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
                workload: &crate::matrix::WORKLOADS[0],
                workers,
                round: 0,
            };
            match run_one(
                bins,
                remote,
                &probe,
                &args,
                None,
                cfg.duration.max(Duration::from_secs(1)),
                cfg.warmup,
                &place,
                &dir,
                0,
                cfg.ready_timeout,
                stop,
            ) {
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
            match run_one(
                bins,
                remote,
                p,
                &args,
                rate,
                duration,
                cfg.warmup,
                &place,
                &dir,
                i + 1,
                cfg.ready_timeout,
                stop,
            ) {
                Ok(record) => {
                    write_json(&dir.join(analysis::run_file_name(&record)), &record)?;
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

/// Analyses the runs of a session and writes `summary.json` and the report.
pub fn finish(dir: &Path, session: &Session, records: &[RunRecord]) -> Result<Summary, String> {
    let summary = summarize(session, records)?;
    write_json(&dir.join("summary.json"), &summary)?;
    crate::report::render(&summary, dir)?;
    Ok(summary)
}

/// The summary of a session's runs (pure: no I/O).
pub fn summarize(session: &Session, records: &[RunRecord]) -> Result<Summary, String> {
    // The fault scenarios get their own analysis ("Under faults"), not the
    // steady-load cells.
    let named = |fault: bool| -> Vec<String> {
        session
            .config
            .workloads
            .iter()
            .filter(|w| w.fault.is_some() == fault)
            .map(|w| w.name.clone())
            .collect()
    };
    let (scenarios, workload_names) = (named(true), named(false));
    let cells = analysis::cells(records, &session.config.targets, &workload_names)?;
    let faults = crate::fault_analysis::fault_cells(records, &session.config.targets, &scenarios)?;
    let mut warnings = Vec::new();
    let max_workers = session.config.workers.iter().copied().max().unwrap_or(1);
    if session.environment.cpus_allowed.len() <= max_workers {
        warnings.push(Warning::SharedCpus {
            cpus: session.environment.cpus_allowed.len(),
            workers: max_workers,
        });
    }
    warnings.extend(analysis::cell_warnings(&cells, records));
    if records.len() < session.planned_runs {
        warnings.push(Warning::Incomplete {
            completed: records.len(),
            planned: session.planned_runs,
            why: session.ended_early.clone().unwrap_or_else(|| {
                "it stopped without saying why: the harness was probably killed".into()
            }),
        });
    }
    Ok(Summary {
        schema: SCHEMA.into(),
        created_unix_ms: now_ms(),
        environment: session.environment.clone(),
        config: session.config.clone(),
        calibration: session.calibration.clone(),
        winners: analysis::winners(&cells),
        findings: analysis::findings(&cells),
        comparisons: analysis::comparisons(&cells),
        skipped: session.skipped.clone(),
        fault_findings: crate::fault_analysis::fault_findings(&faults),
        faults,
        cells,
        warnings,
    })
}

/// One run: start the server, load it, collect, stop it.
#[allow(clippy::too_many_arguments)]
fn run_one(
    bins: &Binaries,
    remote: Option<&RemoteSetup>,
    p: &Planned,
    workload_args: &[String],
    rate: Option<f64>,
    duration: Duration,
    warmup: Duration,
    place: &Placement,
    dir: &Path,
    index: usize,
    ready_timeout: Duration,
    stop: &AtomicBool,
) -> Result<RunRecord, String> {
    let started = Instant::now();
    let started_unix_ms = now_ms();
    // The run's scratch files (server configuration and logs, stats file,
    // loadgen JSON) live in a hidden directory removed after the run; what
    // is kept goes into the run record.
    let work_dir = dir.join("runs").join(format!(".work-{index}"));
    std::fs::create_dir_all(&work_dir)
        .map_err(|e| format!("cannot create {}: {e}", work_dir.display()))?;
    let spec =
        TargetSpec::parse(&p.target).ok_or_else(|| format!("unknown target {:?}", p.target))?;
    let warmup = warmup.max(spec.min_warmup());
    // tcp_migrate_req matters only where a SO_REUSEPORT group exists: the
    // +migrate targets run with 1, the others with 0 (or what the machine
    // has if it cannot be changed: recorded).
    let migrate = if spec.has_reuseport_group() {
        Some(MigrateReq::apply(u64::from(migrate_req(&p.target)))?)
    } else {
        None
    };
    let tcp_migrate_req = migrate
        .as_ref()
        .map_or_else(faults::read_migrate_req, |m| m.in_effect);
    let ctx = StartCtx {
        bins,
        workers: p.workers,
        cpus: &place.server,
        work_dir: &work_dir,
        ready_timeout,
    };
    let started_server = match (remote, &spec) {
        (Some(r), TargetSpec::Lab(strategy)) => match (&r.remote.server_host, &r.server_ip) {
            (Some(host), Some(ip)) => crate::targets::remote_lab::start(
                &r.remote.ssh,
                host,
                ip,
                strategy,
                p.workers,
                &format!("{}-{index}", std::process::id()),
                ready_timeout,
            ),
            _ => crate::procs::start_lab_server_on(
                bins,
                strategy,
                p.workers,
                &place.server,
                &work_dir.join("server-stats.json"),
                ready_timeout,
                &[],
                &r.listen_ip,
            )
            .map(|s| Box::new(s) as Box<dyn Running>),
        },
        _ => spec.start(&ctx),
    };
    let mut parts = Vec::new();
    let result = started_server.and_then(|server| {
        let mut args: Vec<String> = vec![
            "--target".into(),
            server.addr(),
            "--duration".into(),
            ms(duration),
            "--warmup".into(),
            ms(warmup),
            "--threads".into(),
            place.loadgen_threads.to_string(),
            "--seed".into(),
            index.to_string(),
        ];
        args.extend(workload_args.iter().cloned());
        if let Some(r) = rate {
            args.extend(["--rate".into(), format!("{r:.1}")]);
        }
        if remote.is_some() {
            // Told to: the hosts were named on the command line.
            args.push("--allow-remote".into());
        }
        measure(
            bins,
            server,
            &args,
            &place.loadgen,
            &work_dir.join("loadgen.json"),
            (warmup, duration),
            p.workload.fault,
            remote
                .map(|r| &r.remote)
                .filter(|r| !r.loadgen_hosts.is_empty()),
            &mut parts,
            stop,
        )
    });
    drop(migrate);
    let _ = std::fs::remove_dir_all(&work_dir);
    let (loadgen, server, mut kernel, mut fault) = result?;
    if let (Some(rec), Some(crate::matrix::Fault::Overload { from_ms, to_ms, .. })) =
        (fault.as_mut(), p.workload.fault)
    {
        rec.surge = Some(faults::Surge {
            base_rps: rate.unwrap_or(0.0),
            surge_rps: loadgen
                .config
                .rate_steps
                .first()
                .map_or(0.0, |s| s.rate_rps),
            from_ms,
            to_ms,
        });
    }
    kernel.tcp_migrate_req = tcp_migrate_req;
    Ok(RunRecord {
        schema: RUN_SCHEMA.into(),
        index,
        target: p.target.clone(),
        workload: p.workload.name.into(),
        workers: p.workers,
        round: p.round,
        offered_rps: rate,
        started_unix_ms,
        wall_s: started.elapsed().as_secs_f64(),
        pinning: Pinning {
            disjoint: !place.server.is_empty()
                && place.server.iter().all(|c| !place.loadgen.contains(c)),
            server_cpus: place.server.clone(),
            loadgen_cpus: place.loadgen.clone(),
        },
        loadgen,
        server,
        kernel,
        fault,
        remote: remote.map(|r| crate::record::RemoteRun {
            server_host: r.remote.server_host.as_ref().map(|h| h.name.clone()),
            parts,
        }),
    })
}

/// Loads a started server and collects what the kernel and its processes
/// show meanwhile; stops it in every case.
#[allow(clippy::too_many_arguments)]
fn measure(
    bins: &Binaries,
    server: Box<dyn Running>,
    args: &[String],
    loadgen_cpus: &[usize],
    lg_path: &Path,
    (warmup, duration): (Duration, Duration),
    fault: Option<crate::matrix::Fault>,
    generators: Option<&Remote>,
    parts: &mut Vec<crate::remote::PartJson>,
    stop: &AtomicBool,
) -> Result<Measured, String> {
    let (master_pid, worker_pids) = (server.master_pid(), server.worker_pids());
    let mut pids = vec![master_pid];
    pids.extend(&worker_pids);
    let before: Vec<_> = pids.iter().map(|&pid| (pid, server.usage(pid))).collect();
    let counters_before = server.kernel_counters();
    // Accept queues are sampled from this machine's /proc/net/tcp only.
    let sampler = server
        .local()
        .then(|| QueueSampler::start(server.port(), QUEUE_SAMPLE));
    let hang_guard = warmup + duration + Duration::from_secs(20);
    // loadgen's measured window starts `warmup` after it starts, which is
    // now plus the time to exec it (the record has the real times).
    let injector = fault.map(|f| {
        let victims = Victims {
            workers: worker_pids.clone(),
            restart: server.restart_signal(),
            cpu_before: before
                .iter()
                .filter(|(pid, _)| *pid != master_pid)
                .filter_map(|(pid, u)| Some((*pid, u.as_ref()?.cpu_us)))
                .collect(),
        };
        Injector::start(f, victims, Instant::now() + warmup)
    });
    let loadgen = match generators {
        Some(g) => crate::remote::run_loadgens(
            g,
            &bins.loadgen,
            args,
            lg_path.parent().unwrap_or(Path::new(".")),
            lg_path,
            hang_guard,
            stop,
        )
        .map(|(merged, p)| {
            *parts = p;
            merged
        }),
        None => run_loadgen(bins, args, loadgen_cpus, lg_path, hang_guard, stop),
    };
    let fault = injector.map(|i| i.finish(true));
    let accept_queue = sampler.map(QueueSampler::finish).unwrap_or_default();
    let counters_after = server.kernel_counters();
    let processes: Vec<ProcRecord> = before
        .iter()
        .filter_map(|&(pid, b)| {
            let (b, a) = (b?, server.usage(pid)?);
            Some(ProcRecord {
                pid,
                master: pid == master_pid,
                usage: usage_delta(b, a),
            })
        })
        .collect();
    let stats = server.stop(Duration::from_secs(5));
    let loadgen = loadgen?;
    Ok((
        loadgen,
        ServerSide {
            master_pid,
            worker_pids,
            processes,
            stats: stats?,
        },
        KernelSide {
            counters: kernel::delta(&counters_before, &counters_after),
            accept_queue,
            tcp_migrate_req: None,
        },
        fault,
    ))
}

/// What [`measure`] collects.
type Measured = (
    loadgen::result::LoadResult,
    ServerSide,
    KernelSide,
    Option<crate::faults::FaultRecord>,
);
