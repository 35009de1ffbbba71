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
//! - `master-pass:pipelined` closes its copy as it sends (no acks): the
//!   descriptors in a killed worker's channel are lost with it, and counted
//!   (`connections_lost_in_flight`, sent minus what the worker's shared
//!   counters say it received): exactly the clients that see an error.
//!
//! A connection the worker had acked and was serving dies with it in any
//! design, so each victim is first frozen with SIGSTOP: frozen, it reads no
//! more descriptors (the master hands it one, which stays unacknowledged);
//! once its own table holds no TCP connection, it gets SIGKILL. If it does
//! hold one (a request was being served), it is thawed and tried again.
//!
//! reuseport: connections queued on a stopped worker's listener when it is
//! killed are served by its replacement when the master owns the listener
//! (`reuseport`, nginx's design), reset by the kernel when the worker opened
//! it itself (`reuseport:worker-owned`) and `net.ipv4.tcp_migrate_req` is
//! 0, and moved to the other worker's listener with it at 1. Those tests run
//! in a network namespace of their own, so the setting is theirs alone.

mod util;

use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

use util::load::{errors, ok, Load};
use util::procfs::{accept_queue, listen_inodes, socket_fds, stat, tcp_rows};
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

/// How the clients queued on a killed reuseport worker's listener fared.
#[derive(Debug)]
struct QueuedAtKill {
    /// Connections in the stopped worker's accept queue just before the kill.
    queued: u64,
    /// Clients connected while it was stopped.
    clients: usize,
    /// Responses (all 200) by the worker's replacement.
    by_replacement: usize,
    /// Responses (all 200) by the other worker.
    by_survivor: usize,
    /// Connections reset (or closed) without a response.
    reset: usize,
}

/// The least the stopped worker's queue must hold before the kill.
const QUEUED_AT_LEAST: u64 = 8;

