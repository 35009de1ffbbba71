//! Typed warnings about a session, each with advice. Never silently dropped:
//! they are printed, and stored in `summary.json` and the report.

use serde::{Deserialize, Serialize};

/// A problem with the session's numbers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// Rounds of one cell disagree by more than 10% in throughput.
    RoundsDisagree {
        /// Target.
        target: String,
        /// Workload.
        workload: String,
        /// Workers.
        workers: usize,
        /// (max - min) / median, percent.
        spread_pct: f64,
    },
    /// The load generator said it was saturated or behind its schedule.
    GeneratorSaturated {
        /// Target.
        target: String,
        /// Workload.
        workload: String,
        /// Workers.
        workers: usize,
        /// What loadgen said.
        detail: String,
    },
    /// Fewer CPUs than workers plus the load generator: they share CPUs.
    SharedCpus {
        /// CPUs available.
        cpus: usize,
        /// Most workers in one run.
        workers: usize,
    },
    /// Requests failed.
    Errors {
        /// Target.
        target: String,
        /// Workload.
        workload: String,
        /// Workers.
        workers: usize,
        /// Errors over all rounds.
        errors: u64,
        /// Errors by kind, as loadgen named them.
        detail: String,
    },
    /// Runs whose measured window was not steady: kept and shown, but left
    /// out of winners and findings.
    NotSteady {
        /// Target.
        target: String,
        /// Workload.
        workload: String,
        /// Workers.
        workers: usize,
        /// The rounds that were not steady.
        rounds: Vec<usize>,
        /// Why (the first such round's reason).
        why: String,
    },
    /// Something else used the CPUs during a run: steal by the hypervisor
    /// or processes that are not part of the run.
    Noise {
        /// Target.
        target: String,
        /// Workload.
        workload: String,
        /// Workers.
        workers: usize,
        /// Round.
        round: usize,
        /// Steal, percent of the machine's CPU time.
        steal_pct: f64,
        /// Other processes, percent of the machine's CPU time.
        other_cpu_pct: f64,
        /// The busiest of them.
        detail: String,
    },
    /// The session ended before every planned run did (interrupted, a run
    /// failed, or the harness was killed): the numbers cover what ran.
    Incomplete {
        /// Runs with a run file.
        completed: usize,
        /// Runs planned.
        planned: usize,
        /// Why, as far as the session knows.
        why: String,
    },
}

impl Warning {
    /// One line for people, with advice.
    pub fn message(&self) -> String {
        match self {
            Warning::RoundsDisagree { target, workload, workers, spread_pct } => format!(
                "{target} / {workload} / {workers} workers: rounds disagree by {spread_pct:.0}% in throughput; the machine is noisy: add --rounds or close other programs"
            ),
            Warning::GeneratorSaturated { target, workload, workers, detail } => format!(
                "{target} / {workload} / {workers} workers: {detail}; the load generator, not the server, may have set the pace"
            ),
            Warning::SharedCpus { cpus, workers } => format!(
                "only {cpus} CPUs for up to {workers} workers plus the load generator: server and generator share CPUs and compete; run on a machine with at least {} CPUs for clean numbers",
                workers + 1
            ),
            Warning::Errors { target, workload, workers, errors, detail } => format!(
                "{target} / {workload} / {workers} workers: {errors} requests failed ({detail}); see the run files{}",
                if detail.contains("timeout") {
                    "; a timed-out request got no answer at all, so the cell counts for no winner"
                } else {
                    ""
                }
            ),
            Warning::NotSteady { target, workload, workers, rounds, why } => format!(
                "{target} / {workload} / {workers} workers: not steady in round{} {} ({why}); those rounds are shown but left out of winners and findings: give the target a longer --warmup-cap, or look at its timeline in the run file",
                if rounds.len() > 1 { "s" } else { "" },
                rounds.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")
            ),
            Warning::Noise { target, workload, workers, round, steal_pct, other_cpu_pct, detail } => {
                let others = if detail.is_empty() {
                    format!("{:.1}% went to other processes", other_cpu_pct.max(0.0))
                } else {
                    format!("{:.1}% went to other processes ({detail})", other_cpu_pct.max(0.0))
                };
                format!(
                    "{target} / {workload} / {workers} workers, round {round}: {:.1}% of the machine's CPU time was stolen by the hypervisor and {others}; its figures are less reliable: stop those processes, or use a quieter machine (steal is the host's doing)",
                    steal_pct.max(0.0)
                )
            }
            Warning::Incomplete { completed, planned, why } => format!(
                "the session is incomplete: {completed} of {planned} runs ({why}); cells may have fewer rounds than configured, and some none: run the bench again for the whole matrix"
            ),
        }
    }
}
