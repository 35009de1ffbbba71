//! The plots' common look: fonts, sizes, the target and worker palettes,
//! one marker shape per strategy family, markers and legends, and the SVG
//! canvas.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::index::Index;

pub(super) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

pub(super) const FONT: &str = "sans-serif";
/// plotters writes `font-size = size / 1.24`: these give about 18, 14 and 13 px.
pub(super) const TITLE_SIZE: f64 = 22.0;
pub(super) const LABEL_SIZE: f64 = 17.0;
pub(super) const SMALL_SIZE: f64 = 16.0;
pub(super) const WIDTH: u32 = 1000;
pub(super) const LEGEND_W: u32 = 225;

/// Target colours (matplotlib's tab10 and two more): distinct hues, all dark
/// enough for a 2 px line on white.
pub(super) const PALETTE: [RGBColor; 12] = [
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
pub(super) const WORKER_PALETTE: [RGBColor; 4] = [
    RGBColor(78, 121, 167),
    RGBColor(242, 142, 43),
    RGBColor(89, 161, 79),
    RGBColor(225, 87, 89),
];

pub(super) fn target_color(m: &Index, target: &str) -> RGBColor {
    PALETTE[m.target_index(target) % PALETTE.len()]
}

/// A marker shape per strategy family.
#[derive(Clone, Copy)]
pub(super) enum Shape {
    Circle,
    Triangle,
    Square,
    Diamond,
}

pub(super) fn shape_of(target: &str) -> Shape {
    match target.split(':').next().unwrap_or(target) {
        "master-pass" => Shape::Circle,
        "shared" => Shape::Triangle,
        "reuseport" => Shape::Square,
        _ => Shape::Diamond,
    }
}

pub(super) fn font(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

pub(super) fn anchored(size: f64, h: HPos, v: VPos) -> TextStyle<'static> {
    font(size).pos(Pos::new(h, v))
}

pub(super) fn de<E: std::fmt::Display>(e: E) -> String {
    format!("cannot draw a plot: {e}")
}

/// Draws into an SVG string of `size`.
pub(super) fn svg_string(
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
pub(super) fn draw_marker(
    area: &Area,
    at: (i32, i32),
    shape: Shape,
    color: RGBColor,
) -> Result<(), String> {
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
pub(super) struct Entry {
    pub(super) label: String,
    pub(super) color: RGBColor,
    /// A line with a marker, or a filled swatch.
    pub(super) marker: Option<Shape>,
}

/// The legend, in its own strip: nothing in the chart is ever covered.
pub(super) fn draw_legend(
    area: &Area,
    title: &str,
    top: i32,
    entries: &[Entry],
) -> Result<(), String> {
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

/// Sequential blues, darkest for the largest worker.
pub(super) fn rank_color(rank: usize, n: usize) -> RGBColor {
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

#[cfg(test)]
mod tests {
    use super::*;

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
