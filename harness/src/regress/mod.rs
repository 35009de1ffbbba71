//! `harness regress`: does a change make the server slower, its tail longer,
//! its spread less fair, or make it fail, on a noisy 2-core CI machine?
//!
//! Two ways to ask:
//! 1. **Two builds on one machine** (`--baseline-bin`, or `--baseline-rev`
//!    built into a temporary directory, against `--candidate-bin`, by default
//!    the lab-server beside the harness): baseline and candidate run in
//!    interleaved rounds (A B, B A, A B, ...), each round pairs them, and each
//!    metric's per-round candidate/baseline ratios get a bootstrap 95%
//!    confidence interval of their median. Only a change that is significant
//!    (the interval excludes no change) *and* larger than the metric's minimum
//!    effect counts.
//! 2. **A committed baseline from another machine** (`--baseline FILE`,
//!    written by `--save-baseline`): absolute speed does not carry across
//!    machines, so only what does is gated: errors, Jain's index of
//!    connections, each strategy's throughput relative to `reuseport`
//!    measured in the same round, and throughput normalised by a CPU
//!    calibration measured in the same run (wide tolerance: CPU speed and
//!    syscall cost do not scale together across machines).
//!
//! Besides the closed-loop run (throughput, p99, Jain's index, errors),
//! every strategy, build and round gets one open-loop run at a fixed offered
//! load ([`OPEN_LOOP_SHARE`] of the baseline build's closed-loop throughput
//! in that round), in its own server start, that measures the server's CPU
//! time (master and workers apart) and voluntary context switches per
//! request: these separate builds and mechanisms even where throughput, on
//! 2 CPUs shared with the generator, cannot. Same machine: judged like
//! throughput (`--min-effect-cpu`, `--min-effect-vcs`). Saved baseline: CPU
//! per request relative to the yardstick in the same round.
//!
//! Exit codes: 0 no regression, 3 regression, 1 error (e.g. a missing or
//! unreadable baseline), 2 bad options.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::analyse::stats::jain;

pub mod judge;
pub mod revision;

use crate::measure::kernel::{proc_usage, usage_delta};
use crate::measure::procs::{run_loadgen, start_lab_server_with, Binaries};
use crate::model::environment::Environment;
use judge::{
    bootstrap_median_ci, cross_machine, errors_verdict, judge_ratios, summarize_candidate,
};

/// Exit code of a found regression.
pub const EXIT_REGRESSION: i32 = 3;
/// Version tag of a saved baseline.
pub const BASELINE_SCHEMA: &str = "prefork-lab.harness.regress-baseline.v1";

/// The strategies checked by default: one per family.
pub const DEFAULT_STRATEGIES: &[&str] = &["master-pass", "shared:epoll", "reuseport"];
/// The yardstick strategy of the cross-machine ratios.
pub const YARDSTICK: &str = "reuseport";
/// The workload: closed loop, keep-alive, 32 connections, 50 µs of CPU per
/// request (so that per-request work, not the generator, sets the pace).
pub const LOAD_ARGS: &[&str] = &[
    "--mode",
    "keepalive",
    "--connections",
    "32",
    "--path",
    "/?cpu_us=50",
];
/// The open-loop run that measures the server's CPU time and context
/// switches per request: the same requests, Poisson arrivals at a fixed
/// offered rate (`--rate`, see [`OPEN_LOOP_SHARE`]), keep-alive connections
/// recycled after 100 requests, so connection intake (the master's work in
/// master-pass) is part of what is measured.
pub const OPEN_LOAD_ARGS: &[&str] = &[
    "--arrivals",
    "poisson",
    "--mode",
    "keepalive",
    "--connections",
    "32",
    "--requests-per-conn",
    "100",
    "--path",
    "/?cpu_us=50",
];
/// The open-loop rate as a share of the closed-loop throughput of the
/// baseline build (of the candidate where there is none: a saved baseline)
/// of the same strategy in the same round: both builds of a round get the
/// same offered load, low enough that neither saturates the 2 CPUs it
/// shares with the generator, so CPU per request compares like with like.
pub const OPEN_LOOP_SHARE: f64 = 0.5;

