//! Running the real `lab-server`: find (or build) the binary, start it and
//! wait for its ready line, stop it and read its stats file, and make sure a
//! failing test never leaves a server process behind.
//!
//! loadgen talks to servers only through a process, a port and a stats file
//! (ARCHITECTURE.md), so this module does too: it does not import anything
//! from the server crates or their tests.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::procfs::{is_alive, is_same_live_process, state_and_start};
use super::sys::{kill, SIGKILL, SIGTERM};
use super::{poll_until, wait_with_deadline, TempDir, EXIT_TIMEOUT, READY_TIMEOUT};

/// The `lab-server` binary next to the `loadgen` binary under test (same
/// target directory, same profile), built on first use if it is not there.
///
/// `cargo test --workspace` builds it anyway (lab-server's own tests need
/// it); `cargo test -p loadgen` does not, hence the build here, so that no
/// extra step is ever needed. The build uses the target directory and
/// profile this test binary was built with, found from `CARGO_TARGET_TMPDIR`
/// (`<target-dir>/tmp`) and the loadgen binary's directory
/// (`<target-dir>[/<triple>]/<profile>`).
pub fn lab_server_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let profile_dir = Path::new(env!("CARGO_BIN_EXE_loadgen"))
            .parent()
            .expect("the loadgen binary lives in a directory");
        let bin = profile_dir.join("lab-server");
        if !bin.exists() {
            build_lab_server(profile_dir);
        }
        assert!(
            bin.exists(),
            "`cargo build -p lab-server` succeeded but {} is not there",
            bin.display()
        );
        bin
    })
}

