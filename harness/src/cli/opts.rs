//! Command-line options.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use loadgen::duration::parse_duration;

use crate::measure::targets::TargetSpec;
use crate::model::names::{all_targets, DEFAULT_TARGETS, FAULT_TARGETS, STRATEGIES};
use crate::model::remote::Host;
use crate::model::workload::{Workload, WORKLOADS};
use crate::run::{BenchConfig, RemoteOpts};

/// `harness`: run the prefork-lab comparison and report it.
#[derive(Parser, Debug)]
#[command(name = "harness", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the comparison (every strategy x worker counts x workloads, in
    /// interleaved shuffled rounds) and write results and the report.
    Bench(BenchOpts),
    /// Run one experiment: one strategy, one workload.
    Run(RunOpts),
    /// Check a lab-server build for performance regressions against another
    /// build (interleaved on this machine) or a saved baseline; exit 3 on a
    /// regression.
    Regress(RegressOpts),
    /// Trace one target's system calls (strace) for K connections one at a
    /// time and a burst of B: who accepts, how a descriptor travels, where
    /// it is registered. For mechanism, never timing (tracing slows it).
    Trace(TraceOpts),
    /// Trace every twin pair (Node, nginx and Apache beside their lab twins)
    /// into one folder per target and write docs/under-the-hood.md from
    /// those traces: the system calls of each mechanism, quoted and
    /// explained, and each twin checked against its server.
    UnderTheHood(UnderTheHoodOpts),
    /// Re-render summary.json and the report of a results directory from its JSON.
    Report {
        /// A session directory, e.g. results/latest.
        dir: PathBuf,
    },
    /// INTERNAL: keeps a reference server (PROGRAM) so that nothing it starts
    /// outlives the harness (see `measure/guard.rs`).
    #[command(hide = true)]
    Guard(GuardOpts),
}

/// Options of `trace`.
#[derive(Args, Debug)]
pub struct TraceOpts {
    /// A lab strategy or a reference server (master-pass, shared:epoll, node:rr, ...).
    pub target: String,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Connections sent one at a time (the skeleton shows the first).
    #[arg(long, default_value_t = 3)]
    pub connections: usize,
    /// Concurrent connections sent after them.
    #[arg(long, default_value_t = 8)]
    pub burst: usize,
    /// Where sessions go: the trace is written to RESULTS/<UTC>/trace/.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Skip the second pass (scheduler tracepoints in a tracefs instance of
    /// our own: who the kernel woke for each connection, the herd strace
    /// cannot see); it needs root and tracefs.
    #[arg(long)]
    pub no_kernel: bool,
}

/// Options of `under-the-hood`.
#[derive(Args, Debug)]
pub struct UnderTheHoodOpts {
    /// The page to write.
    #[arg(long, default_value = "docs/under-the-hood.md")]
    pub out: PathBuf,
    /// Where the traces go, one folder per target (a previous trace there
    /// is replaced).
    #[arg(long, default_value = "results/under-the-hood")]
    pub traces: PathBuf,
    /// Comma-separated targets (default: every twin pair, Node first).
    #[arg(long, value_delimiter = ',')]
    pub targets: Vec<String>,
    /// Worker processes of each target (4: enough to see a herd).
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Connections sent one at a time.
    #[arg(long, default_value_t = 3)]
    pub connections: usize,
    /// Concurrent connections sent after them.
    #[arg(long, default_value_t = 8)]
    pub burst: usize,
}

/// Options of the hidden `guard` subcommand.
#[derive(Args, Debug)]
pub struct GuardOpts {
    /// The pid of the harness that starts the guard: if the guard's parent
    /// is another process, the harness died already and PROGRAM is not started.
    #[arg(long, value_name = "PID")]
    pub parent: Option<i32>,
    /// PROGRAM and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    pub program: Vec<std::ffi::OsString>,
}

