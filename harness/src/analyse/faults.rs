//! "Under faults": what each target loses when something goes wrong (pure
//! functions from run files to the summary's `faults`).
//!
//! loadgen puts every measured request in the timeline slice of its due time
//! (100 ms slices by default), whatever happened to it later. A fault run is
//! cut into:
//! - the *baseline*: the slices before the first injection;
//! - the *affected window*: from the slice of the first injection to the
//!   point of recovery;
//! - the *rest*: every other slice.
//!
//! Recovery is the start of the first slice, at or after the slice in which
//! the fault ended, from which every later slice is clean: no error, and a
//! p99 within [`RECOVERY_FACTOR`] times the baseline p99 (or the baseline
//! plus [`RECOVERY_SLACK_US`], whichever is larger: 100 ms slices on a busy
//! machine have noisy tails). A run whose last slice is not clean has not
//! recovered within its window, which the summary says rather than inventing
//! a time.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use loadgen::result::SliceJson as TimelineSlice;

use crate::analyse::stats::spread;
use crate::model::faults::{FaultCell, FaultRun, SliceJson, WindowJson};
use crate::model::record::RunRecord;
use crate::model::summary::Spread;

/// A slice is back to normal when its p99 is within this factor of the
/// baseline's...
pub const RECOVERY_FACTOR: f64 = 2.0;
/// ...or within the baseline plus this, µs, whichever is larger.
pub const RECOVERY_SLACK_US: u64 = 5_000;

fn hist(b64: &str) -> Result<Histogram<u64>, String> {
    loadgen::histo::decode_v2_base64(b64)
}

fn p99(h: &Histogram<u64>) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(0.99)
    }
}

/// Sums the slices `idx` of a timeline into a window.
fn window(tl: &[TimelineSlice], width: f64, idx: &[usize]) -> Result<WindowJson, String> {
    let mut h = loadgen::histo::new_histogram();
    let mut w = WindowJson::default();
    for (n, &i) in idx.iter().enumerate() {
        let s = &tl[i];
        if n == 0 {
            w.from_s = s.start_s;
        }
        w.to_s = s.start_s + width;
        w.due += s.due;
        w.ok += s.ok;
        w.errors += s.errors_total();
        h.add(&hist(&s.hdr_v2_base64)?)
            .map_err(|e| format!("adding histograms: {e:?}"))?;
    }
    w.p99_us = p99(&h);
    Ok(w)
}

/// A fault run's timeline cut into windows.
#[derive(Clone, Debug, PartialEq)]
pub struct Windows {
    /// Before the fault.
    pub baseline: WindowJson,
    /// From the fault to recovery.
    pub affected: WindowJson,
    /// Everything but the affected window.
    pub rest: WindowJson,
    /// From the end of the fault to recovery, s (`None`: not recovered).
    pub recovered_after_s: Option<f64>,
}

/// Cuts a timeline of slices `width` s wide around a fault that lasted
/// from `start_s` to `end_s` (see the module's comment).
pub fn windows(
    tl: &[TimelineSlice],
    width: f64,
    start_s: f64,
    end_s: f64,
) -> Result<Windows, String> {
    if tl.is_empty() || width <= 0.0 {
        return Err("a fault run needs a timeline".into());
    }
    let slice_of = |t: f64| ((t / width).floor().max(0.0) as usize).min(tl.len() - 1);
    let (first, last) = (slice_of(start_s), slice_of(end_s));
    let before: Vec<usize> = (0..first).collect();
    let baseline = window(tl, width, &before)?;
    let threshold = ((baseline.p99_us as f64 * RECOVERY_FACTOR) as u64)
        .max(baseline.p99_us + RECOVERY_SLACK_US);
    let clean = |s: &TimelineSlice| s.errors_total() == 0 && (s.ok == 0 || s.p99_us <= threshold);
    // The first slice, from the fault's last one on, after which every
    // slice is clean.
    let mut recovered_at = tl.len();
    for i in (last..tl.len()).rev() {
        if !clean(&tl[i]) {
            break;
        }
        recovered_at = i;
    }
    let recovered_after_s =
        (recovered_at < tl.len()).then(|| (tl[recovered_at].start_s - end_s).max(0.0));
    let affected_idx: Vec<usize> = (first..recovered_at.max(last + 1).min(tl.len())).collect();
    let rest_idx: Vec<usize> = (0..tl.len())
        .filter(|i| !affected_idx.contains(i))
        .collect();
    Ok(Windows {
        baseline,
        affected: window(tl, width, &affected_idx)?,
        rest: window(tl, width, &rest_idx)?,
        recovered_after_s,
    })
}

