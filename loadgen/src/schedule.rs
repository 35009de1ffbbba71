//! When each request is due, in open-loop mode.
//!
//! The offered rate is piecewise constant (a [`RatePlan`]): `--rate` from the
//! start of the run (warm-up included), then each `--rate-step AT:RATE` from
//! its offset on. With `N(t)` the number of requests due by `t` (the integral
//! of the rate), request i of the whole run is due at `N⁻¹(i)` (uniform; with
//! a constant rate R that is `t0 + i/R`). With T generator threads, thread k
//! takes every T-th index starting at k, so the threads together keep the
//! schedule exactly. Poisson arrivals: each thread runs its own Poisson
//! process at the current segment's rate / T (the superposition of
//! independent Poisson processes is a Poisson process of the summed rate);
//! a gap that would cross a step is drawn again from the step at the new rate
//! (the process is memoryless), so every segment is a true Poisson process
//! of its own rate.
//!
//! Latency is measured from these due times, not from when a request could be
//! sent, so a stalled server is charged for every request it delayed
//! (no coordinated omission, as in wrk2).

use std::time::Duration;

use crate::duration::parse_duration;
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

/// `--rate-step AT:RATE`: from `at` (measured from the start of the measured
/// window) on, the open-loop rate is `rate` requests per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateStep {
    /// Offset from the start of the measured window (after the warm-up).
    pub at: Duration,
    /// Requests per second from then on (> 0).
    pub rate: f64,
}

impl RateStep {
    /// Parses `AT:RATE`, e.g. `300ms:2000`; every refusal says how to write it.
    pub fn parse(s: &str) -> Result<RateStep, String> {
        let Some((at, rate)) = s.split_once(':') else {
            return Err(format!(
                "--rate-step {s:?}: write it as AT:RATE, e.g. --rate-step 300ms:2000 (from 300 ms into the measured time on, 2000 req/s)"
            ));
        };
        let at = parse_duration(at).map_err(|e| format!("--rate-step {s:?}: AT {e}"))?;
        let rate: f64 = rate.trim().parse().map_err(|_| {
            format!("--rate-step {s:?}: RATE {rate:?} is not a number; give requests per second, e.g. {}:2000", at_text(at))
        })?;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(format!(
                "--rate-step {s:?}: give a positive number of requests per second after the colon"
            ));
        }
        Ok(RateStep { at, rate })
    }

    /// Checks a list of steps against the measured `duration`: strictly
    /// increasing offsets, each inside the measured time.
    pub fn check_all(steps: &[RateStep], duration: Duration) -> Result<(), String> {
        for (k, s) in steps.iter().enumerate() {
            if s.at >= duration {
                return Err(format!(
                    "--rate-step at {} is not inside the measured --duration {}: give offsets from 0 up to (not including) the duration",
                    at_text(s.at),
                    at_text(duration)
                ));
            }
            if k > 0 && s.at <= steps[k - 1].at {
                return Err(format!(
                    "--rate-step at {} comes after the step at {}: give the steps in strictly increasing order of AT",
                    at_text(s.at),
                    at_text(steps[k - 1].at)
                ));
            }
        }
        Ok(())
    }
}

fn at_text(d: Duration) -> String {
    format!("{}ms", d.as_secs_f64() * 1e3)
}

/// One segment of a [`RatePlan`].
#[derive(Clone, Copy, Debug, PartialEq)]
struct Segment {
    /// Start, seconds from the run's start.
    start: f64,
    /// Requests per second in it.
    rate: f64,
    /// `N(start)`: requests due before it (fractional).
    before: f64,
}

/// A piecewise-constant rate over the run, offsets from the run's start
/// (warm-up included).
#[derive(Clone, Debug, PartialEq)]
pub struct RatePlan {
    segments: Vec<Segment>,
}

impl RatePlan {
    /// `rate` from 0 on, then each `(start_s, rate)` in `steps` (offsets from
    /// the run's start, non-decreasing; rates > 0).
    pub fn new(rate: f64, steps: &[(f64, f64)]) -> RatePlan {
        assert!(rate > 0.0, "rates are positive");
        let mut segments = vec![Segment {
            start: 0.0,
            rate,
            before: 0.0,
        }];
        for &(start, rate) in steps {
            let last = *segments.last().expect("non-empty");
            assert!(rate > 0.0 && start >= last.start, "steps in order");
            segments.push(Segment {
                start,
                rate,
                before: last.before + last.rate * (start - last.start),
            });
        }
        RatePlan { segments }
    }