/// Options of `bench`.
#[derive(Args, Debug)]
pub struct BenchOpts {
    /// A look in about a minute: master-pass, shared:epoll and reuseport,
    /// 2 workers, recycled, close, open-50 and the worker crash, 3 rounds of
    /// 500 ms.
    #[arg(long, conflicts_with = "full")]
    pub quick: bool,
    /// The whole matrix: every strategy and reference, every workload, 2 and
    /// 4 workers and the CPU count (about an hour on 2 cores).
    #[arg(long)]
    pub full: bool,
    /// Strategies and reference servers to run, comma-separated [default:
    /// one per mechanism and the variants real servers use (master-pass,
    /// shared:blocking-thread, shared:epoll, shared:epoll-exclusive,
    /// shared:accept-mutex, reuseport) and nginx:reuseport,
    /// nginx:epoll-exclusive, apache:prefork, node:rr where installed; full:
    /// all]. A target
    /// named here runs every workload asked for. NAME@LABEL runs NAME as a
    /// cell of its own (an A/A check: reuseport,reuseport@b).
    #[arg(long, value_delimiter = ',')]
    pub strategies: Vec<String>,
    /// Workloads to run, comma-separated [default: keepalive, recycled,
    /// close, open-50, worker-crash; quick: recycled, close, open-50,
    /// worker-crash; full: all].
    #[arg(long, value_delimiter = ',')]
    pub workloads: Vec<String>,
    /// Worker counts, comma-separated [default: the CPU count, at least 2;
    /// full: 2, 4 and the CPU count].
    #[arg(long, value_delimiter = ',')]
    pub workers: Vec<usize>,
    /// Rounds of the whole matrix, interleaved [default: 5; quick: 3]. A
    /// finding needs at least 3 steady rounds of both cells.
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Measured time per run of a steady workload [default: 1s; quick:
    /// 500ms] (a fault scenario has its own length).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// The least warm-up per run [default: 500ms, one probe]: each run is
    /// warmed with 500 ms probes of its own workload until one is steady
    /// (and, for Node.js, agrees with the one before).
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// The most warm-up per run; past it the run is measured anyway and
    /// marked not steady [default: 10s for Node.js (JIT), 3s for the others].
    #[arg(long, value_parser = parse_duration)]
    pub warmup_cap: Option<Duration>,
    /// TEST ONLY: run lab target TARGET with US extra µs of CPU per request
    /// (repeatable), to show that a real difference becomes a finding.
    #[arg(long, value_name = "TARGET=US", hide = true)]
    pub test_only_inject_cpu_us: Vec<String>,
    /// Where sessions go.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Seed of the run order [default: from the clock].
    #[arg(long)]
    pub seed: Option<u64>,
    /// The lab-server binary to measure [default: the one built beside the harness].
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// A server not ready within this long fails the session.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub ready_timeout: Duration,
    /// Run the load generator on HOST over ssh (user@host, host:port or an
    /// ssh config alias); repeat it to split the load over several hosts.
    #[arg(long, value_name = "HOST")]
    pub loadgen_host: Vec<String>,
    /// Run lab-server on HOST over ssh (lab strategies only).
    #[arg(long, value_name = "HOST")]
    pub server_host: Option<String>,
    /// ssh config file for those hosts (`ssh -F FILE`).
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
}

impl BenchOpts {
    /// The hosts, checked (`None`: everything on this machine).
    fn remote(&self) -> Result<Option<RemoteOpts>, String> {
        if self.loadgen_host.is_empty() && self.server_host.is_none() {
            if self.ssh_config.is_some() {
                return Err(
                    "--ssh-config is for --loadgen-host / --server-host; give a host too".into(),
                );
            }
            return Ok(None);
        }
        let parse = |h: &String, flag: &str| Host::parse(h).map_err(|e| format!("{flag}: {e}"));
        let loadgen_hosts = self
            .loadgen_host
            .iter()
            .map(|h| parse(h, "--loadgen-host"))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(c) = &self.ssh_config {
            if !c.is_file() {
                return Err(format!("--ssh-config {}: no such file", c.display()));
            }
        }
        Ok(Some(RemoteOpts {
            loadgen_hosts,
            server_host: self
                .server_host
                .as_ref()
                .map(|h| parse(h, "--server-host"))
                .transpose()?,
            ssh_config: self.ssh_config.clone(),
        }))
    }
}

/// Options of `run`.
#[derive(Args, Debug)]
pub struct RunOpts {
    /// Strategy.
    #[arg(long)]
    pub strategy: String,
    /// Workload.
    #[arg(long)]
    pub workload: String,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Measured time.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub duration: Duration,
    /// The least warm-up: the run is warmed with 500 ms probes of its
    /// workload until one is steady (for Node.js: and agrees with the one
    /// before).
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub warmup: Duration,
    /// The most warm-up; past it the run is measured anyway and marked not
    /// steady [default: 10s for Node.js (JIT), 3s for the others].
    #[arg(long, value_parser = parse_duration)]
    pub warmup_cap: Option<Duration>,
    /// Where sessions go.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
}

/// Targets by name; `default` when none is named (a reference whose
/// server is not installed is skipped when the bench runs).
fn check_targets(names: &[String], default: &[&str]) -> Result<Vec<String>, String> {
    if names.is_empty() {
        return Ok(default.iter().map(|s| s.to_string()).collect());
    }
    // A former name stands for the current one from here on.
    let names: Vec<String> = names
        .iter()
        .map(|n| crate::model::names::canonical(n))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(format!(
            "{dup:?} is named twice: to run one target under two names, label one (NAME@LABEL, e.g. {dup}@b)"
        ));
    }
    for n in &names {
        if TargetSpec::parse(n).is_none() {
            let all: Vec<&str> = all_targets().collect();
            return Err(format!(
                "unknown strategy {n:?}: choose from {} (a label goes after @: NAME@LABEL, letters, digits, - and _)",
                all.join(", ")
            ));
        }
    }
    Ok(names)
}

