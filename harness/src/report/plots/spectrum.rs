//! Latency percentile spectrum, one plot per workload and worker count.

use super::axes::*;
use super::style::*;
use super::{file_part, Plot, PlotKind};
use crate::model::summary::Cell;
use crate::report::index::Index;
use plotters::prelude::*;

/// Percentiles marked on the spectrum lines (the labelled ticks).
const MARKED: [f64; 5] = [50.0, 90.0, 99.0, 99.9, 99.99];

pub(super) fn spectrum(m: &Index, workload: &str, workers: usize) -> Result<Option<Plot>, String> {
    struct Series<'a> {
        cell: &'a Cell,
        points: Vec<(f64, f64)>,
        max_ms: Option<f64>,
    }
    let ms = |us: u64| (us as f64 / 1e3).max(1e-3);
    let series: Vec<Series> = m
        .cells_of(workload, workers)
        .into_iter()
        .filter(|c| c.latency.count > 0 && !c.latency.spectrum.is_empty())
        .map(|c| {
            let mut points: Vec<(f64, f64)> = c
                .latency
                .spectrum
                .iter()
                .filter(|(p, _)| p.is_finite() && *p >= 0.0 && *p < 100.0)
                .map(|&(p, us)| (spectrum_x(p), ms(us)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let max_ms = c
                .latency
                .spectrum
                .iter()
                .find(|(p, _)| *p >= 100.0)
                .map(|&(_, us)| ms(us))
                .or(Some(ms(c.latency.max_us)));
            Series {
                cell: c,
                points,
                max_ms,
            }
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    if series.is_empty() {
        return Ok(None);
    }
    let finite_max_x = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(2.0, f64::max);
    // The axis ends one decade beyond the deepest percentile; the max sits there.
    let x_max = 10f64.powf((finite_max_x.log10() - 1e-6).ceil() + 1.0);
    let x_min = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(f64::INFINITY, f64::min)
        .min(2.0)
        * 0.8;
    let all_y = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1).chain(s.max_ms));
    let (y_lo, y_hi) = all_y.fold((f64::INFINITY, 0.0f64), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    let (y_lo, y_hi) = log_range(y_lo, y_hi);
    let mut x_ticks: Vec<f64> = vec![];
    let mut t = 2.0;
    while t < x_max * 0.99 {
        x_ticks.push(t);
        t = if t == 2.0 { 10.0 } else { t * 10.0 };
    }
    x_ticks.push(x_max);
    let y_ticks = log_ticks(y_lo, y_hi);
    let title = format!("Latency percentiles, {workload}, {workers} workers");

    let svg = svg_string((WIDTH, 560), |root| {
        let (chart_area, legend_area) = root.split_horizontally(WIDTH - LEGEND_W);
        let mut chart = ChartBuilder::on(&chart_area)
            .caption(&title, font(TITLE_SIZE))
            .margin(12)
            .margin_right(24)
            .x_label_area_size(52)
            .y_label_area_size(78)
            .build_cartesian_2d(
                (x_min..x_max).log_scale().with_key_points(x_ticks.clone()),
                (y_lo..y_hi).log_scale().with_key_points(y_ticks.clone()),
            )
            .map_err(de)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .x_label_formatter(&|x| {
                if *x >= x_max * 0.99 {
                    "max".into()
                } else {
                    percentile_label(*x)
                }
            })
            .y_label_formatter(&|y| axis_number(*y))
            .x_desc("percentile (x = 1/(1−p), log scale)")
            .y_desc("latency, ms (log scale)")
            .label_style(font(LABEL_SIZE))
            .axis_desc_style(font(LABEL_SIZE))
            .draw()
            .map_err(de)?;
        for s in &series {
            let color = target_color(m, &s.cell.target);
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(de)?;
            if let (Some(last), Some(max)) = (s.points.last(), s.max_ms) {
                chart
                    .draw_series(DashedLineSeries::new(
                        vec![*last, (x_max, max)],
                        5,
                        4,
                        color.stroke_width(1),
                    ))
                    .map_err(de)?;
            }
        }
        // Markers after all lines, so no line crosses a marker.
        let plotting = chart.plotting_area().strip_coord_spec();
        let (dx, dy) = chart.plotting_area().get_base_pixel();
        for s in &series {
            let color = target_color(m, &s.cell.target);
            let shape = shape_of(&s.cell.target);
            let marked = s.points.iter().copied().filter(|(x, _)| {
                MARKED
                    .iter()
                    .any(|&p| (spectrum_x(p) / x - 1.0).abs() < 1e-6)
            });
            for pt in marked.chain(s.max_ms.map(|y| (x_max, y))) {
                let (px, py) = chart.backend_coord(&pt);
                draw_marker(&plotting, (px - dx, py - dy), shape, color)?;
            }
        }
        let entries: Vec<Entry> = series
            .iter()
            .map(|s| Entry {
                label: s.cell.target.clone(),
                color: target_color(m, &s.cell.target),
                marker: Some(shape_of(&s.cell.target)),
            })
            .collect();
        draw_legend(&legend_area, "target", 60, &entries)
    })?;
    Ok(Some(Plot {
        kind: PlotKind::Spectrum,
        file: format!("latency-{}-w{workers}.svg", file_part(workload)),
        title,
        caption: format!(
            "Latency spectrum under {workload} with {workers} workers, all rounds' histograms merged: each step right is ten times rarer; the dashed end runs to the largest latency seen."
        ),
        workload: Some(workload.into()),
        workers: Some(workers),
        svg,
    }))
}
