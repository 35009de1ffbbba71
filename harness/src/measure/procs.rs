//! The processes of a run: the server and the load generator, started from
//! the same build as the harness, each bounded in time, and torn down so that
//! nothing outlives the run (or the harness: children get
//! `PR_SET_PDEATHSIG=SIGKILL` through `setpriv --pdeathsig`, and a reference
//! server runs under `harness guard`, which also kills what its master
//! forked).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::model::record::ServerStats;

/// The lab's binaries, found beside the harness's own executable.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `lab-server`.
    pub lab_server: PathBuf,
    /// `loadgen`.
    pub loadgen: PathBuf,
}

impl Binaries {
    /// Finds `lab-server` and `loadgen` in the harness's directory (a cargo
    /// target directory builds them side by side).
    pub fn locate() -> Result<Binaries, String> {
        let me = std::env::current_exe()
            .map_err(|e| format!("cannot find the harness executable: {e}"))?;
        let mut dir = me.parent().map(Path::to_path_buf).unwrap_or_default();
        // Test executables live in target/<profile>/deps.
        if dir.ends_with("deps") {
            dir.pop();
        }
        let find = |name: &str| {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(format!(
                    "{} not found beside the harness: build the workspace first (cargo build --release --workspace)",
                    p.display()
                ))
            }
        };
        Ok(Binaries {
            lab_server: find("lab-server")?,
            loadgen: find("loadgen")?,
        })
    }
}

/// A command that dies with the harness (`setpriv --pdeathsig KILL`), optionally
/// pinned to `cpus` (`taskset`).
pub fn guarded(program: &Path, cpus: &[usize]) -> Command {
    let mut argv: Vec<String> = Vec::new();
    if Path::new("/usr/bin/setpriv").exists() {
        argv.extend([
            "/usr/bin/setpriv".into(),
            "--pdeathsig".into(),
            "KILL".into(),
            "--".into(),
        ]);
    }
    if !cpus.is_empty() {
        let list: Vec<String> = cpus.iter().map(|c| c.to_string()).collect();
        argv.extend(["taskset".into(), "-c".into(), list.join(",")]);
    }
    argv.push(program.display().to_string());
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    cmd
}

/// The `harness` executable that runs `harness guard`: this process when it
/// is the harness, else (a test executable in `target/<profile>/deps`) the
/// one cargo built beside it.
pub fn harness_bin() -> Result<PathBuf, String> {
    let me =
        std::env::current_exe().map_err(|e| format!("cannot find the harness executable: {e}"))?;
    if me.file_name().is_some_and(|n| n == "harness") {
        return Ok(me);
    }
    let mut dir = me.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join("harness");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found: the reference servers run under `harness guard` (build the workspace first)",
            p.display()
        ))
    }
}

/// A command for a server we did not write (nginx, node): PROGRAM runs under
/// `harness guard` (see [`crate::measure::guard`]), which dies with the harness and
/// then kills and reaps everything PROGRAM started, workers included; PROGRAM
/// itself also gets `setpriv --pdeathsig KILL` (should the guard be killed)
/// and is pinned to `cpus` (`taskset`). The spawned child is the guard;
/// PROGRAM is its only child, the leader of a process group of its own (see
/// [`crate::measure::targets::external::ServerTree::guarded`]).
pub fn guarded_external(program: &Path, cpus: &[usize]) -> Result<Command, String> {
    let inner = guarded(program, cpus);
    let mut cmd = Command::new(harness_bin()?);
    cmd.arg(crate::measure::guard::SUBCOMMAND)
        .arg("--parent")
        .arg(std::process::id().to_string())
        .arg("--")
        .arg(inner.get_program())
        .args(inner.get_args());
    Ok(cmd)
}

/// A started server.
pub struct RunningServer {
    child: Option<Child>,
    /// Address from the ready line.
    pub addr: String,
    /// Master pid.
    pub master_pid: i32,
    /// Worker pids from the ready line.
    pub worker_pids: Vec<i32>,
    stats_path: PathBuf,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// lab-server's ready line.
#[derive(serde::Deserialize)]
pub(crate) struct ReadyLine {
    event: String,
    /// `IP:PORT`.
    pub addr: String,
    /// The master's pid.
    pub master_pid: i32,
    /// The workers' pids.
    pub worker_pids: Vec<i32>,
}

impl ReadyLine {
    /// Parses the first line a lab-server printed.
    pub(crate) fn parse(line: &str) -> Result<ReadyLine, String> {
        let ready: ReadyLine = serde_json::from_str(line)
            .map_err(|e| format!("lab-server's ready line {line:?}: {e}"))?;
        if ready.event != "ready" {
            return Err(format!(
                "lab-server printed {line:?} instead of its ready line"
            ));
        }
        Ok(ready)
    }
}

/// A started server's output: all of its stderr, collected on a thread, and
/// its first stdout line (the rest is drained, so it never blocks on stdout).
pub(crate) struct ServerOutput {
    /// Joins to all of stderr once the process (or the ssh session) ends.
    pub stderr: std::thread::JoinHandle<String>,
    /// The first line: `None` if stdout closed first.
    pub first_line: mpsc::Receiver<Option<std::io::Result<String>>>,
}

/// Takes `child`'s piped stdout and stderr.
pub(crate) fn watch_output(child: &mut Child) -> ServerOutput {
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (tx, first_line) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        for _ in lines {}
    });
    ServerOutput { stderr, first_line }
}

