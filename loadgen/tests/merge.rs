//! `loadgen merge` adds the results of generators that ran side by side
//! exactly: counts are summed, histograms added (percentiles are never
//! averaged), and the sum still matches what the server counted.

mod util;

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use util::{
    argv, errors, guard, histogram, read_result, run, total_errors, uint, workers, Loadgen, Server,
    TempDir,
};

/// `(value, count)` of every recorded bucket.
fn buckets(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

#[test]
fn merging_two_concurrent_runs_adds_counts_and_histograms_exactly() {
    let mut server = Server::start("shared:epoll", 3);
    let dir = TempDir::new("merge");
    let (a_json, b_json, m_json) = (dir.file("a.json"), dir.file("b.json"), dir.file("m.json"));
    let target = server.target();
    let spawn = |json: &str| {
        Loadgen::spawn(&argv(&format!(
            "--target {target} --connections 3 --duration 2s --json {json} --quiet"
        )))
    };
    let (a, b) = (spawn(&a_json), spawn(&b_json));
    a.finish(guard(Duration::from_secs(2))).assert_success();
    b.finish(guard(Duration::from_secs(2))).assert_success();
    let stats = server.stop();
    run(
        &["merge", &a_json, &b_json, "--json", &m_json],
        Duration::from_secs(20),
    )
    .assert_success();
    let (ra, rb, m) = (
        read_result(&a_json),
        read_result(&b_json),
        read_result(&m_json),
    );

    for (name, r) in [("a", &ra), ("b", &rb)] {
        assert!(uint(r, "ok") > 0, "run {name}: no request succeeded");
        assert_eq!(total_errors(r), 0, "run {name}: errors {:?}", errors(r));
    }
    for field in ["ok", "sent", "connections_opened", "unattributed"] {
        assert_eq!(
            uint(&m, field),
            uint(&ra, field) + uint(&rb, field),
            "merged {field} vs a + b"
        );
    }

    let (wa, wb, wm) = (workers(&ra), workers(&rb), workers(&m));
    let mut sum: BTreeMap<i32, (u64, u64)> = BTreeMap::new();
    for (pid, (req, conn)) in wa.iter().chain(wb.iter()) {
        let e = sum.entry(*pid).or_default();
        e.0 += req;
        e.1 += conn;
    }
    assert_eq!(
        wm, sum,
        "merged per-worker (requests, connections) vs a + b"
    );
    let merged_requests: BTreeMap<i32, u64> = stats
        .workers
        .keys()
        .map(|pid| (*pid, wm.get(pid).map_or(0, |w| w.0)))
        .collect();
    let server_requests: BTreeMap<i32, u64> = stats
        .workers
        .iter()
        .map(|(pid, w)| (*pid, w.requests))
        .collect();
    assert_eq!(
        merged_requests, server_requests,
        "merged requests per worker pid (left) vs the server's stats (right)"
    );
    assert!(
        wm.keys().all(|pid| stats.workers.contains_key(pid)),
        "merged result credits pids that are not server workers: {wm:?}"
    );

    let (ha, hb, hm) = (
        histogram(&ra, "latency"),
        histogram(&rb, "latency"),
        histogram(&m, "latency"),
    );
    assert_eq!(
        hm.len(),
        ha.len() + hb.len(),
        "merged latency count vs a + b"
    );
    let mut added = ha.clone();
    added
        .add(&hb)
        .expect("both histograms have loadgen's bounds");
    assert_eq!(
        uint(&m, "latency.p99_us"),
        added.value_at_quantile(0.99),
        "merged p99 must be the p99 of the added histograms (a p99 {}, b p99 {})",
        uint(&ra, "latency.p99_us"),
        uint(&rb, "latency.p99_us")
    );
    assert_eq!(
        buckets(&hm),
        buckets(&added),
        "the merged latency histogram must be a + b bucket by bucket"
    );
    let service_sum = histogram(&ra, "service").len() + histogram(&rb, "service").len();
    assert_eq!(histogram(&m, "service").len(), service_sum);
}
