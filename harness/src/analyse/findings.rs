//! What the data says in words: the findings and each reference server
//! beside its lab twin. Every "A is N x B" carries its interval (paired by
//! round, [`compare`]) and is said only when the interval lies outside the
//! band of no difference; otherwise the sentence says there is no
//! significant difference. Facts about one cell (a lopsided spread, the
//! master's share) are said only when every steady round shows them. The
//! sentences are stored in `summary.json`, so they spell durations as
//! loadgen prints them (`12.35ms`, [`loadgen::result::fmt_us`]).

use std::collections::BTreeMap;

use loadgen::result::fmt_us;

use super::compare::{self, Figure};
use super::steady::{answered_every_client, STARVED_SHARE};
use crate::model::names::twin_of;
use crate::model::summary::{Cell, Comparison, Interval};

fn fmt_rps(x: f64) -> String {
    if x >= 1000.0 {
        format!("{:.1}k req/s", x / 1000.0)
    } else {
        format!("{x:.0} req/s")
    }
}

/// `2.41x [2.10-2.63], 5 rounds`.
pub fn fmt_interval(i: &Interval) -> String {
    format!(
        "{:.2}x [{:.2}-{:.2}], {} rounds",
        i.estimate, i.low, i.high, i.rounds
    )
}

fn value(f: Figure, x: f64) -> String {
    match f {
        Figure::Throughput => fmt_rps(x),
        Figure::P99 => fmt_us(x.round() as u64),
        Figure::Jain => format!("Jain {x:.2}"),
        Figure::CpuPerRequest => format!("{x:.1} µs of CPU per request"),
        Figure::WorkersVcsPerConnection => format!("{x:.2} per connection"),
    }
}

