//! What one generator thread counts: every measured request's histograms,
//! its per-second and per-slice (timeline) tallies and its `X-Worker`
//! attribution. The engine says what happened to a request; this module
//! decides where it is counted. `result` adds the threads' tallies up.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::errors::{ErrorCounts, ErrorKind};
use crate::histo::{new_histogram, record, MAX_US};

/// Requests and connections one worker (by `X-Worker`) served.
#[derive(Clone, Debug)]
pub struct WorkerTally {
    /// Measured responses from this worker.
    pub requests: u64,
    /// Connections on which this worker sent a measured response.
    pub connections: u64,
    /// Latency of its successful measured responses, µs.
    pub latency: Histogram<u64>,
}

impl Default for WorkerTally {
    fn default() -> WorkerTally {
        WorkerTally {
            requests: 0,
            connections: 0,
            latency: new_histogram(),
        }
    }
}

/// One slice of the timeline: the measured requests due in it (closed loop:
/// sent in it), and what became of them.
#[derive(Clone, Debug, Default)]
pub struct SliceTally {
    /// Requests due in the slice.
    pub due: u64,
    /// Of those, successful.
    pub ok: u64,
    /// Of those, failed, by kind; plus `idle_connect_errors`.
    pub errors: ErrorCounts,
    /// Keep-alive (re)connects without a request that failed in the slice
    /// (counted in `errors` too, keyed by when they failed).
    pub idle_connect_errors: u64,
    /// Latency of the successful ones, µs; created on the first.
    pub latency: Option<Histogram<u64>>,
}

impl SliceTally {
    /// Records one successful request's latency.
    fn record_ok(&mut self, latency_us: u64) {
        self.ok += 1;
        let h = self.latency.get_or_insert_with(small_histogram);
        // Not `record`: a saturating record clamps to the current bounds
        // instead of growing them.
        h.record(latency_us.clamp(1, MAX_US))
            .expect("an auto-resizing histogram takes any value within the lab's bounds");
    }
}

/// An empty histogram with the lab's precision that grows as values come
/// (a slice's histogram stays a few KiB unless its latencies are large);
/// values are clamped to the lab's bounds, and the result adds it into one
/// with the lab's bounds before it is written.
pub(crate) fn small_histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 2, 3).expect("valid bounds");
    h.auto(true);
    h
}

/// One second of the measured window.
#[derive(Clone, Debug)]
pub struct SecondTally {
    /// Latency of the successful requests that completed in this second.
    pub latency: Histogram<u64>,
    /// Successful requests completed.
    pub ok: u64,
    /// Errors in this second.
    pub errors: u64,
}

/// What one thread measured.
#[derive(Debug)]
pub struct ThreadResult {
    /// Latency from the due time, µs.
    pub latency: Histogram<u64>,
    /// Service time from the actual send, µs.
    pub service: Histogram<u64>,
    /// Connect time (every connection), µs.
    pub connect: Histogram<u64>,
    /// Time to first byte from the send (`close` mode), µs.
    pub ttfb: Histogram<u64>,
    /// Successful measured requests.
    pub ok: u64,
    /// Measured requests sent.
    pub sent: u64,
    /// Measured errors.
    pub errors: ErrorCounts,
    /// Successful warm-up requests (discarded).
    pub warmup_ok: u64,
    /// Warm-up errors (discarded).
    pub warmup_errors: u64,
    /// Per `X-Worker` tallies.
    pub workers: HashMap<u32, WorkerTally>,
    /// Measured responses without an `X-Worker` header.
    pub unattributed: u64,
    /// Per second of the measured window.
    pub series: Vec<SecondTally>,
    /// The timeline: one entry per `--timeline-interval` of the measured window.
    pub timeline: Vec<SliceTally>,
    /// Measured requests that were due but never sent: the run ended first
    /// (each is also an `unfinished` error).
    pub unsent: u64,
    /// Keep-alive (re)connects without a request that failed in the measured
    /// window (each is also a measured error).
    pub idle_connect_errors: u64,
    /// Largest delay between a request's due time and its send, µs.
    pub max_lag_us: u64,
    /// TCP connections opened.
    pub connections_opened: u64,
    /// Connections whose request had waited more than half the measured
    /// window for its response when the window ended (see `LoadResult`).
    pub starved_connections: u64,
    /// This thread's CPU time over its wall time (0..1).
    pub cpu_busy: f64,
    /// The thread stopped early: no connection succeeded within
    /// `engine::GIVE_UP_AFTER` and some were refused or failed.
    pub gave_up: bool,
    /// Connects that succeeded.
    pub connects_ok: u64,
}

