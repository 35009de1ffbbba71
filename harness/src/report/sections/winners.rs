//! "Who wins": the best target of each workload and worker count, per
//! figure, with the targets it cannot be told apart from.

use crate::model::summary::{Lead, Summary};
use crate::report::doc::{heading, text, Block, Inline, Line};
use crate::report::fmt::{fmt_num, fmt_rps, fmt_us};
use crate::report::index::Index;

/// One table cell: the winner in bold with its value and lead, or the
/// targets tied with it.
fn lead_cell(l: &Option<Lead>, value: impl Fn(f64) -> String) -> Line {
    let Some(l) = l else {
        return text("-");
    };
    let lead = l.lead.as_ref().map_or(String::new(), |i| {
        format!("; {:.2}x [{:.2}-{:.2}] the next", i.estimate, i.low, i.high)
    });
    if l.tied.len() > 1 {
        vec![Inline::Text(format!(
            "no significant difference: {} ({} {}{lead})",
            l.tied.join(", "),
            l.target,
            value(l.value)
        ))]
    } else {
        vec![
            Inline::Strong(l.target.clone()),
            Inline::Text(format!(" {}{lead}", value(l.value))),
        ]
    }
}

/// The winners table.
pub(super) fn section(doc: &mut Vec<Block>, summary: &Summary, m: &Index) {
    doc.push(heading(2, "Who wins"));
    if summary.winners.is_empty() {
        doc.push(Block::Paragraph(text("No cell finished, so nothing won.")));
        return;
    }
    doc.push(Block::Paragraph(text(
        "The best target by its median over steady rounds. A target wins only when the whole interval of its lead over every other target (the ratio paired round by round, bootstrap 95%) is beyond the minimum effect (10% for throughput and CPU per request, 25% for Jain's index, 50% for p99); otherwise the cell lists every target it cannot be told apart from. [lo-hi] is the interval of the lead over the runner-up. Open loop serves what is offered, so it has no throughput winner. Beside each workload, what its spread of connections shows: burst (opened together and kept) or steady (they keep arriving).",
    )));
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
                text(m.workload_with_kind(&w.workload)),
                text(w.workers.to_string()),
                lead_cell(&w.throughput, fmt_rps),
                lead_cell(&w.p99, fmt_us),
                lead_cell(&w.fairest, |j| format!("Jain {}", fmt_num(j, 3))),
                lead_cell(&w.cheapest, |c| format!("{} µs/req", fmt_num(c, 1))),
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
            "least CPU per request",
        ]
        .map(String::from)
        .to_vec(),
        numeric: vec![false, true, false, false, false, false],
        rows,
    });
}
