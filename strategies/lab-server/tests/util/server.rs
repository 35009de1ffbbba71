//! Running the real `lab-server` binary: start it and wait for its ready line,
//! stop it, and make sure a failing test never leaves a process behind.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::procfs::{is_alive, live_children, stat};
use super::sys::{kill, SIGKILL, SIGTERM};
use super::{poll_until, EXIT_TIMEOUT, READY_TIMEOUT};

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_lab-server");

/// The master process; its Drop SIGKILLs the master and every process of the
/// server it has seen, so a test that panics halfway leaks nothing even if
/// `PR_SET_PDEATHSIG` were broken.
struct Proc {
    child: Child,
    exit: Option<ExitStatus>,
    /// `(pid, starttime)` of every server process seen; starttime guards
    /// against signalling a recycled pid.
    seen: Arc<Mutex<Vec<(i32, u64)>>>,
}

impl Proc {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn remember_children(&self) {
        let mut seen = self.seen.lock().unwrap();
        for pid in live_children(self.pid()) {
            if let Some(s) = stat(pid) {
                if !seen.contains(&(pid, s.starttime)) {
                    seen.push((pid, s.starttime));
                }
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exit.is_none() {
            self.remember_children();
            let _ = kill(self.pid(), SIGKILL);
            let _ = self.child.wait();
        }
        for &(pid, start) in self.seen.lock().unwrap().iter() {
            if matches!(stat(pid), Some(s) if s.starttime == start) && is_alive(pid) {
                let _ = kill(pid, SIGKILL);
            }
        }
    }
}

/// A running `lab-server`, started by `Server::start`.
pub struct Server {
    proc: Proc,
    /// `--strategy` it was started with.
    pub strategy: String,
    /// `--workers` it was started with.
    pub workers: usize,
    /// The ready line as printed (without the newline).
    pub ready_line: String,
    /// The ready line parsed.
    pub ready: Value,
    /// `addr` from the ready line.
    pub addr: SocketAddr,
    /// `master_pid` from the ready line.
    pub master_pid: i32,
    /// `worker_pids` from the ready line.
    pub worker_pids: Vec<i32>,
    stdout_rest: Arc<Mutex<Vec<String>>>,
    stdout_closed: Arc<AtomicBool>,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `lab-server --strategy S --workers N --listen 127.0.0.1:0 EXTRA...`
    /// and waits (at most `READY_TIMEOUT`) for its ready line.
    #[track_caller]
    pub fn start(strategy: &str, workers: usize, extra_args: &[&str]) -> Server {
        let child = Command::new(BIN)
            .args([
                "--strategy",
                strategy,
                "--workers",
                &workers.to_string(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {BIN}: {e}"));
        let mut proc = Proc {
            child,
            exit: None,
            seen: Arc::default(),
        };
        let stderr = collect_stderr(proc.child.stderr.take().unwrap());
        let stdout_rest = Arc::new(Mutex::new(Vec::new()));
        let stdout_closed = Arc::new(AtomicBool::new(false));
        let first_line = {
            let (tx, rx) = mpsc::channel();
            let (rest, closed) = (stdout_rest.clone(), stdout_closed.clone());
            let mut out = BufReader::new(proc.child.stdout.take().unwrap());
            thread::spawn(move || {
                let mut first = true;
                loop {
                    let mut line = String::new();
                    match out.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if first => {
                            first = false;
                            let _ = tx.send(line);
                        }
                        Ok(_) => rest.lock().unwrap().push(line),
                    }
                }
                closed.store(true, Ordering::SeqCst);
            });
            rx.recv_timeout(READY_TIMEOUT)
        };
        let what = format!(
            "lab-server --strategy {strategy} --workers {workers} {}",
            extra_args.join(" ")
        );
        let ready_line = match first_line {
            Ok(line) if line.ends_with('\n') => line.trim_end_matches('\n').to_string(),
            Ok(line) => panic!(
                "{what}: stdout ended inside the ready line {line:?}; stderr:\n{}",
                snapshot(&stderr)
            ),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "{what}: no ready line within {READY_TIMEOUT:?}; stderr:\n{}",
                    snapshot(&stderr)
                )
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = wait_with_deadline(&mut proc.child, Duration::from_secs(5));
                proc.exit = status;
                panic!(
                    "{what}: exited ({status:?}) without a ready line; stderr:\n{}",
                    snapshot(&stderr)
                )
            }
        };
        let ready: Value = serde_json::from_str(&ready_line)
            .unwrap_or_else(|e| panic!("{what}: ready line {ready_line:?} is not JSON: {e}"));
        let addr = ready["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| {
                panic!("{what}: ready line has no socket address in \"addr\": {ready_line}")
            });
        let master_pid = ready["master_pid"].as_i64().unwrap_or_else(|| {
            panic!("{what}: ready line has no integer \"master_pid\": {ready_line}")
        }) as i32;
        let worker_pids: Vec<i32> = ready["worker_pids"]
            .as_array()
            .unwrap_or_else(|| {
                panic!("{what}: ready line has no array \"worker_pids\": {ready_line}")
            })
            .iter()
            .map(|p| {
                p.as_i64()
                    .unwrap_or_else(|| panic!("{what}: worker pid {p} is not an integer"))
                    as i32
            })
            .collect();
        proc.remember_children();
        Server {
            proc,
            strategy: strategy.to_string(),
            workers,
            ready_line,
            ready,
            addr,
            master_pid,
            worker_pids,
            stdout_rest,
            stdout_closed,
            stderr,
        }
    }