fn check_workloads(names: &[String], default: &[&str]) -> Result<Vec<&'static Workload>, String> {
    let names: Vec<String> = if names.is_empty() {
        default.iter().map(|s| s.to_string()).collect()
    } else {
        names.to_vec()
    };
    names
        .iter()
        .map(|n| {
            Workload::by_name(n).ok_or_else(|| {
                let all: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
                format!("unknown workload {n:?}: choose from {}", all.join(", "))
            })
        })
        .collect()
}

fn check_workers(ws: &[usize]) -> Result<(), String> {
    if let Some(w) = ws.iter().find(|&&w| w == 0 || w > 256) {
        return Err(format!("--workers {w}: give worker counts from 1 to 256"));
    }
    Ok(())
}

fn seed_from_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

impl BenchOpts {
    /// Checks the options and fills in the defaults.
    pub fn config(&self) -> Result<BenchConfig, String> {
        let cpus = crate::measure::environment::allowed_cpus().len();
        let all: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
        let all_targets: Vec<&str> = all_targets().collect();
        let (default_targets, default_workloads): (&[&str], &[&str]) = if self.full {
            (&all_targets, &all)
        } else if self.quick {
            (QUICK_TARGETS, QUICK_WORKLOADS)
        } else {
            (DEFAULT_TARGETS, DEFAULT_WORKLOADS)
        };
        let workers = if !self.workers.is_empty() {
            self.workers.clone()
        } else if self.full {
            let mut w = vec![2, 4];
            if cpus > 4 {
                w.push(cpus);
            }
            w
        } else {
            vec![cpus.max(2)]
        };
        check_workers(&workers)?;
        let rounds = self.rounds.unwrap_or(if self.quick { 3 } else { 5 });
        if rounds == 0 {
            return Err("--rounds 0: at least one round is needed".into());
        }
        let duration = self.duration.unwrap_or(if self.quick {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(1)
        });
        if duration.is_zero() {
            return Err("--duration 0s: a run needs some measured time".into());
        }
        let warmup = self.warmup.unwrap_or(Duration::from_millis(500));
        check_warmup_cap(warmup, self.warmup_cap)?;
        let targets = check_targets(&self.strategies, default_targets)?;
        let inject_cpu_us = self
            .test_only_inject_cpu_us
            .iter()
            .map(|x| parse_injection(x, &targets))
            .collect::<Result<Vec<_>, _>>()?;
        // Named targets run every workload asked for; by default the fault
        // scenarios run on one target per mechanism (names::FAULT_TARGETS).
        let fault_targets = if self.strategies.is_empty() {
            targets
                .iter()
                .filter(|t| FAULT_TARGETS.contains(&t.as_str()))
                .cloned()
                .collect()
        } else {
            targets.clone()
        };
        Ok(BenchConfig {
            remote: self.remote()?,
            targets,
            fault_targets,
            workloads: check_workloads(&self.workloads, default_workloads)?,
            workers,
            rounds,
            duration,
            warmup,
            warmup_cap: self.warmup_cap,
            quick: self.quick,
            full: self.full,
            inject_cpu_us,
            results_root: self.results.clone(),
            seed: self.seed.unwrap_or_else(seed_from_clock),
            server_bin: self.server_bin.clone(),
            ready_timeout: self.ready_timeout,
        })
    }
}

