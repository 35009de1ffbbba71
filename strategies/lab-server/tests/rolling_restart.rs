//! Rolling restart (SIGHUP to the master) under load from the real
//! `loadgen`: every slot gets a new worker (generation 1), in slot order, one
//! stderr line per slot and a final one; the stats file tells the retired
//! workers from crash replacements; no client of the shared-queue strategies,
//! of master-pass or of `reuseport` (whose master keeps every listener, so
//! each replacement takes over its slot's socket and queue) sees an error.
//! Worker-owned reuseport resets what lands in a closing listener's queue
//! (unless `tcp_migrate_req`), so there the test checks that every request
//! is accounted for and prints the errors.

mod util;

use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

use util::load::{errors, ok, worker_requests, Load};
use util::procfs::{listen_inodes, socket_fds, status_field};
use util::sys::{kill, pin_current_thread_to, thread_affinity, SIGCONT, SIGHUP, SIGSTOP};
use util::*;

/// Hang guard for a whole rolling restart.
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);

/// Open-loop load: RATE requests/s for LOAD_TIME, a new connection each.
const RATE: u64 = 200;
const LOAD_TIME: Duration = Duration::from_secs(5);

/// What one rolling restart under load did.
struct Outcome {
    load: serde_json::Value,
    before: BTreeSet<i32>,
    after: BTreeSet<i32>,
    stats: serde_json::Value,
    stderr: String,
}

/// Starts `strategy` with 2 workers, runs `loadgen` (`mode`), sends SIGHUP
/// a second into the load, waits for the restart to finish and the load to
/// end, stops the server, and checks what every strategy must do.
#[track_caller]
fn restart_under_load(strategy: &str, mode: &str) -> Outcome {
    let ctx = format!("strategy {strategy}, loadgen --mode {mode}");
    let dir = TempDir::new("rolling");
    let stats_path = dir.path().join("stats.json");
    let mut server = Server::start(strategy, 2, &["--stats-out", stats_path.to_str().unwrap()]);
    let before: BTreeSet<i32> = server.worker_pids.iter().copied().collect();
    let rate = RATE.to_string();
    // Classic pre-fork serves one connection per worker at a time: a
    // keep-alive client beyond the second would wait in the queue for the
    // whole run (a timeout that says nothing about the restart).
    let connections = if strategy == "shared:prefork" && mode == "keepalive" {
        "2"
    } else {
        "16"
    };
    let mut load = Load::start(
        server.addr,
        LOAD_TIME,
        &[
            "--mode",
            mode,
            "--rate",
            &rate,
            "--connections",
            connections,
        ],
    );
    thread::sleep(Duration::from_secs(1));
    assert!(load.running(), "{ctx}: loadgen ended before the SIGHUP");
    server.signal(SIGHUP);
    server.wait_for_stderr("lab-server: rolling restart: done", RESTART_TIMEOUT);
    if !load.running() {
        eprintln!("{ctx}: note: the restart outlasted the load (a slow machine?)");
    }
    let after = server.live_workers();
    let result = load.finish();
    let status = server.stop();
    assert_eq!(
        status.code(),
        Some(0),
        "{ctx}: exit after SIGTERM ({status}); stderr:\n{}",
        server.stderr()
    );
    server.assert_nothing_left_running();
    let stderr = server.stderr();

    assert_eq!(
        after.len(),
        2,
        "{ctx}: live workers after the restart: {after:?}"
    );
    assert!(
        after.is_disjoint(&before),
        "{ctx}: workers {before:?} before, {after:?} after: every slot must have a new process"
    );
    // One line per slot, in slot order, old pid -> new pid, then the end.
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("lab-server: rolling restart:"))
        .collect();
    assert_eq!(lines.len(), 4, "{ctx}: rolling restart lines:\n{stderr}");
    assert_eq!(
        lines[0], "lab-server: rolling restart: begins (2 workers)",
        "{ctx}"
    );
    let mut replaced = BTreeSet::new();
    for (slot, line) in lines[1..3].iter().enumerate() {
        let rest = line
            .strip_prefix(&format!("lab-server: rolling restart: slot {slot} pid "))
            .unwrap_or_else(|| panic!("{ctx}: line {line:?} is not about slot {slot}"));
        let (old, new) = rest
            .split_once(" -> pid ")
            .unwrap_or_else(|| panic!("{ctx}: line {line:?} has no old -> new"));
        let (old, new): (i32, i32) = (old.parse().unwrap(), new.parse().unwrap());
        assert!(
            before.contains(&old),
            "{ctx}: {line:?}: {old} was not a worker"
        );
        assert!(
            after.contains(&new),
            "{ctx}: {line:?}: {new} is not a live worker"
        );
        replaced.insert(old);
    }
    assert_eq!(replaced, before, "{ctx}: both old workers must be replaced");
    assert_eq!(
        lines[3], "lab-server: rolling restart: done (2 workers replaced)",
        "{ctx}"
    );
    assert!(
        !stderr.contains("SIGKILL") && !stderr.contains("worker slot"),
        "{ctx}: a retiring worker was killed or a worker crashed:\n{stderr}"
    );

    // The stats file: the old generation retired (not crashed), the new one
    // is generation 1 in the same slots.
    let stats = read_stats(&stats_path);
    assert_eq!(
        stats["replacements"], 0,
        "{ctx}: no crash replacement expected: {stats}"
    );
    assert_eq!(stats["retirements"], 2, "{ctx}: {stats}");
    assert_eq!(stats["rolling_restarts"], 1, "{ctx}: {stats}");
    let entries = stats_workers(&stats);
    assert_eq!(
        entries.len(),
        4,
        "{ctx}: 2 retired + 2 replacements in {stats}"
    );
    for e in entries {
        let pid = uint(e, "pid") as i32;
        let (retired, generation) = (e["retired"].as_bool(), uint(e, "generation"));
        if before.contains(&pid) {
            assert_eq!(
                (retired, generation),
                (Some(true), 0),
                "{ctx}: old worker {e}"
            );
            assert_eq!(
                e["replaced"], false,
                "{ctx}: a retirement is not a crash: {e}"
            );
            assert_eq!(e["exit"], "exited with code 0", "{ctx}: {e}");
        } else {
            assert!(after.contains(&pid), "{ctx}: unknown worker {e}");
            assert_eq!(
                (retired, generation),
                (Some(false), 1),
                "{ctx}: new worker {e}"
            );
        }
    }
    let slots: BTreeSet<u64> = entries
        .iter()
        .filter(|e| uint(e, "generation") == 1)
        .map(|e| uint(e, "slot"))
        .collect();
    assert_eq!(slots, BTreeSet::from([0, 1]), "{ctx}: {stats}");

    // Every request due in the run is either answered or counted as an error.
    let due = RATE * LOAD_TIME.as_secs();
    assert_eq!(
        ok(&result) + errors(&result),
        due,
        "{ctx}: loadgen accounting (ok {} + errors {}) vs requests due: {result}",
        ok(&result),
        errors(&result)
    );
    let served_by: BTreeSet<i32> = worker_requests(&result)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(
        served_by.iter().any(|p| before.contains(p)),
        "{ctx}: no old worker served the load: {served_by:?}"
    );
    Outcome {
        load: result,
        before,
        after,
        stats,
        stderr,
    }
}

