//! The report, rendered from a realistic synthetic summary (two worker
//! counts, all nine strategies, six workloads, burst and steady), and the schema
//! of `summary.json`.
//!
//! To look at the synthetic report yourself:
//! `HARNESS_REPORT_KEEP=/tmp/synthetic-report cargo test -p harness --test report_render`
//! renders it there as well, then open `/tmp/synthetic-report/report.html`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use harness::model::environment::Environment;
use harness::model::faults::{FaultCell, FaultRun, SliceJson, WindowJson};
use harness::model::hood::{Hood, HoodField, HoodPair, HoodTrace};
use harness::model::summary::*;
use harness::model::warnings::Warning;
use harness::report::render;
use harness::store::schema::validate_summary;
use serde_json::Value;

/// Every lab strategy, from the catalogue.
const TARGETS: &[&str] = harness::model::names::STRATEGIES;
const WORKLOADS: [&str; 6] = [
    "keepalive",
    "recycled",
    "close",
    "open-50",
    "open-90",
    "heavy-tail",
];
const WORKERS: [usize; 2] = [2, 4];
const SPECTRUM: [f64; 9] = [50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99];
const CAPACITY: [f64; 2] = [41_800.0, 63_500.0];

/// A deterministic number in [0, 1) from a seed string.
fn noise(seed: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64's finaliser: FNV alone barely moves the high bits when
    // only the last byte differs.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn spread(values: Vec<f64>) -> Spread {
    let mut sorted = values.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = sorted[sorted.len() / 2];
    let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
    Spread {
        spread_pct: (max - min) / median * 100.0,
        values,
        median,
        min,
        max,
    }
}

fn jain(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let sq: f64 = xs.iter().map(|x| x * x).sum();
    sum * sum / (xs.len() as f64 * sq)
}

/// Fairness of a per-worker split given as raw weights.
fn fairness_of(weights: &[f64]) -> FairnessJson {
    let total: f64 = weights.iter().sum();
    let mean = total / weights.len() as f64;
    let mut shares: Vec<f64> = weights.iter().map(|w| w / total).collect();
    shares.sort_by(|a, b| b.total_cmp(a));
    let max = weights.iter().cloned().fold(0.0, f64::max);
    let var = weights.iter().map(|w| (w - mean).powi(2)).sum::<f64>() / weights.len() as f64;
    let j = jain(weights);
    FairnessJson {
        jain: j,
        jain_per_round: vec![j * 0.99, j, (j * 1.005).min(1.0)],
        max_over_mean: max / mean,
        cv: var.sqrt() / mean,
        shares,
    }
}

/// Per-worker connection weights the way each strategy tends to split them.
fn connection_weights(target: &str, workers: usize, workload: &str) -> Vec<f64> {
    (0..workers)
        .map(|i| {
            let jitter = 1.0 + 0.06 * (noise(&format!("{target}{workload}{workers}{i}")) - 0.5);
            let base = match target {
                // EPOLLEXCLUSIVE wakes the same waiter: one worker takes most.
                "shared:epoll-exclusive" => {
                    if i == 0 {
                        7.0
                    } else {
                        1.0 / (i as f64 + 1.0)
                    }
                }
                "shared:epoll" => 1.0 + 0.8 * (i == 0) as u8 as f64,
                "shared:accept-mutex" => 1.0 + 0.5 * (i % 2 == 0) as u8 as f64,
                // Hashing 64 connections over few listeners is lumpy.
                "reuseport" => 1.0 + 0.35 * noise(&format!("rp{workload}{workers}{i}")),
                "reuseport:cbpf-cpu" => {
                    if i < 2 {
                        1.0
                    } else {
                        0.05
                    }
                }
                _ => 1.0,
            };
            base * jitter
        })
        .collect()
}

