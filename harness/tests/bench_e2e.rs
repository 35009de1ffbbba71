//! The harness end to end: a short bench over every strategy writes run
//! files, a summary that validates against the schema, and a report naming
//! every strategy; Ctrl-C leaves a usable partial result and no process.

mod util;

use util::*;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::model::names::STRATEGIES;

#[test]
fn a_short_bench_over_every_strategy_writes_runs_a_valid_summary_and_a_report_naming_them_all() {
    let _serial = serial();
    let harness = ensure_siblings();
    let root = temp_dir("bench");
    let out = Command::new(&harness)
        .args([
            "bench",
            "--strategies",
            &STRATEGIES.join(","),
            "--workers",
            "2",
            "--workloads",
            "keepalive,heavy-tail",
            "--rounds",
            "1",
        ])
        .args([
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
            "--seed",
            "5",
            "--results",
        ])
        .arg(&root)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "harness bench failed: {stderr}");
    let dir =
        std::fs::canonicalize(root.join("latest")).expect("results/latest points at the session");
    let summary = read_json(&dir.join("summary.json"));
    if let Err(errors) = harness::store::schema::validate_summary(&summary) {
        panic!("summary.json does not validate against summary.schema.json: {errors:?}");
    }
    let runs: Vec<_> = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(
        runs.len(),
        STRATEGIES.len() * 2,
        "one run file per strategy and workload"
    );
    let cells = summary["cells"].as_array().unwrap();
    assert_eq!(cells.len(), STRATEGIES.len() * 2);
    for c in cells {
        assert!(
            c["throughput_rps"]["median"].as_f64().unwrap() > 0.0,
            "cell {} has no throughput",
            c["target"]
        );
        assert_eq!(
            c["errors"].as_u64(),
            Some(0),
            "cell {} had errors",
            c["target"]
        );
    }
    let heavy: Vec<_> = cells
        .iter()
        .filter(|c| c["workload"] == "heavy-tail")
        .collect();
    assert!(
        heavy
            .iter()
            .all(|c| c["offered_rps"].as_f64().is_some_and(|r| r > 0.0)),
        "open loop cells record the offered rate"
    );
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for s in STRATEGIES {
        assert!(report.contains(s), "report.md does not name {s}");
        assert!(html.contains(s), "report.html does not name {s}");
    }
    assert!(html.contains("<svg"), "report.html embeds its plots");

    // `harness report DIR` derives the same analysis from the run files alone.
    std::fs::remove_file(dir.join("summary.json")).unwrap();
    std::fs::remove_file(dir.join("report.md")).unwrap();
    let out = Command::new(&harness)
        .arg("report")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "harness report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = read_json(&dir.join("summary.json"));
    assert_eq!(
        again["cells"], summary["cells"],
        "re-rendering reproduces every cell"
    );
    assert_eq!(again["findings"], summary["findings"]);
    assert!(dir.join("report.md").is_file());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn ctrl_c_leaves_a_partial_result_and_no_process_behind() {
    let _serial = serial();
    let harness = ensure_siblings();
    become_subreaper();
    let root = temp_dir("interrupt");
    let mut child = Command::new(&harness)
        .args([
            "bench",
            "--strategies",
            &STRATEGIES.join(","),
            "--workers",
            "2",
            "--workloads",
            "keepalive",
            "--rounds",
            "5",
        ])
        .args([
            "--duration",
            "300ms",
            "--warmup",
            "0s",
            "--seed",
            "9",
            "--results",
        ])
        .arg(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until a few runs are on disk, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(60);
    let runs_done = || {
        std::fs::read_dir(&root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|s| std::fs::read_dir(s.path().join("runs")).ok())
            .flat_map(|d| d.flatten())
            .filter(|f| !f.file_name().to_string_lossy().starts_with('.'))
            .count()
    };
    while runs_done() < 3 {
        assert!(Instant::now() < deadline, "no runs written within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "an interrupted bench exits 130: {err}"
    );
    assert!(
        err.contains("interrupted"),
        "it says it was interrupted: {err}"
    );
    let dir =
        std::fs::canonicalize(root.join("latest")).expect("latest points at the partial session");
    let summary = read_json(&dir.join("summary.json"));
    assert!(
        harness::store::schema::validate_summary(&summary).is_ok(),
        "the partial summary is valid"
    );
    assert!(!summary["cells"].as_array().unwrap().is_empty());
    assert!(dir.join("report.md").is_file());
    let session = read_json(&dir.join("session.json"));
    assert!(session["ended_early"]
        .as_str()
        .is_some_and(|s| s.contains("interrupted")));
    // Nothing left running: no orphan became our child and stayed alive.
    std::thread::sleep(Duration::from_millis(300));
    ps::reap_zombies();
    // Tests in this file run in parallel: the other test's own harness is our
    // child too. Anything else (lab-server, loadgen, setpriv, taskset) is an
    // orphan of the interrupted session.
    let left: Vec<_> = ps::live_children()
        .into_iter()
        .map(|p| (p.pid, p.comm))
        .filter(|(_, name)| name != "harness")
        .collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn an_open_loop_workload_of_new_connections_is_offered_a_share_of_the_capacity_measured_with_them()
{
    let _serial = serial();
    let harness = ensure_siblings();
    let root = temp_dir("bench-close-capacity");
    let out = Command::new(&harness)
        .args([
            "bench",
            "--strategies",
            "reuseport,master-pass",
            "--workers",
            "2",
        ])
        .args([
            "--workloads",
            "heavy-tail,heavy-tail-close",
            "--rounds",
            "1",
        ])
        .args([
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
            "--seed",
            "5",
            "--results",
        ])
        .arg(&root)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "harness bench failed: {stderr}");
    let dir = std::fs::canonicalize(root.join("latest")).unwrap();
    let summary = read_json(&dir.join("summary.json"));
    if let Err(errors) = harness::store::schema::validate_summary(&summary) {
        panic!("summary.json does not validate: {errors:?}");
    }
    // Both kinds of capacity, for the yardstick and for each open-loop target.
    let cal = summary["calibration"].as_array().unwrap();
    let capacity = |target: &str, mode: &str| -> f64 {
        let c = cal
            .iter()
            .find(|c| c["target"] == target && c["mode"] == mode)
            .unwrap_or_else(|| panic!("no {mode} calibration of {target}: {cal:?}"));
        let args: Vec<&str> = c["loadgen_args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(args.windows(2).any(|w| w == ["--mode", mode]), "{args:?}");
        c["capacity_rps"].as_f64().unwrap()
    };
    for t in ["reuseport", "master-pass"] {
        for m in ["keepalive", "close"] {
            assert!(capacity(t, m) > 0.0);
        }
    }
    // Every target is offered half of the yardstick's capacity of the
    // workload's own kind.
    for c in summary["cells"].as_array().unwrap() {
        let mode = if c["workload"] == "heavy-tail-close" {
            "close"
        } else {
            "keepalive"
        };
        let offered = c["offered_rps"].as_f64().unwrap();
        let want = 0.5 * capacity("reuseport", mode);
        assert!(
            (offered - want).abs() <= want * 0.01,
            "{} / {}: offered {offered}, want {want}",
            c["target"],
            c["workload"]
        );
    }
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        report.contains("with a new connection per request"),
        "the report says which capacity"
    );
    let _ = std::fs::remove_dir_all(&root);
}
