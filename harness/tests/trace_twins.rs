//! The twin check on real processes: each reference server (Node, nginx,
//! Apache) and its lab twin are traced with `harness trace` (2 workers, 3
//! sequential connections, a burst of 4), and their skeletons must agree on
//! every normalised field of `trace::twin_check` except the differences its
//! table explains. A missing server fails the test (scripts/test installs
//! them): this is what keeps the twins faithful, so it must not pass by
//! skipping. Needs strace and root (ptrace). Nothing here is a timing.

mod util;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use harness::measure::targets::TargetSpec;
use harness::model::names::TWINS;
use harness::trace::skeleton::Skeleton;
use harness::trace::twin_check::{self, Check, Fields};
use util::ps;

/// `harness trace TARGET --workers 2 --connections 3 --burst 4` into a
/// fresh results directory; its skeleton. Checks that nothing it started
/// is left.
fn trace(target: &str) -> Skeleton {
    if let Err(why) = TargetSpec::parse(target)
        .unwrap_or_else(|| panic!("{target} is not a target"))
        .available()
    {
        panic!("{target} is needed by the twin check and is missing here: {why}");
    }
    util::become_subreaper();
    let root = util::temp_dir(&format!("twins-{}", target.replace(':', "-")));
    let out = Command::new(util::ensure_siblings())
        .args(["trace", target, "--workers", "2", "--connections", "3"])
        .args(["--burst", "4", "--results", root.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
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
    let text = std::fs::read_to_string(dir.join("skeleton.json")).unwrap();
    let skel: Skeleton = serde_json::from_str(&text).unwrap();
    ps::reap_zombies();
    let left = ps::live_children();
    assert!(left.is_empty(), "{target} left running: {left:?}");
    for (role, pid) in &skel.pids {
        assert!(
            !ps::info(*pid).is_some_and(|p| p.alive()),
            "{target}: {role} ({pid}) still runs"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    skel
}

/// Traces the pair whose reference is `reference`, checks it and returns
/// both sides' fields.
fn pair(reference: &str) -> (Fields, Fields) {
    let _s = util::serial();
    let twin = TWINS
        .iter()
        .find(|(r, _)| *r == reference)
        .map(|(_, t)| *t)
        .expect("a twin pair");
    let a = trace(reference);
    let b = trace(twin);
    let c: Check = twin_check::check(&a, &b);
    eprintln!("{}", twin_check::render(&c));
    assert_eq!(c.pair, (reference.to_string(), twin.to_string()));
    let listed: Vec<String> = c
        .unexplained
        .iter()
        .map(|d| {
            format!(
                "  {}: {reference} {:?}, {twin} {:?}",
                d.field, d.reference, d.twin
            )
        })
        .collect();
    assert!(
        c.unexplained.is_empty(),
        "{reference} and its twin {twin} differ where nothing explains it:\n{}\n\
         listener: {reference}: {}\n{twin}: {}",
        listed.join("\n"),
        listener_evidence(&a),
        listener_evidence(&b)
    );
    (twin_check::fields(&a), twin_check::fields(&b))
}

/// What a skeleton shows of the listener, for a failure's message: the
/// epoll_ctl calls on it per role and turn, and per role the listeners held
/// (inode, identity) and registered (inode, events).
fn listener_evidence(s: &Skeleton) -> String {
    let held: Vec<String> = s
        .holdings
        .roles
        .iter()
        .map(|r| {
            let l: Vec<String> = r
                .listeners
                .iter()
                .map(|l| format!("{} {}", l.inode, l.identity))
                .collect();
            let e: Vec<String> = r
                .listener_registrations()
                .map(|g| format!("{} {}", g.inode, g.events.join("|")))
                .collect();
            format!(
                "{} holds [{}] polls [{}]",
                r.role,
                l.join(", "),
                e.join(", ")
            )
        })
        .collect();
    format!("ctl {:?}; {}", s.listener_ctl, held.join("; "))
}

#[test]
fn every_twin_pair_has_a_test_here() {
    let text = include_str!("trace_twins.rs");
    for (reference, _) in TWINS {
        assert!(
            text.contains(&format!("pair(\"{reference}\")")),
            "{reference} has no test in trace_twins.rs"
        );
    }
}

#[test]
fn node_rr_and_master_pass_the_master_accepts_and_sends_one_fd_per_message() {
    let (node, lab) = pair("node:rr");
    for f in [&node, &lab] {
        assert_eq!(f.accepting_role, "master");
        assert_eq!(f.accepts_per_wakeup, "1");
        assert_eq!(f.handoff, "sendmsg SCM_RIGHTS");
        assert_eq!(f.fds_per_message, "1");
        assert_eq!(f.messages_per_handoff, "1.00");
        assert_eq!(f.replies_per_handoff, "2.00");
        assert_eq!(f.worker_receives, "recvmsg MSG_CMSG_CLOEXEC");
        assert_eq!(f.listener_polled_by, "master");
        assert_eq!(
            f.listeners_held,
            "1 listener; master: all; each worker: none"
        );
    }
}

#[test]
fn node_none_and_shared_epoll_every_worker_polls_the_shared_listener_level_triggered() {
    let (node, lab) = pair("node:none");
    for f in [&node, &lab] {
        assert_eq!(f.accepting_role, "workers");
        assert_eq!(f.handoff, "none");
        assert_eq!(f.listener_polled_by, "every worker, the same socket");
        assert_eq!(f.listener_events, "EPOLLIN");
        assert_eq!(f.listener_trigger, "level");
    }
}

#[test]
fn nginx_epoll_exclusive_and_its_twin_register_the_shared_listener_exclusive_in_every_worker() {
    let (nginx, lab) = pair("nginx:epoll-exclusive");
    for f in [&nginx, &lab] {
        assert_eq!(f.accepting_role, "workers");
        assert_eq!(f.listener_polled_by, "every worker, the same socket");
        assert_eq!(f.listener_events, "EPOLLIN|EPOLLEXCLUSIVE");
        assert_eq!(f.listener_trigger, "level");
        assert_eq!(
            f.listeners_held,
            "1 listener; master: all; each worker: the shared one"
        );
        assert_eq!(
            f.listener_reregistration,
            "EPOLL_CTL_DEL then EPOLL_CTL_ADD in one turn"
        );
    }
}

#[test]
fn nginx_accept_mutex_and_its_twin_only_the_lock_holder_polls_the_listener() {
    let (nginx, lab) = pair("nginx:accept-mutex");
    for f in [&nginx, &lab] {
        assert_eq!(f.accepting_role, "workers");
        assert_eq!(f.listener_polled_by, "some workers, the same socket");
        assert_eq!(f.listener_trigger, "level");
        assert_eq!(f.listener_reregistration, "none");
    }
}

#[test]
fn nginx_reuseport_and_reuseport_each_worker_polls_its_own_socket() {
    let (nginx, lab) = pair("nginx:reuseport");
    for f in [&nginx, &lab] {
        assert_eq!(f.accepting_role, "workers");
        assert_eq!(f.listener_polled_by, "each worker, its own socket");
        assert_eq!(f.listener_trigger, "level");
    }
    assert_eq!(
        lab.listeners_held,
        "2 listeners; master: all; each worker: its own"
    );
}

#[test]
fn apache_prefork_and_shared_prefork_children_block_in_accept_on_a_blocking_listener() {
    let (apache, lab) = pair("apache:prefork");
    for f in [&apache, &lab] {
        assert_eq!(f.accepting_role, "workers");
        assert_eq!(f.accepts_per_wakeup, "1, no wait before");
        assert_eq!(f.listener_nonblocking, "blocking");
        assert_eq!(f.conn_registration, "not in an epoll");
        assert_eq!(
            f.listeners_held,
            "1 listener; master: all; each worker: the shared one"
        );
    }
}
