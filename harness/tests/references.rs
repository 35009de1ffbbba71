//! The reference servers (nginx in three modes, Apache httpd with the
//! prefork MPM, Node.js cluster with two scheduling policies) as harness
//! targets: each starts with the workers it was asked for and stops leaving
//! no process behind, also when dropped without a stop or when the bench
//! running it is interrupted; the per-worker counts loadgen reports for
//! nginx and Apache agree with the server's own access log; and a missing
//! nginx or Apache is a plain message, not a failed bench.
//!
//! These tests need nginx, apache2 and node installed (`just setup-references`,
//! which `.ci/run` does); without them they fail with that advice, they
//! never pass by skipping. They start real servers and load generators, so
//! they run one at a time (see [`serial`]) and assert nothing about speed.

mod util;

use util::*;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use harness::measure::procs::Binaries;
use harness::measure::targets::nginx::{self, Mode};
use harness::measure::targets::{apache, node, Running, StartCtx, TargetSpec};
use harness::model::names::REFERENCES;
use util::ps::Proc;

const READY_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// One test at a time: each checks that no process of ours outlives what
/// it started, which a neighbour's servers would confuse (and two cores
/// are few for two benches).
fn serial() -> MutexGuard<'static, ()> {
    let guard = util::serial();
    become_subreaper();
    guard
}

/// Fails (never skips) when a reference server is missing.
#[track_caller]
fn require_references() {
    for r in [nginx::available(), apache::available(), node::available()] {
        if let Err(e) = r {
            panic!("{e}. These tests measure the reference servers and fail without them.");
        }
    }
}

fn bins() -> Binaries {
    let dir = ensure_siblings().parent().expect("bin dir").to_path_buf();
    Binaries {
        lab_server: dir.join("lab-server"),
        loadgen: dir.join("loadgen"),
    }
}

/// Processes (zombies included) whose working directory or command line
/// lies under `dir`: the harness's children inherit its working directory,
/// and an nginx master's title names its configuration; an nginx worker's
/// title ("nginx: worker process") names nothing, hence the cwd.
fn procs_under(dir: &Path) -> Vec<(Proc, String)> {
    ps::all()
        .into_iter()
        .filter(|p| p.refers_to(dir))
        .map(|p| {
            let cmdline = p.cmdline.clone();
            (p, cmdline)
        })
        .collect()
}

