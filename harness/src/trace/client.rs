//! The trace's client: one `GET /` with `Connection: close` per connection,
//! read to its end, timed on `CLOCK_MONOTONIC` (the clock of the tracefs
//! instance) so that what the kernel did can be matched to the connection
//! that caused it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

use super::herd::Window;

fn now_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// One connection; its local address (which names it in a trace) and when
/// it connected, wrote and was answered.
pub fn get(addr: &str) -> Result<Window, String> {
    let tid = nix::unistd::gettid().as_raw();
    let connect_ns = now_ns();
    let mut s = TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let local = s.local_addr().map_err(|e| e.to_string())?.to_string();
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: trace\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let wrote_ns = now_ns();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| format!("no answer from {addr}: {e}"))?;
    if !buf.starts_with(b"HTTP/1.") {
        return Err(format!("{addr} did not answer with HTTP"));
    }
    Ok(Window {
        client: local,
        tid,
        connect_ns,
        wrote_ns,
        done_ns: now_ns(),
    })
}

/// `n` connections at once, one thread each; the burst's windows.
pub fn burst(addr: &str, n: usize) -> Result<Vec<Window>, String> {
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let a = addr.to_string();
            std::thread::spawn(move || get(&a))
        })
        .collect();
    let mut out = Vec::new();
    for t in threads {
        out.push(t.join().map_err(|_| "a burst connection panicked")??);
    }
    Ok(out)
}