/// What the check compares the candidate with.
#[derive(Clone, Debug)]
pub enum Baseline {
    /// Another lab-server build, run on this machine in the same session.
    Bin(PathBuf),
    /// A saved baseline file (possibly from another machine).
    File(PathBuf),
}

/// The check's settings.
#[derive(Clone, Debug)]
pub struct RegressConfig {
    /// What to compare with.
    pub baseline: Baseline,
    /// The lab-server build under test.
    pub candidate_bin: PathBuf,
    /// TEST ONLY: extra CPU per request in the candidate (proves detection).
    pub candidate_inject_cpu_us: u64,
    /// Strategies checked.
    pub strategies: Vec<String>,
    /// Paired rounds.
    pub rounds: usize,
    /// Worker processes.
    pub workers: usize,
    /// Measured time per run.
    pub duration: Duration,
    /// Warm-up per run.
    pub warmup: Duration,
    /// Smallest throughput change that counts (0.10 = 10%).
    pub min_effect: f64,
    /// Smallest p99 change that counts.
    pub min_effect_p99: f64,
    /// Smallest change of CPU time per request that counts.
    pub min_effect_cpu: f64,
    /// Smallest change of voluntary context switches per request that counts.
    pub min_effect_vcs: f64,
    /// Write this run's figures as a baseline file.
    pub save_baseline: Option<PathBuf>,
    /// Seed of the bootstrap.
    pub seed: u64,
}

/// One round of one strategy: the baseline build's figures (none against a
/// saved baseline) and the candidate's.
pub type Pair = (Option<Figures>, Figures);

/// One run's figures.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Figures {
    /// Successful requests per second.
    pub throughput_rps: f64,
    /// p99 latency, µs.
    pub p99_us: f64,
    /// Jain's index of connections per worker (server's counts).
    pub jain_connections: f64,
    /// Errors seen by the load generator (closed-loop run).
    pub errors: u64,
    /// Open-loop run: server CPU time (master and workers, all threads) per
    /// request answered, µs.
    #[serde(default)]
    pub cpu_us_per_request: f64,
    /// Of that, the master's.
    #[serde(default)]
    pub master_cpu_us_per_request: f64,
    /// Of that, the workers'.
    #[serde(default)]
    pub workers_cpu_us_per_request: f64,
    /// Open-loop run: voluntary context switches of the master and the
    /// workers (all threads) per request answered.
    #[serde(default)]
    pub vcs_per_request: f64,
    /// The open-loop run's offered rate, req/s.
    #[serde(default)]
    pub open_loop_rate_rps: f64,
}

/// The verdict on one metric of one strategy.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    /// Strategy.
    pub strategy: String,
    /// Metric name.
    pub metric: String,
    /// Change as [low, median, high] of the 95% interval, in percent
    /// (candidate over baseline, minus 1); for absolute metrics the
    /// difference itself.
    pub change: [f64; 3],
    /// Whether this is a regression.
    pub regression: bool,
    /// Why (or why not), in words.
    pub note: String,
}

/// A saved baseline: what carries across machines.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedBaseline {
    /// Always [`BASELINE_SCHEMA`].
    pub schema: String,
    /// Where it was measured.
    pub environment: Environment,
    /// Settings it was measured with.
    pub rounds: usize,
    /// Worker processes.
    pub workers: usize,
    /// Per strategy, medians over rounds.
    pub strategies: Vec<SavedStrategy>,
}

/// One strategy in a saved baseline.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedStrategy {
    /// Strategy.
    pub strategy: String,
    /// Median throughput over [`YARDSTICK`]'s in the same round.
    pub throughput_vs_yardstick: f64,
    /// The lowest per-round value of that ratio: a strategy whose throughput
    /// is bimodal (shared:epoll on 2 CPUs) is gated below its own worst round.
    #[serde(default)]
    pub throughput_vs_yardstick_min: f64,
    /// Median throughput per unit of the run's CPU calibration.
    pub throughput_per_calibration: f64,
    /// Median over rounds of the open-loop server CPU time per request over
    /// [`YARDSTICK`]'s in the same round (0: not measured, as in files
    /// written before it was; not gated).
    #[serde(default)]
    pub cpu_per_request_vs_yardstick: f64,
    /// Median Jain's index of connections.
    pub jain_connections: f64,
    /// Errors, all rounds.
    pub errors: u64,
}