fn cell(target: &str, workload: &str, wi: usize) -> Cell {
    let workers = WORKERS[wi];
    let capacity = CAPACITY[wi];
    let family = target.split(':').next().unwrap().to_string();
    let master = family == "master-pass";
    let open_share = match workload {
        "open-50" | "heavy-tail" => Some(0.5),
        "open-90" => Some(0.9),
        _ => None,
    };
    // Throughput: closed loops differ by strategy; open loops serve what is offered.
    let closed = match (workload, target) {
        ("close", t) if t.starts_with("master-pass") => capacity * 0.38,
        ("close", t) if t.starts_with("reuseport") => capacity * 0.62,
        ("close", _) => capacity * 0.55,
        (_, "shared:epoll-exclusive") => capacity * 0.81,
        (_, t) if t.starts_with("reuseport") => capacity * 1.04,
        _ => capacity * (0.95 + 0.06 * noise(target)),
    };
    let offered = open_share.map(|s| s * capacity);
    let median = offered.map_or(closed, |o| o * (0.995 + 0.004 * noise(target)));
    let rounds: Vec<f64> = (0..3)
        .map(|r| median * (0.97 + 0.06 * noise(&format!("{target}{workload}{workers}{r}"))))
        .collect();

    // Latency: p50 from the load, the tail by strategy.
    let p50 = match workload {
        "keepalive" => 64.0 / median * 1e6,
        "close" => 32.0 / median * 1e6 * 1.3,
        "open-90" => 380.0,
        _ => 140.0,
    } * (0.9 + 0.2 * noise(&format!("p50{target}")));
    let tail = match (workload, target) {
        ("heavy-tail", t) if t.starts_with("reuseport") => 0.95,
        ("heavy-tail", "shared:epoll-exclusive") => 0.85,
        ("heavy-tail", _) => 0.55,
        ("open-90", t) if t.starts_with("reuseport") => 0.5,
        (_, "shared:accept-mutex") => 0.45,
        _ => 0.28,
    };
    let at = |p: f64| (p50 * (1.0 / (1.0 - p / 100.0) / 2.0).powf(tail)).round() as u64;
    let mut spectrum: Vec<(f64, u64)> = SPECTRUM.iter().map(|&p| (p, at(p))).collect();
    let max_us = at(99.999) * 2;
    spectrum.push((100.0, max_us));
    let p99 = at(99.0) as f64;
    let count = (median * 10.0 * 3.0) as u64;

    let conn = connection_weights(target, workers, workload);
    let cpu: Vec<f64> = conn.iter().map(|c| c.powf(0.8)).collect();
    let errors = if target == "reuseport" && workload == "close" {
        37
    } else {
        0
    };
    // A target's own capacity: the open-loop rate is a share of
    // reuseport's, so it is a larger share of a slower target's own.
    let own = offered.map(|_| {
        capacity
            * match target {
                t if t.starts_with("master-pass") => 0.68,
                t if t.starts_with("reuseport") => 1.0,
                "shared:epoll-exclusive" => 0.81,
                _ => 0.93,
            }
    });
    // One cell whose second round was not steady, one with noise.
    let unsteady = target == "master-pass" && workload == "keepalive" && workers == 4;
    let noisy = target == "shared:epoll" && workload == "close" && workers == 2;
    let conns_per_req = match workload {
        "close" => 1.0,
        "keepalive" => 0.0,
        _ => 0.01,
    };
    let per_req_cpu = match workload {
        "close" => 38.0,
        "keepalive" | "recycled" => 11.0,
        "heavy-tail" => 75.0,
        _ => 62.0,
    } * (0.9 + 0.2 * noise(&format!("cpu{target}{workload}")));
    let master_cpu = if master { per_req_cpu * 0.3 } else { 0.0 };
    let herd = match target {
        "shared:epoll" => (workers - 1) as f64 * 0.9,
        "shared:blocking-thread" => 0.4,
        _ => 0.05,
    };
    let round_figures: Vec<RoundFigures> = (0..3)
        .map(|r| {
            let f = 0.97 + 0.06 * noise(&format!("rf{target}{workload}{workers}{r}"));
            let workers_vcs_per_connection = (1.0 + herd) * f;
            RoundFigures {
                round: r + 1,
                steady: !(unsteady && r == 1),
                why_not: (unsteady && r == 1)
                    .then(|| "throughput rose 14% over the measured window".into()),
                warmup_s: if master { 2.4 } else { 0.6 } * f,
                throughput_rps: rounds[r],
                p99_us: (p99 * f) as u64,
                jain_connections: jain(&conn) * f.min(1.0),
                top_connection_share: 0.5,
                cpu_us_per_request: per_req_cpu * f,
                master_cpu_us_per_request: master_cpu * f,
                workers_cpu_us_per_request: (per_req_cpu - master_cpu) * f,
                master_vcs_per_request: if master { 0.02 * f } else { 0.0 },
                workers_vcs_per_request: 0.1 * f + workers_vcs_per_connection * conns_per_req,
                master_vcs_per_connection: if master { 2.0 * f } else { 0.0 },
                workers_vcs_per_connection,
                ivcs_per_request: 0.004 * f,
                steal_pct: if noisy && r == 2 { 6.5 } else { 0.2 },
                other_cpu_pct: if noisy && r == 2 { 12.0 } else { 0.5 },
                eagain_per_connection: None,
            }
        })
        .collect();
    let col = |f: fn(&RoundFigures) -> f64| {
        harness::analyse::stats::spread(&round_figures.iter().map(f).collect::<Vec<_>>())
    };
    // A JIT-like warm-up for master-pass, a quick one for the rest.
    let settle = if master { 24 } else { 6 };
    let warmup_timeline: Vec<f64> = (0..settle + 4)
        .map(|i| median * (1.0 - 0.7 * (-(i as f64) / (settle as f64 / 3.0)).exp()))
        .collect();
    Cell {
        target: target.into(),
        family,
        reference: false,
        counts_from: "server".into(),
        workload: workload.into(),
        workers,
        rounds: 3,
        steady_rounds: round_figures.iter().filter(|r| r.steady).count(),
        fairness_kind: if workload == "keepalive" {
            "burst"
        } else {
            "steady"
        }
        .into(),
        offered_rps: offered,
        own_capacity_rps: own,
        offered_share_of_own: offered.zip(own).map(|(o, c)| o / c),
        cost: Cost {
            cpu_us_per_request: col(|r| r.cpu_us_per_request),
            master_cpu_us_per_request: col(|r| r.master_cpu_us_per_request),
            workers_cpu_us_per_request: col(|r| r.workers_cpu_us_per_request),
            master_vcs_per_request: col(|r| r.master_vcs_per_request),
            workers_vcs_per_request: col(|r| r.workers_vcs_per_request),
            master_vcs_per_connection: col(|r| r.master_vcs_per_connection),
            workers_vcs_per_connection: col(|r| r.workers_vcs_per_connection),
            ivcs_per_request: col(|r| r.ivcs_per_request),
            connections_per_request: conns_per_req,
        },
        warmup_s: col(|r| r.warmup_s),
        warmup_timeline,
        warmup_slice_s: 0.1,
        per_round: round_figures,
        throughput_rps: spread(rounds),
        latency: LatencyJson {
            count,
            p50_us: at(50.0),
            p90_us: at(90.0),
            p99_us: at(99.0),
            p999_us: at(99.9),
            max_us,
            spectrum,
        },
        p99_us_per_round: spread(vec![p99 * 0.93, p99 * 1.02, p99 * 1.11]),
        fairness: Fairness {
            connections: fairness_of(&conn),
            requests: fairness_of(&conn),
            cpu: fairness_of(&cpu),
        },
        wasted_wakeups_per_connection: Some(match target {
            "shared:epoll" => (workers - 1) as f64 * 0.8,
            "shared:accept-mutex" => 0.05,
            _ => 0.0,
        }),
        master_cpu_share: if master {
            if workload == "close" {
                0.31
            } else {
                0.012
            }
        } else {
            0.0004
        },
        errors,
        timeouts: 0,
        starved_connections: 0,
        starved_share: 0.0,
        error_rate: errors as f64 / count as f64,
        kernel: KernelJson {
            listen_overflows: if workload == "close" && master {
                120
            } else {
                0
            },
            listen_drops: if workload == "close" && master {
                120
            } else {
                0
            },
            out_rsts: errors,
            max_accept_queue: if workload == "close" { 33 } else { 2 },
            ..KernelJson::default()
        },
        replacements: 0,
        runs: (1..=3)
            .map(|r| {
                format!(
                    "runs/{}-{workload}-w{workers}-r{r}.json",
                    target.replace(':', "_")
                )
            })
            .collect(),
    }
}

