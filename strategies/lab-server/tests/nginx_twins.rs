//! The nginx twins do what nginx 1.22.1's accept path does (see
//! `strategies/shared/src/nginx.rs`), checked on the real processes:
//! - `shared:epoll-exclusive` re-adds the listener to its epoll
//!   (`EPOLL_CTL_DEL` then `EPOLL_CTL_ADD` with `EPOLLEXCLUSIVE`) after a
//!   worker's 1st, 17th, 33rd... accept, as `ngx_reorder_accept_events`:
//!   counted in the stats file, and seen with strace after exactly those
//!   accepts; `shared:epoll-exclusive-raw` never does.
//! - `ngx_accept_disabled` (more than 7/8 of `--max-conns` open): the
//!   epoll-exclusive worker reorders on every such accept; the accept-mutex
//!   worker stops trying the lock, so another worker takes the lock and the
//!   new connections before the busy one is full.
//!
//! Needs strace (scripts/test installs it).

mod util;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use util::load::{self, Load};
use util::procfs::{epoll_entries_for, listen_inodes};
use util::*;

/// The per-worker entries of a stats file, by pid.
fn workers_by_pid(stats: &Value) -> BTreeMap<i32, &Value> {
    stats_workers(stats)
        .iter()
        .map(|w| (uint(w, "pid") as i32, w))
        .collect()
}

/// nginx's arithmetic, written out again here so that the strategy's copy
/// (`strategy_shared::nginx`) is checked against it rather than with it:
/// `(reorders, accepts while backing off)` of a worker that made `accepts`
/// accepts with `--max-conns max` and never closed a connection (so it had
/// `i` open at its `i+1`-th accept).
fn nginx_expected(accepts: u64, max: i64) -> (u64, u64) {
    let (mut reorders, mut disabled_accepts) = (0, 0);
    for i in 0..accepts {
        // ngx_accept_disabled = connection_n / 8 - free_connection_n
        let disabled = max / 8 - (max - i as i64);
        // ngx_reorder_accept_events: `c->requests++ % 16 != 0 && disabled <= 0` skips
        if i % 16 == 0 || disabled > 0 {
            reorders += 1;
        }
        if disabled > 0 {
            disabled_accepts += 1;
        }
    }
    (reorders, disabled_accepts)
}

#[test]
fn epoll_exclusive_reorders_on_the_first_and_every_sixteenth_accept_and_raw_never() {
    for (strategy, reorders) in [
        ("shared:epoll-exclusive", true),
        ("shared:epoll-exclusive-raw", false),
    ] {
        let ctx = format!("strategy {strategy}");
        let dir = TempDir::new("twins");
        let stats_path = dir.path().join("stats.json");
        let mut server = Server::start(strategy, 2, &["--stats-out", stats_path.to_str().unwrap()]);
        // A new connection per request: a few open at a time, far below
        // 7/8 of the default --max-conns, so only the periodic reorders.
        let run = Load::start(
            server.addr,
            Duration::from_millis(700),
            &["--mode", "close", "--connections", "4"],
        );
        let result = run.finish();
        assert!(load::ok(&result) > 32, "{ctx}: too little load: {result}");
        let status = server.stop();
        assert_eq!(status.code(), Some(0), "{ctx}: {}", server.stderr());
        let stats = read_stats(&stats_path);
        for w in stats_workers(&stats) {
            let accepts = uint(w, "connections");
            let expected = if reorders { accepts.div_ceil(16) } else { 0 };
            assert_eq!(
                (
                    uint(w, "listener_reorders"),
                    uint(w, "accept_disabled_turns")
                ),
                (expected, 0),
                "{ctx}: worker with {accepts} accepts: {w}"
            );
        }
    }
}

/// `strace -ff -e trace=accept4,epoll_ctl` on each of `pids`, one file per
/// process under `prefix.PID`; returns once strace said it attached to all.
fn trace(pids: &[i32], prefix: &Path) -> Child {
    let mut cmd = Command::new("strace");
    cmd.args(["-ff", "-e", "trace=accept4,epoll_ctl", "-o"])
        .arg(prefix);
    for p in pids {
        cmd.args(["-p", &p.to_string()]);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace is not installed: run scripts/test (or apt-get install -y strace)");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut attached = 0;
    while attached < pids.len() {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "strace ended early");
        assert!(line.contains("attached"), "strace: {line}");
        attached += 1;
    }
    // Keep reading strace's stderr so that it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    child
}