/// Waits (bounded) until none of `pids` exists any more, not even as a
/// zombie; fails naming what is left.
#[track_caller]
fn assert_gone(what: &str, pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left: Vec<Proc> = pids.iter().filter_map(|&p| ps::info(p)).collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            ps::kill_all(left.iter().map(|p| p.pid));
            panic!(
                "{what}: processes left behind: {left:?} (we are pid {})",
                std::process::id()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` at most `limit`, killing it (and failing) after that.
#[track_caller]
fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One `GET /` on a fresh connection; the `X-Worker` value.
fn x_worker(addr: &str) -> i32 {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{addr}: {resp}");
    assert!(resp.ends_with("ok"), "{addr}: the body is ok: {resp}");
    resp.lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("x-worker"))
        })
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{addr}: no X-Worker in {resp}"))
}

fn start(name: &str, bins: &Binaries, work: &Path) -> Box<dyn Running> {
    let ctx = StartCtx {
        bins,
        workers: 2,
        cpus: &[],
        work_dir: work,
        ready_timeout: READY_TIMEOUT,
        inject_cpu_us: 0,
        keep_alive: true,
    };
    let spec = TargetSpec::parse(name).unwrap_or_else(|| panic!("{name} is a target"));
    assert!(spec.is_reference());
    spec.start(&ctx)
        .unwrap_or_else(|e| panic!("{name} did not start: {e}"))
}

#[test]
fn every_reference_stops_leaving_no_process_behind_also_when_dropped_without_a_stop() {
    let _serial = serial();
    require_references();
    let bins = bins();
    assert_eq!(REFERENCES.len(), 6);
    for name in REFERENCES {
        for stop in [true, false] {
            let work = temp_dir("stop");
            let server = start(name, &bins, &work);
            // Apache's children read their files from a directory of
            // their own, which must go with the server.
            let child_dir = (*name == apache::NAME).then(|| apache_child_dir(&work));
            if let Some(d) = &child_dir {
                assert!(d.join("worker.lua").is_file(), "{name}: {d:?}");
            }
            let (master, workers) = (server.master_pid(), server.worker_pids());
            assert_eq!(workers.len(), 2, "{name}: two workers, found {workers:?}");
            let me = std::process::id() as i32;
            // The master runs under `harness guard` (which kills the whole
            // tree if the harness dies), and the guard is our child.
            let guard = util::ps::guard_of(master)
                .unwrap_or_else(|| panic!("{name}: the master {master} runs under harness guard"));
            assert_eq!(guard.ppid, me, "{name}: the master's guard is our child");
            for w in &workers {
                assert_eq!(
                    ps::info(*w).map(|p| p.ppid),
                    Some(master),
                    "{name}: worker {w} is the master's child"
                );
            }
            let answered = x_worker(&server.addr());
            assert!(
                workers.contains(&answered),
                "{name}: X-Worker {answered} is one of the workers {workers:?}"
            );
            if stop {
                let stats = server
                    .stop(STOP_TIMEOUT)
                    .unwrap_or_else(|e| panic!("{name}: stop: {e}"));
                assert!(stats.is_none(), "{name} has no stats file");
            } else {
                drop(server);
            }
            let how = if stop { "stopped" } else { "dropped" };
            let mut pids = vec![master];
            pids.extend(&workers);
            assert_gone(&format!("{name} {how}"), &pids);
            if let Some(d) = &child_dir {
                assert!(!d.exists(), "{name} {how}: {d:?} is removed");
            }
            let group: Vec<Proc> = ps::all().into_iter().filter(|p| p.pgrp == master).collect();
            let ours = ps::live_children();
            if !group.is_empty() || !ours.is_empty() {
                ps::kill_all(group.iter().chain(&ours).map(|p| p.pid));
                panic!(
                    "{name} {how}: its process group lives on: {group:?}; our children: {ours:?}"
                );
            }
            let _ = std::fs::remove_dir_all(&work);
        }
    }
}

#[test]
fn an_interrupted_bench_leaves_no_reference_server_behind() {
    let _serial = serial();
    require_references();
    let harness = ensure_siblings();
    let scratch = temp_dir("interrupt");
    let results = scratch.join("results");
    let stderr_path = scratch.join("stderr.txt");
    let mut child = Command::new(&harness)
        .args([
            "bench",
            "--strategies",
            "nginx:reuseport,node:rr",
            "--workloads",
            "keepalive",
        ])
        .args([
            "--workers",
            "2",
            "--rounds",
            "3",
            "--duration",
            "500ms",
            "--warmup",
            "0s",
            "--seed",
            "3",
        ])
        .arg("--results")
        .arg(&results)
        // Every process the harness starts inherits this directory, which
        // is how a stray nginx worker is recognised as this test's.
        .current_dir(&scratch)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let runs_done = || {
        std::fs::read_dir(&results)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|s| std::fs::read_dir(s.path().join("runs")).ok())
            .flat_map(|d| d.flatten())
            .filter(|f| !f.file_name().to_string_lossy().starts_with('.'))
            .count()
    };
    let reference_up = || {
        procs_under(&scratch)
            .iter()
            .any(|(p, _)| p.state != 'Z' && (p.comm == "nginx" || p.comm == "node"))
    };
    // Interrupt while a reference serves, after at least one run is on disk.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(runs_done() >= 1 && reference_up()) {
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "harness bench ended ({st}) before it could be interrupted mid-run: {}",
                stderr()
            );
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "within 60 s no run was written with a reference server running ({} runs): {}",
                runs_done(),
                stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let status = wait_bounded(
        &mut child,
        Duration::from_secs(30),
        "the interrupted harness",
    );
    let err = stderr();
    assert_eq!(
        status.code(),
        Some(130),
        "an interrupted bench exits 130: {err}"
    );
    // Nothing left: no orphan of the harness became our child and stayed
    // alive, and no process anywhere works in this test's directory.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        ps::reap_zombies();
        let ours = ps::live_children();
        let under = procs_under(&scratch);
        if ours.is_empty() && under.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            ps::kill_all(
                ours.iter()
                    .map(|p| p.pid)
                    .chain(under.iter().map(|(p, _)| p.pid)),
            );
            panic!(
                "processes left behind: children {ours:?}, in {}: {under:?}; harness said: {err}",
                scratch.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// Per worker pid from nginx's access log (`$pid $connection
/// $connection_requests`): distinct connections and requests.
fn access_log_counts(log: &Path) -> BTreeMap<u32, (u64, u64)> {
    let text = std::fs::read_to_string(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let mut conns: BTreeMap<u32, BTreeSet<u64>> = BTreeMap::new();
    let mut reqs: BTreeMap<u32, u64> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [pid, conn, _n] = f[..] else {
            panic!(
                "an access log line that is not `$pid $connection $connection_requests`: {line:?}"
            );
        };
        let pid: u32 = pid.parse().unwrap();
        conns.entry(pid).or_default().insert(conn.parse().unwrap());
        *reqs.entry(pid).or_default() += 1;
    }
    conns
        .into_iter()
        .map(|(pid, c)| (pid, (c.len() as u64, reqs[&pid])))
        .collect()
}

fn shares(counts: &BTreeMap<u32, u64>) -> BTreeMap<u32, f64> {
    let total: u64 = counts.values().sum();
    counts
        .iter()
        .map(|(&k, &v)| (k, v as f64 / total.max(1) as f64))
        .collect()
}

#[track_caller]
fn assert_shares_agree(what: &str, ours: &BTreeMap<u32, u64>, nginx: &BTreeMap<u32, u64>) {
    let (a, b) = (shares(ours), shares(nginx));
    for pid in a.keys().chain(b.keys()) {
        let (x, y) = (
            a.get(pid).copied().unwrap_or(0.0),
            b.get(pid).copied().unwrap_or(0.0),
        );
        assert!(
            (x - y).abs() <= 0.01,
            "{what} of worker {pid}: loadgen says {:.2}% of {ours:?}, nginx's log {:.2}% of {nginx:?}",
            x * 100.0,
            y * 100.0
        );
    }
}

#[test]
fn nginx_per_worker_connection_counts_agree_with_its_access_log() {
    let _serial = serial();
    require_references();
    let bins = bins();
    for mode in [Mode::ReusePort, Mode::EpollExclusive] {
        let work = temp_dir("access-log");
        let log = work.join("access.log");
        let json = work.join("loadgen.json");
        let ctx = StartCtx {
            bins: &bins,
            workers: 2,
            cpus: &[],
            work_dir: &work,
            ready_timeout: READY_TIMEOUT,
            inject_cpu_us: 0,
            keep_alive: false,
        };
        let server = nginx::start_with_access_log(mode, &ctx, &log)
            .unwrap_or_else(|e| panic!("{}: {e}", mode.name()));
        let workers = server.worker_pids();
        let mut lg = Command::new(&bins.loadgen)
            .args([
                "--target",
                &server.addr(),
                "--mode",
                "close",
                "-c",
                "8",
                "-d",
                "1s",
                "--quiet",
                "--json",
            ])
            .arg(&json)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let st = wait_bounded(&mut lg, Duration::from_secs(30), "loadgen");
        // The graceful stop flushes nginx's log buffer.
        server
            .stop(STOP_TIMEOUT)
            .unwrap_or_else(|e| panic!("{}: stop: {e}", mode.name()));
        assert!(st.success(), "loadgen failed: {st}");
        let result = loadgen::result::read_json(&json).unwrap();
        assert_eq!(result.unattributed, 0, "every response names its worker");
        let lg_conns: BTreeMap<u32, u64> = result
            .workers
            .iter()
            .map(|w| (w.worker, w.connections))
            .collect();
        let lg_reqs: BTreeMap<u32, u64> = result
            .workers
            .iter()
            .map(|w| (w.worker, w.requests))
            .collect();
        let logged = access_log_counts(&log);
        let log_conns: BTreeMap<u32, u64> = logged.iter().map(|(&p, &(c, _))| (p, c)).collect();
        let log_reqs: BTreeMap<u32, u64> = logged.iter().map(|(&p, &(_, r))| (p, r)).collect();
        let what = mode.name();
        eprintln!("{what}: loadgen connections {lg_conns:?} requests {lg_reqs:?}; access log connections {log_conns:?} requests {log_reqs:?}");
        for pid in lg_conns.keys().chain(log_conns.keys()) {
            assert!(
                workers.contains(&(*pid as i32)),
                "{what}: {pid} is not one of the workers {workers:?}"
            );
        }
        let total: u64 = lg_conns.values().sum();
        assert!(
            total >= 50,
            "{what}: too few connections to compare shares: {lg_conns:?}"
        );
        // nginx saw at least what loadgen counted: loadgen drops requests
        // still in flight at the end, and the start-up probe is logged too.
        assert!(
            log_conns.values().sum::<u64>() >= total,
            "{what}: {log_conns:?} vs {lg_conns:?}"
        );
        assert_shares_agree(
            &format!("{what}: share of connections"),
            &lg_conns,
            &log_conns,
        );
        assert_shares_agree(&format!("{what}: share of requests"), &lg_reqs, &log_reqs);
        assert_gone(what, &workers);
        let _ = std::fs::remove_dir_all(&work);
    }
}

/// Per child pid from Apache's access log (`%P %k`: pid, then the number
/// of the request on its connection, 0 for the first), from byte `from` on:
/// connections (requests numbered 0) and requests.
fn apache_log_counts(log: &Path, from: usize) -> BTreeMap<u32, (u64, u64)> {
    let text = std::fs::read_to_string(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let mut out: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for line in text[from..].lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [pid, k] = f[..] else {
            panic!("an access log line that is not `%P %k`: {line:?}");
        };
        let e = out.entry(pid.parse().unwrap()).or_default();
        if k.parse::<u64>().unwrap() == 0 {
            e.0 += 1;
        }
        e.1 += 1;
    }
    out
}

/// The inode of the socket listening on `127.0.0.1:port` (`/proc/net/tcp`,
/// state 0A); fails unless there is exactly one.
fn listener_inode(port: u16) -> u64 {
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let want = format!("0100007F:{port:04X}");
    let found: Vec<u64> = tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&want.as_str()) && f.get(3) == Some(&"0A"))
                .then(|| f.get(9)?.parse().ok())
                .flatten()
        })
        .collect();
    assert_eq!(found.len(), 1, "one listener on port {port}: {found:?}");
    found[0]
}

