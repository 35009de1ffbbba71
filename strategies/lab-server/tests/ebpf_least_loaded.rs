//! `reuseport:ebpf-least-loaded` from outside: the real binary, the kernel's
//! own view of its maps and program.
//!
//! The test finds the master's maps by their ids: `/proc/MASTER/fdinfo/FD`
//! of a BPF map says `map_type` and `map_id` (of a program, `prog_id`), and
//! `BPF_MAP_GET_FD_BY_ID` (root) opens the map here. A lookup on the
//! `REUSEPORT_SOCKARRAY` returns the socket cookie of the listener at that
//! key; a lookup on the one-element load array returns every slot's
//! `assigned` and `finished`. Each listener's own cookie comes from
//! `ss -ltnHe` (`ino:` and `sk:`, the cookie inet_diag reports), and slot
//! i's listener inode from worker i's descriptors (`/proc/PID/fd`).
//!
//! These tests need root, as the strategy does; the suite runs as root.

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::os::fd::{AsFd, OwnedFd};
use std::process::Command;
use std::thread;
use std::time::Duration;

use lab_common::sys::ebpf::{lookup_elem, map_fd_by_id, program_ids, sockarray_cookie};
use util::procfs::{accept_queue, listen_inodes, socket_fds};
use util::sys::{close_with_reset, kill, SIGCONT, SIGSTOP};
use util::*;

const STRATEGY: &str = "reuseport:ebpf-least-loaded";
const SLOT_BYTES: usize = 64;

/// The BPF objects the master holds: (map type, map id) and program ids.
fn master_bpf_objects(master: i32) -> (Vec<(u32, u32)>, Vec<u32>) {
    let (mut maps, mut progs) = (Vec::new(), Vec::new());
    let Ok(dir) = std::fs::read_dir(format!("/proc/{master}/fdinfo")) else {
        return (maps, progs);
    };
    for entry in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        if let (Some(t), Some(id)) = (field("map_type"), field("map_id")) {
            maps.push((t, id));
        }
        if let Some(id) = field("prog_id") {
            progs.push(id);
        }
    }
    (maps, progs)
}

/// The master's maps, opened here: (sockarray, load array, their ids).
fn open_maps(master: i32) -> (OwnedFd, OwnedFd, Vec<u32>) {
    let (maps, _) = master_bpf_objects(master);
    let id_of = |ty: u32| {
        maps.iter()
            .find(|(t, _)| *t == ty)
            .unwrap_or_else(|| panic!("the master holds no map of type {ty}: {maps:?}"))
            .1
    };
    let (sock_id, load_id) = (id_of(20), id_of(2));
    (
        map_fd_by_id(sock_id).expect("open the sockarray by id"),
        map_fd_by_id(load_id).expect("open the load map by id"),
        vec![sock_id, load_id],
    )
}

/// Every slot's (assigned, finished).
fn loads(load: &OwnedFd, workers: usize) -> Vec<(u64, u64)> {
    let mut value = vec![0u8; workers * SLOT_BYTES];
    lookup_elem(load.as_fd(), 0, &mut value).expect("lookup on the load map");
    (0..workers)
        .map(|i| {
            let at =
                |o: usize| u64::from_ne_bytes(value[i * SLOT_BYTES + o..][..8].try_into().unwrap());
            (at(0), at(8))
        })
        .collect()
}

fn outstanding(l: &[(u64, u64)]) -> Vec<i64> {
    l.iter().map(|&(a, f)| a.wrapping_sub(f) as i64).collect()
}

/// Slot i's listener inode: the LISTEN socket on the port that worker i holds.
fn slot_listeners(server: &Server) -> Vec<u64> {
    let listening: BTreeSet<u64> = listen_inodes(server.port()).into_iter().collect();
    server
        .worker_pids
        .iter()
        .map(|&pid| {
            let mine: Vec<u64> = socket_fds(pid)
                .into_iter()
                .map(|(_, ino)| ino)
                .filter(|ino| listening.contains(ino))
                .collect();
            assert_eq!(mine.len(), 1, "worker {pid} holds one listener: {mine:?}");
            mine[0]
        })
        .collect()
}

