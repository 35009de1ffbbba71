//! Latency histograms (HdrHistogram, microseconds) and their exchange form.
//!
//! Every histogram in the results is stored twice: as a few percentiles for
//! people, and as base64 HdrHistogram V2 (uncompressed) so that the results
//! of several generators merge exactly by adding histograms. Percentiles are
//! never averaged.

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest value recorded: one hour in µs (larger values are clamped).
pub const MAX_US: u64 = 3_600_000_000;
const SIGFIG: u8 = 3;

/// A new, empty histogram with the lab's bounds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, SIGFIG).expect("valid bounds")
}

/// Records `us` microseconds (clamped into the histogram's range).
#[inline]
pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, MAX_US));
}

/// A histogram as it appears in the JSON results.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HistogramJson {
    /// Values recorded.
    pub count: u64,
    /// Smallest value, µs.
    pub min_us: u64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Median, µs.
    pub p50_us: u64,
    /// 90th percentile, µs.
    pub p90_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Largest value, µs.
    pub max_us: u64,
    /// The histogram itself: base64 of HdrHistogram V2 serialization.
    pub hdr_v2_base64: String,
}

impl HistogramJson {
    /// Summarises and encodes `h`.
    pub fn from_histogram(h: &Histogram<u64>) -> HistogramJson {
        let mut bytes = Vec::new();
        V2Serializer::new()
            .serialize(h, &mut bytes)
            .expect("serializing to a Vec cannot fail");
        let empty = h.is_empty();
        let q = |p: f64| if empty { 0 } else { h.value_at_quantile(p) };
        HistogramJson {
            count: h.len(),
            min_us: if empty { 0 } else { h.min() },
            mean_us: if empty { 0.0 } else { h.mean() },
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if empty { 0 } else { h.max() },
            hdr_v2_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    /// Decodes the stored histogram.
    pub fn decode(&self) -> Result<Histogram<u64>, String> {
        decode_v2_base64(&self.hdr_v2_base64)
    }
}

/// Decodes base64 HdrHistogram V2 into a histogram with the lab's bounds.
pub fn decode_v2_base64(text: &str) -> Result<Histogram<u64>, String> {
    {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("histogram is not valid base64: {e}"))?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| format!("histogram is not HdrHistogram V2: {e:?}"))?;
        let mut out = new_histogram();
        out.add(&h)
            .map_err(|e| format!("histogram out of range: {e:?}"))?;
        Ok(out)
    }
}

/// Adds several stored histograms exactly.
pub fn merge(parts: &[&HistogramJson]) -> Result<HistogramJson, String> {
    let mut sum = new_histogram();
    for p in parts {
        sum.add(&p.decode()?)
            .map_err(|e| format!("cannot add histograms: {e:?}"))?;
    }
    Ok(HistogramJson::from_histogram(&sum))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_count() {
        let mut h = new_histogram();
        for v in [1, 5, 100, 1000, 250_000, 10_000_000] {
            record(&mut h, v);
        }
        let j = HistogramJson::from_histogram(&h);
        let back = j.decode().unwrap();
        assert_eq!(back.len(), 6);
        assert_eq!(back, h);
        assert_eq!(j.count, 6);
        assert_eq!(j.max_us, h.max());
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (new_histogram(), new_histogram(), new_histogram());
        for v in 1..=1000u64 {
            record(&mut a, v);
            record(&mut all, v);
        }
        for v in (1..=100u64).map(|v| v * 1000) {
            record(&mut b, v);
            record(&mut all, v);
        }
        let merged = merge(&[
            &HistogramJson::from_histogram(&a),
            &HistogramJson::from_histogram(&b),
        ])
        .unwrap();
        assert_eq!(merged, HistogramJson::from_histogram(&all));
        // Averaging the two p99s would say (990 + 99000) / 2 = 49995: wrong.
        assert_eq!(merged.p99_us, all.value_at_quantile(0.99));
        assert!(
            merged.p99_us > 80_000,
            "p99 {} must come from the slow histogram",
            merged.p99_us
        );
    }

    #[test]
    fn empty_histogram_summarises_as_zeros() {
        let j = HistogramJson::from_histogram(&new_histogram());
        assert_eq!((j.count, j.p99_us, j.max_us), (0, 0, 0));
        assert_eq!(j.decode().unwrap().len(), 0);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let mut j = HistogramJson::from_histogram(&new_histogram());
        j.hdr_v2_base64 = "!!!".into();
        assert!(j.decode().unwrap_err().contains("base64"));
    }
}
