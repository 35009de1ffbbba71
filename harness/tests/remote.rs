//! Benchmarking across machines, through the network-namespace rig
//! (`scripts/netns.sh`): three "hosts" (a server and two load generators),
//! each running a real sshd. The harness runs loadgen on the two generator
//! hosts and lab-server on the server host over ssh, and the merged result
//! must be exactly the sum of its parts and agree with the server's own
//! counts. Needs root (namespaces) and openssh-server: `.ci/run` installs
//! it; without them these tests fail with the reason, they do not skip.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use util::*;

const RIG: &str = "/run/prefork-lab-netns";

/// Brings the rig up (idempotent) and returns its ssh config.
fn rig() -> PathBuf {
    let out = Command::new("bash")
        .arg(repo().join("scripts/netns.sh"))
        .arg("up")
        .stdin(Stdio::null())
        .output()
        .expect("bash scripts/netns.sh up");
    assert!(
        out.status.success(),
        "the namespace rig did not come up (needs root, iproute2 and openssh-server; .ci/run installs them): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = Path::new(RIG).join("ssh_config");
    assert!(cfg.is_file(), "{} after netns.sh up", cfg.display());
    cfg
}

fn harness(args: &[&str], root: &Path) -> std::process::Output {
    Command::new(ensure_siblings())
        .arg("bench")
        .args(args)
        .arg("--results")
        .arg(root)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{v} is not a whole number"))
}

#[test]
fn two_remote_generators_and_a_remote_server_merge_into_exactly_what_the_server_counted() {
    let _serial = serial();
    let cfg = rig();
    let root = temp_dir("remote-bench");
    let out = harness(
        &[
            "--strategies",
            "master-pass,reuseport",
            "--workloads",
            "keepalive,close",
            "--workers",
            "2",
            "--rounds",
            "1",
            "--duration",
            "400ms",
            // No warm-up: then every request the server answered is a
            // measured one, and the counts must agree exactly.
            "--warmup",
            "0ms",
            "--loadgen-host",
            "pl-lg1",
            "--loadgen-host",
            "pl-lg2",
            "--server-host",
            "pl-srv",
            "--ssh-config",
            cfg.to_str().unwrap(),
        ],
        &root,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "harness bench failed: {stderr}");
    let dir = std::fs::canonicalize(root.join("latest")).unwrap();
    let summary = read_json(&dir.join("summary.json"));
    if let Err(e) = harness::store::schema::validate_summary(&summary) {
        panic!("summary.json does not validate: {e:?}");
    }
    assert_eq!(
        summary["config"]["remote"]["loadgen_hosts"],
        serde_json::json!(["pl-lg1", "pl-lg2"])
    );
    assert_eq!(summary["config"]["remote"]["server_host"], "pl-srv");
    let runs = run_files(&dir);
    assert_eq!(runs.len(), 4);
    for r in &runs {
        let what = format!("{} / {}", r["target"], r["workload"]);
        let lg = &r["loadgen"];
        // The server listened on the server host's address, not loopback.
        assert!(
            lg["config"]["target"]
                .as_str()
                .unwrap()
                .starts_with("10.77.0.1:"),
            "{what}: {}",
            lg["config"]["target"]
        );
        let parts = r["remote"]["parts"].as_array().expect("the parts");
        assert_eq!(parts.len(), 2, "{what}");
        let hosts: Vec<&str> = parts.iter().map(|p| p["host"].as_str().unwrap()).collect();
        assert_eq!(hosts, ["pl-lg1", "pl-lg2"]);
        // Merged = sum of the parts, exactly.
        for k in ["ok", "sent"] {
            let sum: u64 = parts.iter().map(|p| u(&p[k])).sum();
            assert_eq!(u(&lg[k]), sum, "{what}: merged {k} is the sum of the parts");
            assert!(
                parts.iter().all(|p| u(&p[k]) > 0),
                "{what}: both generators worked"
            );
        }
        assert_eq!(
            parts.iter().map(|p| u(&p["connections"])).sum::<u64>(),
            32 + 32 * u64::from(r["workload"] == "keepalive"),
            "{what}: the connections were split between the two"
        );
        assert_eq!(
            lg["merged_from"].as_array().map(Vec::len),
            Some(2),
            "{what}"
        );
        // Merged per-worker counts plus the warm-up probes' = the server's
        // own counts, worker by worker.
        let stats = &r["server"]["stats"];
        let probes = |pid: i64| -> u64 {
            r["steadiness"]["warmup_requests_by_worker"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|w| w["worker"].as_i64() == Some(pid))
                .map(|w| u(&w["requests"]))
                .sum()
        };
        let mut server: Vec<(i64, u64)> = stats["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| (w["pid"].as_i64().unwrap(), u(&w["requests"])))
            .collect();
        server.sort();
        let mut ours: Vec<(i64, u64)> = lg["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                let pid = w["worker"].as_i64().unwrap();
                (pid, u(&w["requests"]) + probes(pid))
            })
            .collect();
        ours.sort();
        assert_eq!(
            ours, server,
            "{what}: per-worker requests, generators merged plus warm-up probes vs the server's stats file"
        );
        // Server-side figures came over ssh: its processes' CPU and the
        // server host's TCP counters.
        assert!(
            r["server"]["processes"]
                .as_array()
                .is_some_and(|p| p.len() == 3),
            "{what}: master and 2 workers measured: {}",
            r["server"]["processes"]
        );
        assert!(r["kernel"]["counters"].get("OutRsts").is_some(), "{what}");
    }
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        report.contains("load from pl-lg1, pl-lg2"),
        "the report names the hosts"
    );
    assert!(report.contains("the server on pl-srv"));
    // Nothing left on the hosts: no lab-server, no loadgen in any namespace.
    for ns in ["pl-srv", "pl-lg1", "pl-lg2"] {
        let out = Command::new("ip")
            .args(["netns", "pids", ns])
            .output()
            .unwrap();
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            assert!(
                !["lab-server", "loadgen"].contains(&comm.trim()),
                "{ns}: {} (pid {pid}) outlived the bench",
                comm.trim()
            );
        }
    }
}

