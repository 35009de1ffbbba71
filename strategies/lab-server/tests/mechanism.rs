//! Each strategy's mechanism as the kernel shows it: who holds the listening
//! socket(s) (`/proc/PID/fd` against `/proc/net/tcp`; for `reuseport`, the
//! master holds every worker's and a replacement polls the same one), who holds an accepted
//! connection and with which fd flags, how the listener sits in the workers'
//! epoll sets, and where `reuseport:cbpf-cpu` steers a connection.

mod util;

use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

use util::procfs::{
    epoll_entries_for, fd_flags, fds_holding, listen_inodes, server_side_inode, socket_fds,
    status_field, tcp_rows, EPOLLET, EPOLLEXCLUSIVE, O_CLOEXEC, O_NONBLOCK, TCP_LISTEN,
};
use util::sys::{kill, pin_current_thread_to, thread_affinity, SIGKILL};
use util::*;

/// The processes of `server` (master and live workers) that hold socket `inode`.
fn holders(server: &Server, inode: u64) -> BTreeSet<i32> {
    let mut procs = server.live_workers();
    procs.insert(server.master_pid);
    procs
        .into_iter()
        .filter(|&p| !fds_holding(p, inode).is_empty())
        .collect()
}

/// The single LISTEN socket on the server's port (panics unless there is exactly one).
#[track_caller]
fn single_listener(server: &Server) -> u64 {
    let inodes = listen_inodes(server.port());
    assert_eq!(
        inodes.len(),
        1,
        "strategy {}: expected exactly one LISTEN socket on port {}, found inodes {inodes:?}",
        server.strategy,
        server.port()
    );
    inodes[0]
}

#[test]
fn master_pass_strategies_keep_the_listener_in_the_master_alone() {
    for strategy in MASTER_PASS {
        let server = Server::start(strategy, 3, &[]);
        let listener = single_listener(&server);
        assert_eq!(
            holders(&server, listener),
            BTreeSet::from([server.master_pid]),
            "strategy {strategy}: only the master (pid {}) may hold the listener (workers {:?})",
            server.master_pid,
            server.worker_pids
        );
    }
}

#[test]
fn shared_strategies_give_the_master_and_every_worker_the_same_single_listener() {
    for strategy in SHARED {
        let server = Server::start(strategy, 3, &[]);
        let listener = single_listener(&server);
        let mut everyone: BTreeSet<i32> = server.worker_pids.iter().copied().collect();
        everyone.insert(server.master_pid);
        assert_eq!(
            holders(&server, listener),
            everyone,
            "strategy {strategy}: master and every worker must hold the one listener"
        );
    }
}

/// Worker-owned reuseport: each worker opened its listener after fork, so
/// the master holds none of them.
#[test]
fn worker_owned_reuseport_strategies_give_each_worker_its_own_listener() {
    for strategy in WORKER_OWNED_REUSEPORT {
        let workers = 2;
        let server = Server::start(strategy, workers, &[]);
        let inodes = listen_inodes(server.port());
        let distinct: BTreeSet<u64> = inodes.iter().copied().collect();
        assert_eq!(
            inodes.len(),
            workers,
            "strategy {strategy}: expected {workers} LISTEN sockets on the port, found {inodes:?}"
        );
        assert_eq!(
            distinct.len(),
            workers,
            "strategy {strategy}: LISTEN inodes are not distinct: {inodes:?}"
        );
        let mut owners = BTreeSet::new();
        for &ino in &distinct {
            let h = holders(&server, ino);
            assert_eq!(
                h.len(),
                1,
                "strategy {strategy}: listener {ino} is held by {h:?}, expected exactly one worker"
            );
            let owner = *h.iter().next().unwrap();
            assert_ne!(
                owner, server.master_pid,
                "strategy {strategy}: the master holds listener {ino}"
            );
            owners.insert(owner);
        }
        let workers_set: BTreeSet<i32> = server.worker_pids.iter().copied().collect();
        assert_eq!(
            owners, workers_set,
            "strategy {strategy}: each worker must hold exactly one of the listeners"
        );
        for &w in &workers_set {
            let held: Vec<u64> = distinct
                .iter()
                .copied()
                .filter(|&i| !fds_holding(w, i).is_empty())
                .collect();
            assert_eq!(
                held.len(),
                1,
                "strategy {strategy}: worker {w} holds listeners {held:?}, expected exactly one"
            );
        }
    }
}

/// The LISTEN sockets on `port` that `pid` holds, one entry per descriptor.
fn listeners_held(pid: i32, port: u16) -> Vec<u64> {
    let listening: BTreeSet<u64> = listen_inodes(port).into_iter().collect();
    socket_fds(pid)
        .into_iter()
        .map(|(_, ino)| ino)
        .filter(|ino| listening.contains(ino))
        .collect()
}