    /// `--rate` and `--rate-step`s of a run with warm-up `warmup` (steps are
    /// measured from the end of the warm-up).
    pub fn of_run(rate: f64, warmup: Duration, steps: &[RateStep]) -> RatePlan {
        let w = warmup.as_secs_f64();
        let steps: Vec<(f64, f64)> = steps
            .iter()
            .map(|s| (w + s.at.as_secs_f64(), s.rate))
            .collect();
        RatePlan::new(rate, &steps)
    }

    /// A constant rate.
    pub fn constant(rate: f64) -> RatePlan {
        RatePlan::new(rate, &[])
    }

    /// `N(t)`: requests due in `[0, t)` (fractional), `t` in seconds.
    pub fn due_by(&self, t: f64) -> f64 {
        let s = self.segment_at(t, 0);
        s.before + s.rate * (t - s.start).max(0.0)
    }

    /// `N⁻¹(i)`: when request `i` (counting from 0) is due, seconds.
    pub fn due_at(&self, i: f64) -> f64 {
        // The last segment that begins at or before request i; zero-length
        // segments (a step at the same instant) are passed over.
        let k = self.segments.partition_point(|s| s.before <= i).max(1) - 1;
        let s = &self.segments[k];
        s.start + (i - s.before) / s.rate
    }

    /// The segment in force at `t` (seconds), searching from index `from`;
    /// at a step instant the later segment.
    fn segment_at(&self, t: f64, from: usize) -> &Segment {
        &self.segments[self.index_at(t, from)]
    }

    fn index_at(&self, t: f64, from: usize) -> usize {
        let mut k = from;
        while k + 1 < self.segments.len() && self.segments[k + 1].start <= t {
            k += 1;
        }
        k
    }

    /// Start of the segment after `k`, if any.
    fn next_start(&self, k: usize) -> Option<f64> {
        self.segments.get(k + 1).map(|s| s.start)
    }

    /// The mean rate over `[from, to)` seconds: requests due in it (expected,
    /// for Poisson arrivals) per second; with no step, the rate.
    pub fn mean_rate(&self, from: f64, to: f64) -> f64 {
        if to > from {
            (self.due_by(to) - self.due_by(from)) / (to - from)
        } else {
            self.segment_at(from, 0).rate
        }
    }
}

/// One thread's stream of due times, as offsets from the run's start.
#[derive(Debug, Clone)]
pub struct Schedule {
    arrivals: Arrivals,
    plan: RatePlan,
    threads: u64,
    thread: u64,
    /// Uniform: the next global request index this thread takes.
    next_index: u64,
    /// Poisson: the next due time in seconds.
    next_poisson: f64,
    /// Poisson: the segment `next_poisson` lies in.
    segment: usize,
    rng: Rng,
}

impl Schedule {
    /// Thread `thread` of `threads` sharing the total rate `plan`.
    pub fn new(
        arrivals: Arrivals,
        plan: RatePlan,
        threads: usize,
        thread: usize,
        seed: u64,
    ) -> Schedule {
        assert!(threads > 0 && thread < threads);
        let mut s = Schedule {
            arrivals,
            plan,
            threads: threads as u64,
            thread: thread as u64,
            next_index: thread as u64,
            next_poisson: 0.0,
            segment: 0,
            rng: Rng::new(seed ^ (thread as u64).wrapping_mul(0xA24B_AED4_963E_E407)),
        };
        if arrivals == Arrivals::Poisson {
            s.next_poisson = s.poisson_after(0.0);
        }
        s
    }

    /// The next Poisson arrival after `t` (seconds), for this thread.
    fn poisson_after(&mut self, mut t: f64) -> f64 {
        loop {
            let k = self.plan.index_at(t, self.segment);
            self.segment = k;
            let thread_rate = self.plan.segments[k].rate / self.threads as f64;
            let next = t - self.rng.next_open01().ln() / thread_rate;
            match self.plan.next_start(k) {
                // Memoryless: drop the part of the gap past the step and
                // draw again from the step at the new rate.
                Some(step) if next >= step => t = step,
                _ => return next,
            }
        }
    }

    /// The due time (offset from the start) of this thread's next request.
    pub fn peek(&self) -> Duration {
        match self.arrivals {
            Arrivals::Uniform => Duration::from_secs_f64(self.plan.due_at(self.next_index as f64)),
            Arrivals::Poisson => Duration::from_secs_f64(self.next_poisson),
        }
    }

