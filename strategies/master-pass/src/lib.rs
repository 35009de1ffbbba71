//! master-accept-and-pass: the master alone listens and accepts, then passes
//! each connection's descriptor to a pre-forked worker over that worker's
//! `AF_UNIX` control channel with `SCM_RIGHTS`, as Node.js cluster does in
//! its default round-robin mode (`SCHED_RR`).
//!
//! Three ways to pick the worker ([`Policy`]):
//! - `master-pass` ([`Policy::NodeRr`]): Node's `RoundRobinHandle`. A FIFO of
//!   pending connections and a FIFO of free workers; each worker holds at most
//!   one unacknowledged connection (stop-and-wait). The worker acks on
//!   receipt, before it serves the request; the master closes its copy of the
//!   descriptor after the ack, or re-routes the connection if the worker
//!   refused it (shutting down) or died first. A worker busy burning CPU does
//!   not read its channel, so it does not ack, so it is skipped.
//! - `master-pass:rotate` ([`Policy::Rotate`]): blind rotation, no ack; the
//!   master closes its copy right after `sendmsg`.
//! - `master-pass:least-conn` ([`Policy::LeastConn`]): the worker with the
//!   fewest open connections (workers report each close); no ack.
#![deny(missing_docs)]

pub mod intake;
pub mod master;
pub mod scheduler;

pub use master::MasterPass;

/// How the master picks a worker for each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Node.js cluster's round-robin with acks.
    NodeRr,
    /// Pure rotation, no acks.
    Rotate,
    /// Fewest open connections, no acks.
    LeastConn,
}
