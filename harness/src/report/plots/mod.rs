//! The report's plots, drawn with plotters into SVG strings.
//!
//! No system font library is linked: plotters then sizes text with its naive
//! metrics (0.7 em per byte) and writes real `<text>` elements, which the
//! browser sets in its own sans-serif. Label areas are therefore sized here
//! from the longest label rather than measured.
//!
//! Every plot keeps a target's colour and its family's marker (master-pass:
//! circle, shared: triangle, reuseport: square) across the whole report, and
//! puts its legend in a strip of its own beside the chart, so no legend ever
//! hides data.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::fmt::{fmt_rate, fmt_share};
use super::index::Index;
use crate::model::summary::{Cell, FairnessJson, Summary};

/// What a plot shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlotKind {
    /// Throughput per target of one workload, all worker counts.
    Throughput,
    /// Latency percentile spectrum of one workload and worker count.
    Spectrum,
    /// Per-worker share of connections and CPU of one workload and worker count.
    Shares,
    /// p50 and p99 against offered load, one worker count.
    LatencyVsLoad,
}

/// One rendered plot.
#[derive(Clone, Debug)]
pub struct Plot {
    /// What it shows.
    pub kind: PlotKind,
    /// File name under `plots/`.
    pub file: String,
    /// The plot's own title, short (alt text, accessible name).
    pub title: String,
    /// One sentence for the figure caption.
    pub caption: String,
    /// The workload it belongs to, if one.
    pub workload: Option<String>,
    /// The worker count it belongs to, if one.
    pub workers: Option<usize>,
    /// The SVG document.
    pub svg: String,
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

const FONT: &str = "sans-serif";
/// plotters writes `font-size = size / 1.24`: these give about 18, 14 and 13 px.
const TITLE_SIZE: f64 = 22.0;
const LABEL_SIZE: f64 = 17.0;
const SMALL_SIZE: f64 = 16.0;
const WIDTH: u32 = 1000;
const LEGEND_W: u32 = 225;

/// Target colours (matplotlib's tab10 and two more): distinct hues, all dark
/// enough for a 2 px line on white.
const PALETTE: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(57, 59, 121),
    RGBColor(173, 73, 74),
];

/// Worker-count colours in the throughput plot (Tableau's first four).
const WORKER_PALETTE: [RGBColor; 4] = [
    RGBColor(78, 121, 167),
    RGBColor(242, 142, 43),
    RGBColor(89, 161, 79),
    RGBColor(225, 87, 89),
];

fn target_color(m: &Index, target: &str) -> RGBColor {
    PALETTE[m.target_index(target) % PALETTE.len()]
}

/// A marker shape per strategy family.
#[derive(Clone, Copy)]
enum Shape {
    Circle,
    Triangle,
    Square,
    Diamond,
}

fn shape_of(target: &str) -> Shape {
    match target.split(':').next().unwrap_or(target) {
        "master-pass" => Shape::Circle,
        "shared" => Shape::Triangle,
        "reuseport" => Shape::Square,
        _ => Shape::Diamond,
    }
}

fn font(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

fn anchored(size: f64, h: HPos, v: VPos) -> TextStyle<'static> {
    font(size).pos(Pos::new(h, v))
}

fn de<E: std::fmt::Display>(e: E) -> String {
    format!("cannot draw a plot: {e}")
}

/// Draws into an SVG string of `size`.
fn svg_string(
    size: (u32, u32),
    draw: impl FnOnce(&Area) -> Result<(), String>,
) -> Result<String, String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(de)?;
        draw(&root)?;
        root.present().map_err(de)?;
    }
    Ok(buf)
}

/// A marker centred on `at` (backend pixels), drawn on `area`.
fn draw_marker(area: &Area, at: (i32, i32), shape: Shape, color: RGBColor) -> Result<(), String> {
    let (x, y) = at;
    let style = color.filled();
    let outline = WHITE.stroke_width(1);
    match shape {
        Shape::Circle => {
            area.draw(&Circle::new(at, 5, style)).map_err(de)?;
            area.draw(&Circle::new(at, 5, outline)).map_err(de)?;
        }
        Shape::Triangle => {
            let pts = vec![(x, y - 6), (x + 6, y + 4), (x - 6, y + 4)];
            area.draw(&Polygon::new(pts.clone(), style)).map_err(de)?;
            area.draw(&PathElement::new(
                [pts.clone(), vec![pts[0]]].concat(),
                outline,
            ))
            .map_err(de)?;
        }
        Shape::Square => {
            area.draw(&Rectangle::new([(x - 5, y - 5), (x + 5, y + 5)], style))
                .map_err(de)?;
            area.draw(&Rectangle::new([(x - 5, y - 5), (x + 5, y + 5)], outline))
                .map_err(de)?;
        }
        Shape::Diamond => {
            let pts = vec![(x, y - 6), (x + 6, y), (x, y + 6), (x - 6, y)];
            area.draw(&Polygon::new(pts.clone(), style)).map_err(de)?;
            area.draw(&PathElement::new(
                [pts.clone(), vec![pts[0]]].concat(),
                outline,
            ))
            .map_err(de)?;
        }
    }
    Ok(())
}

