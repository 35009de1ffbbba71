//! What the kernel showed during a run, as recorded: TCP counters,
//! accept-queue depths and a process's CPU time and context switches
//! (read by `measure::kernel`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Counters from `/proc/net/netstat` (TcpExt) and `/proc/net/snmp` (Tcp OutRsts).
pub type Counters = BTreeMap<String, u64>;

/// Accept-queue depth of each listener, sampled during a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct QueueSamples {
    /// Sampling interval, ms.
    pub interval_ms: u64,
    /// Samples taken.
    pub samples: u64,
    /// Per listening socket (by inode): the deepest and the mean depth.
    pub listeners: Vec<ListenerQueue>,
}

/// One listener's accept-queue depth over the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ListenerQueue {
    /// Socket inode.
    pub inode: u64,
    /// Deepest queue seen.
    pub max: u64,
    /// Mean depth over the samples in which the listener existed.
    pub mean: f64,
}

/// A process's CPU time and context switches from `/proc`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcUsage {
    /// CPU time of all its threads, µs (`/proc/PID/task/*/schedstat`, or
    /// utime+stime in clock ticks where schedstat is missing).
    pub cpu_us: u64,
    /// Voluntary context switches, all threads (`/proc/PID/task/*/status`).
    pub voluntary_ctxt_switches: u64,
    /// Involuntary context switches.
    pub involuntary_ctxt_switches: u64,
}
