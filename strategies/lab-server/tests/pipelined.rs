//! `master-pass:pipelined` from outside, on the real binary:
//! - under a burst of concurrent connections, strace of the master shows
//!   `accept4` until `EAGAIN`, at least one `sendmsg` whose `SCM_RIGHTS`
//!   carries more than one descriptor, and no read from any worker's
//!   channel (no reply per hand-off); every connection is answered;
//! - least outstanding: with one worker stopped (SIGSTOP) and sequential
//!   short connections, the stopped worker gets at most one (its first
//!   connection never finishes, so the other always has fewer
//!   outstanding); the rest are served by the other; resumed, it answers
//!   what it got;
//! - crash: with both workers stopped, connections are passed into their
//!   channels; SIGKILL of one loses the descriptors in its channel, and the
//!   stats file counts exactly those (`connections_lost_in_flight` equals
//!   the clients that got no response, and is not 0); the master says so on
//!   stderr and re-forks the slot.
//!
//! Needs strace (scripts/test installs it).

mod util;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use util::load::{errors, ok, Load};
use util::procfs::{accept_queue, fd_targets, listen_inodes, socket_fds, tcp_rows};
use util::sys::{kill, SIGCONT, SIGINT, SIGKILL, SIGSTOP};
use util::*;

const STRATEGY: &str = "master-pass:pipelined";