/// The measured window of a run, as the tallies need it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    /// Start of the measured window.
    pub start: Instant,
    /// End of the measured window: nothing is due after it.
    pub end: Instant,
    /// Width of a timeline slice, ns (> 0).
    pub slice_ns: u64,
}

impl Window {
    /// Whether a request due at `due` is measured.
    pub fn contains(&self, due: Instant) -> bool {
        due >= self.start && due < self.end
    }
}

/// A whole response to a request, as far as the tallies care.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Answer {
    /// When the request fell due (closed loop: when it was sent).
    pub due: Instant,
    /// When it was sent (for a `close`-mode request: when its connection
    /// was established).
    pub sent: Option<Instant>,
    /// When its first byte arrived.
    pub first_byte: Option<Instant>,
    /// When it was complete.
    pub done: Instant,
    /// Its status was 2xx.
    pub ok: bool,
    /// Its `X-Worker`.
    pub worker: Option<u32>,
    /// Time to first byte is recorded (`close` mode).
    pub ttfb: bool,
}

impl ThreadResult {
    /// Empty tallies with a timeline of `slices` slices.
    pub(crate) fn new(slices: usize) -> ThreadResult {
        ThreadResult {
            latency: new_histogram(),
            service: new_histogram(),
            connect: new_histogram(),
            ttfb: new_histogram(),
            ok: 0,
            sent: 0,
            errors: ErrorCounts::default(),
            warmup_ok: 0,
            warmup_errors: 0,
            workers: HashMap::new(),
            unattributed: 0,
            series: Vec::new(),
            timeline: vec![SliceTally::default(); slices],
            unsent: 0,
            idle_connect_errors: 0,
            max_lag_us: 0,
            connections_opened: 0,
            starved_connections: 0,
            cpu_busy: 0.0,
            gave_up: false,
            connects_ok: 0,
        }
    }

    fn second(&mut self, w: &Window, now: Instant) -> &mut SecondTally {
        let index = now.saturating_duration_since(w.start).as_secs() as usize;
        while self.series.len() <= index {
            self.series.push(SecondTally {
                latency: new_histogram(),
                ok: 0,
                errors: 0,
            });
        }
        &mut self.series[index]
    }

    /// The timeline slice of a measured request due at `due` (or of an event
    /// at that time in the measured window).
    fn slice(&mut self, w: &Window, due: Instant) -> &mut SliceTally {
        // `RunConfig::slice_of` in u64 nanoseconds (a run is at most days).
        let since = due.saturating_duration_since(w.start);
        let i = (since.as_nanos() as u64 / w.slice_ns) as usize;
        let last = self.timeline.len().saturating_sub(1);
        &mut self.timeline[i.min(last)]
    }

    /// A connect that started at `start` completed at `now`.
    pub(crate) fn connected(&mut self, start: Option<Instant>, now: Instant) {
        self.connects_ok += 1;
        if let Some(start) = start {
            record(
                &mut self.connect,
                micros(now.saturating_duration_since(start)),
            );
        }
    }

    /// A measured request due at `due` was sent (or its connect started).
    pub(crate) fn sent(&mut self, w: &Window, due: Instant, now: Instant) {
        self.sent += 1;
        self.slice(w, due).due += 1;
        let lag = micros(now.saturating_duration_since(due));
        self.max_lag_us = self.max_lag_us.max(lag);
    }