fn build_lab_server(profile_dir: &Path) {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is <target-dir>/tmp");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(other) => other.to_string(),
        None => panic!("cannot tell the profile from {}", profile_dir.display()),
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("loadgen sits in the workspace root");
    // Cargo runs tests with $CARGO set to itself; fall back to the one that
    // compiled this file, then to PATH.
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace)
        .env("CARGO_TARGET_DIR", target_dir)
        .args(["build", "-p", "lab-server", "--profile", &profile]);
    // `<target-dir>/<triple>/<profile>` when the tests were built with --target.
    let above_profile = profile_dir.parent().expect("profile dir has a parent");
    if above_profile != target_dir {
        let triple = above_profile
            .file_name()
            .and_then(|n| n.to_str())
            .expect("target triple directory name");
        cmd.args(["--target", triple]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo:?} to build lab-server: {e}"));
    assert!(
        out.status.success(),
        "building lab-server failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `lab-server`. Dropping it SIGKILLs the master and every worker
/// it announced, so a test that panics halfway leaks no process.
pub struct Server {
    child: Child,
    exit: Option<ExitStatus>,
    /// `--strategy` it was started with.
    pub strategy: String,
    /// `addr` from the ready line.
    pub addr: SocketAddr,
    /// `master_pid` from the ready line.
    pub master_pid: i32,
    /// `worker_pids` from the ready line.
    pub worker_pids: Vec<i32>,
    /// `(pid, start time)` of each worker, so that drop never signals a
    /// recycled pid.
    worker_starts: Vec<(i32, u64)>,
    stderr: Arc<Mutex<String>>,
    dir: TempDir,
}

impl Server {
    /// Starts `lab-server --strategy S --workers N --listen 127.0.0.1:0
    /// --stats-out <temp file>` and waits (at most `READY_TIMEOUT`) for its
    /// ready line.
    #[track_caller]
    pub fn start(strategy: &str, workers: usize) -> Server {
        let dir = TempDir::new("server");
        let bin = lab_server_bin();
        let mut child = Command::new(bin)
            .args(["--strategy", strategy, "--workers", &workers.to_string()])
            .args(["--listen", "127.0.0.1:0", "--stats-out"])
            .arg(dir.path().join("stats.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let (sink, mut pipe) = (stderr.clone(), child.stderr.take().unwrap());
            thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        thread::spawn(move || {
            let mut line = String::new();
            let _ = out.read_line(&mut line);
            let _ = tx.send(line);
            // Keep reading so the server never blocks on a full pipe.
            let mut rest = Vec::new();
            let _ = out.read_to_end(&mut rest);
        });
        let what = format!("lab-server --strategy {strategy} --workers {workers}");
        let mut server = Server {
            child,
            exit: None,
            strategy: strategy.to_string(),
            addr: "127.0.0.1:1".parse().unwrap(),
            master_pid: 0,
            worker_pids: Vec::new(),
            worker_starts: Vec::new(),
            stderr,
            dir,
        };
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) if line.ends_with('\n') => line,
            Ok(line) => panic!(
                "{what}: no ready line (stdout: {line:?}); stderr:\n{}",
                server.stderr()
            ),
            Err(_) => panic!(
                "{what}: no ready line within {READY_TIMEOUT:?}; stderr:\n{}",
                server.stderr()
            ),
        };
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{what}: ready line {line:?} is not JSON: {e}"));
        server.addr = ready["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{what}: ready line has no \"addr\": {line}"));
        server.master_pid = ready["master_pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("{what}: ready line has no \"master_pid\": {line}"))
            as i32;
        server.worker_pids = ready["worker_pids"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: ready line has no \"worker_pids\": {line}"))
            .iter()
            .map(|p| p.as_i64().expect("worker pid is an integer") as i32)
            .collect();
        server.worker_starts = server
            .worker_pids
            .iter()
            .filter_map(|&p| state_and_start(p).map(|(_, start)| (p, start)))
            .collect();
        assert_eq!(
            server.worker_pids.len(),
            workers,
            "{what}: ready line names {} workers: {line}",
            server.worker_pids.len()
        );
        server
    }

    /// `--target` for loadgen.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends `sig` to one worker process.
    #[track_caller]
    pub fn signal_worker(&self, pid: i32, sig: i32) {
        assert!(
            self.worker_pids.contains(&pid),
            "{pid} is not a worker of this server"
        );
        kill(pid, sig).unwrap_or_else(|e| panic!("cannot signal worker {pid}: {e}"));
    }

    /// SIGKILLs the master (workers die with it: `PR_SET_PDEATHSIG`) and
    /// waits until every process of the server is gone.
    #[track_caller]
    pub fn kill_now(&mut self) {
        kill(self.master_pid, SIGKILL).unwrap_or_else(|e| panic!("cannot kill the master: {e}"));
        self.wait_exit();
        poll_until("the killed server's workers to die", EXIT_TIMEOUT, || {
            let left: Vec<i32> = self
                .worker_pids
                .iter()
                .copied()
                .filter(|&p| is_alive(p))
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("still alive: {left:?}"))
            }
        });
    }

    /// SIGTERM, waits for a clean exit (hang guard `EXIT_TIMEOUT`), and
    /// returns the stats file it wrote.
    #[track_caller]
    pub fn stop(&mut self) -> Stats {
        kill(self.master_pid, SIGTERM).unwrap_or_else(|e| panic!("cannot stop the master: {e}"));
        let status = self.wait_exit();
        assert!(
            status.success(),
            "{}: exited with {status} after SIGTERM; stderr:\n{}",
            self.strategy,
            self.stderr()
        );
        let path = self.dir.path().join("stats.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: no stats file after SIGTERM: {e}", self.strategy));
        Stats::parse(&text)
    }

    #[track_caller]
    fn wait_exit(&mut self) -> ExitStatus {
        if let Some(s) = self.exit {
            return s;
        }
        let status = wait_with_deadline(&mut self.child, EXIT_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "{}: master {} still running {EXIT_TIMEOUT:?} after the signal; stderr:\n{}",
                self.strategy,
                self.master_pid,
                self.stderr()
            )
        });
        self.exit = Some(status);
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Workers die with the master, but a test must not rely on the code
        // under test to clean up after it; SIGKILL also ends stopped ones.
        for &(pid, start) in &self.worker_starts {
            if is_same_live_process(pid, start) {
                let _ = kill(pid, SIGKILL);
            }
        }
    }
}

/// What one worker process reported in the stats file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerStats {
    /// Connections it accepted (or, for master-pass, received).
    pub connections: u64,
    /// 200 responses fully written.
    pub requests: u64,
}

/// The parts of a `--stats-out` file the tests use.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Per worker pid.
    pub workers: BTreeMap<i32, WorkerStats>,
    /// The whole document, for messages.
    pub raw: Value,
}

impl Stats {
    #[track_caller]
    fn parse(text: &str) -> Stats {
        let raw: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("stats file is not JSON ({e}): {text}"));
        let field = |w: &Value, name: &str| {
            w[name]
                .as_u64()
                .unwrap_or_else(|| panic!("stats worker entry has no integer {name:?}: {w}"))
        };
        let mut workers = BTreeMap::new();
        for w in raw["workers"]
            .as_array()
            .unwrap_or_else(|| panic!("stats file has no \"workers\" array: {text}"))
        {
            let pid = field(w, "pid") as i32;
            let entry = WorkerStats {
                connections: field(w, "connections"),
                requests: field(w, "requests"),
            };
            assert!(
                workers.insert(pid, entry).is_none(),
                "pid {pid} appears twice in the stats file: {text}"
            );
        }
        Stats { workers, raw }
    }

    /// Requests over all workers.
    pub fn total_requests(&self) -> u64 {
        self.workers.values().map(|w| w.requests).sum()
    }

    /// Connections over all workers.
    pub fn total_connections(&self) -> u64 {
        self.workers.values().map(|w| w.connections).sum()
    }
}
