//! `loadgen merge`: add the results of several generators exactly.
//!
//! Histograms are added (never their percentiles averaged), counts summed,
//! per-worker tallies summed by worker (their latency histograms added), the
//! per-second series added second by second and the timeline slice by slice
//! (histograms included). Throughput and rates are sums, as the generators
//! ran side by side over the same window; so are the rates of `--rate-step`s,
//! which must change at the same offsets in every input. Inputs with
//! different timeline intervals or step offsets are refused.

use std::collections::BTreeMap;

use crate::errors::ErrorCounts;
use hdrhistogram::Histogram;

use crate::histo::{decode_v2_base64, merge as merge_hist, new_histogram, HistogramJson};
use crate::result::{
    warnings_for, GeneratorJson, LoadResult, SecondJson, SliceJson, WarmupJson, WorkerJson, SCHEMA,
};

/// Merges `parts` (at least one) into one result.
pub fn merge(parts: &[(String, LoadResult)]) -> Result<LoadResult, String> {
    let (_, first) = parts
        .first()
        .ok_or("nothing to merge: give at least one result file")?;
    let hist = |f: fn(&LoadResult) -> &HistogramJson| -> Result<HistogramJson, String> {
        merge_hist(&parts.iter().map(|(_, r)| f(r)).collect::<Vec<_>>())
    };
    let mut errors = ErrorCounts::default();
    let mut workers: BTreeMap<u32, (u64, u64, Option<Histogram<u64>>)> = BTreeMap::new();
    let mut timeline: Vec<(SliceJson, Histogram<u64>)> = Vec::new();
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
        if r.timeline_interval_s != first.timeline_interval_s {
            let says = |i: Option<f64>| match i {
                Some(s) => format!("timeline slices of {s} s"),
                None => "no timeline (a v1 file)".into(),
            };
            return Err(format!(
                "{name} has {}, {} has {}: merge runs made with the same --timeline-interval",
                says(r.timeline_interval_s),
                parts[0].0,
                says(first.timeline_interval_s)
            ));
        }
        let offsets =
            |r: &LoadResult| -> Vec<f64> { r.config.rate_steps.iter().map(|s| s.at_s).collect() };
        if offsets(r) != offsets(first) {
            return Err(format!(
                "{name} changes its rate at {:?} s, {} at {:?} s: merge runs made with --rate-step at the same offsets",
                offsets(r),
                parts[0].0,
                offsets(first)
            ));
        }
        errors.add(&r.errors);
        warmup.ok += r.warmup.ok;
        warmup.errors += r.warmup.errors;
        busy.extend_from_slice(&r.generator.thread_busy_pct);
        config.connections += r.config.connections;
        config.threads += r.config.threads;
        rate_sum += r.config.rate_rps.unwrap_or(0.0);
        if !std::ptr::eq(r, first) {
            for (sum, s) in config.rate_steps.iter_mut().zip(&r.config.rate_steps) {
                sum.rate_rps += s.rate_rps;
            }
        }
        for w in &r.workers {
            let e = workers
                .entry(w.worker)
                .or_insert_with(|| (0, 0, Some(new_histogram())));
            e.0 += w.requests;
            e.1 += w.connections;
            // A worker without a histogram (v1) leaves the sum without one.
            e.2 = match (e.2.take(), &w.latency) {
                (Some(mut sum), Some(h)) => {
                    sum.add(
                        &h.decode()
                            .map_err(|e| format!("{name}: worker {}: {e}", w.worker))?,
                    )
                    .map_err(|e| format!("{name}: worker {}: {e:?}", w.worker))?;
                    Some(sum)
                }
                _ => None,
            };
        }
        for (i, s) in r.timeline.iter().enumerate() {
            if timeline.len() <= i {
                let mut empty = s.clone();
                empty.due = 0;
                empty.ok = 0;
                empty.errors.clear();
                empty.idle_connect_errors = 0;
                timeline.push((empty, new_histogram()));
            }
            let (sum, h) = &mut timeline[i];
            sum.due += s.due;
            sum.ok += s.ok;
            for (k, n) in &s.errors {
                *sum.errors.entry(k.clone()).or_default() += n;
            }
            sum.idle_connect_errors += s.idle_connect_errors;
            h.add(
                decode_v2_base64(&s.hdr_v2_base64)
                    .map_err(|e| format!("{name}: timeline slice {i}: {e}"))?,
            )
            .map_err(|e| format!("{name}: timeline slice {i}: {e:?}"))?;
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
    let timeline = timeline
        .into_iter()
        .map(|(mut s, h)| {
            let m = HistogramJson::from_histogram(&h);
            s.p99_us = m.p99_us;
            s.hdr_v2_base64 = m.hdr_v2_base64;
            s
        })
        .collect();
    let mut out = LoadResult {
        schema: SCHEMA.into(),
        config,
        started_unix_ms: parts
            .iter()
            .map(|(_, r)| r.started_unix_ms)
            .min()
            .unwrap_or(0),
        measured_s: parts.iter().map(|(_, r)| r.measured_s).fold(0.0, f64::max),
        ok: sum(|r| r.ok),
        sent: sum(|r| r.sent),
        unsent: sum(|r| r.unsent),
        errors,
        idle_connect_errors: sum(|r| r.idle_connect_errors),
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
            .map(|(worker, (requests, connections, latency))| WorkerJson {
                worker,
                requests,
                connections,
                latency: latency.as_ref().map(HistogramJson::from_histogram),
            })
            .collect(),
        unattributed: sum(|r| r.unattributed),
        connections_opened: sum(|r| r.connections_opened),
        starved_connections: sum(|r| r.starved_connections),
        warmup,
        series,
        timeline_interval_s: first.timeline_interval_s,
        timeline,
        generator: GeneratorJson {
            thread_busy_pct: busy,
        },
        warnings: Vec::new(),
        merged_from: parts.iter().map(|(n, _)| n.clone()).collect(),
    };
    out.warnings = warnings_for(&out);
    Ok(out)
}