    /// A whole response; `measured` says whether its request counts. The
    /// connection it came on was last credited to `credited` (updated).
    pub(crate) fn answered(
        &mut self,
        w: &Window,
        a: &Answer,
        measured: bool,
        credited: &mut Option<u32>,
    ) {
        if !measured {
            if a.ok {
                self.warmup_ok += 1;
            } else {
                self.warmup_errors += 1;
            }
            return;
        }
        let mut ok_latency = None;
        if a.ok {
            let latency = micros(a.done.saturating_duration_since(a.due));
            ok_latency = Some(latency);
            record(&mut self.latency, latency);
            if let Some(sent) = a.sent {
                record(
                    &mut self.service,
                    micros(a.done.saturating_duration_since(sent)),
                );
                if a.ttfb {
                    if let Some(fb) = a.first_byte {
                        record(&mut self.ttfb, micros(fb.saturating_duration_since(sent)));
                    }
                }
            }
            self.ok += 1;
            let sec = self.second(w, a.done);
            sec.ok += 1;
            record(&mut sec.latency, latency);
            self.slice(w, a.due).record_ok(latency);
        } else {
            self.errors.count(ErrorKind::Non2xx);
            self.second(w, a.done).errors += 1;
            self.slice(w, a.due).errors.count(ErrorKind::Non2xx);
        }
        match a.worker {
            Some(worker) => {
                let tally = self.workers.entry(worker).or_default();
                tally.requests += 1;
                if let Some(latency) = ok_latency {
                    record(&mut tally.latency, latency);
                }
                if *credited != Some(worker) {
                    *credited = Some(worker);
                    tally.connections += 1;
                }
            }
            None => self.unattributed += 1,
        }
    }

    /// A request due at `due` failed with `kind` at `now`.
    pub(crate) fn failed(&mut self, w: &Window, due: Instant, kind: ErrorKind, now: Instant) {
        if w.contains(due) {
            self.errors.count(kind);
            self.second(w, now).errors += 1;
            self.slice(w, due).errors.count(kind);
        } else {
            self.warmup_errors += 1;
        }
    }

    /// A keep-alive (re)connect with no request on it failed at `now`:
    /// counted as a measured error if we are measuring, so that a server that
    /// refuses everything cannot look like an idle one.
    pub(crate) fn idle_connect_failed(&mut self, w: &Window, kind: ErrorKind, now: Instant) {
        if w.contains(now) {
            self.errors.count(kind);
            self.idle_connect_errors += 1;
            let slice = self.slice(w, now);
            slice.errors.count(kind);
            slice.idle_connect_errors += 1;
        } else {
            self.warmup_errors += 1;
        }
    }

    /// A request due at `due` was neither answered nor failed when the run
    /// ended; `sent` says whether it had been sent.
    pub(crate) fn unfinished(&mut self, w: &Window, due: Instant, sent: bool) {
        if !w.contains(due) {
            return;
        }
        self.errors.count(ErrorKind::Unfinished);
        let slice = self.slice(w, due);
        slice.errors.count(ErrorKind::Unfinished);
        if !sent {
            slice.due += 1;
            self.unsent += 1;
        }
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_histogram_grows_to_hold_large_latencies_exactly() {
        let mut s = SliceTally::default();
        for us in [3, 900, 1_000_000, 3_000_000_000, u64::MAX] {
            s.record_ok(us);
        }
        let h = s.latency.as_ref().unwrap();
        assert_eq!((s.ok, h.len()), (5, 5));
        assert_eq!(h.max(), h.highest_equivalent(MAX_US));
        assert!(
            h.value_at_quantile(0.6) >= 999_000,
            "{}",
            h.value_at_quantile(0.6)
        );
        let mut lab = new_histogram();
        lab.add(h).unwrap();
        assert_eq!(lab.len(), 5);
        assert_eq!(lab.value_at_quantile(0.5), h.value_at_quantile(0.5));
    }

    #[test]
    fn an_unsent_request_is_due_in_its_slice_and_unfinished() {
        let start = Instant::now();
        let w = Window {
            start,
            end: start + Duration::from_secs(2),
            slice_ns: 1_000_000_000,
        };
        let mut t = ThreadResult::new(2);
        t.unfinished(&w, start + Duration::from_millis(1500), false);
        t.unfinished(&w, start + Duration::from_millis(100), true);
        t.unfinished(&w, start + Duration::from_secs(3), false);
        assert_eq!((t.unsent, t.errors.unfinished), (1, 2));
        assert_eq!((t.timeline[0].due, t.timeline[1].due), (0, 1));
    }
}
