//! `shared:prefork`: classic pre-fork. Each worker is one thread that blocks
//! in `accept()` on the inherited listener, serves that one connection until
//! it closes, then accepts again (Stevens, *UNIX Network Programming* vol. 1,
//! ch. 30, "TCP preforked server, no locking around accept"; Apache's prefork
//! MPM; the sync workers of gunicorn and unicorn). N workers serve at most N
//! connections at a time: a keep-alive client beyond the N-th waits in the
//! accept queue until a served connection closes.
//!
//! A process blocked in `accept()` sleeps on the listener's wait queue as an
//! exclusive waiter; the kernel wakes exactly one per connection, the one that
//! has waited longest (FIFO), so new connections rotate over the idle workers.
//!
//! # What it copies of Apache 2.4's prefork MPM, and where it differs
//!
//! Copied (`child_main` in `server/mpm/prefork/prefork.c`, and what strace of
//! Apache 2.4.71's children shows here): one listener, so no poll before the
//! accept and no accept mutex (Linux defines
//! `SINGLE_LISTEN_UNSERIALIZED_ACCEPT`); a blocking `accept4` on a listener
//! whose `O_NONBLOCK` is off; the whole connection, every keep-alive request
//! on it, served before the next accept; a graceful stop that closes the
//! child's copy of the listener from the signal handler (see
//! `lab_common::sys::stop_latch`) and lets the connection in hand finish.
//!
//! Differs: the connection is served by the lab's own request code
//! (`lab_common::conn`, the same for every strategy) on a non-blocking socket
//! that waits in `poll(2)` for input, output or its deadline, where Apache
//! reads with its own timeouts; Apache's lingering close after a response
//! with `Connection: close` (`shutdown(SHUT_WR)`, then up to 2 s of reads) is
//! the lab's `LINGER` after an error only; the stop is SIGTERM (Apache's
//! graceful stop is SIGUSR1/SIGWINCH through the parent's pipe of death).
//!
//! # Stopping
//!
//! SIGTERM or SIGINT closes the worker's copy of the listener: sleeping in
//! `accept()`, the worker wakes with `EINTR` (or `EBADF`) and exits; serving
//! a connection, it marks it closing (`Connection: close` on the next
//! response, an idle one closed after `conn::STOP_IDLE_GRACE`), finishes it
//! within `worker::DRAIN_GRACE`, and exits. The master keeps its copy of the
//! listener, so what is queued stays for the other workers.
//!
//! # At `--max-conns`
//!
//! Never reached: a worker holds one connection at a time whatever the cap.

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use lab_common::channel::Frame;
use lab_common::conn::{Conn, Next, State};
use lab_common::strategy::WorkerEnv;
use lab_common::sys::fds::AcceptFailure;
use lab_common::sys::stop_latch::StopLatch;
use lab_common::worker::DRAIN_GRACE;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// Runs one pre-fork worker to its end: until the stop signal, or until the
/// master is gone (its parent-death signal).
pub fn run(listener: OwnedFd, env: WorkerEnv, mut control: UnixStream) -> io::Result<()> {
    let latch = StopLatch::install(listener)?;
    // Ready: about to block in accept() (the listener is the worker's from
    // here on; a stop signal from now on is seen).
    // (`write_all` retries a write the stop signal interrupts.)
    control.write_all(&Frame::Ready.encode())?;
    let mut stop_seen = false;
    loop {
        if latch.stopped() {
            break;
        }
        let fd = match latch.accept() {
            Ok(Some(fd)) => fd,
            Ok(None) => break,
            Err(e) => match AcceptFailure::of(&e) {
                AcceptFailure::Retry | AcceptFailure::Empty => continue,
                AcceptFailure::Resources => {
                    // Out of descriptors for a moment: the connection stays
                    // queued for another worker; back off as the others do.
                    eprintln!("lab-server: worker {}: accept: {e}", env.pid);
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    continue;
                }
                AcceptFailure::Fatal => return Err(e),
            },
        };
        env.counters.connections.fetch_add(1, Relaxed);
        env.counters.open_connections.fetch_add(1, Relaxed);
        let served = serve(fd, &env, &latch, &mut stop_seen, &mut control);
        env.counters.open_connections.fetch_sub(1, Relaxed);
        served?;
    }
    if !stop_seen {
        control.write_all(&Frame::Draining.encode())?;
    }
    Ok(())
}

/// Serves one connection to its end: read, answer, repeat while keep-alive
/// holds, waiting in `poll(2)` for the socket or the connection's deadline.
fn serve(
    fd: OwnedFd,
    env: &WorkerEnv,
    latch: &StopLatch,
    stop_seen: &mut bool,
    control: &mut UnixStream,
) -> io::Result<()> {
    let std_stream = std::net::TcpStream::from(fd);
    // As in every worker: responses go out in one write.
    let _ = std_stream.set_nodelay(true);
    let mut conn = Conn::new(mio::net::TcpStream::from_std(std_stream), None);
    let mut stopping_since: Option<Instant> = None;
    let mut next = conn.drive(env);
    loop {
        if latch.stopped() && stopping_since.is_none() {
            stopping_since = Some(Instant::now());
            conn.set_closing();
            if !*stop_seen {
                *stop_seen = true;
                control.write_all(&Frame::Draining.encode())?;
            }
        }
        match next {
            Ok(Next::Wait) => {}
            // A failed read or write ends this connection, not the worker.
            Ok(Next::Close) | Err(_) => return Ok(()),
        }
        let now = Instant::now();
        let due = conn.deadline(&env.timeouts);
        let mut until = due;
        if let Some(since) = stopping_since {
            let end = since + DRAIN_GRACE;
            if now >= end {
                return Ok(());
            }
            until = Some(until.map_or(end, |u| u.min(end)));
        }
        let events = match conn.state() {
            State::Writing => PollFlags::POLLOUT,
            State::Sleeping => PollFlags::empty(),
            State::Idle | State::Lingering => PollFlags::POLLIN,
        };
        let timeout = match until {
            None => PollTimeout::NONE,
            Some(at) => {
                // Rounded up: a wait that ends a little early would only spin.
                let ms = at.saturating_duration_since(now).as_micros().div_ceil(1000);
                PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(conn.stream.as_fd(), events)];
        let ready = match poll(&mut fds, timeout) {
            Ok(n) => n,
            // The stop signal: seen at the top of the loop.
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        next = if ready > 0 && !revents.is_empty() {
            if revents.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                // poll is level-triggered: a FIN after a short read raises
                // POLLIN again, so the end of stream is read at once.
                conn.on_readable(revents.contains(PollFlags::POLLHUP));
            }
            conn.drive(env)
        } else if due.is_some_and(|at| Instant::now() >= at) {
            conn.on_deadline(env)
        } else {
            Ok(Next::Wait)
        };
    }
}
