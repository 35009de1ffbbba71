//! A worker killed with SIGKILL is re-forked into the same slot, the master
//! says so on stderr, the stats file keeps both generations, and the server
//! keeps answering without the dead pid.

mod util;

use std::collections::BTreeSet;

use util::procfs::{is_alive, ppid};
use util::sys::{kill, SIGKILL};
use util::*;

#[track_caller]
fn killed_worker_is_replaced(strategy: &str) {
    let ctx = format!("strategy {strategy}");
    let dir = TempDir::new("replace");
    let stats_path = dir.path().join("stats.json");
    let mut server = Server::start(strategy, 2, &["--stats-out", stats_path.to_str().unwrap()]);
    let before: BTreeSet<i32> = server.worker_pids.iter().copied().collect();
    let victim = server.worker_pids[0];

    kill(victim, SIGKILL).unwrap();
    let after = poll_until(
        &format!("{ctx}: the master to have 2 live children again, one of them new"),
        SETTLE_TIMEOUT,
        || {
            let now = server.live_workers();
            if now.len() == 2 && !now.contains(&victim) && now.iter().any(|p| !before.contains(p)) {
                Ok(now)
            } else {
                Err(format!(
                    "live children {now:?} (before: {before:?}, killed {victim})"
                ))
            }
        },
    );
    let new = *after.difference(&before).next().unwrap();
    assert_eq!(
        ppid(new),
        Some(server.master_pid),
        "{ctx}: replacement {new} is not a child of the master"
    );
    assert!(
        !is_alive(victim),
        "{ctx}: killed worker {victim} is still alive"
    );
    let log_tail = format!("(pid {victim}) was killed by SIGKILL; replaced by pid {new}");
    server.wait_for_stderr(&log_tail, SETTLE_TIMEOUT);

    for i in 0..20 {
        let r = get(server.addr, "/");
        assert_eq!(
            r.status, 200,
            "{ctx}: request {i} after the replacement -> {r:?}"
        );
        assert_ne!(
            r.worker(),
            victim,
            "{ctx}: request {i} answered by the killed worker's pid"
        );
        assert!(
            after.contains(&r.worker()),
            "{ctx}: request {i} answered by {} which is not one of {after:?}",
            r.worker()
        );
    }

    let status = server.stop();
    assert_eq!(
        status.code(),
        Some(0),
        "{ctx}: exit after SIGTERM ({status}); stderr:\n{}",
        server.stderr()
    );
    server.assert_nothing_left_running();

    // The stats file lists every worker process that ever ran: both
    // generations of the slot, with the same slot number.
    let stats = read_stats(&stats_path);
    let entries = stats_workers(&stats);
    assert_eq!(
        entries.len(),
        3,
        "{ctx}: expected 2 first-generation workers and 1 replacement in {stats}"
    );
    let entry = |pid: i32| {
        entries
            .iter()
            .find(|e| e["pid"].as_i64() == Some(pid as i64))
            .unwrap_or_else(|| panic!("{ctx}: no stats entry for pid {pid} in {stats}"))
    };
    let (old_e, new_e) = (entry(victim), entry(new));
    assert_eq!(
        uint(old_e, "generation"),
        0,
        "{ctx}: killed worker's entry {old_e}"
    );
    assert_eq!(
        uint(new_e, "generation"),
        1,
        "{ctx}: replacement's entry {new_e}"
    );
    let slot = uint(old_e, "slot");
    assert_eq!(
        uint(new_e, "slot"),
        slot,
        "{ctx}: the replacement must take the killed worker's slot"
    );
    let line = format!("lab-server: worker slot {slot} {log_tail}");
    assert!(
        server.stderr().lines().any(|l| l == line),
        "{ctx}: stderr has no line {line:?}:\n{}",
        server.stderr()
    );
}

#[test]
fn a_master_pass_worker_killed_with_sigkill_is_replaced_and_the_server_keeps_answering() {
    for s in MASTER_PASS {
        killed_worker_is_replaced(s);
    }
}

#[test]
fn a_shared_worker_killed_with_sigkill_is_replaced_and_the_server_keeps_answering() {
    for s in SHARED {
        killed_worker_is_replaced(s);
    }
}

#[test]
fn a_reuseport_worker_killed_with_sigkill_is_replaced_and_the_server_keeps_answering() {
    for s in REUSEPORT {
        killed_worker_is_replaced(s);
    }
}
