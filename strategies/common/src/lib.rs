//! What every prefork-lab strategy shares.
//!
//! - [`supervisor`]: the master process (fork, supervise, re-fork, stop).
//! - [`worker`]: the worker's mio event loop and the [`worker::Intake`] trait
//!   through which a strategy brings connections in.
//! - [`intake`]: the level-triggered listener intake most strategies use.
//! - [`conn`], [`http`], [`work`]: serving a request, the same everywhere.
//! - [`channel`]: frames on the master/worker control channel.
//! - [`stats`]: per-worker counters in shared memory and the stats file.
//! - [`sys`]: every `unsafe` call into the operating system.
#![deny(missing_docs)]

pub mod channel;
pub mod conn;
pub mod http;
pub mod intake;
pub mod listen;
pub mod signals;
pub mod stats;
pub mod supervisor;
pub mod sys;
pub mod work;
pub mod worker;
