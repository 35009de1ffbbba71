//! The result of a run: one type, written as JSON (`--json`) and summarised
//! for people. Every field carries its unit in its name.
//!
//! Schema `prefork-lab.loadgen.v2` adds to v1 (which [`read_json`] still
//! reads, the new fields empty): `config.rate_steps`, `unsent`,
//! `idle_connect_errors`, `timeline_interval_s`, `timeline` and each worker's
//! `latency`.
//!
//! Accounting of the measured requests (those due, closed loop: sent, in the
//! measured window), exact:
//!
//! - `sum(timeline[].due) == sent + unsent`: a request is due in one slice;
//!   it is sent, or it is still waiting for a connection when the run ends
//!   (`unsent`, also an `unfinished` error).
//! - `sum(timeline[].ok) == ok` and `sum(timeline[].errors) ==
//!   errors.total()`; per slice, `ok + errors == due + idle_connect_errors`:
//!   every due request ends as ok or as one error (`unfinished` if it was
//!   still queued or in flight at the end), and a keep-alive (re)connect that
//!   failed with no request on it is an error too, in the slice of when it
//!   failed.
//! - Each slice's latency histogram holds its `ok` requests; each worker's
//!   its successful responses (its `requests` also count non-2xx ones).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Mode;
use crate::errors::ErrorCounts;
use crate::histo::HistogramJson;
use crate::schedule::Arrivals;

mod assemble;
mod io;
mod summary;

pub use assemble::{assemble, second_json, slice_json};
pub use io::{check_output, read_json, write_json, Output};
pub use summary::{fmt_us, summary};

/// Version tag of the JSON layout written.
pub const SCHEMA: &str = "prefork-lab.loadgen.v2";
/// The previous layout, still read (its missing fields take their defaults).
pub const SCHEMA_V1: &str = "prefork-lab.loadgen.v1";

/// A whole run (or several merged).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadResult {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// What was asked for.
    pub config: ConfigJson,
    /// Wall-clock start, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// Length of the measured window, s.
    pub measured_s: f64,
    /// Successful measured requests.
    pub ok: u64,
    /// Measured requests sent.
    pub sent: u64,
    /// Measured requests due but never sent (the run ended while they waited
    /// for a connection); each is also an `unfinished` error. 0 in v1 files.
    #[serde(default)]
    pub unsent: u64,
    /// Measured errors by kind.
    pub errors: ErrorCounts,
    /// Of `errors`: keep-alive (re)connects that failed with no request on
    /// them (kinds `refused`, `connect_other`). 0 in v1 files.
    #[serde(default)]
    pub idle_connect_errors: u64,
    /// Successful requests per second over the measured window.
    pub throughput_rps: f64,
    /// Open loop: the offered rate, requests due in the measured window per
    /// measured second (the mean of the rate schedule over the window: with
    /// no `--rate-step`, `--rate`); closed loop: null.
    pub target_rate_rps: Option<f64>,
    /// Requests sent per second over the measured window (`sent` / measured
    /// seconds).
    pub achieved_rate_rps: f64,
    /// Largest delay between a request's due time and its send, µs.
    pub max_schedule_lag_us: u64,
    /// Latency from the due time (closed loop: from the send), µs.
    pub latency: HistogramJson,
    /// Service time from the actual send, µs.
    pub service: HistogramJson,
    /// Connect time, µs.
    pub connect: HistogramJson,
    /// Time to first byte from the send (`close` mode), µs.
    pub ttfb: HistogramJson,
    /// Requests and connections per worker (`X-Worker`), by pid.
    pub workers: Vec<WorkerJson>,
    /// Measured responses without an `X-Worker` header.
    pub unattributed: u64,
    /// TCP connections opened.
    pub connections_opened: u64,
    /// Connections whose request, when the measured window ended, had
    /// waited more than half of it without a byte of response: clients the
    /// server left waiting (classic pre-fork under keep-alive serves one connection per
    /// worker; the rest wait in its accept queue). Their requests may still
    /// be answered after the window, so they need not be errors. 0 in files
    /// written before it existed.
    #[serde(default)]
    pub starved_connections: u64,
    /// Discarded warm-up: successful requests and errors.
    pub warmup: WarmupJson,
    /// One entry per second of the measured window.
    pub series: Vec<SecondJson>,
    /// Width of the timeline's slices, s (null in v1 files).
    #[serde(default)]
    pub timeline_interval_s: Option<f64>,
    /// The measured window in slices of `timeline_interval_s` (the last may
    /// be shorter), every slice present; each request is in the slice of its
    /// due time (closed loop: its send time). Empty in v1 files.
    #[serde(default)]
    pub timeline: Vec<SliceJson>,
    /// The generator's own threads.
    pub generator: GeneratorJson,
    /// Problems with the run, with advice.
    pub warnings: Vec<Warning>,
    /// For merged results: the files merged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
}

