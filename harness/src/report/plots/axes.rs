//! Axes: label widths, tick numbers, logarithmic ranges and ticks, and a
//! linear axis with ticks of our choosing, and the latency spectrum's
//! percentile axis.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;

/// Pixels the longest of `labels` needs at `size`, by plotters' own naive
/// estimate (0.7 em per byte) plus a margin for wider real fonts.
pub(super) fn label_width(labels: &[&str], size: f64) -> u32 {
    let em = size / 1.24;
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(4) as f64;
    (longest * em * 0.62 + 24.0).ceil() as u32
}

/// An axis number without noise: `0.05`, `1`, `12.5`, `300`.
pub(super) fn axis_number(x: f64) -> String {
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
pub(super) fn log_steps(decades: f64) -> &'static [f64] {
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
pub(super) fn log_range(lo: f64, hi: f64) -> (f64, f64) {
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
pub(super) fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
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
pub(super) struct Linear {
    range: Range<f64>,
    ticks: Vec<f64>,
}

impl Linear {
    pub(super) fn new(range: Range<f64>, ticks: Vec<f64>) -> Linear {
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

/// The name of the horizontal bar at `y` in a chart whose rows are `names`
/// drawn top to bottom (row 0 at the top, y = rows - 1).
pub(super) fn row_name(y: f64, names: &[&str]) -> String {
    let i = names.len() as i64 - 1 - y.round() as i64;
    usize::try_from(i)
        .ok()
        .and_then(|i| names.get(i))
        .map_or(String::new(), |t| t.to_string())
}

/// x of the spectrum plot for percentile `p` (in percent): 1/(1-p).
pub(super) fn spectrum_x(p: f64) -> f64 {
    1.0 / (1.0 - p / 100.0)
}

/// The tick label of x: `50%`, `99.9%`.
pub(super) fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    let decimals = (x.log10().round() as i32 - 2).max(0) as usize;
    format!("{p:.decimals$}%")
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn percentile_ticks_read_as_percentiles() {
        assert_eq!(percentile_label(spectrum_x(50.0)), "50%");
        assert_eq!(percentile_label(spectrum_x(90.0)), "90%");
        assert_eq!(percentile_label(spectrum_x(99.0)), "99%");
        assert_eq!(percentile_label(spectrum_x(99.9)), "99.9%");
        assert_eq!(percentile_label(spectrum_x(99.99)), "99.99%");
    }
}