/// A short CPU calibration: million loop iterations of a hash per second.
pub fn cpu_calibration() -> f64 {
    let start = Instant::now();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut n: u64 = 0;
    while start.elapsed() < Duration::from_millis(200) {
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        n += 10_000;
    }
    std::hint::black_box(x);
    n as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// Starts `strategy` of the build `server_bin` for one run of the check,
/// its stats file at `stats_path`; returns the binaries (that build, this
/// loadgen), the server and loadgen's first arguments (target, duration,
/// warm-up).
fn start_for_check(
    server_bin: &Path,
    bins: &Binaries,
    strategy: &str,
    cfg: &RegressConfig,
    extra: &[String],
    stats_path: &Path,
) -> Result<(Binaries, crate::measure::procs::RunningServer, Vec<String>), String> {
    let b = Binaries {
        lab_server: server_bin.to_path_buf(),
        loadgen: bins.loadgen.clone(),
    };
    if let Some(dir) = stats_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let server = start_lab_server_with(
        &b,
        strategy,
        cfg.workers,
        &[],
        stats_path,
        Duration::from_secs(10),
        extra,
    )?;
    let args: Vec<String> = vec![
        "--target".into(),
        server.addr.clone(),
        "--duration".into(),
        format!("{}ms", cfg.duration.as_millis()),
        "--warmup".into(),
        format!("{}ms", cfg.warmup.as_millis()),
    ];
    Ok((b, server, args))
}

fn measure(
    server_bin: &Path,
    bins: &Binaries,
    strategy: &str,
    cfg: &RegressConfig,
    extra: &[String],
    work: &Path,
    stop: &AtomicBool,
) -> Result<Figures, String> {
    let (b, server, mut args) = start_for_check(
        server_bin,
        bins,
        strategy,
        cfg,
        extra,
        &work.join("stats.json"),
    )?;
    args.extend(LOAD_ARGS.iter().map(|s| s.to_string()));
    let lg = run_loadgen(
        &b,
        &args,
        &[],
        &work.join("loadgen.json"),
        cfg.duration + cfg.warmup + Duration::from_secs(20),
        stop,
    );
    let stats = server.stop(Duration::from_secs(5));
    let lg = lg?;
    let stats = stats?.ok_or("lab-server wrote no stats file")?;
    let conns: Vec<f64> = stats.workers.iter().map(|w| w.connections as f64).collect();
    Ok(Figures {
        throughput_rps: lg.throughput_rps,
        p99_us: lg.latency.p99_us as f64,
        jain_connections: jain(&conns),
        errors: lg.errors.total(),
        ..Figures::default()
    })
}

/// The open-loop run's efficiency figures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Efficiency {
    /// Master CPU µs per request.
    pub master_cpu_us_per_request: f64,
    /// Workers' CPU µs per request.
    pub workers_cpu_us_per_request: f64,
    /// Voluntary context switches (master and workers) per request.
    pub vcs_per_request: f64,
    /// The offered rate, req/s.
    pub rate_rps: f64,
}

impl Figures {
    /// Adds an open-loop run's figures.
    pub fn with_efficiency(mut self, e: Efficiency) -> Figures {
        self.master_cpu_us_per_request = e.master_cpu_us_per_request;
        self.workers_cpu_us_per_request = e.workers_cpu_us_per_request;
        self.cpu_us_per_request = e.master_cpu_us_per_request + e.workers_cpu_us_per_request;
        self.vcs_per_request = e.vcs_per_request;
        self.open_loop_rate_rps = e.rate_rps;
        self
    }
}

/// Requests the server answered in a loadgen process, warm-up included (the
/// usage is read around the whole process): successes and errors, less the
/// requests the server never saw (`unsent`: due but never sent, counted as
/// `unfinished` errors; failed idle reconnects, which carry no request).
pub fn requests_answered(lg: &loadgen::result::LoadResult) -> u64 {
    (lg.ok + lg.errors.total() + lg.warmup.ok + lg.warmup.errors)
        .saturating_sub(lg.unsent + lg.idle_connect_errors)
}

