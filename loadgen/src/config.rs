//! A validated run configuration.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::mix::Mix;
use crate::schedule::Arrivals;

/// How connections are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Keep each connection open for many requests (as wrk does).
    Keepalive,
    /// A new TCP connection for every request (as ab does).
    Close,
}

/// Everything one run needs, checked.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The server.
    pub target: SocketAddr,
    /// Concurrent connections (in `close` mode: concurrent requests).
    pub connections: usize,
    /// Generator threads, each its own event loop.
    pub threads: usize,
    /// Measured time.
    pub duration: Duration,
    /// Warm-up before the measured time (measured separately, discarded).
    pub warmup: Duration,
    /// keep-alive or a connection per request.
    pub mode: Mode,
    /// Open loop at this many requests per second; `None`: closed loop.
    pub rate: Option<f64>,
    /// Spacing of open-loop arrivals.
    pub arrivals: Arrivals,
    /// Request targets.
    pub mix: Mix,
    /// A request not answered within this is a timeout error.
    pub timeout: Duration,
    /// Seed for arrivals and the path mix.
    pub seed: u64,
}

impl RunConfig {
    /// Connections handled by thread `t` (the remainder goes to the first ones).
    pub fn connections_of(&self, t: usize) -> usize {
        self.connections / self.threads + usize::from(t < self.connections % self.threads)
    }
}
