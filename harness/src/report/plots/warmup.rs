//! The warm-up over time: throughput per slice, one round per target (the
//! round with the median warm-up), for the (workload, workers) whose
//! warm-up was the longest.

use super::axes::*;
use super::style::*;
use super::{Plot, PlotKind};
use crate::model::summary::Cell;
use crate::report::index::Index;
use plotters::prelude::*;

fn has_timeline(c: &Cell) -> bool {
    c.warmup_timeline.len() > 1 && c.warmup_slice_s > 0.0
}

pub(super) fn warmup(m: &Index) -> Result<Option<Plot>, String> {
    // The (workload, workers) with the longest warm-up any round needed.
    let Some(longest) = m
        .all_cells()
        .iter()
        .filter(|c| has_timeline(c) && m.workloads.contains(&&*c.workload))
        .max_by(|a, b| a.warmup_s.max.total_cmp(&b.warmup_s.max))
    else {
        return Ok(None);
    };
    let (workload, workers) = (longest.workload.as_str(), longest.workers);
    let cells: Vec<&Cell> = m
        .cells_of(workload, workers)
        .into_iter()
        .filter(|c| has_timeline(c))
        .collect();
    let points = |c: &Cell| -> Vec<(f64, f64)> {
        c.warmup_timeline
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| ((i + 1) as f64 * c.warmup_slice_s, v / 1e3))
            .collect()
    };
    let x_hi = cells
        .iter()
        .map(|c| c.warmup_timeline.len() as f64 * c.warmup_slice_s)
        .fold(0.0, f64::max);
    let y_hi = cells
        .iter()
        .flat_map(|c| points(c))
        .map(|p| p.1)
        .fold(0.0, f64::max);
    let (x_hi, y_hi) = (
        x_hi.max(0.1) * 1.05,
        if y_hi > 0.0 { y_hi * 1.15 } else { 1.0 },
    );
    let title = format!("Warm-up, {workload}, {workers} workers");

    let svg = svg_string((WIDTH, 480), |root| {
        let (chart_area, legend_area) = root.split_horizontally(WIDTH - LEGEND_W);
        let mut chart = ChartBuilder::on(&chart_area)
            .caption(&title, font(TITLE_SIZE))
            .margin(12)
            .margin_right(20)
            .x_label_area_size(52)
            .y_label_area_size(78)
            .build_cartesian_2d(0.0..x_hi, 0.0..y_hi)
            .map_err(de)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .x_label_formatter(&|x| axis_number(*x))
            .y_label_formatter(&|y| axis_number(*y))
            .x_desc("time into the warm-up, s (end of each slice)")
            .y_desc("successful requests, k/s")
            .label_style(font(LABEL_SIZE))
            .axis_desc_style(font(LABEL_SIZE))
            .draw()
            .map_err(de)?;
        for c in &cells {
            chart
                .draw_series(LineSeries::new(
                    points(c),
                    target_color(m, &c.target).stroke_width(2),
                ))
                .map_err(de)?;
        }
        // A marker at the end of each line: where the measured window began.
        let plotting = chart.plotting_area().strip_coord_spec();
        let (dx, dy) = chart.plotting_area().get_base_pixel();
        for c in &cells {
            if let Some(last) = points(c).last() {
                let (px, py) = chart.backend_coord(last);
                draw_marker(
                    &plotting,
                    (px - dx, py - dy),
                    shape_of(&c.target),
                    target_color(m, &c.target),
                )?;
            }
        }
        let entries: Vec<Entry> = cells
            .iter()
            .map(|c| Entry {
                label: c.target.clone(),
                color: target_color(m, &c.target),
                marker: Some(shape_of(&c.target)),
            })
            .collect();
        draw_legend(&legend_area, "target", 40, &entries)
    })?;
    let slice_ms = (longest.warmup_slice_s * 1e3).round();
    Ok(Some(Plot {
        kind: PlotKind::Warmup,
        file: "warmup.svg".into(),
        title,
        caption: format!(
            "Throughput of each {slice_ms:.0} ms slice of the warm-up under {workload} with {workers} workers (the workload and worker count whose warm-up was the longest), one round per target: the round with the median warm-up. The marker is where the warm-up ended and the measured window began; a line still climbing there was cut off at its cap."
        ),
        workload: Some(workload.into()),
        workers: Some(workers),
        svg,
    }))
}