/// Best against worst of one figure in one group: a finding when the
/// interval says so, else a sentence saying there is no difference.
fn spread_sentence(group: &str, g: &[&Cell], f: Figure, what: &str) -> Option<String> {
    let steady: Vec<&Cell> = g
        .iter()
        .copied()
        .filter(|c| answered_every_client(c))
        .filter(|c| c.per_round.iter().any(|r| r.steady && f.of(r) > 0.0))
        .collect();
    if steady.len() < 2 {
        return None;
    }
    let mut ranked = steady.clone();
    ranked.sort_by(|a, b| f.median(a).total_cmp(&f.median(b)));
    if f.higher_is_better() {
        ranked.reverse();
    }
    let best = ranked[0];
    // The worst target that has enough steady rounds beside the best's for
    // an interval (the very worst may not).
    let comparable = ranked[1..]
        .iter()
        .rev()
        .find_map(|c| Some((*c, compare::advantage(best, c, f)?)));
    let worst = comparable.map_or(ranked[ranked.len() - 1], |(c, _)| c);
    let Some(i) = comparable.map(|(_, i)| i) else {
        return Some(format!(
            "{group}: {what}: no interval: fewer than {} rounds were steady in both the best ({} {}) and any other (the worst: {} {}), so no difference is claimed.",
            compare::MIN_PAIRS,
            best.target,
            value(f, f.median(best)),
            worst.target,
            value(f, f.median(worst)),
        ));
    };
    // Targets ranked below `worst` had too few steady rounds beside the best.
    let beyond = ranked.len()
        - 1
        - ranked
            .iter()
            .position(|c| c.target == worst.target)
            .unwrap_or(0);
    let beyond = if beyond > 0 {
        format!(
            " ({beyond} target{} ranked lower had too few steady rounds beside {} for an interval)",
            if beyond > 1 { "s" } else { "" },
            best.target
        )
    } else {
        String::new()
    };
    Some(if i.significant {
        format!(
            "{group}: {what}: {} ({}) against {} ({}): {}{beyond}.",
            best.target,
            value(f, f.median(best)),
            worst.target,
            value(f, f.median(worst)),
            fmt_interval(&i)
        )
    } else {
        format!(
            "{group}: {what}: no significant difference between the best, {} ({}), and {} ({}): {}{beyond}.",
            best.target,
            value(f, f.median(best)),
            worst.target,
            value(f, f.median(worst)),
            fmt_interval(&i)
        )
    })
}

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
    // 0. Clients left without an answer: the cell's other figures are
    //    those of the few it served, so it is named and left out.
    for c in cells.iter().filter(|c| !answered_every_client(c)) {
        let starved = c.starved_share > STARVED_SHARE;
        let share = format!(
            "{:.0}% of the connections (median round; {} over {} rounds) had waited more than half the measured window for a response",
            c.starved_share * 100.0,
            c.starved_connections,
            c.rounds
        );
        let what = match (starved, c.timeouts) {
            (false, t) => format!("{t} requests timed out over {} rounds", c.rounds),
            (true, 0) => share,
            (true, t) => format!("{share} and {t} requests timed out"),
        };
        out.push(format!(
            "{}, {} workers: {} left clients without an answer: {what} (a server that serves fewer connections at once than the clients open, as classic pre-fork under keep-alive does with one connection per worker, leaves the rest in its accept queue); its figures are those of the clients it served, so it counts for no winner and no best-against-worst finding.",
            c.workload, c.workers, c.target
        ));
    }
    // 1. Lopsided connection spreads: one worker with at least 1.5 times
    //    its even share in every steady round (at least MIN_PAIRS of them).
    // (workers, target) -> [(workload and fairness kind, lowest, highest share)]
    type Lopsided = BTreeMap<(usize, String), Vec<(String, f64, f64)>>;
    let mut lopsided: Lopsided = BTreeMap::new();
    for c in cells.iter().filter(|c| c.workers >= 2) {
        let tops: Vec<f64> = c
            .per_round
            .iter()
            .filter(|r| r.steady)
            .map(|r| r.top_connection_share)
            .collect();
        let even = 1.0 / c.workers as f64;
        if tops.len() >= compare::MIN_PAIRS && tops.iter().all(|&t| t >= 1.5 * even) {
            let lo = tops.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = tops.iter().cloned().fold(0.0, f64::max);
            lopsided
                .entry((c.workers, c.target.clone()))
                .or_default()
                .push((format!("{} ({})", c.workload, c.fairness_kind), lo, hi));
        }
    }
    for ((workers, target), list) in &lopsided {
        let parts: Vec<String> = list
            .iter()
            .map(|(w, lo, hi)| format!("{w}: {:.0}-{:.0}%", lo * 100.0, hi * 100.0))
            .collect();
        out.push(format!(
            "{target}, {workers} workers: one worker took at least 1.5 times its even share ({:.0}%) of the connections in every round of {}.",
            100.0 / *workers as f64,
            parts.join("; ")
        ));
    }
    for ((workers, workload), g) in &groups {
        let group = format!("{workload}, {workers} workers");
        // 2. Throughput, closed loop (open loop serves what is offered).
        if g.iter().all(|c| c.offered_rps.is_none()) {
            out.extend(spread_sentence(&group, g, Figure::Throughput, "throughput"));
        } else {
            // 3. Tails and CPU per request at the same offered load.
            let offered = g
                .iter()
                .find_map(|c| c.offered_rps)
                .map(fmt_rps)
                .unwrap_or_default();
            let group = format!("{group}, {offered} offered");
            out.extend(spread_sentence(&group, g, Figure::P99, "p99 latency"));
            out.extend(spread_sentence(
                &group,
                g,
                Figure::CpuPerRequest,
                "server CPU per request",
            ));
        }
        // 4. The herd: workers' sleeps per connection where every request
        //    brings a new connection.
        if workload == "close" {
            out.extend(spread_sentence(
                &group,
                g,
                Figure::WorkersVcsPerConnection,
                "workers' voluntary context switches per connection (a woken worker that finds nothing sleeps again)",
            ));
        }
    }
    // 5. Accepts that found the queue empty (what of a herd reaches user
    //    space), where every steady round has them.
    let eagain = |c: &Cell| -> Option<(f64, f64, f64)> {
        let v: Vec<f64> = c
            .per_round
            .iter()
            .filter(|r| r.steady)
            .filter_map(|r| r.eagain_per_connection)
            .collect();
        (v.len() >= compare::MIN_PAIRS).then(|| {
            (
                super::stats::median(&v),
                v.iter().cloned().fold(f64::INFINITY, f64::min),
                v.iter().cloned().fold(0.0, f64::max),
            )
        })
    };
    if let Some((c, (med, lo, hi))) = cells
        .iter()
        .filter_map(|c| Some((c, eagain(c)?)))
        .filter(|(_, (_, lo, _))| *lo > 0.05)
        .max_by(|a, b| a.1 .0.total_cmp(&b.1 .0))
    {
        out.push(format!(
            "{}, {}, {} workers: {med:.2} accept() calls returned EAGAIN per connection served (rounds {lo:.2}-{hi:.2}): workers woken for a connection another worker took; most woken waiters never get this far, see the context switches.",
            c.target, c.workload, c.workers
        ));
    }
    // 6. The master as a bottleneck: its share in every steady round.
    if let Some((c, lo, hi)) = cells
        .iter()
        .filter(|c| c.family == "master-pass")
        .filter_map(|c| {
            let shares: Vec<f64> = c
                .per_round
                .iter()
                .filter(|r| r.steady && r.cpu_us_per_request > 0.0)
                .map(|r| r.master_cpu_us_per_request / r.cpu_us_per_request)
                .collect();
            (shares.len() >= compare::MIN_PAIRS).then(|| {
                (
                    c,
                    shares.iter().cloned().fold(f64::INFINITY, f64::min),
                    shares.iter().cloned().fold(0.0, f64::max),
                )
            })
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
    {
        if lo > 0.0 {
            out.push(format!(
                "{}, {}, {} workers: the master used {:.0}-{:.0}% of the server's CPU (every round) accepting and passing descriptors.",
                c.target,
                c.workload,
                c.workers,
                lo * 100.0,
                hi * 100.0
            ));
        }
    }
    out
}

/// Each reference beside its lab twin, per workload and worker count, with
/// intervals of the ratios.
pub fn comparisons(cells: &[Cell]) -> Vec<Comparison> {
    let mut out = Vec::new();
    for theirs in cells.iter().filter(|c| c.reference) {
        let Some(ours_name) = twin_of(&theirs.target) else {
            continue;
        };
        let same = |c: &&Cell, name: &str| {
            c.target == name && c.workload == theirs.workload && c.workers == theirs.workers
        };
        let bare = crate::model::names::unlabelled(&ours_name);
        let Some(ours) = cells
            .iter()
            .find(|c| same(c, &ours_name))
            .or_else(|| cells.iter().find(|c| same(c, bare)))
        else {
            continue;
        };
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let cpu = |c: &Cell| Figure::CpuPerRequest.median(c);
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
            throughput_interval: compare::ratio(ours, theirs, Figure::Throughput),
            p99_interval: compare::ratio(ours, theirs, Figure::P99),
            cpu_interval: compare::ratio(ours, theirs, Figure::CpuPerRequest),
            ours_cpu_us_per_request: cpu(ours),
            theirs_cpu_us_per_request: cpu(theirs),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::summary::RoundFigures;

    fn cell(target: &str, workload: &str, tps: &[f64]) -> Cell {
        Cell {
            target: target.into(),
            workload: workload.into(),
            rounds: tps.len(),
            per_round: tps
                .iter()
                .enumerate()
                .map(|(i, &t)| RoundFigures {
                    round: i + 1,
                    steady: true,
                    throughput_rps: t,
                    jain_connections: 1.0,
                    top_connection_share: 0.5,
                    ..Default::default()
                })
                .collect(),
            ..crate::analyse::steady::empty_cell()
        }
    }

    #[test]
    fn a_cell_that_left_clients_unanswered_is_named_and_wins_nothing() {
        // Pre-fork under keep-alive: the two clients it served run fast.
        let mut prefork = cell("shared:prefork", "keepalive", &[70e3, 71e3, 72e3]);
        prefork.starved_connections = 186;
        prefork.starved_share = 62.0 / 64.0;
        let epoll = cell("shared:epoll", "keepalive", &[30e3, 31e3, 29e3]);
        let f = findings(&[prefork.clone(), epoll.clone()]);
        assert!(
            f.iter().any(|s| s
                .contains("shared:prefork left clients without an answer: 97% of the connections (median round; 186 over 3 rounds) had waited more than half")),
            "{f:?}"
        );
        assert!(
            !f.iter().any(|s| s.contains("throughput: shared:prefork")),
            "no best-against-worst with it: {f:?}"
        );
        let w = crate::analyse::steady::winners(&[prefork.clone(), epoll.clone()]);
        let t = w[0].throughput.as_ref().expect("a throughput lead");
        assert_eq!(t.target, "shared:epoll", "{w:?}");
        // A few starved connections are the tail, not a verdict.
        let mut tail = epoll.clone();
        tail.target = "reuseport".into();
        tail.starved_connections = 3;
        tail.starved_share = 1.0 / 64.0;
        assert!(crate::analyse::steady::answered_every_client(&tail));
        // Timeouts alone leave it out.
        prefork.starved_connections = 0;
        prefork.starved_share = 0.0;
        prefork.timeouts = 62;
        let f = findings(&[prefork.clone(), epoll.clone()]);
        assert!(
            f.iter()
                .any(|s| s.contains("62 requests timed out over 3 rounds")),
            "{f:?}"
        );
        let w = crate::analyse::steady::winners(&[prefork, epoll]);
        assert_eq!(w[0].throughput.as_ref().unwrap().target, "shared:epoll");
    }

    #[test]
    fn a_pair_with_no_difference_yields_no_finding_and_a_real_one_does() {
        let a = cell("reuseport", "close", &[30e3, 28.5e3, 31e3, 29e3, 30.5e3]);
        let b = cell(
            "reuseport@b",
            "close",
            &[29e3, 30.5e3, 28.8e3, 31.2e3, 29.5e3],
        );
        let f = findings(&[a.clone(), b]);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].contains("no significant difference"), "{f:?}");
        let slow = cell(
            "reuseport@slow",
            "close",
            &[15e3, 16e3, 14.8e3, 15.5e3, 15.2e3],
        );
        let f = findings(&[a, slow]);
        assert!(
            f[0].starts_with("close, 2 workers: throughput: reuseport (") && f[0].contains("x ["),
            "{f:?}"
        );
        assert!(!f[0].contains("no significant"));
    }

    #[test]
    fn a_spread_decided_by_the_burst_in_one_round_is_not_called_lopsided() {
        let mut a = cell("shared:epoll", "keepalive", &[1.0; 5]);
        for (r, top) in a.per_round.iter_mut().zip([0.9, 0.5, 0.55, 0.8, 0.5]) {
            r.top_connection_share = top;
        }
        assert!(findings(&[a.clone()])
            .iter()
            .all(|s| !s.contains("even share")));
        for r in &mut a.per_round {
            r.top_connection_share = 0.8;
        }
        let f = findings(&[a]);
        assert!(
            f.iter()
                .any(|s| s.contains("in every round of keepalive (steady): 80-80%")),
            "{f:?}"
        );
    }
}