fn workload_json(name: &str) -> WorkloadJson {
    let (description, args, share): (&str, &[&str], Option<f64>) = match name {
        "keepalive" => (
            "closed loop, keep-alive, 64 connections, GET /",
            &["--mode", "keepalive", "--connections", "64"],
            None,
        ),
        "recycled" => (
            "closed loop, keep-alive, 64 connections, each closed after 100 responses",
            &[
                "--mode",
                "keepalive",
                "--connections",
                "64",
                "--requests-per-conn",
                "100",
            ],
            None,
        ),
        "close" => (
            "closed loop, a new TCP connection per request, 32 at a time",
            &["--mode", "close", "--connections", "32"],
            None,
        ),
        "open-50" => (
            "open loop (Poisson) at 50% of capacity",
            &[
                "--mode",
                "keepalive",
                "--arrivals",
                "poisson",
                "--path",
                "/?cpu_us=50",
            ],
            Some(0.5),
        ),
        "open-90" => (
            "open loop (Poisson) at 90% of capacity",
            &[
                "--mode",
                "keepalive",
                "--arrivals",
                "poisson",
                "--path",
                "/?cpu_us=50",
            ],
            Some(0.9),
        ),
        _ => (
            "open loop at 50%, 1% of requests 100x the CPU",
            &[
                "--mode",
                "keepalive",
                "--arrivals",
                "poisson",
                "--mix",
                "99:/?cpu_us=20,1:/?cpu_us=2000",
            ],
            Some(0.5),
        ),
    };
    WorkloadJson {
        name: name.into(),
        description: description.into(),
        loadgen_args: args.iter().map(|s| s.to_string()).collect(),
        capacity_share: share,
        fairness: if name == "keepalive" {
            "burst"
        } else {
            "steady"
        }
        .into(),
        fault: None,
        measured_s: None,
        calibration: "keepalive".into(),
    }
}

/// A fault cell: `errors` resets per round out of 1,000 connections, a
/// 40 ms affected p99, recovered after 120 ms except in one round.
fn fault_cell(target: &str, scenario: &str, errors: u64, migrate: Option<u64>) -> FaultCell {
    let run = |round: usize, recovered: Option<f64>| FaultRun {
        round,
        fault_start_s: 0.4,
        fault_end_s: 0.4,
        due: 1000,
        errors: if errors > 0 {
            BTreeMap::from([("reset".to_string(), errors)])
        } else {
            BTreeMap::new()
        },
        errors_per_10k: errors as f64 * 10.0,
        baseline_p99_us: 1_500,
        affected: WindowJson {
            from_s: 0.4,
            to_s: 0.6,
            due: 200,
            ok: 200 - errors,
            errors,
            p99_us: 40_000,
        },
        rest: WindowJson {
            from_s: 0.0,
            to_s: 1.2,
            due: 800,
            ok: 800,
            errors: 0,
            p99_us: 1_600,
        },
        recovered_after_s: recovered,
        counters: BTreeMap::from([("OutRsts".to_string(), errors)]),
        tcp_migrate_req: migrate,
        replacements: Some(1),
        rerouted: Some(0),
        timeline: (0..12)
            .map(|i| SliceJson {
                start_s: i as f64 / 10.0,
                due: 83,
                errors: u64::from(i == 4) * errors,
                p99_us: if i == 4 { 40_000 } else { 1_500 },
            })
            .collect(),
        ..FaultRun::default()
    };
    let runs = vec![run(1, Some(0.12)), run(2, Some(0.12)), run(3, None)];
    FaultCell {
        target: target.into(),
        scenario: scenario.into(),
        workers: 4,
        reference: false,
        tcp_migrate_req: migrate,
        errors_per_10k: harness::analyse::stats::spread(&[errors as f64 * 10.0; 3]),
        errors: runs[0]
            .errors
            .iter()
            .map(|(k, v)| (k.clone(), v * 3))
            .collect(),
        affected_p99_us: harness::analyse::stats::spread(&[40_000.0; 3]),
        rest_p99_us: harness::analyse::stats::spread(&[1_600.0; 3]),
        recover_ms: harness::analyse::stats::spread(&[120.0, 120.0]),
        not_recovered: 1,
        victim_p99_us: None,
        others_p99_us: None,
        counters: BTreeMap::from([(
            "OutRsts".to_string(),
            harness::analyse::stats::spread(&[errors as f64; 3]),
        )]),
        replacements: Some(harness::analyse::stats::spread(&[1.0; 3])),
        rerouted: Some(harness::analyse::stats::spread(&[0.0; 3])),
        runs,
    }
}