/// Every LISTEN socket `pid` holds, on any port.
fn all_listeners_held(pid: i32) -> Vec<u64> {
    let listening: BTreeSet<u64> = tcp_rows()
        .into_iter()
        .filter(|r| r.state == TCP_LISTEN)
        .map(|r| r.inode)
        .collect();
    socket_fds(pid)
        .into_iter()
        .map(|(_, ino)| ino)
        .filter(|ino| listening.contains(ino))
        .collect()
}

/// Worker `w` holds exactly one listening socket (of any port), and its
/// epoll watches that one, level-triggered; returns its inode.
#[track_caller]
fn the_one_listener_of(w: i32, port: u16, ctx: &str) -> u64 {
    let all = all_listeners_held(w);
    let here = listeners_held(w, port);
    assert!(
        all.len() == 1 && here.len() == 1,
        "{ctx}: worker {w} must hold exactly one listening socket, its own, but holds {all:?} ({here:?} on port {port})"
    );
    let ino = here[0];
    let entries = poll_until(
        &format!("{ctx}: worker {w}'s epoll to watch its listener {ino}"),
        SETTLE_TIMEOUT,
        || {
            let e = epoll_entries_for(w, ino);
            if e.is_empty() {
                Err("no tfd line with that ino".into())
            } else {
                Ok(e)
            }
        },
    );
    for e in entries {
        assert_eq!(
            e.events & (EPOLLET | EPOLLEXCLUSIVE),
            0,
            "{ctx}: worker {w} registers its listener with events {:#x}",
            e.events
        );
    }
    ino
}

/// `reuseport` is nginx's design: the master opened one listener per worker
/// before forking and holds all of them; each worker holds (and polls) its
/// own slot's listener and no other.
#[test]
fn reuseport_master_holds_every_workers_listener_and_each_worker_exactly_its_own() {
    let strategy = "reuseport";
    let workers = 3;
    let server = Server::start(strategy, workers, &[]);
    let port = server.port();
    let inodes: BTreeSet<u64> = listen_inodes(port).into_iter().collect();
    assert_eq!(
        inodes.len(),
        workers,
        "{strategy}: expected {workers} distinct LISTEN sockets on port {port}, found {inodes:?}"
    );
    let mut in_master = listeners_held(server.master_pid, port);
    in_master.sort_unstable();
    assert_eq!(
        in_master,
        inodes.iter().copied().collect::<Vec<_>>(),
        "{strategy}: the master (pid {}) must hold every listener on the port once",
        server.master_pid
    );
    let mut owned = BTreeSet::new();
    for &w in &server.worker_pids {
        let ino = the_one_listener_of(w, port, strategy);
        assert!(
            owned.insert(ino),
            "{strategy}: listener {ino} is held by two workers"
        );
        assert_eq!(
            holders(&server, ino),
            BTreeSet::from([server.master_pid, w]),
            "{strategy}: listener {ino} must be held by the master and worker {w} only"
        );
    }
    assert_eq!(
        owned, inodes,
        "{strategy}: each listener belongs to exactly one worker"
    );
}

/// A worker killed with SIGKILL: with `reuseport` its replacement polls the
/// very socket the dead worker polled (same inode, still the master's), and
/// the group is the same set of sockets; with `reuseport:worker-owned` the
/// dead worker's socket is gone and the replacement opened a new one.
#[test]
fn a_replacement_reuseport_worker_polls_the_same_socket_only_when_the_master_owns_it() {
    for (strategy, same_socket) in [("reuseport", true), ("reuseport:worker-owned", false)] {
        let server = Server::start(strategy, 2, &[]);
        let port = server.port();
        let before: BTreeSet<u64> = listen_inodes(port).into_iter().collect();
        let victim = server.worker_pids[0];
        let survivor = server.worker_pids[1];
        let old = the_one_listener_of(victim, port, strategy);
        kill(victim, SIGKILL).unwrap();
        let new_pid = poll_until(
            &format!("{strategy}: a replacement for {victim}"),
            SETTLE_TIMEOUT,
            || {
                let now = server.live_workers();
                match now.iter().find(|p| **p != survivor && **p != victim) {
                    Some(&p) if now.len() == 2 => Ok(p),
                    _ => Err(format!("live workers {now:?}")),
                }
            },
        );
        poll_until(
            &format!("{strategy}: replacement {new_pid} to listen"),
            SETTLE_TIMEOUT,
            || match listeners_held(new_pid, port).as_slice() {
                [_] => Ok(()),
                other => Err(format!("holds {other:?}")),
            },
        );
        let new = the_one_listener_of(new_pid, port, strategy);
        let after: BTreeSet<u64> = listen_inodes(port).into_iter().collect();
        if same_socket {
            assert_eq!(
                new, old,
                "{strategy}: the replacement {new_pid} must poll the dead worker's socket"
            );
            assert_eq!(after, before, "{strategy}: the group's sockets changed");
            assert_eq!(
                holders(&server, new),
                BTreeSet::from([server.master_pid, new_pid]),
                "{strategy}"
            );
        } else {
            assert_ne!(
                new, old,
                "{strategy}: the replacement opens a socket of its own"
            );
            assert!(
                !after.contains(&old) && after.contains(&new) && after.len() == 2,
                "{strategy}: the dead worker's socket {old} must be gone and {new} listen: {before:?} -> {after:?}"
            );
        }
        assert_eq!(
            get(server.addr, "/").status,
            200,
            "{strategy}: serving after the replacement"
        );
    }
}

