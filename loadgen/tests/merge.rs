//! `loadgen merge` adds the results of generators that ran side by side
//! exactly: counts are summed, histograms added (percentiles are never
//! averaged), and the sum still matches what the server counted. Timelines
//! merge slice by slice and per-worker histograms add; inputs with
//! different timeline intervals or rate-step offsets are refused, and v1
//! files (no timeline) are still read.

mod util;

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::Value;
use util::{
    argv, errors, guard, histogram, read_result, run, timeline_adding_up, total_errors, uint,
    worker_latencies, workers, Loadgen, Server, TempDir,
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

    // The timelines, slice by slice: counts summed, histograms added.
    let (ta, tb, tm) = (
        timeline_adding_up(&ra),
        timeline_adding_up(&rb),
        timeline_adding_up(&m),
    );
    assert_eq!((ta.len(), tb.len(), tm.len()), (20, 20, 20));
    for (i, ((a, b), m)) in ta.iter().zip(&tb).zip(&tm).enumerate() {
        assert_eq!(m.due, a.due + b.due, "slice {i}: due");
        assert_eq!(m.ok, a.ok + b.ok, "slice {i}: ok");
        let mut added = a.latency.clone();
        added.add(&b.latency).unwrap();
        assert_eq!(buckets(&m.latency), buckets(&added), "slice {i}: histogram");
    }
    // Per-worker histograms: added by pid.
    let (la, lb, lm) = (
        worker_latencies(&ra),
        worker_latencies(&rb),
        worker_latencies(&m),
    );
    for (pid, h) in &lm {
        let mut added = loadgen_empty_like(h);
        for part in [&la, &lb] {
            if let Some(p) = part.get(pid) {
                added.add(p).unwrap();
            }
        }
        assert_eq!(
            buckets(h),
            buckets(&added),
            "worker {pid}: merged histogram vs a + b"
        );
        assert_eq!(
            h.len(),
            wm[pid].0,
            "worker {pid}: histogram count vs requests"
        );
    }
}

/// An empty histogram with the bounds of `h`.
fn loadgen_empty_like(h: &Histogram<u64>) -> Histogram<u64> {
    let mut e = h.clone();
    e.reset();
    e
}

