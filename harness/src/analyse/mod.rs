//! Pure analysis: run records in, the summary's figures out. Nothing here
//! runs a process, reads a file or the clock.

pub mod compare;
pub mod faults;
pub mod findings;
pub mod stats;
pub mod steadiness;
pub mod steady;

use crate::model::record::RunRecord;
use crate::model::session::Session;
use crate::model::summary::{Summary, SCHEMA};
use crate::model::warnings::Warning;

/// The summary of a session's runs, made at `created_unix_ms` (pure: the
/// caller reads the clock).
pub fn summarize(
    session: &Session,
    records: &[RunRecord],
    created_unix_ms: u64,
) -> Result<Summary, String> {
    // The fault scenarios get their own analysis ("Under faults"), not the
    // steady-load cells.
    let named = |fault: bool| -> Vec<String> {
        session
            .config
            .workloads
            .iter()
            .filter(|w| w.fault.is_some() == fault)
            .map(|w| w.name.clone())
            .collect()
    };
    let (scenarios, workload_names) = (named(true), named(false));
    let kind = |w: &str| -> String {
        session
            .config
            .workloads
            .iter()
            .find(|x| x.name == w)
            .map_or_else(String::new, |x| x.fairness.clone())
    };
    // Each workload's rate is a share of the capacity measured with its
    // own kind of connection.
    let mode = |w: &str| -> String {
        session
            .config
            .workloads
            .iter()
            .find(|x| x.name == w)
            .map_or_else(|| "keepalive".into(), |x| x.calibration.clone())
    };
    let capacity = |target: &str, workload: &str, workers: usize| -> Option<f64> {
        let mode = mode(workload);
        session
            .calibration
            .iter()
            .find(|c| c.target == target && c.workers == workers && c.mode == mode)
            .map(|c| c.capacity_rps)
    };
    let cells = steady::cells(
        records,
        &session.config.targets,
        &workload_names,
        &kind,
        &capacity,
    )?;
    let faults = faults::fault_cells(records, &session.config.targets, &scenarios)?;
    let mut warnings = Vec::new();
    let max_workers = session.config.workers.iter().copied().max().unwrap_or(1);
    if session.environment.cpus_allowed.len() <= max_workers {
        warnings.push(Warning::SharedCpus {
            cpus: session.environment.cpus_allowed.len(),
            workers: max_workers,
        });
    }
    warnings.extend(steady::cell_warnings(&cells, records));
    if records.len() < session.planned_runs {
        warnings.push(Warning::Incomplete {
            completed: records.len(),
            planned: session.planned_runs,
            why: session.ended_early.clone().unwrap_or_else(|| {
                "it stopped without saying why: the harness was probably killed".into()
            }),
        });
    }
    Ok(Summary {
        schema: SCHEMA.into(),
        created_unix_ms,
        session_started_unix_ms: Some(session.started_unix_ms),
        environment: session.environment.clone(),
        config: session.config.clone(),
        calibration: session.calibration.clone(),
        winners: steady::winners(&cells),
        findings: findings::findings(&cells),
        comparisons: findings::comparisons(&cells),
        skipped: session.skipped.clone(),
        fault_findings: faults::fault_findings(&faults),
        faults,
        cells,
        warnings,
        // The run layer adds what the latest traces showed.
        under_the_hood: None,
    })
}