#[test]
fn an_open_connection_is_held_by_exactly_one_worker_as_a_cloexec_nonblocking_fd() {
    for strategy in ALL_STRATEGIES {
        let ctx = format!("strategy {strategy}");
        let server = Server::start(strategy, 2, &[]);
        let mut client = Client::connect(server.addr);
        let r = client.get("/", false);
        assert_eq!(r.status, 200, "{ctx}: {r:?}");
        let worker = r.worker();
        let (port, client_port) = (server.port(), client.local_port());
        let inode = poll_until(
            &format!("{ctx}: the server side of the connection in /proc/net/tcp"),
            SETTLE_TIMEOUT,
            || {
                server_side_inode(port, client_port).ok_or_else(|| {
                    format!("no ESTABLISHED row {port} <- {client_port} with an inode")
                })
            },
        );
        // master-pass: the master closes its copy after the worker's ack,
        // so allow a short settle.
        poll_until(
            &format!("{ctx}: connection socket {inode} to be held by worker {worker} alone"),
            SETTLE_TIMEOUT,
            || {
                let h = holders(&server, inode);
                if h == BTreeSet::from([worker]) {
                    Ok(())
                } else {
                    Err(format!("held by {h:?} (master {})", server.master_pid))
                }
            },
        );
        let fds = fds_holding(worker, inode);
        assert_eq!(
            fds.len(),
            1,
            "{ctx}: worker {worker} holds the connection under fds {fds:?}"
        );
        let flags = fd_flags(worker, fds[0])
            .unwrap_or_else(|| panic!("{ctx}: no fdinfo flags for fd {}", fds[0]));
        assert!(
            flags & O_CLOEXEC != 0,
            "{ctx}: connection fd flags 0{flags:o} lack O_CLOEXEC (02000000)"
        );
        assert!(
            flags & O_NONBLOCK != 0,
            "{ctx}: connection fd flags 0{flags:o} lack O_NONBLOCK (04000)"
        );
        // Still a working keep-alive connection after all that.
        assert_eq!(
            client.get("/", true).status,
            200,
            "{ctx}: second request on the connection"
        );
    }
}

#[test]
fn shared_epoll_strategies_register_the_listener_level_triggered_and_only_exclusive_sets_epollexclusive(
) {
    for (strategy, exclusive) in [
        ("shared:epoll", false),
        ("shared:epoll-exclusive", true),
        ("shared:epoll-exclusive-raw", true),
    ] {
        let ctx = format!("strategy {strategy}");
        let server = Server::start(strategy, 3, &[]);
        let listener = single_listener(&server);
        for &w in &server.worker_pids {
            let entries = poll_until(
                &format!("{ctx}: worker {w}'s epoll to watch listener {listener}"),
                SETTLE_TIMEOUT,
                || {
                    let e = epoll_entries_for(w, listener);
                    if e.is_empty() {
                        Err("no tfd line with that ino".into())
                    } else {
                        Ok(e)
                    }
                },
            );
            for e in entries {
                assert_eq!(
                    e.events & EPOLLEXCLUSIVE != 0,
                    exclusive,
                    "{ctx}: worker {w} registers the listener with events {:#x}",
                    e.events
                );
                assert_eq!(
                    e.events & EPOLLET,
                    0,
                    "{ctx}: worker {w} registers the listener edge-triggered (events {:#x})",
                    e.events
                );
                assert_ne!(
                    e.events & 1,
                    0,
                    "{ctx}: worker {w} does not ask for EPOLLIN on the listener (events {:#x})",
                    e.events
                );
            }
        }
    }
}