/// inode -> socket cookie of every listener on `port`, from `ss -ltnHe`.
fn ss_cookies(port: u16) -> BTreeMap<u64, u64> {
    let out = Command::new("ss")
        .args(["-ltnHe", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| {
            let field = |p: &str| l.split_whitespace().find_map(|w| w.strip_prefix(p));
            Some((
                field("ino:")?.parse().ok()?,
                u64::from_str_radix(field("sk:")?, 16).ok()?,
            ))
        })
        .collect()
}

/// Waits until every slot's assigned - finished is 0.
#[track_caller]
fn wait_all_zero(load: &OwnedFd, workers: usize) {
    poll_until(
        "every slot's assigned - finished back to 0",
        SETTLE_TIMEOUT,
        || {
            let l = loads(load, workers);
            if outstanding(&l).iter().all(|&d| d == 0) {
                Ok(())
            } else {
                Err(format!("(assigned, finished) per slot: {l:?}"))
            }
        },
    );
}

#[test]
fn the_map_holds_each_slots_listener() {
    let dir = TempDir::new("ebpf-cookies");
    let stats = dir.path().join("stats.json");
    let mut server = Server::start(STRATEGY, 4, &["--stats-out", stats.to_str().unwrap()]);
    let (sockarray, _, _) = open_maps(server.master_pid);
    let inodes = slot_listeners(&server);
    let cookies = ss_cookies(server.port());
    let mut in_map = Vec::new();
    for (slot, ino) in inodes.iter().enumerate() {
        let from_map = sockarray_cookie(sockarray.as_fd(), slot as u32)
            .unwrap()
            .unwrap_or_else(|| panic!("slot {slot} is empty in the sockarray"));
        assert_eq!(
            Some(&from_map),
            cookies.get(ino),
            "slot {slot}: the sockarray's cookie is slot {slot}'s listener's (inode {ino}); ss: {cookies:?}"
        );
        in_map.push(from_map);
    }
    server.stop();
    let report = read_stats(&stats);
    let slots = report["master"]["least_loaded"]["slots"]
        .as_array()
        .unwrap()
        .clone();
    let reported: Vec<u64> = slots.iter().map(|s| uint(s, "listener_cookie")).collect();
    assert_eq!(reported, in_map, "the stats file reports the map's cookies");
}

#[test]
fn a_stopped_worker_gets_no_new_connection_while_the_others_are_idle() {
    let workers = 4;
    let mut server = Server::start(STRATEGY, workers, &[]);
    let (_, load, _) = open_maps(server.master_pid);
    let inodes = slot_listeners(&server);
    let stopped_slot = 1;
    let stopped = server.worker_pids[stopped_slot];
    kill(stopped, SIGSTOP).unwrap();
    let mut stuck = Vec::new();
    let mut served = Vec::new();
    for _ in 0..20 {
        let before = accept_queue(inodes[stopped_slot]).unwrap();
        let mut c = Client::connect(server.addr);
        c.send_get("/", true);
        // Either a live worker answers, or the connection sits in the
        // stopped worker's queue.
        let landed = poll_until("an answer or a queued connection", IO_TIMEOUT, || {
            if c.anything_readable_now() {
                Ok(false)
            } else if accept_queue(inodes[stopped_slot]).unwrap() > before {
                Ok(true)
            } else {
                Err("neither yet".into())
            }
        });
        if landed {
            stuck.push(c);
            continue;
        }
        served.push(c.read_response().expect("a response").worker());
        c.expect_closed();
        // The others are idle again before the next connection.
        poll_until("the live slots idle", SETTLE_TIMEOUT, || {
            let o = outstanding(&loads(&load, workers));
            let busy: i64 = o
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != stopped_slot)
                .map(|(_, d)| d)
                .sum();
            if busy == 0 {
                Ok(())
            } else {
                Err(format!("{o:?}"))
            }
        });
    }
    assert!(
        stuck.len() <= 1,
        "the stopped worker's queue got {} connections",
        stuck.len()
    );
    assert_eq!(
        accept_queue(inodes[stopped_slot]).unwrap(),
        stuck.len() as u64
    );
    assert!(!served.contains(&stopped));
    assert_eq!(served.len() + stuck.len(), 20);
    let by_worker = count_by_worker(served.iter().copied());
    assert!(
        by_worker.len() >= 2,
        "spread over the live workers: {by_worker:?}"
    );
    kill(stopped, SIGCONT).unwrap();
    for mut c in stuck {
        assert_eq!(
            c.read_response().expect("served after SIGCONT").worker(),
            stopped
        );
    }
    wait_all_zero(&load, workers);
    server.stop();
}

#[test]
fn counts_come_back_to_zero_after_an_overload_with_full_queues() {
    let workers = 2;
    let dir = TempDir::new("ebpf-overload");
    let stats = dir.path().join("stats.json");
    let mut server = Server::start(
        STRATEGY,
        workers,
        &["--backlog", "2", "--stats-out", stats.to_str().unwrap()],
    );
    let (_, load, _) = open_maps(server.master_pid);
    for &pid in &server.worker_pids {
        kill(pid, SIGSTOP).unwrap();
    }
    // Far more connections than the two queues hold (backlog + 1 each): the
    // kernel drops the SYNs beyond, after the program counted them, and the
    // clients send them again a second later; they are counted again. Then
    // some of the queued ones are reset before a worker accepts them.
    let addr = server.addr;
    let clients: Vec<_> = (0..24)
        .map(|_| {
            thread::spawn(move || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(2500)).ok()
            })
        })
        .collect();
    let connected: Vec<TcpStream> = clients
        .into_iter()
        .filter_map(|t| t.join().unwrap())
        .collect();
    assert!(
        connected.len() < 24,
        "some connections found the queues full"
    );
    // Half of those queued give up with a reset while still in the queue.
    let mut connected = connected.into_iter();
    let half = connected.len() / 2;
    for c in connected.by_ref().take(half) {
        close_with_reset(c).unwrap();
    }
    for &pid in &server.worker_pids {
        kill(pid, SIGCONT).unwrap();
    }
    drop(connected);
    wait_all_zero(&load, workers);
    // And it stays there: no correction goes the wrong way when idle.
    thread::sleep(Duration::from_millis(300));
    assert!(outstanding(&loads(&load, workers)).iter().all(|&d| d == 0));
    // Served afterwards, by both.
    let mut seen = BTreeSet::new();
    for _ in 0..12 {
        seen.insert(get(server.addr, "/").worker());
    }
    wait_all_zero(&load, workers);
    server.stop();
    let report = read_stats(&stats);
    let ll = &report["master"]["least_loaded"];
    assert!(uint(ll, "corrections") > 0, "the drift was corrected: {ll}");
    let by: i64 = ll["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["corrected_by"].as_i64().unwrap())
        .sum();
    assert!(
        by < 0,
        "the program had counted more than arrived (retried SYNs): {ll}"
    );
    assert_eq!(seen.len(), 2, "both workers serve afterwards: {seen:?}");
}

