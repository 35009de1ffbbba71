//! `harness`: the lab's experiment runner.
//!
//! Measurement, analysis and reporting are kept apart (criterion's habit),
//! in layers that only depend downward:
//! [`model`] is plain data (names, workloads, run records, the summary);
//! [`store`] reads and writes a results directory; [`measure`] starts
//! `lab-server`, the reference servers and `loadgen` as processes and reads
//! what the kernel shows; [`analyse`] is pure functions from run records to
//! the summary; [`report`] only reads the summary; [`run`] and [`regress`]
//! drive a session; [`trace`] shows one target's system calls (mechanism,
//! never timing); [`cli`] parses the command line. The harness never
//! imports a strategy's internals: it talks to servers through a process, a
//! port, the ready line and the stats file.
#![deny(missing_docs)]

pub mod analyse;
pub mod cli;
pub mod measure;
pub mod model;
pub mod regress;
pub mod report;
pub mod run;
pub mod store;
pub mod trace;
