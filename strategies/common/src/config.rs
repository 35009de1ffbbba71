//! The server's configuration: what the command line gave the master
//! ([`ServerConfig`]) and what one worker knows about itself ([`WorkerEnv`]).
//!
//! Plain data: every other module may read it, and it uses none of them but
//! [`crate::stats`] (the shared counters a worker writes and the stats file).

use std::net::SocketAddr;
use std::time::Duration;

use crate::stats::{Shared, StatsSink, WorkerCounters};

/// The server's configuration, as the command line gave it.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Strategy name (for the ready line and the stats file).
    pub strategy: String,
    /// Number of worker processes.
    pub workers: usize,
    /// Address to listen on (port 0: the kernel picks one).
    pub listen: SocketAddr,
    /// `listen()` backlog.
    pub backlog: i32,
    /// Where to write the stats file at shutdown.
    pub stats: Option<StatsSink>,
    /// Extra CPU per request, µs (test-only slowdown; 0 normally).
    pub injected_cpu_us: u64,
    /// `--header-timeout` and `--keepalive-timeout`.
    pub timeouts: Timeouts,
    /// `--max-conns`: connections open at once per worker.
    pub max_conns: usize,
}

/// What a worker knows about itself.
#[derive(Clone, Copy)]
pub struct WorkerEnv {
    /// Worker index, 0..workers.
    pub slot: usize,
    /// This process's pid (the `X-Worker` header).
    pub pid: u32,
    /// This worker's counters in shared memory.
    pub counters: &'static WorkerCounters,
    /// Shared memory of the whole server (for the accept mutex).
    pub shared: Shared,
    /// Extra CPU burnt per request, µs: a deliberate slowdown for testing and
    /// calibrating regression checks (`--test-only-inject-cpu-us`); 0 normally.
    pub injected_cpu_us: u64,
    /// `--header-timeout` and `--keepalive-timeout`.
    pub timeouts: Timeouts,
    /// `--max-conns`: connections open at once in this worker.
    pub max_conns: usize,
}

/// Time limits of a connection (the `conn` module says how they apply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// A request's head must be complete this long after its first byte (a
    /// fresh connection's first request: after the accept).
    pub header: Duration,
    /// An idle keep-alive connection is closed after this long.
    pub keepalive: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(10),
            keepalive: Duration::from_secs(5),
        }
    }
}