fn synthetic_summary() -> Summary {
    let cells: Vec<Cell> = WORKLOADS
        .iter()
        .flat_map(|w| {
            (0..WORKERS.len()).flat_map(move |wi| TARGETS.iter().map(move |t| cell(t, w, wi)))
        })
        .collect();
    let mut winners = Vec::new();
    for w in WORKLOADS {
        for n in WORKERS {
            let g: Vec<&Cell> = cells
                .iter()
                .filter(|c| c.workload == w && c.workers == n)
                .collect();
            let best =
                |f: &dyn Fn(&Cell) -> f64| *g.iter().max_by(|a, b| f(a).total_cmp(&f(b))).unwrap();
            let lead = |c: &Cell, value: f64, tied: bool| {
                Some(Lead {
                    target: c.target.clone(),
                    value,
                    runner_up: Some("reuseport:cbpf-cpu".into()),
                    lead: Some(Interval {
                        low: if tied { 0.97 } else { 1.12 },
                        estimate: 1.2,
                        high: 1.31,
                        rounds: 3,
                        significant: !tied,
                    }),
                    tied: if tied {
                        vec![c.target.clone(), "reuseport:cbpf-cpu".into()]
                    } else {
                        vec![c.target.clone()]
                    },
                })
            };
            let t = best(&|c| c.throughput_rps.median);
            let p = best(&|c| -(c.latency.p99_us as f64));
            let f = best(&|c| c.fairness.connections.jain);
            let k = best(&|c| -c.cost.cpu_us_per_request.median);
            let open = t.offered_rps.is_some();
            winners.push(Winner {
                workload: w.into(),
                workers: n,
                throughput: if open {
                    None
                } else {
                    lead(t, t.throughput_rps.median, false)
                },
                p99: lead(p, p.latency.p99_us as f64, true),
                fairest: lead(f, f.fairness.connections.jain, false),
                cheapest: lead(k, k.cost.cpu_us_per_request.median, false),
            });
        }
    }
    Summary {
        schema: SCHEMA.into(),
        created_unix_ms: 1_714_566_896_000,
        session_started_unix_ms: Some(1_714_566_000_000),
        environment: Environment {
            kernel: "6.1.0-18-amd64".into(),
            cpus_allowed: vec![0, 1, 2, 3],
            cpus_online: 4,
            cpu_model: "Intel(R) Xeon(R) CPU @ 2.20GHz".into(),
            memory_mib: 24_000,
            sysctls: BTreeMap::from([
                ("net.core.somaxconn".into(), "4096".into()),
                ("net.ipv4.tcp_migrate_req".into(), "0".into()),
                ("net.ipv4.ip_local_port_range".into(), "32768 60999".into()),
            ]),
            git_commit: "e7c60c7d3ab1c2f0e9d8c7b6a5f4e3d2c1b0a9f8".into(),
            rustc: "rustc 1.95.0".into(),
            tools: BTreeMap::from([("nginx".into(), "nginx/1.22.1".into())]),
            hostname: "lab-box".into(),
        },
        config: BenchConfigJson {
            targets: TARGETS.iter().map(|s| s.to_string()).collect(),
            workloads: WORKLOADS.iter().map(|w| workload_json(w)).collect(),
            workers: WORKERS.to_vec(),
            rounds: 3,
            duration_s: 5.0,
            warmup_s: 1.0,
            warmup_cap_s: None,
            quick: false,
            full: false,
            test_only_inject_cpu_us: Vec::new(),
            remote: None,
        },
        calibration: WORKERS
            .iter()
            .zip(CAPACITY)
            .map(|(&n, c)| Calibration {
                workers: n,
                target: "reuseport".into(),
                loadgen_args: vec!["--mode".into(), "keepalive".into(), "--path".into(), "/?cpu_us=50".into()],
                capacity_rps: c,
                mode: "keepalive".into(),
            })
            .collect(),
        comparisons: vec![
            Comparison {
                workload: "keepalive".into(),
                workers: 4,
                ours: "reuseport".into(),
                theirs: "nginx:reuseport".into(),
                ours_rps: 66_000.0,
                theirs_rps: 58_900.0,
                throughput_ratio: 1.12,
                ours_p99_us: 2_100,
                theirs_p99_us: 2_400,
                p99_ratio: 0.875,
                ours_jain: 0.97,
                theirs_jain: 0.96,
                throughput_interval: Some(Interval {
                    low: 0.95,
                    estimate: 1.12,
                    high: 1.3,
                    rounds: 3,
                    significant: false,
                }),
                p99_interval: Some(Interval {
                    low: 0.61,
                    estimate: 0.7,
                    high: 0.74,
                    rounds: 3,
                    significant: true,
                }),
                cpu_interval: Some(Interval {
                    low: 0.79,
                    estimate: 0.82,
                    high: 0.86,
                    rounds: 3,
                    significant: true,
                }),
                ours_cpu_us_per_request: 10.1,
                theirs_cpu_us_per_request: 12.3,
            },
        ],
        skipped: vec![Skipped {
            target: "nginx:reuseport".into(),
            workload: Some("open-50".into()),
            reason: "nginx cannot burn CPU per request (/?cpu_us=50)".into(),
        }],
        cells,
        winners,
        findings: vec![
            "shared:epoll-exclusive gave one of 4 workers 71% of the connections under keepalive (Jain's index 0.45).".into(),
            "Under close, master-pass reached 38% of reuseport's throughput; its master used 31% of the server's CPU.".into(),
            "Under heavy-tail, reuseport's p99 was 9.4x shared:blocking-thread's: a connection hashed to a busy worker waits.".into(),
        ],
        faults: vec![
            fault_cell("master-pass", "worker-crash", 0, None),
            fault_cell("reuseport", "worker-crash", 7, Some(0)),
            fault_cell("reuseport+migrate", "worker-crash", 0, Some(1)),
        ],
        fault_findings: vec!["worker-crash: reuseport lost the most, 70.0 errors per 10,000 connections (median of 3 rounds)".into()],
        warnings: vec![
            Warning::SharedCpus { cpus: 4, workers: 4 },
            Warning::RoundsDisagree { target: "reuseport".into(), workload: "close".into(), workers: 4, spread_pct: 14.2 },
            Warning::Errors {
                target: "reuseport".into(),
                workload: "close".into(),
                workers: 2,
                errors: 37,
                detail: "connect: 37 ECONNRESET".into(),
            },
            Warning::NotSteady {
                target: "master-pass".into(),
                workload: "keepalive".into(),
                workers: 4,
                rounds: vec![2],
                why: "throughput rose 14% over the measured window".into(),
            },
            Warning::Noise {
                target: "shared:epoll".into(),
                workload: "close".into(),
                workers: 2,
                round: 3,
                steal_pct: 6.5,
                other_cpu_pct: 12.0,
                detail: "cc1plus 11.2%".into(),
            },
            Warning::GeneratorSaturated {
                target: "shared:epoll".into(),
                workload: "open-90".into(),
                workers: 4,
                detail: "loadgen fell 3.1% behind its schedule".into(),
            },
        ],
        under_the_hood: Some(hood()),
    }
}