/// The default bench's workloads: the burst and the steady spread of
/// keep-alive connections, a connection per request, the tail and the cost
/// at a fixed open-loop load, and a worker that crashes.
const DEFAULT_WORKLOADS: &[&str] = &["keepalive", "recycled", "close", "open-50", "worker-crash"];
/// `--quick`'s targets: one per way of sharing.
const QUICK_TARGETS: &[&str] = &["master-pass", "shared:epoll", "reuseport"];
/// `--quick`'s workloads.
const QUICK_WORKLOADS: &[&str] = &["recycled", "close", "open-50", "worker-crash"];

fn check_warmup_cap(warmup: Duration, cap: Option<Duration>) -> Result<(), String> {
    match cap {
        Some(c) if c < warmup => Err(format!(
            "--warmup-cap {c:?} is shorter than --warmup {warmup:?}: give a cap at least as long as the least warm-up"
        )),
        _ => Ok(()),
    }
}

/// `TARGET=US` of `--test-only-inject-cpu-us`, for a lab target of the session.
fn parse_injection(x: &str, targets: &[String]) -> Result<(String, u64), String> {
    let (t, us) = x.split_once('=').ok_or_else(|| {
        format!("--test-only-inject-cpu-us {x:?}: give TARGET=US, e.g. reuseport@slow=200")
    })?;
    let us: u64 = us
        .parse()
        .map_err(|_| format!("--test-only-inject-cpu-us {x:?}: US must be a whole number"))?;
    if !targets.iter().any(|n| n == t) || !matches!(TargetSpec::parse(t), Some(TargetSpec::Lab(_)))
    {
        return Err(format!(
            "--test-only-inject-cpu-us {x:?}: {t} is not a lab strategy of this session"
        ));
    }
    Ok((t.to_string(), us))
}

impl RunOpts {
    /// One experiment as a one-cell session.
    pub fn config(&self) -> Result<BenchConfig, String> {
        check_workers(&[self.workers])?;
        if self.duration.is_zero() {
            return Err("--duration 0s: a run needs some measured time".into());
        }
        check_warmup_cap(self.warmup, self.warmup_cap)?;
        Ok(BenchConfig {
            remote: None,
            targets: check_targets(std::slice::from_ref(&self.strategy), &[])?,
            fault_targets: vec![self.strategy.clone()],
            workloads: check_workloads(std::slice::from_ref(&self.workload), &[])?,
            workers: vec![self.workers],
            rounds: 1,
            duration: self.duration,
            warmup: self.warmup,
            warmup_cap: self.warmup_cap,
            quick: false,
            full: false,
            inject_cpu_us: Vec::new(),
            results_root: self.results.clone(),
            seed: seed_from_clock(),
            server_bin: None,
            ready_timeout: crate::run::READY_TIMEOUT,
        })
    }
}

