//! Who the kernel woke for each connection, from scheduler and system-call
//! tracepoints (`herd.json`). strace sees a wakeup only when it returns to
//! user space; a worker woken by a connection's arrival and put back to
//! sleep inside the kernel (its `epoll_wait` found the event already
//! taken) shows only as `sched:sched_wakeup` followed by `sched:sched_switch`
//! with no system call returning in between. That is the thundering herd
//! strace cannot see.

use serde::{Deserialize, Serialize};

/// What happened to one role when connections arrived.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoleWake {
    /// `master`, `worker-0`.
    pub role: String,
    /// Times one of its threads was woken by a connection's arrival
    /// (a `sched_wakeup` while the client's `connect` ran, the waker being
    /// the client's thread or the kernel on its behalf).
    pub woken: usize,
    /// Of those, times its wait (`epoll_wait`, `poll`, `accept`) then
    /// returned to user space.
    pub returned: usize,
    /// Of those, times it went back to sleep inside the kernel without a
    /// system call returning: woken for nothing, invisible to strace.
    pub slept_again: usize,
    /// Accepts that returned a connection.
    pub accepts: usize,
    /// Accepts that returned EAGAIN.
    pub accept_eagain: usize,
}

/// One sequential connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnWake {
    /// The client's address, as in skeleton.json.
    pub client: String,
    /// Roles woken by its arrival, in the order they were woken.
    pub woken: Vec<String>,
    /// Roles woken by its arrival that went back to sleep in the kernel.
    pub slept_again: Vec<String>,
    /// The role whose accept returned it (`master` for master-pass).
    pub accepted_by: Option<String>,
    /// Roles whose accept returned EAGAIN while it arrived.
    pub eagain: Vec<String>,
}

/// `herd.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Herd {
    /// The target's name.
    pub target: String,
    /// Worker processes.
    pub workers: usize,
    /// The tracepoints read (tracefs instance of our own).
    pub tracepoints: Vec<String>,
    /// Per sequential connection.
    pub sequential: Vec<ConnWake>,
    /// Per role, summed over the sequential connections.
    pub sequential_roles: Vec<RoleWake>,
    /// Roles woken per sequential connection's arrival (1 = no herd).
    pub woken_per_conn: f64,
    /// Of those, roles that went back to sleep in the kernel, per connection.
    pub slept_again_per_conn: f64,
    /// Concurrent connections of the burst.
    pub burst: usize,
    /// Per role, over the burst.
    pub burst_roles: Vec<RoleWake>,
    /// Arrival wakeups per burst connection.
    pub burst_woken_per_conn: f64,
}