/// The socket inodes among `pid`'s descriptors.
fn socket_inodes(pid: i32) -> BTreeSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|t| {
            t.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// The effective uid of `pid`.
fn euid(pid: i32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1)?.parse().ok())
        .unwrap()
}

/// The private directory of the files Apache's children read, as the
/// run's configuration names it (`DocumentRoot`).
fn apache_child_dir(work: &Path) -> PathBuf {
    let conf = std::fs::read_to_string(work.join("apache/httpd.conf")).unwrap();
    let root = conf
        .lines()
        .find_map(|l| l.strip_prefix("DocumentRoot "))
        .unwrap_or_else(|| panic!("no DocumentRoot in {conf}"));
    PathBuf::from(root.trim_matches('"'))
}

#[test]
fn apache_prefork_children_inherit_one_listener_and_their_counts_agree_with_its_access_log() {
    let _serial = serial();
    require_references();
    let bins = bins();
    for workers in [2usize, 4] {
        for keep_alive in [false, true] {
            let what = format!(
                "apache:prefork, {workers} children, {}",
                if keep_alive { "keep-alive" } else { "close" }
            );
            let work = temp_dir("apache-log");
            let log = work.join("access.log");
            let json = work.join("loadgen.json");
            let ctx = StartCtx {
                bins: &bins,
                workers,
                cpus: &[],
                work_dir: &work,
                ready_timeout: READY_TIMEOUT,
                inject_cpu_us: 0,
                keep_alive,
            };
            let server =
                apache::start_with_access_log(&ctx, &log).unwrap_or_else(|e| panic!("{what}: {e}"));
            let (master, children) = (server.master_pid(), server.worker_pids());
            let child_dir = apache_child_dir(&work);
            assert!(
                child_dir.join("worker.lua").is_file(),
                "{what}: {child_dir:?}"
            );
            // Exactly N children, each holding the parent's one listener.
            assert_eq!(children.len(), workers, "{what}: {children:?}");
            assert_eq!(
                harness::measure::procs::children_of(master),
                children,
                "{what}"
            );
            let listener = listener_inode(server.port());
            assert!(
                socket_inodes(master).contains(&listener),
                "{what}: the parent holds the listener {listener}"
            );
            for &c in &children {
                assert!(
                    socket_inodes(c).contains(&listener),
                    "{what}: child {c} inherited the listener {listener}: {:?}",
                    socket_inodes(c)
                );
                if euid(master) == 0 {
                    assert_ne!(euid(c), 0, "{what}: child {c} runs as nobody, not root");
                }
            }
            // What was logged before the load (the start-up probe) is not
            // the load's.
            std::thread::sleep(Duration::from_millis(100));
            let from = std::fs::read_to_string(&log).map_or(0, |t| t.len());
            let conns = workers.to_string();
            let mode = if keep_alive { "keepalive" } else { "close" };
            let mut lg = Command::new(&bins.loadgen)
                .args(["--target", &server.addr(), "--mode", mode, "-c", &conns])
                .args(["-d", "1s", "--quiet", "--json"])
                .arg(&json)
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            let st = wait_bounded(&mut lg, Duration::from_secs(30), "loadgen");
            let after = harness::measure::procs::children_of(master);
            server
                .stop(STOP_TIMEOUT)
                .unwrap_or_else(|e| panic!("{what}: stop: {e}"));
            let mut pids = vec![master];
            pids.extend(&children);
            assert_gone(&what, &pids);
            let group: Vec<Proc> = ps::all().into_iter().filter(|p| p.pgrp == master).collect();
            assert!(
                group.is_empty(),
                "{what}: its process group lives on: {group:?}"
            );
            assert!(!child_dir.exists(), "{what}: {child_dir:?} is removed");
            assert!(st.success(), "{what}: loadgen failed: {st}");
            assert_eq!(after, children, "{what}: the same children after the load");

            let result = loadgen::result::read_json(&json).unwrap();
            assert_eq!(
                result.unattributed, 0,
                "{what}: every response names its child"
            );
            let lg: BTreeMap<u32, (u64, u64)> = result
                .workers
                .iter()
                .map(|w| (w.worker, (w.connections, w.requests)))
                .collect();
            let logged = apache_log_counts(&log, from);
            eprintln!(
                "{what}: (connections, requests) per child: loadgen {lg:?}, access log {logged:?}"
            );
            let pids: BTreeSet<u32> = lg.keys().chain(logged.keys()).copied().collect();
            for pid in &pids {
                assert!(
                    children.contains(&(*pid as i32)),
                    "{what}: {pid} is not one of the children {children:?}"
                );
            }
            let total = |m: &BTreeMap<u32, (u64, u64)>, f: fn(&(u64, u64)) -> u64| {
                m.values().map(f).sum::<u64>()
            };
            assert!(
                total(&lg, |c| c.1) >= 100,
                "{what}: too few requests to compare: {lg:?}"
            );
            if keep_alive {
                // Connections == children: every child serves one connection
                // for the whole run.
                assert_eq!(pids.len(), workers, "{what}: every child served");
            }
            // Equal per child, but for the requests loadgen had in flight
            // when its time was up (Apache served and logged them; loadgen
            // dropped them): at most one per connection in all.
            let in_flight = workers as u64;
            for (i, kind) in [(0, "connections"), (1, "requests")] {
                let get = |m: &BTreeMap<u32, (u64, u64)>, pid| {
                    m.get(pid)
                        .map_or(0, |c: &(u64, u64)| if i == 0 { c.0 } else { c.1 })
                };
                for pid in &pids {
                    assert!(
                        get(&lg, pid) <= get(&logged, pid),
                        "{what}: {kind} of child {pid}: loadgen {lg:?} vs access log {logged:?}"
                    );
                }
                let extra: u64 = pids.iter().map(|p| get(&logged, p) - get(&lg, p)).sum();
                let allowed = if keep_alive && i == 0 { 0 } else { in_flight };
                assert!(
                    extra <= allowed,
                    "{what}: {kind}: the access log has {extra} more than loadgen (at most {allowed}): loadgen {lg:?} vs access log {logged:?}"
                );
            }
            let _ = std::fs::remove_dir_all(&work);
        }
    }
}

