//! `harness trace` on real processes: the skeleton shows each mechanism
//! (who accepts, how the descriptor travels, where it is registered), and
//! nothing the trace started outlives it. These tests need strace and to
//! run as root (ptrace); `node:rr` needs Node.js. They assert on the order
//! and the arguments of system calls, never on timing.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use util::ps;

fn harness(args: &[&str]) -> Output {
    Command::new(util::ensure_siblings())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs `harness trace TARGET` into a fresh results directory; the skeleton.
fn trace(target: &str, name: &str) -> Value {
    trace_with(target, name, &[]).0
}

/// The tracefs instances a trace may have left (ours are `prefork-lab-PID`).
fn our_tracefs_instances() -> Vec<String> {
    std::fs::read_dir("/sys/kernel/tracing/instances")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with("prefork-lab-"))
                .collect()
        })
        .unwrap_or_default()
}

/// `harness trace TARGET ARGS...`; the skeleton and herd.json.
fn trace_with(target: &str, name: &str, args: &[&str]) -> (Value, Value) {
    // What the harness leaves behind (strace, a worker) becomes our child.
    util::become_subreaper();
    let root = util::temp_dir(name);
    let mut all = vec!["trace", target, "--results", root.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = harness(&all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "harness trace {target}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("trace: "))
            .expect("a trace: line"),
    );
    let skel = util::read_json(&dir.join("skeleton.json"));
    assert_nothing_left(&skel);
    ps::reap_zombies();
    let left = ps::live_children();
    assert!(left.is_empty(), "left running: {left:?}");
    assert_raw_files_named_by_role(&dir, &skel);
    let herd = util::read_json(&dir.join("herd.json"));
    assert!(
        dir.join("kernel.txt").is_file(),
        "the tracepoints' raw buffer is kept"
    );
    let left = our_tracefs_instances();
    assert!(left.is_empty(), "tracefs instances left: {left:?}");
    let _ = std::fs::remove_dir_all(&root);
    (skel, herd)
}

fn pids(skel: &Value) -> Vec<(String, i32)> {
    skel["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_i64().unwrap() as i32,
            )
        })
        .collect()
}

#[track_caller]
fn assert_nothing_left(skel: &Value) {
    for (role, pid) in pids(skel) {
        let p = ps::info(pid);
        assert!(
            !p.as_ref().is_some_and(|p| p.alive()),
            "{role} ({pid}) still runs: {p:?}"
        );
    }
}

#[track_caller]
fn assert_raw_files_named_by_role(dir: &Path, skel: &Value) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    for (role, pid) in pids(skel) {
        assert!(
            names.contains(&format!("{role}.{pid}.txt")),
            "{role}.{pid}.txt in {names:?}"
        );
    }
    assert!(!names.iter().any(|n| n.starts_with("raw.")), "{names:?}");
}

/// The calls of `role` in the connection's life.
fn life<'a>(skel: &'a Value, role: &str) -> Option<&'a Vec<Value>> {
    skel["life"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[0] == role)
        .map(|r| r[1].as_array().unwrap())
}

fn workers_life(skel: &Value) -> Vec<&Vec<Value>> {
    skel["life"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r[0].as_str().unwrap().starts_with("worker-"))
        .map(|r| r[1].as_array().unwrap())
        .collect()
}

fn has_flag(c: &Value, f: &str) -> bool {
    c["flags"].as_array().unwrap().iter().any(|x| x == f)
}

/// The master accepts with SOCK_CLOEXEC|SOCK_NONBLOCK and hands the
/// connection over with one SCM_RIGHTS message of one descriptor.
#[track_caller]
fn assert_master_accepts_and_passes(skel: &Value) {
    let master = life(skel, "master").expect("the master touches the connection");
    let accept = master
        .iter()
        .find(|c| c["call"] == "accept4")
        .expect("the master calls accept4");
    assert_eq!(accept["fd"], "listener");
    assert_eq!(accept["ret"], "conn");
    assert!(has_flag(accept, "SOCK_CLOEXEC") && has_flag(accept, "SOCK_NONBLOCK"));
    let send = master
        .iter()
        .find(|c| c["call"] == "sendmsg")
        .expect("the master calls sendmsg");
    assert!(
        send["fd"]
            .as_str()
            .unwrap()
            .starts_with("channel-to-worker-"),
        "{send}"
    );
    assert_eq!(send["scm_rights_fds"], 1);
    assert!(has_flag(send, "SCM_RIGHTS"));
    let seq = &skel["sequential"];
    assert_eq!(seq["who_accepts"], serde_json::json!(["master"]));
    assert_eq!(seq["fds_per_message"], serde_json::json!([1]));
    assert_eq!(seq["scm_rights_messages_per_conn"], 1.0);
}

