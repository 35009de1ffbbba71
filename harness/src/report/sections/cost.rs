//! "Cost per request": what the server spent per request and per
//! connection, master and workers apart: CPU time and context switches.

use crate::model::summary::Spread;
use crate::report::doc::{figure, heading, text, Block, Inline, Line};
use crate::report::fmt::fmt_num;
use crate::report::index::Index;
use crate::report::plots::{Plot, PlotKind};

/// The section's heading.
pub(super) const HEADING: &str = "Cost per request";

/// `12.3 (11.9–12.8)`: the median and the range over rounds.
pub(super) fn median_range(s: &Spread, decimals: usize) -> String {
    match s.values.len() {
        0 => "–".into(),
        1 => fmt_num(s.median, decimals),
        _ => format!(
            "{} ({}–{})",
            fmt_num(s.median, decimals),
            fmt_num(s.min, decimals),
            fmt_num(s.max, decimals)
        ),
    }
}

/// A master's figure: `–` where it did nothing in any round (the
/// master of a strategy that does not pass connections).
fn master(s: &Spread, decimals: usize) -> String {
    if !s.values.is_empty() && s.max == 0.0 {
        "–".into()
    } else {
        median_range(s, decimals)
    }
}

/// The section; nothing when no cell measured any cost.
pub(super) fn section(doc: &mut Vec<Block>, m: &Index, plots: &[Plot], cpus: usize) {
    let measured = |c: &&crate::model::summary::Cell| !c.cost.cpu_us_per_request.values.is_empty();
    if !m.all_cells().iter().any(|c| measured(&c)) {
        return;
    }
    doc.push(heading(2, HEADING));
    let cpus = match cpus {
        0 => "the machine's CPUs".to_string(),
        1 => "the one CPU".to_string(),
        n => format!("the same {n} CPUs"),
    };
    doc.push(Block::Paragraph(vec![Inline::Text(format!(
        "What the server spent during the measured windows, per request answered and per connection opened: CPU time (master and workers apart), voluntary context switches (a thread went to sleep: it waited for something), involuntary ones (the scheduler took the CPU away). Each is the median over rounds with the lowest and highest round. These figures separate the mechanisms even where throughput cannot: server and load generator share {cpus}, so throughput says as much about the generator as about the server, while what the server spent per request is its own. A woken worker that finds nothing to accept usually sleeps again inside the kernel before it returns to user space, so the thundering herd shows up as context switches per connection, not as EAGAIN counts."
    ))]));
    for p in plots.iter().filter(|p| p.kind == PlotKind::Cost) {
        doc.push(figure(p));
    }
    let header: Vec<String> = [
        "target",
        "CPU µs/req master",
        "CPU µs/req workers",
        "vol. cs/req master",
        "vol. cs/req workers",
        "vol. cs/conn. master",
        "vol. cs/conn. workers",
        "invol. cs/req",
    ]
    .map(String::from)
    .to_vec();
    for &w in &m.workloads {
        for n in m.workers_of(w) {
            let cells: Vec<_> = m.cells_of(w, n).into_iter().filter(measured).collect();
            if cells.is_empty() {
                continue;
            }
            doc.push(heading(3, format!("Cost: {w}, {n} workers")));
            let rows: Vec<Vec<Line>> = cells
                .iter()
                .map(|c| {
                    let k = &c.cost;
                    vec![
                        text(&c.target),
                        text(master(&k.master_cpu_us_per_request, 1)),
                        text(median_range(&k.workers_cpu_us_per_request, 1)),
                        text(master(&k.master_vcs_per_request, 3)),
                        text(median_range(&k.workers_vcs_per_request, 3)),
                        text(master(&k.master_vcs_per_connection, 2)),
                        text(median_range(&k.workers_vcs_per_connection, 2)),
                        text(median_range(&k.ivcs_per_request, 3)),
                    ]
                })
                .collect();
            doc.push(Block::Table {
                header: header.clone(),
                numeric: vec![false, true, true, true, true, true, true, true],
                rows,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_reads_as_median_and_range() {
        let s = Spread {
            values: vec![12.0, 11.9, 12.8],
            median: 12.0,
            min: 11.9,
            max: 12.8,
            spread_pct: 7.5,
        };
        assert_eq!(median_range(&s, 1), "12.0 (11.9–12.8)");
        assert_eq!(median_range(&Spread::default(), 1), "–");
    }
}
