//! `harness`: the lab's experiment runner.
//!
//! Measurement, analysis and reporting are kept apart (criterion's habit):
//! [`runner`] starts `lab-server` and `loadgen` as processes ([`procs`]),
//! reads what the kernel shows ([`kernel`]) and writes each run's raw data
//! ([`record`]) as soon as it ends; [`analysis`] is pure functions from those
//! files to the [`summary`]; [`report`] only reads the summary. The harness
//! never imports a strategy's internals: it talks to servers through a
//! process, a port, the ready line and the stats file.
#![deny(missing_docs)]

pub mod analysis;
pub mod environment;
pub mod kernel;
pub mod matrix;
pub mod opts;
pub mod procs;
pub mod record;
pub mod report;
pub mod results;
pub mod runner;
pub mod schema;
pub mod session;
pub mod summary;
pub mod targets;
pub mod warnings;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use opts::{Cli, Command};

/// Exit code of an interrupted session (128 + SIGINT), as shells use.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Runs the command; `Err((code, message))` for a one-line error.
pub fn run(cli: Cli) -> Result<(), (i32, String)> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| (1, format!("cannot handle signals: {e}")))?;
    }
    let cfg = match &cli.command {
        Command::Bench(o) => o.config().map_err(|e| (2, e))?,
        Command::Run(o) => o.config().map_err(|e| (2, e))?,
        Command::Report { dir } => {
            let session = session::read_session(dir).map_err(|e| (1, e))?;
            let runs = session::read_runs(dir).map_err(|e| (1, e))?;
            if runs.is_empty() {
                return Err((
                    1,
                    format!("{} holds no run files: nothing to report", dir.display()),
                ));
            }
            runner::finish(dir, &session, &runs).map_err(|e| (1, e))?;
            println!("report: {}", dir.join("report.md").display());
            return Ok(());
        }
    };
    let outcome = runner::bench(&cfg, &stop).map_err(|e| (1, e))?;
    for w in &outcome.summary.warnings {
        eprintln!("warning: {}", w.message());
    }
    println!("report: {}", outcome.dir.join("report.md").display());
    match outcome.ended_early {
        Some(why) if stop.load(std::sync::atomic::Ordering::Relaxed) => Err((
            EXIT_INTERRUPTED,
            format!(
                "{why}; the partial results and report are in {}",
                outcome.dir.display()
            ),
        )),
        Some(why) => Err((
            1,
            format!("{why}; the results so far are in {}", outcome.dir.display()),
        )),
        None => Ok(()),
    }
}
