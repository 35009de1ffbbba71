//! An intake that accepts from a listening socket the worker polls itself:
//! `shared:epoll`, `shared:epoll-exclusive` and every `reuseport` worker.
//!
//! The listener is registered *level-triggered* in the worker's epoll (as
//! libuv and nginx do) and the worker calls `accept4` once per wakeup (nginx
//! with `multi_accept off`). With a listener shared by several workers and no
//! `EPOLLEXCLUSIVE`, every waiting worker wakes for each connection and all
//! but one find the queue empty: those `EAGAIN`s are counted.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use mio::event::Event;
use mio::Poll;

use crate::stats::WorkerCounters;
use crate::sys::epoll::{self, poll_fd, ListenerWakeup};
use crate::sys::fds::{accept4, AcceptFailure};
use crate::worker::{Accepted, Intake, WorkerEnv, INTAKE_TOKEN_BASE};

/// The listener's token in the worker's epoll.
pub const LISTENER: usize = INTAKE_TOKEN_BASE;

/// Accepts one connection from `listener`, counting an empty queue.
/// Errors that concern only the connection being accepted (it was reset
/// before we took it, or we are out of descriptors for a moment) are not
/// fatal to the worker.
pub fn accept_one(
    listener: BorrowedFd<'_>,
    counters: &WorkerCounters,
    out: &mut Vec<Accepted>,
) -> io::Result<()> {
    match accept4(listener) {
        Ok(fd) => out.push(Accepted { fd, tag: None }),
        Err(e) => match AcceptFailure::of(&e) {
            AcceptFailure::Empty => WorkerCounters::bump(&counters.accept_eagain),
            AcceptFailure::Retry => {}
            AcceptFailure::Resources => {
                eprintln!("lab-server: worker {}: accept: {e}", std::process::id())
            }
            AcceptFailure::Fatal => return Err(e),
        },
    }
    Ok(())
}

/// Level-triggered listener in the worker's own epoll.
pub struct ListenerIntake {
    listener: OwnedFd,
    mode: ListenerWakeup,
    env: WorkerEnv,
    registered: bool,
}

impl ListenerIntake {
    /// Wraps a listening socket (non-blocking) with the given wakeup mode.
    pub fn new(listener: OwnedFd, mode: ListenerWakeup, env: WorkerEnv) -> Self {
        ListenerIntake {
            listener,
            mode,
            env,
            registered: false,
        }
    }
}

impl Intake for ListenerIntake {
    fn register(&mut self, poll: &Poll, control: UnixStream) -> io::Result<Option<UnixStream>> {
        epoll::add(poll_fd(poll), self.listener.as_fd(), self.mode, LISTENER)?;
        self.registered = true;
        Ok(Some(control))
    }

    fn on_event(
        &mut self,
        _event: &Event,
        _poll: &Poll,
        out: &mut Vec<Accepted>,
    ) -> io::Result<()> {
        WorkerCounters::bump(&self.env.counters.listener_wakeups);
        accept_one(self.listener.as_fd(), self.env.counters, out)
    }

    fn stop(&mut self, poll: &Poll) -> io::Result<()> {
        if std::mem::take(&mut self.registered) {
            epoll::delete(poll_fd(poll), self.listener.as_fd())?;
        }
        Ok(())
    }
}
