//! "Reference servers": each reference beside the lab strategy with its
//! mechanism, and what could not run.

use crate::model::summary::Summary;
use crate::report::doc::{heading, text, Block, Inline};
use crate::report::fmt::{fmt_num, fmt_rps, fmt_us};

/// The reference servers beside the lab strategy with the same mechanism,
/// and what could not run.
pub(super) fn section(doc: &mut Vec<Block>, summary: &Summary) {
    if summary.comparisons.is_empty() && summary.skipped.is_empty() {
        return;
    }
    doc.push(heading(2, "Reference servers"));
    doc.push(Block::Paragraph(text(
        "Real servers nobody here wrote, measured by the same load generator with the same workloads, beside the lab strategy that uses the same mechanism (node:rr and master-pass pass descriptors from a master; node:none and shared:epoll share one listener without exclusivity; nginx's three modes and their lab twins). A throughput ratio above 1 means ours served more; a p99 ratio below 1 means ours had the shorter tail. Their per-worker counts come from the load generator's X-Worker tallies.",
    )));
    if !summary.comparisons.is_empty() {
        let rows = summary
            .comparisons
            .iter()
            .map(|c| {
                vec![
                    text(&c.workload),
                    text(c.workers.to_string()),
                    text(format!("{} vs {}", c.ours, c.theirs)),
                    text(format!(
                        "{} vs {}",
                        fmt_rps(c.ours_rps),
                        fmt_rps(c.theirs_rps)
                    )),
                    vec![Inline::Strong(format!(
                        "{}x",
                        fmt_num(c.throughput_ratio, 2)
                    ))],
                    text(format!(
                        "{} vs {}",
                        fmt_us(c.ours_p99_us as f64),
                        fmt_us(c.theirs_p99_us as f64)
                    )),
                    vec![Inline::Strong(format!("{}x", fmt_num(c.p99_ratio, 2)))],
                    text(format!(
                        "{} vs {}",
                        fmt_num(c.ours_jain, 2),
                        fmt_num(c.theirs_jain, 2)
                    )),
                ]
            })
            .collect();
        doc.push(Block::Table {
            header: [
                "workload",
                "workers",
                "ours vs theirs",
                "req/s",
                "ratio",
                "p99",
                "ratio",
                "Jain conn.",
            ]
            .map(String::from)
            .to_vec(),
            numeric: vec![false, true, false, true, true, true, true, true],
            rows,
        });
    }
    if !summary.skipped.is_empty() {
        doc.push(Block::Paragraph(text(
            "Could not run (no numbers are shown for these rather than wrong ones):",
        )));
        doc.push(Block::List(
            summary
                .skipped
                .iter()
                .map(|s| match &s.workload {
                    Some(w) => text(format!("{} / {}: {}", s.target, w, s.reason)),
                    None => text(format!("{}: {}", s.target, s.reason)),
                })
                .collect(),
        ));
    }
}
