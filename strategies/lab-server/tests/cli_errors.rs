//! Bad command lines and environments: a non-zero exit, exactly one
//! `lab-server: error:` line on stderr, nothing on stdout, and no process left
//! behind.
//!
//! To see a process left behind even after the master has exited, this test
//! binary makes itself a child subreaper: orphans of the server become our
//! children. The cases run one at a time (a lock), so at the moment of the
//! check any live child of ours is a leftover.

mod util;

use std::net::TcpListener;
use std::sync::{Mutex, Once};

use util::procfs::{live_children, stat};
use util::sys::{become_child_subreaper, kill, own_pid, try_reap, SIGKILL};
use util::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
static SUBREAPER: Once = Once::new();

/// Runs `lab-server ARGS`, expects it to be refused, and returns the error line.
#[track_caller]
fn assert_refused(args: &[&str]) -> String {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    SUBREAPER.call_once(|| become_child_subreaper().expect("PR_SET_CHILD_SUBREAPER"));
    let done = run_to_exit(args);
    let leftovers = collect_leftovers();
    assert!(
        leftovers.is_empty(),
        "lab-server {args:?} left processes behind: {leftovers:?}"
    );
    assert!(
        matches!(done.status.code(), Some(c) if c != 0),
        "lab-server {args:?} should exit with a non-zero code, got {}; stderr:\n{}",
        done.status,
        done.stderr
    );
    assert_eq!(
        done.stdout, "",
        "lab-server {args:?} must print nothing on stdout"
    );
    let lines: Vec<&str> = done.stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("lab-server: error:"),
        "lab-server {args:?}: stderr should be exactly one line starting with \"lab-server: error:\", got:\n{}",
        done.stderr
    );
    lines[0].to_string()
}

/// Waits for any orphan of the server (now our child) to go away; returns
/// those still alive after the hang guard (and kills them).
fn collect_leftovers() -> Vec<i32> {
    let me = own_pid();
    let reap_zombies = || {
        for pid in util::procfs::all_pids() {
            if matches!(stat(pid), Some(s) if s.ppid == me && s.state == 'Z') {
                try_reap(pid);
            }
        }
    };
    let deadline = std::time::Instant::now() + EXIT_TIMEOUT;
    loop {
        reap_zombies();
        let live = live_children(me);
        if live.is_empty() {
            return Vec::new();
        }
        if std::time::Instant::now() > deadline {
            for &p in &live {
                let _ = kill(p, SIGKILL);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            reap_zombies();
            return live.into_iter().collect();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn an_unknown_strategy_is_refused_with_one_error_line() {
    assert_refused(&[
        "--strategy",
        "round-robin-of-dreams",
        "--workers",
        "2",
        "--listen",
        "127.0.0.1:0",
    ]);
}

#[test]
fn zero_workers_is_refused_with_one_error_line() {
    for strategy in ["master-pass", "shared:epoll", "reuseport"] {
        assert_refused(&[
            "--strategy",
            strategy,
            "--workers",
            "0",
            "--listen",
            "127.0.0.1:0",
        ]);
    }
}

#[test]
fn a_busy_port_is_refused_with_one_error_line_for_every_strategy() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    for strategy in ALL_STRATEGIES {
        assert_refused(&["--strategy", strategy, "--workers", "2", "--listen", &addr]);
    }
    drop(busy);
}

#[test]
fn an_unwritable_stats_path_is_refused_with_one_error_line() {
    let dir = TempDir::new("unwritable");
    let path = dir.path().join("no-such-directory").join("stats.json");
    for strategy in ["master-pass", "shared:epoll", "reuseport"] {
        assert_refused(&[
            "--strategy",
            strategy,
            "--workers",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--stats-out",
            path.to_str().unwrap(),
        ]);
    }
}

#[test]
fn bad_limits_are_refused_with_one_error_line_that_names_the_option() {
    for (flag, value, says) in [
        ("--header-timeout", "0s", "must be more than 0"),
        ("--header-timeout", "10", "no unit"),
        ("--header-timeout", "soon", "not a duration"),
        ("--keepalive-timeout", "5h", "unknown unit"),
        ("--keepalive-timeout", "1500m", "at most 24h"),
        ("--max-conns", "0", "from 1 to"),
        ("--max-conns", "2000000", "from 1 to"),
        ("--max-conns", "many", "whole number"),
    ] {
        let line = assert_refused(&[
            "--strategy",
            "shared:epoll",
            "--workers",
            "1",
            "--listen",
            "127.0.0.1:0",
            flag,
            value,
        ]);
        assert!(
            line.contains(flag) && line.contains(says),
            "{flag} {value}: the error line should name the option and say {says:?}: {line}"
        );
    }
}

#[test]
fn help_describes_the_limits_and_their_defaults() {
    // One at a time with the others: their leftover check reaps every
    // zombie child of this process, which would steal this one's exit.
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let done = run_to_exit(&["--help"]);
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
    for (flag, default) in [
        ("--header-timeout", "[default: 10s]"),
        ("--keepalive-timeout", "[default: 5s]"),
        ("--max-conns", "[default: 4096]"),
    ] {
        let section = done
            .stdout
            .split_once(flag)
            .map(|(_, rest)| rest.split("\n  -").next().unwrap_or(rest))
            .unwrap_or_else(|| panic!("--help does not mention {flag}:\n{}", done.stdout));
        assert!(
            section.contains(default),
            "--help for {flag} should show {default}:\n{section}"
        );
    }
}

#[test]
fn help_and_the_unknown_name_error_list_the_catalogue_which_the_tests_cover() {
    let names: Vec<&str> = lab_server::STRATEGIES.iter().map(|s| s.name).collect();
    assert_eq!(
        names, ALL_STRATEGIES,
        "tests/util's ALL_STRATEGIES must name every strategy in lab_server::STRATEGIES, in order"
    );
    let listed = names.join(", ");
    let line = assert_refused(&["--strategy", "nope", "--workers", "1"]);
    assert!(line.ends_with(&format!("choose one of {listed}")), "{line}");
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let done = run_to_exit(&["--help"]);
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
    assert!(
        done.stdout.contains(&format!("Strategy: {listed}\n")),
        "--help should list {listed}:\n{}",
        done.stdout
    );
}
