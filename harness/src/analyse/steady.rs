//! The steady workloads: run records grouped into cells (throughput,
//! latency, per-worker fairness, kernel counters), the winners of each
//! workload and the warnings about a cell. Pure; the unit tests feed known
//! values.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::stats::{cv, jain, max_over_mean, median, shares, spread};
use crate::model::names::{family, is_reference};
use crate::model::record::RunRecord;
use crate::model::summary::{Cell, Fairness, FairnessJson, KernelJson, LatencyJson, Winner};
use crate::model::warnings::Warning;

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
    // The fault scenarios are analysed apart (analyse::faults).
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
