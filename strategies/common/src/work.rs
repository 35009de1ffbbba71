//! The work a request asks for: `/?cpu_us=N&sleep_us=M&bytes=B`.
//!
//! `cpu_us` is burnt by spinning on this thread's CPU-time clock, so a request
//! costs N µs of CPU even when the worker is preempted half-way (a spin on the
//! wall clock would cost less CPU on a busy machine and distort the very
//! contention the lab measures). `sleep_us` is a timer in the worker's event
//! loop: the worker serves its other connections meanwhile. `bytes` is the
//! size of the response body.

use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

/// Upper bound of `cpu_us`: 10 s of CPU for one request is already absurd.
pub const MAX_CPU_US: u64 = 10_000_000;
/// Upper bound of `sleep_us`: 60 s.
pub const MAX_SLEEP_US: u64 = 60_000_000;
/// Upper bound of `bytes`: 1 GiB.
pub const MAX_BYTES: u64 = 1 << 30;

/// What one request asks the worker to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Work {
    /// CPU to burn, µs.
    pub cpu_us: u64,
    /// Time to wait without blocking other connections, µs.
    pub sleep_us: u64,
    /// Response body size; `None` means the plain `ok` body.
    pub bytes: Option<u64>,
}

/// Why a request target was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TargetError {
    /// The path is not `/` (answered with 404).
    NotFound,
    /// A bad or unknown query parameter (answered with 400).
    BadQuery(String),
}

impl Work {
    /// Parses a request target such as `/?cpu_us=50&bytes=1024`.
    pub fn from_target(target: &str) -> Result<Work, TargetError> {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        if path != "/" {
            return Err(TargetError::NotFound);
        }
        let mut work = Work::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let parse = |max: u64| -> Result<u64, TargetError> {
                match value.parse::<u64>() {
                    Ok(v) if v <= max => Ok(v),
                    Ok(_) => Err(TargetError::BadQuery(format!(
                        "{key}={value} is above the limit {max}"
                    ))),
                    Err(_) => Err(TargetError::BadQuery(format!(
                        "{key}={value} is not a whole number"
                    ))),
                }
            };
            match key {
                "cpu_us" => work.cpu_us = parse(MAX_CPU_US)?,
                "sleep_us" => work.sleep_us = parse(MAX_SLEEP_US)?,
                "bytes" => work.bytes = Some(parse(MAX_BYTES)?),
                _ => {
                    return Err(TargetError::BadQuery(format!(
                        "unknown parameter {key:?}; known: cpu_us, sleep_us, bytes"
                    )))
                }
            }
        }
        Ok(work)
    }

    /// The wait this request asks for, if any.
    pub fn sleep(&self) -> Option<Duration> {
        (self.sleep_us > 0).then(|| Duration::from_micros(self.sleep_us))
    }
}

fn thread_cpu_ns() -> u64 {
    // CLOCK_THREAD_CPUTIME_ID cannot fail on Linux; treat a failure as time 0.
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Spins until this thread has used `us` more microseconds of CPU.
pub fn burn_cpu(us: u64) {
    if us == 0 {
        return;
    }
    let until = thread_cpu_ns() + us * 1_000;
    while thread_cpu_ns() < until {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_root_asks_for_nothing() {
        assert_eq!(Work::from_target("/"), Ok(Work::default()));
        assert_eq!(Work::from_target("/?"), Ok(Work::default()));
    }

    #[test]
    fn all_parameters_parse() {
        let w = Work::from_target("/?cpu_us=50&sleep_us=1000&bytes=4096").unwrap();
        assert_eq!(
            w,
            Work {
                cpu_us: 50,
                sleep_us: 1000,
                bytes: Some(4096)
            }
        );
        assert_eq!(w.sleep(), Some(Duration::from_micros(1000)));
    }

    #[test]
    fn bad_parameters_are_refused_with_a_reason() {
        assert_eq!(Work::from_target("/index.html"), Err(TargetError::NotFound));
        assert!(
            matches!(Work::from_target("/?cpu_us=abc"), Err(TargetError::BadQuery(m)) if m.contains("not a whole number"))
        );
        assert!(matches!(
            Work::from_target("/?cpu_us=-1"),
            Err(TargetError::BadQuery(_))
        ));
        assert!(
            matches!(Work::from_target("/?sleep_us=99999999999"), Err(TargetError::BadQuery(m)) if m.contains("limit"))
        );
        assert!(
            matches!(Work::from_target("/?foo=1"), Err(TargetError::BadQuery(m)) if m.contains("unknown parameter"))
        );
    }

    #[test]
    fn burn_cpu_uses_at_least_the_cpu_asked_for() {
        let before = thread_cpu_ns();
        burn_cpu(2_000);
        assert!(thread_cpu_ns() - before >= 2_000_000);
    }
}