/// Analyses one fault run; `None` if it is not one (no fault record, or a
/// loadgen result without a timeline).
pub fn fault_run(r: &RunRecord) -> Result<Option<FaultRun>, String> {
    let Some(fault) = &r.fault else {
        return Ok(None);
    };
    let lg = &r.loadgen;
    let width = lg.timeline_interval_s.unwrap_or(0.0);
    if lg.timeline.is_empty() || width <= 0.0 {
        return Ok(None);
    }
    // Where the injections fall on loadgen's clock.
    let measured_start_ms = lg.started_unix_ms as f64 + lg.config.warmup_s * 1000.0;
    let offset = |unix_ms: u64| ((unix_ms as f64 - measured_start_ms) / 1000.0).max(0.0);
    let (fault_start_s, fault_end_s) = match &fault.surge {
        Some(s) => (s.from_ms as f64 / 1000.0, s.to_ms as f64 / 1000.0),
        None => {
            let times: Vec<f64> = fault
                .injections
                .iter()
                .map(|i| offset(i.at_unix_ms))
                .collect();
            match (times.first(), times.last()) {
                (Some(&a), Some(&b)) => (a, b),
                // Nothing was injected (the load ended first): no fault.
                _ => return Ok(None),
            }
        }
    };
    let cut = windows(&lg.timeline, width, fault_start_s, fault_end_s)?;

    let due: u64 = lg.timeline.iter().map(|s| s.due).sum();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for s in &lg.timeline {
        for (k, v) in &s.errors {
            *errors.entry(k.clone()).or_default() += v;
        }
    }
    let total_errors: u64 = errors.values().sum();

    // The stopped worker's requests vs everyone else's.
    let (mut victim_p99_us, mut others_p99_us, mut victim_share) = (None, None, None);
    if fault.kind == "slow-worker" {
        if let Some(victim) = fault.victim_pid {
            let mut others = loadgen::histo::new_histogram();
            let mut mine = None;
            let total: u64 = lg.workers.iter().map(|w| w.requests).sum();
            for w in &lg.workers {
                let h = match &w.latency {
                    Some(l) => l.decode()?,
                    None => continue,
                };
                if w.worker as i32 == victim {
                    victim_share = Some(if total > 0 {
                        w.requests as f64 / total as f64
                    } else {
                        0.0
                    });
                    mine = Some(p99(&h));
                } else {
                    others
                        .add(&h)
                        .map_err(|e| format!("adding histograms: {e:?}"))?;
                }
            }
            victim_p99_us = Some(mine.unwrap_or(0));
            victim_share.get_or_insert(0.0);
            others_p99_us = Some(p99(&others));
        }
    }
    let stats = r.server.stats.as_ref();
    Ok(Some(FaultRun {
        round: r.round,
        fault_start_s,
        fault_end_s,
        due,
        errors_per_10k: if due > 0 {
            total_errors as f64 * 10_000.0 / due as f64
        } else {
            0.0
        },
        errors,
        baseline_p99_us: cut.baseline.p99_us,
        affected: cut.affected,
        rest: cut.rest,
        recovered_after_s: cut.recovered_after_s,
        victim_p99_us,
        others_p99_us,
        victim_share,
        counters: r.kernel.counters.clone(),
        tcp_migrate_req: r.kernel.tcp_migrate_req,
        replacements: stats.map(|s| s.replacements),
        rerouted: stats.and_then(|s| s.master.connections_rerouted),
        timeline: lg
            .timeline
            .iter()
            .map(|s| SliceJson {
                start_s: s.start_s,
                due: s.due,
                errors: s.errors.values().sum(),
                p99_us: s.p99_us,
            })
            .collect(),
    }))
}