/// Two traces of a twin pair and their check, as `trace::latest` writes them.
fn hood() -> Hood {
    let trace = |target: &str, woken: f64| HoodTrace {
        target: target.into(),
        dir: format!("20240501T120000Z/{target}"),
        taken_unix_ms: 1_714_566_000_000 - 3 * 3_600_000,
        workers: 2,
        who_accepts: vec!["master".into()],
        accept_eagain_per_conn: 0.0,
        scm_rights_messages_per_conn: 1.0,
        woken_per_conn: Some(woken),
        slept_again_per_conn: Some(0.0),
    };
    let field = |f: &str, r: &str, t: &str, verdict: &str, why: Option<&str>| HoodField {
        field: f.into(),
        reference: r.into(),
        twin: t.into(),
        verdict: verdict.into(),
        why: why.map(String::from),
    };
    Hood {
        root: "results".into(),
        traces: vec![trace("master-pass", 1.0), trace("node:rr", 1.0)],
        pairs: vec![HoodPair {
            reference: "node:rr".into(),
            twin: "master-pass".into(),
            fields: vec![
                field("who calls accept", "master", "master", "same", None),
                field(
                    "hand-off payload",
                    "JSON NODE_HANDLE",
                    "8-byte frame",
                    "allowed",
                    Some("binary frames, not JSON lines"),
                ),
                field("replies per hand-off", "2", "1", "different", None),
            ],
        }],
    }
}

/// Renders `summary` into a fresh temporary folder (and into
/// `$HARNESS_REPORT_KEEP` as well, when set).
#[track_caller]
fn rendered(summary: &Summary) -> (tempfile::TempDir, Vec<std::path::PathBuf>) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let files = render(summary, dir.path()).expect("the report renders");
    if let Some(keep) = std::env::var_os("HARNESS_REPORT_KEEP") {
        render(summary, Path::new(&keep)).expect("the report renders into HARNESS_REPORT_KEEP");
    }
    (dir, files)
}

#[track_caller]
fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn svgs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir.join("plots"))
        .expect("a plots folder")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "svg"))
        .collect();
    v.sort();
    v
}

