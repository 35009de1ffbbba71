//! `loadgen`: the lab's HTTP/1.1 load generator.
//!
//! A short pipeline: [`opts`] (command line) -> [`config::RunConfig`]
//! (checked) -> [`engine`] (one mio loop per thread) -> [`result`] (one
//! result type; JSON and a human summary). [`merge`] adds results of several
//! generators exactly.
#![deny(missing_docs)]

pub mod config;
pub mod duration;
pub mod engine;
pub mod errors;
pub mod histo;
pub mod merge;
pub mod mix;
pub mod opts;
pub mod response;
pub mod result;
pub mod rng;
pub mod schedule;
pub mod target;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use config::RunConfig;
use engine::{probe, run_thread, RunClock};
use result::LoadResult;

/// How long the first connection may take before the target is declared
/// unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the load described by `cfg` and returns the assembled result.
///
/// Fails (for a one-line message) if the target cannot be reached at all, or
/// if not a single request succeeded.
pub fn run(cfg: &RunConfig) -> Result<LoadResult, String> {
    probe(cfg.target, PROBE_TIMEOUT)?;
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let t0 = Instant::now();
    let clock = RunClock {
        t0,
        measure_start: t0 + cfg.warmup,
        end: t0 + cfg.warmup + cfg.duration,
    };
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = (0..cfg.threads)
            .map(|t| {
                std::thread::Builder::new()
                    .name(format!("loadgen-{t}"))
                    .spawn_scoped(s, move || run_thread(cfg, t, clock))
                    .map_err(|e| format!("cannot start a generator thread: {e}"))
            })
            .collect::<Result<_, _>>()?;
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| "a generator thread panicked".to_string())?
                    .map_err(|e| format!("generator: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()
    })?;
    let r = result::assemble(cfg, started_unix_ms, results);
    if r.ok == 0 && r.warmup.ok == 0 && (r.sent > 0 || r.errors.total() > 0) {
        let kinds: Vec<String> = r
            .errors
            .nonzero()
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        return Err(format!(
            "no request to {} succeeded ({}): is the server answering HTTP?",
            cfg.target,
            kinds.join(", ")
        ));
    }
    Ok(r)
}
