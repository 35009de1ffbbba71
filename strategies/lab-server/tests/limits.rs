//! The limits that keep slow and idle clients from holding a worker:
//! `--header-timeout`, `--keepalive-timeout`, `--max-conns`, and the request
//! head size limit. Real binaries, real sockets; normal load from `loadgen`.

mod util;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use util::load::{errors, ok, Load};
use util::procfs::tcp_connections_of;
use util::sys::{kill, SIGCONT, SIGSTOP};
use util::*;

const SHORT: [&str; 4] = ["--header-timeout", "300ms", "--keepalive-timeout", "300ms"];

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Reads until the server closes (EOF or reset); returns what it sent.
#[track_caller]
fn read_until_closed(s: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("{what}: the server did not close the connection: {e}"),
        }
    }
}

/// 300 idle connections and 20 slowloris connections (a byte every 100 ms,
/// never a whole head) against one worker with 300 ms limits: loadgen's
/// requests are all served meanwhile, the server closes every idle
/// connection (EOF, nothing sent) and answers every slowloris one with 408,
/// and the worker's descriptor table has no connection left afterwards.
#[test]
fn idle_and_slowloris_connections_are_closed_and_do_not_stop_a_worker_serving_others() {
    for strategy in [
        "shared:epoll",
        "shared:blocking-thread",
        "master-pass",
        "reuseport",
    ] {
        let ctx = format!("strategy {strategy}");
        let mut server = Server::start(strategy, 1, &SHORT);
        let worker = server.worker_pids[0];
        let addr = server.addr;
        let before = tcp_connections_of(worker);
        assert_eq!(before, 0, "{ctx}: the idle worker holds connections");

        let load = Load::start(
            addr,
            Duration::from_secs(2),
            &["--mode", "close", "--rate", "100", "--connections", "8"],
        );
        let mut idle: Vec<TcpStream> = (0..300).map(|_| connect(addr)).collect();
        let slow = thread::spawn(move || {
            let head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".to_vec();
            let mut socks: Vec<(TcpStream, usize, bool)> =
                (0..20).map(|_| (connect(addr), 0, false)).collect();
            let deadline = Instant::now() + Duration::from_secs(20);
            // A byte every 100 ms on each, until the server stops reading.
            while socks.iter().any(|(_, _, done)| !done) && Instant::now() < deadline {
                for (s, sent, done) in socks.iter_mut().filter(|(_, _, d)| !d) {
                    let byte = head.get(*sent).copied().unwrap_or(b'a');
                    if s.write_all(&[byte]).is_err() {
                        *done = true;
                        continue;
                    }
                    *sent += 1;
                    s.set_nonblocking(true).unwrap();
                    let mut b = [0u8; 1];
                    let readable =
                        !matches!(s.peek(&mut b), Err(ref e) if e.kind() == ErrorKind::WouldBlock);
                    s.set_nonblocking(false).unwrap();
                    *done = readable;
                }
                thread::sleep(Duration::from_millis(100));
            }
            socks
                .into_iter()
                .map(|(mut s, sent, _)| (read_until_closed(&mut s, "slowloris"), sent))
                .collect::<Vec<_>>()
        });

        for (i, s) in idle.iter_mut().enumerate() {
            let got = read_until_closed(s, &format!("{ctx}: idle connection {i}"));
            assert!(got.is_empty(), "{ctx}: idle connection {i} got {got:?}");
        }
        for (i, (got, sent)) in slow.join().unwrap().into_iter().enumerate() {
            let text = String::from_utf8_lossy(&got);
            assert!(
                text.starts_with("HTTP/1.1 408 "),
                "{ctx}: slowloris connection {i} (sent {sent} bytes) got {text:?}"
            );
        }
        let result = load.finish();
        assert_eq!(
            (ok(&result), errors(&result)),
            (200, 0),
            "{ctx}: loadgen's requests while the slow clients were there: {}",
            result["errors"]
        );
        poll_until(
            &format!("{ctx}: worker {worker} to hold no connection"),
            SETTLE_TIMEOUT,
            || match tcp_connections_of(worker) {
                0 => Ok(()),
                n => Err(format!("{n} TCP connections in /proc/{worker}/fd")),
            },
        );
        assert_eq!(server.live_workers(), BTreeSet::from([worker]), "{ctx}");
        server.stop();
        server.assert_nothing_left_running();
    }
}

#[test]
fn an_incomplete_head_gets_408_and_an_idle_keep_alive_connection_is_closed() {
    for strategy in ALL_STRATEGIES {
        let ctx = format!("strategy {strategy}");
        let mut server = Server::start(strategy, 2, &SHORT);
        // Half a head, then nothing: 408 after the header timeout.
        let mut c = connect(server.addr);
        c.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .unwrap();
        let got = String::from_utf8_lossy(&read_until_closed(&mut c, &ctx)).into_owned();
        assert!(got.starts_with("HTTP/1.1 408 "), "{ctx}: got {got:?}");
        assert!(got.contains("Connection: close"), "{ctx}: got {got:?}");
        // A keep-alive connection after its response: closed when idle.
        let mut k = Client::connect(server.addr);
        assert_eq!(k.get("/", false).status, 200, "{ctx}");
        k.expect_closed();
        // A fresh connection that sends nothing: closed without a word.
        let mut n = connect(server.addr);
        assert!(read_until_closed(&mut n, &ctx).is_empty(), "{ctx}");
        server.stop();
        server.assert_nothing_left_running();
    }
}

