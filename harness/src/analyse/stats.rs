//! Statistics of a few numbers: Jain's index, max over mean, coefficient of
//! variation, median, spread across rounds and shares.

use crate::model::summary::Spread;

/// Jain's fairness index `(Σx)² / (n·Σx²)`: 1 when all are equal, `1/n` when
/// one takes everything. 1 for an empty or all-zero input (nothing to share).
pub fn jain(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let sq: f64 = xs.iter().map(|x| x * x).sum();
    if xs.is_empty() || sq == 0.0 {
        1.0
    } else {
        sum * sum / (xs.len() as f64 * sq)
    }
}

/// Largest value over the mean (1 when even).
pub fn max_over_mean(xs: &[f64]) -> f64 {
    let mean = mean(xs);
    if mean == 0.0 {
        1.0
    } else {
        xs.iter().cloned().fold(f64::MIN, f64::max) / mean
    }
}

/// Coefficient of variation: population standard deviation over the mean.
pub fn cv(xs: &[f64]) -> f64 {
    let m = mean(xs);
    if m == 0.0 {
        return 0.0;
    }
    let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len() as f64;
    var.sqrt() / m
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Median (mean of the middle two for an even count); 0 for none.
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Median, range and spread of per-round values.
pub fn spread(values: &[f64]) -> Spread {
    let med = median(values);
    let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let (min, max) = if values.is_empty() {
        (0.0, 0.0)
    } else {
        (min, max)
    };
    Spread {
        values: values.to_vec(),
        median: med,
        min,
        max,
        spread_pct: if values.len() > 1 && med > 0.0 {
            (max - min) / med * 100.0
        } else {
            0.0
        },
    }
}

/// Bootstrap 95% interval of the median of `xs` (seeded, 2000 resamples):
/// `[low, median, high]`. With 5 values it is their range (the median of a
/// resample is the smallest value 5.8% of the time).
pub fn bootstrap_median_ci(xs: &[f64], seed: u64) -> [f64; 3] {
    if xs.is_empty() {
        return [0.0; 3];
    }
    let mut rng = seed | 1;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut medians: Vec<f64> = (0..2000)
        .map(|_| {
            let sample: Vec<f64> = (0..xs.len())
                .map(|_| xs[(next() % xs.len() as u64) as usize])
                .collect();
            median(&sample)
        })
        .collect();
    medians.sort_by(|a, b| a.total_cmp(b));
    [medians[49], median(xs), medians[1949]]
}

/// Shares of the total, largest first.
pub fn shares(xs: &[f64]) -> Vec<f64> {
    let total: f64 = xs.iter().sum();
    let mut s: Vec<f64> = xs
        .iter()
        .map(|x| if total > 0.0 { x / total } else { 0.0 })
        .collect();
    s.sort_by(|a, b| b.total_cmp(a));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_is_one_when_even_and_one_over_n_when_one_takes_all() {
        assert!((jain(&[5.0, 5.0, 5.0, 5.0]) - 1.0).abs() < 1e-12);
        assert!((jain(&[10.0, 0.0, 0.0, 0.0]) - 0.25).abs() < 1e-12);
        // (1+2+3)^2 / (3 * (1+4+9)) = 36/42
        assert!((jain(&[1.0, 2.0, 3.0]) - 36.0 / 42.0).abs() < 1e-12);
        assert_eq!(jain(&[]), 1.0);
    }

    #[test]
    fn max_over_mean_and_cv_known_values() {
        assert!((max_over_mean(&[1.0, 3.0]) - 1.5).abs() < 1e-12);
        // mean 2, population stdev 1 -> cv 0.5
        assert!((cv(&[1.0, 3.0]) - 0.5).abs() < 1e-12);
        assert_eq!(cv(&[4.0, 4.0]), 0.0);
        assert_eq!(max_over_mean(&[0.0, 0.0]), 1.0);
    }

    #[test]
    fn median_and_spread() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let s = spread(&[90.0, 100.0, 110.0]);
        assert_eq!((s.median, s.min, s.max), (100.0, 90.0, 110.0));
        assert!((s.spread_pct - 20.0).abs() < 1e-9);
        assert_eq!(spread(&[5.0]).spread_pct, 0.0);
    }

    #[test]
    fn shares_are_sorted_and_sum_to_one() {
        let s = shares(&[1.0, 3.0, 0.0, 4.0]);
        assert_eq!(s, vec![0.5, 0.375, 0.125, 0.0]);
    }
}
