//! Running the real `loadgen` binary, in the foreground or in the
//! background, always under a hang guard.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::wait_with_deadline;

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_loadgen");

/// How a loadgen run ended.
#[derive(Debug)]
pub struct Finished {
    /// The arguments, for messages.
    pub args: Vec<String>,
    /// Exit status.
    pub status: ExitStatus,
    /// All of stdout.
    pub stdout: String,
    /// All of stderr.
    pub stderr: String,
    /// How long it ran (only for messages: never asserted on).
    pub elapsed: Duration,
}

impl Finished {
    /// Panics unless it exited 0; returns `self` for chaining.
    #[track_caller]
    pub fn assert_success(self) -> Finished {
        assert!(
            self.status.success(),
            "loadgen {:?} failed ({}); stderr:\n{}\nstdout:\n{}",
            self.args,
            self.status,
            self.stderr,
            self.stdout
        );
        self
    }

    /// Panics unless it failed with exactly one `loadgen: error: ...` line on
    /// stderr and exit status 1; returns that line.
    #[track_caller]
    pub fn assert_one_line_error(&self) -> String {
        assert_eq!(
            self.status.code(),
            Some(1),
            "loadgen {:?}: expected exit status 1, got {}; stderr:\n{}\nstdout:\n{}",
            self.args,
            self.status,
            self.stderr,
            self.stdout
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("loadgen: error: "),
            "loadgen {:?}: expected one line `loadgen: error: ...` on stderr, got:\n{}",
            self.args,
            self.stderr
        );
        lines[0].to_string()
    }

    /// Panics unless clap refused the arguments: a non-zero exit and clap's
    /// `error: ...` message on stderr. Returns stderr.
    #[track_caller]
    pub fn assert_clap_error(&self) -> String {
        assert!(
            !self.status.success(),
            "loadgen {:?}: expected clap to refuse the arguments, but it succeeded; stdout:\n{}",
            self.args,
            self.stdout
        );
        assert!(
            self.stderr.starts_with("error: "),
            "loadgen {:?}: expected clap's `error: ...` message ({}), got:\n{}",
            self.args,
            self.status,
            self.stderr
        );
        self.stderr.clone()
    }
}

/// A loadgen process started with [`Loadgen::spawn`]; SIGKILLed on drop if
/// it is still running.
pub struct Loadgen {
    args: Vec<String>,
    child: Child,
    started: Instant,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    waited: bool,
}

impl Loadgen {
    /// Starts `loadgen ARGS` in the background.
    #[track_caller]
    pub fn spawn<S: AsRef<str>>(args: &[S]) -> Loadgen {
        let args: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
        let mut child = Command::new(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {BIN}: {e}"));
        let stdout = read_all(child.stdout.take().unwrap());
        let stderr = read_all(child.stderr.take().unwrap());
        Loadgen {
            args,
            child,
            started: Instant::now(),
            stdout,
            stderr,
            waited: false,
        }
    }

    /// Waits for it to exit by itself; panics (after killing it) if it is
    /// still running `guard` after it started.
    #[track_caller]
    pub fn finish(mut self, guard: Duration) -> Finished {
        let left = guard.saturating_sub(self.started.elapsed());
        let status = wait_with_deadline(&mut self.child, left);
        let elapsed = self.started.elapsed();
        let Some(status) = status else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.waited = true;
            let stderr = self.stderr.recv_timeout(Duration::from_secs(5));
            panic!(
                "loadgen {:?} still running {guard:?} after it started: it must end on its own; stderr:\n{}",
                self.args,
                stderr.unwrap_or_default()
            );
        };
        self.waited = true;
        let take = |rx: &mpsc::Receiver<String>, name: &str| {
            rx.recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| {
                    panic!("loadgen exited ({status}) but its {name} is still held open")
                })
        };
        Finished {
            args: self.args.clone(),
            status,
            stdout: take(&self.stdout, "stdout"),
            stderr: take(&self.stderr, "stderr"),
            elapsed,
        }
    }
}

impl Drop for Loadgen {
    fn drop(&mut self) {
        if !self.waited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn read_all(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    rx
}

/// Splits a command line written as one string (`"--target 127.0.0.1:80
/// -d 1s"`) into arguments, so tests read like the command they run. Paths in
/// it come from [`TempDir`](super::TempDir), which has no whitespace.
pub fn argv(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

/// Runs `loadgen ARGS` to completion under the hang guard `guard`.
#[track_caller]
pub fn run<S: AsRef<str>>(args: &[S], guard: Duration) -> Finished {
    Loadgen::spawn(args).finish(guard)
}

/// Reads a result written with `--json`, checking its schema tag.
#[track_caller]
pub fn read_result(path: impl AsRef<Path>) -> Value {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read loadgen result {}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {text}", path.display()));
    assert_eq!(
        v["schema"],
        "prefork-lab.loadgen.v2",
        "{} has the wrong schema tag",
        path.display()
    );
    v
}
