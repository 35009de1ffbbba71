//! A server that misbehaves costs requests, not the run: garbage responses
//! and refused connections are counted and reported; only a target that
//! never accepts ends the run with an error.

mod util;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use util::{
    argv, errors, guard, read_result, run, timeline_adding_up, uint, warning_kinds, Loadgen,
    Server, TempDir,
};

const GARBAGE: &[u8] = b"SSH-2.0-nope\r\n";
const VALID: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Worker: 1\r\nConnection: close\r\n\r\nok";

/// What the flaky server answered.
#[derive(Debug, Default, Clone, Copy)]
struct Answered {
    garbage: u64,
    valid: u64,
}

/// A one-thread server on `127.0.0.1:0` that reads each request and answers
/// every other one with bytes that are not HTTP, the rest with a valid
/// `Connection: close` response, closing the connection after each answer.
struct FlakyServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Answered>>,
}

impl FlakyServer {
    fn start() -> FlakyServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = thread::spawn(move || {
            let mut answered = Answered::default();
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &mut answered),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) => panic!("accept failed: {e}"),
                }
            }
            answered
        });
        FlakyServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Answered {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("flaky server panicked")
    }
}

impl Drop for FlakyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Reads one request head, then answers it (garbage or valid, alternating)
/// and closes. A connection that closes without a request (loadgen's probe)
/// is not answered and not counted.
fn serve(mut stream: TcpStream, answered: &mut Answered) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    // Alternate, garbage first: garbage whenever both counts are level.
    let garbage = answered.garbage == answered.valid;
    // The whole request was read, so closing sends a FIN, not an RST.
    if stream
        .write_all(if garbage { GARBAGE } else { VALID })
        .is_ok()
    {
        if garbage {
            answered.garbage += 1;
        } else {
            answered.valid += 1;
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

#[test]
fn garbage_responses_are_counted_as_malformed_and_the_run_goes_on() {
    let server = FlakyServer::start();
    let dir = TempDir::new("garbage");
    let json = dir.file("run.json");
    let target = server.addr.to_string();
    let out = run(
        &argv(&format!(
            "--target {target} --mode close -c 2 -d 1s --json {json}"
        )),
        guard(Duration::from_secs(1)),
    )
    .assert_success();
    let answered = server.stop();
    let r = read_result(&json);

    let (ok, malformed) = (uint(&r, "ok"), uint(&r, "errors.malformed"));
    let context = format!("server answered {answered:?}; errors {:?}", errors(&r));
    assert!(malformed > 0, "no malformed response counted; {context}");
    assert!(ok > 0, "no valid response counted; {context}");
    assert_eq!(ok, answered.valid, "ok vs valid answers; {context}");
    assert_eq!(
        malformed, answered.garbage,
        "malformed vs garbage answers; {context}"
    );
    // Every failure is in the timeline, in the slice the request was sent in.
    let t = timeline_adding_up(&r);
    let in_slices: u64 = t
        .iter()
        .map(|s| s.errors.get("malformed").copied().unwrap_or(0))
        .sum();
    assert_eq!(in_slices, malformed, "malformed in the timeline; {context}");
    assert!(
        warning_kinds(&r).iter().any(|k| k == "errors"),
        "no `errors` warning in {}",
        r["warnings"]
    );
    assert!(
        out.stdout.contains("warning"),
        "the summary must say that requests failed:\n{}",
        out.stdout
    );
}

#[test]
fn a_server_killed_mid_run_costs_refused_connections_and_the_run_ends_on_its_own() {
    let mut server = Server::start("shared:epoll", 2);
    let dir = TempDir::new("killed");
    let json = dir.file("run.json");
    let target = server.target();
    let lg = Loadgen::spawn(&argv(&format!(
        "--target {target} --mode close -c 2 -d 3s --json {json} --quiet"
    )));
    thread::sleep(Duration::from_millis(1200));
    server.kill_now();
    lg.finish(guard(Duration::from_secs(3))).assert_success();
    let r = read_result(&json);

    let context = format!("errors {:?}", errors(&r));
    assert!(
        uint(&r, "ok") > 0,
        "requests before the kill succeeded; {context}"
    );
    assert!(
        uint(&r, "errors.refused") > 0,
        "connections after the kill must be counted as refused; {context}"
    );
    // Close mode: every refused connect carried a request, so it is in the
    // slice of that request, and the slices add up to the totals.
    timeline_adding_up(&r);
    assert_eq!(uint(&r, "idle_connect_errors"), 0, "{context}");
    assert!(
        warning_kinds(&r).iter().any(|k| k == "errors"),
        "no `errors` warning in {}",
        r["warnings"]
    );
}

#[test]
fn a_target_that_never_accepts_ends_the_run_with_one_error_line_and_no_result_file() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = TempDir::new("refused");
    let json = dir.file("run.json");
    let target = format!("127.0.0.1:{port}");
    let out = run(
        &argv(&format!("--target {target} -d 2s --json {json}")),
        guard(Duration::from_secs(2)),
    );
    let line = out.assert_one_line_error();
    assert!(line.contains("refused"), "message: {line}");
    assert!(
        dir.entries().is_empty(),
        "a failed run must leave no file behind: {:?}",
        dir.entries()
    );
}
