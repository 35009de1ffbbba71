//! Steady state and findings, end to end with the real binaries (as root,
//! as CI runs them): a real difference becomes a finding with an interval
//! and a winner; every run records its warm-up, its trend and what else
//! ran; a target that is still warming at its cap is kept, marked not
//! steady, warned about, and kept out of the winners.
//!
//! The "no difference yields no finding" side is checked on synthetic
//! cells in `analyse::findings` and `analyse::compare` (a real A/A pair
//! yields a false finding with a small probability, measured in
//! harness/BENCH.md; a test must not depend on luck).

mod util;

use util::*;

use std::process::{Command, Stdio};

#[test]
fn a_server_slowed_on_purpose_is_a_finding_with_an_interval_and_loses() {
    let _serial = serial();
    let harness = ensure_siblings();
    let root = temp_dir("steady-finding");
    let out = Command::new(&harness)
        .args([
            "bench",
            "--strategies",
            "reuseport,reuseport@slow",
            "--test-only-inject-cpu-us",
            "reuseport@slow=300",
            "--workloads",
            "close",
            "--workers",
            "2",
            "--rounds",
            "5",
            "--duration",
            "300ms",
            "--seed",
            "11",
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
        panic!("summary.json does not validate against summary.schema.json: {errors:?}");
    }
    assert_eq!(
        summary["config"]["test_only_inject_cpu_us"][0], "reuseport@slow=300",
        "a slowed session says so"
    );
    let findings: Vec<&str> = summary["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let tp = findings
        .iter()
        .find(|f| f.starts_with("close, 2 workers: throughput:"))
        .unwrap_or_else(|| panic!("no throughput finding: {findings:?}"));
    assert!(
        tp.contains("reuseport (") && tp.contains("against reuseport@slow") && tp.contains("x ["),
        "the finding names both with an interval: {tp}"
    );
    assert!(!tp.contains("no significant"), "{tp}");
    let w = &summary["winners"][0];
    assert_eq!(w["throughput"]["target"], "reuseport");
    assert_eq!(w["throughput"]["tied"].as_array().unwrap().len(), 1);
    let lead = &w["throughput"]["lead"];
    assert_eq!(lead["significant"], true);
    assert!(lead["low"].as_f64().unwrap() > 1.1, "{lead}");
    assert_eq!(w["cheapest"]["target"], "reuseport");
    // The slowed server spends its 300 µs per request, and the cost is
    // measured per request from /proc (all threads of every process).
    let cells = summary["cells"].as_array().unwrap();
    let cpu = |t: &str| {
        cells.iter().find(|c| c["target"] == t).unwrap()["cost"]["cpu_us_per_request"]["median"]
            .as_f64()
            .unwrap()
    };
    assert!(cpu("reuseport@slow") > 300.0, "{}", cpu("reuseport@slow"));
    assert!(cpu("reuseport") > 0.0 && cpu("reuseport") < cpu("reuseport@slow"));
    for c in cells {
        assert_eq!(c["per_round"].as_array().unwrap().len(), 5);
        assert!(
            c["cost"]["workers_vcs_per_connection"]["median"]
                .as_f64()
                .unwrap()
                > 0.0
        );
        assert_eq!(c["fairness_kind"], "steady");
    }
    // Every run: its warm-up probes, its trend and the noise around it.
    for r in run_files(&dir) {
        let s = &r["steadiness"];
        assert!(s["warmup_s"].as_f64().unwrap() >= 0.5, "{s}");
        assert!(!s["warmup_slices"].as_array().unwrap().is_empty());
        assert!(s["trend"]["slices"].as_u64().unwrap() >= 2, "{s}");
        assert!(r["noise"]["window_s"].as_f64().unwrap() > 0.0);
        assert_eq!(r["schema"], "prefork-lab.harness.run.v2");
    }
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        report.contains(r"x \["),
        "the report prints intervals (Markdown escapes the bracket)"
    );
}

#[test]
fn a_target_still_warming_at_its_cap_is_kept_marked_and_left_out_of_the_winners() {
    let _serial = serial();
    // Node.js must show a plateau (two warm-up probes that agree); with the
    // cap at one probe it cannot, whatever the machine.
    if let Err(e) = harness::measure::targets::node::available() {
        panic!("{e}. This test needs node (scripts/test installs it).");
    }
    let harness = ensure_siblings();
    let root = temp_dir("steady-cap");
    let out = Command::new(&harness)
        .args([
            "run",
            "--strategy",
            "node:rr",
            "--workload",
            "keepalive",
            "--warmup",
            "500ms",
            "--warmup-cap",
            "500ms",
            "--duration",
            "500ms",
            "--results",
        ])
        .arg(&root)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "harness run failed: {stderr}");
    let dir = std::fs::canonicalize(root.join("latest")).unwrap();
    let r = &run_files(&dir)[0];
    let s = &r["steadiness"];
    assert_eq!(s["steady"], false, "{s}");
    assert_eq!(s["warmed"], false);
    assert!(
        s["why_not"].as_str().unwrap().contains("warm-up cap"),
        "{s}"
    );
    let summary = read_json(&dir.join("summary.json"));
    assert_eq!(summary["cells"][0]["steady_rounds"], 0);
    assert!(
        summary["winners"][0]["throughput"].is_null(),
        "{}",
        summary["winners"]
    );
    assert!(summary["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["kind"] == "not_steady"));
    assert!(
        stderr.contains("not steady"),
        "the warning is printed: {stderr}"
    );
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("not steady"), "the report says so");
}
