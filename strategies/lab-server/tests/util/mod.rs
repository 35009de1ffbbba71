//! Helpers shared by the integration tests: run the real binary
//! (`server`), read the kernel's view of it (`procfs`), talk HTTP to it
//! (`http`), load it with the real `loadgen` (`load`). All libc calls are in
//! `sys`.
//!
//! Timeouts here are hang guards only: no test asserts that anything is fast,
//! because the suite runs on a shared 2-core machine.

// Each test binary uses a different part of this module.
#![allow(dead_code, unused_imports)]

pub mod http;
pub mod load;
pub mod procfs;
pub mod server;
pub mod sys;

use std::collections::BTreeMap;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use http::{get, send_bad_input, BadInputOutcome, Client, Response};
pub use server::{run_to_exit, Server, TempDir};

/// Every `--strategy` name the binary accepts.
pub const ALL_STRATEGIES: [&str; 15] = [
    "master-pass",
    "master-pass:reroute",
    "master-pass:rotate",
    "master-pass:least-conn",
    "master-pass:pipelined",
    "shared:prefork",
    "shared:blocking-thread",
    "shared:epoll",
    "shared:epoll-exclusive",
    "shared:epoll-exclusive-raw",
    "shared:accept-mutex",
    "reuseport",
    "reuseport:worker-owned",
    "reuseport:cbpf-cpu",
    "reuseport:ebpf-least-loaded",
];

/// The `master-pass*` strategies: the master alone listens and passes fds.
pub const MASTER_PASS: [&str; 5] = [
    "master-pass",
    "master-pass:reroute",
    "master-pass:rotate",
    "master-pass:least-conn",
    "master-pass:pipelined",
];
/// The `shared:*` strategies: one listener inherited by every worker.
pub const SHARED: [&str; 6] = [
    "shared:prefork",
    "shared:blocking-thread",
    "shared:epoll",
    "shared:epoll-exclusive",
    "shared:epoll-exclusive-raw",
    "shared:accept-mutex",
];
/// The `reuseport*` strategies: one `SO_REUSEPORT` listener per worker.
pub const REUSEPORT: [&str; 4] = [
    "reuseport",
    "reuseport:worker-owned",
    "reuseport:cbpf-cpu",
    "reuseport:ebpf-least-loaded",
];
/// The reuseport strategies whose workers open their own listeners after
/// fork (`reuseport` itself has the master open them all, as nginx does).
pub const WORKER_OWNED_REUSEPORT: [&str; 2] = ["reuseport:worker-owned", "reuseport:cbpf-cpu"];

/// Hang guard for the ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Hang guard for a process to exit after a signal.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Hang guard for one socket read or write.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// Hang guard for a state visible in `/proc` to settle.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Calls `check` every 20 ms until it returns `Ok`, and returns that value;
/// panics after `timeout` with the last `Err` (a description of what was seen).
#[track_caller]
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Reads and parses a stats file written by `--stats-out`.
#[track_caller]
pub fn read_stats(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read stats file {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("stats file {} is not JSON ({e}): {text}", path.display()))
}

/// The `workers` array of a stats document.
#[track_caller]
pub fn stats_workers(stats: &Value) -> &Vec<Value> {
    stats["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("stats has no \"workers\" array: {stats}"))
}

/// An unsigned integer field of one worker entry.
#[track_caller]
pub fn uint(entry: &Value, field: &str) -> u64 {
    entry[field]
        .as_u64()
        .unwrap_or_else(|| panic!("worker entry has no unsigned integer {field:?}: {entry}"))
}

/// The sum of `field` over every worker entry.
#[track_caller]
pub fn sum_over_workers(stats: &Value, field: &str) -> u64 {
    stats_workers(stats).iter().map(|w| uint(w, field)).sum()
}

/// Counts how many responses each worker pid gave.
pub fn count_by_worker(pids: impl IntoIterator<Item = i32>) -> BTreeMap<i32, usize> {
    let mut m = BTreeMap::new();
    for p in pids {
        *m.entry(p).or_insert(0) += 1;
    }
    m
}

/// Runs `f` on a thread of its own in a new network namespace (loopback up,
/// every `net.*` sysctl at its default), so that what it starts and the
/// sysctls it sets affect nothing else on the machine; a panic in `f` is
/// this call's panic.
pub fn in_own_network_namespace<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let worker = thread::spawn(move || {
        sys::enter_new_network_namespace()
            .unwrap_or_else(|e| panic!("cannot enter a new network namespace (root needed): {e}"));
        f()
    });
    match worker.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
