//! Helpers shared by loadgen's integration tests: run the real `loadgen`
//! binary (`loadgen`), start and stop a real `lab-server` and read its stats
//! file (`server`), read loadgen's JSON result (`result`). All libc calls are
//! in `sys`.
//!
//! Timeouts here are hang guards only: no test asserts that anything is fast,
//! because the suite runs on a shared 2-core machine.

// Each test binary uses a different part of this module.
#![allow(dead_code, unused_imports)]

pub mod loadgen;
pub mod procfs;
pub mod result;
pub mod server;
pub mod sys;

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub use self::loadgen::{argv, read_result, run, Finished, Loadgen};
pub use self::result::{
    count_above, decode_histogram, errors, histogram, summary, timeline, timeline_adding_up,
    total_errors, uint, warning_kinds, worker_latencies, workers, Slice,
};
pub use self::server::{Server, Stats};

/// Hang guard for the server's ready line (it may first be built).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Hang guard for a process to exit after a signal.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Hang guard for a loadgen run, on top of its `--warmup` + `--duration`:
/// the probe (2 s), the drain (`--timeout`, 5 s by default) and a slow,
/// shared machine.
pub const RUN_SLACK: Duration = Duration::from_secs(20);

/// The hang guard for a run of `measured` (warm-up included).
pub fn guard(measured: Duration) -> Duration {
    measured + RUN_SLACK
}

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

/// Waits for `child` to exit, at most `timeout`.
pub fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A fresh empty directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a new unique directory. Its path has no whitespace, so it
    /// can go into a command line written as one string (see [`argv`]).
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "loadgen-test-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        assert!(
            !p.to_string_lossy().contains(char::is_whitespace),
            "the temp dir {} has whitespace in its path; set TMPDIR to one without",
            p.display()
        );
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the directory, as a string for a command line.
    pub fn file(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }

    /// Names of the entries in the directory (hidden ones included).
    pub fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
