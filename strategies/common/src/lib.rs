//! What every prefork-lab strategy shares.
//!
//! - [`strategy`]: the two extension points, [`strategy::Strategy`] (the
//!   master's side of a strategy) and [`strategy::Intake`] (the worker's),
//!   and how to add a strategy, file by file.
//! - [`supervisor`]: the master process (fork, supervise, re-fork, rolling
//!   restart, stop).
//! - [`worker`]: the worker's mio event loop.
//! - [`intake`]: the level-triggered listener intake most strategies use.
//! - [`conn`], [`http`], [`work`]: serving a request, the same everywhere.
//! - [`config`]: the server's configuration and what a worker knows.
//! - [`channel`]: frames on the master/worker control channel.
//! - [`stats`]: per-worker counters in shared memory and the stats file.
//! - [`signals`], [`listen`]: signalfds, listening sockets.
//! - [`sys`]: every `unsafe` call into the operating system.
//!
//! The modules form layers; none uses a module that uses it back:
//! `sys` <- `channel`, `http`, `work`, `listen`, `signals`, `stats` <-
//! `config` <- `conn`, `strategy` <- `worker`, `intake` <- `supervisor`.
#![deny(missing_docs)]

pub mod channel;
pub mod config;
pub mod conn;
pub mod http;
pub mod intake;
pub mod listen;
pub mod signals;
pub mod stats;
pub mod strategy;
pub mod supervisor;
pub mod sys;
pub mod work;
pub mod worker;
