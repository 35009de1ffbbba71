//! Bad input to the harness: a clear one-line error, a non-zero exit, and no
//! results directory half-written.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("harness-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[track_caller]
fn assert_error(out: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "exit code; stderr: {err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("harness: error:"))
        .collect();
    assert_eq!(lines.len(), 1, "exactly one error line: {err}");
    assert!(
        lines[0].contains(needle),
        "the error says {needle:?}: {err}"
    );
}

#[test]
fn an_unknown_strategy_or_workload_is_refused_with_the_choices() {
    let root = temp_dir("unknown");
    let r = root.to_str().unwrap();
    assert_error(
        &harness(&["bench", "--strategies", "fork-bomb", "--results", r]),
        2,
        "choose from master-pass",
    );
    assert_error(
        &harness(&["bench", "--workloads", "nope", "--results", r]),
        2,
        "choose from keepalive",
    );
    assert_error(
        &harness(&["bench", "--workers", "0", "--results", r]),
        2,
        "--workers 0",
    );
    assert_error(
        &harness(&["bench", "--rounds", "0", "--results", r]),
        2,
        "--rounds 0",
    );
    assert!(!root.exists(), "nothing is written for refused options");
}

#[test]
fn an_unwritable_results_directory_is_a_clear_error() {
    let out = harness(&["bench", "--quick", "--results", "/proc/no-results-here"]);
    assert_error(&out, 1, "--results");
}

#[test]
fn report_of_a_directory_that_is_not_a_session_says_so() {
    let root = temp_dir("notsession");
    std::fs::create_dir_all(&root).unwrap();
    let out = harness(&["report", root.to_str().unwrap()]);
    assert_error(&out, 1, "not a results directory");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_server_that_never_gets_ready_fails_the_session_with_its_name() {
    let root = temp_dir("never-ready");
    std::fs::create_dir_all(&root).unwrap();
    let fake = root.join("fake-server.sh");
    std::fs::write(&fake, "#!/bin/sh\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let results = root.join("results");
    let out = harness(&[
        "bench",
        "--strategies",
        "reuseport",
        "--workloads",
        "keepalive",
        "--workers",
        "2",
        "--rounds",
        "1",
        "--ready-timeout",
        "500ms",
        "--server-bin",
        fake.to_str().unwrap(),
        "--results",
        results.to_str().unwrap(),
    ]);
    assert_error(&out, 1, "not ready within");
    let _ = std::fs::remove_dir_all(&root);
}
