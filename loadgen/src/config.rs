//! A validated run configuration.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::mix::Mix;
use crate::schedule::{Arrivals, RatePlan, RateStep};

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
    /// Open loop at this many requests per second (before the first rate
    /// step, warm-up included); `None`: closed loop.
    pub rate: Option<f64>,
    /// Open loop: the rate changes at these offsets from the start of the
    /// measured window (strictly increasing, inside the duration).
    pub rate_steps: Vec<RateStep>,
    /// Spacing of open-loop arrivals.
    pub arrivals: Arrivals,
    /// Request targets.
    pub mix: Mix,
    /// A request not answered within this is a timeout error.
    pub timeout: Duration,
    /// Seed for arrivals and the path mix.
    pub seed: u64,
    /// Width of the timeline's slices (> 0).
    pub timeline_interval: Duration,
    /// Keep-alive: when a connection is closed and replaced.
    pub recycle: Recycle,
}

/// Keep-alive connections closed and replaced by new ones, as clients and
/// proxies recycle theirs (`--requests-per-conn`, `--conn-lifetime`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Recycle {
    /// After this many responses on one connection.
    pub requests: Option<u64>,
    /// After the first response past this age of the connection.
    pub lifetime: Option<Duration>,
}

impl Recycle {
    /// Whether connections are recycled at all.
    pub fn is_on(&self) -> bool {
        self.requests.is_some() || self.lifetime.is_some()
    }

    /// Whether a connection that has served `served` responses and is
    /// `age` old is done.
    pub fn done(&self, served: u64, age: Duration) -> bool {
        self.requests.is_some_and(|n| served >= n) || self.lifetime.is_some_and(|l| age >= l)
    }
}

impl RunConfig {
    /// Connections handled by thread `t` (the remainder goes to the first ones).
    pub fn connections_of(&self, t: usize) -> usize {
        self.connections / self.threads + usize::from(t < self.connections % self.threads)
    }

    /// Open loop: the whole run's rate, offsets from the start of the warm-up.
    pub fn rate_plan(&self) -> Option<RatePlan> {
        self.rate
            .map(|r| RatePlan::of_run(r, self.warmup, &self.rate_steps))
    }

    /// Open loop: requests due per second of the measured window, on average
    /// (without steps: `--rate`).
    pub fn offered_rate(&self) -> Option<f64> {
        let w = self.warmup.as_secs_f64();
        self.rate_plan()
            .map(|p| p.mean_rate(w, w + self.duration.as_secs_f64()))
    }

    /// Slices of the timeline: the measured duration cut into
    /// `timeline_interval`s, the last one possibly shorter.
    pub fn timeline_slices(&self) -> usize {
        let (d, i) = (
            self.duration.as_nanos(),
            self.timeline_interval.as_nanos().max(1),
        );
        d.div_ceil(i) as usize
    }

    /// The timeline slice of a request due `since_start` after the start of
    /// the measured window (clamped into the timeline).
    pub fn slice_of(&self, since_start: Duration) -> usize {
        let i = since_start.as_nanos() / self.timeline_interval.as_nanos().max(1);
        (i as usize).min(self.timeline_slices().saturating_sub(1))
    }
}

/// Most slices a timeline may have (a longer `--timeline-interval` is needed
/// beyond this).
pub const MAX_TIMELINE_SLICES: usize = 100_000;

/// The default width of the timeline's slices.
pub const DEFAULT_TIMELINE_INTERVAL: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(duration_ms: u64, interval_ms: u64) -> RunConfig {
        RunConfig {
            target: "127.0.0.1:1".parse().unwrap(),
            connections: 1,
            threads: 1,
            duration: Duration::from_millis(duration_ms),
            warmup: Duration::from_millis(500),
            mode: Mode::Keepalive,
            rate: Some(100.0),
            rate_steps: vec![RateStep {
                at: Duration::from_millis(500),
                rate: 300.0,
            }],
            arrivals: Arrivals::Uniform,
            mix: Mix::single("/"),
            timeout: Duration::from_secs(1),
            seed: 1,
            timeline_interval: Duration::from_millis(interval_ms),
            recycle: Recycle::default(),
        }
    }

    #[test]
    fn a_connection_is_done_at_its_request_count_or_its_age() {
        let never = Recycle::default();
        assert!(!never.is_on() && !never.done(u64::MAX, Duration::MAX));
        let n = Recycle {
            requests: Some(3),
            lifetime: None,
        };
        assert!(!n.done(2, Duration::MAX) && n.done(3, Duration::ZERO));
        let t = Recycle {
            requests: None,
            lifetime: Some(Duration::from_secs(1)),
        };
        assert!(!t.done(1_000_000, Duration::from_millis(999)));
        assert!(t.done(1, Duration::from_secs(1)));
    }

    #[test]
    fn slices_cover_the_duration_and_the_last_may_be_short() {
        assert_eq!(config(1000, 100).timeline_slices(), 10);
        assert_eq!(config(1050, 100).timeline_slices(), 11);
        assert_eq!(config(0, 100).timeline_slices(), 0);
        let c = config(1050, 100);
        assert_eq!(c.slice_of(Duration::ZERO), 0);
        assert_eq!(c.slice_of(Duration::from_millis(99)), 0);
        assert_eq!(c.slice_of(Duration::from_millis(100)), 1);
        assert_eq!(c.slice_of(Duration::from_millis(1049)), 10);
        assert_eq!(c.slice_of(Duration::from_millis(5000)), 10);
    }

    #[test]
    fn the_offered_rate_is_the_mean_over_the_measured_window() {
        // 100 req/s in the warm-up and the first 0.5 s, then 300 req/s.
        let c = config(1000, 100);
        assert!((c.offered_rate().unwrap() - 200.0).abs() < 1e-9);
        let mut closed = c.clone();
        closed.rate = None;
        assert_eq!(closed.offered_rate(), None);
    }
}
