//! The serving path is as lean as a real server's: a keep-alive request costs
//! one `recvfrom` and one `sendto` in the worker (nginx makes one read and
//! one write), no read that only returns `EAGAIN`, so that the strategies'
//! differences in CPU per request come from how connections are shared and
//! not from our serving code. Counted with strace on the real worker.
//!
//! Needs strace (scripts/test installs it).

mod util;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use util::*;

const REQUESTS: usize = 100;

/// `strace -f` on `pid`, recvfrom and sendto only, into `out`; returns once
/// strace says it is attached. Stopped with SIGINT by [`finish`].
fn trace(pid: i32, out: &std::path::Path) -> Child {
    let mut child = Command::new("strace")
        .args(["-f", "-e", "trace=recvfrom,sendto", "-o"])
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

/// What the worker did, per call.
#[derive(Debug, Default)]
struct Calls {
    reads_with_data: usize,
    reads_eagain: usize,
    reads_eof: usize,
    writes: usize,
}

fn finish(mut strace: Child, out: &std::path::Path) -> Calls {
    util::sys::kill(strace.id() as i32, libc::SIGINT).unwrap();
    strace.wait().unwrap();
    let text = std::fs::read_to_string(out).unwrap();
    // The connection is the descriptor the requests came in on (master-pass
    // workers also write their acknowledgements to the master's channel).
    let fd_of = |line: &str, call: &str| -> Option<String> {
        let rest = &line[line.find(call)? + call.len()..];
        Some(rest.split(',').next()?.to_string())
    };
    let conn_fd = text
        .lines()
        .find(|l| l.contains("recvfrom(") && l.contains("GET / HTTP/1.1"))
        .and_then(|l| fd_of(l, "recvfrom("))
        .expect("a recvfrom of a request in the trace");
    let mut c = Calls::default();
    for line in text.lines() {
        let result = line.rsplit_once(" = ").map(|(_, r)| r.trim());
        if fd_of(line, "recvfrom(").as_ref() == Some(&conn_fd) {
            match result {
                Some(r) if r.starts_with("-1 EAGAIN") => c.reads_eagain += 1,
                Some("0") => c.reads_eof += 1,
                Some(_) => c.reads_with_data += 1,
                None => {}
            }
        } else if fd_of(line, "sendto(").as_ref() == Some(&conn_fd) {
            c.writes += 1;
        }
    }
    c
}

#[test]
fn a_keep_alive_request_costs_one_recvfrom_and_one_sendto() {
    for strategy in ["reuseport", "master-pass", "shared:epoll-exclusive"] {
        let dir = TempDir::new("syscalls");
        let out = dir.path().join("strace.txt");
        let mut server = Server::start(strategy, 1, &["--keepalive-timeout", "60s"]);
        let strace = trace(server.worker_pids[0], &out);
        let mut c = Client::connect(server.addr);
        for _ in 0..REQUESTS {
            assert_eq!(c.get("/", false).status, 200);
        }
        drop(c);
        // Time for the worker to read the close (at most one read of end of
        // stream; not counted if it comes later).
        std::thread::sleep(std::time::Duration::from_millis(200));
        let calls = finish(strace, &out);
        let ctx = format!("{strategy}: {calls:?}");
        assert_eq!(calls.writes, REQUESTS, "{ctx}");
        assert_eq!(calls.reads_with_data, REQUESTS, "{ctx}");
        // The first read may come before the request does (right after the
        // accept or the hand-over); after that, never a read for nothing.
        assert!(calls.reads_eagain <= 1, "{ctx}");
        assert!(calls.reads_eof <= 1, "{ctx}");
        server.stop();
        server.assert_nothing_left_running();
    }
}

#[test]
fn a_fin_right_behind_the_request_is_read_at_once_not_left_to_the_keep_alive_timeout() {
    let server = Server::start("reuseport", 1, &["--keepalive-timeout", "60s"]);
    for _ in 0..5 {
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        // Request and FIN in one go: the worker's read sees the bytes with
        // the FIN behind them; it must answer and then close, well before
        // the 60 s keep-alive timeout (the read below gives up at 15 s).
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut all = Vec::new();
        let r = std::io::Read::read_to_end(&mut s, &mut all);
        assert!(
            r.is_ok(),
            "the server kept the half-closed connection open: {r:?}"
        );
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }
}