fn usage_of(pid: i32, what: &str) -> Result<crate::model::kernel::ProcUsage, String> {
    proc_usage(pid).ok_or_else(|| format!("lab-server's {what} (pid {pid}) is gone"))
}

/// One open-loop run at `rate_rps` in its own server start: the server's
/// CPU time and voluntary context switches, read just before and just after
/// the loadgen process, per request answered.
#[allow(clippy::too_many_arguments)]
fn measure_open(
    server_bin: &Path,
    bins: &Binaries,
    strategy: &str,
    cfg: &RegressConfig,
    extra: &[String],
    work: &Path,
    stop: &AtomicBool,
    rate_rps: f64,
    seed: u64,
) -> Result<Efficiency, String> {
    let (b, server, mut args) = start_for_check(
        server_bin,
        bins,
        strategy,
        cfg,
        extra,
        &work.join("stats-open.json"),
    )?;
    args.extend([
        "--rate".into(),
        format!("{:.0}", rate_rps.max(1.0)),
        "--seed".into(),
        seed.to_string(),
    ]);
    args.extend(OPEN_LOAD_ARGS.iter().map(|s| s.to_string()));
    let read = |server: &crate::measure::procs::RunningServer| {
        let master = usage_of(server.master_pid, "master")?;
        let workers = server
            .worker_pids
            .iter()
            .map(|&p| usage_of(p, "worker"))
            .collect::<Result<Vec<_>, String>>()?;
        Ok::<_, String>((master, workers))
    };
    let before = read(&server)?;
    let lg = run_loadgen(
        &b,
        &args,
        &[],
        &work.join("loadgen-open.json"),
        cfg.duration + cfg.warmup + Duration::from_secs(20),
        stop,
    );
    let after = read(&server);
    let _ = server.stop(Duration::from_secs(5));
    let (lg, after) = (lg?, after?);
    let requests = requests_answered(&lg).max(1) as f64;
    let master = usage_delta(before.0, after.0);
    let workers = before
        .1
        .iter()
        .zip(&after.1)
        .map(|(b, a)| usage_delta(*b, *a))
        .fold((0u64, 0u64), |(cpu, vcs), u| {
            (cpu + u.cpu_us, vcs + u.voluntary_ctxt_switches)
        });
    Ok(Efficiency {
        master_cpu_us_per_request: master.cpu_us as f64 / requests,
        workers_cpu_us_per_request: workers.0 as f64 / requests,
        vcs_per_request: (master.voluntary_ctxt_switches + workers.1) as f64 / requests,
        rate_rps,
    })
}

/// The outcome of a check.
#[derive(Debug)]
pub struct Outcome {
    /// One verdict per strategy and metric.
    pub verdicts: Vec<Verdict>,
    /// Wall time of the check.
    pub wall: Duration,
}

impl Outcome {
    /// Whether any verdict is a regression.
    pub fn regressed(&self) -> bool {
        self.verdicts.iter().any(|v| v.regression)
    }
}

