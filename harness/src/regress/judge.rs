//! The verdicts, pure: bootstrap intervals of paired ratios on one machine,
//! and the tolerances of a comparison with a baseline from another machine.

use super::{Figures, SavedBaseline, SavedStrategy, Verdict, YARDSTICK};
pub use crate::analyse::stats::bootstrap_median_ci;
use crate::analyse::stats::median;

/// Tolerances of the cross-machine comparison.
pub const TOL_RATIO: f64 = 0.25;
/// Normalised throughput may move this much before it counts.
pub const TOL_NORMALISED: f64 = 0.40;
/// CPU time per request relative to the yardstick may rise this much over
/// the baseline's before it counts (see REGRESSION.md for the spread it was
/// chosen from).
pub const TOL_CPU_RATIO: f64 = 0.30;
/// Jain's index may drop this much (absolute) before it counts.
pub const TOL_JAIN: f64 = 0.15;
/// Jain's index is gated only for strategies at least this even in the baseline.
pub const JAIN_GATED_FROM: f64 = 0.9;

/// Judges paired per-round ratios candidate/baseline of a metric where
/// `higher_is_better`, with a minimum effect.
pub fn judge_ratios(
    strategy: &str,
    metric: &str,
    ratios: &[f64],
    higher_is_better: bool,
    min_effect: f64,
    seed: u64,
) -> Verdict {
    let [lo, mid, hi] = bootstrap_median_ci(ratios, seed);
    let pct = |r: f64| (r - 1.0) * 100.0;
    let (significant, large) = if higher_is_better {
        (hi < 1.0, mid < 1.0 - min_effect)
    } else {
        (lo > 1.0, mid > 1.0 + min_effect)
    };
    let regression = significant && large;
    let note = match (significant, large) {
        (true, true) => format!(
            "worse by more than {:.0}% and significant",
            min_effect * 100.0
        ),
        (true, false) => format!("significant but within {:.0}%", min_effect * 100.0),
        (false, true) => "large but not significant (noise)".into(),
        (false, false) => "no change".into(),
    };
    Verdict {
        strategy: strategy.into(),
        metric: metric.into(),
        change: [pct(lo), pct(mid), pct(hi)],
        regression,
        note,
    }
}

/// Errors: any more than the baseline had is a regression.
pub(super) fn errors_verdict(s: &str, base: u64, cand: u64) -> Verdict {
    Verdict {
        strategy: s.into(),
        metric: "errors".into(),
        change: [base as f64, cand as f64, cand as f64],
        regression: cand > base,
        note: format!("baseline {base}, candidate {cand}"),
    }
}

/// Per round: candidate throughput over the yardstick's candidate throughput.
fn vs_yardstick(
    i: usize,
    all: &[Vec<(Option<Figures>, Figures)>],
    strategies: &[String],
) -> Vec<f64> {
    let y = strategies.iter().position(|s| s == YARDSTICK);
    all[i]
        .iter()
        .enumerate()
        .map(|(r, (_, c))| match y {
            Some(y) => c.throughput_rps / all[y][r].1.throughput_rps.max(1e-9),
            None => 1.0,
        })
        .collect()
}

/// Per round: candidate CPU time per request over the yardstick's
/// candidate's; empty without a yardstick or without CPU figures.
fn cpu_vs_yardstick(
    i: usize,
    all: &[Vec<(Option<Figures>, Figures)>],
    strategies: &[String],
) -> Vec<f64> {
    let Some(y) = strategies.iter().position(|s| s == YARDSTICK) else {
        return Vec::new();
    };
    all[i]
        .iter()
        .zip(&all[y])
        .filter(|((_, c), (_, yc))| c.cpu_us_per_request > 0.0 && yc.cpu_us_per_request > 0.0)
        .map(|((_, c), (_, yc))| c.cpu_us_per_request / yc.cpu_us_per_request)
        .collect()
}