/// The run's configuration as recorded.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ConfigJson {
    /// Target address.
    pub target: String,
    /// Connections (close mode: concurrent requests).
    pub connections: usize,
    /// Generator threads.
    pub threads: usize,
    /// Measured duration, s.
    pub duration_s: f64,
    /// Warm-up, s.
    pub warmup_s: f64,
    /// keepalive or close.
    pub mode: Mode,
    /// Open-loop rate (before the first rate step, warm-up included), or
    /// null for closed loop.
    pub rate_rps: Option<f64>,
    /// Open loop: from `at_s` into the measured window on, the rate is
    /// `rate_rps` (`--rate-step`). Empty without steps (and in v1 files).
    #[serde(default)]
    pub rate_steps: Vec<RateStepJson>,
    /// Arrival spacing (open loop).
    pub arrivals: Arrivals,
    /// Request targets and their shares.
    pub mix: Vec<MixJson>,
    /// Request timeout, s.
    pub timeout_s: f64,
    /// Random seed.
    pub seed: u64,
    /// Keep-alive connections closed after this many responses
    /// (`--requests-per-conn`); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_conn: Option<u64>,
    /// Keep-alive connections closed after their first response past this
    /// age, s (`--conn-lifetime`); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn_lifetime_s: Option<f64>,
}

/// One `--rate-step`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RateStepJson {
    /// Offset from the start of the measured window, s.
    pub at_s: f64,
    /// Requests per second from then on.
    pub rate_rps: f64,
}

/// One request target and its share.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MixJson {
    /// Request target.
    pub path: String,
    /// Share of requests, 0..1.
    pub share: f64,
}

/// One worker's tally.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WorkerJson {
    /// The `X-Worker` value (a pid).
    pub worker: u32,
    /// Measured responses from it (non-2xx included).
    pub requests: u64,
    /// Connections it answered on.
    pub connections: u64,
    /// Latency (from the due time, like `latency`) of its successful
    /// measured responses, µs; null in v1 files.
    #[serde(default)]
    pub latency: Option<HistogramJson>,
}

/// The warm-up, counted and discarded.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WarmupJson {
    /// Successful warm-up requests.
    pub ok: u64,
    /// Warm-up errors.
    pub errors: u64,
}

/// One second of the measured window.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SecondJson {
    /// Seconds since the start of the measured window.
    pub second: usize,
    /// Successful requests completed in it.
    pub ok: u64,
    /// Errors in it.
    pub errors: u64,
    /// 99th percentile latency of its successful requests, µs.
    pub p99_us: u64,
    /// Its latency histogram (base64 HdrHistogram V2), for exact merges.
    pub hdr_v2_base64: String,
}

/// One slice of the timeline: the measured requests due in it (closed loop:
/// sent in it) and what became of them, whenever that was.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SliceJson {
    /// Start of the slice, s from the start of the measured window.
    pub start_s: f64,
    /// Requests due in it.
    pub due: u64,
    /// Of those, successful.
    pub ok: u64,
    /// Of those, failed, by kind (the names of `errors`; only kinds with a
    /// count); plus the `idle_connect_errors` that happened in the slice.
    pub errors: BTreeMap<String, u64>,
    /// Keep-alive (re)connects with no request on them that failed in the
    /// slice (counted in `errors` too).
    pub idle_connect_errors: u64,
    /// 99th percentile latency of its successful requests, µs (0 if none).
    pub p99_us: u64,
    /// Their latency histogram (base64 HdrHistogram V2, the lab's bounds).
    pub hdr_v2_base64: String,
}

impl SliceJson {
    /// All its errors.
    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The generator's threads.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GeneratorJson {
    /// Per thread: CPU time over wall time, percent.
    pub thread_busy_pct: Vec<f64>,
}

