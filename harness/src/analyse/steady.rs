//! The steady workloads: run records grouped into cells (throughput,
//! latency, per-worker fairness, kernel counters), the winners of each
//! workload and the warnings about a cell. Pure; the unit tests feed known
//! values.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::compare::{self, Figure};
use super::stats::{cv, jain, max_over_mean, median, shares, spread};
use crate::model::names::{family, is_reference};
use crate::model::record::RunRecord;
use crate::model::summary::{
    Cell, Cost, Fairness, FairnessJson, KernelJson, LatencyJson, RoundFigures, Spread, Winner,
};
use crate::model::warnings::Warning;

/// Steal above this share of the machine's CPU time makes a run noisy.
pub const NOISY_STEAL_PCT: f64 = 5.0;
/// Other processes above this share of it too.
pub const NOISY_OTHER_PCT: f64 = 10.0;

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

/// Per-worker counts of one run's measured window, from the load
/// generator's `X-Worker` tallies (the same source for every target, and
/// exact for the window: the server's own counters also hold its warm-up),
/// padded with zeros to the worker count.
fn per_worker(r: &RunRecord, tally: fn(&loadgen::result::WorkerJson) -> u64) -> Vec<f64> {
    let mut v: Vec<f64> = r.loadgen.workers.iter().map(|w| tally(w) as f64).collect();
    v.resize(v.len().max(r.workers), 0.0);
    v
}

/// One round's own figures.
pub fn round_figures(r: &RunRecord) -> RoundFigures {
    let conns = per_worker(r, |w| w.connections);
    let requests = r.requests_in_usage_window().max(1) as f64;
    let connections = r.loadgen.connections_opened.max(1) as f64;
    let sum = |master: bool, f: fn(&crate::model::kernel::ProcUsage) -> u64| -> f64 {
        r.server
            .processes
            .iter()
            .filter(|p| p.master == master)
            .map(|p| f(&p.usage) as f64)
            .sum()
    };
    let (m_cpu, w_cpu) = (sum(true, |u| u.cpu_us), sum(false, |u| u.cpu_us));
    let (m_vcs, w_vcs) = (
        sum(true, |u| u.voluntary_ctxt_switches),
        sum(false, |u| u.voluntary_ctxt_switches),
    );
    let ivcs =
        sum(true, |u| u.involuntary_ctxt_switches) + sum(false, |u| u.involuntary_ctxt_switches);
    let steadiness = r.steadiness.as_ref();
    RoundFigures {
        round: r.round,
        steady: r.steady(),
        why_not: steadiness.and_then(|s| s.why_not.clone()),
        warmup_s: steadiness.map_or(r.loadgen.config.warmup_s, |s| s.warmup_s),
        throughput_rps: r.loadgen.throughput_rps,
        p99_us: r.loadgen.latency.p99_us,
        jain_connections: jain(&conns),
        top_connection_share: shares(&conns).first().copied().unwrap_or(0.0),
        cpu_us_per_request: (m_cpu + w_cpu) / requests,
        master_cpu_us_per_request: m_cpu / requests,
        workers_cpu_us_per_request: w_cpu / requests,
        master_vcs_per_request: m_vcs / requests,
        workers_vcs_per_request: w_vcs / requests,
        master_vcs_per_connection: m_vcs / connections,
        workers_vcs_per_connection: w_vcs / connections,
        ivcs_per_request: ivcs / requests,
        steal_pct: r.noise.as_ref().map_or(0.0, |n| n.steal_pct),
        other_cpu_pct: r.noise.as_ref().map_or(0.0, |n| n.other_cpu_pct),
        // Both counts are the server's own over its whole life (warm-up
        // included), so their ratio is that of the workload.
        eagain_per_connection: r.server.stats.as_ref().map(|s| {
            let eagain: u64 = s.workers.iter().map(|w| w.accept_eagain).sum();
            let conns: u64 = s.workers.iter().map(|w| w.connections).sum();
            if conns > 0 {
                eagain as f64 / conns as f64
            } else {
                0.0
            }
        }),
    }
}

