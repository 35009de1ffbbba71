//! `session.json`: what a bench session was asked to do and where it ran.

use serde::{Deserialize, Serialize};

use crate::environment::Environment;
use crate::summary::{BenchConfigJson, Calibration};

/// Version tag of `session.json`.
pub const SESSION_SCHEMA: &str = "prefork-lab.harness.session.v1";

/// A bench session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    /// Always [`SESSION_SCHEMA`].
    pub schema: String,
    /// Start, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// Seed of the run order.
    pub seed: u64,
    /// What was asked for.
    pub config: BenchConfigJson,
    /// The machine.
    pub environment: Environment,
    /// Capacity per worker count.
    pub calibration: Vec<Calibration>,
    /// Runs planned.
    pub planned_runs: usize,
    /// Runs completed (equal to `planned_runs` unless interrupted or failed).
    pub completed_runs: usize,
    /// Why the session ended early, if it did.
    pub ended_early: Option<String>,
    /// Targets and workloads that could not run.
    #[serde(default)]
    pub skipped: Vec<crate::summary::Skipped>,
}

/// Reads a session directory's `session.json`.
pub fn read_session(dir: &std::path::Path) -> Result<Session, String> {
    let path = dir.join("session.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{} is not a results directory of the harness ({}: {e})",
            dir.display(),
            path.display()
        )
    })?;
    let s: Session = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if s.schema != SESSION_SCHEMA {
        return Err(format!(
            "{}: schema {:?}, expected {SESSION_SCHEMA:?}",
            path.display(),
            s.schema
        ));
    }
    Ok(s)
}

/// Reads every run file of a session directory, in run order.
pub fn read_runs(dir: &std::path::Path) -> Result<Vec<crate::record::RunRecord>, String> {
    let runs = dir.join("runs");
    let mut files: Vec<_> = std::fs::read_dir(&runs)
        .map_err(|e| format!("cannot read {}: {e}", runs.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            let r: crate::record::RunRecord =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
            if r.schema != crate::record::RUN_SCHEMA {
                return Err(format!(
                    "{}: schema {:?}, expected {:?}",
                    p.display(),
                    r.schema,
                    crate::record::RUN_SCHEMA
                ));
            }
            Ok(r)
        })
        .collect()
}