/// A problem with the run, with what to do about it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// The open-loop schedule was not kept: fewer requests were sent than due.
    BehindSchedule {
        /// Rate asked for.
        target_rps: f64,
        /// Rate achieved.
        achieved_rps: f64,
    },
    /// Requests went out late by more than 10% of the run.
    LargeScheduleLag {
        /// Largest lag, µs.
        max_lag_us: u64,
        /// Length of the run, µs.
        run_us: u64,
    },
    /// A generator thread was busy nearly all the time: the generator, not
    /// the server, may have set the pace.
    GeneratorSaturated {
        /// Thread index.
        thread: usize,
        /// Percent busy.
        busy_pct: f64,
    },
    /// Requests failed.
    Errors {
        /// Total errors.
        total: u64,
        /// Errors by kind.
        by_kind: BTreeMap<String, u64>,
    },
    /// Requests waited more than half the measured window for their
    /// response (see [`LoadResult::starved_connections`]).
    Starved {
        /// How many.
        connections: u64,
        /// Of how many (`--connections`).
        of: usize,
    },
}

impl Warning {
    /// One line for people, with advice.
    pub fn message(&self) -> String {
        match self {
            Warning::BehindSchedule { target_rps, achieved_rps } => format!(
                "the schedule was not kept: {achieved_rps:.0} req/s sent of {target_rps:.0} asked; add --threads or --connections, or lower --rate"
            ),
            Warning::LargeScheduleLag { max_lag_us, run_us } => format!(
                "requests went out up to {:.1} ms late ({:.0}% of the run); the latency figures include that wait, add --connections if the server was idle",
                *max_lag_us as f64 / 1e3,
                *max_lag_us as f64 * 100.0 / (*run_us).max(1) as f64
            ),
            Warning::GeneratorSaturated { thread, busy_pct } => format!(
                "generator thread {thread} was {busy_pct:.0}% busy: the generator may be the bottleneck; add --threads or run it on more CPUs"
            ),
            Warning::Errors { total, by_kind } => {
                let kinds: Vec<String> = by_kind.iter().map(|(k, v)| format!("{k} {v}")).collect();
                format!("{total} requests failed ({}); see `errors` in the JSON", kinds.join(", "))
            }
            Warning::Starved { connections, of } => format!(
                "{connections} of {of} connections had waited more than half the measured window for a response when it ended: the server serves fewer connections at once than were opened (classic pre-fork: one per worker) and left the rest waiting; its figures are those of the clients it served"
            ),
        }
    }
}

/// Thresholds for warnings.
pub const BEHIND_SCHEDULE_RATIO: f64 = 0.95;
/// Lag above this share of the run is a warning.
pub const LAG_SHARE: f64 = 0.10;
/// A thread busier than this is saturated.
pub const SATURATED: f64 = 0.90;

/// Warnings that follow from a result's figures.
pub fn warnings_for(r: &LoadResult) -> Vec<Warning> {
    let mut w = Vec::new();
    if let Some(target) = r.target_rate_rps {
        if r.measured_s > 0.0 && r.achieved_rate_rps < BEHIND_SCHEDULE_RATIO * target {
            w.push(Warning::BehindSchedule {
                target_rps: target,
                achieved_rps: r.achieved_rate_rps,
            });
        }
        let run_us = (r.measured_s * 1e6) as u64;
        if run_us > 0 && r.max_schedule_lag_us as f64 > LAG_SHARE * run_us as f64 {
            w.push(Warning::LargeScheduleLag {
                max_lag_us: r.max_schedule_lag_us,
                run_us,
            });
        }
    }
    for (thread, busy) in r.generator.thread_busy_pct.iter().enumerate() {
        if *busy >= SATURATED * 100.0 {
            w.push(Warning::GeneratorSaturated {
                thread,
                busy_pct: *busy,
            });
        }
    }
    if r.starved_connections > 0 {
        w.push(Warning::Starved {
            connections: r.starved_connections,
            of: r.config.connections,
        });
    }
    let total = r.errors.total();
    if total > 0 {
        let by_kind = r
            .errors
            .nonzero()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        w.push(Warning::Errors { total, by_kind });
    }
    w
}
