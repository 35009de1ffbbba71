//! How the master of master-pass accepts, seen with strace on the real
//! master under a burst of connections from the real `loadgen`:
//! - `master-pass` (Node-exact: libuv >= 1.45 `uv__server_io`, the listener
//!   level-triggered) makes at most one `accept4` per `epoll_wait` and never
//!   one that finds the queue empty: the next connection is picked up by the
//!   next `epoll_wait`, which the still-ready listener returns at once;
//! - `master-pass:reroute` (libuv <= 1.44, edge-triggered) accepts until
//!   `EAGAIN`: several `accept4` after one `epoll_wait` when connections
//!   queue up (strace slows the master, so they do), and one `EAGAIN` per
//!   wakeup.
//!
//! The stats file's master counters (`listener_wakeups`,
//! `connections_accepted`, `accept_eagain`) must say the same.
//!
//! Needs strace (scripts/test installs it).

mod util;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use util::load::{errors, ok, Load};
use util::*;

/// `strace` on the master only (no `-f`: the workers exist already and are
/// not followed), the accept and epoll calls, into `out`; returns once
/// strace says it is attached.
fn trace_master(pid: i32, out: &Path) -> Child {
    let mut child = Command::new("strace")
        .args(["-e", "trace=accept4,epoll_wait,epoll_pwait", "-o"])
        .arg(out)
        .args(["-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace is not installed: run scripts/test (or apt-get install -y strace)");
    let mut line = String::new();
    BufReader::new(child.stderr.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("attached"), "strace: {line}");
    child
}

/// The `accept4` calls between one `epoll_wait` and the next.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    accepted: usize,
    eagain: usize,
}

/// The master's calls, one window per `epoll_wait` (calls before the first
/// one are left out).
fn windows(text: &str) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    for line in text.lines() {
        if line.starts_with("epoll_wait(") || line.starts_with("epoll_pwait(") {
            out.push(Window::default());
        } else if line.starts_with("accept4(") {
            let Some(w) = out.last_mut() else { continue };
            let result = line.rsplit_once(" = ").map(|(_, r)| r.trim());
            match result {
                Some(r) if r.starts_with("-1 EAGAIN") => w.eagain += 1,
                Some(r) if r.parse::<i32>().is_ok_and(|fd| fd >= 0) => w.accepted += 1,
                _ => {} // another error, or an unfinished line
            }
        }
    }
    out
}

/// What one traced burst showed.
struct Burst {
    windows: Vec<Window>,
    stats: serde_json::Value,
    trace: String,
}

impl Burst {
    fn accepted(&self) -> usize {
        self.windows.iter().map(|w| w.accepted).sum()
    }
    fn eagain(&self) -> usize {
        self.windows.iter().map(|w| w.eagain).sum()
    }
    fn most_in_one_window(&self) -> usize {
        self.windows.iter().map(|w| w.accepted).max().unwrap_or(0)
    }
    fn master(&self, field: &str) -> u64 {
        self.stats["master"][field]
            .as_u64()
            .unwrap_or_else(|| panic!("master has no {field}: {}", self.stats))
    }
    fn summary(&self) -> String {
        format!(
            "{} epoll_waits, {} accepted, {} EAGAIN, at most {} accepted in one window; master {}",
            self.windows.len(),
            self.accepted(),
            self.eagain(),
            self.most_in_one_window(),
            self.stats["master"]
        )
    }
}

/// Runs `strategy` with 2 workers, traces its master through a 1 s burst of
/// 32 concurrent connections that each carry one request (closed loop).
fn traced_burst(strategy: &str) -> Burst {
    let dir = TempDir::new("accept");
    let out = dir.path().join("strace.txt");
    let stats_path = dir.path().join("stats.json");
    let mut server = Server::start(strategy, 2, &["--stats-out", stats_path.to_str().unwrap()]);
    let strace = trace_master(server.master_pid, &out);
    let load = Load::start(
        server.addr,
        Duration::from_secs(1),
        &["--mode", "close", "--connections", "32"],
    );
    let result = load.finish();
    util::sys::kill(strace.id() as i32, libc::SIGINT).unwrap();
    let mut strace = strace;
    strace.wait().unwrap();
    let status = server.stop();
    assert_eq!(status.code(), Some(0), "{strategy}: {}", server.stderr());
    server.assert_nothing_left_running();
    assert_eq!(errors(&result), 0, "{strategy}: {}", result["errors"]);
    assert!(ok(&result) > 0, "{strategy}: no request served");
    let trace = std::fs::read_to_string(&out).unwrap();
    Burst {
        windows: windows(&trace),
        stats: read_stats(&stats_path),
        trace,
    }
}

/// The trace's first lines with an accept, for a failure message.
fn excerpt(trace: &str) -> String {
    let first = trace
        .lines()
        .position(|l| l.starts_with("accept4("))
        .unwrap_or(0);
    let lines: Vec<&str> = trace
        .lines()
        .skip(first.saturating_sub(2))
        .take(12)
        .collect();
    lines.join("\n")
}

#[test]
fn master_pass_accepts_one_connection_per_epoll_wait_and_never_finds_the_queue_empty() {
    let b = traced_burst("master-pass");
    let ctx = format!("master-pass: {}\n{}", b.summary(), excerpt(&b.trace));
    assert!(b.accepted() > 0, "{ctx}");
    assert_eq!(b.most_in_one_window(), 1, "{ctx}");
    assert_eq!(b.eagain(), 0, "{ctx}");
    // The counters: one accept per listener wakeup, no EAGAIN.
    assert_eq!(b.master("accept_eagain"), 0, "{ctx}");
    assert_eq!(
        b.master("connections_accepted"),
        b.master("listener_wakeups"),
        "{ctx}"
    );
    assert!(
        b.master("connections_accepted") >= b.accepted() as u64,
        "{ctx}"
    );
}

#[test]
fn master_pass_reroute_accepts_bursts_until_eagain() {
    let b = traced_burst("master-pass:reroute");
    let ctx = format!(
        "master-pass:reroute: {}\n{}",
        b.summary(),
        excerpt(&b.trace)
    );
    assert!(
        b.most_in_one_window() >= 2,
        "no wakeup accepted more than one connection: {ctx}"
    );
    // Every wakeup that accepted ends with the accept that finds the queue
    // empty.
    let with_accepts = b
        .windows
        .iter()
        .filter(|w| w.accepted + w.eagain > 0)
        .count();
    assert!(b.windows.iter().all(|w| w.eagain <= 1), "{ctx}");
    assert_eq!(b.eagain(), with_accepts, "{ctx}");
    // The counters: more accepts than wakeups, one EAGAIN per wakeup.
    assert!(
        b.master("connections_accepted") > b.master("listener_wakeups"),
        "{ctx}"
    );
    assert_eq!(
        b.master("accept_eagain"),
        b.master("listener_wakeups"),
        "{ctx}"
    );
}
