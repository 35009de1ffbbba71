//! Per-worker shares, one plot per workload and worker count.

use super::axes::*;
use super::style::*;
use super::{file_part, Plot, PlotKind};
use crate::model::summary::{Cell, FairnessJson};
use crate::report::fmt::fmt_share;
use crate::report::index::Index;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

pub(super) fn shares(m: &Index, workload: &str, workers: usize) -> Result<Option<Plot>, String> {
    let cells = m.cells_of(workload, workers);
    if cells.is_empty()
        || cells
            .iter()
            .all(|c| c.fairness.connections.shares.is_empty() && c.fairness.cpu.shares.is_empty())
    {
        return Ok(None);
    }
    let rows = cells.len();
    let names: Vec<&str> = cells.iter().map(|c| c.target.as_str()).collect();
    let label_w = label_width(&names, LABEL_SIZE);
    let row_h = 34;
    let height = 150 + rows as u32 * row_h;
    let ys: Vec<f64> = (0..rows).map(|i| i as f64).collect();
    let title = format!("Per-worker share, {workload}, {workers} workers");

    let svg = svg_string((WIDTH, height), |root| {
        let root = root.titled(&title, font(TITLE_SIZE)).map_err(de)?;
        let (main, note) = root.split_vertically(height - 60);
        let right_w = (WIDTH - label_w) / 2;
        let (left, right) = main.split_horizontally(WIDTH - right_w);
        type Pick = fn(&Cell) -> &FairnessJson;
        let panels: [(&Area, &str, Pick, u32); 2] = [
            (
                &left,
                "share of connections, %",
                |c| &c.fairness.connections,
                label_w,
            ),
            (&right, "share of CPU time, %", |c| &c.fairness.cpu, 8),
        ];
        for (area, desc, pick, y_label_w) in panels {
            let mut chart = ChartBuilder::on(area)
                .margin(10)
                .margin_right(20)
                .x_label_area_size(50)
                .y_label_area_size(y_label_w)
                .build_cartesian_2d(0.0..100.0, Linear::new(-0.5..rows as f64 - 0.5, ys.clone()))
                .map_err(de)?;
            let name_at = |y: &f64| {
                if y_label_w < 20 {
                    return String::new();
                }
                row_name(*y, &names)
            };
            chart
                .configure_mesh()
                .disable_y_mesh()
                .light_line_style(WHITE)
                .bold_line_style(RGBColor(225, 225, 225))
                .x_labels(6)
                .y_label_formatter(&name_at)
                .x_label_formatter(&|x| axis_number(*x))
                .x_desc(desc)
                .label_style(font(LABEL_SIZE))
                .axis_desc_style(font(LABEL_SIZE))
                .draw()
                .map_err(de)?;
            for (i, c) in cells.iter().enumerate() {
                let yc = (rows - 1 - i) as f64;
                let (y0, y1) = (yc - 0.36, yc + 0.36);
                let mut shares: Vec<f64> = pick(c)
                    .shares
                    .iter()
                    .copied()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .collect();
                shares.sort_by(|a, b| b.total_cmp(a));
                let total: f64 = shares.iter().sum();
                if total <= 0.0 {
                    chart
                        .draw_series(std::iter::once(Text::new(
                            "no data",
                            (2.0, yc),
                            anchored(SMALL_SIZE, HPos::Left, VPos::Center),
                        )))
                        .map_err(de)?;
                    continue;
                }
                let mut x = 0.0;
                for (rank, s) in shares.iter().enumerate() {
                    let w = s / total * 100.0;
                    let color = rank_color(rank, shares.len());
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(x, y0), (x + w, y1)],
                            color.filled(),
                        )))
                        .map_err(de)?;
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(x, y0), (x + w, y1)],
                            WHITE.stroke_width(1),
                        )))
                        .map_err(de)?;
                    x += w;
                }
                // The largest worker's share, written in its segment.
                let first = shares[0] / total * 100.0;
                let label = fmt_share(shares[0] / total);
                let (pos, style) = if first >= 14.0 {
                    (
                        (first / 2.0, yc),
                        anchored(SMALL_SIZE, HPos::Center, VPos::Center).color(&WHITE),
                    )
                } else {
                    (
                        (first, yc),
                        anchored(SMALL_SIZE, HPos::Left, VPos::Center).color(&WHITE),
                    )
                };
                chart
                    .draw_series(std::iter::once(Text::new(label, pos, style)))
                    .map_err(de)?;
            }
            // Where the boundaries would be with an even split.
            for k in 1..workers {
                let x = k as f64 * 100.0 / workers as f64;
                chart
                    .draw_series(DashedLineSeries::new(
                        vec![(x, -0.5), (x, rows as f64 - 0.5)],
                        4,
                        4,
                        RGBColor(200, 30, 30).stroke_width(1),
                    ))
                    .map_err(de)?;
            }
        }
        // The key, in one line under both panels.
        let swatches = workers.min(6);
        let mut x = 12;
        let key = |x: i32, s: &str| {
            Text::new(
                s.to_string(),
                (x, 22),
                anchored(SMALL_SIZE, HPos::Left, VPos::Center),
            )
        };
        // Swatches first: text widths are only estimated, so nothing is placed after text.
        for r in 0..swatches {
            let rank = if swatches < workers && r == swatches - 1 {
                workers - 1
            } else {
                r
            };
            note.draw(&Rectangle::new(
                [(x, 14), (x + 20, 30)],
                rank_color(rank, workers).filled(),
            ))
            .map_err(de)?;
            x += 23;
        }
        note.draw(&key(
            x + 8,
            "segments: workers, largest share first · number: the largest worker's share · red dashes: an even split",
        ))
        .map_err(de)?;
        Ok(())
    })?;
    Ok(Some(Plot {
        kind: PlotKind::Shares,
        file: format!("shares-{}-w{workers}.svg", file_part(workload)),
        title,
        caption: format!(
            "How {workload} with {workers} workers split connections (left) and CPU time (right) among the workers, in the round with the median throughput; with an even split every segment would end on a red dash.{}",
            match m.fairness_kind(workload) {
                Some("burst") => " A burst spread: the connections were opened together at the start and kept, so this is where that burst landed.",
                Some("steady") => " A steady spread: connections kept arriving during the measured window.",
                _ => "",
            }
        ),
        workload: Some(workload.into()),
        workers: Some(workers),
        svg,
    }))
}
