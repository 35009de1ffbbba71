//! "Who wins": the best target of each workload and worker count.

use crate::model::summary::Summary;
use crate::report::doc::{heading, text, Block, Inline};
use crate::report::fmt::{fmt_num, fmt_rps, fmt_us};
use crate::report::index::Index;

/// The winners table.
pub(super) fn section(doc: &mut Vec<Block>, summary: &Summary, m: &Index) {
    doc.push(heading(2, "Who wins"));
    if summary.winners.is_empty() {
        doc.push(Block::Paragraph(text("No cell finished, so nothing won.")));
        return;
    }
    let mut ws: Vec<_> = summary.winners.iter().collect();
    let pos = |w: &str| {
        m.workloads
            .iter()
            .position(|x| *x == w)
            .unwrap_or(usize::MAX)
    };
    ws.sort_by_key(|w| (pos(&w.workload), w.workers));
    let rows = ws
        .iter()
        .map(|w| {
            vec![
                text(&w.workload),
                text(w.workers.to_string()),
                vec![
                    Inline::Strong(w.throughput_target.clone()),
                    Inline::Text(format!(" {}", fmt_rps(w.throughput_rps))),
                ],
                vec![
                    Inline::Strong(w.p99_target.clone()),
                    Inline::Text(format!(" {}", fmt_us(w.p99_us as f64))),
                ],
                vec![
                    Inline::Strong(w.fairest_target.clone()),
                    Inline::Text(format!(" Jain {}", fmt_num(w.fairest_jain, 3))),
                ],
            ]
        })
        .collect();
    doc.push(Block::Table {
        header: [
            "workload",
            "workers",
            "most throughput",
            "lowest p99",
            "fairest (connections)",
        ]
        .map(String::from)
        .to_vec(),
        numeric: vec![false, true, false, false, false],
        rows,
    });
}
