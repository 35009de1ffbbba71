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
//! Exit codes: 0 no regression, 3 regression, 1 error (e.g. a missing or
//! unreadable baseline), 2 bad options.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::analyse::stats::jain;

pub mod judge;
pub mod revision;

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
    /// Write this run's figures as a baseline file.
    pub save_baseline: Option<PathBuf>,
    /// Seed of the bootstrap.
    pub seed: u64,
}

/// One run's figures.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Figures {
    /// Successful requests per second.
    pub throughput_rps: f64,
    /// p99 latency, µs.
    pub p99_us: f64,
    /// Jain's index of connections per worker (server's counts).
    pub jain_connections: f64,
    /// Errors seen by the load generator.
    pub errors: u64,
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

fn measure(
    server_bin: &Path,
    bins: &Binaries,
    strategy: &str,
    cfg: &RegressConfig,
    extra: &[String],
    work: &Path,
    stop: &AtomicBool,
) -> Result<Figures, String> {
    let b = Binaries {
        lab_server: server_bin.to_path_buf(),
        loadgen: bins.loadgen.clone(),
    };
    let _ = std::fs::create_dir_all(work);
    let stats_path = work.join("stats.json");
    let server = start_lab_server_with(
        &b,
        strategy,
        cfg.workers,
        &[],
        &stats_path,
        Duration::from_secs(10),
        extra,
    )?;
    let mut args: Vec<String> = vec![
        "--target".into(),
        server.addr.clone(),
        "--duration".into(),
        format!("{}ms", cfg.duration.as_millis()),
        "--warmup".into(),
        format!("{}ms", cfg.warmup.as_millis()),
    ];
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
                let pair = match &cfg.baseline {
                    Baseline::Bin(base_bin) => {
                        let base =
                            |w: &str| measure(base_bin, &bins, s, cfg, &[], &work.join(w), stop);
                        // A B in even rounds, B A in odd ones.
                        if round % 2 == 0 {
                            let b = base("b")?;
                            (Some(b), cand("c")?)
                        } else {
                            let c = cand("c")?;
                            (Some(base("b")?), c)
                        }
                    }
                    Baseline::File(_) => (None, cand("c")?),
                };
                eprintln!(
                    "harness: regress round {}/{} {s}: candidate {:.0} req/s{}",
                    round + 1,
                    cfg.rounds,
                    pair.1.throughput_rps,
                    pair.0
                        .map(|b| format!(", baseline {:.0} req/s", b.throughput_rps))
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
