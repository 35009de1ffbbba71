//! "Steadiness": the warm-up each target needed, and every round whose
//! measured window was not steady, with its reason.

use crate::report::doc::{figure, heading, text, Block, Inline, Line};
use crate::report::fmt::{fmt_num, fmt_seconds};
use crate::report::index::Index;
use crate::report::plots::{Plot, PlotKind};

/// The section's heading.
pub(super) const HEADING: &str = "Steadiness";

/// The section; nothing when no cell has rounds.
pub(super) fn section(doc: &mut Vec<Block>, m: &Index, plots: &[Plot], cap_s: Option<f64>) {
    let cells: Vec<_> = m
        .all_cells()
        .iter()
        .filter(|c| c.rounds > 0 && m.workloads.contains(&&*c.workload))
        .collect();
    if cells.is_empty() {
        return;
    }
    doc.push(heading(2, HEADING));
    doc.push(Block::Paragraph(text(format!(
        "Each run was warmed up with the workload itself, slice by slice, until its throughput stopped changing (or the warm-up reached its cap{}), then measured; the measured window was steady when its own throughput had no trend and its tail did not move. A round that was not steady is shown in every table but left out of winners and findings.",
        match cap_s {
            Some(c) => format!(", {} s", fmt_seconds(c)),
            None => ", each target's own".into(),
        }
    ))));

    // Warm-up per target, over all its cells and rounds.
    let rows: Vec<Vec<Line>> = m
        .targets
        .iter()
        .filter_map(|t| {
            let mine: Vec<_> = cells.iter().filter(|c| c.target == *t).collect();
            let values: Vec<f64> = mine
                .iter()
                .flat_map(|c| c.warmup_s.values.iter().copied())
                .collect();
            if values.is_empty() {
                return None;
            }
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[(sorted.len() - 1) / 2];
            let max = sorted[sorted.len() - 1];
            let rounds: usize = mine.iter().map(|c| c.rounds).sum();
            let steady: usize = mine.iter().map(|c| c.steady_rounds).sum();
            Some(vec![
                text(*t),
                text(format!("{} s", fmt_num(median, 1))),
                text(format!("{} s", fmt_num(max, 1))),
                text(format!("{steady} of {rounds}")),
            ])
        })
        .collect();
    if !rows.is_empty() {
        doc.push(Block::Table {
            header: [
                "target",
                "warm-up (median)",
                "warm-up (max)",
                "steady rounds",
            ]
            .map(String::from)
            .to_vec(),
            numeric: vec![false, true, true, true],
            rows,
        });
    }

    let unsteady: Vec<_> = cells
        .iter()
        .filter(|c| c.steady_rounds < c.rounds)
        .collect();
    if unsteady.is_empty() {
        doc.push(Block::Paragraph(text(
            "Every round of every cell was steady.",
        )));
    } else {
        doc.push(Block::Paragraph(text(
            "Cells with rounds that were not steady, each such round with the reason the analysis gave: the round is in the tables above but counts for no winner or finding; its whole timeline is in its run file, the warm-up of one round per target in the plot below.",
        )));
        let rows: Vec<Vec<Line>> = unsteady
            .iter()
            .map(|c| {
                let why: Vec<String> = c
                    .per_round
                    .iter()
                    .filter(|r| !r.steady)
                    .map(|r| {
                        let mut s = format!(
                            "round {}: {}",
                            r.round,
                            r.why_not.as_deref().unwrap_or("no reason recorded")
                        );
                        if r.steal_pct >= 1.0 || r.other_cpu_pct >= 1.0 {
                            s.push_str(&format!(
                                " (steal {}%, other processes {}%)",
                                fmt_num(r.steal_pct, 1),
                                fmt_num(r.other_cpu_pct, 1)
                            ));
                        }
                        s
                    })
                    .collect();
                vec![
                    text(&c.target),
                    text(&c.workload),
                    text(c.workers.to_string()),
                    text(format!("{} of {}", c.steady_rounds, c.rounds)),
                    text(why.join("; ")),
                ]
            })
            .collect();
        doc.push(Block::Table {
            header: ["target", "workload", "workers", "steady", "not steady: why"]
                .map(String::from)
                .to_vec(),
            numeric: vec![false, false, true, true, false],
            rows,
        });
    }
    let warmups: Vec<&Plot> = plots
        .iter()
        .filter(|p| p.kind == PlotKind::Warmup)
        .collect();
    if warmups.is_empty() {
        doc.push(Block::Paragraph(text(
            "The runs recorded no warm-up timeline (a session from before runs were warmed until steady), so there is no warm-up plot.",
        )));
    } else {
        doc.push(Block::Paragraph(vec![
            Inline::Strong("The warm-up, with the timeline.".into()),
            Inline::Text(
                " Throughput of each slice of the warm-up, one round per target (the round with the median warm-up), for the workload and worker count whose warm-up was longest: a target that starts slow and climbs (a JIT, cold caches, workers still forking) needs more warm-up before its figures mean anything."
                    .into(),
            ),
        ]));
        for p in warmups {
            doc.push(figure(p));
        }
    }
}
