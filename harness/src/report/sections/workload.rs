//! One steady workload: what it is, how fast each target served it, how
//! evenly and at what cost, and its plots.

use crate::model::summary::FairnessJson;
use crate::report::doc::{figure, heading, text, Block, Inline};
use crate::report::fmt::{fmt_kernel, fmt_num, fmt_rate, fmt_rps, fmt_share, fmt_us, fmt_us_range};
use crate::report::index::Index;
use crate::report::plots::{Plot, PlotKind};

/// The section of `workload`.
pub(super) fn section(doc: &mut Vec<Block>, m: &Index, workload: &str, plots: &[Plot]) {
    doc.push(heading(2, format!("Workload {workload}")));
    let mut about = Vec::new();
    if let Some(j) = m.workload_json(workload) {
        about.push(Inline::Text(format!("{}. ", capitalise(&j.description))));
        about.push(Inline::Text("loadgen ".into()));
        about.push(Inline::Code(j.loadgen_args.join(" ")));
        if let Some(share) = j.capacity_share {
            about.push(Inline::Text(format!(
                ", offered at {} of the calibrated capacity",
                fmt_share(share)
            )));
        }
        about.push(Inline::Text(".".into()));
    }
    let workers = m.workers_of(workload);
    let share = m.workload_json(workload).and_then(|j| j.capacity_share);
    let offered: Vec<String> = workers
        .iter()
        .filter_map(|&n| {
            m.cells_of(workload, n)
                .iter()
                .find_map(|c| c.offered_rps)
                .map(|r| {
                    let of = match (share, m.calibration(workload, n)) {
                        (Some(s), Some(k)) => format!(
                            " ({} of {}'s capacity{}, {})",
                            fmt_share(s),
                            k.target,
                            if k.mode == "close" {
                                " with a new connection per request"
                            } else {
                                ""
                            },
                            fmt_rps(k.capacity_rps)
                        ),
                        _ => String::new(),
                    };
                    format!("{} at {n} workers{of}", fmt_rps(r))
                })
        })
        .collect();
    let open_loop = !offered.is_empty();
    if open_loop {
        about.push(Inline::Text(format!(
            " Offered: {}. Every target is offered the same rate; the table says what share of its own capacity (calibrated the same way) that was.",
            offered.join(", ")
        )));
    }
    if let Some(kind) = m.fairness_kind(workload) {
        about.push(Inline::Text(format!(
            " Its spread of connections is a {kind} one ({}).",
            if kind == "burst" {
                "connections opened together at the start and kept"
            } else {
                "connections keep arriving during the measured window"
            }
        )));
    }
    if !about.is_empty() {
        doc.push(Block::Paragraph(about));
    }

    // Two tables rather than one of fourteen columns: how fast, then how
    // evenly and at what cost. Both list the same rows in the same order.
    let mut speed = Vec::new();
    let mut spread_rows = Vec::new();
    for &n in &workers {
        let cells = m.cells_of(workload, n);
        let contest = cells.len() > 1;
        let best_rps = cells
            .iter()
            .map(|c| c.throughput_rps.median)
            .fold(f64::NEG_INFINITY, f64::max);
        let best_p99 = cells
            .iter()
            .filter(|c| c.latency.count > 0)
            .map(|c| c.latency.p99_us)
            .min();
        let best_jain = cells
            .iter()
            .map(|c| c.fairness.connections.jain)
            .fold(f64::NEG_INFINITY, f64::max);
        for c in cells {
            let strong_if = |win: bool, s: String| {
                if win && contest {
                    vec![Inline::Strong(s)]
                } else {
                    text(s)
                }
            };
            let t = &c.throughput_rps;
            let p = &c.p99_us_per_round;
            let lat = &c.latency;
            let has_lat = lat.count > 0;
            let us = |v: u64| {
                if has_lat {
                    fmt_us(v as f64)
                } else {
                    "–".into()
                }
            };
            let mut row = vec![
                text(&c.target),
                text(n.to_string()),
                strong_if(
                    t.median == best_rps,
                    format!(
                        "{} ({}–{})",
                        fmt_rate(t.median),
                        fmt_rate(t.min),
                        fmt_rate(t.max)
                    ),
                ),
            ];
            if open_loop {
                let calibrated = m.calibration(workload, n).map(|k| k.target.as_str());
                row.push(text(offered_share(
                    share,
                    calibrated,
                    c.offered_share_of_own,
                )));
            }
            row.extend([
                text(format!("{}%", fmt_num(t.spread_pct, 0))),
                text(us(lat.p50_us)),
                strong_if(
                    has_lat && Some(lat.p99_us) == best_p99,
                    if has_lat && p.values.len() > 1 {
                        format!(
                            "{} ({})",
                            fmt_us(lat.p99_us as f64),
                            fmt_us_range(p.min, p.max)
                        )
                    } else {
                        us(lat.p99_us)
                    },
                ),
                text(us(lat.p999_us)),
                text(us(lat.max_us)),
                text(if c.errors == 0 {
                    "0".into()
                } else {
                    format!("{} ({})", c.errors, fmt_share(c.error_rate))
                }),
            ]);
            speed.push(row);
            spread_rows.push(vec![
                text(&c.target),
                text(n.to_string()),
                strong_if(
                    c.fairness.connections.jain == best_jain,
                    fairness(&c.fairness.connections),
                ),
                text(fairness(&c.fairness.requests)),
                text(fairness(&c.fairness.cpu)),
                text(
                    c.wasted_wakeups_per_connection
                        .map_or("n/a".into(), |w| fmt_num(w, 2)),
                ),
                text(if c.master_cpu_share > 0.0 {
                    fmt_share(c.master_cpu_share)
                } else {
                    "–".into()
                }),
                text(fmt_kernel(&c.kernel, c.replacements)),
            ]);
        }
    }
    if speed.is_empty() {
        doc.push(Block::Paragraph(text("No cell of this workload finished.")));
        return;
    }
    doc.push(Block::Paragraph(vec![
        Inline::Strong("Speed.".into()),
        Inline::Text(
            " Throughput counts successful requests (median round, with the slowest and fastest); latency is of all rounds' histograms merged, the p99 range is each round's own p99. Bold: the best of its worker count."
                .into(),
        ),
    ]));
    let mut header: Vec<String> = ["target", "workers", "req/s (min–max)"]
        .map(String::from)
        .to_vec();
    let mut numeric = vec![false, true, true];
    if open_loop {
        header.push("offered: share of capacity".into());
        numeric.push(true);
    }
    header.extend(["spread", "p50", "p99 (rounds)", "p99.9", "max", "errors"].map(String::from));
    numeric.extend([true; 6]);
    doc.push(Block::Table {
        header,
        numeric,
        rows: speed,
    });
    let kind = m.fairness_kind(workload);
    doc.push(Block::Paragraph(vec![
        Inline::Strong("Fairness and cost.".into()),
        Inline::Text(format!(
            " Jain's index per worker (1 = even, 1/n = one worker took all) with the busiest worker over the mean{}; wasted wakeups per connection; the master's share of the server's CPU; kernel counters that moved. Bold: the most even connection split.",
            kind.map_or(String::new(), |k| format!(
                "; the connections' spread is a {k} one (see \"{}\")",
                super::fairness::HEADING
            ))
        )),
    ]));
    doc.push(Block::Table {
        header: vec![
            "target".into(),
            "workers".into(),
            match kind {
                Some(k) => format!("Jain conn., {k} (max/mean)"),
                None => "Jain conn. (max/mean)".into(),
            },
            "Jain req. (max/mean)".into(),
            "Jain CPU (max/mean)".into(),
            "wasted wakeups".into(),
            "master CPU".into(),
            "kernel counters".into(),
        ],
        numeric: vec![false, true, true, true, true, true, true, false],
        rows: spread_rows,
    });

    let of = |kind: PlotKind, workers: Option<usize>| {
        plots.iter().filter(move |p| {
            p.kind == kind
                && p.workload.as_deref() == Some(workload)
                && (workers.is_none() || p.workers == workers)
        })
    };
    for p in of(PlotKind::Throughput, None) {
        doc.push(figure(p));
    }
    for &n in &workers {
        for p in of(PlotKind::Spectrum, Some(n)).chain(of(PlotKind::Shares, Some(n))) {
            doc.push(figure(p));
        }
    }
}

fn fairness(f: &FairnessJson) -> String {
    if f.shares.is_empty() && f.jain_per_round.is_empty() {
        return "–".into();
    }
    format!("{} ({}×)", fmt_num(f.jain, 3), fmt_num(f.max_over_mean, 2))
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first
            .to_uppercase()
            .chain(c)
            .collect::<String>()
            .trim_end_matches('.')
            .to_string(),
        None => String::new(),
    }
}

/// An open-loop cell's offered rate as shares: `50% of reuseport's = 73%
/// of its own`.
fn offered_share(
    of_calibrated: Option<f64>,
    calibrated: Option<&str>,
    of_own: Option<f64>,
) -> String {
    match (of_calibrated, calibrated, of_own) {
        (Some(s), Some(t), Some(own)) => {
            format!("{} of {t}'s = {} of its own", fmt_share(s), fmt_share(own))
        }
        (_, _, Some(own)) => format!("{} of its own", fmt_share(own)),
        (Some(s), Some(t), None) => format!("{} of {t}'s", fmt_share(s)),
        _ => "–".into(),
    }
}