/// Builds one cell from its runs (all of one target, workload, workers).
/// `fairness_kind` is what the workload's spread shows; `own_capacity` the
/// target's calibrated capacity, for open loop.
pub fn cell(
    runs: &[&RunRecord],
    fairness_kind: &str,
    own_capacity: Option<f64>,
) -> Result<Cell, String> {
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
    let connections = per_round(&|r| per_worker(r, |w| w.connections));
    let requests = per_round(&|r| per_worker(r, |w| w.requests));
    let cpu = per_round(&|r| {
        r.server
            .processes
            .iter()
            .filter(|p| !p.master)
            .map(|p| p.usage.cpu_us as f64)
            .collect()
    });
    let has_stats = runs.iter().all(|r| r.server.stats.is_some());
    let rounds: Vec<RoundFigures> = runs.iter().map(|r| round_figures(r)).collect();
    let wasted: Vec<f64> = rounds
        .iter()
        .filter_map(|r| r.eagain_per_connection)
        .collect();
    let col = |f: fn(&RoundFigures) -> f64| -> Spread {
        spread(&rounds.iter().map(f).collect::<Vec<_>>())
    };
    // The warm-up of the round with the median warm-up, for the report.
    let warmups: Vec<f64> = rounds.iter().map(|r| r.warmup_s).collect();
    let timeline = runs[median_index(&warmups)]
        .steadiness
        .as_ref()
        .filter(|s| !s.warmup_slices.is_empty());
    let master_share: Vec<f64> = rounds
        .iter()
        .map(|r| {
            if r.cpu_us_per_request > 0.0 {
                r.master_cpu_us_per_request / r.cpu_us_per_request
            } else {
                0.0
            }
        })
        .collect();
    let errors: u64 = runs.iter().map(|r| r.loadgen.errors.total()).sum();
    let ok: u64 = runs.iter().map(|r| r.loadgen.ok).sum();
    let opened: u64 = runs.iter().map(|r| r.loadgen.connections_opened).sum();
    let answered: u64 = runs.iter().map(|r| r.requests_in_usage_window()).sum();
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
        counts_from: "load generator (X-Worker)".into(),
        workload: first.workload.clone(),
        workers: first.workers,
        rounds: runs.len(),
        steady_rounds: rounds.iter().filter(|r| r.steady).count(),
        fairness_kind: fairness_kind.into(),
        offered_rps: first.offered_rps,
        own_capacity_rps: first.offered_rps.and(own_capacity),
        offered_share_of_own: first
            .offered_rps
            .zip(own_capacity)
            .filter(|(_, c)| *c > 0.0)
            .map(|(o, c)| o / c),
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
        timeouts: runs.iter().map(|r| r.loadgen.errors.timeout).sum(),
        starved_connections: runs.iter().map(|r| r.loadgen.starved_connections).sum(),
        starved_share: median(
            &runs
                .iter()
                .map(|r| {
                    r.loadgen.starved_connections as f64
                        / r.loadgen.config.connections.max(1) as f64
                })
                .collect::<Vec<_>>(),
        ),
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
        cost: Cost {
            cpu_us_per_request: col(|r| r.cpu_us_per_request),
            master_cpu_us_per_request: col(|r| r.master_cpu_us_per_request),
            workers_cpu_us_per_request: col(|r| r.workers_cpu_us_per_request),
            master_vcs_per_request: col(|r| r.master_vcs_per_request),
            workers_vcs_per_request: col(|r| r.workers_vcs_per_request),
            master_vcs_per_connection: col(|r| r.master_vcs_per_connection),
            workers_vcs_per_connection: col(|r| r.workers_vcs_per_connection),
            ivcs_per_request: col(|r| r.ivcs_per_request),
            connections_per_request: opened as f64 / answered.max(1) as f64,
        },
        warmup_s: col(|r| r.warmup_s),
        warmup_timeline: timeline
            .map(|s| s.warmup_slices.iter().map(|x| x.throughput_rps).collect())
            .unwrap_or_default(),
        warmup_slice_s: timeline.map_or(0.0, |s| s.slice_s),
        per_round: rounds,
        runs: runs.iter().map(|r| r.file_name()).collect(),
    })
}