/// One worker receives it with recvmsg (SCM_RIGHTS) and registers it in its epoll.
#[track_caller]
fn assert_worker_receives_and_registers(skel: &Value) {
    let workers = workers_life(skel);
    assert_eq!(workers.len(), 1, "one worker serves the connection");
    let w = workers[0];
    let recv = w
        .iter()
        .find(|c| c["call"] == "recvmsg" && c["scm_rights_fds"] == 1)
        .expect("the worker receives the descriptor with recvmsg");
    assert_eq!(recv["fd"], "channel-from-master");
    assert!(has_flag(recv, "MSG_CMSG_CLOEXEC"));
    assert!(
        w.iter().any(|c| c["call"] == "epoll_ctl"
            && c["fd"] == "epoll"
            && has_flag(c, "EPOLL_CTL_ADD")
            && c["text"].as_str().unwrap().contains("conn")),
        "the worker registers the connection in its epoll: {w:?}"
    );
    assert!(w.iter().any(|c| c["text"] == "close(conn) = 0"));
    assert!(life(skel, "master").is_some());
}

#[test]
fn master_pass_master_accepts_and_a_worker_receives_the_descriptor() {
    let _s = util::serial();
    let skel = trace("master-pass", "trace-master-pass");
    assert_eq!(skel["target"], "master-pass");
    assert_eq!(skel["workers"], 2);
    assert_eq!(skel["connections"], 3);
    assert_eq!(skel["burst"], 8);
    assert!(!skel["kernel"].as_str().unwrap().is_empty());
    assert!(skel["strace"].as_str().unwrap().contains("strace"));
    assert_master_accepts_and_passes(&skel);
    assert_worker_receives_and_registers(&skel);
}

