//! "Under the hood" in the bench report: what the latest traces
//! (`harness trace`) showed of each target's mechanism, and each twin beside
//! its real server field by field. The bench reads the traces when it
//! writes its summary; tracing never runs during a measured bench.

use serde::{Deserialize, Serialize};

/// The latest traces found beside a session.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Hood {
    /// Where they were looked for (the session's results directory).
    pub root: String,
    /// The newest trace of each target, in the catalogue's order.
    pub traces: Vec<HoodTrace>,
    /// Each twin pair whose two sides were both traced.
    pub pairs: Vec<HoodPair>,
}

/// One target's newest trace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HoodTrace {
    /// The target.
    pub target: String,
    /// The trace directory, relative to [`Hood::root`].
    pub dir: String,
    /// When it was taken, ms since the Unix epoch (0: not recorded).
    pub taken_unix_ms: u64,
    /// Worker processes traced.
    pub workers: usize,
    /// Roles whose accept returned a connection.
    pub who_accepts: Vec<String>,
    /// Accepts that returned EAGAIN, per connection (strace).
    pub accept_eagain_per_conn: f64,
    /// Descriptors passed with SCM_RIGHTS, messages per connection.
    pub scm_rights_messages_per_conn: f64,
    /// Processes the kernel woke per connection's arrival (tracepoints;
    /// `None` when the trace ran without them).
    pub woken_per_conn: Option<f64>,
    /// Of those, woken for nothing and asleep again inside the kernel.
    pub slept_again_per_conn: Option<f64>,
}

/// One field of a twin check.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HoodField {
    /// The field (`who calls accept`).
    pub field: String,
    /// The real server's value.
    pub reference: String,
    /// The twin's value.
    pub twin: String,
    /// `same`, `allowed` (a documented difference) or `different`.
    pub verdict: String,
    /// Why a documented difference is allowed.
    #[serde(default)]
    pub why: Option<String>,
}

/// A twin beside its real server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HoodPair {
    /// The real server (`node:rr`).
    pub reference: String,
    /// Its lab twin (`master-pass`).
    pub twin: String,
    /// Every compared field.
    pub fields: Vec<HoodField>,
}

impl HoodPair {
    /// Fields that differ without a documented reason.
    pub fn unexplained(&self) -> impl Iterator<Item = &HoodField> {
        self.fields.iter().filter(|f| f.verdict == "different")
    }
}