#[test]
fn a_request_head_over_16_kib_gets_400_and_one_under_it_is_served() {
    for strategy in ["shared:epoll", "master-pass", "reuseport"] {
        let ctx = format!("strategy {strategy}");
        let mut server = Server::start(strategy, 1, &[]);
        let request = |header: usize| {
            let mut v =
                b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Big: ".to_vec();
            v.resize(v.len() + header, b'a');
            v.extend_from_slice(b"\r\n\r\n");
            v
        };
        let mut c = connect(server.addr);
        c.write_all(&request(15 * 1024)).unwrap();
        let got = String::from_utf8_lossy(&read_until_closed(&mut c, &ctx)).into_owned();
        assert!(
            got.starts_with("HTTP/1.1 200 "),
            "{ctx}: a 15 KiB header: {got:?}"
        );
        match send_bad_input(server.addr, &request(16 * 1024 + 1), false) {
            BadInputOutcome::Answered(r) => {
                assert_eq!(r.status, 400, "{ctx}: {r:?}");
                assert!(r.says_close(), "{ctx}: {r:?}");
            }
            other => panic!("{ctx}: an oversized head must be answered 400: {other:?}"),
        }
        server.stop();
        server.assert_nothing_left_running();
    }
}

/// Opens `n` idle connections (nothing sent) to `addr`.
fn idle_connections(addr: SocketAddr, n: usize) -> Vec<Client> {
    (0..n).map(|_| Client::connect(addr)).collect()
}

/// Sends a request on every connection and checks every one is answered,
/// while no worker ever holds more than `cap` connections.
#[track_caller]
fn all_served_within_cap(server: &Server, clients: &mut [Client], cap: usize, ctx: &str) {
    for c in clients.iter_mut() {
        c.send_get("/", true);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        for w in server.live_workers() {
            let held = tcp_connections_of(w);
            assert!(
                held <= cap,
                "{ctx}: worker {w} holds {held} connections (cap {cap})"
            );
        }
        let r = c
            .read_response()
            .unwrap_or_else(|| panic!("{ctx}: connection {i} closed without an answer"));
        assert_eq!(r.status, 200, "{ctx}: connection {i}: {r:?}");
    }
}

/// `--max-conns 50`, 2 workers on one shared epoll listener, 80 idle
/// connections: neither worker ever holds more than 50, all 80 are taken,
/// and all are served. One worker is frozen while they arrive, so that the
/// other surely reaches its cap (and must leave the rest to the queue).
#[test]
fn max_conns_caps_each_shared_epoll_worker_and_every_connection_is_served() {
    let ctx = "shared:epoll --max-conns 50";
    let dir = TempDir::new("maxconns");
    let stats_path = dir.path().join("stats.json");
    let mut server = Server::start(
        "shared:epoll",
        2,
        &[
            "--max-conns",
            "50",
            "--stats-out",
            stats_path.to_str().unwrap(),
        ],
    );
    let (a, b) = (server.worker_pids[0], server.worker_pids[1]);
    kill(b, SIGSTOP).unwrap();
    let mut clients = idle_connections(server.addr, 80);
    poll_until(
        &format!("{ctx}: worker {a} to take 50"),
        SETTLE_TIMEOUT,
        || match tcp_connections_of(a) {
            50 => Ok(()),
            n => Err(format!("worker {a} holds {n}")),
        },
    );
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        tcp_connections_of(a),
        50,
        "{ctx}: worker {a} went past its cap"
    );
    kill(b, SIGCONT).unwrap();
    poll_until(&format!("{ctx}: all 80 taken"), SETTLE_TIMEOUT, || {
        let (na, nb) = (tcp_connections_of(a), tcp_connections_of(b));
        assert!(
            na <= 50 && nb <= 50,
            "{ctx}: {a} holds {na}, {b} holds {nb}"
        );
        if na + nb == 80 {
            Ok(())
        } else {
            Err(format!("{a} holds {na}, {b} holds {nb}"))
        }
    });
    all_served_within_cap(&server, &mut clients, 50, ctx);
    server.stop();
    let stats = read_stats(&stats_path);
    assert!(
        sum_over_workers(&stats, "max_conns_pauses") >= 1,
        "{ctx}: the capped worker must count its pause: {stats}"
    );
    assert_eq!(sum_over_workers(&stats, "requests"), 80, "{ctx}: {stats}");
}

/// One worker, `--max-conns 20`, 35 connections: the worker holds 20, the
/// other 15 wait (in the kernel's queue, or in the master for master-pass
/// with acks; `master-pass:pipelined`'s master leaves them in the kernel's
/// queue, its credit window being the cap)
/// and are served as the first ones close. Every strategy whose mechanism
/// lets the worker decline a connection (not rotate or least-conn).
/// `shared:prefork` holds one connection at a time whatever the cap: its
/// worker takes 1 and the other 34 wait in the kernel's queue.
#[test]
fn at_max_conns_a_lone_worker_takes_no_more_and_the_rest_wait_to_be_served() {
    for strategy in ALL_STRATEGIES
        .into_iter()
        .filter(|s| !matches!(*s, "master-pass:rotate" | "master-pass:least-conn"))
    {
        let ctx = format!("strategy {strategy} --max-conns 20");
        let cap = if strategy == "shared:prefork" { 1 } else { 20 };
        let mut server = Server::start(strategy, 1, &["--max-conns", "20"]);
        let worker = server.worker_pids[0];
        let mut clients = idle_connections(server.addr, 35);
        poll_until(
            &format!("{ctx}: the worker to take {cap}"),
            SETTLE_TIMEOUT,
            || match tcp_connections_of(worker) {
                n if n == cap => Ok(()),
                n => Err(format!("it holds {n}")),
            },
        );
        thread::sleep(Duration::from_millis(300));
        assert_eq!(tcp_connections_of(worker), cap, "{ctx}: past the cap");
        all_served_within_cap(&server, &mut clients, cap, &ctx);
        server.stop();
        server.assert_nothing_left_running();
    }
}
