//! Plain data, with no I/O: the names of the targets, the workloads and
//! fault scenarios, what a run records, a session and the summary. Every
//! other layer uses these types; they use nothing else of the harness.

pub mod environment;
pub mod faults;
pub mod hood;
pub mod kernel;
pub mod names;
pub mod record;
pub mod remote;
pub mod session;
pub mod summary;
pub mod time;
pub mod twins;
pub mod warnings;
pub mod workload;