/// In a network namespace of its own, with `tcp_migrate_req` as given:
/// starts `strategy` with 2 workers, stops one (SIGSTOP), connects clients
/// (each sends a request) until at least [`QUEUED_AT_LEAST`] wait in the
/// stopped worker's accept queue, SIGKILLs it, and reads every client's
/// answer.
fn kill_a_stopped_reuseport_worker(strategy: &'static str, migrate_req: bool) -> QueuedAtKill {
    in_own_network_namespace(move || {
        let sysctl = "/proc/sys/net/ipv4/tcp_migrate_req";
        match std::fs::write(sysctl, if migrate_req { "1" } else { "0" }) {
            Ok(()) => {}
            // A kernel before 5.14 has no such setting: it always resets.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !migrate_req => {}
            Err(e) => panic!("cannot set {sysctl}: {e}"),
        }
        let ctx = format!("{strategy} (tcp_migrate_req={})", u8::from(migrate_req));
        let mut server = Server::start(strategy, 2, &[]);
        let port = server.port();
        let (victim, survivor) = (server.worker_pids[0], server.worker_pids[1]);
        let listening: BTreeSet<u64> = listen_inodes(port).into_iter().collect();
        let own: Vec<u64> = socket_fds(victim)
            .into_iter()
            .map(|(_, ino)| ino)
            .filter(|ino| listening.contains(ino))
            .collect();
        let [listener] = own[..] else {
            panic!("{ctx}: worker {victim} holds listeners {own:?}, expected one")
        };
        kill(victim, SIGSTOP).unwrap();
        poll_until(
            &format!("{ctx}: worker {victim} stopped"),
            SETTLE_TIMEOUT,
            || match stat(victim) {
                Some(s) if s.state == 'T' => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
        let queue = || {
            accept_queue(listener).unwrap_or_else(|| panic!("{ctx}: listener {listener} is gone"))
        };
        let mut clients = Vec::new();
        // The kernel hashes about half of them to the stopped worker; 400
        // stays below either listener's backlog (511).
        while queue() < QUEUED_AT_LEAST && clients.len() < 400 {
            let mut c = Client::connect(server.addr);
            c.send_get("/", true);
            clients.push(c);
        }
        // The handshake's last ACK may still be on its way through the
        // loopback when connect() returns: read until two reads agree.
        let mut last = queue();
        let queued = poll_until(
            &format!("{ctx}: the queue to settle"),
            SETTLE_TIMEOUT,
            || {
                thread::sleep(Duration::from_millis(50));
                let now = queue();
                let settled = now == last;
                last = now;
                if settled {
                    Ok(now)
                } else {
                    Err(format!("{now} queued"))
                }
            },
        );
        assert!(
            queued >= QUEUED_AT_LEAST,
            "{ctx}: only {queued} of {} clients were hashed to the stopped worker",
            clients.len()
        );
        kill(victim, SIGKILL).unwrap();
        let replacement = poll_until(
            &format!("{ctx}: a replacement for {victim}"),
            SETTLE_TIMEOUT,
            || {
                let now = server.live_workers();
                match now.iter().find(|p| **p != survivor && **p != victim) {
                    Some(&p) if now.len() == 2 => Ok(p),
                    _ => Err(format!("live workers {now:?}")),
                }
            },
        );
        let mut out = QueuedAtKill {
            queued,
            clients: clients.len(),
            by_replacement: 0,
            by_survivor: 0,
            reset: 0,
        };
        for (i, mut c) in clients.into_iter().enumerate() {
            match c.try_read_response() {
                Ok(Some(r)) if r.status == 200 && r.worker() == replacement => out.by_replacement += 1,
                Ok(Some(r)) if r.status == 200 && r.worker() == survivor => out.by_survivor += 1,
                Ok(None) => out.reset += 1,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => out.reset += 1,
                other => panic!(
                    "{ctx}: client {i}: {other:?} (victim {victim}, survivor {survivor}, replacement {replacement})"
                ),
            }
        }
        let status = server.stop();
        assert_eq!(
            status.code(),
            Some(0),
            "{ctx}: {status}; stderr:\n{}",
            server.stderr()
        );
        server.assert_nothing_left_running();
        println!("{ctx}: {out:?}");
        out
    })
}

#[test]
fn connections_queued_on_a_killed_master_owned_reuseport_listener_are_served_by_the_replacement() {
    let o = kill_a_stopped_reuseport_worker("reuseport", false);
    assert_eq!(o.reset, 0, "reuseport: nothing may be reset: {o:?}");
    assert_eq!(
        o.by_replacement as u64, o.queued,
        "reuseport: every connection queued on the dead worker's listener is served by its replacement: {o:?}"
    );
    assert_eq!(o.by_replacement + o.by_survivor, o.clients, "{o:?}");
}

#[test]
fn connections_queued_on_a_killed_worker_owned_reuseport_listener_are_reset_unless_migrated() {
    let o = kill_a_stopped_reuseport_worker("reuseport:worker-owned", false);
    assert_eq!(
        o.reset as u64, o.queued,
        "worker-owned, tcp_migrate_req=0: exactly the connections queued on the dead worker's listener are reset: {o:?}"
    );
    assert_eq!(o.by_replacement, 0, "{o:?}");
    assert_eq!(o.by_survivor + o.reset, o.clients, "{o:?}");
    if std::path::Path::new("/proc/sys/net/ipv4/tcp_migrate_req").exists() {
        let o = kill_a_stopped_reuseport_worker("reuseport:worker-owned", true);
        assert_eq!(
            o.reset, 0,
            "worker-owned, tcp_migrate_req=1: nothing is reset: {o:?}"
        );
        assert_eq!(
            o.by_survivor + o.by_replacement,
            o.clients,
            "worker-owned, tcp_migrate_req=1: the queue moved to the other listener: {o:?}"
        );
    }
}

#[test]
fn sigkill_of_a_master_pass_pipelined_worker_counts_every_descriptor_lost_in_its_channel() {
    let Crashes {
        result,
        stats,
        killed,
        due,
    } = kill_frozen_workers_under_load("master-pass:pipelined");
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
    // The master closes its copy when it sends: nothing to re-route, and
    // nothing waits in the master at this rate.
    assert_eq!((rerouted, dropped), (0, 0), "{m}");
    // A frozen victim keeps its first descriptor outstanding, so it gets
    // more only on a tie; it gets at least one within the freeze.
    assert!(
        lost >= 1,
        "connections_lost_in_flight {lost}: expected at least one: {m}"
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
    // Never silent: the lost connections' clients, and only they, saw an
    // error, and the stats file counts each.
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