#[test]
fn remote_generators_load_a_server_here_on_the_address_they_reach_it_by() {
    let _serial = serial();
    let cfg = rig();
    let root = temp_dir("remote-local-server");
    let out = harness(
        &[
            "--strategies",
            "shared:epoll",
            "--workloads",
            "open-50",
            "--workers",
            "2",
            "--rounds",
            "1",
            "--duration",
            "400ms",
            "--loadgen-host",
            "pl-lg1",
            "--loadgen-host",
            "pl-lg2",
            "--ssh-config",
            cfg.to_str().unwrap(),
        ],
        &root,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let dir = std::fs::canonicalize(root.join("latest")).unwrap();
    let runs = run_files(&dir);
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    // This machine as the generators see it: the rig's bridge address.
    assert!(
        r["loadgen"]["config"]["target"]
            .as_str()
            .unwrap()
            .starts_with("10.77.0.254:"),
        "{}",
        r["loadgen"]["config"]["target"]
    );
    let parts = r["remote"]["parts"].as_array().unwrap();
    let offered = r["offered_rps"].as_f64().unwrap();
    for p in parts {
        // Each generator offered half of the open-loop rate.
        let share = p["rate_rps"].as_f64().unwrap();
        assert!(
            (share - offered / 2.0).abs() < 0.01 * offered,
            "{p} vs {offered}"
        );
    }
    assert_eq!(
        u(&r["loadgen"]["sent"]),
        parts.iter().map(|p| u(&p["sent"])).sum::<u64>()
    );
    assert!(r["remote"]["server_host"].is_null());
}

#[test]
fn bad_host_options_are_refused_before_anything_runs() {
    let root = temp_dir("remote-options");
    for (args, expect) in [
        (vec!["--loadgen-host", ""], "is not a host"),
        (vec!["--loadgen-host", "lg:99999"], "1-65535"),
        (vec!["--server-host", "::1"], "IPv6"),
        (vec!["--ssh-config", "/nonexistent"], "give a host too"),
        (
            vec!["--loadgen-host", "pl-lg1", "--ssh-config", "/nonexistent"],
            "no such file",
        ),
    ] {
        let out = harness(&args, &root);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    // A reference server with remote load: refused, with what to do.
    let out = harness(
        &[
            "--strategies",
            "nginx:reuseport",
            "--loadgen-host",
            "pl-lg1",
        ],
        &root,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("reference servers run on this machine"),
        "{err}"
    );
    assert!(!root.join("latest").exists());
}

#[test]
fn a_bad_host_is_one_line_naming_it_and_a_dead_generator_keeps_the_finished_runs() {
    let _serial = serial();
    let cfg = rig();
    let cfg_s = cfg.to_str().unwrap();
    // Unreachable: nothing listens on 10.77.0.99.
    let root = temp_dir("remote-unreachable");
    let out = harness(
        &[
            "--strategies",
            "reuseport",
            "--workloads",
            "keepalive",
            "--workers",
            "2",
            "--rounds",
            "1",
            "--loadgen-host",
            "root@10.77.0.99",
            "--ssh-config",
            cfg_s,
        ],
        &root,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("harness: error:"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("root@10.77.0.99") && line.contains("unreachable"),
        "{line}"
    );
    assert!(
        !root.join("latest").exists(),
        "no session for a host that cannot be reached"
    );

    // A refused key: an identity the hosts do not know.
    let bad = temp_dir("remote-badkey");
    let key = bad.join("id");
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let text = std::fs::read_to_string(&cfg).unwrap();
    let alt = bad.join("ssh_config");
    std::fs::write(
        &alt,
        text.lines()
            .map(|l| {
                if l.trim_start().starts_with("IdentityFile") {
                    format!("    IdentityFile {}", key.display())
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let out = harness(
        &[
            "--strategies",
            "reuseport",
            "--workloads",
            "keepalive",
            "--workers",
            "2",
            "--rounds",
            "1",
            "--loadgen-host",
            "pl-lg1",
            "--ssh-config",
            alt.to_str().unwrap(),
        ],
        &bad.join("results"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("pl-lg1: the host refused our key"), "{err}");

    // A generator that dies mid-session: the runs already finished are kept.
    let root = temp_dir("remote-dies");
    let mut child = Command::new(ensure_siblings())
        .args([
            "bench",
            "--strategies",
            "reuseport,master-pass",
            "--workloads",
            "keepalive",
            "--workers",
            "2",
            "--rounds",
            "3",
            "--duration",
            "1s",
            "--warmup",
            "0ms",
            "--loadgen-host",
            "pl-lg1",
            "--loadgen-host",
            "pl-lg2",
            "--ssh-config",
            cfg_s,
            "--results",
        ])
        .arg(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Once a run file exists, kill loadgen on pl-lg2 until the bench ends.
    let mut killed = false;
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        let has_run = std::fs::read_dir(&root)
            .into_iter()
            .flatten()
            .flatten()
            .any(|s| {
                s.path().join("runs").read_dir().is_ok_and(|mut d| {
                    d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json")))
                })
            });
        if has_run {
            // Namespaces share the pid space: pick pl-lg2's own loadgen.
            let out = Command::new("ip")
                .args(["netns", "pids", "pl-lg2"])
                .output()
                .unwrap();
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "loadgen" {
                    let st = Command::new("kill").args(["-KILL", pid]).status().unwrap();
                    killed |= st.success();
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(killed, "the test killed a generator: {err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("harness: error:"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("pl-lg2"), "the error names the host: {line}");
    let dir = std::fs::canonicalize(root.join("latest")).expect("the session is kept");
    let kept = run_files(&dir);
    assert!(!kept.is_empty(), "the finished runs are kept");
    let summary = read_json(&dir.join("summary.json"));
    assert!(
        summary["warnings"].to_string().contains("incomplete"),
        "{}",
        summary["warnings"]
    );
}
