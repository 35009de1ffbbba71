//! A run's result put together from its threads' tallies.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::*;
use crate::config::RunConfig;
use crate::histo::new_histogram;
use crate::tally::{SecondTally, SliceTally, ThreadResult};

/// Puts the threads' results together.
pub fn assemble(cfg: &RunConfig, started_unix_ms: u64, threads: Vec<ThreadResult>) -> LoadResult {
    let mut latency = new_histogram();
    let mut service = new_histogram();
    let mut connect = new_histogram();
    let mut ttfb = new_histogram();
    let mut errors = ErrorCounts::default();
    let mut workers: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let mut series: Vec<SecondTally> = Vec::new();
    let slices = cfg.timeline_slices();
    let mut timeline: Vec<SliceTally> = vec![SliceTally::default(); slices];
    let mut worker_latency: BTreeMap<u32, Histogram<u64>> = BTreeMap::new();
    let (mut unsent, mut idle_connect_errors) = (0, 0);
    let (mut ok, mut sent, mut unattributed, mut opened, mut max_lag) = (0, 0, 0, 0, 0);
    let mut starved = 0;
    let mut warmup = WarmupJson::default();
    let mut busy = Vec::new();
    for t in &threads {
        latency.add(&t.latency).expect("same bounds");
        service.add(&t.service).expect("same bounds");
        connect.add(&t.connect).expect("same bounds");
        ttfb.add(&t.ttfb).expect("same bounds");
        errors.add(&t.errors);
        ok += t.ok;
        sent += t.sent;
        unattributed += t.unattributed;
        opened += t.connections_opened;
        starved += t.starved_connections;
        max_lag = max_lag.max(t.max_lag_us);
        warmup.ok += t.warmup_ok;
        warmup.errors += t.warmup_errors;
        busy.push((t.cpu_busy * 1000.0).round() / 10.0);
        unsent += t.unsent;
        idle_connect_errors += t.idle_connect_errors;
        for (w, tally) in &t.workers {
            let e = workers.entry(*w).or_default();
            e.0 += tally.requests;
            e.1 += tally.connections;
            worker_latency
                .entry(*w)
                .or_insert_with(new_histogram)
                .add(&tally.latency)
                .expect("same bounds");
        }
        for (sum, s) in timeline.iter_mut().zip(&t.timeline) {
            sum.due += s.due;
            sum.ok += s.ok;
            sum.errors.add(&s.errors);
            sum.idle_connect_errors += s.idle_connect_errors;
            if let Some(h) = &s.latency {
                sum.latency
                    .get_or_insert_with(new_histogram)
                    .add(h)
                    .expect("values within the lab's bounds");
            }
        }
        for (i, s) in t.series.iter().enumerate() {
            while series.len() <= i {
                series.push(SecondTally {
                    latency: new_histogram(),
                    ok: 0,
                    errors: 0,
                });
            }
            series[i].latency.add(&s.latency).expect("same bounds");
            series[i].ok += s.ok;
            series[i].errors += s.errors;
        }
    }
    let measured_s = cfg.duration.as_secs_f64();
    let per_s = |n: u64| {
        if measured_s > 0.0 {
            n as f64 / measured_s
        } else {
            0.0
        }
    };
    let mut r = LoadResult {
        schema: SCHEMA.into(),
        config: ConfigJson {
            target: cfg.target.to_string(),
            connections: cfg.connections,
            threads: cfg.threads,
            duration_s: cfg.duration.as_secs_f64(),
            warmup_s: cfg.warmup.as_secs_f64(),
            mode: cfg.mode,
            rate_rps: cfg.rate,
            rate_steps: cfg
                .rate_steps
                .iter()
                .map(|s| RateStepJson {
                    at_s: s.at.as_secs_f64(),
                    rate_rps: s.rate,
                })
                .collect(),
            arrivals: cfg.arrivals,
            mix: cfg
                .mix
                .shares()
                .into_iter()
                .map(|(path, share)| MixJson { path, share })
                .collect(),
            timeout_s: cfg.timeout.as_secs_f64(),
            seed: cfg.seed,
            requests_per_conn: cfg.recycle.requests,
            conn_lifetime_s: cfg.recycle.lifetime.map(|l| l.as_secs_f64()),
        },
        started_unix_ms,
        measured_s,
        ok,
        sent,
        unsent,
        errors,
        idle_connect_errors,
        throughput_rps: per_s(ok),
        target_rate_rps: cfg.offered_rate(),
        achieved_rate_rps: per_s(sent),
        max_schedule_lag_us: max_lag,
        latency: HistogramJson::from_histogram(&latency),
        service: HistogramJson::from_histogram(&service),
        connect: HistogramJson::from_histogram(&connect),
        ttfb: HistogramJson::from_histogram(&ttfb),
        workers: workers
            .into_iter()
            .map(|(worker, (requests, connections))| WorkerJson {
                worker,
                requests,
                connections,
                latency: Some(HistogramJson::from_histogram(
                    &worker_latency.remove(&worker).unwrap_or_else(new_histogram),
                )),
            })
            .collect(),
        unattributed,
        connections_opened: opened,
        starved_connections: starved,
        warmup,
        series: series
            .iter()
            .enumerate()
            .map(|(i, s)| second_json(i, s))
            .collect(),
        timeline_interval_s: Some(cfg.timeline_interval.as_secs_f64()),
        timeline: timeline
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let start = cfg.timeline_interval.saturating_mul(i as u32);
                slice_json(start.as_secs_f64(), s)
            })
            .collect(),
        generator: GeneratorJson {
            thread_busy_pct: busy,
        },
        warnings: Vec::new(),
        merged_from: Vec::new(),
    };
    r.warnings = warnings_for(&r);
    r
}

/// One second's JSON.
pub fn second_json(i: usize, s: &SecondTally) -> SecondJson {
    let h = HistogramJson::from_histogram(&s.latency);
    SecondJson {
        second: i,
        ok: s.ok,
        errors: s.errors,
        p99_us: h.p99_us,
        hdr_v2_base64: h.hdr_v2_base64,
    }
}

/// One timeline slice's JSON.
pub fn slice_json(start_s: f64, s: &SliceTally) -> SliceJson {
    let h = HistogramJson::from_histogram(s.latency.as_ref().unwrap_or(&new_histogram()));
    SliceJson {
        start_s,
        due: s.due,
        ok: s.ok,
        errors: s.errors.nonzero_fields(),
        idle_connect_errors: s.idle_connect_errors,
        p99_us: h.p99_us,
        hdr_v2_base64: h.hdr_v2_base64,
    }
}
