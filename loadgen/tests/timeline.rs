//! The timeline (`--timeline-interval`) and rate steps (`--rate-step`) in
//! real runs against `lab-server`: each measured request sits in the slice
//! of its due time, the slices add up to the totals exactly, a rate step
//! shows in the due counts, and per-worker latency histograms hold exactly
//! each worker's responses.
//!
//! Due counts come from the schedule, not from the server, so they are
//! checked closely; nothing here depends on how fast the server or the
//! machine is.

mod util;

use std::collections::BTreeMap;
use std::thread;
use std::time::Duration;

use util::{
    argv, errors, guard, read_result, run, timeline_adding_up, total_errors, uint,
    worker_latencies, workers, Loadgen, Server, TempDir,
};

#[test]
fn a_rate_step_shows_in_the_timelines_due_counts_and_everything_adds_up() {
    let mut server = Server::start("shared:epoll", 2);
    let dir = TempDir::new("step");
    let json = dir.file("run.json");
    let target = server.target();
    run(
        &argv(&format!(
            "--target {target} --rate 500 --rate-step 300ms:2000 --duration 900ms \
             --timeline-interval 100ms --connections 8 --json {json} --quiet"
        )),
        guard(Duration::from_millis(900)),
    )
    .assert_success();
    let stats = server.stop();
    let r = read_result(&json);

    assert_eq!(r["timeline_interval_s"], 0.1);
    assert_eq!(
        r["config"]["rate_steps"],
        serde_json::json!([{"at_s": 0.3, "rate_rps": 2000.0}])
    );
    // Offered: (500·0.3 + 2000·0.6) / 0.9 = 1500 req/s.
    let offered = r["target_rate_rps"].as_f64().unwrap();
    assert!((offered - 1500.0).abs() < 1e-6, "target_rate_rps {offered}");

    let t = timeline_adding_up(&r);
    assert_eq!(t.len(), 9, "a 900 ms run in 100 ms slices");
    let due: Vec<u64> = t.iter().map(|s| s.due).collect();
    // Uniform arrivals keep the schedule exactly: 50 due per slice before the
    // step, 200 after (±1 where a due time falls on a slice boundary).
    for (i, d) in due.iter().enumerate() {
        let want = if i < 3 { 50 } else { 200 };
        assert!(
            d.abs_diff(want) <= 1,
            "slice {i}: {d} due, want {want}: {due:?}"
        );
    }
    let before = due[..3].iter().sum::<u64>() as f64 / 3.0;
    let after = due[3..].iter().sum::<u64>() as f64 / 6.0;
    assert!(after > 2.0 * before, "due per slice {due:?}");
    let total_due: u64 = due.iter().sum();
    assert!(total_due.abs_diff(1350) <= 1, "{total_due} due, want 1350");

    // Per worker: the histogram holds exactly the worker's responses (all 200
    // from lab-server), and they add up to ok and to the server's counts.
    assert_eq!(uint(&r, "errors.non_2xx"), 0);
    assert_eq!(uint(&r, "unattributed"), 0);
    let counts = workers(&r);
    let latencies = worker_latencies(&r);
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        latencies.keys().collect::<Vec<_>>()
    );
    for (pid, (requests, _)) in &counts {
        assert_eq!(
            latencies[pid].len(),
            *requests,
            "worker {pid}: latency histogram count vs its requests"
        );
    }
    let in_workers: u64 = latencies.values().map(|h| h.len()).sum();
    assert_eq!(in_workers, uint(&r, "ok"), "per-worker histograms vs ok");
    let server_requests: BTreeMap<i32, u64> = stats
        .workers
        .iter()
        .map(|(pid, w)| (*pid, w.requests))
        .collect();
    let loadgen_requests: BTreeMap<i32, u64> = stats
        .workers
        .keys()
        .map(|pid| (*pid, latencies.get(pid).map_or(0, |h| h.len())))
        .collect();
    assert_eq!(
        loadgen_requests,
        server_requests,
        "per-worker histogram counts (left) vs the server's stats (right); errors {:?}",
        errors(&r)
    );
}

