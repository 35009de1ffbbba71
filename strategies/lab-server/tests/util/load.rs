//! Running the real `loadgen` binary against a server: start it in the
//! background, wait for its JSON result. `loadgen` is built in the same
//! target directory as `lab-server` (`cargo build --workspace`); the
//! environment variable `LOADGEN_BIN` may point at another build.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::server::{TempDir, BIN};

/// Where the `loadgen` binary is.
#[track_caller]
pub fn loadgen_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LOADGEN_BIN") {
        return PathBuf::from(p);
    }
    let p = std::path::Path::new(BIN).with_file_name("loadgen");
    assert!(
        p.is_file(),
        "{} does not exist: these tests drive the real loadgen; build it first with `cargo build --workspace` (same CARGO_TARGET_DIR) or set LOADGEN_BIN",
        p.display()
    );
    p
}

/// A `loadgen` run in the background; killed on drop if still running.
pub struct Load {
    child: Child,
    dir: TempDir,
    /// How long the measured run lasts (`--duration`).
    pub duration: Duration,
    started: Instant,
}

impl Load {
    /// Starts `loadgen --target ADDR --duration DURATION --json FILE -q ARGS...`.
    #[track_caller]
    pub fn start(addr: std::net::SocketAddr, duration: Duration, args: &[&str]) -> Load {
        let dir = TempDir::new("load");
        let json = dir.path().join("load.json");
        let child = Command::new(loadgen_bin())
            .args([
                "--target",
                &addr.to_string(),
                "--duration",
                &format!("{}ms", duration.as_millis()),
                "--json",
                json.to_str().unwrap(),
                "--quiet",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn loadgen: {e}"));
        Load {
            child,
            dir,
            duration,
            started: Instant::now(),
        }
    }

    /// Whether loadgen is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for loadgen to end (hang guard: its duration plus 30 s) and
    /// returns its JSON result; panics if it failed.
    #[track_caller]
    pub fn finish(mut self) -> Value {
        let guard = self.duration + Duration::from_secs(30);
        let status = loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                break s;
            }
            if self.started.elapsed() > guard {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("loadgen still running {guard:?} after it started");
            }
            thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        assert!(status.success(), "loadgen failed ({status}): {err}");
        let path = self.dir.path().join("load.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no loadgen result {}: {e}; stderr: {err}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("loadgen result is not JSON: {e}"))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Successful requests of a loadgen result.
#[track_caller]
pub fn ok(result: &Value) -> u64 {
    result["ok"]
        .as_u64()
        .unwrap_or_else(|| panic!("loadgen result has no \"ok\": {result}"))
}

/// All errors of a loadgen result (every kind, `unfinished` included).
#[track_caller]
pub fn errors(result: &Value) -> u64 {
    result["errors"]
        .as_object()
        .unwrap_or_else(|| panic!("loadgen result has no \"errors\" object: {result}"))
        .values()
        .map(|v| v.as_u64().unwrap_or(0))
        .sum()
}

/// The pids loadgen saw in `X-Worker`, with their request counts.
pub fn worker_requests(result: &Value) -> Vec<(i32, u64)> {
    result["workers"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .map(|w| {
                    (
                        w["worker"].as_i64().unwrap_or(0) as i32,
                        w["requests"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
