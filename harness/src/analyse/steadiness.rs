//! Is a run steady? One pure test on a loadgen timeline, used twice: a
//! window is steady when the line through its per-slice throughput moves
//! by at most [`TREND_LIMIT`] of its mean, or its 99% interval includes no
//! change (noise), and the p99s of its halves are within
//! [`TREND_P99_FACTOR`]. The harness warms a run with probes of its own
//! workload until a probe passes (or the target's cap), then tests the
//! measured window the same way.

use loadgen::result::SliceJson;

use crate::model::record::{ProbeSlice, Trend};

/// p99 is compared only for halves with at least this many requests (one
/// request in a hundred is then above it).
pub const MIN_P99_SAMPLES: u64 = 200;
/// A window whose throughput moves by more than this share of its mean
/// (along the fitted line, with a 99% interval that excludes 0) has a trend.
pub const TREND_LIMIT: f64 = 0.10;
/// ... or whose halves' p99s differ by more than this factor while the
/// slices' p99s move one way (Kendall's tau, |z| > 1.96): a tail that
/// shrinks as a JIT warms. Bursts at random moments (a garbage collector's
/// pauses) are the steady state of such a server, not a trend.
pub const TREND_P99_FACTOR: f64 = 2.0;
/// Slices with fewer requests than this have no p99 for the rank test.
pub const MIN_SLICE_P99_SAMPLES: u64 = 50;

/// A timeline as warm-up slices (their throughput over `slice_s`).
pub fn probe_slices(timeline: &[SliceJson], slice_s: f64) -> Vec<ProbeSlice> {
    timeline
        .iter()
        .map(|s| ProbeSlice {
            throughput_rps: s.ok as f64 / slice_s.max(1e-9),
            p99_us: s.p99_us,
            ok: s.ok,
            errors: s.errors_total(),
        })
        .collect()
}

/// Consecutive warm-up probes agree when their median slice throughputs
/// are within this share of each other ...
pub const PLATEAU_THROUGHPUT: f64 = 0.10;
/// ... and their median slice p99s within this factor.
pub const PLATEAU_P99_FACTOR: f64 = 1.5;

/// Whether the probe `now` agrees with the probe before it (`Err` says
/// why not): the plateau a JIT-compiled server must show.
pub fn plateau(before: &[ProbeSlice], now: &[ProbeSlice]) -> Result<(), String> {
    let med = |s: &[ProbeSlice], f: fn(&ProbeSlice) -> f64| {
        super::stats::median(&s.iter().map(f).collect::<Vec<_>>())
    };
    let (a, b) = (
        med(before, |s| s.throughput_rps),
        med(now, |s| s.throughput_rps),
    );
    if a <= 0.0 || (b - a).abs() / a > PLATEAU_THROUGHPUT {
        return Err(format!(
            "throughput still moving between warm-up probes ({a:.0} -> {b:.0} req/s)"
        ));
    }
    let (p, q) = (
        med(before, |s| s.p99_us as f64).max(1.0),
        med(now, |s| s.p99_us as f64).max(1.0),
    );
    if p.max(q) / p.min(q) > PLATEAU_P99_FACTOR {
        return Err(format!(
            "p99 still moving between warm-up probes ({p:.0} -> {q:.0} µs)"
        ));
    }
    Ok(())
}

/// The 99.5% quantile of Student's t with `df` degrees of freedom: the
/// slope's interval is a 99% one, so that noise alone marks about one
/// steady window in a hundred (a JIT's warm-up is far outside it).
fn t995(df: usize) -> f64 {
    const T: [f64; 30] = [
        63.657, 9.925, 5.841, 4.604, 4.032, 3.707, 3.499, 3.355, 3.250, 3.169, 3.106, 3.055, 3.012,
        2.977, 2.947, 2.921, 2.898, 2.878, 2.861, 2.845, 2.831, 2.819, 2.807, 2.797, 2.787, 2.779,
        2.771, 2.763, 2.756, 2.750,
    ];
    match df {
        0 => f64::INFINITY,
        d if d <= 30 => T[d - 1],
        _ => 2.576,
    }
}