/// Writes `v` to `path` as JSON.
fn write(path: &str, v: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

/// `loadgen merge A B --json OUT`, expecting a one-line refusal and no OUT.
#[track_caller]
fn merge_refused(a: &str, b: &str, out: &str) -> String {
    let line =
        run(&["merge", a, b, "--json", out], Duration::from_secs(20)).assert_one_line_error();
    assert!(
        !std::path::Path::new(out).exists(),
        "a refused merge must write nothing"
    );
    line
}

#[test]
fn open_loop_runs_with_steps_merge_and_mismatched_timelines_or_steps_are_refused() {
    let mut server = Server::start("shared:epoll", 2);
    let dir = TempDir::new("merge-steps");
    let (a_json, m_json) = (dir.file("a.json"), dir.file("m.json"));
    let target = server.target();
    run(
        &argv(&format!(
            "--target {target} --rate 200 --rate-step 250ms:600 --duration 500ms \
             --timeline-interval 50ms --connections 4 --json {a_json} --quiet"
        )),
        guard(Duration::from_millis(500)),
    )
    .assert_success();
    server.stop();
    let a = read_result(&a_json);

    // The same run twice: everything doubles, the step offsets stay and
    // their rates add, like --rate.
    run(
        &["merge", &a_json, &a_json, "--json", &m_json],
        Duration::from_secs(20),
    )
    .assert_success();
    let m = read_result(&m_json);
    assert_eq!(
        m["config"]["rate_steps"],
        serde_json::json!([{"at_s": 0.25, "rate_rps": 1200.0}])
    );
    assert_eq!(m["config"]["rate_rps"], 400.0);
    let offered = m["target_rate_rps"].as_f64().unwrap();
    // (200·0.25 + 600·0.25) / 0.5 = 400 req/s offered by each.
    assert!(
        (offered - 800.0).abs() < 1e-6,
        "merged target_rate_rps {offered}"
    );
    assert_eq!(m["timeline_interval_s"], 0.05);
    let (ta, tm) = (timeline_adding_up(&a), timeline_adding_up(&m));
    assert_eq!((ta.len(), tm.len()), (10, 10));
    for (i, (a, m)) in ta.iter().zip(&tm).enumerate() {
        assert_eq!((m.due, m.ok), (2 * a.due, 2 * a.ok), "slice {i}");
        assert_eq!(m.latency.len(), 2 * a.latency.len(), "slice {i}");
    }
    assert!(
        tm[5].due > 2 * tm[0].due,
        "the step shows after merging: {tm:?}"
    );

    // Another timeline interval: refused, naming the files and the option.
    let b_json = dir.file("b.json");
    let mut b = a.clone();
    b["timeline_interval_s"] = 0.1.into();
    write(&b_json, &b);
    let refused_json = dir.file("refused.json");
    let line = merge_refused(&a_json, &b_json, &refused_json);
    for s in ["b.json", "a.json", "--timeline-interval"] {
        assert!(line.contains(s), "the message must say {s:?}: {line}");
    }

    // Steps at other offsets: refused.
    let c_json = dir.file("c.json");
    let mut c = a.clone();
    c["config"]["rate_steps"][0]["at_s"] = 0.3.into();
    write(&c_json, &c);
    let line = merge_refused(&a_json, &c_json, &refused_json);
    for s in ["c.json", "--rate-step"] {
        assert!(line.contains(s), "the message must say {s:?}: {line}");
    }
}

/// `r` as a v1 file had it: the v2 fields removed, the v1 schema tag.
fn as_v1(r: &Value) -> Value {
    let mut v = r.clone();
    let o = v.as_object_mut().unwrap();
    o.insert("schema".into(), "prefork-lab.loadgen.v1".into());
    for k in [
        "unsent",
        "idle_connect_errors",
        "timeline_interval_s",
        "timeline",
    ] {
        assert!(o.remove(k).is_some(), "a v2 result has {k}");
    }
    o["config"].as_object_mut().unwrap().remove("rate_steps");
    for w in o["workers"].as_array_mut().unwrap() {
        w.as_object_mut().unwrap().remove("latency");
    }
    v
}

#[test]
fn v1_files_are_still_read_and_merged_but_not_with_v2_ones() {
    let mut server = Server::start("shared:epoll", 2);
    let dir = TempDir::new("merge-v1");
    let (a_json, v1_json, m_json) = (dir.file("a.json"), dir.file("v1.json"), dir.file("m.json"));
    let target = server.target();
    run(
        &argv(&format!(
            "--target {target} --connections 2 --duration 300ms --json {a_json} --quiet"
        )),
        guard(Duration::from_millis(300)),
    )
    .assert_success();
    server.stop();
    let a = read_result(&a_json);
    write(&v1_json, &as_v1(&a));

    run(
        &["merge", &v1_json, &v1_json, "--json", &m_json],
        Duration::from_secs(20),
    )
    .assert_success();
    let m = read_result(&m_json);
    assert_eq!(uint(&m, "ok"), 2 * uint(&a, "ok"));
    assert_eq!(m["timeline"], serde_json::json!([]));
    assert_eq!(m["timeline_interval_s"], Value::Null);
    assert_eq!(uint(&m, "unsent"), 0);
    for w in m["workers"].as_array().unwrap() {
        assert_eq!(
            w["latency"],
            Value::Null,
            "a v1 input has no per-worker histogram: {w}"
        );
    }
    assert_eq!(
        histogram(&m, "latency").len(),
        2 * histogram(&a, "latency").len()
    );

    std::fs::remove_file(&m_json).unwrap();
    let line = merge_refused(&a_json, &v1_json, &m_json);
    assert!(
        line.contains("v1"),
        "the message must say which input is v1: {line}"
    );
}
