//! Analysis: pure functions from run records to the summary. Nothing here
//! runs or reads anything; the unit tests feed known values.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::model::names::{family, is_reference, TWINS};
use crate::model::record::RunRecord;
use crate::model::summary::{
    Cell, Comparison, Fairness, FairnessJson, KernelJson, LatencyJson, Spread, Winner,
};
use crate::model::warnings::Warning;

/// Jain's fairness index `(Σx)² / (n·Σx²)`: 1 when all are equal, `1/n` when
/// one takes everything. 1 for an empty or all-zero input (nothing to share).
pub fn jain(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let sq: f64 = xs.iter().map(|x| x * x).sum();
    if xs.is_empty() || sq == 0.0 {
        1.0
    } else {
        sum * sum / (xs.len() as f64 * sq)
    }
}

/// Largest value over the mean (1 when even).
pub fn max_over_mean(xs: &[f64]) -> f64 {
    let mean = mean(xs);
    if mean == 0.0 {
        1.0
    } else {
        xs.iter().cloned().fold(f64::MIN, f64::max) / mean
    }
}

/// Coefficient of variation: population standard deviation over the mean.
pub fn cv(xs: &[f64]) -> f64 {
    let m = mean(xs);
    if m == 0.0 {
        return 0.0;
    }
    let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len() as f64;
    var.sqrt() / m
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Median (mean of the middle two for an even count); 0 for none.
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Median, range and spread of per-round values.
pub fn spread(values: &[f64]) -> Spread {
    let med = median(values);
    let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let (min, max) = if values.is_empty() {
        (0.0, 0.0)
    } else {
        (min, max)
    };
    Spread {
        values: values.to_vec(),
        median: med,
        min,
        max,
        spread_pct: if values.len() > 1 && med > 0.0 {
            (max - min) / med * 100.0
        } else {
            0.0
        },
    }
}

/// Shares of the total, largest first.
pub fn shares(xs: &[f64]) -> Vec<f64> {
    let total: f64 = xs.iter().sum();
    let mut s: Vec<f64> = xs
        .iter()
        .map(|x| if total > 0.0 { x / total } else { 0.0 })
        .collect();
    s.sort_by(|a, b| b.total_cmp(a));
    s
}

/// Percentiles of the latency spectrum plot.
pub const SPECTRUM: &[f64] = &[50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99];

/// Percentiles of a histogram (already merged: never average percentiles).
pub fn latency_json(h: &Histogram<u64>) -> LatencyJson {
    if h.is_empty() {
        return LatencyJson::default();
    }
    let q = |p: f64| h.value_at_quantile(p / 100.0);
    let mut spectrum: Vec<(f64, u64)> = SPECTRUM.iter().map(|&p| (p, q(p))).collect();
    spectrum.push((100.0, h.max()));
    LatencyJson {
        count: h.len(),
        p50_us: q(50.0),
        p90_us: q(90.0),
        p99_us: q(99.0),
        p999_us: q(99.9),
        max_us: h.max(),
        spectrum,
    }
}

/// Adds the latency histograms of several runs.
pub fn merged_latency(runs: &[&RunRecord]) -> Result<Histogram<u64>, String> {
    let mut sum = loadgen::histo::new_histogram();
    for r in runs {
        sum.add(&r.loadgen.latency.decode()?)
            .map_err(|e| format!("adding histograms: {e:?}"))?;
    }
    Ok(sum)
}

fn fairness_of(per_round: &[Vec<f64>], median_round: usize) -> FairnessJson {
    let jains: Vec<f64> = per_round.iter().map(|x| jain(x)).collect();
    FairnessJson {
        jain: median(&jains),
        jain_per_round: jains,
        max_over_mean: median(
            &per_round
                .iter()
                .map(|x| max_over_mean(x))
                .collect::<Vec<_>>(),
        ),
        cv: median(&per_round.iter().map(|x| cv(x)).collect::<Vec<_>>()),
        shares: per_round
            .get(median_round)
            .map(|x| shares(x))
            .unwrap_or_default(),
    }
}

/// Index of the round whose value is the median (the lower middle for even counts).
fn median_index(values: &[f64]) -> usize {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    idx.get(values.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0)
}

/// Per-worker counts of one run: from the server's stats file, or else from
/// the load generator's `X-Worker` tallies, padded with zeros to the worker count.
fn per_worker(
    r: &RunRecord,
    server: fn(&crate::model::record::WorkerStats) -> u64,
    tally: fn(&loadgen::result::WorkerJson) -> u64,
) -> Vec<f64> {
    match &r.server.stats {
        Some(s) => s.workers.iter().map(|w| server(w) as f64).collect(),
        None => {
            let mut v: Vec<f64> = r.loadgen.workers.iter().map(|w| tally(w) as f64).collect();
            v.resize(v.len().max(r.workers), 0.0);
            v
        }
    }
}

/// Builds one cell from its runs (all of one target, workload, workers).
pub fn cell(runs: &[&RunRecord]) -> Result<Cell, String> {
    let first = runs.first().ok_or("a cell needs at least one run")?;
    let throughput: Vec<f64> = runs.iter().map(|r| r.loadgen.throughput_rps).collect();
    let p99s: Vec<f64> = runs
        .iter()
        .map(|r| r.loadgen.latency.p99_us as f64)
        .collect();
    let mid = median_index(&throughput);
    let per_round = |f: &dyn Fn(&RunRecord) -> Vec<f64>| -> Vec<Vec<f64>> {
        runs.iter().map(|r| f(r)).collect()
    };
    // The server's own counts where it keeps them (lab-server); otherwise the
    // load generator's tallies by X-Worker (reference servers). Workers that
    // got nothing are missing from the tallies: they count as 0.
    let connections = per_round(&|r| per_worker(r, |w| w.connections, |w| w.connections));
    let requests = per_round(&|r| per_worker(r, |w| w.requests, |w| w.requests));
    let cpu = per_round(&|r| {
        r.server
            .processes
            .iter()
            .filter(|p| !p.master)
            .map(|p| p.usage.cpu_us as f64)
            .collect()
    });
    let wasted: Vec<f64> = runs
        .iter()
        .filter_map(|r| {
            let s = r.server.stats.as_ref()?;
            let eagain: u64 = s.workers.iter().map(|w| w.accept_eagain).sum();
            let conns: u64 = s.workers.iter().map(|w| w.connections).sum();
            Some(if conns > 0 {
                eagain as f64 / conns as f64
            } else {
                0.0
            })
        })
        .collect();
    let has_stats = runs.iter().all(|r| r.server.stats.is_some());
    let master_share: Vec<f64> = runs
        .iter()
        .map(|r| {
            let total: u64 = r.server.processes.iter().map(|p| p.usage.cpu_us).sum();
            let master: u64 = r
                .server
                .processes
                .iter()
                .filter(|p| p.master)
                .map(|p| p.usage.cpu_us)
                .sum();
            if total > 0 {
                master as f64 / total as f64
            } else {
                0.0
            }
        })
        .collect();
    let errors: u64 = runs.iter().map(|r| r.loadgen.errors.total()).sum();
    let ok: u64 = runs.iter().map(|r| r.loadgen.ok).sum();
    let mut kernel = KernelJson::default();
    for r in runs {
        let c = |k: &str| r.kernel.counters.get(k).copied().unwrap_or(0);
        kernel.listen_overflows += c("ListenOverflows");
        kernel.listen_drops += c("ListenDrops");
        kernel.req_q_full_drop += c("TCPReqQFullDrop");
        kernel.migrate_req_success += c("TCPMigrateReqSuccess");
        kernel.migrate_req_failure += c("TCPMigrateReqFailure");
        kernel.out_rsts += c("OutRsts");
        kernel.max_accept_queue = kernel.max_accept_queue.max(
            r.kernel
                .accept_queue
                .listeners
                .iter()
                .map(|l| l.max)
                .max()
                .unwrap_or(0),
        );
    }
    Ok(Cell {
        target: first.target.clone(),
        family: family(&first.target),
        reference: is_reference(&first.target),
        counts_from: if has_stats {
            "server".into()
        } else {
            "load generator (X-Worker)".into()
        },
        workload: first.workload.clone(),
        workers: first.workers,
        rounds: runs.len(),
        offered_rps: first.offered_rps,
        throughput_rps: spread(&throughput),
        latency: latency_json(&merged_latency(runs)?),
        p99_us_per_round: spread(&p99s),
        fairness: Fairness {
            connections: fairness_of(&connections, mid),
            requests: fairness_of(&requests, mid),
            cpu: fairness_of(&cpu, mid),
        },
        wasted_wakeups_per_connection: has_stats.then(|| median(&wasted)),
        master_cpu_share: median(&master_share),
        errors,
        error_rate: if ok + errors > 0 {
            errors as f64 / (ok + errors) as f64
        } else {
            0.0
        },
        kernel,
        replacements: runs
            .iter()
            .filter_map(|r| r.server.stats.as_ref())
            .map(|s| s.replacements)
            .sum(),
        runs: runs.iter().map(|r| r.file_name()).collect(),
    })
}

/// Groups runs into cells, ordered by workers, workload order, target order.
pub fn cells(
    runs: &[RunRecord],
    targets: &[String],
    workloads: &[String],
) -> Result<Vec<Cell>, String> {
    let mut groups: BTreeMap<(usize, usize, usize), Vec<&RunRecord>> = BTreeMap::new();
    let pos = |list: &[String], x: &str| list.iter().position(|y| y == x).unwrap_or(usize::MAX);
    // The fault scenarios are analysed apart (fault_analysis).
    for r in runs.iter().filter(|r| r.fault.is_none()) {
        groups
            .entry((
                r.workers,
                pos(workloads, &r.workload),
                pos(targets, &r.target),
            ))
            .or_default()
            .push(r);
    }
    groups.values().map(|g| cell(g)).collect()
}

/// The best target of each (workload, workers).
pub fn winners(cells: &[Cell]) -> Vec<Winner> {
    let mut groups: BTreeMap<(usize, String), Vec<&Cell>> = BTreeMap::new();
    let mut order: Vec<(usize, String)> = Vec::new();
    for c in cells {
        let key = (c.workers, c.workload.clone());
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(c);
    }
    order
        .into_iter()
        .map(|key| {
            let g = &groups[&key];
            let best_tp = g
                .iter()
                .max_by(|a, b| a.throughput_rps.median.total_cmp(&b.throughput_rps.median))
                .expect("non-empty");
            let best_p99 = g
                .iter()
                .filter(|c| c.latency.count > 0)
                .min_by_key(|c| c.latency.p99_us)
                .unwrap_or(best_tp);
            let fairest = g
                .iter()
                .max_by(|a, b| {
                    a.fairness
                        .connections
                        .jain
                        .total_cmp(&b.fairness.connections.jain)
                })
                .expect("non-empty");
            Winner {
                workload: key.1.clone(),
                workers: key.0,
                throughput_target: best_tp.target.clone(),
                throughput_rps: best_tp.throughput_rps.median,
                p99_target: best_p99.target.clone(),
                p99_us: best_p99.latency.p99_us,
                fairest_target: fairest.target.clone(),
                fairest_jain: fairest.fairness.connections.jain,
            }
        })
        .collect()
}

fn fmt_rps(x: f64) -> String {
    if x >= 1000.0 {
        format!("{:.1}k req/s", x / 1000.0)
    } else {
        format!("{x:.0} req/s")
    }
}

fn fmt_us(us: u64) -> String {
    loadgen::result::fmt_us(us)
}

/// (workload, largest worker's share, Jain's index) of a lopsided cell.
type Lopsided = (String, f64, f64);

/// Sentences written from the data: the facts a reader should not miss.
pub fn findings(cells: &[Cell]) -> Vec<String> {
    let mut out = Vec::new();
    let mut groups: BTreeMap<(usize, String), Vec<&Cell>> = BTreeMap::new();
    for c in cells {
        groups
            .entry((c.workers, c.workload.clone()))
            .or_default()
            .push(c);
    }
    // 1. Lopsided connection spreads (one worker with at least 1.5 times its
    //    even share), one sentence per (target, workers) over all workloads.
    let mut lopsided: BTreeMap<(usize, String), Vec<Lopsided>> = BTreeMap::new();
    for c in cells
        .iter()
        .filter(|c| c.workers >= 2 && !c.fairness.connections.shares.is_empty())
    {
        let top = c.fairness.connections.shares[0];
        if top >= 1.5 / c.fairness.connections.shares.len() as f64 {
            lopsided
                .entry((c.workers, c.target.clone()))
                .or_default()
                .push((c.workload.clone(), top, c.fairness.connections.jain));
        }
    }
    for ((workers, target), list) in &lopsided {
        let names: Vec<&str> = list.iter().map(|(w, _, _)| w.as_str()).collect();
        let lo = list.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
        let hi = list.iter().map(|x| x.1).fold(0.0, f64::max);
        let share = if hi - lo < 0.005 {
            format!("{:.0}%", hi * 100.0)
        } else {
            format!("{:.0}-{:.0}%", lo * 100.0, hi * 100.0)
        };
        let jain = list.iter().map(|x| x.2).fold(f64::INFINITY, f64::min);
        out.push(format!(
            "{target}, {workers} workers: one worker took {share} of the connections (an even share is {:.0}%; Jain's index down to {jain:.2}) in {}.",
            100.0 / *workers as f64,
            names.join(", ")
        ));
    }
    // 2. Throughput: the best against the worst, per group.
    for ((workers, workload), g) in &groups {
        let best = g
            .iter()
            .max_by(|a, b| a.throughput_rps.median.total_cmp(&b.throughput_rps.median));
        let worst = g
            .iter()
            .filter(|c| c.throughput_rps.median > 0.0)
            .min_by(|a, b| a.throughput_rps.median.total_cmp(&b.throughput_rps.median));
        if let (Some(b), Some(w)) = (best, worst) {
            if g.iter().all(|c| c.offered_rps.is_none()) && b.target != w.target {
                let range = if b.rounds > 1 {
                    format!(
                        " (rounds {}..{})",
                        fmt_rps(b.throughput_rps.min),
                        fmt_rps(b.throughput_rps.max)
                    )
                } else {
                    String::new()
                };
                out.push(format!(
                    "{workload}, {workers} workers: {} was fastest at {}{range}, {:.2}x the slowest, {} at {}.",
                    b.target,
                    fmt_rps(b.throughput_rps.median),
                    b.throughput_rps.median / w.throughput_rps.median,
                    w.target,
                    fmt_rps(w.throughput_rps.median)
                ));
            }
        }
    }
    // 3. Tails under open loop: the range of p99.
    for ((workers, workload), g) in &groups {
        if g.iter().any(|c| c.offered_rps.is_some()) {
            let with: Vec<&&Cell> = g.iter().filter(|c| c.latency.count > 0).collect();
            let lo = with.iter().min_by_key(|c| c.latency.p99_us);
            let hi = with.iter().max_by_key(|c| c.latency.p99_us);
            if let (Some(lo), Some(hi)) = (lo, hi) {
                if hi.latency.p99_us > lo.latency.p99_us {
                    out.push(format!(
                        "{workload}, {workers} workers, {} offered: p99 latency ranged from {} ({}) to {} ({}).",
                        lo.offered_rps.map(fmt_rps).unwrap_or_default(),
                        fmt_us(lo.latency.p99_us),
                        lo.target,
                        fmt_us(hi.latency.p99_us),
                        hi.target
                    ));
                }
            }
        }
    }
    // 4. Thundering herd: wasted accepts.
    let waste = |c: &Cell| c.wasted_wakeups_per_connection.unwrap_or(0.0);
    if let Some(c) = cells
        .iter()
        .filter(|c| waste(c) > 0.05)
        .max_by(|a, b| waste(a).total_cmp(&waste(b)))
    {
        out.push(format!(
            "{}, {}, {} workers: {:.2} accept() calls returned EAGAIN per connection served (workers woken for a connection another worker took).",
            c.target,
            c.workload,
            c.workers,
            waste(c)
        ));
    }
    // 5. The master as a bottleneck.
    if let Some(c) = cells
        .iter()
        .filter(|c| c.family == "master-pass")
        .max_by(|a, b| a.master_cpu_share.total_cmp(&b.master_cpu_share))
    {
        if c.master_cpu_share > 0.0 {
            out.push(format!(
                "{}, {}, {} workers: the master used {:.0}% of the server's CPU accepting and passing descriptors.",
                c.target,
                c.workload,
                c.workers,
                c.master_cpu_share * 100.0
            ));
        }
    }
    out
}

/// Each reference beside its lab twin, per workload and worker count.
pub fn comparisons(cells: &[Cell]) -> Vec<Comparison> {
    let mut out = Vec::new();
    for theirs in cells.iter().filter(|c| c.reference) {
        let Some((_, ours_name)) = TWINS.iter().find(|(t, _)| *t == theirs.target) else {
            continue;
        };
        let Some(ours) = cells.iter().find(|c| {
            c.target == *ours_name && c.workload == theirs.workload && c.workers == theirs.workers
        }) else {
            continue;
        };
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        out.push(Comparison {
            workload: theirs.workload.clone(),
            workers: theirs.workers,
            ours: ours.target.clone(),
            theirs: theirs.target.clone(),
            ours_rps: ours.throughput_rps.median,
            theirs_rps: theirs.throughput_rps.median,
            throughput_ratio: ratio(ours.throughput_rps.median, theirs.throughput_rps.median),
            ours_p99_us: ours.latency.p99_us,
            theirs_p99_us: theirs.latency.p99_us,
            p99_ratio: ratio(ours.latency.p99_us as f64, theirs.latency.p99_us as f64),
            ours_jain: ours.fairness.connections.jain,
            theirs_jain: theirs.fairness.connections.jain,
        });
    }
    out
}

/// Warnings that follow from the cells.
pub fn cell_warnings(cells: &[Cell], runs: &[RunRecord]) -> Vec<Warning> {
    let mut w = Vec::new();
    for c in cells {
        if c.rounds > 1 && c.throughput_rps.spread_pct > 10.0 {
            w.push(Warning::RoundsDisagree {
                target: c.target.clone(),
                workload: c.workload.clone(),
                workers: c.workers,
                spread_pct: c.throughput_rps.spread_pct,
            });
        }
        if c.errors > 0 {
            let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
            for r in runs.iter().filter(|r| {
                r.target == c.target && r.workload == c.workload && r.workers == c.workers
            }) {
                for (k, v) in r.loadgen.errors.nonzero() {
                    *kinds.entry(k).or_default() += v;
                }
            }
            w.push(Warning::Errors {
                target: c.target.clone(),
                workload: c.workload.clone(),
                workers: c.workers,
                errors: c.errors,
                detail: kinds
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in runs {
        // A generator on another host that fell behind its share.
        for part in r
            .remote
            .iter()
            .flat_map(|x| &x.parts)
            .filter(|p| p.behind())
        {
            w.push(Warning::GeneratorSaturated {
                target: r.target.clone(),
                workload: r.workload.clone(),
                workers: r.workers,
                detail: format!(
                    "round {}: the generator on {} sent {:.0} req/s of its {:.0} req/s share",
                    r.round,
                    part.host,
                    part.achieved_rps,
                    part.rate_rps.unwrap_or(0.0)
                ),
            });
        }
        for lw in &r.loadgen.warnings {
            use loadgen::result::Warning as L;
            if matches!(lw, L::GeneratorSaturated { .. } | L::BehindSchedule { .. })
                && seen.insert((r.target.clone(), r.workload.clone(), r.workers))
            {
                w.push(Warning::GeneratorSaturated {
                    target: r.target.clone(),
                    workload: r.workload.clone(),
                    workers: r.workers,
                    detail: lw.message(),
                });
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_is_one_when_even_and_one_over_n_when_one_takes_all() {
        assert!((jain(&[5.0, 5.0, 5.0, 5.0]) - 1.0).abs() < 1e-12);
        assert!((jain(&[10.0, 0.0, 0.0, 0.0]) - 0.25).abs() < 1e-12);
        // (1+2+3)^2 / (3 * (1+4+9)) = 36/42
        assert!((jain(&[1.0, 2.0, 3.0]) - 36.0 / 42.0).abs() < 1e-12);
        assert_eq!(jain(&[]), 1.0);
    }

    #[test]
    fn max_over_mean_and_cv_known_values() {
        assert!((max_over_mean(&[1.0, 3.0]) - 1.5).abs() < 1e-12);
        // mean 2, population stdev 1 -> cv 0.5
        assert!((cv(&[1.0, 3.0]) - 0.5).abs() < 1e-12);
        assert_eq!(cv(&[4.0, 4.0]), 0.0);
        assert_eq!(max_over_mean(&[0.0, 0.0]), 1.0);
    }

    #[test]
    fn median_and_spread() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let s = spread(&[90.0, 100.0, 110.0]);
        assert_eq!((s.median, s.min, s.max), (100.0, 90.0, 110.0));
        assert!((s.spread_pct - 20.0).abs() < 1e-9);
        assert_eq!(spread(&[5.0]).spread_pct, 0.0);
    }

    #[test]
    fn shares_are_sorted_and_sum_to_one() {
        let s = shares(&[1.0, 3.0, 0.0, 4.0]);
        assert_eq!(s, vec![0.5, 0.375, 0.125, 0.0]);
    }

    #[test]
    fn median_index_picks_the_round_with_the_median_value() {
        assert_eq!(median_index(&[10.0, 30.0, 20.0]), 2);
        assert_eq!(median_index(&[5.0]), 0);
    }

    #[test]
    fn latency_comes_from_the_merged_histogram() {
        let mut a = loadgen::histo::new_histogram();
        let mut b = loadgen::histo::new_histogram();
        for v in 1..=990u64 {
            a.record(v).unwrap();
        }
        for _ in 0..10 {
            b.record(100_000).unwrap();
        }
        a.add(&b).unwrap();
        let l = latency_json(&a);
        assert!(
            l.p999_us >= 99_000,
            "the slow run's values dominate p99.9: {}",
            l.p999_us
        );
        assert_eq!(l.count, 1000);
        assert_eq!(l.spectrum.last(), Some(&(100.0, a.max())));
    }
}