#[test]
fn render_writes_both_reports_and_every_plot_and_returns_them() {
    let (dir, files) = rendered(&synthetic_summary());
    for f in &files {
        assert!(
            f.is_file(),
            "{} was returned but is not a file",
            f.display()
        );
        assert!(
            f.starts_with(dir.path()),
            "{} is outside the report folder",
            f.display()
        );
    }
    assert_eq!(files[0], dir.path().join("report.md"));
    assert_eq!(files[1], dir.path().join("report.html"));
    let plots = svgs(dir.path());
    // Throughput per workload (6); spectrum and shares per workload and
    // worker count (12 + 12); latency against load per worker count (2);
    // cost and warm-up (1 + 1).
    assert_eq!(plots.len(), 34, "{plots:#?}");
    assert_eq!(files.len(), 36);
    for p in &plots {
        assert!(
            files.contains(p),
            "{} was written but not returned",
            p.display()
        );
    }
    // Atomic writes leave no temporary file behind.
    let stray: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .chain(fs::read_dir(dir.path().join("plots")).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(stray.is_empty(), "temporary files left: {stray:?}");
}

#[test]
fn markdown_report_opens_with_who_wins_and_names_every_target() {
    let summary = synthetic_summary();
    let (dir, _) = rendered(&summary);
    let md = read(&dir.path().join("report.md"));
    let who = md.find("## Who wins").expect("a Who wins section");
    let findings = md.find("## Findings").expect("a Findings section");
    let first_workload = md
        .find("## Workload keepalive")
        .expect("a section per workload");
    assert!(
        who < findings && findings < first_workload,
        "Who wins, then findings, then the workloads"
    );
    assert!(
        md[..who].contains("Jain's index"),
        "the top explains how to read the report"
    );
    for t in TARGETS {
        assert!(
            md.contains(&format!("| {t} |")),
            "report.md has no table row for {t}"
        );
    }
    for w in WORKLOADS {
        assert!(
            md.contains(&format!("## Workload {w}")),
            "report.md has no section for {w}"
        );
    }
    for f in &summary.findings {
        assert!(md.contains(f.as_str()), "finding missing: {f}");
    }
    for w in &summary.warnings {
        assert!(
            md.contains(&w.message()),
            "warning missing: {}",
            w.message()
        );
    }
    // People's units, and the environment.
    assert!(md.contains(" ms") && md.contains("µs") && md.contains("k req/s"));
    assert!(
        md.contains("6.1.0-18-amd64")
            && md.contains("net.core.somaxconn")
            && md.contains("e7c60c7")
    );
    // Every plot is linked by a relative path that exists.
    for p in svgs(dir.path()) {
        let rel = format!("plots/{}", p.file_name().unwrap().to_string_lossy());
        assert!(
            md.contains(&format!("]({rel})")),
            "report.md does not link {rel}"
        );
    }
}

#[test]
fn every_plot_is_well_formed_svg_with_readable_text() {
    let (dir, _) = rendered(&synthetic_summary());
    for p in svgs(dir.path()) {
        let svg = read(&p);
        let doc = roxmltree::Document::parse(&svg)
            .unwrap_or_else(|e| panic!("{} is not well-formed XML: {e}", p.display()));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg", "{}", p.display());
        assert!(
            root.attribute("viewBox").is_some(),
            "{} has no viewBox, so it cannot scale",
            p.display()
        );
        let texts: Vec<&str> = root
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        assert!(
            texts.len() >= 5,
            "{} has almost no text: {texts:?}",
            p.display()
        );
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("latency-") && !name.starts_with("latency-vs-load") {
            for label in ["50%", "90%", "99%", "99.9%", "99.99%", "max"] {
                assert!(
                    texts.contains(&label),
                    "{name} has no x label {label}: {texts:?}"
                );
            }
            for t in TARGETS {
                assert!(texts.contains(t), "{name} has no legend entry for {t}");
            }
        }
        if name.starts_with("throughput-") {
            for t in TARGETS {
                assert!(texts.contains(t), "{name} has no row for {t}");
            }
            assert!(
                texts.iter().any(|t| t.contains("thousands per second")),
                "{name} has no unit on its axis"
            );
        }
    }
}

#[test]
fn html_report_is_self_contained_with_the_plots_inline() {
    let (dir, _) = rendered(&synthetic_summary());
    let html = read(&dir.path().join("report.html"));
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(
        html.matches("<svg").count(),
        svgs(dir.path()).len(),
        "one inline <svg> per plot"
    );
    for t in TARGETS {
        assert!(
            html.contains(&format!("<td>{t}</td>")),
            "report.html has no table row for {t}"
        );
    }
    for external in [
        "http://", "https://", "<script", "<link", "<img", "url(", "@import",
    ] {
        assert!(
            !html.contains(external),
            "report.html refers to something outside it: {external}"
        );
    }
}

#[test]
fn rendering_is_a_pure_function_of_the_summary() {
    let summary = synthetic_summary();
    let (a, files_a) = rendered(&summary);
    let (b, files_b) = rendered(&summary);
    assert_eq!(files_a.len(), files_b.len());
    for (fa, fb) in files_a.iter().zip(&files_b) {
        assert_eq!(
            fa.strip_prefix(a.path()).unwrap(),
            fb.strip_prefix(b.path()).unwrap()
        );
        assert!(
            fs::read(fa).unwrap() == fs::read(fb).unwrap(),
            "{} differs between two renderings",
            fa.display()
        );
    }
}

#[test]
fn the_under_faults_section_shows_each_scenario_with_losses_recovery_and_counters() {
    let s = synthetic_summary();
    let (dir, _) = rendered(&s);
    let md = read(&dir.path().join("report.md"));
    let section = md
        .split("## Under faults")
        .nth(1)
        .expect("an Under faults section")
        .split("\n## ")
        .next()
        .unwrap();
    assert!(section.contains("### Fault: worker-crash"));
    assert!(section.contains("reuseport lost the most"));
    let row = |target: &str| {
        section
            .lines()
            .find(|l| l.starts_with(&format!("| {target}")))
            .unwrap_or_else(|| panic!("no row for {target} in {section}"))
            .to_string()
    };
    let reuseport = row("reuseport (tcp\\_migrate\\_req=0)");
    assert!(reuseport.contains("| 70 |"), "{reuseport}");
    assert!(reuseport.contains("reset 21"), "{reuseport}");
    assert!(reuseport.contains("40.0 ms"), "{reuseport}");
    assert!(
        reuseport.contains("120 ms; not within the window in 1 of 3"),
        "{reuseport}"
    );
    assert!(reuseport.contains("OutRsts 7"), "{reuseport}");
    assert!(row("reuseport+migrate (tcp\\_migrate\\_req=1)").contains("| 0 |"));
    assert!(row("master-pass").contains("workers replaced 1"));
    // The fault scenarios are not steady workloads: no section of their own,
    // and the +migrate target is not a row of the steady tables.
    assert!(!md.contains("## Workload worker-crash"));
    let html = read(&dir.path().join("report.html"));
    assert!(html.contains("Under faults"));
}

#[test]
fn a_summary_without_cells_still_renders_a_report_that_says_so() {
    let mut summary = synthetic_summary();
    summary.cells.clear();
    summary.winners.clear();
    summary.findings.clear();
    let (dir, files) = rendered(&summary);
    assert_eq!(files.len(), 2, "no cells, no plots: {files:?}");
    let md = read(&dir.path().join("report.md"));
    assert!(md.contains("No cell finished"));
}

#[test]
fn an_unwritable_report_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, "").unwrap();
    let err = render(&synthetic_summary(), &file.join("report")).unwrap_err();
    assert!(
        err.contains("cannot create") && err.contains("writable"),
        "{err}"
    );
}

fn summary_json() -> Value {
    serde_json::to_value(synthetic_summary()).unwrap()
}

#[track_caller]
fn rejected(value: &Value, expect: &str) {
    let errors = validate_summary(value).expect_err("the mutated summary must not validate");
    assert!(
        errors.iter().any(|e| e.contains(expect)),
        "expected an error mentioning {expect:?}, got {errors:#?}"
    );
}

#[test]
fn the_serialized_summary_validates_against_the_schema() {
    let value = summary_json();
    validate_summary(&value).unwrap_or_else(|errors| panic!("schema errors: {errors:#?}"));
    // And it reads back as the same type.
    let back: Summary = serde_json::from_value(value).unwrap();
    assert_eq!(
        back.cells.len(),
        TARGETS.len() * WORKLOADS.len() * WORKERS.len()
    );
}

#[test]
fn a_summary_missing_a_field_fails_validation() {
    let mut value = summary_json();
    value["cells"][3]
        .as_object_mut()
        .unwrap()
        .remove("fairness");
    rejected(&value, "/cells/3");
    let mut value = summary_json();
    value.as_object_mut().unwrap().remove("environment");
    rejected(&value, "environment");
}

