//! What counts as measured: the warm-up is served but kept apart, and the
//! per-second series covers the measured window and adds up to the totals.

mod util;

use std::time::Duration;

use util::{
    argv, decode_histogram, errors, guard, histogram, read_result, run, total_errors, uint, Server,
    TempDir,
};

#[test]
fn warm_up_requests_are_served_counted_apart_and_left_out_of_the_measurement() {
    let mut server = Server::start("shared:epoll", 2);
    let dir = TempDir::new("warmup");
    let json = dir.file("run.json");
    let target = server.target();
    run(
        &argv(&format!(
            "--target {target} --connections 4 --warmup 1s --duration 1s --json {json} --quiet"
        )),
        guard(Duration::from_secs(2)),
    )
    .assert_success();
    let stats = server.stop();
    let r = read_result(&json);

    let (ok, warmup_ok) = (uint(&r, "ok"), uint(&r, "warmup.ok"));
    assert!(
        warmup_ok > 0,
        "no warm-up request was counted: {}",
        r["warmup"]
    );
    assert!(ok > 0, "no measured request succeeded");
    assert_eq!(total_errors(&r), 0, "errors {:?}", errors(&r));
    assert_eq!(uint(&r, "warmup.errors"), 0);
    assert_eq!(
        stats.total_requests(),
        ok + warmup_ok,
        "the server's 200 responses vs loadgen's ok {ok} + warm-up ok {warmup_ok}"
    );
    assert_eq!(
        histogram(&r, "latency").len(),
        ok,
        "the latency histogram must hold the measured requests only, not the warm-up"
    );
    let per_worker: u64 = util::workers(&r).values().map(|w| w.0).sum();
    assert_eq!(
        per_worker, ok,
        "per-worker requests must count measured responses only"
    );
}

#[test]
fn the_per_second_series_covers_the_measured_seconds_and_adds_up_to_ok() {
    let mut server = Server::start("shared:epoll", 2);
    let dir = TempDir::new("series");
    let json = dir.file("run.json");
    let target = server.target();
    run(
        &argv(&format!(
            "--target {target} --connections 4 --duration 2s --json {json} --quiet"
        )),
        guard(Duration::from_secs(2)),
    )
    .assert_success();
    server.stop();
    let r = read_result(&json);

    let series = r["series"]
        .as_array()
        .unwrap_or_else(|| panic!("no \"series\" array: {r:#}"));
    assert!(
        (2..=3).contains(&series.len()),
        "a 2 s run has 2 seconds (3 with completions in the drain), got {}: {:#}",
        series.len(),
        r["series"]
    );
    for (i, s) in series.iter().enumerate() {
        assert_eq!(uint(s, "second"), i as u64, "series entries in order: {s}");
        let h = decode_histogram(
            s["hdr_v2_base64"]
                .as_str()
                .unwrap_or_else(|| panic!("series entry without a histogram: {s}")),
        );
        assert_eq!(
            h.len(),
            uint(s, "ok"),
            "second {i}: its latency histogram must hold one value per ok request"
        );
    }
    let ok_in_series: u64 = series.iter().map(|s| uint(s, "ok")).sum();
    assert!(uint(&r, "ok") > 0, "no request succeeded");
    assert_eq!(ok_in_series, uint(&r, "ok"), "sum of the series' ok vs ok");
    for s in &series[..2] {
        assert!(
            uint(s, "ok") > 0,
            "every measured second of a closed-loop run has completions: {:#}",
            r["series"]
        );
    }
}
