//! Where sequential new connections land under the master-pass schedulers,
//! counted by `X-Worker` and cross-checked against the stats file.

mod util;

use std::collections::{BTreeMap, BTreeSet};

use util::*;

const WORKERS: usize = 4;
const CONNECTIONS: usize = 400;

/// Makes `CONNECTIONS` sequential new connections (one `Connection: close`
/// request each) to a fresh `strategy` server with `WORKERS` workers, stops
/// it, checks the stats file agrees with what the client saw, and returns
/// the per-worker counts.
#[track_caller]
fn sequential_connections(strategy: &str) -> BTreeMap<i32, usize> {
    let dir = TempDir::new("dist");
    let stats_path = dir.path().join("stats.json");
    let mut server = Server::start(
        strategy,
        WORKERS,
        &["--stats-out", stats_path.to_str().unwrap()],
    );
    let workers: BTreeSet<i32> = server.worker_pids.iter().copied().collect();
    let answered = (0..CONNECTIONS).map(|i| {
        let r = get(server.addr, "/");
        assert_eq!(
            r.status, 200,
            "strategy {strategy}: connection {i} -> {r:?}"
        );
        r.worker()
    });
    let counts = count_by_worker(answered);
    for w in counts.keys() {
        assert!(
            workers.contains(w),
            "strategy {strategy}: X-Worker {w} is not one of {workers:?}"
        );
    }
    let status = server.stop();
    assert_eq!(
        status.code(),
        Some(0),
        "strategy {strategy}: exit after SIGTERM ({status})"
    );

    let stats = read_stats(&stats_path);
    for entry in stats_workers(&stats) {
        let pid = entry["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("strategy {strategy}: entry without pid: {entry}"))
            as i32;
        let seen = counts.get(&pid).copied().unwrap_or(0) as u64;
        assert_eq!(
            uint(entry, "connections"),
            seen,
            "strategy {strategy}: worker {pid}'s stats connections vs X-Worker count"
        );
        assert_eq!(
            uint(entry, "requests"),
            seen,
            "strategy {strategy}: worker {pid}'s stats requests vs X-Worker count"
        );
    }
    counts
}

#[track_caller]
fn assert_exactly_even(strategy: &str, counts: &BTreeMap<i32, usize>) {
    let even = CONNECTIONS / WORKERS;
    assert!(
        counts.len() == WORKERS && counts.values().all(|&n| n == even),
        "strategy {strategy}: {CONNECTIONS} sequential connections should land exactly {even} on each of {WORKERS} workers, got {counts:?}"
    );
}

#[test]
fn master_pass_spreads_sequential_connections_evenly() {
    assert_exactly_even("master-pass", &sequential_connections("master-pass"));
}

#[test]
fn master_pass_rotate_spreads_sequential_connections_evenly() {
    assert_exactly_even(
        "master-pass:rotate",
        &sequential_connections("master-pass:rotate"),
    );
}

#[test]
fn master_pass_least_conn_uses_every_worker() {
    let counts = sequential_connections("master-pass:least-conn");
    assert_eq!(
        counts.len(),
        WORKERS,
        "master-pass:least-conn: {CONNECTIONS} connections reached only {counts:?}"
    );
}

#[test]
fn master_pass_least_conn_gives_each_held_connection_to_a_different_idle_worker() {
    // While every earlier connection stays open, the worker with the fewest
    // open connections is always one that has none yet.
    let server = Server::start("master-pass:least-conn", WORKERS, &[]);
    let mut held = Vec::new();
    let mut answered = Vec::new();
    for i in 0..WORKERS {
        let mut c = Client::connect(server.addr);
        let r = c.get("/", false);
        assert_eq!(r.status, 200, "held connection {i} -> {r:?}");
        answered.push(r.worker());
        held.push(c);
    }
    let distinct: BTreeSet<i32> = answered.iter().copied().collect();
    assert_eq!(distinct.len(), WORKERS, "{WORKERS} connections held open at once should sit on {WORKERS} different workers, got {answered:?}");
}

#[test]
fn master_pass_pipelined_gives_each_held_connection_to_a_different_idle_worker() {
    // A connection held open stays outstanding (its worker has not finished
    // it), so the worker with the fewest outstanding is one with none yet.
    let server = Server::start("master-pass:pipelined", WORKERS, &[]);
    let mut held = Vec::new();
    let mut answered = Vec::new();
    for i in 0..WORKERS {
        let mut c = Client::connect(server.addr);
        let r = c.get("/", false);
        assert_eq!(r.status, 200, "held connection {i} -> {r:?}");
        answered.push(r.worker());
        held.push(c);
    }
    let distinct: BTreeSet<i32> = answered.iter().copied().collect();
    assert_eq!(distinct.len(), WORKERS, "{WORKERS} connections held open at once should sit on {WORKERS} different workers, got {answered:?}");
}
