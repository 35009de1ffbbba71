//! Interrupting `harness bench` at any moment — SIGINT, SIGTERM, or SIGKILL
//! of the harness — leaves no `lab-server`, worker, `loadgen` or reference
//! server (nginx, Node.js cluster, their workers) behind, and no result file
//! that is not whole JSON; a SIGINT/SIGTERM still ends the session with exit
//! 130 and a summary, and a SIGKILLed session can be reported afterwards
//! (`harness report DIR`) without tripping over what the kill left, as can
//! the next bench.
//!
//! Each test runs a real bench (a lab strategy, `nginx:reuseport`,
//! `node:rr`; an open-loop workload, so that it calibrates first) and
//! interrupts it at one point with one signal:
//!
//! | point                             | signals          |
//! |-----------------------------------|------------------|
//! | calibration (before any run file) | SIGTERM, SIGKILL |
//! | an nginx run (workers serving)    | SIGKILL, SIGTERM |
//! | a node run (workers serving)      | SIGKILL, SIGINT  |
//! | mid-session, 2 run files written  | SIGKILL, SIGINT  |
//!
//! These tests need nginx and node installed (`just setup-references`);
//! without them they fail with that advice, never pass by skipping. They
//! run one at a time ([`serial`]): each checks that no process of this
//! build outlives the harness, which a neighbour would confuse.

mod util;

use util::ps::{self, Proc};
use util::{become_subreaper, ensure_siblings, temp_dir};

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use harness::measure::targets::{nginx, node};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a bench may take to reach the point where it is interrupted.
const REACH: Duration = Duration::from_secs(60);
/// How long an interrupted harness may take to exit (SIGINT/SIGTERM: it
/// stops the run's server and writes the summary and report).
const EXIT: Duration = Duration::from_secs(30);
/// How long what the harness started may take to be gone after it exited.
const GONE: Duration = Duration::from_secs(5);

fn serial() -> MutexGuard<'static, ()> {
    let guard = util::serial();
    // Orphans of the harness become our children, where they are seen.
    become_subreaper();
    guard
}

/// Fails (never skips) when a reference server is missing.
#[track_caller]
fn require_references() {
    for r in [nginx::available(), node::available()] {
        if let Err(e) = r {
            panic!("{e}. These tests interrupt benches of the reference servers and fail without them.");
        }
    }
}

/// Where the bench is interrupted.
#[derive(Clone, Copy, Debug)]
enum Point {
    /// Calibration's load generator runs; no run file yet.
    Calibration,
    /// An nginx master of this bench and its workers serve, under load.
    Nginx,
    /// A Node.js primary of this bench and its workers serve, under load.
    Node,
    /// At least this many run files are written.
    AfterRuns(usize),
}

/// One `harness bench` of this test.
struct Bench {
    scratch: PathBuf,
    results: PathBuf,
    harness: PathBuf,
    lab_server: String,
    loadgen: String,
    stderr_path: PathBuf,
    child: Child,
}