fn spread_of(runs: &[FaultRun], f: impl Fn(&FaultRun) -> f64) -> Spread {
    spread(&runs.iter().map(f).collect::<Vec<_>>())
}

fn optional_spread(runs: &[FaultRun], f: impl Fn(&FaultRun) -> Option<f64>) -> Option<Spread> {
    let v: Vec<f64> = runs.iter().filter_map(f).collect();
    (!v.is_empty()).then(|| spread(&v))
}

/// The fault cells of a session: one per (target, scenario, workers), in
/// the order the targets and scenarios were asked for.
pub fn fault_cells(
    records: &[RunRecord],
    targets: &[String],
    scenarios: &[String],
) -> Result<Vec<FaultCell>, String> {
    let mut out = Vec::new();
    for scenario in scenarios {
        for target in targets {
            let mut by_workers: BTreeMap<usize, Vec<FaultRun>> = BTreeMap::new();
            for r in records
                .iter()
                .filter(|r| &r.target == target && &r.workload == scenario)
            {
                if let Some(run) = fault_run(r)? {
                    by_workers.entry(r.workers).or_default().push(run);
                }
            }
            for (workers, mut runs) in by_workers {
                runs.sort_by_key(|r| r.round);
                let mut errors: BTreeMap<String, u64> = BTreeMap::new();
                for r in &runs {
                    for (k, v) in &r.errors {
                        *errors.entry(k.clone()).or_default() += v;
                    }
                }
                let names: std::collections::BTreeSet<&String> = runs
                    .iter()
                    .flat_map(|r| r.counters.iter().filter(|(_, v)| **v > 0).map(|(k, _)| k))
                    .collect();
                let counters = names
                    .into_iter()
                    .map(|k| {
                        (
                            k.clone(),
                            spread_of(&runs, |r| r.counters.get(k).copied().unwrap_or(0) as f64),
                        )
                    })
                    .collect();
                out.push(FaultCell {
                    target: target.clone(),
                    scenario: scenario.clone(),
                    workers,
                    reference: crate::model::names::is_reference(target),
                    tcp_migrate_req: runs.iter().find_map(|r| r.tcp_migrate_req),
                    errors_per_10k: spread_of(&runs, |r| r.errors_per_10k),
                    errors,
                    affected_p99_us: spread_of(&runs, |r| r.affected.p99_us as f64),
                    rest_p99_us: spread_of(&runs, |r| r.rest.p99_us as f64),
                    recover_ms: spread(
                        &runs
                            .iter()
                            .filter_map(|r| r.recovered_after_s.map(|s| s * 1000.0))
                            .collect::<Vec<_>>(),
                    ),
                    not_recovered: runs
                        .iter()
                        .filter(|r| r.recovered_after_s.is_none())
                        .count(),
                    victim_p99_us: optional_spread(&runs, |r| r.victim_p99_us.map(|v| v as f64)),
                    others_p99_us: optional_spread(&runs, |r| r.others_p99_us.map(|v| v as f64)),
                    counters,
                    replacements: optional_spread(&runs, |r| r.replacements.map(|v| v as f64)),
                    rerouted: optional_spread(&runs, |r| r.rerouted.map(|v| v as f64)),
                    runs,
                });
            }
        }
    }
    Ok(out)
}