/// Runs the check.
pub fn run(cfg: &RegressConfig, stop: &AtomicBool) -> Result<Outcome, String> {
    let started = Instant::now();
    let bins = Binaries::locate()?;
    let saved = match &cfg.baseline {
        Baseline::File(p) => Some(read_baseline(p)?),
        Baseline::Bin(p) if !p.is_file() => {
            return Err(format!("--baseline-bin {}: no such file", p.display()))
        }
        Baseline::Bin(_) => None,
    };
    if !cfg.candidate_bin.is_file() {
        return Err(format!(
            "--candidate-bin {}: no such file",
            cfg.candidate_bin.display()
        ));
    }
    let work = std::env::temp_dir().join(format!("harness-regress-{}", std::process::id()));
    let mut cand_extra = Vec::new();
    if cfg.candidate_inject_cpu_us > 0 {
        cand_extra = vec![
            "--test-only-inject-cpu-us".to_string(),
            cfg.candidate_inject_cpu_us.to_string(),
        ];
    }
    // figures[strategy][round] = (baseline, candidate)
    let mut figures: Vec<Vec<(Option<Figures>, Figures)>> = vec![Vec::new(); cfg.strategies.len()];
    let mut calibration = Vec::new();
    let result = (|| -> Result<(), String> {
        for round in 0..cfg.rounds {
            calibration.push(cpu_calibration());
            for (i, s) in cfg.strategies.iter().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    return Err("interrupted".into());
                }
                let cand = |w: &str| {
                    measure(
                        &cfg.candidate_bin,
                        &bins,
                        s,
                        cfg,
                        &cand_extra,
                        &work.join(w),
                        stop,
                    )
                };
                // The open-loop runs of a round share one arrival seed, so
                // both builds get the same arrivals.
                let seed = (round as u64 + 1) * 1000 + i as u64;
                let cand_open = |rate: f64| {
                    measure_open(
                        &cfg.candidate_bin,
                        &bins,
                        s,
                        cfg,
                        &cand_extra,
                        &work.join("c"),
                        stop,
                        rate,
                        seed,
                    )
                };
                let pair = match &cfg.baseline {
                    Baseline::Bin(base_bin) => {
                        let base =
                            |w: &str| measure(base_bin, &bins, s, cfg, &[], &work.join(w), stop);
                        let base_open = |rate: f64| {
                            measure_open(
                                base_bin,
                                &bins,
                                s,
                                cfg,
                                &[],
                                &work.join("b"),
                                stop,
                                rate,
                                seed,
                            )
                        };
                        // A B in even rounds, B A in odd ones: first the
                        // closed-loop runs, then (at a share of the
                        // baseline's closed-loop throughput) the open-loop
                        // ones, in the same order.
                        let (b, c) = if round % 2 == 0 {
                            let b = base("b")?;
                            (b, cand("c")?)
                        } else {
                            let c = cand("c")?;
                            (base("b")?, c)
                        };
                        let rate = OPEN_LOOP_SHARE * b.throughput_rps;
                        let (be, ce) = if round % 2 == 0 {
                            let be = base_open(rate)?;
                            (be, cand_open(rate)?)
                        } else {
                            let ce = cand_open(rate)?;
                            (base_open(rate)?, ce)
                        };
                        (Some(b.with_efficiency(be)), c.with_efficiency(ce))
                    }
                    Baseline::File(_) => {
                        let c = cand("c")?;
                        let ce = cand_open(OPEN_LOOP_SHARE * c.throughput_rps)?;
                        (None, c.with_efficiency(ce))
                    }
                };
                let eff = |f: &Figures| {
                    format!(
                        "{:.0} req/s, {:.1} CPU µs/req ({:.1} master), {:.2} vcs/req",
                        f.throughput_rps,
                        f.cpu_us_per_request,
                        f.master_cpu_us_per_request,
                        f.vcs_per_request
                    )
                };
                eprintln!(
                    "harness: regress round {}/{} {s} (open loop at {:.0} req/s): candidate {}{}",
                    round + 1,
                    cfg.rounds,
                    pair.1.open_loop_rate_rps,
                    eff(&pair.1),
                    pair.0
                        .map(|b| format!("; baseline {}", eff(&b)))
                        .unwrap_or_default()
                );
                figures[i].push(pair);
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&work);
    result?;
    let mut verdicts = Vec::new();
    for (i, s) in cfg.strategies.iter().enumerate() {
        let f = &figures[i];
        let errors: u64 = f.iter().map(|(_, c)| c.errors).sum();
        if let Some(saved) = &saved {
            verdicts.extend(cross_machine(
                s,
                f,
                &figures,
                &cfg.strategies,
                &calibration,
                saved,
            ));
        } else {
            let ratio = |g: fn(&Figures) -> f64| -> Vec<f64> {
                f.iter()
                    .map(|(b, c)| g(c) / g(b.as_ref().expect("two-build mode")).max(1e-9))
                    .collect()
            };
            let seed = cfg.seed.wrapping_add(i as u64);
            verdicts.push(judge_ratios(
                s,
                "throughput",
                &ratio(|x| x.throughput_rps),
                true,
                cfg.min_effect,
                seed,
            ));
            verdicts.push(judge_ratios(
                s,
                "p99",
                &ratio(|x| x.p99_us),
                false,
                cfg.min_effect_p99,
                seed + 1,
            ));
            let mut cpu = judge_ratios(
                s,
                "cpu_per_request",
                &ratio(|x| x.cpu_us_per_request),
                false,
                cfg.min_effect_cpu,
                seed + 3,
            );
            cpu.note = format!("{}; {}", cpu.note, cpu_split(f));
            verdicts.push(cpu);
            verdicts.push(judge_ratios(
                s,
                "vcs_per_request",
                &ratio(|x| x.vcs_per_request),
                false,
                cfg.min_effect_vcs,
                seed + 4,
            ));
            let diffs: Vec<f64> = f
                .iter()
                .map(|(b, c)| c.jain_connections - b.unwrap_or_default().jain_connections)
                .collect();
            let [lo, mid, hi] = bootstrap_median_ci(&diffs, seed + 2);
            let regression = hi < 0.0 && mid < -0.1;
            verdicts.push(Verdict {
                strategy: s.clone(),
                metric: "jain_connections".into(),
                change: [lo, mid, hi],
                regression,
                note: if regression {
                    "less even, significantly, by more than 0.1".into()
                } else {
                    "no change".into()
                },
            });
            let base_errors: u64 = f.iter().map(|(b, _)| b.unwrap_or_default().errors).sum();
            verdicts.push(errors_verdict(s, base_errors, errors));
        }
    }
    if let Some(path) = &cfg.save_baseline {
        let saved = SavedBaseline {
            schema: BASELINE_SCHEMA.into(),
            environment: crate::measure::environment::capture(),
            rounds: cfg.rounds,
            workers: cfg.workers,
            strategies: cfg
                .strategies
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    summarize_candidate(s, &figures[i], &figures, &cfg.strategies, &calibration)
                })
                .collect(),
        };
        crate::store::results::write_json(path, &saved)?;
    }
    Ok(Outcome {
        verdicts,
        wall: started.elapsed(),
    })
}