#[track_caller]
fn assert_no_client_error(o: &Outcome, ctx: &str) {
    assert_eq!(
        errors(&o.load),
        0,
        "{ctx}: clients saw errors during the rolling restart: {}; stderr:\n{}",
        o.load["errors"],
        o.stderr
    );
}

#[test]
fn a_rolling_restart_of_master_pass_replaces_every_worker_without_a_client_error() {
    for strategy in MASTER_PASS {
        for mode in ["close", "keepalive"] {
            let o = restart_under_load(strategy, mode);
            assert_no_client_error(&o, &format!("{strategy} --mode {mode}"));
            // Whatever the master re-routed (a refused descriptor) was
            // passed again, and nothing was dropped.
            let m = &o.stats["master"];
            assert_eq!(m["connections_dropped"], 0, "{strategy}: {m}");
            assert_eq!(
                m["connections_passed"].as_u64().unwrap(),
                m["connections_accepted"].as_u64().unwrap()
                    + m["connections_rerouted"].as_u64().unwrap(),
                "{strategy}: every accepted connection passed once, plus once per re-route: {m}"
            );
        }
    }
}

#[test]
fn a_rolling_restart_of_shared_strategies_replaces_every_worker_without_a_client_error() {
    for strategy in SHARED {
        for mode in ["close", "keepalive"] {
            let o = restart_under_load(strategy, mode);
            assert_no_client_error(&o, &format!("{strategy} --mode {mode}"));
        }
    }
}

#[test]
fn a_rolling_restart_of_reuseport_replaces_every_worker_and_accounts_for_every_request() {
    let migrate = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "absent".into());
    for strategy in REUSEPORT {
        for mode in ["close", "keepalive"] {
            let o = restart_under_load(strategy, mode);
            if strategy == "reuseport" {
                // Master-owned: no listener closes, so nothing is reset.
                assert_no_client_error(&o, &format!("{strategy} --mode {mode}"));
            }
            // Otherwise not asserted zero: a connection completing its handshake
            // between a retiring worker's last accept and its close is reset
            // by the kernel (unless tcp_migrate_req=1).
            println!(
                "{strategy} --mode {mode}: rolling restart under load: {} ok, {} errors {} (tcp_migrate_req={migrate}); workers {:?} -> {:?}",
                ok(&o.load),
                errors(&o.load),
                o.load["errors"],
                o.before,
                o.after
            );
        }
    }
}

