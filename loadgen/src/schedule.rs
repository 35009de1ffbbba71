//! When each request is due, in open-loop mode.
//!
//! Request i of the whole run is due at `t0 + i/R` (uniform) or after
//! exponentially distributed gaps of mean `1/R` (Poisson arrivals). With T
//! generator threads, thread k takes every T-th uniform slot starting at k, or
//! runs its own Poisson process at rate R/T (the superposition of independent
//! Poisson processes is a Poisson process of the summed rate).
//!
//! Latency is measured from these due times, not from when a request could be
//! sent, so a stalled server is charged for every request it delayed
//! (no coordinated omission, as in wrk2).

use std::time::Duration;

use crate::rng::Rng;

/// How arrivals are spaced.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// Evenly spaced, `1/R` apart.
    Uniform,
    /// Poisson process: exponential gaps with mean `1/R`.
    Poisson,
}

/// One thread's stream of due times, as offsets from the run's start.
#[derive(Debug, Clone)]
pub struct Schedule {
    arrivals: Arrivals,
    /// The whole run's rate, requests per second.
    rate: f64,
    threads: u64,
    thread: u64,
    /// Uniform: the next global slot index this thread takes.
    next_index: u64,
    /// Poisson: the next due time in seconds.
    next_poisson: f64,
    rng: Rng,
}

impl Schedule {
    /// Thread `thread` of `threads` sharing a total rate `rate` (> 0).
    pub fn new(
        arrivals: Arrivals,
        rate: f64,
        threads: usize,
        thread: usize,
        seed: u64,
    ) -> Schedule {
        assert!(rate > 0.0 && threads > 0 && thread < threads);
        let mut s = Schedule {
            arrivals,
            rate,
            threads: threads as u64,
            thread: thread as u64,
            next_index: thread as u64,
            next_poisson: 0.0,
            rng: Rng::new(seed ^ (thread as u64).wrapping_mul(0xA24B_AED4_963E_E407)),
        };
        if arrivals == Arrivals::Poisson {
            s.next_poisson = s.poisson_gap();
        }
        s
    }

    fn poisson_gap(&mut self) -> f64 {
        let thread_rate = self.rate / self.threads as f64;
        -self.rng.next_open01().ln() / thread_rate
    }

    /// The due time (offset from the start) of this thread's next request.
    pub fn peek(&self) -> Duration {
        match self.arrivals {
            Arrivals::Uniform => Duration::from_secs_f64(self.next_index as f64 / self.rate),
            Arrivals::Poisson => Duration::from_secs_f64(self.next_poisson),
        }
    }

    /// Takes the next due time and advances.
    pub fn take(&mut self) -> Duration {
        let due = self.peek();
        match self.arrivals {
            Arrivals::Uniform => self.next_index += self.threads,
            Arrivals::Poisson => self.next_poisson += self.poisson_gap(),
        }
        due
    }

    /// Whether this is thread `thread`'s schedule (for debugging output).
    pub fn thread(&self) -> u64 {
        self.thread
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_due_times_are_i_over_r() {
        let mut s = Schedule::new(Arrivals::Uniform, 1000.0, 1, 0, 1);
        let due: Vec<Duration> = (0..4).map(|_| s.take()).collect();
        assert_eq!(due, [0, 1, 2, 3].map(Duration::from_millis));
    }

    #[test]
    fn uniform_threads_interleave_without_gaps_or_overlap() {
        let mut all: Vec<Duration> = Vec::new();
        for t in 0..3 {
            let mut s = Schedule::new(Arrivals::Uniform, 300.0, 3, t, 1);
            all.extend((0..100).map(|_| s.take()));
        }
        all.sort();
        for (i, d) in all.iter().enumerate() {
            assert!(
                (d.as_secs_f64() - i as f64 / 300.0).abs() < 1e-9,
                "slot {i} at {d:?}"
            );
        }
    }

    #[test]
    fn poisson_has_the_asked_rate_and_exponential_gaps() {
        let rate = 2000.0;
        let mut s = Schedule::new(Arrivals::Poisson, rate, 1, 0, 42);
        let n = 200_000;
        let mut prev = 0.0;
        let mut gaps = Vec::with_capacity(n);
        for _ in 0..n {
            let t = s.take().as_secs_f64();
            gaps.push(t - prev);
            prev = t;
        }
        let mean = gaps.iter().sum::<f64>() / n as f64;
        assert!((mean * rate - 1.0).abs() < 0.01, "mean gap {mean}");
        // Exponential: standard deviation equals the mean; P(gap > mean) = 1/e.
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            (var.sqrt() / mean - 1.0).abs() < 0.02,
            "cv {}",
            var.sqrt() / mean
        );
        let above = gaps.iter().filter(|&&g| g > mean).count() as f64 / n as f64;
        assert!(
            (above - (-1.0f64).exp()).abs() < 0.01,
            "P(gap > mean) = {above}"
        );
    }

    #[test]
    fn poisson_threads_sum_to_the_total_rate() {
        let horizon = 50.0;
        let mut count = 0;
        for t in 0..4 {
            let mut s = Schedule::new(Arrivals::Poisson, 1000.0, 4, t, 9);
            while s.take().as_secs_f64() < horizon {
                count += 1;
            }
        }
        let rate = count as f64 / horizon;
        assert!((rate / 1000.0 - 1.0).abs() < 0.02, "rate {rate}");
    }
}
