//! Latency against offered load, one plot per group of open-loop workloads
//! and worker count.

use super::axes::*;
use super::style::*;
use super::{Plot, PlotKind};
use crate::report::fmt::fmt_share;
use crate::report::index::Index;
use plotters::prelude::*;

pub(super) fn latency_vs_load(
    m: &Index,
    group: &[&str],
    index: usize,
    workers: usize,
) -> Result<Option<Plot>, String> {
    struct Line<'a> {
        target: &'a str,
        /// (offered k req/s, p50 ms, p99 ms)
        points: Vec<(f64, f64, f64)>,
    }
    let ms = |us: u64| (us as f64 / 1e3).max(1e-3);
    let lines: Vec<Line> = m
        .targets
        .iter()
        .map(|t| {
            let mut points: Vec<(f64, f64, f64)> = group
                .iter()
                .filter_map(|w| m.cell(t, w, workers))
                .filter(|c| c.latency.count > 0)
                .filter_map(|c| {
                    c.offered_rps
                        .filter(|r| r.is_finite() && *r > 0.0)
                        .map(|r| (r / 1e3, ms(c.latency.p50_us), ms(c.latency.p99_us)))
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Line { target: t, points }
        })
        .filter(|l| !l.points.is_empty())
        .collect();
    if lines.is_empty() {
        return Ok(None);
    }
    let xs = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let (x_lo, x_hi) = xs.fold((f64::INFINITY, 0.0f64), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    let pad = ((x_hi - x_lo) * 0.12).max(x_hi * 0.1);
    let (x_lo, x_hi) = ((x_lo - pad).max(0.0), x_hi + pad);
    let ys = lines
        .iter()
        .flat_map(|l| l.points.iter().flat_map(|p| [p.1, p.2]));
    let (y_lo, y_hi) = ys.fold((f64::INFINITY, 0.0f64), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    let (y_lo, y_hi) = log_range(y_lo, y_hi);
    let y_ticks = log_ticks(y_lo, y_hi);
    // Ticks at the offered rates, named by their workload.
    let mut x_ticks: Vec<(f64, String)> = Vec::new();
    for w in group {
        if let Some(r) = m.cells_of(w, workers).iter().find_map(|c| c.offered_rps) {
            let share = m.workload_json(w).and_then(|j| j.capacity_share);
            let label = match share {
                Some(s) => format!("{} ({})", axis_number(r / 1e3), fmt_share(s)),
                None => axis_number(r / 1e3),
            };
            x_ticks.push((r / 1e3, label));
        }
    }
    let tick_label = |x: &f64| {
        x_ticks
            .iter()
            .find(|(v, _)| (v - x).abs() <= 1e-9 * v.abs().max(1.0))
            .map_or_else(|| axis_number(*x), |(_, l)| l.clone())
    };
    let tick_values: Vec<f64> = x_ticks.iter().map(|t| t.0).collect();

    let title = format!(
        "Latency against offered load, {workers} workers ({})",
        group.join(", ")
    );
    let svg = svg_string((WIDTH, 520), |root| {
        let root = root.titled(&title, font(TITLE_SIZE)).map_err(de)?;
        let (charts, legend_area) = root.split_horizontally(WIDTH - LEGEND_W);
        let (left, right) = charts.split_horizontally((WIDTH - LEGEND_W) / 2 + 30);
        type Pick = fn(&(f64, f64, f64)) -> f64;
        let panels: [(&Area, &str, Pick, u32); 2] =
            [(&left, "p50", |p| p.1, 78), (&right, "p99", |p| p.2, 48)];
        for (area, name, pick, y_label_w) in panels {
            let mut chart = ChartBuilder::on(area)
                .caption(name, font(LABEL_SIZE + 2.0))
                .margin(10)
                .margin_right(18)
                .x_label_area_size(52)
                .y_label_area_size(y_label_w)
                .build_cartesian_2d(
                    Linear::new(x_lo..x_hi, tick_values.clone()),
                    (y_lo..y_hi).log_scale().with_key_points(y_ticks.clone()),
                )
                .map_err(de)?;
            let mut mesh = chart.configure_mesh();
            mesh.light_line_style(WHITE)
                .bold_line_style(RGBColor(225, 225, 225))
                .x_label_formatter(&tick_label)
                .y_label_formatter(&|y| axis_number(*y))
                .x_desc("offered, k req/s (share of capacity)")
                .label_style(font(LABEL_SIZE))
                .axis_desc_style(font(LABEL_SIZE));
            if y_label_w > 60 {
                mesh.y_desc("latency, ms (log scale)");
            }
            mesh.draw().map_err(de)?;
            for l in &lines {
                let color = target_color(m, l.target);
                chart
                    .draw_series(LineSeries::new(
                        l.points.iter().map(|p| (p.0, pick(p))),
                        color.stroke_width(2),
                    ))
                    .map_err(de)?;
            }
            let plotting = chart.plotting_area().strip_coord_spec();
            let (dx, dy) = chart.plotting_area().get_base_pixel();
            for l in &lines {
                for p in &l.points {
                    let (px, py) = chart.backend_coord(&(p.0, pick(p)));
                    draw_marker(
                        &plotting,
                        (px - dx, py - dy),
                        shape_of(l.target),
                        target_color(m, l.target),
                    )?;
                }
            }
        }
        let entries: Vec<Entry> = lines
            .iter()
            .map(|l| Entry {
                label: l.target.to_string(),
                color: target_color(m, l.target),
                marker: Some(shape_of(l.target)),
            })
            .collect();
        draw_legend(&legend_area, "target", 40, &entries)
    })?;
    let suffix = if index == 0 {
        String::new()
    } else {
        format!("-{}", index + 1)
    };
    Ok(Some(Plot {
        kind: PlotKind::LatencyVsLoad,
        file: format!("latency-vs-load{suffix}-w{workers}.svg"),
        title,
        caption: format!(
            "Median (left) and 99th percentile (right) latency against the rate offered ({}), {workers} workers: a line that climbs steeply reaches its limit early.",
            group.join(", ")
        ),
        workload: None,
        workers: Some(workers),
        svg,
    }))
}
