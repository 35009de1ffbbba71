//! The machine a session ran on, as recorded with every result (read by
//! `measure::environment`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The environment of a session.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Environment {
    /// `uname -r`.
    pub kernel: String,
    /// CPUs this process may use.
    pub cpus_allowed: Vec<usize>,
    /// CPUs online.
    pub cpus_online: usize,
    /// CPU model name.
    pub cpu_model: String,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Sysctl name -> value (missing ones are absent).
    pub sysctls: BTreeMap<String, String>,
    /// `git rev-parse HEAD` of the tree, with "-dirty" if it has changes.
    pub git_commit: String,
    /// rustc version the binaries were built with.
    pub rustc: String,
    /// Versions of the tools used (nginx, node, ...), where installed.
    pub tools: BTreeMap<String, String>,
    /// Host name.
    pub hostname: String,
}
