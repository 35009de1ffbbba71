//! What one accept-queue sample costs: 1000 NETLINK_SOCK_DIAG queries of
//! the listeners on a port against 20 reads of `/proc/net/tcp{,6}`, wall
//! time and this thread's user and system CPU. A measurement, not a test:
//! its numbers are in `harness/src/measure/sockdiag.rs`, with how the
//! TIME_WAIT sockets that make `/proc/net/tcp` expensive were made.
//!
//! `cargo run --release -p harness --example sockdiag_cost [PORT]`
//! (default: a listener opened here).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use harness::measure::kernel::listen_rows;
use harness::measure::sockdiag::SockDiag;
use nix::sys::resource::{getrusage, UsageWho};

fn cpu() -> (Duration, Duration) {
    let u = getrusage(UsageWho::RUSAGE_THREAD).expect("getrusage");
    let d =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    (d(u.user_time()), d(u.system_time()))
}

fn time(what: &str, f: &mut dyn FnMut()) {
    let (t0, (u0, s0)) = (Instant::now(), cpu());
    f();
    let (u1, s1) = cpu();
    println!(
        "{what}: {:?} wall, {:?} user, {:?} sys",
        t0.elapsed(),
        u1 - u0,
        s1 - s0
    );
}

fn main() {
    let own = TcpListener::bind("127.0.0.1:0").expect("a listener on loopback");
    let port = match std::env::args().nth(1) {
        Some(p) => p.parse().unwrap_or_else(|_| {
            eprintln!("sockdiag_cost: {p:?} is not a port number");
            std::process::exit(2)
        }),
        None => own.local_addr().expect("its address").port(),
    };
    let lines = std::fs::read_to_string("/proc/net/tcp")
        .map(|t| t.lines().count())
        .unwrap_or(0);
    let mut diag = SockDiag::open().unwrap_or_else(|e| {
        eprintln!("sockdiag_cost: cannot open NETLINK_SOCK_DIAG: {e}");
        std::process::exit(1)
    });
    println!("{lines} lines in /proc/net/tcp, port {port}");
    time("1000 sock_diag samples", &mut || {
        for _ in 0..1000 {
            diag.listeners(port).expect("a sock_diag query");
        }
    });
    time("20 /proc/net/tcp{,6} samples", &mut || {
        for _ in 0..20 {
            for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
                listen_rows(&std::fs::read_to_string(f).unwrap_or_default(), port);
            }
        }
    });
    println!("listeners: {:?}", diag.listeners(port));
}