/// The measured window's trend, from its timeline (slices of equal width;
/// a shorter last slice is left out).
pub fn trend(timeline: &[SliceJson]) -> Result<Trend, String> {
    let mut slices: Vec<&SliceJson> = timeline.iter().collect();
    if slices.len() >= 2 {
        let w = |s: &[&SliceJson], i: usize| s[i + 1].start_s - s[i].start_s;
        let width = w(&slices, 0);
        // The last slice is as wide as the others only if the duration is
        // a multiple of the interval; its width is unknown here, so it is
        // dropped when its due count is clearly short.
        let last = slices.len() - 1;
        let typical = slices[..last].iter().map(|s| s.due).max().unwrap_or(0);
        if width > 0.0 && (slices[last].due as f64) < 0.8 * typical as f64 {
            slices.pop();
        }
    }
    let n = slices.len();
    let ys: Vec<f64> = slices.iter().map(|s| s.ok as f64).collect();
    let mean = ys.iter().sum::<f64>() / n.max(1) as f64;
    let (change, ci) = if n >= 3 && mean > 0.0 {
        let xm = (n - 1) as f64 / 2.0;
        let sxx: f64 = (0..n).map(|i| (i as f64 - xm).powi(2)).sum();
        let b: f64 = (0..n)
            .map(|i| (i as f64 - xm) * (ys[i] - mean))
            .sum::<f64>()
            / sxx;
        let sse: f64 = (0..n)
            .map(|i| (ys[i] - mean - b * (i as f64 - xm)).powi(2))
            .sum();
        let se = (sse / (n - 2) as f64 / sxx).sqrt();
        let span = (n - 1) as f64 / mean;
        let t = t995(n - 2);
        (b * span, [(b - t * se) * span, (b + t * se) * span])
    } else {
        (0.0, [0.0, 0.0])
    };
    let half = |part: &[&SliceJson]| -> Result<u64, String> {
        let mut h = loadgen::histo::new_histogram();
        for s in part {
            h.add(&loadgen::histo::decode_v2_base64(&s.hdr_v2_base64)?)
                .map_err(|e| format!("adding histograms: {e:?}"))?;
        }
        Ok(if h.is_empty() {
            0
        } else {
            h.value_at_quantile(0.99)
        })
    };
    let p99s: Vec<f64> = slices
        .iter()
        .filter(|s| s.ok >= MIN_SLICE_P99_SAMPLES)
        .map(|s| s.p99_us as f64)
        .collect();
    let (tau, z) = kendall(&p99s);
    Ok(Trend {
        slices: n,
        throughput_change: change,
        throughput_change_ci: ci,
        first_half_p99_us: half(&slices[..n / 2])?,
        second_half_p99_us: half(&slices[n - n / 2..])?,
        p99_tau: tau,
        p99_tau_z: z,
    })
}

/// Kendall's tau of `ys` against their order, and its z score under no
/// trend (normal approximation, ties counted as neither); (0, 0) for fewer
/// than 4 values.
pub fn kendall(ys: &[f64]) -> (f64, f64) {
    let n = ys.len();
    if n < 4 {
        return (0.0, 0.0);
    }
    let mut s = 0i64;
    for i in 0..n {
        for j in i + 1..n {
            s += match ys[j].partial_cmp(&ys[i]) {
                Some(std::cmp::Ordering::Greater) => 1,
                Some(std::cmp::Ordering::Less) => -1,
                _ => 0,
            };
        }
    }
    let nf = n as f64;
    let pairs = nf * (nf - 1.0) / 2.0;
    let var = nf * (nf - 1.0) * (2.0 * nf + 5.0) / 18.0;
    (s as f64 / pairs, s as f64 / var.sqrt())
}

/// A window's trend and whether it is steady (`Err` says why not).
pub fn judge(timeline: &[SliceJson]) -> Result<(Trend, Result<(), String>), String> {
    let t = trend(timeline)?;
    let first_half_ok: u64 = timeline[..t.slices / 2].iter().map(|s| s.ok).sum();
    Ok((t, without_trend(&t, first_half_ok)))
}

