//! An intake that accepts from a listening socket the worker polls itself:
//! `shared:epoll`, `shared:epoll-exclusive` and every `reuseport` worker.
//!
//! The listener is registered *level-triggered* in the worker's epoll (as
//! libuv and nginx do) and the worker calls `accept4` once per wakeup (nginx
//! with `multi_accept off`). With a listener shared by several workers and no
//! `EPOLLEXCLUSIVE`, every waiting worker wakes for each connection and all
//! but one find the queue empty: those `EAGAIN`s are counted.
//!
//! The listener leaves the worker's epoll while the worker is at
//! `--max-conns` (the others take the shared queue; a reuseport listener's own
//! queue waits), and for [`RESOURCE_BACKOFF`] after `accept4` ran out of
//! descriptors or memory (the connection stays queued; nginx does the same
//! with its accept events), so a level-triggered listener cannot spin.
//!
//! Stopping ([`Intake::stop`]) depends on who else holds the listener:
//! - shared, and master-owned `reuseport` (`drain_on_stop == false`): the
//!   listener is removed from the epoll and the worker's copy of the
//!   descriptor is closed. The master keeps its copy, so the queue stays
//!   intact for the other workers (shared) or for the slot's next worker
//!   (reuseport, whose master keeps each slot's listener).
//! - worker-owned reuseport (`drain_on_stop == true`): the listener is this
//!   worker's alone, and closing it resets every connection still in its
//!   accept queue.
//!   So `stop` first accepts everything queued (`accept4` until `EAGAIN`;
//!   those connections are served), then closes it, which removes it from
//!   the `SO_REUSEPORT` group. A connection whose handshake completes between
//!   the last `accept4` and the close lands in the closing socket's queue and
//!   is reset by the kernel, unless `net.ipv4.tcp_migrate_req=1` (Linux
//!   5.14), with which the kernel migrates it (and half-open ones) to another
//!   listener of the group (TcpExt `TCPMigrateReqSuccess`).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::Poll;

use crate::config::WorkerEnv;
use crate::stats::WorkerCounters;
use crate::strategy::{Accepted, Intake, INTAKE_TOKEN_BASE};
use crate::sys::epoll::{self, poll_fd, ListenerWakeup};
use crate::sys::fds::{accept4, AcceptFailure};

/// The listener's token in the worker's epoll.
pub const LISTENER: usize = INTAKE_TOKEN_BASE;

/// How long a worker leaves the listener alone after `accept4` failed for
/// lack of descriptors or memory.
pub const RESOURCE_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts one connection from `listener`, counting an empty queue.
/// Returns `None` when a connection went to `out`, else why not. Errors that
/// concern only the connection being accepted (it was reset before we took
/// it, or we are out of descriptors for a moment) are not fatal to the
/// worker; [`AcceptFailure::Resources`] is said on stderr.
pub fn accept_one(
    listener: BorrowedFd<'_>,
    counters: &WorkerCounters,
    out: &mut Vec<Accepted>,
) -> io::Result<Option<AcceptFailure>> {
    match accept4(listener) {
        Ok(fd) => {
            out.push(Accepted { fd, tag: None });
            Ok(None)
        }
        Err(e) => {
            let failure = AcceptFailure::of(&e);
            match failure {
                AcceptFailure::Empty => WorkerCounters::bump(&counters.accept_eagain),
                AcceptFailure::Retry => {}
                AcceptFailure::Resources => eprintln!(
                    "lab-server: worker {}: accept: {e}; not accepting for {RESOURCE_BACKOFF:?}",
                    std::process::id()
                ),
                AcceptFailure::Fatal => return Err(e),
            }
            Ok(Some(failure))
        }
    }
}

/// Level-triggered listener in the worker's own epoll.
pub struct ListenerIntake {
    /// `None` once stopped (the descriptor is closed).
    listener: Option<OwnedFd>,
    mode: ListenerWakeup,
    env: WorkerEnv,
    drain_on_stop: bool,
    registered: bool,
    paused: bool,
    backoff_until: Option<Instant>,
}

