//! `loadgen merge`: add the results of several generators exactly.
//!
//! Histograms are added (never their percentiles averaged), counts summed,
//! per-worker tallies summed by worker, and the per-second series added
//! second by second (histograms included). Throughput and rates are sums, as
//! the generators ran side by side over the same window.

use std::collections::BTreeMap;

use crate::errors::ErrorCounts;
use hdrhistogram::Histogram;

use crate::histo::{decode_v2_base64, merge as merge_hist, new_histogram, HistogramJson};
use crate::result::{warnings_for, GeneratorJson, LoadResult, SecondJson, WarmupJson, WorkerJson};

/// Merges `parts` (at least one) into one result.
pub fn merge(parts: &[(String, LoadResult)]) -> Result<LoadResult, String> {
    let (_, first) = parts
        .first()
        .ok_or("nothing to merge: give at least one result file")?;
    let hist = |f: fn(&LoadResult) -> &HistogramJson| -> Result<HistogramJson, String> {
        merge_hist(&parts.iter().map(|(_, r)| f(r)).collect::<Vec<_>>())
    };
    let mut errors = ErrorCounts::default();
    let mut workers: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let mut warmup = WarmupJson::default();
    let mut busy = Vec::new();
    let mut seconds: BTreeMap<usize, (u64, u64, Vec<Histogram<u64>>)> = BTreeMap::new();
    let mut config = first.config.clone();
    config.connections = 0;
    config.threads = 0;
    let mut rate_sum = 0.0;
    for (name, r) in parts {
        if r.config.target != first.config.target {
            return Err(format!(
                "{name} measured {}, not {}: merge results of one target",
                r.config.target, first.config.target
            ));
        }
        errors.add(&r.errors);
        warmup.ok += r.warmup.ok;
        warmup.errors += r.warmup.errors;
        busy.extend_from_slice(&r.generator.thread_busy_pct);
        config.connections += r.config.connections;
        config.threads += r.config.threads;
        rate_sum += r.config.rate_rps.unwrap_or(0.0);
        for w in &r.workers {
            let e = workers.entry(w.worker).or_default();
            e.0 += w.requests;
            e.1 += w.connections;
        }
        for s in &r.series {
            let e = seconds.entry(s.second).or_insert((0, 0, Vec::new()));
            e.0 += s.ok;
            e.1 += s.errors;
            e.2.push(
                decode_v2_base64(&s.hdr_v2_base64)
                    .map_err(|e| format!("{name}: second {}: {e}", s.second))?,
            );
        }
    }
    config.rate_rps = first.config.rate_rps.map(|_| rate_sum);
    let sum = |f: fn(&LoadResult) -> u64| parts.iter().map(|(_, r)| f(r)).sum::<u64>();
    let fsum = |f: fn(&LoadResult) -> f64| parts.iter().map(|(_, r)| f(r)).sum::<f64>();
    let mut series = Vec::new();
    for (second, (ok, errs, hs)) in seconds {
        let mut sum = new_histogram();
        for h in &hs {
            sum.add(h)
                .map_err(|e| format!("second {second}: cannot add histograms: {e:?}"))?;
        }
        let m = HistogramJson::from_histogram(&sum);
        series.push(SecondJson {
            second,
            ok,
            errors: errs,
            p99_us: m.p99_us,
            hdr_v2_base64: m.hdr_v2_base64,
        });
    }
    let mut out = LoadResult {
        schema: first.schema.clone(),
        config,
        started_unix_ms: parts
            .iter()
            .map(|(_, r)| r.started_unix_ms)
            .min()
            .unwrap_or(0),
        measured_s: parts.iter().map(|(_, r)| r.measured_s).fold(0.0, f64::max),
        ok: sum(|r| r.ok),
        sent: sum(|r| r.sent),
        errors,
        throughput_rps: fsum(|r| r.throughput_rps),
        target_rate_rps: first
            .target_rate_rps
            .map(|_| fsum(|r| r.target_rate_rps.unwrap_or(0.0))),
        achieved_rate_rps: fsum(|r| r.achieved_rate_rps),
        max_schedule_lag_us: parts
            .iter()
            .map(|(_, r)| r.max_schedule_lag_us)
            .max()
            .unwrap_or(0),
        latency: hist(|r| &r.latency)?,
        service: hist(|r| &r.service)?,
        connect: hist(|r| &r.connect)?,
        ttfb: hist(|r| &r.ttfb)?,
        workers: workers
            .into_iter()
            .map(|(worker, (requests, connections))| WorkerJson {
                worker,
                requests,
                connections,
            })
            .collect(),
        unattributed: sum(|r| r.unattributed),
        connections_opened: sum(|r| r.connections_opened),
        warmup,
        series,
        generator: GeneratorJson {
            thread_busy_pct: busy,
        },
        warnings: Vec::new(),
        merged_from: parts.iter().map(|(n, _)| n.clone()).collect(),
    };
    out.warnings = warnings_for(&out);
    Ok(out)
}