/// Starts `lab-server --strategy S --workers N` and waits for its ready line.
pub fn start_lab_server(
    bins: &Binaries,
    strategy: &str,
    workers: usize,
    cpus: &[usize],
    stats_path: &Path,
    ready_timeout: Duration,
) -> Result<RunningServer, String> {
    start_lab_server_with(
        bins,
        strategy,
        workers,
        cpus,
        stats_path,
        ready_timeout,
        &[],
    )
}

/// [`start_lab_server`] with extra server arguments (the regression check's
/// test-only slowdown).
pub fn start_lab_server_with(
    bins: &Binaries,
    strategy: &str,
    workers: usize,
    cpus: &[usize],
    stats_path: &Path,
    ready_timeout: Duration,
    extra: &[String],
) -> Result<RunningServer, String> {
    start_lab_server_on(
        bins,
        strategy,
        workers,
        cpus,
        stats_path,
        ready_timeout,
        extra,
        "127.0.0.1",
    )
}

/// [`start_lab_server_with`] listening on `ip` (an address load generators
/// on other hosts can reach) instead of loopback.
#[allow(clippy::too_many_arguments)]
pub fn start_lab_server_on(
    bins: &Binaries,
    strategy: &str,
    workers: usize,
    cpus: &[usize],
    stats_path: &Path,
    ready_timeout: Duration,
    extra: &[String],
    ip: &str,
) -> Result<RunningServer, String> {
    let mut cmd = guarded(&bins.lab_server, cpus);
    cmd.args(extra);
    cmd.args([
        "--strategy",
        strategy,
        "--workers",
        &workers.to_string(),
        "--listen",
        &format!("{ip}:0"),
        "--stats-out",
    ])
    .arg(stats_path)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bins.lab_server.display()))?;
    let output = watch_output(&mut child);
    let mut server = RunningServer {
        child: Some(child),
        addr: String::new(),
        master_pid: 0,
        worker_pids: Vec::new(),
        stats_path: stats_path.to_path_buf(),
        stderr: Some(output.stderr),
    };
    let line = match output.first_line.recv_timeout(ready_timeout) {
        Ok(Some(Ok(line))) => line,
        Ok(_) => {
            let err = server.kill_and_collect_stderr();
            return Err(format!(
                "lab-server --strategy {strategy} exited before it was ready: {}",
                err.trim()
            ));
        }
        Err(_) => {
            let err = server.kill_and_collect_stderr();
            return Err(format!(
                "lab-server --strategy {strategy} was not ready within {ready_timeout:?}{}",
                if err.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", err.trim())
                }
            ));
        }
    };
    let ready = ReadyLine::parse(&line)?;
    server.addr = ready.addr;
    server.master_pid = ready.master_pid;
    server.worker_pids = ready.worker_pids;
    Ok(server)
}

impl RunningServer {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// The master's live children (workers, replaced ones included).
    pub fn live_workers(&self) -> Vec<i32> {
        children_of(self.master_pid)
    }

    fn kill_and_collect_stderr(&mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }

    /// SIGTERM, wait (bounded), and read the stats file it wrote.
    pub fn stop(mut self, timeout: Duration) -> Result<Option<ServerStats>, String> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "lab-server (pid {}) did not stop within {timeout:?}; killed",
                        self.master_pid
                    ));
                }
            }
        }
        if !self.stats_path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&self.stats_path)
            .map_err(|e| format!("reading the server's stats: {e}"))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("the server's stats file is not valid: {e}"))
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        // A run that failed half-way must not leave its server behind.
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Pids whose parent is `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) {
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<i32>().ok());
                if ppid == Some(pid) {
                    out.push(child);
                }
            }
        }
    }
    out.sort_unstable();
    out
}

/// Runs loadgen to completion (bounded by `hang_guard`), or until `stop`.
pub fn run_loadgen(
    bins: &Binaries,
    args: &[String],
    cpus: &[usize],
    json_path: &Path,
    hang_guard: Duration,
    stop: &AtomicBool,
) -> Result<loadgen::result::LoadResult, String> {
    let mut cmd = guarded(&bins.loadgen, cpus);
    cmd.args(args)
        .arg("--quiet")
        .arg("--json")
        .arg(json_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bins.loadgen.display()))?;
    let mut stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + hang_guard;
    let status = loop {
        if stop.load(Ordering::Relaxed) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("interrupted".into());
        }
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("loadgen ran past {hang_guard:?}; killed"));
            }
        }
    };
    let err = err_thread.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("loadgen failed: {}", err.trim()));
    }
    loadgen::result::read_json(json_path)
}