/// A candidate's figures as a saved baseline holds them.
pub(super) fn summarize_candidate(
    s: &str,
    f: &[(Option<Figures>, Figures)],
    all: &[Vec<(Option<Figures>, Figures)>],
    strategies: &[String],
    calibration: &[f64],
) -> SavedStrategy {
    let i = strategies.iter().position(|x| x == s).expect("listed");
    let per_cal: Vec<f64> = f
        .iter()
        .zip(calibration)
        .map(|((_, c), cal)| c.throughput_rps / cal.max(1e-9))
        .collect();
    SavedStrategy {
        strategy: s.into(),
        throughput_vs_yardstick: median(&vs_yardstick(i, all, strategies)),
        throughput_vs_yardstick_min: vs_yardstick(i, all, strategies)
            .into_iter()
            .fold(f64::INFINITY, f64::min),
        throughput_per_calibration: median(&per_cal),
        cpu_per_request_vs_yardstick: {
            let r = cpu_vs_yardstick(i, all, strategies);
            if r.is_empty() {
                0.0
            } else {
                median(&r)
            }
        },
        jain_connections: median(
            &f.iter()
                .map(|(_, c)| c.jain_connections)
                .collect::<Vec<_>>(),
        ),
        errors: f.iter().map(|(_, c)| c.errors).sum(),
    }
}

