//! loadgen's per-worker figures (keyed by `X-Worker`) and its connection
//! count are checked against what the server itself counted: the stats file
//! `lab-server` writes at shutdown.

mod util;

use std::collections::BTreeMap;
use std::time::Duration;

use util::{
    argv, errors, guard, read_result, run, total_errors, uint, worker_latencies, workers, Server,
    TempDir,
};

/// Runs a keep-alive closed-loop load (8 connections, 2 s, no warm-up)
/// against `strategy` with 3 workers and checks every worker's requests and
/// connections against the server's stats file.
#[track_caller]
fn attribution_matches_server_counts(strategy: &str) {
    let mut server = Server::start(strategy, 3);
    let dir = TempDir::new("attribution");
    let json = dir.file("run.json");
    let target = server.target();
    run(
        &argv(&format!(
            "--target {target} --mode keepalive --connections 8 --duration 2s --warmup 0s \
             --json {json} --quiet"
        )),
        guard(Duration::from_secs(2)),
    )
    .assert_success();
    let stats = server.stop();
    let r = read_result(&json);

    assert_eq!(total_errors(&r), 0, "{strategy}: errors {:?}", errors(&r));
    assert_eq!(
        uint(&r, "unattributed"),
        0,
        "{strategy}: every lab-server response carries X-Worker"
    );
    let seen = workers(&r);
    for pid in seen.keys() {
        assert!(
            stats.workers.contains_key(pid),
            "{strategy}: loadgen credits pid {pid}, which is not a worker in the stats file {:#}",
            stats.raw
        );
    }
    let loadgen_requests: BTreeMap<i32, u64> = stats
        .workers
        .keys()
        .map(|pid| (*pid, seen.get(pid).map_or(0, |w| w.0)))
        .collect();
    let server_requests: BTreeMap<i32, u64> = stats
        .workers
        .iter()
        .map(|(pid, w)| (*pid, w.requests))
        .collect();
    assert_eq!(
        loadgen_requests, server_requests,
        "{strategy}: requests per worker pid, loadgen (left) vs the server's stats (right)"
    );
    let loadgen_connections: BTreeMap<i32, u64> = stats
        .workers
        .keys()
        .map(|pid| (*pid, seen.get(pid).map_or(0, |w| w.1)))
        .collect();
    let server_connections: BTreeMap<i32, u64> = stats
        .workers
        .iter()
        .map(|(pid, w)| (*pid, w.connections))
        .collect();
    assert_eq!(
        loadgen_connections,
        server_connections,
        "{strategy}: connections per worker pid, loadgen (left) vs the server's stats (right); \
         loadgen opened {} connections",
        uint(&r, "connections_opened")
    );
    assert_eq!(
        uint(&r, "ok"),
        stats.total_requests(),
        "{strategy}: loadgen's ok vs the server's 200 responses"
    );
    assert!(uint(&r, "ok") > 0, "{strategy}: no request succeeded");
    // Each worker's latency histogram holds exactly its (all successful)
    // responses, so the server's own count too.
    let latencies = worker_latencies(&r);
    let histogram_counts: BTreeMap<i32, u64> = stats
        .workers
        .keys()
        .map(|pid| (*pid, latencies.get(pid).map_or(0, |h| h.len())))
        .collect();
    assert_eq!(
        histogram_counts, server_requests,
        "{strategy}: per-worker latency histogram counts (left) vs the server's stats (right)"
    );
}

#[test]
fn per_worker_requests_and_connections_match_the_servers_own_counts_under_shared_epoll() {
    attribution_matches_server_counts("shared:epoll");
}

#[test]
fn per_worker_requests_and_connections_match_the_servers_own_counts_under_master_pass() {
    attribution_matches_server_counts("master-pass");
}

#[test]
fn close_mode_opens_exactly_one_connection_per_request() {
    let mut server = Server::start("shared:epoll", 2);
    let dir = TempDir::new("close");
    let json = dir.file("run.json");
    let target = server.target();
    run(
        &argv(&format!(
            "--target {target} --mode close --connections 4 --duration 1s --json {json} --quiet"
        )),
        guard(Duration::from_secs(1)),
    )
    .assert_success();
    let stats = server.stop();
    let r = read_result(&json);

    let ok = uint(&r, "ok");
    let warmup_ok = uint(&r, "warmup.ok");
    assert!(ok > 0, "no request succeeded: {r:#}");
    assert_eq!(
        uint(&r, "connections_opened"),
        ok + total_errors(&r) + warmup_ok + uint(&r, "warmup.errors"),
        "connections opened vs requests (ok + errors + warm-up ok + warm-up errors); errors {:?}",
        errors(&r)
    );
    for (pid, (requests, connections)) in workers(&r) {
        assert_eq!(
            connections, requests,
            "worker {pid}: in close mode every response comes on its own connection"
        );
    }
    assert_eq!(
        stats.total_requests(),
        ok + warmup_ok,
        "the server's 200 responses vs loadgen's ok (+ warm-up ok)"
    );
    assert_eq!(
        stats.total_connections(),
        stats.total_requests(),
        "the server accepted {} connections for {} requests; loadgen opened {}: \
         every connection loadgen makes in close mode must carry exactly one request",
        stats.total_connections(),
        stats.total_requests(),
        uint(&r, "connections_opened")
    );
}