/// Whether a window with this trend is steady; `Err` says why not.
pub fn without_trend(t: &Trend, first_half_ok: u64) -> Result<(), String> {
    let [lo, hi] = t.throughput_change_ci;
    if t.throughput_change.abs() > TREND_LIMIT && (lo > 0.0 || hi < 0.0) {
        return Err(format!(
            "throughput {} by {:.0}% over the window (99% interval {:+.0}%..{:+.0}%)",
            if t.throughput_change > 0.0 {
                "rose"
            } else {
                "fell"
            },
            t.throughput_change.abs() * 100.0,
            lo * 100.0,
            hi * 100.0
        ));
    }
    let (a, b) = (
        t.first_half_p99_us.max(1) as f64,
        t.second_half_p99_us.max(1) as f64,
    );
    if first_half_ok >= MIN_P99_SAMPLES
        && a.max(b) / a.min(b) > TREND_P99_FACTOR
        && t.p99_tau_z.abs() > 1.96
    {
        return Err(format!(
            "p99 moved from {} to {} between the halves of the window, one way (Kendall's tau {:+.2})",
            loadgen::result::fmt_us(t.first_half_p99_us),
            loadgen::result::fmt_us(t.second_half_p99_us),
            t.p99_tau
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(oks: &[u64]) -> Vec<SliceJson> {
        timeline_p99(oks, 100)
    }

    fn timeline_p99(oks: &[u64], p99: u64) -> Vec<SliceJson> {
        let mut h = loadgen::histo::new_histogram();
        h.record(p99).unwrap();
        let hdr = loadgen::histo::HistogramJson::from_histogram(&h).hdr_v2_base64;
        oks.iter()
            .enumerate()
            .map(|(i, &ok)| SliceJson {
                start_s: i as f64 * 0.1,
                due: ok,
                ok,
                errors: Default::default(),
                idle_connect_errors: 0,
                p99_us: p99,
                hdr_v2_base64: hdr.clone(),
            })
            .collect()
    }

    #[test]
    fn a_rising_window_has_a_trend_and_a_noisy_flat_one_has_none() {
        let rising = trend(&timeline(&[
            700, 800, 900, 1000, 1100, 1200, 1300, 1400, 1500, 1600,
        ]))
        .unwrap();
        assert!(rising.throughput_change > 0.5, "{rising:?}");
        assert!(without_trend(&rising, 10_000).unwrap_err().contains("rose"));
        let flat = trend(&timeline(&[
            1000, 1150, 870, 1100, 950, 1080, 900, 1120, 980, 1010,
        ]))
        .unwrap();
        assert!(without_trend(&flat, 10_000).is_ok(), "{flat:?}");
        assert_eq!(flat.slices, 10);
    }

    #[test]
    fn a_warming_jit_fails_until_it_is_flat() {
        // Node's cluster.js right after start, 100 ms slices of a 600 ms
        // probe (requests): rising, then flat within noise.
        let (_, cold) = judge(&timeline(&[470, 560, 680, 770, 900, 1150])).unwrap();
        assert!(cold.is_err());
        let (_, warm) = judge(&timeline(&[1160, 1130, 1140, 1180, 1120, 1150])).unwrap();
        assert!(warm.is_ok(), "{warm:?}");
        // A tail that shrank all along, slice after slice ...
        let mut t = Vec::new();
        for (i, p99) in [509_000, 200_000, 90_000, 30_000, 8_000, 2_700]
            .iter()
            .enumerate()
        {
            let mut s = timeline_p99(&[1000], *p99);
            s[0].start_s = i as f64 * 0.1;
            t.extend(s);
        }
        assert!(judge(&t).unwrap().1.unwrap_err().contains("p99"));
        // ... but not one burst at a random moment (a GC pause).
        let mut t = Vec::new();
        for (i, p99) in [2_700, 29_000, 2_600, 2_800, 2_500, 2_900]
            .iter()
            .enumerate()
        {
            let mut s = timeline_p99(&[1000], *p99);
            s[0].start_s = i as f64 * 0.1;
            t.extend(s);
        }
        assert!(judge(&t).unwrap().1.is_ok());
    }

    #[test]
    fn a_plateau_needs_two_probes_that_agree() {
        let probe = |tp: f64, p99: u64| {
            vec![
                ProbeSlice {
                    throughput_rps: tp,
                    p99_us: p99,
                    ok: 1000,
                    errors: 0,
                };
                6
            ]
        };
        assert!(plateau(&probe(7700.0, 900), &probe(11_500.0, 900)).is_err());
        assert!(plateau(&probe(11_500.0, 900), &probe(11_400.0, 950)).is_ok());
        assert!(plateau(&probe(5000.0, 8000), &probe(5000.0, 2700))
            .unwrap_err()
            .contains("p99"));
    }

    #[test]
    fn kendall_known_values() {
        assert_eq!(kendall(&[1.0, 2.0, 3.0, 4.0]).0, 1.0);
        assert_eq!(kendall(&[4.0, 3.0, 2.0, 1.0]).0, -1.0);
        assert_eq!(kendall(&[1.0, 2.0]), (0.0, 0.0));
        // 10 values all rising: S = 45, var = 10*9*25/18 = 125.
        let (t, z) = kendall(&(0..10).map(f64::from).collect::<Vec<_>>());
        assert_eq!(t, 1.0);
        assert!((z - 45.0 / 125f64.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn a_short_last_slice_is_left_out() {
        let t = trend(&timeline(&[1000, 1000, 1000, 1000, 300])).unwrap();
        assert_eq!(t.slices, 4);
        assert!(t.throughput_change.abs() < 1e-9);
    }
}