/// One-line findings on the fault cells (the report's bullet list).
pub fn fault_findings(cells: &[FaultCell]) -> Vec<String> {
    let mut out = Vec::new();
    let mut scenarios: Vec<&str> = cells.iter().map(|c| c.scenario.as_str()).collect();
    scenarios.dedup();
    for scenario in scenarios {
        let these: Vec<&FaultCell> = cells.iter().filter(|c| c.scenario == scenario).collect();
        let lossless: Vec<&str> = these
            .iter()
            .filter(|c| c.errors_per_10k.max == 0.0)
            .map(|c| c.target.as_str())
            .collect();
        let worst = these
            .iter()
            .max_by(|a, b| a.errors_per_10k.median.total_cmp(&b.errors_per_10k.median));
        if let Some(w) = worst.filter(|w| w.errors_per_10k.median > 0.0) {
            out.push(format!(
                "{scenario}: {} lost the most, {:.1} errors per 10,000 connections (median of {} rounds){}",
                w.target,
                w.errors_per_10k.median,
                w.runs.len(),
                if lossless.is_empty() {
                    String::new()
                } else {
                    format!("; no client saw an error in any round with {}", lossless.join(", "))
                }
            ));
        } else if !lossless.is_empty() {
            out.push(format!(
                "{scenario}: no client saw an error in any round with any target"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slice with `ok` successes of latency `us` and `errors` resets.
    fn slice(i: usize, ok: u64, us: u64, errors: u64) -> TimelineSlice {
        let mut h = loadgen::histo::new_histogram();
        for _ in 0..ok {
            loadgen::histo::record(&mut h, us);
        }
        let j = loadgen::histo::HistogramJson::from_histogram(&h);
        let mut e = BTreeMap::new();
        if errors > 0 {
            e.insert("reset".to_string(), errors);
        }
        TimelineSlice {
            start_s: i as f64 * 0.1,
            due: ok + errors,
            ok,
            errors: e,
            idle_connect_errors: 0,
            p99_us: j.p99_us,
            hdr_v2_base64: j.hdr_v2_base64,
        }
    }

    #[test]
    fn the_affected_window_runs_from_the_fault_to_the_first_clean_suffix() {
        // 1 ms before; the fault at 0.3 s: errors and 50 ms until 0.6 s.
        let mut tl: Vec<TimelineSlice> = (0..3).map(|i| slice(i, 100, 1000, 0)).collect();
        tl.push(slice(3, 90, 50_000, 10));
        tl.push(slice(4, 100, 50_000, 0));
        tl.push(slice(5, 100, 40_000, 0));
        tl.extend((6..10).map(|i| slice(i, 100, 1200, 0)));
        let w = windows(&tl, 0.1, 0.31, 0.31).unwrap();
        assert_eq!(w.baseline.due, 300);
        assert_eq!((w.affected.due, w.affected.errors), (300, 10));
        assert!((w.affected.from_s - 0.3).abs() < 1e-9 && (w.affected.to_s - 0.6).abs() < 1e-9);
        assert_eq!(w.rest.due, 700);
        assert_eq!(w.rest.errors, 0);
        assert!(w.affected.p99_us >= 49_000, "{}", w.affected.p99_us);
        assert!(w.rest.p99_us < 2_000);
        // Recovered at 0.6 s, 0.29 s after the fault.
        let r = w.recovered_after_s.unwrap();
        assert!((r - 0.29).abs() < 1e-9, "{r}");
    }

    #[test]
    fn a_late_error_means_not_recovered_and_a_clean_fault_recovers_at_once() {
        let mut tl: Vec<TimelineSlice> = (0..9).map(|i| slice(i, 100, 1000, 0)).collect();
        tl.push(slice(9, 99, 1000, 1));
        let w = windows(&tl, 0.1, 0.5, 0.5).unwrap();
        assert_eq!(w.recovered_after_s, None);
        assert_eq!(
            w.affected.due, 500,
            "everything from the fault on is affected"
        );

        let tl: Vec<TimelineSlice> = (0..10).map(|i| slice(i, 100, 1000, 0)).collect();
        let w = windows(&tl, 0.1, 0.5, 0.5).unwrap();
        assert_eq!(w.recovered_after_s, Some(0.0));
        assert_eq!(w.affected.due, 100, "just the fault's own slice");
        // Within 2x or +5 ms of the baseline is clean.
        let mut tl: Vec<TimelineSlice> = (0..10).map(|i| slice(i, 100, 1000, 0)).collect();
        tl[7] = slice(7, 100, 5_900, 0);
        assert_eq!(
            windows(&tl, 0.1, 0.5, 0.5).unwrap().recovered_after_s,
            Some(0.0)
        );
        tl[7] = slice(7, 100, 6_500, 0);
        let r = windows(&tl, 0.1, 0.5, 0.5)
            .unwrap()
            .recovered_after_s
            .unwrap();
        assert!((r - 0.3).abs() < 1e-9, "{r}");
    }
}