/// Classic pre-fork: every worker is one thread (no acceptor thread, no
/// event loop: no epoll instance at all), holds the inherited listener with
/// `O_NONBLOCK` off, and sleeps in `accept()` on it while idle (`wchan`).
#[test]
fn prefork_workers_are_single_threaded_and_sleep_in_a_blocking_accept() {
    let strategy = "shared:prefork";
    let server = Server::start(strategy, 3, &[]);
    let listener = single_listener(&server);
    for &w in &server.worker_pids {
        assert_eq!(
            status_field(w, "Threads").as_deref(),
            Some("1"),
            "{strategy}: worker {w} must be one thread"
        );
        let fds = fds_holding(w, listener);
        assert_eq!(fds.len(), 1, "{strategy}: worker {w} holds {fds:?}");
        let flags = fd_flags(w, fds[0]).expect("the listener's fd flags");
        assert_eq!(
            flags & O_NONBLOCK,
            0,
            "{strategy}: worker {w}'s listener is non-blocking"
        );
        let epolls: Vec<(i32, String)> = util::procfs::fd_targets(w)
            .into_iter()
            .filter(|(_, t)| t.contains("eventpoll"))
            .collect();
        assert!(
            epolls.is_empty(),
            "{strategy}: worker {w} has an epoll: {epolls:?}"
        );
        poll_until(
            &format!("{strategy}: worker {w} asleep in accept"),
            SETTLE_TIMEOUT,
            || {
                let wchan = std::fs::read_to_string(format!("/proc/{w}/wchan")).unwrap_or_default();
                // inet_csk_accept, or the wait it sleeps in (kernel versions differ).
                if wchan.contains("accept") || wchan.contains("inet_csk_wait_for_connect") {
                    Ok(())
                } else {
                    Err(format!("wchan {wchan:?}"))
                }
            },
        );
    }
    let r = get(server.addr, "/");
    assert_eq!(r.status, 200, "{strategy}: {r:?}");
}

#[test]
fn shared_accept_mutex_lets_exactly_one_idle_worker_watch_the_listener() {
    let strategy = "shared:accept-mutex";
    let server = Server::start(strategy, 3, &[]);
    let listener = single_listener(&server);
    let watching = || -> BTreeSet<i32> {
        server
            .worker_pids
            .iter()
            .copied()
            .filter(|&w| !epoll_entries_for(w, listener).is_empty())
            .collect()
    };
    const STABLE_READS: usize = 8;
    let mut streak = 0;
    let holder = poll_until(
        "exactly one worker watching the listener for 8 reads in a row",
        Duration::from_secs(15),
        || {
            let w = watching();
            streak = if w.len() == 1 { streak + 1 } else { 0 };
            thread::sleep(Duration::from_millis(30));
            if streak >= STABLE_READS {
                Ok(w)
            } else {
                Err(format!("workers watching: {w:?} (streak {streak})"))
            }
        },
    );
    assert_eq!(holder.len(), 1);
    let r = get(server.addr, "/");
    assert_eq!(r.status, 200, "{strategy}: {r:?}");
}

#[test]
fn reuseport_cbpf_cpu_steers_each_connection_to_the_worker_pinned_to_the_receiving_cpu() {
    let allowed = thread_affinity().unwrap();
    assert!(
        allowed.contains(&0) && allowed.contains(&1),
        "this test needs CPUs 0 and 1 but the test process may only run on {allowed:?}; run it where both are allowed"
    );
    let server = Server::start("reuseport:cbpf-cpu", 2, &[]);
    let addr = server.addr;
    let mut chosen = Vec::new();
    for cpu in [0usize, 1] {
        // Pin a separate thread so the rest of the test process keeps its affinity.
        let answered: Vec<i32> = thread::spawn(move || {
            pin_current_thread_to(cpu)
                .unwrap_or_else(|e| panic!("cannot pin the client thread to CPU {cpu}: {e}"));
            (0..20).map(|_| get(addr, "/").worker()).collect()
        })
        .join()
        .unwrap_or_else(|_| panic!("the client thread on CPU {cpu} failed"));
        let distinct: BTreeSet<i32> = answered.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            1,
            "connections from CPU {cpu} were answered by several workers: {:?}",
            count_by_worker(answered)
        );
        let worker = answered[0];
        assert_eq!(
            status_field(worker, "Cpus_allowed_list").as_deref(),
            Some(cpu.to_string().as_str()),
            "worker {worker} answered connections from CPU {cpu} but is not pinned to it"
        );
        chosen.push(worker);
    }
    assert_ne!(
        chosen[0], chosen[1],
        "CPU 0 and CPU 1 connections went to the same worker"
    );
}
