//! The worker protocol, the same for every strategy: keep-alive, the
//! `cpu_us`/`sleep_us`/`bytes` query, 400 and 404, and a sleeping request
//! that does not block the worker's other connections.

mod util;

use std::time::{Duration, Instant};

use util::procfs::{accept_queue, listen_inodes, tcp_connections_of};
use util::*;

#[test]
fn keep_alive_serves_many_requests_on_one_connection_until_connection_close() {
    for strategy in ALL_STRATEGIES {
        let ctx = format!("strategy {strategy}");
        let server = Server::start(strategy, 2, &[]);
        let mut c = Client::connect(server.addr);
        let first = c.get("/", false);
        assert_eq!(
            (first.status, first.body.as_slice()),
            (200, &b"ok"[..]),
            "{ctx}: {first:?}"
        );
        for i in 1..5 {
            let r = c.get("/", false);
            assert_eq!(
                r.status, 200,
                "{ctx}: request {i} on the kept-alive connection -> {r:?}"
            );
            assert_eq!(
                r.worker(),
                first.worker(),
                "{ctx}: one connection must stay with one worker"
            );
        }
        let last = c.get("/", true);
        assert_eq!(
            last.status, 200,
            "{ctx}: the Connection: close request -> {last:?}"
        );
        c.expect_closed();
    }
}

#[test]
fn query_parameters_shape_the_response_and_bad_ones_get_400() {
    let cases: &[(&str, u16, Option<usize>)] = &[
        ("/?bytes=100000", 200, Some(100_000)),
        ("/?bytes=0", 200, Some(0)),
        ("/?cpu_us=1000&sleep_us=1000&bytes=10", 200, Some(10)),
        ("/?sleep_us=1000", 200, None),
        ("/?colour=blue", 400, None),
        ("/?bytes=ten", 400, None),
        ("/?cpu_us=-1", 400, None),
        ("/?sleep_us=1.5", 400, None),
        ("/nope", 404, None),
        ("/index.html", 404, None),
    ];
    for strategy in ALL_STRATEGIES {
        let server = Server::start(strategy, 2, &[]);
        for &(target, status, len) in cases {
            let r = get(server.addr, target);
            assert_eq!(
                r.status, status,
                "strategy {strategy}: GET {target} -> {r:?}"
            );
            if let Some(n) = len {
                assert_eq!(
                    r.body.len(),
                    n,
                    "strategy {strategy}: GET {target} body length"
                );
            }
            r.worker();
        }
    }
}

#[test]
fn sleep_us_and_cpu_us_delay_the_response_by_at_least_that_long() {
    // Lower bounds only: the request must not be answered before the work is
    // done; how much later depends on the machine and is not checked. The
    // worker is otherwise idle, so its timer must fire even while it waits
    // for new connections.
    for strategy in ALL_STRATEGIES {
        let server = Server::start(strategy, 1, &[]);
        for target in ["/?sleep_us=150000", "/?cpu_us=150000"] {
            let t = Instant::now();
            let r = get(server.addr, target);
            let took = t.elapsed();
            assert_eq!(r.status, 200, "strategy {strategy}: GET {target} -> {r:?}");
            assert!(
                took >= Duration::from_millis(150),
                "strategy {strategy}: GET {target} answered after only {took:?}"
            );
        }
    }
}

/// Every strategy but classic pre-fork (see the next test).
#[test]
fn a_sleeping_request_does_not_block_the_workers_other_connections() {
    for strategy in ALL_STRATEGIES
        .into_iter()
        .filter(|s| *s != "shared:prefork")
    {
        let ctx = format!("strategy {strategy}");
        // One worker, so the second connection must go to the sleeping one.
        let server = Server::start(strategy, 1, &[]);
        let mut sleeper = Client::connect(server.addr);
        // 30 s is longer than any hang guard here, so the answer to the
        // second connection cannot be explained by the sleep having ended.
        sleeper.send_get("/?sleep_us=30000000", true);
        let r = get(server.addr, "/");
        assert_eq!(r.status, 200, "{ctx}: the second connection -> {r:?}");
        assert_eq!(
            r.worker(),
            server.worker_pids[0],
            "{ctx}: answered by another process"
        );
        assert!(
            !sleeper.anything_readable_now(),
            "{ctx}: the sleeping request was answered (or closed) early"
        );
    }
}

/// Classic pre-fork is the opposite: its one worker serves the sleeping
/// connection to its end before it accepts the next, so the second client's
/// answer comes only after the first's, from the same process, and while it
/// waits the worker holds one connection (the other is in the kernel's queue).
#[test]
fn a_prefork_worker_serves_one_connection_to_its_end_before_the_next() {
    let server = Server::start("shared:prefork", 1, &[]);
    let worker = server.worker_pids[0];
    let mut sleeper = Client::connect(server.addr);
    sleeper.send_get("/?sleep_us=1500000", true);
    let mut second = Client::connect(server.addr);
    second.send_get("/", true);
    poll_until(
        "the worker to hold the sleeping connection",
        SETTLE_TIMEOUT,
        || match tcp_connections_of(worker) {
            1 => Ok(()),
            n => Err(format!("it holds {n}")),
        },
    );
    assert_eq!(
        tcp_connections_of(worker),
        1,
        "the worker took the second connection while serving the first"
    );
    let listener = listen_inodes(server.addr.port());
    assert_eq!(listener.len(), 1, "one shared listener: {listener:?}");
    assert_eq!(
        accept_queue(listener[0]),
        Some(1),
        "the second connection waits in the kernel's accept queue"
    );
    let r = second
        .read_response()
        .expect("the second connection is answered once the first has closed");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.worker(), worker);
    // The first was answered before the second: its answer is waiting.
    assert!(
        sleeper.anything_readable_now(),
        "the second connection was answered before the sleeping one"
    );
    let r = sleeper
        .read_response()
        .expect("the sleeping request's answer");
    assert_eq!(r.status, 200, "{r:?}");
}