/// One row of a legend.
struct Entry {
    label: String,
    color: RGBColor,
    /// A line with a marker, or a filled swatch.
    marker: Option<Shape>,
}

/// The legend, in its own strip: nothing in the chart is ever covered.
fn draw_legend(area: &Area, title: &str, top: i32, entries: &[Entry]) -> Result<(), String> {
    area.draw(&Text::new(
        title.to_string(),
        (6, top),
        anchored(LABEL_SIZE, HPos::Left, VPos::Center),
    ))
    .map_err(de)?;
    for (i, e) in entries.iter().enumerate() {
        let y = top + 26 + i as i32 * 24;
        match e.marker {
            Some(shape) => {
                area.draw(&PathElement::new(
                    vec![(8, y), (40, y)],
                    e.color.stroke_width(2),
                ))
                .map_err(de)?;
                draw_marker(area, (24, y), shape, e.color)?;
            }
            None => area
                .draw(&Rectangle::new(
                    [(10, y - 7), (38, y + 7)],
                    e.color.filled(),
                ))
                .map_err(de)?,
        }
        area.draw(&Text::new(
            e.label.clone(),
            (48, y),
            anchored(SMALL_SIZE, HPos::Left, VPos::Center),
        ))
        .map_err(de)?;
    }
    Ok(())
}

/// Pixels the longest of `labels` needs at `size`, by plotters' own naive
/// estimate (0.7 em per byte) plus a margin for wider real fonts.
fn label_width(labels: &[&str], size: f64) -> u32 {
    let em = size / 1.24;
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(4) as f64;
    (longest * em * 0.62 + 24.0).ceil() as u32
}

/// An axis number without noise: `0.05`, `1`, `12.5`, `300`.
fn axis_number(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    let s = if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The steps within a decade for a log axis spanning `decades`.
fn log_steps(decades: f64) -> &'static [f64] {
    if decades <= 2.5 {
        &[1.0, 2.0, 5.0]
    } else if decades <= 4.5 {
        &[1.0, 3.0]
    } else {
        &[1.0]
    }
}

/// A log axis range that covers `lo..hi` with a little room and starts and
/// ends on a tick, so both ends are labelled.
fn log_range(lo: f64, hi: f64) -> (f64, f64) {
    let (lo, hi) = (lo / 1.25, (hi * 1.25).max(lo * 4.0));
    let steps = log_steps((hi / lo).log10());
    let decade = |v: f64| 10f64.powf(v.log10().floor());
    let d = decade(lo);
    let down = steps
        .iter()
        .rev()
        .map(|s| d * s)
        .find(|t| *t <= lo * (1.0 + 1e-9))
        .unwrap_or(d);
    let d = decade(hi);
    let up = steps
        .iter()
        .map(|s| d * s)
        .chain([d * 10.0])
        .find(|t| *t >= hi * (1.0 - 1e-9))
        .unwrap_or(d * 10.0);
    (down, up)
}

/// Ticks for a log axis: 1-2-5 per decade for a short range, decades for a long one.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let steps = log_steps((hi / lo).log10());
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for s in steps {
            let v = decade * s;
            if v >= lo && v <= hi {
                ticks.push(v);
            }
        }
        decade *= 10.0;
    }
    // Both ends are labelled (log_range puts them on round numbers).
    for end in [lo, hi] {
        if !ticks.iter().any(|t| (t / end - 1.0).abs() < 1e-6) {
            ticks.push(end);
        }
    }
    ticks.sort_by(f64::total_cmp);
    ticks
}

/// A linear axis with the ticks we choose (one per target row, or one per
/// offered rate). plotters' own `with_key_points` on an `f64` range would
/// lose the label formatter: `RangedCoordf64` formats with
/// `NoDefaultFormatting`, and the wrapper inherits it.
struct Linear {
    range: Range<f64>,
    ticks: Vec<f64>,
}

impl Linear {
    fn new(range: Range<f64>, ticks: Vec<f64>) -> Linear {
        Linear { range, ticks }
    }
}