impl ListenerIntake {
    /// Wraps a listening socket (non-blocking) with the given wakeup mode.
    /// `drain_on_stop`: the listener is this worker's alone (worker-owned
    /// reuseport), so stopping accepts what is queued before it closes it.
    pub fn new(
        listener: OwnedFd,
        mode: ListenerWakeup,
        env: WorkerEnv,
        drain_on_stop: bool,
    ) -> Self {
        ListenerIntake {
            listener: Some(listener),
            mode,
            env,
            drain_on_stop,
            registered: false,
            paused: false,
            backoff_until: None,
        }
    }

    /// Takes the listener out of the epoll and adds it back with the same
    /// mode: one `EPOLL_CTL_DEL` and one `EPOLL_CTL_ADD`, which with
    /// `EPOLLEXCLUSIVE` puts this worker at the back of the kernel's queue of
    /// exclusive waiters (nginx's `ngx_reorder_accept_events`; see
    /// `strategies/shared/src/epoll_exclusive.rs`). Returns whether it did:
    /// not while the listener is out of the epoll (paused, backing off,
    /// stopped).
    pub fn re_add(&mut self, poll: &Poll) -> io::Result<bool> {
        let Some(listener) = self.listener.as_ref().filter(|_| self.registered) else {
            return Ok(false);
        };
        epoll::delete(poll_fd(poll), listener.as_fd())?;
        self.registered = false;
        epoll::add(poll_fd(poll), listener.as_fd(), self.mode, LISTENER)?;
        self.registered = true;
        Ok(true)
    }

    /// Puts the listener in the epoll or takes it out, as the state says.
    fn sync(&mut self, poll: &Poll) -> io::Result<()> {
        let Some(listener) = self.listener.as_ref() else {
            return Ok(());
        };
        let want = !self.paused && self.backoff_until.is_none();
        if want != self.registered {
            if want {
                epoll::add(poll_fd(poll), listener.as_fd(), self.mode, LISTENER)?;
            } else {
                epoll::delete(poll_fd(poll), listener.as_fd())?;
            }
            self.registered = want;
        }
        Ok(())
    }
}

impl Intake for ListenerIntake {
    fn register(&mut self, poll: &Poll, control: UnixStream) -> io::Result<Option<UnixStream>> {
        self.sync(poll)?;
        Ok(Some(control))
    }

    fn before_poll(&mut self, poll: &Poll) -> io::Result<Option<Duration>> {
        match self.backoff_until {
            Some(until) if Instant::now() < until => {
                Ok(Some(until.saturating_duration_since(Instant::now())))
            }
            Some(_) => {
                self.backoff_until = None;
                self.sync(poll)?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    fn on_event(&mut self, _event: &Event, poll: &Poll, out: &mut Vec<Accepted>) -> io::Result<()> {
        let Some(listener) = self.listener.as_ref().filter(|_| self.registered) else {
            return Ok(());
        };
        WorkerCounters::bump(&self.env.counters.listener_wakeups);
        if accept_one(listener.as_fd(), self.env.counters, out)? == Some(AcceptFailure::Resources) {
            self.backoff_until = Some(Instant::now() + RESOURCE_BACKOFF);
            self.sync(poll)?;
        }
        Ok(())
    }

    fn set_paused(&mut self, poll: &Poll, paused: bool) -> io::Result<()> {
        self.paused = paused;
        self.sync(poll)
    }

    fn stop(&mut self, poll: &Poll, out: &mut Vec<Accepted>) -> io::Result<()> {
        let Some(listener) = self.listener.take() else {
            return Ok(());
        };
        if std::mem::take(&mut self.registered) {
            epoll::delete(poll_fd(poll), listener.as_fd())?;
        }
        if self.drain_on_stop {
            // Beyond --max-conns if need be: serving them beats resetting them.
            while let None | Some(AcceptFailure::Retry) =
                accept_one(listener.as_fd(), self.env.counters, out)?
            {}
        }
        drop(listener);
        Ok(())
    }

    fn quiesced(&self) -> bool {
        self.listener.is_none()
    }
}
