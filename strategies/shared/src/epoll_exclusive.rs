//! `shared:epoll-exclusive`: `shared:epoll` with `EPOLLEXCLUSIVE` (Linux
//! 4.5; nginx's default since 1.11.3), as nginx 1.22.1 runs it; and
//! `shared:epoll-exclusive-raw`, the same without nginx's reordering (the
//! kernel's behaviour alone, as nginx 1.11.3-1.21.5 ran it).
//!
//! The listener is registered level-triggered with `EPOLLEXCLUSIVE` in every
//! worker's epoll, so a connection wakes one of the waiting epoll instances
//! (or a few), not all of them: far fewer wasted wakeups and `EAGAIN`s than
//! `shared:epoll`. The kernel keeps the exclusive waiters in the order they
//! added the listener and wakes the first idle one, so left alone (`-raw`)
//! the worker that registered first takes nearly every connection at low
//! load.
//!
//! nginx 1.21.6 and later fight that in `ngx_reorder_accept_events` (end of
//! `ngx_event_accept`), which this intake copies (the arithmetic is in
//! [`crate::nginx`]): after a worker's 1st, 17th, 33rd... successful accept,
//! and after every accept while `ngx_accept_disabled > 0` (more than 7/8 of
//! `--max-conns` open), the worker deletes the listener from its epoll and
//! adds it again (`EPOLL_CTL_DEL` + `EPOLL_CTL_ADD` with `EPOLLEXCLUSIVE`),
//! which moves it to the back of the queue. Counted: `listener_reorders`,
//! and `accept_disabled_turns` for the accepts made while backing off. An
//! accept that finds the queue empty does not count and does not reorder.
//! nginx uses `ngx_accept_disabled` for nothing else in this mode (it counts
//! it down only under the accept mutex), so neither does the twin.
//!
//! Known differences from nginx 1.22.1:
//! - `ngx_accept_disabled` counts client connections against `--max-conns`;
//!   nginx counts its listener and master channel as used too (see
//!   [`crate::nginx`]).
//! - At `--max-conns` the worker takes the listener out of its epoll until a
//!   connection closes (and adds it back then, to the back of the queue);
//!   nginx keeps accepting and closes what it has no connection for
//!   ("worker_connections are not enough").
//! - nginx uses `EPOLLEXCLUSIVE` (and reorders) only with more than one
//!   worker; the twin does with one too.
//!
//! Everything else is as in [`crate::epoll`]: the same
//! [`lab_common::intake::ListenerIntake`], here in its
//! [`ListenerWakeup::LevelExclusive`] mode, one `accept4` per wakeup, the
//! listener out of the epoll at `--max-conns`, and on stop the worker's copy
//! closed while the master's keeps the queue for the others.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use lab_common::intake::ListenerIntake;
use lab_common::stats::WorkerCounters;
use lab_common::strategy::{Accepted, Intake, WorkerEnv};
use lab_common::sys::epoll::ListenerWakeup;
use mio::event::Event;
use mio::Poll;

use crate::nginx;

/// A `shared:epoll-exclusive-raw` worker's intake for the inherited
/// (non-blocking) listener: `EPOLLEXCLUSIVE`, never reordered.
pub fn raw_intake(listener: OwnedFd, env: WorkerEnv) -> ListenerIntake {
    ListenerIntake::new(listener, ListenerWakeup::LevelExclusive, env, false)
}

/// A `shared:epoll-exclusive` worker's intake: the raw one plus nginx's
/// reordering.
pub fn intake(listener: OwnedFd, env: WorkerEnv) -> ReorderingIntake {
    ReorderingIntake {
        inner: raw_intake(listener, env),
        env,
        accepts: 0,
    }
}

/// The listener intake with nginx's `ngx_reorder_accept_events`.
pub struct ReorderingIntake {
    inner: ListenerIntake,
    env: WorkerEnv,
    /// Successful accepts so far (nginx's `ls->connection->requests`).
    accepts: u64,
}

impl Intake for ReorderingIntake {
    fn register(&mut self, poll: &Poll, control: UnixStream) -> io::Result<Option<UnixStream>> {
        self.inner.register(poll, control)
    }

    fn before_poll(&mut self, poll: &Poll) -> io::Result<Option<Duration>> {
        self.inner.before_poll(poll)
    }

    fn on_event(&mut self, event: &Event, poll: &Poll, out: &mut Vec<Accepted>) -> io::Result<()> {
        let before = out.len();
        self.inner.on_event(event, poll, out)?;
        if out.len() == before {
            return Ok(()); // EAGAIN or an error: nginx returns before reordering
        }
        // Open before this accept: the loop's count plus what this wakeup
        // already handed over and the loop has not registered yet.
        let open = self.env.counters.open_connections.load(Relaxed) as usize + before;
        let disabled = nginx::accept_disabled(self.env.max_conns.max(1), open);
        let accepts_before = self.accepts;
        self.accepts += 1;
        if disabled > 0 {
            WorkerCounters::bump(&self.env.counters.accept_disabled_turns);
        }
        if nginx::reorders(accepts_before, disabled) && self.inner.re_add(poll)? {
            WorkerCounters::bump(&self.env.counters.listener_reorders);
        }
        Ok(())
    }

    fn after_events(&mut self, poll: &Poll) -> io::Result<()> {
        self.inner.after_events(poll)
    }

    fn set_paused(&mut self, poll: &Poll, paused: bool) -> io::Result<()> {
        self.inner.set_paused(poll, paused)
    }

    fn stop(&mut self, poll: &Poll, out: &mut Vec<Accepted>) -> io::Result<()> {
        self.inner.stop(poll, out)
    }

    fn quiesced(&self) -> bool {
        self.inner.quiesced()
    }
}