#[test]
fn shared_epoll_workers_accept_on_the_listener_and_the_master_does_not() {
    let _s = util::serial();
    let skel = trace("shared:epoll", "trace-shared-epoll");
    assert!(
        life(&skel, "master").is_none(),
        "the master never touches the connection"
    );
    let workers = workers_life(&skel);
    assert_eq!(workers.len(), 1);
    let accept = workers[0]
        .iter()
        .find(|c| c["call"] == "accept4")
        .expect("the worker calls accept4");
    assert_eq!(accept["fd"], "listener");
    assert_eq!(accept["ret"], "conn");
    let seq = &skel["sequential"];
    assert!(!seq["who_accepts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == "master"));
    assert_eq!(seq["scm_rights_messages_per_conn"], 0.0);
}

#[test]
fn node_rr_primary_accepts_and_passes_like_master_pass() {
    let _s = util::serial();
    // scripts/test installs Node.js: a missing one fails the test.
    harness::measure::targets::node::available().expect("Node.js (scripts/test installs it)");
    let node = trace("node:rr", "trace-node-rr");
    assert_master_accepts_and_passes(&node);
    assert_worker_receives_and_registers(&node);
    // The normalised fields agree with the lab's twin.
    let lab = trace("master-pass", "trace-node-twin");
    for field in [
        "who_accepts",
        "fds_per_message",
        "scm_rights_messages_per_conn",
    ] {
        assert_eq!(
            node["sequential"][field], lab["sequential"][field],
            "{field}"
        );
    }
    let per_wakeup = |s: &Value| s["sequential"]["accepts_per_wakeup"].as_f64().unwrap();
    assert!(per_wakeup(&node) > 0.0 && per_wakeup(&lab) > 0.0);
}

#[test]
fn an_unknown_target_fails_with_one_line_and_exit_2() {
    let root = util::temp_dir("trace-unknown");
    let out = harness(&[
        "trace",
        "no-such-target",
        "--results",
        root.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unknown target"), "{err}");
    assert!(
        std::fs::read_dir(&root).unwrap().next().is_none(),
        "nothing written"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_tracer_that_cannot_attach_fails_with_one_line_and_stops_the_target() {
    let _s = util::serial();
    util::become_subreaper();
    // A stand-in for strace that answers -V and then fails as strace does
    // where ptrace is not allowed.
    let bin = util::temp_dir("trace-fake-strace");
    let fake = bin.join("strace");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1\" = -V ] && { echo 'strace -- version 6.1'; exit 0; }\n\
         echo 'strace: attach: ptrace(PTRACE_SEIZE, 1): Operation not permitted' >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = util::temp_dir("trace-cannot-attach");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Command::new(util::ensure_siblings())
        .args(["trace", "master-pass", "--results", root.to_str().unwrap()])
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("strace cannot attach"), "{err}");
    ps::reap_zombies();
    let left: Vec<_> = ps::live_children();
    assert!(left.is_empty(), "left running: {left:?}");
    assert!(
        std::fs::read_dir(&root).unwrap().next().is_none(),
        "no half-written trace directory"
    );
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&bin);
}

/// The counts of `herd.json` for each sequential connection.
fn woken_per_connection(herd: &Value) -> Vec<(usize, usize, Option<String>)> {
    herd["sequential"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["woken"].as_array().unwrap().len(),
                c["slept_again"].as_array().unwrap().len(),
                c["accepted_by"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[test]
fn shared_epoll_wakes_every_idle_worker_for_one_connection_and_reuseport_one() {
    let _s = util::serial();
    let args = ["--workers", "4", "--connections", "4", "--burst", "8"];
    // Every idle worker waits on the one listener without EPOLLEXCLUSIVE:
    // the kernel wakes all of them for each arrival, one accepts, and the
    // others either lose the race (EAGAIN) or go back to sleep inside
    // epoll_wait, which strace cannot see.
    let (_, herd) = trace_with("shared:epoll", "trace-herd-epoll", &args);
    assert_eq!(herd["burst"], 8);
    let tps: Vec<&str> = herd["tracepoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(tps.contains(&"sched:sched_waking") && tps.contains(&"sched:sched_switch"));
    let conns = woken_per_connection(&herd);
    assert_eq!(conns.len(), 4);
    for (woken, _, by) in &conns {
        assert!(
            by.as_deref().is_some_and(|r| r.starts_with("worker-")),
            "{herd}"
        );
        assert!(*woken >= 1, "{herd}");
    }
    let woken: usize = conns.iter().map(|c| c.0).sum();
    assert!(
        woken >= 2 * conns.len(),
        "a herd: more than one worker woken per connection: {herd}"
    );
    // Each one woken and not accepting went back to sleep or lost the race.
    let eagain: usize = herd["sequential"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["eagain"].as_array().unwrap().len())
        .sum();
    let slept: usize = conns.iter().map(|c| c.1).sum();
    assert!(slept + eagain > 0, "{herd}");
    // reuseport: one listener per worker, the kernel picks one socket and
    // wakes the one worker polling it.
    let (_, herd) = trace_with("reuseport", "trace-herd-reuseport", &args);
    for (woken, slept, by) in woken_per_connection(&herd) {
        assert_eq!((woken, slept), (1, 0), "{herd}");
        assert!(by.is_some(), "{herd}");
    }
    assert_eq!(herd["burst_most_woken"], 1, "{herd}");
}

/// Every tag of an XML text closed in order (text is escaped, so each `<`
/// opens a tag); the names of the elements, in document order.
#[track_caller]
fn assert_balanced_tags(xml: &str) -> Vec<String> {
    let mut open: Vec<String> = Vec::new();
    let mut names = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        let end = rest[i..].find('>').expect("a tag ends") + i;
        let tag = &rest[i + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop().as_deref(), Some(name.trim()), "</{name}>");
            continue;
        }
        let name = tag
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap()
            .to_string();
        names.push(name.clone());
        if !tag.ends_with('/') {
            open.push(name);
        }
    }
    assert!(open.is_empty(), "left open: {open:?}");
    assert!(rest.trim().is_empty(), "text after the root: {rest:?}");
    names
}

#[test]
fn a_trace_writes_its_sequence_diagram_and_under_the_hood_page() {
    let _s = util::serial();
    util::become_subreaper();
    let root = util::temp_dir("trace-diagram");
    let out = harness(&["trace", "master-pass", "--results", root.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |prefix: &str| {
        PathBuf::from(
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("a {prefix:?} line in {stdout}")),
        )
    };
    let dir = line("trace: ");
    assert_eq!(line("diagram: "), dir.join("diagram.svg"));
    let skel = util::read_json(&dir.join("skeleton.json"));
    let svg = std::fs::read_to_string(dir.join("diagram.svg")).unwrap();
    assert!(svg.starts_with("<svg "), "{}", &svg[..svg.len().min(200)]);
    let names = assert_balanced_tags(&svg);
    assert_eq!(names[0], "svg");
    for (role, _) in pids(&skel) {
        assert!(
            svg.contains(&format!(">{role}</text>")),
            "no lane for {role}"
        );
    }
    assert!(
        svg.contains(r#"class="arrow fd""#),
        "no descriptor in transit"
    );
    let page = std::fs::read_to_string(dir.join("under-the-hood.md")).unwrap();
    assert!(
        page.starts_with("# Under the hood: master-pass\n"),
        "{page}"
    );
    assert!(page.contains("harness trace master-pass --workers 2"));
    assert!(page.contains("nothing here is a timing"));
    for r in skel["life"].as_array().unwrap() {
        assert!(page.contains(&format!("### {}\n", r[0].as_str().unwrap())));
    }
    assert!(page.contains("passes the descriptor to worker-"));
    assert!(page.contains("(diagram.svg)"));
    ps::reap_zombies();
    let left = ps::live_children();
    assert!(left.is_empty(), "left running: {left:?}");
    let _ = std::fs::remove_dir_all(&root);
}

/// `harness under-the-hood ARGS...` as a child of this (subreaper) test.
fn under_the_hood(args: &[&str]) -> Output {
    util::become_subreaper();
    let mut all = vec!["under-the-hood"];
    all.extend_from_slice(args);
    harness(&all)
}

#[test]
fn under_the_hood_traces_each_target_into_its_folder_and_writes_the_page() {
    let _s = util::serial();
    let root = util::temp_dir("under-the-hood");
    std::fs::create_dir_all(root.join("docs")).unwrap();
    let out_md = root.join("docs/under-the-hood.md");
    let traces = root.join("traces");
    let args = [
        "--targets",
        "node:rr,master-pass",
        "--out",
        out_md.to_str().unwrap(),
        "--traces",
        traces.to_str().unwrap(),
    ];
    for run in 0..2 {
        let out = under_the_hood(&args);
        assert!(
            out.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ps::reap_zombies();
        let left = ps::live_children();
        assert!(left.is_empty(), "left running: {left:?}");
        // One folder per target, replaced on the second run; nothing else.
        let mut names: Vec<String> = std::fs::read_dir(&traces)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["master-pass", "node-rr"], "run {run}");
        for t in &names {
            let d = traces.join(t);
            for f in [
                "skeleton.json",
                "herd.json",
                "diagram.svg",
                "under-the-hood.md",
            ] {
                assert!(d.join(f).is_file(), "{t}/{f}");
            }
        }
    }
    let page = std::fs::read_to_string(&out_md).unwrap();
    // Node's primary accepts and passes the descriptor; the page quotes
    // strace's lines and links each trace from the page's folder.
    let steps = &page[page
        .find("## Node cluster, round-robin, step by step")
        .expect("Node's steps")..];
    let accept = steps.find("accept4(").expect("the primary's accept4");
    let send = steps.find("SCM_RIGHTS").expect("the descriptor passed");
    assert!(accept < send, "accept before the hand-off");
    assert!(page.contains("NODE_HANDLE"), "Node's message quoted");
    assert!(
        page.contains("### master-pass beside node:rr"),
        "the twin check"
    );
    assert!(page.contains("## Who the kernel wakes for one connection"));
    assert!(
        page.contains("](../traces/node-rr/diagram.svg)"),
        "linked from the page"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn under_the_hood_refuses_bad_input_with_one_line_and_writes_nothing() {
    let _s = util::serial();
    let root = util::temp_dir("under-the-hood-bad");
    let out_md = root.join("page.md");
    let traces = root.join("traces");
    let base = [
        "--out",
        out_md.to_str().unwrap(),
        "--traces",
        traces.to_str().unwrap(),
    ];
    // An unknown target.
    let mut args = base.to_vec();
    args.extend(["--targets", "master-pass,no-such-target"]);
    let out = under_the_hood(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unknown target \"no-such-target\""), "{err}");
    assert!(!out_md.exists() && !traces.exists(), "nothing written");
    // A folder of somebody else's where a trace would go is left alone.
    let theirs = traces.join("master-pass");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("notes.txt"), "mine").unwrap();
    let mut args = base.to_vec();
    args.extend(["--targets", "master-pass"]);
    let out = under_the_hood(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.lines().filter(|l| !l.starts_with("tracing ")).count(),
        1,
        "{err}"
    );
    assert!(err.contains("exists and is not a trace"), "{err}");
    assert_eq!(
        std::fs::read_to_string(theirs.join("notes.txt")).unwrap(),
        "mine"
    );
    assert!(!out_md.exists(), "no page");
    ps::reap_zombies();
    let left = ps::live_children();
    assert!(left.is_empty(), "left running: {left:?}");
    let _ = std::fs::remove_dir_all(&root);
}
