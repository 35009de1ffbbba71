//! `session.json`: what a bench session was asked to do and where it ran.

use serde::{Deserialize, Serialize};

use crate::model::environment::Environment;
use crate::model::summary::{BenchConfigJson, Calibration};

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
    pub skipped: Vec<crate::model::summary::Skipped>,
}