/// A worker's trace as a string: `A` a successful accept on the listener,
/// `D` and `+` an `EPOLL_CTL_DEL` and an `EPOLL_CTL_ADD` of the listener
/// (the ADD must ask for `EPOLLEXCLUSIVE`). Other descriptors' calls (the
/// connections' registrations) are left out.
fn listener_ops(text: &str) -> String {
    let arg = |line: &str, call: &str, n: usize| -> Option<String> {
        let rest = &line[line.find(call)? + call.len()..];
        Some(rest.split(',').nth(n)?.trim().to_string())
    };
    let Some(listener) = text.lines().find_map(|l| arg(l, "accept4(", 0)) else {
        return String::new(); // never woken for a connection
    };
    let mut ops = String::new();
    for line in text.lines() {
        let result = line.rsplit_once(" = ").map(|(_, r)| r.trim());
        if arg(line, "accept4(", 0).as_deref() == Some(listener.as_str()) {
            if result.is_some_and(|r| !r.starts_with('-')) {
                ops.push('A');
            }
        } else if arg(line, "epoll_ctl(", 2).as_deref() == Some(listener.as_str()) {
            assert_eq!(result, Some("0"), "{line}");
            if line.contains("EPOLL_CTL_DEL") {
                ops.push('D');
            } else if line.contains("EPOLL_CTL_ADD") {
                assert!(line.contains("EPOLLEXCLUSIVE"), "{line}");
                ops.push('+');
            }
        }
    }
    ops
}

