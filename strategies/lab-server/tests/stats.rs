//! `--stats-out`: the file written at shutdown has the documented shape, one
//! entry per worker, and totals that match the traffic the test made.

mod util;

use std::collections::BTreeSet;

use util::*;

/// Field names of a worker entry that must be unsigned integers.
const UINT_FIELDS: [&str; 11] = [
    "slot",
    "generation",
    "pid",
    "connections",
    "requests",
    "accept_eagain",
    "bad_requests",
    "cpu_user_us",
    "cpu_system_us",
    "voluntary_ctxt_switches",
    "involuntary_ctxt_switches",
];

#[track_caller]
fn totals_match_the_traffic(strategy: &str) {
    let ctx = format!("strategy {strategy}");
    let workers = 2;
    let dir = TempDir::new("stats");
    let stats_path = dir.path().join("stats.json");
    let mut server = Server::start(
        strategy,
        workers,
        &["--stats-out", stats_path.to_str().unwrap()],
    );

    // Six keep-alive connections with 1, 2, 3, 1, 2, 3 requests: 12 served.
    let (mut connections, mut requests) = (0u64, 0u64);
    for i in 0..6 {
        let n = i % 3 + 1;
        let mut c = Client::connect(server.addr);
        connections += 1;
        for k in 0..n {
            let r = c.get("/?bytes=100", k + 1 == n);
            assert_eq!(
                (r.status, r.body.len()),
                (200, 100),
                "{ctx}: connection {i} request {k}"
            );
            requests += 1;
        }
    }
    // A 404 is a connection but not a served request.
    assert_eq!(get(server.addr, "/nope").status, 404, "{ctx}: GET /nope");
    connections += 1;
    // A malformed request is a connection and a bad request.
    let outcome = send_bad_input(server.addr, b"\x01\x02 definitely not http\r\n\r\n", false);
    if let BadInputOutcome::Answered(r) = &outcome {
        assert_eq!(
            r.status, 400,
            "{ctx}: malformed request answered with {r:?}"
        );
    }
    connections += 1;

    let status = server.stop();
    assert_eq!(
        status.code(),
        Some(0),
        "{ctx}: exit after SIGTERM ({status}); stderr:\n{}",
        server.stderr()
    );
    assert_eq!(
        dir.entries(),
        ["stats.json"],
        "{ctx}: the stats file must be renamed into place, leaving no temp file"
    );

    let stats = read_stats(&stats_path);
    assert_eq!(
        stats["schema"], "prefork-lab.server-stats.v1",
        "{ctx}: {stats}"
    );
    assert_eq!(stats["strategy"], strategy, "{ctx}: {stats}");
    assert_eq!(stats["addr"], server.addr.to_string(), "{ctx}: {stats}");
    assert_eq!(
        stats["master_pid"].as_i64(),
        Some(server.master_pid as i64),
        "{ctx}: {stats}"
    );
    assert!(
        stats["master"].is_object(),
        "{ctx}: \"master\" is not an object: {stats}"
    );

    let entries = stats_workers(&stats);
    assert_eq!(
        entries.len(),
        workers,
        "{ctx}: one entry per worker process expected: {stats}"
    );
    for e in entries {
        for f in UINT_FIELDS {
            uint(e, f);
        }
        assert_eq!(
            uint(e, "generation"),
            0,
            "{ctx}: no worker was replaced: {e}"
        );
        assert!(
            e["exit"].is_string(),
            "{ctx}: \"exit\" is not a string: {e}"
        );
    }
    let slots: BTreeSet<u64> = entries.iter().map(|e| uint(e, "slot")).collect();
    assert_eq!(
        slots,
        (0..workers as u64).collect(),
        "{ctx}: slots of {stats}"
    );
    let pids: BTreeSet<i32> = entries.iter().map(|e| uint(e, "pid") as i32).collect();
    assert_eq!(
        pids,
        server.worker_pids.iter().copied().collect(),
        "{ctx}: pids in the stats vs the ready line"
    );

    assert_eq!(
        sum_over_workers(&stats, "requests"),
        requests,
        "{ctx}: total requests (200s fully written) in {stats}"
    );
    assert_eq!(
        sum_over_workers(&stats, "connections"),
        connections,
        "{ctx}: total connections in {stats}"
    );
    // The malformed request is certainly a bad request; whether a 404 also
    // counts as one is the server's documented choice, not the interface's.
    let bad = sum_over_workers(&stats, "bad_requests");
    assert!(
        (1..=2).contains(&bad),
        "{ctx}: total bad requests {bad}, expected 1 (malformed) or 2 (+ the 404) in {stats}"
    );
}

#[test]
fn master_pass_strategies_write_stats_whose_totals_match_the_traffic() {
    for s in MASTER_PASS {
        totals_match_the_traffic(s);
    }
}

#[test]
fn shared_strategies_write_stats_whose_totals_match_the_traffic() {
    for s in SHARED {
        totals_match_the_traffic(s);
    }
}

#[test]
fn reuseport_strategies_write_stats_whose_totals_match_the_traffic() {
    for s in REUSEPORT {
        totals_match_the_traffic(s);
    }
}