/// `strace` on the master only, the calls given, into `out`; returns once
/// strace says it is attached.
fn trace_master(pid: i32, calls: &str, out: &Path) -> Child {
    let mut child = Command::new("strace")
        .args(["-e", &format!("trace={calls}"), "-o"])
        .arg(out)
        .args(["-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace is not installed: run scripts/test (or apt-get install -y strace)");
    let mut line = String::new();
    BufReader::new(child.stderr.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("attached"), "strace: {line}");
    child
}

/// The descriptor a traced call was made on: `sendmsg(7, ...` gives 7.
fn first_arg(line: &str) -> Option<i32> {
    let args = line.split_once('(')?.1;
    args.split([',', ')']).next()?.trim().parse().ok()
}

/// How many descriptors an `SCM_RIGHTS` `sendmsg` line carries
/// (`cmsg_data=[12, 13]` gives 2); `None` for a line without one.
fn fds_in_sendmsg(line: &str) -> Option<usize> {
    if !line.starts_with("sendmsg(") || !line.contains("SCM_RIGHTS") {
        return None;
    }
    let data = line.split_once("cmsg_data=[")?.1;
    let list = data.split_once(']')?.0;
    Some(list.split(',').filter(|s| !s.trim().is_empty()).count())
}

/// TCP sockets (not the listener, not a control channel) `pid` holds.
fn tcp_connections_of(pid: i32, listener: &BTreeSet<u64>) -> usize {
    let tcp: BTreeSet<u64> = tcp_rows().into_iter().map(|r| r.inode).collect();
    socket_fds(pid)
        .into_iter()
        .filter(|(_, ino)| tcp.contains(ino) && !listener.contains(ino))
        .count()
}

#[test]
fn a_burst_is_passed_in_batches_without_a_reply_per_descriptor() {
    let dir = TempDir::new("pipelined-burst");
    let out = dir.path().join("strace.txt");
    let stats_path = dir.path().join("stats.json");
    let mut server = Server::start(STRATEGY, 2, &["--stats-out", stats_path.to_str().unwrap()]);
    let listener: BTreeSet<u64> = listen_inodes(server.port()).into_iter().collect();
    // The master's sockets other than the listener: the workers' channels.
    let channels: BTreeSet<i32> = socket_fds(server.master_pid)
        .into_iter()
        .filter(|(_, ino)| !listener.contains(ino))
        .map(|(fd, _)| fd)
        .collect();
    assert_eq!(
        channels.len(),
        2,
        "one channel per worker: {:?}",
        fd_targets(server.master_pid)
    );
    let strace = trace_master(
        server.master_pid,
        "accept4,sendmsg,read,readv,recvmsg,recvfrom",
        &out,
    );
    let load = Load::start(
        server.addr,
        Duration::from_secs(1),
        &["--mode", "close", "--connections", "32"],
    );
    let result = load.finish();
    kill(strace.id() as i32, SIGINT).unwrap();
    let mut strace = strace;
    strace.wait().unwrap();
    let status = server.stop();
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    server.assert_nothing_left_running();
    assert_eq!(errors(&result), 0, "{}", result["errors"]);
    assert!(ok(&result) > 0, "no request served");

    let trace = std::fs::read_to_string(&out).unwrap();
    let batches: Vec<usize> = trace.lines().filter_map(fds_in_sendmsg).collect();
    let accepts = trace.lines().filter(|l| l.starts_with("accept4(")).count();
    let eagain = trace
        .lines()
        .filter(|l| l.starts_with("accept4(") && l.contains("EAGAIN"))
        .count();
    let channel_reads: Vec<&str> = trace
        .lines()
        .filter(|l| {
            ["read(", "readv(", "recvmsg(", "recvfrom("]
                .iter()
                .any(|c| l.starts_with(c))
                && first_arg(l).is_some_and(|fd| channels.contains(&fd))
        })
        .collect();
    let stats = read_stats(&stats_path);
    let m = &stats["master"];
    let ctx = format!(
        "{} sendmsg with SCM_RIGHTS (largest {:?}), {accepts} accept4 ({eagain} EAGAIN); master {m}",
        batches.len(),
        batches.iter().max()
    );
    assert!(
        batches.iter().any(|&n| n > 1),
        "no sendmsg carried more than one descriptor: {ctx}"
    );
    assert!(
        batches.iter().all(|&n| n <= 16),
        "a sendmsg carried more than 16: {ctx}"
    );
    assert!(
        channel_reads.is_empty(),
        "the master read a worker's channel during the burst: {channel_reads:?}; {ctx}"
    );
    assert!(
        eagain > 0 && accepts > eagain,
        "accept4 until EAGAIN: {ctx}"
    );
    // The stats file says the same: fewer sendmsg calls than descriptors,
    // every accepted connection passed and taken.
    let field = |f: &str| m[f].as_u64().unwrap_or_else(|| panic!("no {f}: {m}"));
    assert_eq!(
        field("connections_passed"),
        field("connections_accepted"),
        "{m}"
    );
    assert!(field("fd_sendmsgs") < field("connections_passed"), "{m}");
    assert!(field("fd_sendmsg_largest") > 1, "{m}");
    assert_eq!(field("connections_lost_in_flight"), 0, "{m}");
    assert_eq!(
        sum_over_workers(&stats, "connections"),
        field("connections_accepted"),
        "{stats}"
    );
    assert_eq!(
        sum_over_workers(&stats, "closed"),
        sum_over_workers(&stats, "connections"),
        "every connection a worker took, it finished: {stats}"
    );
}

#[test]
fn sequential_connections_go_to_the_worker_with_fewer_outstanding() {
    const N: usize = 20;
    let mut server = Server::start(STRATEGY, 2, &[]);
    let stopped = server.worker_pids[0];
    let running = server.worker_pids[1];
    kill(stopped, SIGSTOP).unwrap();
    let mut by_worker = Vec::new();
    let mut stuck = Vec::new();
    for i in 0..N {
        let mut c = Client::connect(server.addr);
        c.stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        c.send_get("/", true);
        match c.try_read_response() {
            Ok(Some(r)) => {
                assert_eq!(r.status, 200, "connection {i}: {r:?}");
                // Read to the close: the worker counted the connection as
                // finished before it closed it, so the next one sees it.
                c.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                c.expect_closed();
                by_worker.push(r.worker());
            }
            Ok(None) => panic!("connection {i} closed without a response"),
            Err(_) => stuck.push(c), // no answer: it went to the stopped worker
        }
    }
    assert!(
        stuck.len() <= 1,
        "the stopped worker got {} of {N} sequential connections (its first never finishes, so it always has more outstanding)",
        stuck.len()
    );
    assert_eq!(by_worker.len() + stuck.len(), N);
    assert!(
        by_worker.iter().all(|&p| p == running),
        "answered by {by_worker:?}, expected only {running}"
    );
    kill(stopped, SIGCONT).unwrap();
    for mut c in stuck {
        c.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let r = c
            .read_response()
            .expect("the resumed worker answers the connection it got");
        assert_eq!((r.status, r.worker()), (200, stopped), "{r:?}");
    }
    let status = server.stop();
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    server.assert_nothing_left_running();
}

#[test]
fn a_killed_worker_loses_the_descriptors_in_its_channel_and_they_are_counted() {
    const CLIENTS: usize = 8;
    let dir = TempDir::new("pipelined-crash");
    let stats_path = dir.path().join("stats.json");
    let mut server = Server::start(STRATEGY, 2, &["--stats-out", stats_path.to_str().unwrap()]);
    let listener: BTreeSet<u64> = listen_inodes(server.port()).into_iter().collect();
    let (victim, survivor) = (server.worker_pids[0], server.worker_pids[1]);
    kill(victim, SIGSTOP).unwrap();
    kill(survivor, SIGSTOP).unwrap();
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|_| {
            let mut c = Client::connect(server.addr);
            c.send_get("/", true);
            c
        })
        .collect();
    // The master has accepted every connection and passed it on (closing its
    // copy) once the accept queue is empty and it holds no TCP connection.
    poll_until("the master passed every connection", SETTLE_TIMEOUT, || {
        let queued: u64 = listener.iter().filter_map(|&i| accept_queue(i)).sum();
        let held = tcp_connections_of(server.master_pid, &listener);
        if queued == 0 && held == 0 {
            Ok(())
        } else {
            Err(format!("{queued} queued, {held} held by the master"))
        }
    });
    kill(victim, SIGKILL).unwrap();
    poll_until(
        &format!("a replacement for {victim}"),
        SETTLE_TIMEOUT,
        || {
            let now = server.live_workers();
            if now.len() == 2 && !now.contains(&victim) {
                Ok(())
            } else {
                Err(format!("live workers {now:?}"))
            }
        },
    );
    kill(survivor, SIGCONT).unwrap();
    let mut answered = 0u64;
    let mut failed = 0u64;
    for c in &mut clients {
        // A response, or a close/reset: never a hang (IO_TIMEOUT panics).
        match c.try_read_response() {
            Ok(Some(r)) => {
                assert_eq!((r.status, r.worker()), (200, survivor), "{r:?}");
                answered += 1;
            }
            Ok(None) => failed += 1,
            Err(e) => {
                assert_ne!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut,
                    "a client of the killed worker hung: {e}"
                );
                failed += 1;
            }
        }
    }
    // Give the thawed survivor's counters a moment before the stop reads
    // them; the stop itself waits for it to finish.
    thread::sleep(Duration::from_millis(50));
    let status = server.stop();
    assert_eq!(status.code(), Some(0), "{}", server.stderr());
    server.assert_nothing_left_running();
    let stats = read_stats(&stats_path);
    let m = &stats["master"];
    let lost = m["connections_lost_in_flight"].as_u64().unwrap();
    assert!(
        failed > 0,
        "the killed worker had connections in its channel"
    );
    assert_eq!(answered + failed, CLIENTS as u64);
    assert_eq!(
        lost, failed,
        "connections_lost_in_flight counts exactly the clients that got no response: {m}"
    );
    assert_eq!(
        m["connections_passed"].as_u64(),
        Some(CLIENTS as u64),
        "{m}"
    );
    assert_eq!(stats["replacements"], 1, "{stats}");
    assert!(
        server
            .stderr()
            .contains(&format!("died with {lost} connection(s) passed to it")),
        "the master reports the loss: {}",
        server.stderr()
    );
}