/// Options of `regress`.
#[derive(Args, Debug)]
pub struct RegressOpts {
    /// A saved baseline (from --save-baseline), possibly from another machine.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["baseline_bin", "baseline_rev"])]
    pub baseline: Option<PathBuf>,
    /// Another lab-server build to compare with on this machine.
    #[arg(long, value_name = "PATH", conflicts_with = "baseline_rev")]
    pub baseline_bin: Option<PathBuf>,
    /// A git revision to build (into a temporary directory) and compare with.
    #[arg(long, value_name = "REV")]
    pub baseline_rev: Option<String>,
    /// The lab-server build under test [default: the one beside the harness].
    #[arg(long, value_name = "PATH")]
    pub candidate_bin: Option<PathBuf>,
    /// TEST ONLY: slow the candidate by this many µs of CPU per request, to
    /// show that the check catches it.
    #[arg(long, value_name = "US", default_value_t = 0, hide = true)]
    pub test_only_candidate_inject_cpu_us: u64,
    /// Strategies to check, comma-separated [default: master-pass,shared:epoll,reuseport].
    #[arg(long, value_delimiter = ',')]
    pub strategies: Vec<String>,
    /// Paired rounds.
    #[arg(long, default_value_t = 6)]
    pub rounds: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Measured time per run.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up per run.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Smallest throughput change that counts, percent.
    #[arg(long, default_value_t = 10.0)]
    pub min_effect: f64,
    /// Smallest p99 change that counts, percent (tails are noisier).
    #[arg(long, default_value_t = 25.0)]
    pub min_effect_p99: f64,
    /// Smallest change of server CPU time per request (open loop) that
    /// counts, percent.
    #[arg(long, default_value_t = 10.0)]
    pub min_effect_cpu: f64,
    /// Smallest change of voluntary context switches per request (open
    /// loop) that counts, percent.
    #[arg(long, default_value_t = 25.0)]
    pub min_effect_vcs: f64,
    /// Write this run's figures as a baseline file for later cross-machine checks.
    #[arg(long, value_name = "FILE")]
    pub save_baseline: Option<PathBuf>,
}

impl RegressOpts {
    /// Checks the options. `--baseline-rev` is resolved by the caller (it builds).
    pub fn config(
        &self,
        baseline_rev_bin: Option<PathBuf>,
    ) -> Result<crate::regress::RegressConfig, String> {
        use crate::regress::{Baseline, RegressConfig, DEFAULT_STRATEGIES};
        let baseline =
            match (&self.baseline, &self.baseline_bin, baseline_rev_bin) {
                (Some(f), _, _) => Baseline::File(f.clone()),
                (_, Some(b), _) => Baseline::Bin(b.clone()),
                (_, _, Some(b)) => Baseline::Bin(b),
                _ if self.save_baseline.is_some() => Baseline::File(PathBuf::new()),
                _ => return Err(
                    "give a baseline: --baseline FILE, --baseline-bin PATH or --baseline-rev REV"
                        .into(),
                ),
            };
        let strategies = if self.strategies.is_empty() {
            DEFAULT_STRATEGIES.iter().map(|s| s.to_string()).collect()
        } else {
            for s in &self.strategies {
                if !STRATEGIES.contains(&s.as_str()) {
                    return Err(format!(
                        "unknown strategy {s:?}: choose from {}",
                        STRATEGIES.join(", ")
                    ));
                }
            }
            self.strategies.clone()
        };
        if self.rounds < 2 {
            return Err(format!(
                "--rounds {}: a check needs at least 2 paired rounds",
                self.rounds
            ));
        }
        check_workers(&[self.workers])?;
        if !(0.0..100.0).contains(&self.min_effect)
            || !(0.0..1000.0).contains(&self.min_effect_p99)
            || !(0.0..1000.0).contains(&self.min_effect_cpu)
            || !(0.0..1000.0).contains(&self.min_effect_vcs)
        {
            return Err(
                "--min-effect, --min-effect-p99, --min-effect-cpu and --min-effect-vcs are percentages (e.g. 10)"
                    .into(),
            );
        }
        let candidate_bin = match &self.candidate_bin {
            Some(p) => p.clone(),
            None => crate::measure::procs::Binaries::locate()?.lab_server,
        };
        Ok(RegressConfig {
            baseline,
            candidate_bin,
            candidate_inject_cpu_us: self.test_only_candidate_inject_cpu_us,
            strategies,
            rounds: self.rounds,
            workers: self.workers,
            duration: self.duration,
            warmup: self.warmup,
            min_effect: self.min_effect / 100.0,
            min_effect_p99: self.min_effect_p99 / 100.0,
            min_effect_cpu: self.min_effect_cpu / 100.0,
            min_effect_vcs: self.min_effect_vcs / 100.0,
            save_baseline: self.save_baseline.clone(),
            seed: 0x5EED,
        })
    }
}
