//! master-pass (Node's round-robin with acks) loses no accepted connection
//! when a worker dies: the master keeps its copy of a descriptor until the
//! worker acks it, and routes an unacknowledged one to another worker. The
//! test kills workers repeatedly under steady load from the real `loadgen`
//! and checks that no client sees an error and that the master's accounting
//! (`connections_rerouted`, `connections_passed`) adds up.
//!
//! A connection the worker had acked and was serving dies with it in any
//! design, so each victim is first frozen with SIGSTOP: frozen, it reads no
//! more descriptors (the master hands it one, which stays unacknowledged);
//! once its own table holds no TCP connection, it gets SIGKILL. If it does
//! hold one (a request was being served), it is thawed and tried again.

mod util;

use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

use util::load::{errors, ok, Load};
use util::procfs::{socket_fds, tcp_rows};
use util::sys::{kill, SIGCONT, SIGKILL, SIGSTOP};
use util::*;

const KILLS: usize = 4;
const RATE: u64 = 200;
const LOAD_TIME: Duration = Duration::from_secs(7);

/// TCP connections (not the control channel) in `pid`'s descriptor table.
fn tcp_connections_of(pid: i32) -> Vec<u64> {
    let tcp: BTreeSet<u64> = tcp_rows().into_iter().map(|r| r.inode).collect();
    socket_fds(pid)
        .into_iter()
        .map(|(_, ino)| ino)
        .filter(|ino| tcp.contains(ino))
        .collect()
}

#[test]
fn sigkill_of_master_pass_workers_under_load_loses_no_connection() {
    let strategy = "master-pass";
    let dir = TempDir::new("crash");
    let stats_path = dir.path().join("stats.json");
    let mut server = Server::start(strategy, 2, &["--stats-out", stats_path.to_str().unwrap()]);
    let rate = RATE.to_string();
    let load = Load::start(
        server.addr,
        LOAD_TIME,
        &["--mode", "close", "--rate", &rate, "--connections", "16"],
    );
    thread::sleep(Duration::from_millis(500));

    let mut killed = Vec::new();
    let mut live = server.live_workers();
    for round in 0..KILLS {
        // The oldest live worker: the replacement of the last victim is left
        // alone, so that one worker always serves.
        let victim = *live
            .iter()
            .find(|p| !killed.contains(*p))
            .unwrap_or_else(|| panic!("round {round}: no live worker in {live:?}"));
        let mut tries = 0;
        loop {
            kill(victim, SIGSTOP).unwrap();
            // Long enough for the master to hand the frozen worker a
            // descriptor it will never ack.
            thread::sleep(Duration::from_millis(100));
            let held = tcp_connections_of(victim);
            if held.is_empty() {
                break;
            }
            kill(victim, SIGCONT).unwrap();
            tries += 1;
            assert!(
                tries < 50,
                "round {round}: worker {victim} always held a connection when frozen: {held:?}"
            );
            thread::sleep(Duration::from_millis(30));
        }
        kill(victim, SIGKILL).unwrap();
        killed.push(victim);
        live = poll_until(
            &format!("round {round}: a replacement for {victim}"),
            SETTLE_TIMEOUT,
            || {
                let now = server.live_workers();
                if now.len() == 2 && !now.contains(&victim) {
                    Ok(now)
                } else {
                    Err(format!("live workers {now:?}"))
                }
            },
        );
        server.wait_for_stderr(
            &format!("(pid {victim}) was killed by SIGKILL; replaced by pid"),
            SETTLE_TIMEOUT,
        );
        // Let the replacement get ready and take its share.
        thread::sleep(Duration::from_millis(600));
    }
    let result = load.finish();
    let status = server.stop();
    assert_eq!(
        status.code(),
        Some(0),
        "exit after SIGTERM ({status}); stderr:\n{}",
        server.stderr()
    );
    server.assert_nothing_left_running();

    let due = RATE * LOAD_TIME.as_secs();
    assert_eq!(
        (ok(&result), errors(&result)),
        (due, 0),
        "every request must be answered although {KILLS} workers were killed: errors {}; stderr:\n{}",
        result["errors"],
        server.stderr()
    );

    let stats = read_stats(&stats_path);
    let m = &stats["master"];
    let field = |name: &str| {
        m[name]
            .as_u64()
            .unwrap_or_else(|| panic!("master has no {name}: {stats}"))
    };
    let (accepted, passed, rerouted, dropped) = (
        field("connections_accepted"),
        field("connections_passed"),
        field("connections_rerouted"),
        field("connections_dropped"),
    );
    assert_eq!(stats["replacements"], KILLS as u64, "{stats}");
    assert_eq!(dropped, 0, "{stats}");
    assert_eq!(
        accepted,
        result["connections_opened"].as_u64().unwrap(),
        "the master accepted every connection loadgen opened: {m}"
    );
    // Each frozen victim held at most one unacknowledged descriptor (stop
    // and wait), and one arrives within the freeze at this rate.
    assert!(
        (1..=KILLS as u64).contains(&rerouted),
        "connections_rerouted {rerouted}: expected 1..={KILLS} (one per killed worker that held an unacked descriptor): {m}"
    );
    assert_eq!(
        passed,
        accepted + rerouted,
        "every connection passed once, plus once more per re-route: {m}"
    );
    assert_eq!(
        sum_over_workers(&stats, "connections"),
        accepted,
        "every accepted connection taken by exactly one worker: {stats}"
    );
    assert_eq!(
        sum_over_workers(&stats, "requests"),
        ok(&result),
        "the workers' 200s vs loadgen's ok: {stats}"
    );
    for &v in &killed {
        let e = stats_workers(&stats)
            .iter()
            .find(|e| uint(e, "pid") == v as u64)
            .unwrap_or_else(|| panic!("no stats entry for killed worker {v}: {stats}"));
        assert_eq!(e["exit"], "was killed by SIGKILL", "{e}");
        assert_eq!(
            (e["replaced"].as_bool(), e["retired"].as_bool()),
            (Some(true), Some(false)),
            "{e}"
        );
    }
}
