//! One run: start the server, load it while watching the kernel and its
//! processes (and injecting the scenario's fault), stop it, and return the
//! run record.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::analyse::steadiness::{judge, plateau, probe_slices};
use crate::measure::faults::{self, Injector, MigrateReq, Victims};
use crate::measure::kernel::{self, usage_delta, QueueSampler};
use crate::measure::noise::NoiseProbe;
use crate::measure::procs::{run_loadgen, Binaries};
use crate::measure::remote::Remote;
use crate::measure::targets::{Running, StartCtx, TargetSpec};
use crate::model::faults::{FaultRecord, Surge};
use crate::model::names::migrate_req;
use crate::model::record::{
    KernelSide, Noise, Pinning, ProbeSlice, ProcRecord, RemoteRun, RunRecord, ServerSide,
    Steadiness, WorkerRequests, RUN_SCHEMA,
};
use crate::model::remote::PartJson;
use crate::model::workload::Fault;

use super::plan::Planned;
use super::remote::RemoteSetup;
use super::{now_ms, Placement, QUEUE_SAMPLE};

/// Everything one run needs to know.
pub(super) struct RunSpec<'a> {
    /// The lab's binaries.
    pub bins: &'a Binaries,
    /// The session's other hosts, if any.
    pub remote: Option<&'a RemoteSetup>,
    /// Target, workload, workers and round.
    pub planned: &'a Planned,
    /// loadgen arguments of the workload (with an overload's rate steps).
    pub workload_args: &'a [String],
    /// Open loop: the rate offered, req/s.
    pub rate: Option<f64>,
    /// Measured time.
    pub duration: Duration,
    /// The least warm-up (the run is warmed until steady, from this on).
    pub warmup: Duration,
    /// The most warm-up (`None`: the target's own cap,
    /// [`TargetSpec::warmup_cap`]).
    pub warmup_cap: Option<Duration>,
    /// CPUs of the server and of the generator.
    pub place: &'a Placement,
    /// The session directory.
    pub dir: &'a Path,
    /// Position in the session's run order (0: calibration).
    pub index: usize,
    /// How long the server may take to serve.
    pub ready_timeout: Duration,
    /// TEST ONLY: extra µs of CPU per request for a lab target (0 normally).
    pub inject_cpu_us: u64,
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// One run: start the server, load it, collect, stop it.
pub(super) fn run_one(spec: &RunSpec<'_>, stop: &AtomicBool) -> Result<RunRecord, String> {
    let RunSpec {
        bins,
        remote,
        planned: p,
        workload_args,
        rate,
        duration,
        warmup,
        warmup_cap,
        place,
        dir,
        index,
        ready_timeout,
        inject_cpu_us,
    } = *spec;
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
    let warmup_cap = warmup_cap.unwrap_or_else(|| spec.warmup_cap()).max(warmup);
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
        inject_cpu_us,
        keep_alive: p.workload.keeps_alive(),
    };
    let started_server = match (remote, &spec) {
        (Some(r), TargetSpec::Lab(strategy)) => match (&r.remote.server_host, &r.server_ip) {
            (Some(host), Some(ip)) => crate::measure::targets::remote_lab::start(
                &r.remote.ssh,
                host,
                ip,
                strategy,
                p.workers,
                &format!("{}-{index}", std::process::id()),
                ready_timeout,
            ),
            _ => crate::measure::procs::start_lab_server_on(
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
    let result = started_server.and_then(|server| {
        let common = |duration: Duration, warmup: Duration| -> Vec<String> {
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
            if let Some(r) = rate {
                args.extend(["--rate".into(), format!("{r:.1}")]);
            }
            if remote.is_some() {
                // Told to: the hosts were named on the command line.
                args.push("--allow-remote".into());
            }
            args
        };
        let mut args = common(duration, Duration::ZERO);
        args.extend(workload_args.iter().cloned());
        // The probes run the workload without a scenario's rate steps.
        let mut probe_args = common(PROBE, Duration::ZERO);
        probe_args.extend(["--timeline-interval".into(), ms(PROBE_SLICE)]);
        probe_args.extend(p.workload.args.iter().map(|s| s.to_string()));
        let load = Load {
            bins,
            args: &args,
            probe_args: &probe_args,
            loadgen_cpus: &place.loadgen,
            lg_path: &work_dir.join("loadgen.json"),
            warmup_min: warmup.max(spec.min_warmup()),
            warmup_cap,
            jit: spec.jit(),
            duration,
            fault: p.workload.fault,
            generators: remote
                .map(|r| &r.remote)
                .filter(|r| !r.loadgen_hosts.is_empty()),
        };
        measure(server, &load, stop)
    });
    drop(migrate);
    let _ = std::fs::remove_dir_all(&work_dir);
    let Measured {
        loadgen,
        server,
        mut kernel,
        mut fault,
        parts,
        warm,
        noise,
    } = result?;
    let steadiness = steadiness(warm, &loadgen, warmup_cap, p.workload.fault.is_some())?;
    if let (Some(rec), Some(Fault::Overload { from_ms, to_ms, .. })) =
        (fault.as_mut(), p.workload.fault)
    {
        rec.surge = Some(Surge {
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
        remote: remote.map(|r| RemoteRun {
            server_host: r.remote.server_host.as_ref().map(|h| h.name.clone()),
            parts,
        }),
        steadiness: Some(steadiness),
        noise,
    })
}

/// Length of one warm-up probe (one loadgen process).
const PROBE: Duration = Duration::from_millis(500);
/// Its slices (the probe is warm when its timeline has no trend).
const PROBE_SLICE: Duration = Duration::from_millis(100);

/// What the warm-up did.
struct Warm {
    slices: Vec<ProbeSlice>,
    /// Requests the probes got answered, per worker (`X-Worker`).
    by_worker: std::collections::BTreeMap<u32, u64>,
    spent: Duration,
    /// `Err`: the cap was reached; why the slices did not agree.
    warmed: Result<(), String>,
}

/// Warms the server with loadgen probes, back to back, until at least
/// `min` of load has gone by and a probe is steady (the test the measured
/// window gets; for a JIT-compiled server also agreeing with the probe
/// before it), or `cap` has.
fn warm_up(load: &Load<'_>, stop: &AtomicBool) -> Result<Warm, String> {
    let path = load.lg_path.with_file_name("probe.json");
    let mut slices = Vec::new();
    let mut by_worker = std::collections::BTreeMap::new();
    let mut spent = Duration::ZERO;
    loop {
        let r = run_loadgen(
            load.bins,
            load.probe_args,
            load.loadgen_cpus,
            &path,
            PROBE + Duration::from_secs(20),
            stop,
        )
        .map_err(|e| format!("warm-up: {e}"))?;
        spent += PROBE;
        for w in &r.workers {
            *by_worker.entry(w.worker).or_insert(0) += w.requests;
        }
        let now = probe_slices(&r.timeline, PROBE_SLICE.as_secs_f64());
        let mut verdict = judge(&r.timeline).map_err(|e| format!("warm-up: {e}"))?.1;
        if load.jit && verdict.is_ok() {
            let before = slices.len().saturating_sub(now.len());
            verdict = if slices.is_empty() {
                Err("a JIT-compiled server needs two warm-up probes that agree".into())
            } else {
                plateau(&slices[before..], &now)
            };
        }
        slices.extend(now);
        let reached_min = spent >= load.warmup_min;
        if reached_min && verdict.is_ok() || spent >= load.warmup_cap {
            let warmed = if reached_min {
                verdict
            } else {
                Err(format!(
                    "the cap came before the target's least warm-up ({:.1} s)",
                    load.warmup_min.as_secs_f64()
                ))
            };
            return Ok(Warm {
                slices,
                by_worker,
                spent,
                warmed,
            });
        }
    }
}

/// The run's steadiness: its warm-up, and its measured window's trend (a
/// fault scenario's window is disturbed on purpose: only its warm-up counts).
fn steadiness(
    warm: Warm,
    loadgen: &loadgen::result::LoadResult,
    cap: Duration,
    fault: bool,
) -> Result<Steadiness, String> {
    let (trend, measured) = judge(&loadgen.timeline)?;
    let why_not = match (&warm.warmed, fault) {
        (Err(why), _) => Some(format!(
            "still warming at the {:.1} s warm-up cap: {why}",
            cap.as_secs_f64()
        )),
        (Ok(()), false) => measured.err().map(|e| format!("measured window: {e}")),
        (Ok(()), true) => None,
    };
    Ok(Steadiness {
        warmup_s: warm.spent.as_secs_f64(),
        warmup_cap_s: cap.as_secs_f64(),
        slice_s: PROBE_SLICE.as_secs_f64(),
        warmup_slices: warm.slices,
        warmup_requests_by_worker: warm
            .by_worker
            .into_iter()
            .map(|(worker, requests)| WorkerRequests { worker, requests })
            .collect(),
        warmed: warm.warmed.is_ok(),
        trend,
        steady: why_not.is_none(),
        why_not,
    })
}

/// The load of one run, and where it comes from.
struct Load<'a> {
    bins: &'a Binaries,
    /// loadgen's arguments.
    args: &'a [String],
    /// A warm-up probe's arguments.
    probe_args: &'a [String],
    /// CPUs of a generator on this machine.
    loadgen_cpus: &'a [usize],
    /// Where loadgen writes its JSON result.
    lg_path: &'a Path,
    /// The least warm-up.
    warmup_min: Duration,
    /// The most.
    warmup_cap: Duration,
    /// The target compiles its hot paths while serving (needs a plateau).
    jit: bool,
    duration: Duration,
    /// The scenario's fault, if any.
    fault: Option<Fault>,
    /// Generators on other hosts (`None`: one generator here).
    generators: Option<&'a Remote>,
}

/// What [`measure`] collects.
struct Measured {
    loadgen: loadgen::result::LoadResult,
    server: ServerSide,
    kernel: KernelSide,
    fault: Option<FaultRecord>,
    /// Each remote generator's part (empty: one generator here).
    parts: Vec<PartJson>,
    /// The warm-up.
    warm: Warm,
    /// What else ran during the measured window.
    noise: Option<Noise>,
}

/// Loads a started server and collects what the kernel and its processes
/// show meanwhile; stops it in every case.
fn measure(
    server: Box<dyn Running>,
    load: &Load<'_>,
    stop: &AtomicBool,
) -> Result<Measured, String> {
    let warm = match warm_up(load, stop) {
        Ok(w) => w,
        Err(e) => {
            let _ = server.stop(Duration::from_secs(5));
            return Err(e);
        }
    };
    let Load {
        bins,
        args,
        loadgen_cpus,
        lg_path,
        duration,
        fault,
        generators,
        ..
    } = *load;
    // The server is warm: the measured loadgen has no warm-up of its own,
    // so every request it sends is in its per-worker tallies (with the
    // probes', what the server served, exactly).
    let warmup = Duration::ZERO;
    let (master_pid, worker_pids) = (server.master_pid(), server.worker_pids());
    let mut pids = vec![master_pid];
    pids.extend(&worker_pids);
    let before: Vec<_> = pids.iter().map(|&pid| (pid, server.usage(pid))).collect();
    let counters_before = server.kernel_counters();
    // Accept queues are sampled on this machine only (sock_diag, see
    // measure::sockdiag), so for a local server only.
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
    let mut parts = Vec::new();
    let noise_probe = NoiseProbe::start();
    let loadgen = match generators {
        Some(g) => crate::measure::remote::run_loadgens(
            g,
            &bins.loadgen,
            args,
            lg_path.parent().unwrap_or(Path::new(".")),
            lg_path,
            hang_guard,
            stop,
        )
        .map(|(merged, p)| {
            parts = p;
            merged
        }),
        None => run_loadgen(bins, args, loadgen_cpus, lg_path, hang_guard, stop),
    };
    let noise = noise_probe.finish();
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
    Ok(Measured {
        loadgen,
        server: ServerSide {
            master_pid,
            worker_pids,
            processes,
            stats: stats?,
        },
        kernel: KernelSide {
            counters: kernel::delta(&counters_before, &counters_after),
            accept_queue,
            tcp_migrate_req: None,
        },
        fault,
        parts,
        warm,
        noise,
    })
}
