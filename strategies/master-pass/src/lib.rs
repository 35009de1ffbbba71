//! master-accept-and-pass: the master alone listens and accepts, then passes
//! each connection's descriptor to a pre-forked worker over that worker's
//! `AF_UNIX` control channel with `SCM_RIGHTS`, as Node.js cluster does in
//! its default round-robin mode (`SCHED_RR`).
//!
//! Five ways to run the master ([`Policy`]):
//! - `master-pass` ([`Policy::NodeRr`]): the twin of Node 20.20.2 (libuv
//!   1.46) cluster round-robin, as exact as we can make it. The listener is
//!   level-triggered in the master's epoll and the master accepts one
//!   connection per loop iteration (libuv >= 1.45 `uv__server_io`). A FIFO
//!   of pending connections and a FIFO of free workers; each worker holds at
//!   most one unacknowledged connection (stop-and-wait, Node's
//!   `RoundRobinHandle`). The worker answers each descriptor twice, as
//!   Node's does: `Received` on receipt (child_process's `NODE_HANDLE_ACK`)
//!   and then `Ack` (the cluster reply, `accepted`); the master closes its
//!   copy and sends that worker its next descriptor after the `Ack`, or
//!   re-routes the connection if the worker refused it (shutting down, or at
//!   `--max-conns`). A descriptor in flight to a worker that dies is not
//!   re-routed: its client is lost, as in Node (the master closes its copy
//!   when it hears the worker is gone, `connections_lost_in_flight`).
//! - `master-pass:reroute` ([`Policy::NodeRrReroute`]): the same round-robin
//!   with two improvements over Node: the master accepts until `EAGAIN` on
//!   each (edge-triggered) wakeup, as libuv <= 1.44 did, and a descriptor in
//!   flight to a worker that dies is routed to another worker
//!   (`connections_rerouted`), so no accepted client is lost. One ack per
//!   descriptor.
//! - `master-pass:rotate` ([`Policy::Rotate`]): blind rotation, no ack; the
//!   master closes its copy right after `sendmsg`.
//! - `master-pass:least-conn` ([`Policy::LeastConn`]): the worker with the
//!   fewest open connections (workers report each close); no ack.
//! - `master-pass:pipelined` ([`Policy::Pipelined`]): no stop-and-wait. The
//!   worker with the fewest outstanding connections (finished ones counted
//!   by the workers in shared memory, no message per close), a credit window
//!   per worker instead of one unacknowledged descriptor, several
//!   descriptors in one `sendmsg` when several go to the same worker
//!   (`master::pipelined`).
//!
//! A worker busy burning CPU does not read its channel, so with acks it does
//! not ack, so it is skipped.
#![deny(missing_docs)]

pub mod intake;
pub mod master;
pub mod scheduler;

pub use master::MasterPass;

/// How the master accepts and picks a worker for each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Node.js 20 cluster's round-robin, exact: one accept per wakeup
    /// (level-triggered), two replies per descriptor, no re-routing of a
    /// descriptor in flight to a dead worker.
    NodeRr,
    /// Node's round-robin with acks, improved: accept until `EAGAIN`, one
    /// reply per descriptor, re-route a dead worker's unacknowledged one.
    NodeRrReroute,
    /// Pure rotation, no acks.
    Rotate,
    /// Fewest open connections, no acks.
    LeastConn,
    /// Fewest outstanding connections under a credit window, descriptors
    /// batched per `sendmsg`, no acks and no close reports.
    Pipelined,
}

impl Policy {
    /// Whether workers acknowledge each descriptor and the master keeps its
    /// copy until then (Node's stop-and-wait round-robin).
    pub fn acks(self) -> bool {
        matches!(self, Policy::NodeRr | Policy::NodeRrReroute)
    }
}