    /// The pid of the process the test spawned (should equal `master_pid`).
    pub fn spawned_pid(&self) -> i32 {
        self.proc.pid()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Live children of the master right now (remembered for cleanup).
    pub fn live_workers(&self) -> std::collections::BTreeSet<i32> {
        self.proc.remember_children();
        live_children(self.master_pid)
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        snapshot(&self.stderr)
    }

    /// Sends `sig` to the master.
    #[track_caller]
    pub fn signal(&self, sig: i32) {
        self.proc.remember_children();
        kill(self.master_pid, sig)
            .unwrap_or_else(|e| panic!("{}: cannot signal master: {e}", self.strategy));
    }

    /// Waits (at most `EXIT_TIMEOUT`) for the master to exit.
    #[track_caller]
    pub fn wait_exit(&mut self) -> ExitStatus {
        if let Some(s) = self.proc.exit {
            return s;
        }
        match wait_with_deadline(&mut self.proc.child, EXIT_TIMEOUT) {
            Some(s) => {
                self.proc.exit = Some(s);
                s
            }
            None => panic!(
                "{}: master {} still running {EXIT_TIMEOUT:?} after the signal; stderr:\n{}",
                self.strategy,
                self.master_pid,
                self.stderr()
            ),
        }
    }

    /// SIGTERM to the master, then waits for it to exit (hang guard `EXIT_TIMEOUT`).
    #[track_caller]
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(SIGTERM);
        self.wait_exit()
    }

    /// Every server process ever seen (master included) that is still alive.
    pub fn survivors(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .proc
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|&(p, _)| p)
            .collect();
        pids.extend(&self.worker_pids);
        pids.push(self.master_pid);
        pids.sort();
        pids.dedup();
        pids.into_iter().filter(|&p| is_alive(p)).collect()
    }

    /// Polls until no process of the server is alive (hang guard `EXIT_TIMEOUT`).
    #[track_caller]
    pub fn assert_nothing_left_running(&self) {
        poll_until(
            &format!("{}: every server process to be gone", self.strategy),
            EXIT_TIMEOUT,
            || {
                let left = self.survivors();
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("still alive: {left:?}"))
                }
            },
        )
    }

    /// Lines printed on stdout after the ready line, once stdout has closed
    /// (panics if some process still holds it open after `EXIT_TIMEOUT`).
    #[track_caller]
    pub fn stdout_after_ready(&self) -> Vec<String> {
        poll_until(
            &format!("{}: stdout to close", self.strategy),
            EXIT_TIMEOUT,
            || {
                if self.stdout_closed.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("still open".into())
                }
            },
        );
        self.stdout_rest.lock().unwrap().clone()
    }

    /// Polls until stderr contains `needle`.
    #[track_caller]
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) {
        poll_until(
            &format!("{}: stderr to contain {needle:?}", self.strategy),
            timeout,
            || {
                let e = self.stderr();
                if e.contains(needle) {
                    Ok(())
                } else {
                    Err(format!("stderr so far:\n{e}"))
                }
            },
        )
    }
}

fn collect_stderr(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    text
}

fn snapshot(text: &Arc<Mutex<String>>) -> String {
    text.lock().unwrap().clone()
}

fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
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

/// How a run that was expected to end by itself ended.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// All of stdout.
    pub stdout: String,
    /// All of stderr.
    pub stderr: String,
}

/// Runs `lab-server ARGS` expecting it to exit by itself. Panics (after
/// killing it) if it is still running after `EXIT_TIMEOUT`, or if its pipes
/// stay open after it exits (a leftover process holds them).
#[track_caller]
pub fn run_to_exit(args: &[&str]) -> Finished {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {BIN}: {e}"));
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut s = Vec::new();
            let _ = pipe.read_to_end(&mut s);
            let _ = tx.send(String::from_utf8_lossy(&s).into_owned());
        });
        rx
    };
    let out = read_all(Box::new(child.stdout.take().unwrap()));
    let err = read_all(Box::new(child.stderr.take().unwrap()));
    let Some(status) = wait_with_deadline(&mut child, EXIT_TIMEOUT) else {
        let pid = child.id() as i32;
        let kids = live_children(pid);
        let _ = kill(pid, SIGKILL);
        let _ = child.wait();
        for k in kids {
            let _ = kill(k, SIGKILL);
        }
        panic!("lab-server {args:?} still running after {EXIT_TIMEOUT:?} (expected it to fail at once)");
    };
    let take = |rx: mpsc::Receiver<String>, name: &str| {
        rx.recv_timeout(EXIT_TIMEOUT).unwrap_or_else(|_| {
            panic!("lab-server {args:?} exited ({status}) but its {name} is still held open by a leftover process")
        })
    };
    Finished {
        status,
        stdout: take(out, "stdout"),
        stderr: take(err, "stderr"),
    }
}

/// A fresh empty directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a new unique directory.
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "lab-server-test-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Names of the entries in the directory.
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