#[test]
fn a_replaced_worker_s_slot_comes_back_to_zero() {
    let workers = 2;
    let mut server = Server::start(STRATEGY, workers, &[]);
    let (_, load, _) = open_maps(server.master_pid);
    // Keep a connection open on worker 0, then kill it: that connection is
    // never finished by a worker.
    let mut held = Vec::new();
    let victim = server.worker_pids[0];
    for _ in 0..8 {
        let mut c = Client::connect(server.addr);
        let w = c.get("/", false).worker();
        if w == victim {
            held.push(c);
            break;
        }
    }
    assert!(!held.is_empty(), "one connection on worker 0");
    kill(victim, util::sys::SIGKILL).unwrap();
    poll_until("the replacement", SETTLE_TIMEOUT, || {
        if server.live_workers().contains(&victim) || server.live_workers().len() < workers {
            Err(format!("{:?}", server.live_workers()))
        } else {
            Ok(())
        }
    });
    drop(held);
    let _ = get(server.addr, "/");
    wait_all_zero(&load, workers);
    server.stop();
}

#[test]
fn nothing_is_left_when_the_server_stops() {
    let mut server = Server::start(STRATEGY, 2, &[]);
    let (maps, progs) = master_bpf_objects(server.master_pid);
    assert_eq!(progs.len(), 1, "the master holds its program: {progs:?}");
    assert!(program_ids().unwrap().contains(&progs[0]));
    let pinned_before = pinned();
    let _ = get(server.addr, "/");
    server.stop();
    poll_until("the program and maps freed", SETTLE_TIMEOUT, || {
        let left_prog = program_ids().unwrap().contains(&progs[0]);
        let left_maps: Vec<u32> = maps
            .iter()
            .filter(|(_, id)| map_fd_by_id(*id).is_ok())
            .map(|&(_, id)| id)
            .collect();
        if !left_prog && left_maps.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "program left: {left_prog}, maps left: {left_maps:?}"
            ))
        }
    });
    assert_eq!(pinned(), pinned_before, "nothing pinned under /sys/fs/bpf");
}

/// Everything under /sys/fs/bpf (empty if bpffs is not mounted).
fn pinned() -> BTreeSet<String> {
    std::fs::read_dir("/sys/fs/bpf")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn without_privileges_it_says_so_in_one_line() {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(util::server::BIN)
        .args([
            "--strategy",
            STRATEGY,
            "--workers",
            "2",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("setpriv (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("needs root (CAP_BPF/CAP_NET_ADMIN)"), "{err}");
    assert!(out.stdout.is_empty(), "no ready line");
}

#[test]
fn idle_workers_share_new_connections_and_the_program_counts_each_once() {
    let workers = 4;
    let dir = TempDir::new("ebpf-spread");
    let stats = dir.path().join("stats.json");
    let mut server = Server::start(STRATEGY, workers, &["--stats-out", stats.to_str().unwrap()]);
    let (_, load, _) = open_maps(server.master_pid);
    let mut served = Vec::new();
    for _ in 0..40 {
        served.push(get(server.addr, "/").worker());
        wait_all_zero(&load, workers);
    }
    let by_worker = count_by_worker(served.iter().copied());
    // The hash picks where the search starts: all four get some.
    assert_eq!(by_worker.len(), workers, "{by_worker:?}");
    server.stop();
    let report = read_stats(&stats);
    let ll = &report["master"]["least_loaded"];
    for (slot, s) in ll["slots"].as_array().unwrap().iter().enumerate() {
        let pid = server.worker_pids[slot];
        let worker = stats_workers(&report)
            .iter()
            .find(|w| w["pid"].as_i64() == Some(pid as i64))
            .unwrap();
        let by_program = uint(s, "assigned") as i64 - s["corrected_by"].as_i64().unwrap();
        assert_eq!(
            by_program,
            uint(worker, "connections") as i64,
            "slot {slot}: the program counted each connection its worker took, once: {ll}"
        );
        assert_eq!(uint(worker, "connections"), by_worker[&pid] as u64);
    }
}
