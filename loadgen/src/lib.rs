//! `loadgen`: the lab's HTTP/1.1 load generator.
//!
//! A short pipeline: [`opts`] (command line) -> [`config::RunConfig`]
//! (checked) -> [`engine`] (one mio loop per thread, counting into
//! [`tally`]) -> [`result`] (one result type; JSON and a human summary).
//! [`merge`] adds results of several generators exactly.
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
pub mod tally;
pub mod target;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use config::RunConfig;
use engine::{run_thread, RunClock};
use result::LoadResult;

/// Runs the load described by `cfg` and returns the assembled result.
///
/// Fails (for a one-line message) if the target accepted no connection at
/// all (after [`engine::GIVE_UP_AFTER`], not the whole duration), or if not a
/// single request succeeded. There is no separate probe connection: it would
/// be a connection the server counts and the results do not.
pub fn run(cfg: &RunConfig) -> Result<LoadResult, String> {
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
    let gave_up = results.iter().all(|t| t.gave_up);
    let r = result::assemble(cfg, started_unix_ms, results);
    if gave_up {
        let mut kinds: Vec<String> = r
            .errors
            .nonzero()
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        if r.warmup.errors > 0 {
            kinds.push(format!("{} failed in warm-up", r.warmup.errors));
        }
        return Err(format!(
            "{} accepted no connection within {:?} ({}): is the server running and listening there?",
            cfg.target,
            engine::GIVE_UP_AFTER,
            kinds.join(", ")
        ));
    }
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
