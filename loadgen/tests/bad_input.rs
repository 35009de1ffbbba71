//! Bad arguments and bad files are refused before any load is sent: one
//! `loadgen: error: ...` line (or clap's own message), a non-zero exit, and
//! no output file.
//!
//! Every run points at a port nothing listens on, so an option that slipped
//! through the checks would end in "refused" instead of the expected message.

mod util;

use std::net::TcpListener;
use std::time::Duration;

use util::{run, Finished, TempDir};

/// Hang guard: these must fail before any load; generous for a busy machine.
const GUARD: Duration = Duration::from_secs(20);

/// `127.0.0.1:PORT` where nothing listens.
fn dead_target() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", l.local_addr().unwrap().port())
}

/// Runs loadgen with `args` plus `--json` into a fresh directory, and checks
/// that the directory is still empty afterwards.
#[track_caller]
fn run_expecting_no_output(args: &[&str]) -> Finished {
    let dir = TempDir::new("bad-input");
    let json = dir.file("out.json");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--json", &json]);
    let out = run(&all, GUARD);
    assert!(
        dir.entries().is_empty(),
        "loadgen {args:?} was refused but left files: {:?}",
        dir.entries()
    );
    out
}

#[test]
fn a_target_outside_loopback_is_refused_without_allow_remote() {
    let out = run_expecting_no_output(&["--target", "192.0.2.1:80", "-d", "1s"]);
    let line = out.assert_one_line_error();
    assert!(line.contains("--allow-remote"), "message: {line}");
    assert!(line.contains("192.0.2.1"), "message: {line}");
}

#[test]
fn zero_threads_are_refused() {
    let target = dead_target();
    let out = run_expecting_no_output(&["--target", &target, "--threads", "0"]);
    let line = out.assert_one_line_error();
    assert!(line.contains("--threads"), "message: {line}");
}

#[test]
fn a_duration_without_a_unit_gets_claps_error() {
    let target = dead_target();
    let out = run_expecting_no_output(&["--target", &target, "--duration", "5"]);
    let message = out.assert_clap_error();
    assert!(message.contains("--duration"), "message: {message}");
    assert!(message.contains("unit"), "message: {message}");
}

#[test]
fn a_mix_entry_whose_path_does_not_start_with_a_slash_is_refused() {
    let target = dead_target();
    let out = run_expecting_no_output(&["--target", &target, "--mix", "1:nopath"]);
    let line = out.assert_one_line_error();
    assert!(line.contains("nopath"), "message: {line}");
}

#[test]
fn a_json_path_in_a_missing_directory_is_refused_before_the_run() {
    let dir = TempDir::new("missing-dir");
    let json = dir.file("no/such/dir/out.json");
    let target = dead_target();
    let out = run(&["--target", &target, "-d", "1s", "--json", &json], GUARD);
    let line = out.assert_one_line_error();
    assert!(
        line.contains("no/such/dir/out.json"),
        "the message must name the path: {line}"
    );
    assert!(
        !line.contains("refused"),
        "the path must be checked before the target is tried: {line}"
    );
    assert!(dir.entries().is_empty(), "left files: {:?}", dir.entries());
}

/// `loadgen merge INPUT --json OUT` on one bad input file; returns the error
/// line after checking that OUT was not created.
#[track_caller]
fn merge_of_bad_file(contents: &str) -> String {
    let dir = TempDir::new("bad-merge");
    let input = dir.file("input.json");
    std::fs::write(&input, contents).unwrap();
    let out_path = dir.file("merged.json");
    let out = run(&["merge", &input, "--json", &out_path], GUARD);
    let line = out.assert_one_line_error();
    assert_eq!(
        dir.entries(),
        vec!["input.json".to_string()],
        "a refused merge must create no file"
    );
    assert!(
        line.contains("input.json"),
        "the message must name the file: {line}"
    );
    line
}

#[test]
fn merge_refuses_a_file_that_is_not_json() {
    let line = merge_of_bad_file("this is not JSON\n");
    assert!(line.contains("not JSON"), "message: {line}");
}

#[test]
fn merge_refuses_a_json_file_of_another_schema() {
    let line = merge_of_bad_file(
        r#"{"schema":"prefork-lab.server-stats.v1","strategy":"shared:epoll","workers":[]}"#,
    );
    assert!(line.contains("schema"), "message: {line}");
    assert!(
        line.contains("prefork-lab.server-stats.v1"),
        "the message must say which schema it found: {line}"
    );
}

/// Runs with `args` (after `--target <dead port>`), expecting one error line
/// that contains every one of `says`; returns it.
#[track_caller]
fn refused_with(args: &[&str], says: &[&str]) -> String {
    let target = dead_target();
    let mut all = vec!["--target", target.as_str()];
    all.extend_from_slice(args);
    let out = run_expecting_no_output(&all);
    let line = out.assert_one_line_error();
    for s in says {
        assert!(
            line.contains(s),
            "loadgen {args:?}: the message must say {s:?}: {line}"
        );
    }
    assert!(
        !line.contains("refused") && !line.contains("accepted no connection"),
        "loadgen {args:?} must be refused before any load: {line}"
    );
    line
}

#[test]
fn a_rate_step_without_rate_is_refused() {
    refused_with(
        &["-d", "1s", "--rate-step", "300ms:2000"],
        &["--rate-step", "--rate"],
    );
}

#[test]
fn a_rate_step_that_is_not_at_colon_rate_is_refused_with_an_example() {
    refused_with(
        &["-d", "1s", "--rate", "100", "--rate-step", "300ms"],
        &["--rate-step", "AT:RATE", "e.g."],
    );
    refused_with(
        &["-d", "1s", "--rate", "100", "--rate-step", "300:2000"],
        &["--rate-step", "unit"],
    );
    refused_with(
        &["-d", "1s", "--rate", "100", "--rate-step", "300ms:lots"],
        &["--rate-step", "lots", "not a number"],
    );
    refused_with(
        &["-d", "1s", "--rate", "100", "--rate-step", "300ms:0"],
        &["--rate-step", "positive"],
    );
}

#[test]
fn rate_steps_out_of_order_or_outside_the_duration_are_refused() {
    refused_with(
        &[
            "-d",
            "1s",
            "--rate",
            "100",
            "--rate-step",
            "500ms:200",
            "--rate-step",
            "300ms:400",
        ],
        &["--rate-step", "increasing"],
    );
    refused_with(
        &[
            "-d",
            "1s",
            "--rate",
            "100",
            "--rate-step",
            "500ms:200",
            "--rate-step",
            "500ms:400",
        ],
        &["--rate-step", "increasing"],
    );
    refused_with(
        &["-d", "1s", "--rate", "100", "--rate-step", "1s:200"],
        &["--rate-step", "inside", "--duration"],
    );
}

#[test]
fn a_timeline_interval_of_zero_or_longer_than_the_run_is_refused() {
    refused_with(
        &["-d", "1s", "--timeline-interval", "0s"],
        &["--timeline-interval"],
    );
    refused_with(
        &["-d", "1s", "--timeline-interval", "2s"],
        &["--timeline-interval", "--duration"],
    );
    refused_with(
        &["-d", "10s", "--timeline-interval", "10us"],
        &["--timeline-interval", "slices", "longer"],
    );
}