/// A cell with nothing in it (for tests that fill in what they need).
#[cfg(test)]
pub(crate) fn empty_cell() -> Cell {
    Cell {
        target: String::new(),
        family: String::new(),
        reference: false,
        counts_from: String::new(),
        workload: String::new(),
        workers: 2,
        rounds: 0,
        steady_rounds: 0,
        fairness_kind: "steady".into(),
        offered_rps: None,
        own_capacity_rps: None,
        offered_share_of_own: None,
        throughput_rps: Spread::default(),
        latency: LatencyJson::default(),
        p99_us_per_round: Spread::default(),
        fairness: Fairness::default(),
        wasted_wakeups_per_connection: None,
        master_cpu_share: 0.0,
        errors: 0,
        timeouts: 0,
        starved_connections: 0,
        starved_share: 0.0,
        error_rate: 0.0,
        kernel: KernelJson::default(),
        replacements: 0,
        cost: Cost::default(),
        warmup_s: Spread::default(),
        warmup_timeline: Vec::new(),
        warmup_slice_s: 0.0,
        per_round: Vec::new(),
        runs: Vec::new(),
    }
}

/// Groups runs into cells, ordered by workers, workload order, target
/// order. `fairness_kind` names what a workload's spread shows;
/// `capacity` is a target's calibrated capacity for a workload (measured
/// with the workload's kind of connection) and a worker count.
pub fn cells(
    runs: &[RunRecord],
    targets: &[String],
    workloads: &[String],
    fairness_kind: &dyn Fn(&str) -> String,
    capacity: &dyn Fn(&str, &str, usize) -> Option<f64>,
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
    groups
        .values()
        .map(|g| {
            let r = g[0];
            cell(
                g,
                &fairness_kind(&r.workload),
                capacity(&r.target, &r.workload, r.workers),
            )
        })
        .collect()
}

/// The best targets of each (workload, workers), each with the targets it
/// cannot be told apart from ([`compare::lead`]).
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
            // A target that left clients without an answer wins nothing:
            // its figures are those of the few it served.
            let g: Vec<&Cell> = groups[&key]
                .iter()
                .copied()
                .filter(|c| answered_every_client(c))
                .collect();
            let g = &g;
            let closed_loop = g.iter().all(|c| c.offered_rps.is_none());
            Winner {
                workload: key.1.clone(),
                workers: key.0,
                throughput: if closed_loop {
                    compare::lead(g, Figure::Throughput)
                } else {
                    None
                },
                p99: compare::lead(g, Figure::P99),
                fairest: compare::lead(g, Figure::Jain),
                cheapest: compare::lead(g, Figure::CpuPerRequest),
            }
        })
        .collect()
}

/// The share of a run's connections above which the server is said to have
/// left clients waiting ([`Cell::starved_share`], median over rounds): half.
/// A dropped SYN resent a second later starves a connection now and then; a
/// server that serves one connection per worker starves nearly all of them
/// (62 of 64 with 2 workers, 60 of 64 with 4).
pub const STARVED_SHARE: f64 = 0.5;

/// Whether the cell answered its clients: in its median round no more than
/// [`STARVED_SHARE`] of the connections starved, and no request timed out.
pub fn answered_every_client(c: &Cell) -> bool {
    c.timeouts == 0 && c.starved_share <= STARVED_SHARE
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
    for c in cells {
        let unsteady: Vec<&RoundFigures> = c.per_round.iter().filter(|r| !r.steady).collect();
        if let Some(first) = unsteady.first() {
            w.push(Warning::NotSteady {
                target: c.target.clone(),
                workload: c.workload.clone(),
                workers: c.workers,
                rounds: unsteady.iter().map(|r| r.round).collect(),
                why: first.why_not.clone().unwrap_or_default(),
            });
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in runs {
        if let Some(n) = r
            .noise
            .as_ref()
            .filter(|n| n.steal_pct > NOISY_STEAL_PCT || n.other_cpu_pct > NOISY_OTHER_PCT)
        {
            w.push(Warning::Noise {
                target: r.target.clone(),
                workload: r.workload.clone(),
                workers: r.workers,
                round: r.round,
                steal_pct: n.steal_pct,
                other_cpu_pct: n.other_cpu_pct,
                detail: n
                    .others
                    .iter()
                    .map(|o| format!("{} (pid {}) {:.0} ms", o.comm, o.pid, o.cpu_ms))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
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