#[test]
fn steps_count_from_the_end_of_the_warm_up_with_poisson_arrivals_on_two_threads() {
    let mut server = Server::start("shared:epoll", 2);
    let dir = TempDir::new("step-poisson");
    let json = dir.file("run.json");
    let target = server.target();
    run(
        &argv(&format!(
            "--target {target} --rate 400 --rate-step 500ms:1600 --arrivals poisson \
             --threads 2 --connections 6 --warmup 300ms --duration 1s \
             --timeline-interval 250ms --seed 7 --json {json} --quiet"
        )),
        guard(Duration::from_millis(1300)),
    )
    .assert_success();
    server.stop();
    let r = read_result(&json);

    let t = timeline_adding_up(&r);
    assert_eq!(t.len(), 4);
    let due: Vec<u64> = t.iter().map(|s| s.due).collect();
    // 100 expected per slice before the step, 400 after (Poisson: ±3 sd of
    // 10 and 20). Had the step counted from the start of the warm-up, the
    // first slice would expect 160 and the second 400.
    for (i, d) in due.iter().enumerate() {
        let want = if i < 2 { 100.0 } else { 400.0 };
        assert!(
            (*d as f64 - want).abs() < 3.0 * f64::sqrt(want) + 1.0,
            "slice {i}: {d} due, want about {want}: {due:?}"
        );
    }
    assert!(due[2] + due[3] > 2 * (due[0] + due[1]), "due {due:?}");
    assert_eq!(uint(&r, "warmup.errors"), 0);
    assert!(uint(&r, "warmup.ok") > 0, "the warm-up ran at --rate");
}

#[test]
fn closed_loop_slices_are_keyed_by_send_time_and_add_up() {
    let mut server = Server::start("shared:epoll", 2);
    let dir = TempDir::new("closed");
    let json = dir.file("run.json");
    let target = server.target();
    run(
        &argv(&format!(
            "--target {target} --connections 4 --duration 1s --timeline-interval 300ms \
             --json {json} --quiet"
        )),
        guard(Duration::from_secs(1)),
    )
    .assert_success();
    let stats = server.stop();
    let r = read_result(&json);

    let t = timeline_adding_up(&r);
    // 1 s in 300 ms slices: the last one is 100 ms long.
    assert_eq!(t.len(), 4);
    assert_eq!(uint(&r, "unsent"), 0, "closed loop sends what it counts");
    assert_eq!(total_errors(&r), 0, "errors {:?}", errors(&r));
    assert_eq!(t.iter().map(|s| s.due).sum::<u64>(), uint(&r, "sent"));
    assert_eq!(stats.total_requests(), uint(&r, "ok"));
    assert_eq!(r["target_rate_rps"], serde_json::Value::Null);
}

#[test]
fn when_the_server_dies_mid_run_every_due_request_is_still_accounted_for_in_its_slice() {
    let mut server = Server::start("shared:epoll", 2);
    let dir = TempDir::new("died");
    let json = dir.file("run.json");
    let target = server.target();
    // Keep-alive, open loop: after the kill, connects are refused (errors
    // without a request) and due requests wait for a connection until the
    // run ends (unsent).
    let lg = Loadgen::spawn(&argv(&format!(
        "--target {target} --rate 500 --connections 4 --duration 2s --timeout 1s \
         --timeline-interval 100ms --json {json} --quiet"
    )));
    thread::sleep(Duration::from_millis(1000));
    server.kill_now();
    lg.finish(guard(Duration::from_secs(2))).assert_success();
    let r = read_result(&json);

    let t = timeline_adding_up(&r);
    assert_eq!(t.len(), 20);
    let context = format!(
        "errors {:?}, unsent {}, idle connect errors {}, ok per slice {:?}",
        errors(&r),
        uint(&r, "unsent"),
        uint(&r, "idle_connect_errors"),
        t.iter().map(|s| s.ok).collect::<Vec<_>>()
    );
    assert!(uint(&r, "unsent") > 0, "{context}");
    assert!(uint(&r, "idle_connect_errors") > 0, "{context}");
    assert!(
        uint(&r, "errors.unfinished") >= uint(&r, "unsent"),
        "{context}"
    );
    // The schedule does not care that the server died: 50 due per slice.
    for (i, s) in t.iter().enumerate() {
        assert!(
            s.due.abs_diff(50) <= 1,
            "slice {i}: {} due; {context}",
            s.due
        );
    }
    // Slices with successes come first; once the server is dead none succeed.
    let served: Vec<bool> = t.iter().map(|s| s.ok > 0).collect();
    let first_dead = served
        .iter()
        .position(|ok| !ok)
        .unwrap_or_else(|| panic!("every slice had successes after the kill; {context}"));
    assert!(first_dead > 0, "no slice had successes; {context}");
    assert!(
        served[first_dead..].iter().all(|ok| !ok),
        "a slice after the server died has successes; {context}"
    );
    // Refused connects are errors of the slice in which they failed: the
    // slice of the kill (which may still have successes) or later.
    let refused_late: u64 = t[first_dead - 1..]
        .iter()
        .map(|s| s.errors.get("refused").copied().unwrap_or(0))
        .sum();
    assert_eq!(
        refused_late,
        uint(&r, "errors.refused"),
        "refused connects before the server died; {context}"
    );
}
