//! `harness trace`: what the processes of a target do, system call by
//! system call, for one connection and for a burst. The bench answers "how
//! fast"; this answers "by what mechanism" (who calls accept, how a
//! descriptor travels to a worker, where it is registered) with evidence
//! anyone can regenerate. Tracing slows the traced processes a lot, so
//! nothing here is a timing: only the order and the arguments count.
//!
//! [`strace`] parses the tracer's lines into events, [`skeleton`] names
//! descriptors by role and keeps one connection's life, [`session`] starts
//! the target, attaches the tracer, sends the connections and stops
//! everything; [`holdings`] is what each role holds (listeners, epoll
//! registrations) read from /proc while the target runs, and
//! [`twin_check`] compares a reference server's skeleton with its twin's.
//! [`diagram`] draws the sequence diagram (`diagram.svg`) and [`page`]
//! writes the "Under the hood" page (`under-the-hood.md`).

pub mod client;
pub mod diagram;
pub mod doc;
pub mod herd;
pub mod holdings;
pub mod latest;
pub mod page;
pub mod session;
pub mod skeleton;
pub mod strace;
pub mod tracefs;
pub mod twin_check;
pub mod wakeups;
