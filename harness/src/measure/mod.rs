//! Measuring: the processes the harness starts (servers, load generators,
//! the guard that outlives nothing), the targets, what the kernel shows,
//! fault injection and remote hosts. Uses [`crate::model`] only.

pub mod environment;
pub mod faults;
pub mod guard;
pub mod kernel;
pub mod noise;
pub mod procs;
pub mod remote;
pub mod sockdiag;
pub mod targets;