/// `--requests-per-conn N`: every connection loadgen closes has served
/// exactly N requests, so connections keep arriving at the server while the
/// run is measured (the server's own counts agree).
#[test]
fn recycled_keep_alive_connections_serve_exactly_n_requests_each() {
    const N: u64 = 10;
    const C: u64 = 4;
    let mut server = Server::start("reuseport", 2);
    let dir = TempDir::new("recycle");
    let json = dir.file("run.json");
    let target = server.target();
    run(
        &argv(&format!(
            "--target {target} --connections {C} --duration 1s --warmup 0s \
             --requests-per-conn {N} --json {json} --quiet"
        )),
        guard(Duration::from_secs(1)),
    )
    .assert_success();
    let stats = server.stop();
    let r = read_result(&json);
    assert_eq!(total_errors(&r), 0, "errors {:?}", errors(&r));
    assert_eq!(r["config"]["requests_per_conn"], N, "recorded in the JSON");
    let ok = uint(&r, "ok");
    let opened = uint(&r, "connections_opened");
    assert!(ok >= 20 * N, "too few requests to judge: {ok}");
    // Each of the C slots: connections of exactly N requests, closed, then
    // one still open at the end with fewer than N (possibly none yet).
    assert!(
        opened > ok / N && opened <= ok / N + C,
        "{opened} connections for {ok} requests at {N} per connection and {C} slots"
    );
    assert_eq!(
        stats.total_connections(),
        opened,
        "the server accepted what loadgen opened"
    );
    assert_eq!(
        stats.total_requests(),
        ok,
        "the server's responses vs loadgen's ok"
    );
}

#[test]
fn recycling_is_refused_where_it_means_nothing() {
    for args in [
        "--requests-per-conn 0",
        "--conn-lifetime 0s",
        "--mode close --requests-per-conn 5",
    ] {
        let out = run(
            &argv(&format!("--target 127.0.0.1:9 -d 1s {args}")),
            guard(Duration::from_secs(1)),
        );
        let line = out.assert_one_line_error();
        assert!(
            line.contains("--requests-per-conn") || line.contains("--conn-lifetime"),
            "{args}: {line}"
        );
    }
}

/// Classic pre-fork (`shared:prefork`, 2 workers) under 8 keep-alive
/// connections serves 2 and leaves 6 in its accept queue for the whole run:
/// loadgen counts those 6 as starved (their request waited more than half
/// the window).
/// When the window ends it closes the 2 idle connections at once, so the
/// workers take the 6 queued ones and answer their one request each: no
/// timeout, and every connection is credited to a worker. The stats file
/// agrees: 8 connections served.
#[test]
fn a_server_that_leaves_clients_in_its_queue_is_caught_and_every_request_still_answered() {
    let mut server = Server::start("shared:prefork", 2);
    let dir = TempDir::new("starved");
    let json = dir.file("run.json");
    let target = server.target();
    run(
        &argv(&format!(
            "--target {target} --mode keepalive --connections 8 --duration 1s --warmup 0s \
             --json {json} --quiet"
        )),
        guard(Duration::from_secs(1)),
    )
    .assert_success();
    let stats = server.stop();
    let r = read_result(&json);
    assert_eq!(uint(&r, "starved_connections"), 6, "{r:#}");
    assert_eq!(total_errors(&r), 0, "errors {:?}", errors(&r));
    let connections: u64 = workers(&r).values().map(|w| w.1).sum();
    assert_eq!(connections, 8, "every connection got its answer: {r:#}");
    let served: u64 = stats.workers.values().map(|w| w.connections).sum();
    assert_eq!(served, 8, "{:#}", stats.raw);
    let warnings = r["warnings"].to_string();
    assert!(warnings.contains("starved"), "{warnings}");
}

/// An open-loop connection with no request on it waits for nothing: at 100
/// req/s over 32 keep-alive connections most of them sit idle for the whole
/// window, and none is counted as starved.
#[test]
fn idle_open_loop_connections_are_not_starved() {
    let mut server = Server::start("shared:epoll", 2);
    let dir = TempDir::new("idle");
    let json = dir.file("run.json");
    let target = server.target();
    run(
        &argv(&format!(
            "--target {target} --mode keepalive --connections 32 --rate 100 --duration 1s \
             --warmup 0s --json {json} --quiet"
        )),
        guard(Duration::from_secs(1)),
    )
    .assert_success();
    server.stop();
    let r = read_result(&json);
    assert_eq!(uint(&r, "starved_connections"), 0, "{r:#}");
    assert_eq!(total_errors(&r), 0, "errors {:?}", errors(&r));
}
