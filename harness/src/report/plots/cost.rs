//! What a request costs the server, one plot for the session: CPU µs per
//! request at a fixed offered load (the first open-loop workload), master
//! and workers stacked, and the workers' voluntary context switches per
//! connection under `close` (where every request brings a connection, and
//! a herd of woken workers shows).

use super::axes::*;
use super::style::*;
use super::{Plot, PlotKind};
use crate::model::summary::Cell;
use crate::report::fmt::fmt_num;
use crate::report::index::Index;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

/// One horizontal bar chart: a row per target, each bar one or two
/// stacked segments.
struct Panel<'a> {
    title: String,
    x_desc: &'static str,
    /// (target, segments (value, colour)) top to bottom.
    rows: Vec<(&'a str, Vec<(f64, RGBColor)>)>,
    decimals: usize,
    /// What it shows, for the caption.
    about: String,
}

/// The workload with a new connection per request: `--mode close`.
fn close_workload<'a>(m: &Index<'a>) -> Option<&'a str> {
    m.workloads.iter().copied().find(|w| {
        m.workload_json(w).map_or(*w == "close", |j| {
            j.loadgen_args
                .windows(2)
                .any(|a| a[0] == "--mode" && a[1] == "close")
        })
    })
}

const MASTER: RGBColor = WORKER_PALETTE[1];
const WORKERS: RGBColor = WORKER_PALETTE[0];

fn measured(c: &Cell) -> bool {
    !c.cost.cpu_us_per_request.values.is_empty()
}

pub(super) fn cost(m: &Index) -> Result<Option<Plot>, String> {
    let open = m.workloads.iter().copied().find(|w| {
        m.cells_of_workload(w)
            .any(|c| c.offered_rps.is_some() && measured(c))
    });
    let close = close_workload(m).filter(|w| m.cells_of_workload(w).any(measured));
    // One worker count for both: the largest that has either.
    let Some(&workers) = m.workers.iter().rev().find(|&&n| {
        [open, close]
            .iter()
            .flatten()
            .any(|w| m.cells_of(w, n).iter().any(|c| measured(c)))
    }) else {
        return Ok(None);
    };
    let mut panels = Vec::new();
    if let Some(w) = open {
        let rows: Vec<_> = m
            .cells_of(w, workers)
            .into_iter()
            .filter(|c| measured(c))
            .map(|c| {
                (
                    c.target.as_str(),
                    vec![
                        (c.cost.master_cpu_us_per_request.median, MASTER),
                        (c.cost.workers_cpu_us_per_request.median, WORKERS),
                    ],
                )
            })
            .collect();
        if !rows.is_empty() {
            panels.push(Panel {
                title: format!("CPU per request, {w} (fixed offered load)"),
                x_desc: "server CPU µs per request (median round): master + workers",
                rows,
                decimals: 1,
                about: format!("CPU time per request under {w}, where every target is offered the same load (master and workers stacked)"),
            });
        }
    }
    if let Some(w) = close {
        let rows: Vec<_> = m
            .cells_of(w, workers)
            .into_iter()
            .filter(|c| measured(c))
            .map(|c| {
                (
                    c.target.as_str(),
                    vec![(c.cost.workers_vcs_per_connection.median, WORKERS)],
                )
            })
            .collect();
        if !rows.is_empty() {
            panels.push(Panel {
                title: format!("Workers' context switches per connection, {w}"),
                x_desc: "voluntary context switches of all workers per connection (median round)",
                rows,
                decimals: 2,
                about: format!("the workers' voluntary context switches per connection under {w}, where every request brings a new connection and a worker woken for nothing shows up"),
            });
        }
    }
    if panels.is_empty() {
        return Ok(None);
    }
    let panel_h = |p: &Panel| 110 + p.rows.len() as u32 * 26;
    let height = 50 + panels.iter().map(panel_h).sum::<u32>();
    let names: Vec<&str> = panels
        .iter()
        .flat_map(|p| p.rows.iter().map(|r| r.0))
        .collect();
    let label_w = label_width(&names, LABEL_SIZE);
    let title = format!("Cost per request, {workers} workers");

    let svg = svg_string((WIDTH, height), |root| {
        let root = root.titled(&title, font(TITLE_SIZE)).map_err(de)?;
        let (charts, legend_area) = root.split_horizontally(WIDTH - LEGEND_W);
        let mut rest = charts;
        for p in &panels {
            let (area, below) = rest.split_vertically(panel_h(p));
            rest = below;
            let targets: Vec<&str> = p.rows.iter().map(|r| r.0).collect();
            let n = targets.len();
            let ys: Vec<f64> = (0..n).map(|i| i as f64).collect();
            let top = p
                .rows
                .iter()
                .map(|r| r.1.iter().map(|s| s.0).sum::<f64>())
                .filter(|v| v.is_finite())
                .fold(0.0, f64::max);
            let xmax = if top > 0.0 { top * 1.25 } else { 1.0 };
            let mut chart = ChartBuilder::on(&area)
                .caption(&p.title, font(LABEL_SIZE + 1.0))
                .margin(10)
                .x_label_area_size(48)
                .y_label_area_size(label_w)
                .build_cartesian_2d(0.0..xmax, Linear::new(-0.5..n as f64 - 0.5, ys))
                .map_err(de)?;
            let name_at = |y: &f64| row_name(*y, &targets);
            chart
                .configure_mesh()
                .disable_y_mesh()
                .light_line_style(WHITE)
                .bold_line_style(RGBColor(225, 225, 225))
                .y_label_formatter(&name_at)
                .x_label_formatter(&|x| axis_number(*x))
                .x_desc(p.x_desc)
                .label_style(font(LABEL_SIZE))
                .axis_desc_style(font(LABEL_SIZE))
                .draw()
                .map_err(de)?;
            for (i, (_, segments)) in p.rows.iter().enumerate() {
                let yc = (n - 1 - i) as f64;
                let mut x = 0.0;
                for &(v, color) in segments {
                    if !(v.is_finite() && v > 0.0) {
                        continue;
                    }
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(x, yc - 0.32), (x + v, yc + 0.32)],
                            color.mix(0.85).filled(),
                        )))
                        .map_err(de)?;
                    x += v;
                }
                let total: f64 = segments.iter().map(|s| s.0).filter(|v| v.is_finite()).sum();
                chart
                    .draw_series(std::iter::once(
                        EmptyElement::at((x, yc))
                            + Text::new(
                                fmt_num(total, p.decimals),
                                (6, 0),
                                anchored(SMALL_SIZE, HPos::Left, VPos::Center),
                            ),
                    ))
                    .map_err(de)?;
            }
        }
        let entries = [
            Entry {
                label: "master".into(),
                color: MASTER,
                marker: None,
            },
            Entry {
                label: "workers".into(),
                color: WORKERS,
                marker: None,
            },
        ];
        draw_legend(&legend_area, "server part", 40, &entries)
    })?;
    let what: Vec<&str> = panels.iter().map(|p| p.about.as_str()).collect();
    Ok(Some(Plot {
        kind: PlotKind::Cost,
        file: "cost.svg".into(),
        title,
        caption: format!(
            "What a request cost the server at {workers} workers: {}; the number is the median round.",
            what.join("; and ")
        ),
        workload: None,
        workers: Some(workers),
        svg,
    }))
}
