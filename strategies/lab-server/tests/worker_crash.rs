//! A worker that dies with a descriptor in flight to it (passed by the
//! master, not yet acknowledged), under steady load from the real `loadgen`:
//! - `master-pass:reroute` loses no accepted connection: the master keeps
//!   its copy of a descriptor until the worker acks it, and routes an
//!   unacknowledged one to another worker. No client sees an error and the
//!   master's accounting (`connections_rerouted`, `connections_passed`) adds
//!   up.
//! - `master-pass` (Node-exact) does what Node does: the descriptor in
//!   flight is not re-routed (`connections_rerouted` stays 0); the master
//!   closes its copy (`connections_lost_in_flight`), and that client, and no
//!   other, sees an error.
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

/// What one run of the kill loop saw.
struct Crashes {
    result: serde_json::Value,
    stats: serde_json::Value,
    killed: Vec<i32>,
    due: u64,
}

/// Runs `strategy` with 2 workers under open-loop load and kills a frozen
/// worker [`KILLS`] times (see the module comment); returns loadgen's result
/// and the stats file.
fn kill_frozen_workers_under_load(strategy: &str) -> Crashes {
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
            .unwrap_or_else(|| panic!("{strategy} round {round}: no live worker in {live:?}"));
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
                "{strategy} round {round}: worker {victim} always held a connection when frozen: {held:?}"
            );
            thread::sleep(Duration::from_millis(30));
        }
        kill(victim, SIGKILL).unwrap();
        killed.push(victim);
        live = poll_until(
            &format!("{strategy} round {round}: a replacement for {victim}"),
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
        "{strategy}: exit after SIGTERM ({status}); stderr:\n{}",
        server.stderr()
    );
    server.assert_nothing_left_running();
    let stats = read_stats(&stats_path);
    assert_eq!(stats["replacements"], KILLS as u64, "{stats}");
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
    Crashes {
        result,
        stats,
        killed,
        due: RATE * LOAD_TIME.as_secs(),
    }
}

/// A field of the stats file's `master` object.
#[track_caller]
fn master_field(stats: &serde_json::Value, name: &str) -> u64 {
    stats["master"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("master has no {name}: {stats}"))
}

#[test]
fn sigkill_of_master_pass_reroute_workers_under_load_loses_no_connection() {
    let Crashes {
        result,
        stats,
        killed,
        due,
    } = kill_frozen_workers_under_load("master-pass:reroute");
    assert_eq!(killed.len(), KILLS);
    assert_eq!(
        (ok(&result), errors(&result)),
        (due, 0),
        "every request must be answered although {KILLS} workers were killed: errors {}",
        result["errors"],
    );
    let m = &stats["master"];
    let field = |name: &str| master_field(&stats, name);
    let (accepted, passed, rerouted, dropped, lost) = (
        field("connections_accepted"),
        field("connections_passed"),
        field("connections_rerouted"),
        field("connections_dropped"),
        field("connections_lost_in_flight"),
    );
    assert_eq!((dropped, lost), (0, 0), "{stats}");
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
}

#[test]
fn sigkill_of_a_master_pass_worker_loses_the_descriptor_in_flight_to_it_as_node_does() {
    let Crashes {
        result,
        stats,
        killed,
        due,
    } = kill_frozen_workers_under_load("master-pass");
    assert_eq!(killed.len(), KILLS);
    let m = &stats["master"];
    let field = |name: &str| master_field(&stats, name);
    let (accepted, passed, rerouted, dropped, lost) = (
        field("connections_accepted"),
        field("connections_passed"),
        field("connections_rerouted"),
        field("connections_dropped"),
        field("connections_lost_in_flight"),
    );
    assert_eq!(
        rerouted, 0,
        "Node does not re-route a descriptor in flight to a dead worker: {m}"
    );
    assert_eq!(dropped, 0, "{m}");
    // Each frozen victim held at most one unacknowledged descriptor (stop
    // and wait), and one arrives within the freeze at this rate.
    assert!(
        (1..=KILLS as u64).contains(&lost),
        "connections_lost_in_flight {lost}: expected 1..={KILLS} (one per killed worker that held an unacked descriptor): {m}"
    );
    assert_eq!(
        accepted,
        result["connections_opened"].as_u64().unwrap(),
        "the master accepted every connection loadgen opened: {m}"
    );
    assert_eq!(
        passed, accepted,
        "every connection passed exactly once: {m}"
    );
    assert_eq!(
        sum_over_workers(&stats, "connections"),
        accepted - lost,
        "every accepted connection but the lost ones taken by exactly one worker: {stats}"
    );
    // The lost connections' clients, and only they, saw an error: the
    // master closed its copy, the kernel the one in the dead channel.
    assert_eq!(
        (ok(&result), errors(&result)),
        (due - lost, lost),
        "one error per descriptor lost in flight ({lost}): errors {}",
        result["errors"],
    );
    assert_eq!(
        sum_over_workers(&stats, "requests"),
        ok(&result),
        "the workers' 200s vs loadgen's ok: {stats}"
    );
}