impl Ranged for Linear {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        if span == 0.0 {
            return (limit.0 + limit.1) / 2;
        }
        let t = (v - self.range.start) / span;
        limit.0 + (f64::from(limit.1 - limit.0) * t).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Only bold lines: light mesh lines between rows would read as data.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// A file-name-safe version of a workload name.
fn file_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Every plot the summary supports, in report order.
pub(crate) fn render_all(summary: &Summary) -> Result<Vec<Plot>, String> {
    let m = Index::new(summary);
    let mut plots = Vec::new();
    for &w in &m.workloads {
        plots.extend(throughput(&m, w)?);
        for n in m.workers_of(w) {
            plots.extend(spectrum(&m, w, n)?);
            plots.extend(shares(&m, w, n)?);
        }
    }
    for (i, group) in m.load_groups().iter().enumerate() {
        for &n in &m.workers {
            plots.extend(latency_vs_load(&m, group, i, n)?);
        }
    }
    Ok(plots)
}

// ---------------------------------------------------------------------------
// Throughput per target, one plot per workload.

fn throughput(m: &Index, workload: &str) -> Result<Option<Plot>, String> {
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

// ---------------------------------------------------------------------------
// Latency percentile spectrum, one plot per workload and worker count.

/// Percentiles marked on the spectrum lines (the labelled ticks).
const MARKED: [f64; 5] = [50.0, 90.0, 99.0, 99.9, 99.99];

/// x of the spectrum plot for percentile `p` (in percent): 1/(1-p).
fn spectrum_x(p: f64) -> f64 {
    1.0 / (1.0 - p / 100.0)
}

/// The tick label of x: `50%`, `99.9%`.
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    let decimals = (x.log10().round() as i32 - 2).max(0) as usize;
    format!("{p:.decimals$}%")
}

fn spectrum(m: &Index, workload: &str, workers: usize) -> Result<Option<Plot>, String> {
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

// ---------------------------------------------------------------------------
// Per-worker shares, one plot per workload and worker count.

/// Sequential blues, darkest for the largest worker.
fn rank_color(rank: usize, n: usize) -> RGBColor {
    let (dark, light) = ((8.0, 48.0, 107.0), (189.0, 215.0, 238.0));
    let t = if n <= 1 {
        0.0
    } else {
        rank as f64 / (n - 1) as f64
    };
    let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(
        mix(dark.0, light.0),
        mix(dark.1, light.1),
        mix(dark.2, light.2),
    )
}

fn shares(m: &Index, workload: &str, workers: usize) -> Result<Option<Plot>, String> {
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
            "How {workload} with {workers} workers split connections (left) and CPU time (right) among the workers, in the round with the median throughput; with an even split every segment would end on a red dash."
        ),
        workload: Some(workload.into()),
        workers: Some(workers),
        svg,
    }))
}

// ---------------------------------------------------------------------------
// Latency against offered load, one plot per group of open-loop workloads
// and worker count.

fn latency_vs_load(
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

/// The name of the horizontal bar at `y` in a chart whose rows are `names`
/// drawn top to bottom (row 0 at the top, y = rows - 1).
fn row_name(y: f64, names: &[&str]) -> String {
    let i = names.len() as i64 - 1 - y.round() as i64;
    usize::try_from(i)
        .ok()
        .and_then(|i| names.get(i))
        .map_or(String::new(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_ticks_read_as_percentiles() {
        assert_eq!(percentile_label(spectrum_x(50.0)), "50%");
        assert_eq!(percentile_label(spectrum_x(90.0)), "90%");
        assert_eq!(percentile_label(spectrum_x(99.0)), "99%");
        assert_eq!(percentile_label(spectrum_x(99.9)), "99.9%");
        assert_eq!(percentile_label(spectrum_x(99.99)), "99.99%");
    }

    #[test]
    fn axis_numbers_drop_trailing_zeros() {
        assert_eq!(axis_number(0.05), "0.05");
        assert_eq!(axis_number(1.0), "1");
        assert_eq!(axis_number(12.5), "12.5");
        assert_eq!(axis_number(300.0), "300");
    }

    #[test]
    fn log_ranges_start_and_end_on_a_tick() {
        assert_eq!(log_range(1.3, 40.0), (1.0, 50.0));
        assert_eq!(log_range(0.13, 4.0), (0.1, 5.0));
        let (lo, hi) = log_range(0.13, 9000.0);
        assert!(
            (lo - 0.1).abs() < 1e-12 && (hi - 100_000.0).abs() < 1e-6,
            "{lo} {hi}"
        );
    }

    #[test]
    fn log_ticks_stay_in_range_and_thin_out_over_many_decades() {
        assert_eq!(
            log_ticks(0.2, 20.0),
            vec![0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0]
        );
        assert_eq!(
            log_ticks(0.01, 1e4),
            vec![0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0]
        );
    }

    #[test]
    fn the_largest_worker_is_the_darkest() {
        let a = rank_color(0, 4);
        let b = rank_color(3, 4);
        assert!(
            u32::from(a.0) + u32::from(a.1) + u32::from(a.2)
                < u32::from(b.0) + u32::from(b.1) + u32::from(b.2)
        );
    }
}