/// `reuseport` after a rolling restart: the same listening sockets (the
/// master's), each new worker polling the one its slot's old worker polled,
/// as nginx's reload hands each new worker the old one's socket.
#[test]
fn a_rolling_restart_of_reuseport_hands_each_slot_its_old_socket() {
    let mut server = Server::start("reuseport", 2, &[]);
    let port = server.port();
    let listening = || -> BTreeSet<u64> { listen_inodes(port).into_iter().collect() };
    let held = |pid: i32| -> Vec<u64> {
        let l = listening();
        socket_fds(pid)
            .into_iter()
            .map(|(_, ino)| ino)
            .filter(|ino| l.contains(ino))
            .collect()
    };
    let before = listening();
    assert_eq!(before.len(), 2, "{before:?}");
    let old: Vec<(i32, Vec<u64>)> = server.worker_pids.iter().map(|&p| (p, held(p))).collect();
    server.signal(SIGHUP);
    server.wait_for_stderr("lab-server: rolling restart: done", RESTART_TIMEOUT);
    assert_eq!(listening(), before, "the listening sockets changed");
    let stderr = server.stderr();
    for (pid, sockets) in old {
        assert_eq!(sockets.len(), 1, "worker {pid} held {sockets:?}");
        let line = stderr
            .lines()
            .find(|l| {
                l.starts_with("lab-server: rolling restart: slot ")
                    && l.contains(&format!(" pid {pid} -> pid "))
            })
            .unwrap_or_else(|| panic!("no restart line for {pid}:\n{stderr}"));
        let new: i32 = line.rsplit(' ').next().unwrap().parse().unwrap();
        let now = poll_until(
            &format!("new worker {new} to hold one listener"),
            SETTLE_TIMEOUT,
            || match held(new) {
                h if h.len() == 1 => Ok(h),
                h => Err(format!("{h:?}")),
            },
        );
        assert_eq!(
            now, sockets,
            "{line}: the new worker must poll its slot's socket"
        );
    }
    assert_eq!(get(server.addr, "/").status, 200);
    server.stop();
    server.assert_nothing_left_running();
}

#[test]
fn reuseport_cbpf_cpu_still_steers_by_cpu_after_a_rolling_restart() {
    let allowed = thread_affinity().unwrap();
    assert!(
        allowed.contains(&0) && allowed.contains(&1),
        "this test needs CPUs 0 and 1 but the test process may only run on {allowed:?}"
    );
    let mut server = Server::start("reuseport:cbpf-cpu", 2, &[]);
    let before: BTreeSet<i32> = server.worker_pids.iter().copied().collect();
    server.signal(SIGHUP);
    server.wait_for_stderr("lab-server: rolling restart: done", RESTART_TIMEOUT);
    let after = server.live_workers();
    assert!(
        after.is_disjoint(&before) && after.len() == 2,
        "{before:?} -> {after:?}"
    );
    let addr = server.addr;
    let mut chosen = BTreeSet::new();
    for cpu in [0usize, 1] {
        let answered: Vec<i32> = thread::spawn(move || {
            pin_current_thread_to(cpu).unwrap();
            (0..20).map(|_| get(addr, "/").worker()).collect()
        })
        .join()
        .unwrap();
        let distinct: BTreeSet<i32> = answered.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            1,
            "after the restart, connections from CPU {cpu} went to several workers: {:?}",
            count_by_worker(answered)
        );
        let worker = answered[0];
        assert!(
            after.contains(&worker),
            "CPU {cpu}: answered by {worker}, not a new worker"
        );
        assert_eq!(
            status_field(worker, "Cpus_allowed_list").as_deref(),
            Some(cpu.to_string().as_str()),
            "worker {worker} answered connections from CPU {cpu} but is not pinned to it"
        );
        chosen.insert(worker);
    }
    assert_eq!(
        chosen, after,
        "each new worker must own one CPU's connections"
    );
    server.stop();
    server.assert_nothing_left_running();
}