impl Bench {
    fn start(name: &str) -> Bench {
        let harness = ensure_siblings();
        let bin_dir = harness.parent().expect("bin dir").to_path_buf();
        let scratch = std::fs::canonicalize(temp_dir(name)).unwrap();
        let results = scratch.join("results");
        let stderr_path = scratch.join("stderr.txt");
        let child = Command::new(&harness)
            .args([
                "bench",
                "--strategies",
                "reuseport,nginx:reuseport,node:rr",
                // open-50 makes the bench calibrate first (nginx cannot
                // serve it and skips it).
                "--workloads",
                "keepalive,open-50",
                "--workers",
                "2",
                "--rounds",
                "2",
                "--duration",
                "300ms",
                "--warmup",
                "0s",
                "--seed",
                "7",
            ])
            .arg("--results")
            .arg(&results)
            // Every process the harness starts inherits this directory:
            // that is how a stray worker ("nginx: worker process", a node
            // worker) is recognised as this test's.
            .current_dir(&scratch)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        Bench {
            scratch,
            results,
            lab_server: bin_dir.join("lab-server").display().to_string(),
            loadgen: bin_dir.join("loadgen").display().to_string(),
            harness,
            stderr_path,
            child,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The session directory, once the harness has created it.
    fn session(&self) -> Option<PathBuf> {
        std::fs::read_dir(&self.results)
            .ok()?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .find(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
    }

    /// The run files written so far.
    fn run_files(&self) -> Vec<PathBuf> {
        let Some(dir) = self.session() else {
            return Vec::new();
        };
        std::fs::read_dir(dir.join("runs"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect()
    }

    /// Whether `p` is one of the processes this bench started (or their
    /// descendants): it works in, or names, this test's directory, or runs
    /// this build's lab-server or loadgen.
    fn ours(&self, p: &Proc) -> bool {
        p.refers_to(&self.scratch)
            || p.cmdline.starts_with(&self.lab_server)
            || p.cmdline.starts_with(&self.loadgen)
    }

    /// Waits until the bench is at `point`; the processes of this bench
    /// alive then.
    fn reach(&mut self, point: Point) -> Vec<Proc> {
        let deadline = Instant::now() + REACH;
        loop {
            let procs: Vec<Proc> = ps::all()
                .into_iter()
                .filter(|p| p.alive() && self.ours(p))
                .collect();
            let loading = |work: &str| {
                procs
                    .iter()
                    .any(|p| p.comm == "loadgen" && p.cmdline.contains(work))
            };
            let named = |comm: &str| procs.iter().filter(|p| p.comm == comm).count();
            let runs = self.run_files().len();
            let there = match point {
                Point::Calibration => runs == 0 && loading("/.work-0/"),
                // A master (its title names the configuration) and its
                // two workers, and the load on them.
                Point::Nginx => named("nginx") >= 3 && loading("/.work-"),
                // The primary and its two workers.
                Point::Node => named("node") >= 3 && loading("/.work-"),
                Point::AfterRuns(n) => runs >= n,
            };
            if there {
                return procs;
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!(
                    "harness bench ended ({st}) before it reached {point:?}: {}",
                    self.stderr()
                );
            }
            if Instant::now() >= deadline {
                self.abort();
                panic!(
                    "harness bench did not reach {point:?} within {REACH:?} ({runs} runs): {}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `sig` to the harness and waits for it to exit.
    fn interrupt(&mut self, sig: Signal) -> ExitStatus {
        kill(Pid::from_raw(self.child.id() as i32), sig).unwrap();
        let deadline = Instant::now() + EXIT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() >= deadline {
                self.abort();
                panic!(
                    "the harness did not exit within {EXIT:?} of {sig}: {}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the harness and whatever of this bench is left (a failing test
    /// does not leave it to the next).
    fn abort(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(200));
        let left: Vec<i32> = ps::all()
            .into_iter()
            .filter(|p| self.ours(p))
            .map(|p| p.pid)
            .collect();
        ps::kill_all(left);
    }

    /// After the harness has exited: within [`GONE`], none of `seen` (the
    /// processes of the bench when it was interrupted) is alive, no process
    /// of this bench is, and no orphan became our child and lives on.
    #[track_caller]
    fn assert_nothing_left(&mut self, what: &str, seen: &[Proc]) {
        let deadline = Instant::now() + GONE;
        loop {
            ps::reap_zombies();
            let mut left: Vec<Proc> = ps::all()
                .into_iter()
                .filter(|p| p.alive() && self.ours(p))
                .collect();
            for s in seen {
                if let Some(p) = ps::info(s.pid) {
                    if p.alive() && p.comm == s.comm && !left.iter().any(|l| l.pid == p.pid) {
                        left.push(p);
                    }
                }
            }
            let children = ps::live_children();
            if left.is_empty() && children.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                let err = self.stderr();
                ps::kill_all(left.iter().chain(&children).map(|p| p.pid));
                let show = |ps: &[Proc]| {
                    ps.iter()
                        .map(|p| format!("{} {} ({})", p.pid, p.comm, p.cmdline.trim()))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                panic!(
                    "{what}: processes left behind {GONE:?} after the harness exited: [{}]; our children: [{}]; the bench had [{}]; harness said: {err}",
                    show(&left),
                    show(&children),
                    show(seen)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every `*.json` file of the session (run files, summary, session,
    /// what a run's scratch directory holds) is whole JSON.
    #[track_caller]
    fn assert_json_whole(&self, what: &str) -> PathBuf {
        let dir = self
            .session()
            .unwrap_or_else(|| panic!("{what}: no session directory: {}", self.stderr()));
        let mut stack = vec![dir.clone()];
        let mut n = 0;
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if e.file_type().unwrap().is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "json") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                        panic!("{what}: {} is not whole JSON: {e}", p.display());
                    }
                    n += 1;
                }
            }
        }
        assert!(n >= 1, "{what}: session.json at least");
        dir
    }

    /// `harness report DIR`.
    fn report(&self, dir: &Path) -> std::process::Output {
        Command::new(&self.harness)
            .arg("report")
            .arg(dir)
            .current_dir(&self.scratch)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// Runs a bench, interrupts it at `point` with `sig` and checks what is
/// left; returns the bench and the session directory.
fn interrupt_at(name: &str, point: Point, sig: Signal) -> (Bench, PathBuf) {
    require_references();
    let mut bench = Bench::start(name);
    let seen = bench.reach(point);
    let status = bench.interrupt(sig);
    let what = format!("{point:?}, {sig}");
    bench.assert_nothing_left(&what, &seen);
    let dir = bench.assert_json_whole(&what);
    let err = bench.stderr();
    match sig {
        Signal::SIGKILL => {
            assert_eq!(status.signal(), Some(libc::SIGKILL), "{what}: {status}");
            check_report_after_kill(&bench, &dir, &what);
        }
        _ => {
            assert_eq!(
                status.code(),
                Some(130),
                "{what}: an interrupted bench exits 130: {err}"
            );
            assert!(
                dir.join("summary.json").is_file(),
                "{what}: the partial session has its summary: {err}"
            );
            assert!(
                err.contains("interrupted"),
                "{what}: it says it was interrupted: {err}"
            );
        }
    }
    (bench, dir)
}

/// After a SIGKILL: `harness report DIR` renders the runs written, skipping
/// a torn temporary file such as a writer killed before its rename leaves;
/// with no run file it says so.
#[track_caller]
fn check_report_after_kill(bench: &Bench, dir: &Path, what: &str) {
    let runs = bench.run_files().len();
    let torn = dir
        .join("runs")
        .join(".0099-reuseport-keepalive-w2-r2.json.tmp-1-0");
    std::fs::write(&torn, "{\"schema\": \"prefork-lab.harness.ru").unwrap();
    assert!(harness::store::results::is_temp_file(&torn));
    let out = bench.report(dir);
    let err = String::from_utf8_lossy(&out.stderr);
    if runs == 0 {
        assert!(
            !out.status.success() && err.contains("no run files"),
            "{what}: a session killed before its first run has nothing to report, and says so: {} {err}",
            out.status
        );
        return;
    }
    assert!(
        out.status.success(),
        "{what}: harness report on a killed session with {runs} runs: {err}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert!(summary["cells"].is_array(), "{what}: {summary}");
    assert!(dir.join("report.md").is_file(), "{what}");
    // It says it is partial, and why it thinks so.
    let incomplete = summary["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["kind"] == "incomplete")
        .unwrap_or_else(|| panic!("{what}: no incomplete warning: {}", summary["warnings"]));
    assert_eq!(
        incomplete["completed"].as_u64(),
        Some(runs as u64),
        "{what}"
    );
    assert!(
        incomplete["planned"].as_u64().unwrap() > runs as u64,
        "{what}"
    );
    assert!(
        std::fs::read_to_string(dir.join("report.md"))
            .unwrap()
            .contains("the session is incomplete"),
        "{what}"
    );
}

#[test]
fn sigterm_during_calibration() {
    let _serial = serial();
    let (bench, dir) = interrupt_at("int-calibration", Point::Calibration, Signal::SIGTERM);
    assert!(bench.run_files().is_empty(), "{}", dir.display());
    let _ = std::fs::remove_dir_all(&bench.scratch);
}

#[test]
fn sigkill_during_calibration() {
    let _serial = serial();
    let (bench, _) = interrupt_at("int-calibration-kill", Point::Calibration, Signal::SIGKILL);
    assert!(bench.run_files().is_empty());
    let _ = std::fs::remove_dir_all(&bench.scratch);
}

#[test]
fn sigterm_while_nginx_serves() {
    let _serial = serial();
    let (bench, _) = interrupt_at("int-nginx-term", Point::Nginx, Signal::SIGTERM);
    let _ = std::fs::remove_dir_all(&bench.scratch);
}

#[test]
fn sigint_mid_session() {
    let _serial = serial();
    let (bench, dir) = interrupt_at("int-mid-int", Point::AfterRuns(2), Signal::SIGINT);
    let runs = bench.run_files().len();
    assert!(runs >= 2, "{}", dir.display());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert!(summary["cells"].is_array(), "{summary}");
    let _ = std::fs::remove_dir_all(&bench.scratch);
}

#[test]
fn sigkill_while_nginx_serves() {
    let _serial = serial();
    let (bench, _) = interrupt_at("int-nginx-kill", Point::Nginx, Signal::SIGKILL);
    let _ = std::fs::remove_dir_all(&bench.scratch);
}

#[test]
fn sigint_while_node_serves() {
    let _serial = serial();
    let (bench, _) = interrupt_at("int-node-int", Point::Node, Signal::SIGINT);
    let _ = std::fs::remove_dir_all(&bench.scratch);
}

#[test]
fn sigkill_while_node_serves() {
    let _serial = serial();
    let (bench, _) = interrupt_at("int-node-kill", Point::Node, Signal::SIGKILL);
    let _ = std::fs::remove_dir_all(&bench.scratch);
}

/// Also: the next bench into the same results directory runs as usual
/// beside the killed session and what it left (a run's scratch directory,
/// temporary files).
#[test]
fn sigkill_mid_session_then_report_and_bench_again() {
    let _serial = serial();
    let (bench, killed) = interrupt_at("int-mid-kill", Point::AfterRuns(2), Signal::SIGKILL);
    assert!(bench.run_files().len() >= 2);
    let out = Command::new(&bench.harness)
        .args([
            "bench",
            "--strategies",
            "reuseport",
            "--workloads",
            "keepalive",
            "--workers",
            "2",
            "--rounds",
            "1",
            "--duration",
            "200ms",
            "--warmup",
            "0s",
        ])
        .arg("--results")
        .arg(&bench.results)
        .current_dir(&bench.scratch)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the next bench after a killed one: {} {err}",
        out.status
    );
    let latest = std::fs::canonicalize(bench.results.join("latest")).unwrap();
    assert_ne!(latest, killed, "latest is the new session");
    assert!(latest.join("summary.json").is_file());
    let _ = std::fs::remove_dir_all(&bench.scratch);
}