    /// Takes the next due time and advances.
    pub fn take(&mut self) -> Duration {
        let due = self.peek();
        match self.arrivals {
            Arrivals::Uniform => self.next_index += self.threads,
            Arrivals::Poisson => self.next_poisson = self.poisson_after(self.next_poisson),
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
        let mut s = Schedule::new(Arrivals::Uniform, RatePlan::constant(1000.0), 1, 0, 1);
        let due: Vec<Duration> = (0..4).map(|_| s.take()).collect();
        assert_eq!(due, [0, 1, 2, 3].map(Duration::from_millis));
    }

    #[test]
    fn uniform_threads_interleave_without_gaps_or_overlap() {
        let mut all: Vec<Duration> = Vec::new();
        for t in 0..3 {
            let mut s = Schedule::new(Arrivals::Uniform, RatePlan::constant(300.0), 3, t, 1);
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
        let mut s = Schedule::new(Arrivals::Poisson, RatePlan::constant(rate), 1, 0, 42);
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
            let mut s = Schedule::new(Arrivals::Poisson, RatePlan::constant(1000.0), 4, t, 9);
            while s.take().as_secs_f64() < horizon {
                count += 1;
            }
        }
        let rate = count as f64 / horizon;
        assert!((rate / 1000.0 - 1.0).abs() < 0.02, "rate {rate}");
    }

    /// Due times of all `threads` schedules of `plan` before `horizon` s, per thread.
    fn due_times(
        arrivals: Arrivals,
        plan: &RatePlan,
        threads: usize,
        seed: u64,
        horizon: f64,
    ) -> Vec<Vec<f64>> {
        (0..threads)
            .map(|t| {
                let mut s = Schedule::new(arrivals, plan.clone(), threads, t, seed);
                let mut v = Vec::new();
                loop {
                    let d = s.take().as_secs_f64();
                    if d >= horizon {
                        return v;
                    }
                    v.push(d);
                }
            })
            .collect()
    }

    /// Segments as `[start, end)` with their rates, up to `horizon`.
    const STEPS: [(f64, f64, f64); 4] = [
        (0.0, 0.3, 500.0),
        (0.3, 0.6, 2000.0),
        (0.6, 1.35, 100.0),
        (1.35, 2.0, 3333.0),
    ];

    fn steps_plan() -> RatePlan {
        RatePlan::new(500.0, &[(0.3, 2000.0), (0.6, 100.0), (1.35, 3333.0)])
    }

    fn count_in(times: &[f64], from: f64, to: f64) -> usize {
        times.iter().filter(|&&d| d >= from && d < to).count()
    }

    #[test]
    fn n_and_its_inverse_agree_across_steps() {
        let plan = steps_plan();
        assert_eq!(plan.due_by(0.3), 150.0);
        assert!((plan.due_by(0.6) - 750.0).abs() < 1e-9);
        assert!((plan.due_by(1.0) - 790.0).abs() < 1e-9);
        for i in [
            0.0, 1.0, 149.0, 150.0, 151.0, 749.5, 750.0, 824.0, 825.0, 3000.0,
        ] {
            let t = plan.due_at(i);
            assert!(
                (plan.due_by(t) - i).abs() < 1e-6,
                "N(N⁻¹({i})) = {}",
                plan.due_by(t)
            );
        }
        // Mean rate over the steps: due requests per second.
        assert!((plan.mean_rate(0.0, 0.6) - 1250.0).abs() < 1e-9);
        assert_eq!(RatePlan::constant(400.0).mean_rate(1.0, 5.0), 400.0);
    }

    #[test]
    fn uniform_with_steps_is_exact_over_all_threads() {
        let plan = steps_plan();
        for threads in [1, 3, 4] {
            let per_thread = due_times(Arrivals::Uniform, &plan, threads, 1, 2.0);
            let mut all: Vec<f64> = per_thread.iter().flatten().copied().collect();
            all.sort_by(f64::total_cmp);
            // Request i of the whole run is due at N⁻¹(i): no gap, no overlap.
            for (i, d) in all.iter().enumerate() {
                assert!(
                    (d - plan.due_at(i as f64)).abs() < 2e-9, // whole ns
                    "{threads} threads: request {i} at {d}"
                );
            }
            for (from, to, rate) in STEPS {
                let want = rate * (to - from);
                let got = count_in(&all, from, to) as f64;
                assert!(
                    (got - want).abs() <= 1.0,
                    "{threads} threads: [{from}, {to}) at {rate}: {got} due, want {want}"
                );
                for (k, times) in per_thread.iter().enumerate() {
                    let got = count_in(times, from, to) as f64;
                    let want = want / threads as f64;
                    assert!(
                        (got - want).abs() <= 1.0,
                        "thread {k} of {threads}: [{from}, {to}): {got} due, want {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_step_at_the_start_replaces_the_first_rate() {
        let plan = RatePlan::new(1000.0, &[(0.0, 10.0)]);
        let all = due_times(Arrivals::Uniform, &plan, 1, 1, 1.0);
        assert_eq!(all[0].len(), 10, "{:?}", all[0]);
        let poisson = due_times(Arrivals::Poisson, &plan, 2, 3, 1000.0);
        let n: usize = poisson.iter().map(Vec::len).sum();
        assert!(
            (n as f64 - 10_000.0).abs() < 4.0 * 100.0,
            "{n} arrivals, want about 10000"
        );
    }

    #[test]
    fn poisson_with_steps_has_each_segments_rate() {
        // Long segments so that the counts are large; 4 threads.
        let plan = RatePlan::new(2000.0, &[(5.0, 500.0), (10.0, 8000.0), (15.0, 0.5)]);
        let per_thread = due_times(Arrivals::Poisson, &plan, 4, 77, 1015.0);
        let all: Vec<f64> = per_thread.iter().flatten().copied().collect();
        for (from, to, rate) in [
            (0.0, 5.0, 2000.0),
            (5.0, 10.0, 500.0),
            (10.0, 15.0, 8000.0),
            (15.0, 1015.0, 0.5),
        ] {
            let want = rate * (to - from);
            let got = count_in(&all, from, to) as f64;
            // Poisson: the standard deviation of the count is its square root.
            assert!(
                (got - want).abs() < 4.0 * want.sqrt(),
                "[{from}, {to}) at {rate}: {got} arrivals, want {want}"
            );
        }
        // Just after a step up, arrivals start at the new rate at once (the
        // gap in progress is redrawn from the step): in the first 10 ms after
        // 10 s, about 80 arrivals.
        let early = count_in(&all, 10.0, 10.01) as f64;
        assert!(
            (early - 80.0).abs() < 5.0 * 80f64.sqrt(),
            "{early} arrivals in [10, 10.01)"
        );
        // Within a segment the gaps are exponential with mean threads / rate.
        let t0: Vec<f64> = per_thread[0]
            .iter()
            .copied()
            .filter(|&d| (10.0..15.0).contains(&d))
            .collect();
        let gaps: Vec<f64> = t0.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!(
            (mean * 2000.0 - 1.0).abs() < 0.05,
            "mean gap {mean}, want 1/2000"
        );
    }

    #[test]
    fn rate_steps_parse_and_refuse_with_advice() {
        assert_eq!(
            RateStep::parse("300ms:2000"),
            Ok(RateStep {
                at: Duration::from_millis(300),
                rate: 2000.0
            })
        );
        assert_eq!(
            RateStep::parse("1.5s:0.5").unwrap().at,
            Duration::from_millis(1500)
        );
        assert!(RateStep::parse("300ms").unwrap_err().contains("AT:RATE"));
        assert!(RateStep::parse("300:2000").unwrap_err().contains("no unit"));
        assert!(RateStep::parse("300ms:fast")
            .unwrap_err()
            .contains("not a number"));
        assert!(RateStep::parse("300ms:0").unwrap_err().contains("positive"));
        assert!(RateStep::parse("300ms:-5")
            .unwrap_err()
            .contains("positive"));
        let step = |ms, rate| RateStep {
            at: Duration::from_millis(ms),
            rate,
        };
        let d = Duration::from_secs(1);
        assert_eq!(
            RateStep::check_all(&[step(0, 1.0), step(999, 2.0)], d),
            Ok(())
        );
        assert!(RateStep::check_all(&[step(1000, 1.0)], d)
            .unwrap_err()
            .contains("inside"));
        assert!(RateStep::check_all(&[step(500, 1.0), step(500, 2.0)], d)
            .unwrap_err()
            .contains("increasing"));
        assert!(RateStep::check_all(&[step(500, 1.0), step(200, 2.0)], d)
            .unwrap_err()
            .contains("increasing"));
    }
}
