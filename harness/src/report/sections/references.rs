//! "Reference servers": each reference beside the lab strategy with its
//! mechanism, and what could not run.

use crate::model::names::unlabelled;
use crate::model::summary::{Interval, Summary};
use crate::model::twins::{note_for, TWIN_NOTES};
use crate::report::doc::{heading, text, Block, Inline, Line};
use crate::report::fmt::{fmt_num, fmt_rps, fmt_us};

/// The reference servers beside the lab strategy with the same mechanism,
/// and what could not run.
pub(super) fn section(doc: &mut Vec<Block>, summary: &Summary) {
    if summary.comparisons.is_empty() && summary.skipped.is_empty() {
        return;
    }
    doc.push(heading(2, "Reference servers"));
    doc.push(Block::Paragraph(text(
        "Real servers nobody here wrote, measured by the same load generator with the same workloads, beside the lab strategy that uses the same mechanism (node:rr and master-pass pass descriptors from a master; node:none and shared:epoll share one listener without exclusivity; nginx's three modes and their lab twins; apache:prefork and shared:prefork block in accept on one inherited listener, one connection per process). A throughput ratio above 1 means ours served more; a p99 or CPU ratio below 1 means ours had the shorter tail or spent less per request. Each ratio is the median of the ratios paired round by round, with its bootstrap 95% interval in brackets; where the interval does not clear the minimum effect the cell says there is no significant difference. Their per-worker counts come from the load generator's X-Worker tallies.",
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
                    ratio(c.throughput_ratio, c.throughput_interval.as_ref()),
                    text(format!(
                        "{} vs {}",
                        fmt_us(c.ours_p99_us as f64),
                        fmt_us(c.theirs_p99_us as f64)
                    )),
                    ratio(c.p99_ratio, c.p99_interval.as_ref()),
                    text(format!(
                        "{} vs {}",
                        fmt_num(c.ours_cpu_us_per_request, 1),
                        fmt_num(c.theirs_cpu_us_per_request, 1)
                    )),
                    ratio(
                        if c.theirs_cpu_us_per_request > 0.0 {
                            c.ours_cpu_us_per_request / c.theirs_cpu_us_per_request
                        } else {
                            f64::NAN
                        },
                        c.cpu_interval.as_ref(),
                    ),
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
                "ratio [95%]",
                "p99",
                "ratio [95%]",
                "CPU µs/req",
                "ratio [95%]",
                "Jain conn.",
            ]
            .map(String::from)
            .to_vec(),
            numeric: vec![false, true, false, true, true, true, true, true, true, true],
            rows,
        });
        twin_notes(doc, summary);
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

/// What each twin compared in this session copies of its reference and
/// where it differs, so that a gap in the table can be read against the code.
fn twin_notes(doc: &mut Vec<Block>, summary: &Summary) {
    let mut seen: Vec<&str> = Vec::new();
    for c in &summary.comparisons {
        let reference = unlabelled(&c.theirs);
        if let Some(note) = note_for(reference) {
            if !seen.contains(&note.reference) {
                seen.push(note.reference);
            }
        }
    }
    if seen.is_empty() {
        return;
    }
    doc.push(heading(3, "What each twin copies and where it differs"));
    let items = TWIN_NOTES
        .iter()
        .filter(|n| seen.contains(&n.reference))
        .map(|n| {
            vec![
                Inline::Strong(format!("{} twins {}", n.ours, n.reference)),
                Inline::Text(format!(
                    ": follows {}. Copies: {}. Differs: {}.",
                    n.follows,
                    n.copies,
                    n.differs.join("; ")
                )),
            ]
        })
        .collect();
    doc.push(Block::List(items));
}

/// A ratio with its interval: `1.12x [0.95-1.30]`, in bold when
/// significant, with "no significant difference" when not.
fn ratio(point: f64, interval: Option<&Interval>) -> Line {
    match interval {
        None => text(format!("{}x", fmt_num(point, 2))),
        Some(i) => {
            let s = format!(
                "{}x [{}-{}]",
                fmt_num(i.estimate, 2),
                fmt_num(i.low, 2),
                fmt_num(i.high, 2)
            );
            if i.significant {
                vec![Inline::Strong(s)]
            } else {
                text(format!("{s}, no significant difference"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_carries_its_interval_and_says_when_it_is_no_difference() {
        let i = Interval {
            low: 0.95,
            estimate: 1.12,
            high: 1.3,
            rounds: 5,
            significant: false,
        };
        assert_eq!(
            ratio(1.1, Some(&i)),
            text("1.12x [0.95-1.30], no significant difference")
        );
        let i = Interval {
            significant: true,
            ..i
        };
        assert_eq!(
            ratio(1.1, Some(&i)),
            vec![Inline::Strong("1.12x [0.95-1.30]".into())]
        );
        assert_eq!(ratio(1.1, None), text("1.10x"));
    }
}
