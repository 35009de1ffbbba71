//! Coordinated omission: in open loop, a server that stops answering for S
//! seconds must show up as about R·S requests with latencies up to S
//! (latency runs from each request's due time), while the service time
//! (from the actual send) shows only the few requests that were on the wire.
//! In the timeline (100 ms slices, keyed by due time) the stall stands out:
//! the slices of the requests due in it have a p99 far above the others.
//!
//! This is the only test in its binary so that no other load shares the
//! machine while it runs: the bounds below are far from any timing, but a
//! second loadgen saturating both cores would blur the service times.

mod util;

use std::thread;
use std::time::{Duration, Instant};

use util::sys::{SIGCONT, SIGSTOP};
use util::{
    argv, count_above, errors, guard, histogram, read_result, summary, timeline_adding_up,
    total_errors, uint, Loadgen, Server, TempDir,
};

/// Requests per second asked of loadgen.
const RATE: u64 = 400;
/// How long the worker is stopped.
const STALL: Duration = Duration::from_secs(1);
/// Measured time.
const RUN: Duration = Duration::from_secs(4);
/// Connections: at most this many requests can be on the wire in the stall.
const CONNECTIONS: u64 = 2;
/// "Slow": well above anything the server needs for `/` (debug build
/// included), well below the stall.
const SLOW_US: u64 = 200_000;

#[test]
fn a_stalled_server_is_charged_in_full_in_open_loop_latency_but_not_in_service_time() {
    let server = Server::start("shared:epoll", 1);
    let worker = server.worker_pids[0];
    let dir = TempDir::new("stall");
    let json = dir.file("run.json");
    let target = server.target();
    let lg = Loadgen::spawn(&argv(&format!(
        "--target {target} --rate {RATE} --connections {CONNECTIONS} --duration {}s \
         --timeline-interval 100ms --json {json} --quiet",
        RUN.as_secs()
    )));
    thread::sleep(Duration::from_millis(1500));
    server.signal_worker(worker, SIGSTOP);
    let stopped = Instant::now();
    thread::sleep(STALL);
    server.signal_worker(worker, SIGCONT);
    let stalled = stopped.elapsed();
    let out = lg.finish(guard(RUN)).assert_success();
    let r = read_result(&json);

    let latency = histogram(&r, "latency");
    let service = histogram(&r, "service");
    let context = format!(
        "stopped the only worker for {stalled:?} at {RATE} req/s; loadgen ran {:?}\n\
         latency {}\nservice {}\nerrors {:?}",
        out.elapsed,
        summary(&r, "latency"),
        summary(&r, "service"),
        errors(&r)
    );
    // Requests due in the first 0.8 s of the stall wait at least 0.2 s: about
    // 0.8·R·S of them. Ask for half that.
    let slow_latency = count_above(&latency, SLOW_US);
    let want = (0.4 * RATE as f64 * STALL.as_secs_f64()) as u64;
    assert!(
        slow_latency >= want,
        "only {slow_latency} latencies above {SLOW_US} µs, want at least {want}: \
         the stall is not charged to the requests it delayed\n{context}"
    );
    let want_max = (0.8 * STALL.as_micros() as f64) as u64;
    assert!(
        latency.max() >= want_max,
        "largest latency {} µs, want at least {want_max} µs\n{context}",
        latency.max()
    );
    // Only requests already sent when the worker stopped (one per connection)
    // wait on the wire; a few more for luck.
    let slow_service = count_above(&service, SLOW_US);
    let allowed = CONNECTIONS + 4;
    assert!(
        slow_service <= allowed,
        "{slow_service} service times above {SLOW_US} µs, want at most {allowed}: \
         service time must run from the actual send\n{context}"
    );
    assert_eq!(uint(&r, "errors.timeout"), 0, "{context}");
    let (ok, sent) = (uint(&r, "ok"), uint(&r, "sent"));
    assert_eq!(
        ok + total_errors(&r),
        sent,
        "every measured request sent ends as ok or as an error\n{context}"
    );
    // The schedule is fixed in advance (request i due at i/R): every request
    // due in the 4 s must be sent, late or not; none may be skipped.
    let due = RATE * RUN.as_secs();
    assert!(
        sent.abs_diff(due) <= 2,
        "sent {sent} requests, {due} were due in {RUN:?} at {RATE} req/s\n{context}"
    );

    // The timeline: 40 slices of 100 ms adding up to the totals. Requests due
    // in the first 0.8 s of the stall wait at least 0.2 s, so about 8 slices
    // have a p99 above SLOW_US; the slice in which the stall began has
    // requests that waited nearly all of it. Most slices (the 3 s outside the
    // stall) are far below.
    let t = timeline_adding_up(&r);
    assert_eq!(t.len(), 40, "{context}");
    let p99s: Vec<u64> = t.iter().map(|s| s.p99_us).collect();
    let slow: Vec<usize> = (0..t.len()).filter(|&i| p99s[i] > SLOW_US).collect();
    let context = format!("{context}\nslice p99s (µs) {p99s:?}");
    assert!(
        slow.len() >= 6,
        "only slices {slow:?} have a p99 above {SLOW_US} µs; the stall must show in the timeline\n{context}"
    );
    let worst = *p99s.iter().max().expect("40 slices");
    assert!(
        worst >= want_max,
        "worst slice p99 {worst} µs, want at least {want_max} µs\n{context}"
    );
    let mut sorted = p99s.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    assert!(
        median < SLOW_US && worst > 4 * median,
        "median slice p99 {median} µs vs worst {worst} µs: the stalled slices must stand out\n{context}"
    );
    // The schedule: 40 due per slice whatever the server did.
    for (i, s) in t.iter().enumerate() {
        assert!(
            s.due.abs_diff(RATE / 10) <= 1,
            "slice {i}: {} due\n{context}",
            s.due
        );
    }
}