#[test]
fn strace_shows_the_listener_deleted_and_added_again_after_the_first_and_every_sixteenth_accept() {
    let strategy = "shared:epoll-exclusive";
    let dir = TempDir::new("twins-strace");
    let stats_path = dir.path().join("stats.json");
    let mut server = Server::start(strategy, 2, &["--stats-out", stats_path.to_str().unwrap()]);
    let prefix = dir.path().join("trace");
    let pids = server.worker_pids.clone();
    let mut strace = trace(&pids, &prefix);
    const CONNECTIONS: usize = 100;
    for i in 0..CONNECTIONS {
        let mut c = Client::connect(server.addr);
        assert_eq!(c.get("/", true).status, 200, "connection {i}");
    }
    util::sys::kill(strace.id() as i32, libc::SIGINT).unwrap();
    strace.wait().unwrap();
    let status = server.stop();
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    let stats = read_stats(&stats_path);
    let by_pid = workers_by_pid(&stats);

    let mut total = 0;
    let mut most = 0;
    for pid in pids {
        let path = dir.path().join(format!("trace.{pid}"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let ops = listener_ops(&text);
        let accepts = ops.matches('A').count();
        // What nginx does: after accept number n (from 0), `D+` if n % 16 == 0.
        let expected: String = (0..accepts)
            .map(|n| if n % 16 == 0 { "AD+" } else { "A" })
            .collect();
        assert_eq!(ops, expected, "worker {pid}: listener calls in order");
        let w = by_pid[&pid];
        assert_eq!(
            (uint(w, "connections"), uint(w, "listener_reorders")),
            (accepts as u64, ops.matches('D').count() as u64),
            "worker {pid}: the stats file agrees with strace: {w}"
        );
        total += accepts;
        most = most.max(accepts);
    }
    assert_eq!(total, CONNECTIONS, "every connection accepted once");
    assert!(
        most > 16,
        "no worker made a 17th accept, so the period was not seen (most {most})"
    );
}

#[test]
fn epoll_exclusive_reorders_on_every_accept_past_seven_eighths_of_max_conns() {
    // Two workers of 64 and 128 connections held open: each worker takes
    // exactly 64 (at its cap it leaves the listener to the other), the last
    // 7 of them with 57..63 open, where ngx_accept_disabled = 64/8 - free > 0.
    let strategy = "shared:epoll-exclusive";
    let max = 64;
    let dir = TempDir::new("twins-disabled");
    let stats_path = dir.path().join("stats.json");
    let mut server = Server::start(
        strategy,
        2,
        &[
            "--stats-out",
            stats_path.to_str().unwrap(),
            "--max-conns",
            &max.to_string(),
            "--keepalive-timeout",
            "120s",
        ],
    );
    let mut held = Vec::new();
    for i in 0..2 * max {
        let mut c = Client::connect(server.addr);
        assert_eq!(c.get("/", false).status, 200, "connection {i}");
        held.push(c);
    }
    let status = server.stop();
    drop(held);
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    let stats = read_stats(&stats_path);
    let (reorders, disabled) = nginx_expected(max as u64, max);
    assert_eq!((reorders, disabled), (4 + 7, 7), "the arithmetic itself");
    for w in stats_workers(&stats) {
        assert_eq!(
            (
                uint(w, "connections"),
                uint(w, "listener_reorders"),
                uint(w, "accept_disabled_turns")
            ),
            (max as u64, reorders, disabled),
            "{strategy}: worker entry {w}"
        );
    }
}

#[test]
fn an_accept_mutex_worker_past_seven_eighths_of_max_conns_stops_trying_the_lock_and_another_takes_the_connections(
) {
    // At low load one worker takes every connection: it sleeps in epoll_wait
    // holding the lock, so the other's tries (every 20 ms) fail. Once the
    // busy one accepts with more than 7/8 of --max-conns open, it skips the
    // lock for ngx_accept_disabled loop turns; the lock is free, the other
    // takes it and sleeps holding it, the busy one's next try fails and it
    // drops the listener: the next connection goes to the other worker,
    // while the busy one still has room. Each step is awaited in /proc (the
    // listener in a worker's epoll), not timed.
    let strategy = "shared:accept-mutex";
    let max: usize = 256;
    let dir = TempDir::new("twins-mutex");
    let stats_path = dir.path().join("stats.json");
    let mut server = Server::start(
        strategy,
        2,
        &[
            "--stats-out",
            stats_path.to_str().unwrap(),
            "--max-conns",
            &max.to_string(),
            "--accept-mutex-delay-ms",
            "20",
            "--keepalive-timeout",
            "120s",
        ],
    );
    let listener = {
        let inodes = listen_inodes(server.port());
        assert_eq!(inodes.len(), 1, "one listener: {inodes:?}");
        inodes[0]
    };
    let watching = |pid: i32| !epoll_entries_for(pid, listener).is_empty();
    let addr = server.addr;
    let mut held: Vec<(i32, Client)> = Vec::new();
    let open_one = |held: &mut Vec<(i32, Client)>| -> i32 {
        let mut c = Client::connect(addr);
        let r = c.get("/", false);
        assert_eq!(r.status, 200);
        let w = r.worker();
        held.push((w, c));
        w
    };
    // Requests on one of `pid`'s connections: a loop turn each for it.
    let poke = |held: &mut Vec<(i32, Client)>, pid: i32, times: usize| {
        if let Some((_, c)) = held.iter_mut().find(|(p, _)| *p == pid) {
            for _ in 0..times {
                assert_eq!(c.get("/", false).status, 200);
            }
        }
    };
    // An accept with more than `calm` open backs off (256/8 - free > 0).
    let calm = max - max / 8;
    // Until one worker has `calm + 6` open: its last accepts set
    // ngx_accept_disabled to 1..5, more than the turns it makes right after
    // an accept (the accept, the request, the socket's first writable edge).
    let busy = loop {
        let w = open_one(&mut held);
        let n = held.iter().filter(|(p, _)| *p == w).count();
        if n == calm + 6 {
            break w;
        }
        assert!(held.len() < 2 * max, "no worker reached {}", calm + 6);
    };
    let other = *server
        .worker_pids
        .iter()
        .find(|&&p| p != busy)
        .expect("two workers");
    // Should the other have backed off too (it held many once), turns count
    // its own ngx_accept_disabled (at most 256/8 - 1) down, and it tries.
    poke(&mut held, other, max / 8 + 1);
    poll_until(
        &format!("the other worker ({other}) to take the lock and watch the listener"),
        SETTLE_TIMEOUT,
        || {
            if watching(other) {
                Ok(())
            } else {
                Err(format!("busy {busy} watching: {}", watching(busy)))
            }
        },
    );
    // Loop turns for the busy worker (a request on one of its connections
    // each) count ngx_accept_disabled down; its next try fails.
    poll_until(
        &format!("the busy worker ({busy}) to fail a try and drop the listener"),
        SETTLE_TIMEOUT,
        || {
            poke(&mut held, busy, 1);
            if watching(busy) {
                Err("still watching".into())
            } else {
                Ok(())
            }
        },
    );
    let busy_open = held.iter().filter(|(p, _)| *p == busy).count();
    assert!(busy_open < max, "the busy worker is not full: {busy_open}");
    assert_eq!(
        open_one(&mut held),
        other,
        "the next connection goes to the worker holding the lock"
    );
    let status = server.stop();
    drop(held);
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    let stats = read_stats(&stats_path);
    for (pid, w) in workers_by_pid(&stats) {
        let accepts = uint(w, "connections") as usize;
        let turns = uint(w, "accept_disabled_turns");
        if accepts > calm + 1 {
            assert!(
                turns > 0,
                "worker {pid} accepted with more than 7/8 open but never backed off: {w}"
            );
        } else {
            assert_eq!(
                turns, 0,
                "worker {pid} backed off with at most 7/8 of --max-conns open: {w}"
            );
        }
        assert_eq!(
            uint(w, "listener_reorders"),
            0,
            "{strategy} never reorders: {w}"
        );
    }
}