/// The verdicts of a candidate against a saved baseline from another
/// machine: errors, throughput against the yardstick, throughput per unit
/// of CPU calibration, Jain's index.
pub(super) fn cross_machine(
    s: &str,
    f: &[(Option<Figures>, Figures)],
    all: &[Vec<(Option<Figures>, Figures)>],
    strategies: &[String],
    calibration: &[f64],
    saved: &SavedBaseline,
) -> Vec<Verdict> {
    let now = summarize_candidate(s, f, all, strategies, calibration);
    let Some(base) = saved.strategies.iter().find(|b| b.strategy == s) else {
        return vec![Verdict {
            strategy: s.into(),
            metric: "baseline".into(),
            change: [0.0; 3],
            regression: false,
            note: "not in the saved baseline: not gated".into(),
        }];
    };
    let rel = |a: f64, b: f64| if b > 0.0 { (a / b - 1.0) * 100.0 } else { 0.0 };
    let mut v = vec![errors_verdict(s, base.errors, now.errors)];
    // The floor: 25% under the baseline's median, or under its worst round
    // when that was lower still (a strategy whose rounds already varied that
    // much cannot be held to its median).
    let reference = if base.throughput_vs_yardstick_min > 0.0 {
        base.throughput_vs_yardstick
            .min(base.throughput_vs_yardstick_min)
    } else {
        base.throughput_vs_yardstick
    };
    let r = rel(now.throughput_vs_yardstick, base.throughput_vs_yardstick);
    let floor = reference * (1.0 - TOL_RATIO);
    v.push(Verdict {
        strategy: s.into(),
        metric: format!("throughput_vs_{YARDSTICK}"),
        change: [r, r, r],
        regression: s != YARDSTICK && now.throughput_vs_yardstick < floor,
        note: format!(
            "{:.2} now vs {:.2} in the baseline (worst round {:.2}); floor {:.2}",
            now.throughput_vs_yardstick, base.throughput_vs_yardstick, reference, floor
        ),
    });
    let n = rel(
        now.throughput_per_calibration,
        base.throughput_per_calibration,
    );
    v.push(Verdict {
        strategy: s.into(),
        metric: "throughput_per_cpu_calibration".into(),
        change: [n, n, n],
        regression: n < -TOL_NORMALISED * 100.0,
        note: format!(
            "tolerance {:.0}%: CPU speed and syscall cost do not scale together across machines",
            TOL_NORMALISED * 100.0
        ),
    });
    // CPU per request relative to the yardstick: absolute CPU time does not
    // carry across machines, the ratio of two strategies measured in the
    // same rounds does. Not gated where the baseline has no such figure
    // (files written before it was measured) or for the yardstick itself.
    let (now_c, base_c) = (
        now.cpu_per_request_vs_yardstick,
        base.cpu_per_request_vs_yardstick,
    );
    let gated = base_c > 0.0 && now_c > 0.0 && s != YARDSTICK;
    let c = rel(now_c, base_c);
    v.push(Verdict {
        strategy: s.into(),
        metric: format!("cpu_per_request_vs_{YARDSTICK}"),
        change: [c, c, c],
        regression: gated && now_c > base_c * (1.0 + TOL_CPU_RATIO),
        note: if gated {
            format!(
                "{now_c:.2} now vs {base_c:.2} in the baseline (may rise {:.0}%)",
                TOL_CPU_RATIO * 100.0
            )
        } else if s == YARDSTICK {
            "the yardstick itself: not gated".into()
        } else {
            format!("{now_c:.2} now; not in the baseline: not gated")
        },
    });
    // Gated only where the baseline was even (Jain >= 0.9): for strategies
    // whose spread is decided by a race (shared:epoll's first burst), the
    // index itself varies from round to round and gating it would only
    // produce false alarms.
    let d = now.jain_connections - base.jain_connections;
    let gated = base.jain_connections >= JAIN_GATED_FROM;
    v.push(Verdict {
        strategy: s.into(),
        metric: "jain_connections".into(),
        change: [d, d, d],
        regression: gated && d < -TOL_JAIN,
        note: if gated {
            format!(
                "{:.2} now vs {:.2} (may drop by {TOL_JAIN})",
                now.jain_connections, base.jain_connections
            )
        } else {
            format!(
                "{:.2} now vs {:.2}: not gated (uneven in the baseline itself)",
                now.jain_connections, base.jain_connections
            )
        },
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clear_drop_is_a_regression_and_noise_is_not() {
        let drop = [0.70, 0.72, 0.74, 0.71, 0.73, 0.75];
        assert!(judge_ratios("s", "throughput", &drop, true, 0.10, 1).regression);
        let noise = [0.95, 1.06, 0.99, 1.03, 0.92, 1.08];
        assert!(!judge_ratios("s", "throughput", &noise, true, 0.10, 1).regression);
        let small = [0.95, 0.96, 0.95, 0.94, 0.96, 0.95];
        let v = judge_ratios("s", "throughput", &small, true, 0.10, 1);
        assert!(!v.regression, "significant but within the minimum effect");
        assert!(v.note.contains("within"));
    }

    #[test]
    fn p99_regresses_upwards() {
        let up = [1.5, 1.6, 1.4, 1.55, 1.45, 1.5];
        assert!(judge_ratios("s", "p99", &up, false, 0.25, 1).regression);
        assert!(!judge_ratios("s", "p99", &[0.5, 0.6, 0.55, 0.5], false, 0.25, 1).regression);
    }

    #[test]
    fn bootstrap_interval_contains_the_median_and_is_ordered() {
        let xs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
        let [lo, mid, hi] = bootstrap_median_ci(&xs, 3);
        assert!(lo <= mid && mid <= hi);
        assert_eq!(mid, 4.0);
    }

    fn figures(tput: f64, cpu: f64) -> Figures {
        Figures {
            throughput_rps: tput,
            jain_connections: 1.0,
            cpu_us_per_request: cpu,
            workers_cpu_us_per_request: cpu,
            ..Figures::default()
        }
    }

    /// Two strategies, `rounds` rounds: master-pass at `cpu` µs/req,
    /// reuseport at 80.
    fn rounds(cpu: f64) -> (Vec<Vec<super::super::Pair>>, Vec<String>) {
        let mp = (0..4).map(|_| (None, figures(9000.0, cpu))).collect();
        let rp = (0..4).map(|_| (None, figures(10000.0, 80.0))).collect();
        (vec![mp, rp], vec!["master-pass".into(), YARDSTICK.into()])
    }

    fn saved(cpu_ratio: f64) -> SavedBaseline {
        let (all, names) = rounds(80.0);
        let cal = [1.0; 4];
        let mut strategies: Vec<SavedStrategy> = names
            .iter()
            .enumerate()
            .map(|(i, s)| summarize_candidate(s, &all[i], &all, &names, &cal))
            .collect();
        strategies[0].cpu_per_request_vs_yardstick = cpu_ratio;
        SavedBaseline {
            schema: super::super::BASELINE_SCHEMA.into(),
            environment: Default::default(),
            rounds: 4,
            workers: 2,
            strategies,
        }
    }

    fn cpu_verdict(now_cpu: f64, saved: &SavedBaseline) -> Verdict {
        let (all, names) = rounds(now_cpu);
        cross_machine("master-pass", &all[0], &all, &names, &[1.0; 4], saved)
            .into_iter()
            .find(|v| v.metric == "cpu_per_request_vs_reuseport")
            .expect("a CPU verdict")
    }

    #[test]
    fn cpu_per_request_against_the_yardstick_is_saved_and_gated() {
        let (all, names) = rounds(100.0);
        let s = summarize_candidate("master-pass", &all[0], &all, &names, &[1.0; 4]);
        assert!((s.cpu_per_request_vs_yardstick - 1.25).abs() < 1e-9);
        let base = saved(1.0);
        // 80 -> 100 µs/req against reuseport's 80: +25%, within the tolerance.
        assert!(!cpu_verdict(100.0, &base).regression);
        // 80 -> 160: twice the yardstick's, a regression.
        let v = cpu_verdict(160.0, &base);
        assert!(v.regression, "{v:?}");
        assert!((v.change[1] - 100.0).abs() < 1e-6);
        // The yardstick itself is never gated on its own ratio (always 1).
        let (all, names) = rounds(160.0);
        let y = cross_machine(YARDSTICK, &all[1], &all, &names, &[1.0; 4], &base);
        assert!(y.iter().all(|v| !v.regression), "{y:?}");
    }

    #[test]
    fn a_baseline_without_cpu_figures_does_not_gate_them() {
        // Files written before the open-loop run have no such field.
        let json = r#"{"strategy":"master-pass","throughput_vs_yardstick":0.9,
            "throughput_per_calibration":30.0,"jain_connections":0.95,"errors":0}"#;
        let old: SavedStrategy = serde_json::from_str(json).unwrap();
        assert_eq!(old.cpu_per_request_vs_yardstick, 0.0);
        let v = cpu_verdict(400.0, &saved(0.0));
        assert!(!v.regression, "{v:?}");
        assert!(v.note.contains("not gated"), "{v:?}");
        // Old run figures without the open-loop fields load too.
        let f: Figures = serde_json::from_str(
            r#"{"throughput_rps":1.0,"p99_us":2.0,"jain_connections":1.0,"errors":0}"#,
        )
        .unwrap();
        assert_eq!(f.cpu_us_per_request, 0.0);
        // The committed baseline has the field for every strategy it holds,
        // so CI gates CPU per request.
        let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../results/baseline/regress.json");
        let b = super::super::read_baseline(&committed).unwrap();
        assert!(b
            .strategies
            .iter()
            .all(|s| s.cpu_per_request_vs_yardstick > 0.0));
    }

    #[test]
    fn more_cpu_per_request_is_worse() {
        let up = [1.4, 1.5, 1.45, 1.38, 1.52, 1.47];
        let v = judge_ratios("s", "cpu_per_request", &up, false, 0.10, 1);
        assert!(v.regression && v.note.contains("significant"), "{v:?}");
        let down = [0.7, 0.72, 0.69, 0.71];
        assert!(!judge_ratios("s", "cpu_per_request", &down, false, 0.10, 1).regression);
    }
}