#[test]
fn a_summary_with_another_schema_tag_fails_validation() {
    let mut value = summary_json();
    // The previous layout must be refused: its readers would misread v3.
    value["schema"] = Value::from("prefork-lab.harness.summary.v2");
    rejected(&value, "/schema");
}

#[test]
fn a_summary_with_an_unknown_field_fails_validation() {
    let mut value = summary_json();
    value["cells"][0]["latency"]["p95_us"] = Value::from(123);
    rejected(&value, "/cells/0/latency");
    let mut value = summary_json();
    value["surprise"] = Value::from(true);
    rejected(&value, "surprise");
}

#[test]
fn a_summary_with_a_nan_written_as_null_fails_validation() {
    let mut summary = synthetic_summary();
    summary.cells[0].fairness.cpu.jain = f64::NAN;
    let value = serde_json::to_value(&summary).unwrap();
    assert!(
        value["cells"][0]["fairness"]["cpu"]["jain"].is_null(),
        "serde_json writes NaN as null"
    );
    rejected(&value, "/cells/0/fairness/cpu/jain");
}

#[test]
fn a_warning_of_an_unknown_kind_fails_validation() {
    let mut value = summary_json();
    value["warnings"][0]["kind"] = Value::from("cosmic_rays");
    rejected(&value, "/warnings/0");
}

/// The part of `md` from `heading` to the next `## ` heading.
#[track_caller]
fn section_of<'a>(md: &'a str, heading: &str) -> &'a str {
    let start = md
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading}"));
    let rest = &md[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
    &rest[..end]
}

#[track_caller]
fn row<'a>(section: &'a str, starts: &str) -> &'a str {
    section
        .lines()
        .find(|l| l.starts_with(starts))
        .unwrap_or_else(|| panic!("no row {starts:?} in {section}"))
}

#[test]
fn the_fairness_section_groups_workloads_into_burst_and_steady() {
    let (dir, _) = rendered(&synthetic_summary());
    let md = read(&dir.path().join("report.md"));
    let s = section_of(&md, "## Fairness: the burst and the steady state");
    assert!(s.contains("**Burst:**") && s.contains("**Steady:**"), "{s}");
    assert!(s.contains("closed after 100 responses"), "{s}");
    for n in WORKERS {
        assert!(s.contains(&format!("### Fairness at {n} workers")), "{s}");
    }
    // Burst columns first, then steady, labelled by the cells' kind.
    let header = row(
        s,
        "| target | burst: keepalive | steady: recycled | steady: close |",
    );
    assert!(header.contains("steady: heavy-tail"), "{header}");
    // The median with the per-round range.
    let exclusive = row(s, "| shared:epoll-exclusive |");
    assert!(
        exclusive.matches(" (0.").count() >= WORKLOADS.len(),
        "{exclusive}"
    );
    // The kind labels fairness figures elsewhere too.
    assert!(md.contains("| keepalive (burst) | 2 |"), "winners");
    let w = section_of(&md, "## Workload keepalive");
    assert!(w.contains("Jain conn., burst (max/mean)"), "{w}");
    let w = section_of(&md, "## Workload close");
    assert!(w.contains("Jain conn., steady (max/mean)"), "{w}");
    // After the workloads, before the faults.
    let at = |h: &str| md.find(h).unwrap_or_else(|| panic!("no {h}"));
    assert!(at("## Workload heavy-tail") < at("## Fairness: the burst"));
    assert!(at("## Fairness: the burst") < at("## Cost per request"));
    assert!(at("## Cost per request") < at("## Steadiness"));
    assert!(at("## Steadiness") < at("## Under faults"));
    assert!(md.contains("(#fairness-the-burst-and-the-steady-state)"));
}

#[test]
fn the_cost_section_shows_cpu_and_context_switches_per_request_and_connection() {
    let summary = synthetic_summary();
    let (dir, _) = rendered(&summary);
    let md = read(&dir.path().join("report.md"));
    let s = section_of(&md, "## Cost per request");
    assert!(s.contains("not as EAGAIN counts"), "{s}");
    assert!(s.contains("](plots/cost.svg)"), "{s}");
    for w in WORKLOADS {
        for n in WORKERS {
            assert!(
                s.contains(&format!("### Cost: {w}, {n} workers")),
                "{w} {n}"
            );
        }
    }
    let close = &s[s.find("### Cost: close, 4 workers").unwrap() + 4..];
    let close = &close[..close.find("\n### ").unwrap_or(close.len())];
    let c = summary
        .cells
        .iter()
        .find(|c| c.target == "shared:epoll" && c.workload == "close" && c.workers == 4)
        .unwrap();
    let k = &c.cost.workers_vcs_per_connection;
    let epoll = row(close, "| shared:epoll |");
    assert!(
        epoll.contains(&format!("{:.2} ({:.2}–{:.2})", k.median, k.min, k.max)),
        "{epoll}"
    );
    // The master of a strategy that passes nothing did nothing.
    assert!(row(close, "| reuseport |").starts_with("| reuseport | – |"));
    let master = row(close, "| master-pass |");
    assert!(!master.starts_with("| master-pass | – |"), "{master}");

    let svg = read(&dir.path().join("plots/cost.svg"));
    let texts = svg_texts(&svg);
    for t in TARGETS {
        assert!(texts.iter().any(|x| x == t), "cost.svg has no row for {t}");
    }
    assert!(svg.contains("open-50") && svg.contains("close"));
    assert!(svg.contains("voluntary context switches"));
}

