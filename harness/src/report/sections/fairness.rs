//! "Fairness: the burst and the steady state": Jain's index of connections
//! per target and workload, the workloads grouped by what their spread
//! shows (the cells' `fairness_kind`, never their names).

use crate::model::summary::FairnessJson;
use crate::report::doc::{heading, text, Block, Inline, Line};
use crate::report::fmt::fmt_num;
use crate::report::index::Index;

/// The section's heading.
pub(super) const HEADING: &str = "Fairness: the burst and the steady state";

/// Kinds in the order of the columns; anything else (an old session's
/// empty kind) comes last, unlabelled.
const KINDS: [&str; 2] = ["burst", "steady"];

/// Workloads with cells of `workers`, burst first, then steady, then
/// unlabelled, each group in workload order.
fn columns<'a>(m: &Index<'a>, workers: usize) -> Vec<(&'a str, Option<&'a str>)> {
    let with_cells: Vec<&'a str> = m
        .workloads
        .iter()
        .copied()
        .filter(|w| !m.cells_of(w, workers).is_empty())
        .collect();
    let rank = |k: Option<&str>| {
        k.and_then(|k| KINDS.iter().position(|x| *x == k))
            .unwrap_or(KINDS.len())
    };
    let mut cols: Vec<(&'a str, Option<&'a str>)> = with_cells
        .into_iter()
        .map(|w| (w, m.fairness_kind(w)))
        .collect();
    cols.sort_by_key(|(_, k)| rank(*k));
    cols
}

/// `0.981 (0.970–0.990)`: the median over rounds and the per-round range.
pub(super) fn jain_with_range(f: &FairnessJson) -> String {
    if f.jain_per_round.is_empty() {
        return "–".into();
    }
    let lo = f
        .jain_per_round
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    let hi = f
        .jain_per_round
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    if f.jain_per_round.len() == 1 {
        fmt_num(f.jain, 3)
    } else {
        format!(
            "{} ({}–{})",
            fmt_num(f.jain, 3),
            fmt_num(lo, 3),
            fmt_num(hi, 3)
        )
    }
}

/// The section; nothing when no cell has a connection spread.
pub(super) fn section(doc: &mut Vec<Block>, m: &Index) {
    let any = m.all_cells().iter().any(|c| {
        !c.fairness.connections.jain_per_round.is_empty() && m.workloads.contains(&&*c.workload)
    });
    if !any {
        return;
    }
    doc.push(heading(2, HEADING));
    let kinds: Vec<&str> = m
        .workloads
        .iter()
        .filter_map(|w| m.fairness_kind(w))
        .collect();
    let mut about: Line = vec![Inline::Text(
        "Jain's index of the connections each worker accepted (1 = even, 1/n = one worker took all): the median over rounds and, in brackets, the lowest and highest round. The same mechanism can look unfair or fair depending on how connections arrive, so the workloads are grouped by what their spread shows. "
            .into(),
    )];
    if kinds.contains(&"burst") {
        about.push(Inline::Strong("Burst:".into()));
        about.push(Inline::Text(
            " keep-alive connections (64) are opened at once at the start and kept for the whole run, so the spread shows where that one burst landed: whichever worker was awake first keeps what it took, and the index says nothing about how connections arriving later would be shared. "
                .into(),
        ));
    }
    if kinds.contains(&"steady") {
        about.push(Inline::Strong("Steady:".into()));
        about.push(Inline::Text(
            " connections keep arriving during the measured window (a new connection per request, or recycled keep-alive connections closed after 100 responses as clients and proxies do), so the spread is that of a server under a steady flow of new connections: the figure to judge a mechanism's balance by."
                .into(),
        ));
    }
    if kinds.is_empty() {
        about.push(Inline::Text(
            "This session recorded no kind for its workloads (it predates them), so the columns are not labelled: a keep-alive workload whose connections are opened once and kept shows where that burst landed, not a steady share."
                .into(),
        ));
    }
    doc.push(Block::Paragraph(about));
    for &n in &m.workers {
        let cols = columns(m, n);
        if cols.is_empty() {
            continue;
        }
        doc.push(heading(3, format!("Fairness at {n} workers")));
        let mut header = vec!["target".to_string()];
        header.extend(cols.iter().map(|(w, k)| match k {
            Some(k) => format!("{k}: {w}"),
            None => w.to_string(),
        }));
        let mut numeric = vec![false];
        numeric.extend(cols.iter().map(|_| true));
        let rows: Vec<Vec<Line>> = m
            .targets
            .iter()
            .filter(|t| cols.iter().any(|(w, _)| m.cell(t, w, n).is_some()))
            .map(|t| {
                let mut row = vec![text(*t)];
                row.extend(cols.iter().map(|(w, _)| {
                    text(
                        m.cell(t, w, n)
                            .map_or("–".into(), |c| jain_with_range(&c.fairness.connections)),
                    )
                }));
                row
            })
            .collect();
        doc.push(Block::Table {
            header,
            numeric,
            rows,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_reads_as_median_and_round_range() {
        let f = FairnessJson {
            jain: 0.981,
            jain_per_round: vec![0.99, 0.981, 0.97],
            ..FairnessJson::default()
        };
        assert_eq!(jain_with_range(&f), "0.981 (0.970–0.990)");
        assert_eq!(jain_with_range(&FairnessJson::default()), "–");
    }
}
