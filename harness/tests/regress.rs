//! `harness regress`: exit codes and baseline errors, against real servers.
//! A slowdown injected into the candidate (the test-only lab-server option)
//! must give exit 3; identical builds must give 0 (with a minimum effect far
//! above this machine's noise, so the test cannot fail by chance); a missing
//! or broken baseline must give 1 with a message that says what to do.

mod util;

use util::*;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

// The checks measure throughput: they run one at a time (util::serial), so
// that they do not load the machine for each other.

fn harness() -> PathBuf {
    ensure_siblings()
}

fn lab_server() -> String {
    PathBuf::from(env!("CARGO_BIN_EXE_harness"))
        .with_file_name("lab-server")
        .display()
        .to_string()
}

fn regress(args: &[&str]) -> Output {
    Command::new(harness())
        .arg("regress")
        .args([
            "--strategies",
            "reuseport",
            "--rounds",
            "3",
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32, needle: &str) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(code), "exit code; output:\n{all}");
    assert!(all.contains(needle), "output mentions {needle:?}:\n{all}");
}

#[test]
fn an_injected_slowdown_is_caught_with_exit_code_3() {
    let _serial = serial();
    let bin = lab_server();
    // 300 µs of extra CPU on top of 50 µs per request: throughput falls by
    // far more than any noise of this machine.
    let out = regress(&[
        "--baseline-bin",
        &bin,
        "--candidate-bin",
        &bin,
        "--test-only-candidate-inject-cpu-us",
        "300",
    ]);
    assert_exit(&out, 3, "REGRESSION");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("throughput") && l.contains("REGRESSION")),
        "{stdout}"
    );
    assert!(
        stdout.contains("change: ["),
        "criterion-style change line: {stdout}"
    );
    // The server's CPU time per request at a fixed offered load (the
    // open-loop run) is what the injected CPU shows in most directly:
    // significant and beyond its minimum effect.
    let cpu = metric_line(&stdout, "cpu_per_request");
    assert!(
        cpu.contains("REGRESSION: worse by more than 10% and significant"),
        "{stdout}"
    );
}

/// The verdict line of `metric` (the only strategy checked).
#[track_caller]
fn metric_line<'a>(stdout: &'a str, metric: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(metric))
        .unwrap_or_else(|| panic!("no {metric} line in:\n{stdout}"))
}

#[test]
fn identical_builds_pass_with_exit_code_0() {
    let _serial = serial();
    let bin = lab_server();
    let out = regress(&[
        "--baseline-bin",
        &bin,
        "--candidate-bin",
        &bin,
        "--min-effect",
        "60",
        "--min-effect-p99",
        "500",
        "--min-effect-cpu",
        "30",
        "--min-effect-vcs",
        "100",
    ]);
    assert_exit(&out, 0, "no regression");
    // The efficiency metrics are judged and do not flag the unchanged build.
    // Minimum effects well above this machine's noise in 3 short rounds
    // under a parallel build (CPU per request's median moved up to +9%,
    // context switches' up to +24% between identical builds), so that the
    // test cannot fail by chance; the injected slowdown above moves CPU per
    // request by several times.
    let stdout = String::from_utf8_lossy(&out.stdout);
    for metric in ["cpu_per_request", "vcs_per_request"] {
        let line = metric_line(&stdout, metric);
        assert!(!line.contains("REGRESSION"), "{stdout}");
    }
}

#[test]
fn a_saved_baseline_is_written_then_passes_unchanged_code_and_catches_a_large_slowdown() {
    let _serial = serial();
    let dir = temp_dir("regress-saved");
    let file = dir.join("baseline.json");
    let out = Command::new(harness())
        .args([
            "regress",
            "--strategies",
            "master-pass,reuseport",
            "--rounds",
            "2",
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
        ])
        .arg("--save-baseline")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "saving a baseline: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["schema"], "prefork-lab.harness.regress-baseline.v1");
    assert_eq!(saved["strategies"].as_array().unwrap().len(), 2);
    // The open-loop CPU per request relative to reuseport (1 for reuseport
    // itself) is saved, for the cross-machine gate.
    for s in saved["strategies"].as_array().unwrap() {
        let r = s["cpu_per_request_vs_yardstick"].as_f64().unwrap();
        assert!(r > 0.0, "{s}");
    }
    let check = |extra: &[&str]| {
        Command::new(harness())
            .args([
                "regress",
                "--strategies",
                "master-pass,reuseport",
                "--rounds",
                "2",
                "--duration",
                "300ms",
                "--warmup",
                "100ms",
            ])
            .arg("--baseline")
            .arg(&file)
            .args(extra)
            .output()
            .unwrap()
    };
    assert_exit(&check(&[]), 0, "no regression");
    // Every strategy slowed alike: the ratios between strategies cannot see
    // it, the CPU-normalised throughput (tolerance 40%) must.
    let slowed = check(&["--test-only-candidate-inject-cpu-us", "400"]);
    assert_exit(&slowed, 3, "throughput_per_cpu_calibration");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_baseline_says_how_to_make_one() {
    let _serial = serial();
    let out = regress(&["--baseline", "/nonexistent/baseline.json"]);
    assert_exit(&out, 1, "--save-baseline");
}

#[test]
fn a_baseline_that_is_not_json_or_of_another_schema_is_refused() {
    let _serial = serial();
    let dir = temp_dir("regress-bad");
    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "not json at all").unwrap();
    assert_exit(
        &regress(&["--baseline", garbage.to_str().unwrap()]),
        1,
        "is not JSON",
    );
    let other = dir.join("other.json");
    std::fs::write(&other, r#"{"schema":"prefork-lab.harness.summary.v3"}"#).unwrap();
    assert_exit(
        &regress(&["--baseline", other.to_str().unwrap()]),
        1,
        "expected",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_baseline_is_a_usage_error() {
    let _serial = serial();
    assert_exit(&regress(&[]), 2, "give a baseline");
}