#[test]
fn a_missing_apache_is_skipped_with_the_install_hint_and_the_rest_of_the_bench_runs() {
    let _serial = serial();
    let harness = ensure_siblings();
    // PATH without any directory that holds an apache2 (on Debian: /usr/sbin).
    let path = std::env::var_os("PATH").unwrap_or_default();
    let narrow: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|d| !d.join("apache2").exists())
        .collect();
    let narrow = std::env::join_paths(narrow).unwrap();
    let scratch = temp_dir("no-apache");
    let results = scratch.join("results");
    let mut child = Command::new(&harness)
        .args([
            "bench",
            "--strategies",
            "apache:prefork,shared:prefork",
            // Not keepalive: its 64 connections against 2 prefork workers
            // leave 62 waiting in the accept queue.
            "--workloads",
            "close",
        ])
        .args([
            "--workers",
            "2",
            "--rounds",
            "1",
            "--duration",
            "300ms",
            "--warmup",
            "0s",
            "--results",
        ])
        .arg(&results)
        .env("PATH", &narrow)
        .current_dir(&scratch)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(scratch.join("stderr.txt")).unwrap())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(60), "harness bench");
    let err = std::fs::read_to_string(scratch.join("stderr.txt")).unwrap();
    assert!(
        status.success(),
        "the bench runs what it can ({status}): {err}"
    );
    assert!(
        err.lines()
            .any(|l| l.contains("Apache httpd is not installed")
                && l.contains("just setup-references")),
        "it says Apache is missing and how to install it: {err}"
    );
    let dir = std::fs::canonicalize(results.join("latest"))
        .expect("results/latest points at the session");
    let runs: Vec<String> = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .flatten()
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .filter(|f| !f.starts_with('.'))
        .collect();
    assert_eq!(runs.len(), 1, "shared:prefork ran once: {runs:?}");
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn a_missing_nginx_is_skipped_with_the_install_hint_and_the_rest_of_the_bench_runs() {
    let _serial = serial();
    let harness = ensure_siblings();
    // PATH without any directory that holds an nginx (on Debian: /usr/sbin).
    let path = std::env::var_os("PATH").unwrap_or_default();
    let narrow: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|d| !d.join("nginx").exists())
        .collect();
    let narrow = std::env::join_paths(narrow).unwrap();
    let scratch = temp_dir("no-nginx");
    let results = scratch.join("results");
    let mut child = Command::new(&harness)
        .args([
            "bench",
            "--strategies",
            "nginx:reuseport,reuseport",
            "--workloads",
            "keepalive",
        ])
        .args([
            "--workers",
            "2",
            "--rounds",
            "1",
            "--duration",
            "300ms",
            "--warmup",
            "0s",
            "--results",
        ])
        .arg(&results)
        .env("PATH", &narrow)
        .current_dir(&scratch)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(scratch.join("stderr.txt")).unwrap())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(60), "harness bench");
    let err = std::fs::read_to_string(scratch.join("stderr.txt")).unwrap();
    assert!(
        status.success(),
        "the bench runs what it can ({status}): {err}"
    );
    assert!(
        err.lines()
            .any(|l| l.contains("nginx is not installed") && l.contains("just setup-references")),
        "it says nginx is missing and how to install it: {err}"
    );
    let dir = std::fs::canonicalize(results.join("latest"))
        .expect("results/latest points at the session");
    let runs: Vec<String> = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .flatten()
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .filter(|f| !f.starts_with('.'))
        .collect();
    assert_eq!(runs.len(), 1, "reuseport ran once: {runs:?}");
    let _ = std::fs::remove_dir_all(&scratch);
}
