//! Throughput per target, one plot per workload.

use super::axes::*;
use super::style::*;
use super::{file_part, Plot, PlotKind};
use crate::model::summary::Cell;
use crate::report::fmt::fmt_rate;
use crate::report::index::Index;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

pub(super) fn throughput(m: &Index, workload: &str) -> Result<Option<Plot>, String> {
    let workers = m.workers_of(workload);
    let targets: Vec<&str> = m
        .targets
        .iter()
        .copied()
        .filter(|t| workers.iter().any(|&n| m.cell(t, workload, n).is_some()))
        .collect();
    if targets.is_empty() {
        return Ok(None);
    }
    let rows = targets.len();
    let groups = workers.len();
    let row_h = (groups as u32 * 15 + 10).max(30);
    let height = 130 + rows as u32 * row_h;
    let krps = |c: &Cell| {
        (
            c.throughput_rps.min / 1e3,
            c.throughput_rps.median / 1e3,
            c.throughput_rps.max / 1e3,
        )
    };
    let top = targets
        .iter()
        .flat_map(|t| workers.iter().filter_map(|&n| m.cell(t, workload, n)))
        .map(|c| {
            krps(c)
                .2
                .max(krps(c).1)
                .max(c.offered_rps.unwrap_or(0.0) / 1e3)
        })
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    // Room on the right for the value labels.
    let xmax = if top > 0.0 { top * 1.2 } else { 1.0 };
    let label_w = label_width(&targets, LABEL_SIZE);
    let open_loop = m
        .cells_of_workload(workload)
        .any(|c| c.offered_rps.is_some());
    let title = format!("Throughput, {workload}");

    let svg = svg_string((WIDTH, height), |root| {
        let (chart_area, legend_area) = root.split_horizontally(WIDTH - LEGEND_W);
        let ys: Vec<f64> = (0..rows).map(|i| i as f64).collect();
        let mut chart = ChartBuilder::on(&chart_area)
            .caption(&title, font(TITLE_SIZE))
            .margin(12)
            .x_label_area_size(52)
            .y_label_area_size(label_w)
            .build_cartesian_2d(0.0..xmax, Linear::new(-0.5..rows as f64 - 0.5, ys))
            .map_err(de)?;
        let name_at = |y: &f64| row_name(*y, &targets);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .y_label_formatter(&name_at)
            .x_label_formatter(&|x| axis_number(*x))
            .x_desc("successful requests, thousands per second (bar: median of rounds; whisker: min–max)")
            .label_style(font(LABEL_SIZE))
            .axis_desc_style(font(LABEL_SIZE))
            .draw()
            .map_err(de)?;
        let band = 0.8 / groups as f64;
        for (i, t) in targets.iter().enumerate() {
            let yc = (rows - 1 - i) as f64;
            for (j, &n) in workers.iter().enumerate() {
                let Some(c) = m.cell(t, workload, n) else {
                    continue;
                };
                let (lo, med, hi) = krps(c);
                if !(med.is_finite() && lo.is_finite() && hi.is_finite()) {
                    continue;
                }
                let top = yc + 0.4 - j as f64 * band;
                let (y0, y1) = (top - band * 0.88, top - band * 0.12);
                let mid = (y0 + y1) / 2.0;
                let color = WORKER_PALETTE[j % WORKER_PALETTE.len()];
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(0.0, y0), (med, y1)],
                        color.mix(0.85).filled(),
                    )))
                    .map_err(de)?;
                if c.rounds > 1 {
                    chart
                        .draw_series(std::iter::once(ErrorBar::new_horizontal(
                            mid,
                            lo,
                            med,
                            hi,
                            BLACK.stroke_width(1),
                            6,
                        )))
                        .map_err(de)?;
                }
                // The number goes right of everything drawn in the row.
                let offered_k = c
                    .offered_rps
                    .filter(|r| r.is_finite() && *r > 0.0)
                    .map(|r| r / 1e3);
                let label_x = hi.max(med).max(offered_k.unwrap_or(0.0));
                if let Some(offered) = c.offered_rps.filter(|r| r.is_finite() && *r > 0.0) {
                    let x = offered / 1e3;
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(x, y0 - band * 0.1), (x, y1 + band * 0.1)],
                            BLACK.stroke_width(2),
                        )))
                        .map_err(de)?;
                }
                let label = fmt_rate(c.throughput_rps.median);
                chart
                    .draw_series(std::iter::once(
                        EmptyElement::at((label_x, mid))
                            + Text::new(
                                label,
                                (6, 0),
                                anchored(SMALL_SIZE, HPos::Left, VPos::Center),
                            ),
                    ))
                    .map_err(de)?;
            }
        }
        let entries: Vec<Entry> = workers
            .iter()
            .enumerate()
            .map(|(j, n)| Entry {
                label: format!("{n} workers"),
                color: WORKER_PALETTE[j % WORKER_PALETTE.len()],
                marker: None,
            })
            .collect();
        draw_legend(&legend_area, "worker processes", 60, &entries)?;
        if open_loop {
            let y = 60 + 26 + entries.len() as i32 * 24 + 10;
            legend_area
                .draw(&PathElement::new(
                    vec![(24, y - 9), (24, y + 9)],
                    BLACK.stroke_width(2),
                ))
                .map_err(de)?;
            legend_area
                .draw(&Text::new(
                    "rate offered",
                    (48, y),
                    anchored(SMALL_SIZE, HPos::Left, VPos::Center),
                ))
                .map_err(de)?;
        }
        Ok(())
    })?;
    Ok(Some(Plot {
        kind: PlotKind::Throughput,
        file: format!("throughput-{}.svg", file_part(workload)),
        title,
        caption: format!(
            "Throughput of each target under {workload}: the bar is the median round, the whisker spans the slowest to the fastest round, the number is the median in req/s{}.",
            if open_loop { "; the black tick is the rate offered" } else { "" }
        ),
        workload: Some(workload.into()),
        workers: None,
        svg,
    }))
}