#[test]
fn the_steadiness_section_gives_warm_up_and_every_unsteady_round_with_its_reason() {
    let (dir, _) = rendered(&synthetic_summary());
    let md = read(&dir.path().join("report.md"));
    let s = section_of(&md, "## Steadiness");
    assert!(row(s, "| master-pass |").contains("| 2.4 s |"), "{s}");
    assert!(row(s, "| master-pass |").contains("35 of 36"), "{s}");
    let unsteady = row(s, "| master-pass | keepalive | 4 |");
    assert!(unsteady.contains("2 of 3"), "{unsteady}");
    assert!(
        unsteady.contains("round 2: throughput rose 14% over the measured window"),
        "{unsteady}"
    );
    assert!(s.contains("with the timeline"), "{s}");
    assert!(s.contains("](plots/warmup.svg)"), "{s}");
    let svg = read(&dir.path().join("plots/warmup.svg"));
    assert!(svg.contains("time into the warm-up"));
    let texts = svg_texts(&svg);
    for t in ["master-pass", "reuseport"] {
        assert!(
            texts.iter().any(|x| x == t),
            "warmup.svg has no line for {t}"
        );
    }
    assert!(svg.contains("<polyline"), "warmup.svg draws no line");
}

#[test]
fn open_loop_rates_references_and_noise_carry_their_context() {
    let (dir, _) = rendered(&synthetic_summary());
    let md = read(&dir.path().join("report.md"));
    let w = section_of(&md, "## Workload open-50");
    assert!(w.contains("50% of reuseport's capacity"), "{w}");
    assert!(
        row(w, "| master-pass | 2 |").contains("50% of reuseport's = 73.5% of its own"),
        "{w}"
    );
    let r = section_of(&md, "## Reference servers");
    let line = row(r, "| keepalive | 4 | reuseport vs nginx:reuseport |");
    assert!(
        line.contains("1.12x \\[0.95-1.30\\], no significant difference"),
        "{line}"
    );
    assert!(line.contains("**0.70x \\[0.61-0.74\\]**"), "{line}");
    assert!(
        line.contains("10.1 vs 12.3") && line.contains("**0.82x \\[0.79-0.86\\]**"),
        "{line}"
    );
    // The twin's copies / differs note, for the references in the session only.
    let notes = section_of(r, "### What each twin copies and where it differs");
    assert!(
        notes.contains("**reuseport twins nginx:reuseport**: follows nginx 1.22.1"),
        "{notes}"
    );
    assert!(notes.contains("Differs: "), "{notes}");
    assert!(
        !notes.contains("node:rr"),
        "only the twins compared: {notes}"
    );
    let e = section_of(&md, "## Environment");
    assert!(
        e.contains("| CPU steal (max over runs) | 6.5% of the machine |"),
        "{e}"
    );
    assert!(
        e.contains("| other processes' CPU (max over runs) | 12.0% of the machine |"),
        "{e}"
    );
    let warnings = section_of(&md, "## Warnings");
    assert!(warnings.contains("not steady in round 2"), "{warnings}");
    assert!(
        warnings.contains("6.5% of the machine's CPU time was stolen"),
        "{warnings}"
    );
}

#[test]
fn cells_without_cost_or_warm_up_render_without_those_plots_and_sections() {
    let mut summary = synthetic_summary();
    for c in &mut summary.cells {
        c.cost = Cost::default();
        c.warmup_timeline.clear();
        c.warmup_slice_s = 0.0;
        if c.workload == "close" {
            c.per_round.iter_mut().for_each(|r| r.steady = true);
        }
    }
    let (dir, _) = rendered(&summary);
    let md = read(&dir.path().join("report.md"));
    assert!(!md.contains("## Cost per request"));
    assert!(!dir.path().join("plots/cost.svg").exists());
    assert!(!dir.path().join("plots/warmup.svg").exists());
    assert!(md.contains("## Steadiness"));
    // Only the close workload: the cost plot has its context-switch panel.
    let mut summary = synthetic_summary();
    summary.cells.retain(|c| c.workload == "close");
    let (dir, _) = rendered(&summary);
    let svg = read(&dir.path().join("plots/cost.svg"));
    assert!(svg.contains("voluntary context switches") && !svg.contains("CPU per request"));
}

#[test]
fn a_cell_without_its_cost_or_rounds_fails_validation() {
    let mut value = summary_json();
    value["cells"][2].as_object_mut().unwrap().remove("cost");
    rejected(&value, "/cells/2");
    let mut value = summary_json();
    value["cells"][2]["per_round"][0]
        .as_object_mut()
        .unwrap()
        .remove("why_not");
    rejected(&value, "/cells/2/per_round/0");
    let mut value = summary_json();
    value["cells"][2]["fairness_kind"] = Value::from("bursty");
    rejected(&value, "/cells/2/fairness_kind");
    let mut value = summary_json();
    value["winners"][0]["throughput"]["tied"] = Value::from(Vec::<String>::new());
    rejected(&value, "/winners/0");
}

/// The trimmed text of every `<text>` of an SVG.
fn svg_texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
    doc.root_element()
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(|t| t.trim().to_string())
        .collect()
}

#[test]
fn under_the_hood_shows_each_trace_with_its_age_and_each_twin_field_by_field() {
    let summary = synthetic_summary();
    let (dir, _) = rendered(&summary);
    let md = read(&dir.path().join("report.md"));
    let at = md
        .find("## Under the hood")
        .expect("an Under the hood section");
    let part = &md[at..md[at..].find("## Warnings").map_or(md.len(), |j| at + j)];
    assert!(part.contains("| master-pass | master |"), "{part}");
    assert!(part.contains("3 h 0 min before this session"), "{part}");
    assert!(part.contains("master-pass twins node:rr"), "{part}");
    assert!(
        part.contains("1 field the same, 1 documented difference, 1 undocumented"),
        "{part}"
    );
    assert!(
        part.contains("documented: binary frames, not JSON lines"),
        "{part}"
    );
    assert!(part.contains("**undocumented difference**"), "{part}");
    // Without traces the section says how to make them.
    let mut bare = synthetic_summary();
    bare.under_the_hood = None;
    let (dir, _) = rendered(&bare);
    let md = read(&dir.path().join("report.md"));
    assert!(
        md.contains("No trace was found beside this session"),
        "{md}"
    );
}