/// A keep-alive connection with a request in progress on the retiring
/// worker: the request is answered (with `Connection: close`), then the
/// connection closes; a second SIGHUP meanwhile is ignored with a line. One
/// worker, so that the connection is surely on the worker being retired.
#[test]
fn a_retiring_worker_finishes_its_request_and_a_second_sighup_is_ignored() {
    for strategy in ALL_STRATEGIES {
        let ctx = format!("strategy {strategy}");
        let mut server = Server::start(strategy, 1, &[]);
        let old = server.worker_pids[0];
        let mut c = Client::connect(server.addr);
        assert_eq!(c.get("/", false).worker(), old, "{ctx}");
        c.send_get("/?sleep_us=700000", false);
        thread::sleep(Duration::from_millis(100));
        server.signal(SIGHUP);
        server.wait_for_stderr("rolling restart: begins", RESTART_TIMEOUT);
        server.signal(SIGHUP);
        server.wait_for_stderr(
            "SIGHUP ignored: a rolling restart is in progress",
            RESTART_TIMEOUT,
        );
        let r = c
            .read_response()
            .unwrap_or_else(|| panic!("{ctx}: the request in progress was dropped"));
        assert_eq!((r.status, r.worker()), (200, old), "{ctx}: {r:?}");
        assert!(
            r.says_close(),
            "{ctx}: the retiring worker must say Connection: close: {r:?}"
        );
        c.expect_closed();
        server.wait_for_stderr("lab-server: rolling restart: done", RESTART_TIMEOUT);
        assert_eq!(
            server.stderr().matches("rolling restart: begins").count(),
            1,
            "{ctx}: the second SIGHUP must not start another restart:\n{}",
            server.stderr()
        );
        let new = get(server.addr, "/").worker();
        assert_ne!(new, old, "{ctx}: still served by the retired worker");
        server.stop();
        server.assert_nothing_left_running();
    }
}

/// A retiring worker that cannot drain (stopped with SIGSTOP) is killed
/// after the drain time plus a margin, and still counts as retired.
#[test]
fn a_retiring_worker_that_does_not_exit_is_killed_and_still_counts_as_retired() {
    for strategy in ["master-pass", "shared:epoll", "reuseport"] {
        let ctx = format!("strategy {strategy}");
        let dir = TempDir::new("overrun");
        let stats_path = dir.path().join("stats.json");
        let mut server = Server::start(strategy, 2, &["--stats-out", stats_path.to_str().unwrap()]);
        let victim = server.worker_pids[0];
        kill(victim, SIGSTOP).unwrap();
        server.signal(SIGHUP);
        server.wait_for_stderr(
            &format!(
                "rolling restart: slot 0 pid {victim} did not exit within 1.5s; sending SIGKILL"
            ),
            RESTART_TIMEOUT,
        );
        server.wait_for_stderr("lab-server: rolling restart: done", RESTART_TIMEOUT);
        let _ = kill(victim, SIGCONT);
        for _ in 0..5 {
            assert_eq!(get(server.addr, "/").status, 200, "{ctx}");
        }
        server.stop();
        server.assert_nothing_left_running();
        let stats = read_stats(&stats_path);
        let e = stats_workers(&stats)
            .iter()
            .find(|e| uint(e, "pid") == victim as u64)
            .unwrap_or_else(|| panic!("{ctx}: no entry for {victim}: {stats}"))
            .clone();
        assert_eq!(e["exit"], "was killed by SIGKILL", "{ctx}: {e}");
        assert_eq!(
            (e["retired"].as_bool(), e["replaced"].as_bool()),
            (Some(true), Some(false)),
            "{ctx}: {e}"
        );
        assert_eq!(stats["replacements"], 0, "{ctx}: {stats}");
        assert_eq!(stats["rolling_restarts"], 1, "{ctx}: {stats}");
    }
}

#[test]
fn sigterm_during_a_rolling_restart_stops_everything() {
    for strategy in [
        "master-pass",
        "shared:blocking-thread",
        "reuseport:cbpf-cpu",
    ] {
        let ctx = format!("strategy {strategy}");
        let mut server = Server::start(strategy, 1, &[]);
        // Hold the retirement open with a sleeping request.
        let mut c = Client::connect(server.addr);
        c.send_get("/?sleep_us=900000", false);
        thread::sleep(Duration::from_millis(50));
        server.signal(SIGHUP);
        server.wait_for_stderr("rolling restart: begins", RESTART_TIMEOUT);
        let status = server.stop();
        assert_eq!(
            status.code(),
            Some(0),
            "{ctx}: {status}; stderr:\n{}",
            server.stderr()
        );
        server.assert_nothing_left_running();
        let stderr = server.stderr();
        assert!(
            stderr.contains("lab-server: rolling restart: abandoned at slot 0 (0 of 1 workers replaced): the server is stopping"),
            "{ctx}: stderr:\n{stderr}"
        );
        // The request in progress was still answered.
        let r = c.read_response();
        assert!(
            matches!(&r, Some(r) if r.status == 200),
            "{ctx}: the request in progress: {r:?}"
        );
    }
}
