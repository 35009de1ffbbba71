//! What the data says in words: the findings (lopsided spreads, the
//! fastest and slowest targets, where the tail grows with the load) and each
//! reference server beside its lab twin. The sentences are stored in
//! `summary.json`, so they spell durations as loadgen prints them
//! (`12.35ms`, [`loadgen::result::fmt_us`]), not as the report's tables do.

use std::collections::BTreeMap;

use loadgen::result::fmt_us;

use crate::model::names::TWINS;
use crate::model::summary::{Cell, Comparison};

fn fmt_rps(x: f64) -> String {
    if x >= 1000.0 {
        format!("{:.1}k req/s", x / 1000.0)
    } else {
        format!("{x:.0} req/s")
    }
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
