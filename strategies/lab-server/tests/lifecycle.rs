//! Start, serve, stop: for every strategy the ready line appears once, there
//! are N worker processes forked by the master, and after SIGTERM (or SIGINT,
//! or SIGKILL of the master) no process of the server remains.

mod util;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use util::procfs::ppid;
use util::sys::{SIGINT, SIGKILL};
use util::*;

/// Starts `strategy` with 3 workers and checks the whole life of the server.
#[track_caller]
fn starts_serves_and_stops_cleanly(strategy: &str) {
    let workers = 3;
    let mut server = Server::start(strategy, workers, &[]);
    let ctx = format!("strategy {strategy}");
    let ready = &server.ready;

    assert_eq!(
        ready["event"], "ready",
        "{ctx}: ready line {}",
        server.ready_line
    );
    assert_eq!(
        ready["strategy"], strategy,
        "{ctx}: ready line {}",
        server.ready_line
    );
    assert_eq!(
        server.addr.ip(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "{ctx}: ready line {}",
        server.ready_line
    );
    assert_ne!(
        server.addr.port(),
        0,
        "{ctx}: --listen 127.0.0.1:0 must report the port it got"
    );
    assert_eq!(
        server.master_pid,
        server.spawned_pid(),
        "{ctx}: master_pid is not the process we started"
    );

    let pids: BTreeSet<i32> = server.worker_pids.iter().copied().collect();
    assert_eq!(
        pids.len(),
        workers,
        "{ctx}: worker_pids {:?} are not {workers} distinct pids",
        server.worker_pids
    );
    assert!(
        !pids.contains(&server.master_pid),
        "{ctx}: the master is listed as a worker"
    );
    for &w in &pids {
        assert_eq!(
            ppid(w),
            Some(server.master_pid),
            "{ctx}: worker {w} is not a child of the master"
        );
    }
    assert_eq!(
        server.live_workers(),
        pids,
        "{ctx}: the master's live children are not exactly the workers"
    );

    let r = get(server.addr, "/");
    assert_eq!(r.status, 200, "{ctx}: GET / -> {r:?}");
    assert_eq!(r.body, b"ok", "{ctx}: GET / body");
    assert!(
        pids.contains(&r.worker()),
        "{ctx}: X-Worker {} is not one of {pids:?}",
        r.worker()
    );

    let status = server.stop();
    assert_eq!(
        status.code(),
        Some(0),
        "{ctx}: SIGTERM should make the master exit 0, got {status}; stderr:\n{}",
        server.stderr()
    );
    server.assert_nothing_left_running();
    let extra = server.stdout_after_ready();
    assert!(
        extra.is_empty(),
        "{ctx}: stdout must hold only the ready line, also got {extra:?}"
    );
}

#[test]
fn master_pass_strategies_start_serve_and_stop_cleanly_on_sigterm() {
    for s in MASTER_PASS {
        starts_serves_and_stops_cleanly(s);
    }
}

#[test]
fn shared_strategies_start_serve_and_stop_cleanly_on_sigterm() {
    for s in SHARED {
        starts_serves_and_stops_cleanly(s);
    }
}

#[test]
fn reuseport_strategies_start_serve_and_stop_cleanly_on_sigterm() {
    for s in REUSEPORT {
        starts_serves_and_stops_cleanly(s);
    }
}

#[test]
fn sigkill_of_the_master_takes_every_worker_with_it() {
    for strategy in ALL_STRATEGIES {
        let mut server = Server::start(strategy, 2, &[]);
        assert_eq!(
            server.live_workers().len(),
            2,
            "strategy {strategy}: expected 2 workers before the kill"
        );
        server.signal(SIGKILL);
        server.wait_exit();
        // PR_SET_PDEATHSIG=SIGKILL: the workers die with the master.
        server.assert_nothing_left_running();
    }
}

#[test]
fn sigint_stops_the_server_and_leaves_nothing_running() {
    for strategy in ["master-pass", "shared:epoll", "reuseport"] {
        let mut server = Server::start(strategy, 2, &[]);
        server.signal(SIGINT);
        let status = server.wait_exit();
        assert!(
            status.code().is_some(),
            "strategy {strategy}: the master should exit on SIGINT, not die of it ({status})"
        );
        server.assert_nothing_left_running();
    }
}