/// The medians of master and worker CPU per request, baseline and
/// candidate, for the note of the CPU verdict.
fn cpu_split(f: &[Pair]) -> String {
    let med = |g: &dyn Fn(&Pair) -> f64| {
        crate::analyse::stats::median(&f.iter().map(g).collect::<Vec<_>>())
    };
    format!(
        "median µs/req master+workers: baseline {:.1}+{:.1}, candidate {:.1}+{:.1}",
        med(&|p| p.0.unwrap_or_default().master_cpu_us_per_request),
        med(&|p| p.0.unwrap_or_default().workers_cpu_us_per_request),
        med(&|p| p.1.master_cpu_us_per_request),
        med(&|p| p.1.workers_cpu_us_per_request),
    )
}

/// Reads a saved baseline, with errors that say what to do.
pub fn read_baseline(path: &Path) -> Result<SavedBaseline, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!("cannot read the baseline {}: {e}; create one with `harness regress --save-baseline {}`", path.display(), path.display())
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("the baseline {} is not JSON: {e}", path.display()))?;
    match v.get("schema").and_then(|s| s.as_str()) {
        Some(BASELINE_SCHEMA) => {}
        other => {
            return Err(format!(
                "the baseline {} has schema {other:?}, expected {BASELINE_SCHEMA:?}; re-create it with `harness regress --save-baseline`",
                path.display()
            ))
        }
    }
    serde_json::from_value(v)
        .map_err(|e| format!("the baseline {} is not valid: {e}", path.display()))
}

/// Prints the verdicts like criterion: `change: [-2.1% +0.4% +2.9%]`.
pub fn print(outcome: &Outcome) {
    for v in &outcome.verdicts {
        let unit = if v.metric.starts_with("jain") || v.metric == "errors" {
            ""
        } else {
            "%"
        };
        println!(
            "{:24} {:34} change: [{:+.1}{unit} {:+.1}{unit} {:+.1}{unit}]  {}{}",
            v.strategy,
            v.metric,
            v.change[0],
            v.change[1],
            v.change[2],
            if v.regression { "REGRESSION: " } else { "" },
            v.note
        );
    }
    println!(
        "{} in {:.0} s",
        if outcome.regressed() {
            "regression found"
        } else {
            "no regression"
        },
        outcome.wall.as_secs_f64()
    );
}
