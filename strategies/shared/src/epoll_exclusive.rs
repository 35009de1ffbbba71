//! `shared:epoll-exclusive`: `shared:epoll` with `EPOLLEXCLUSIVE` (Linux
//! 4.5; nginx's default since 1.11.3).
//!
//! The listener is registered level-triggered with `EPOLLEXCLUSIVE` in every
//! worker's epoll, so a connection wakes one of the waiting epoll instances
//! (or a few), not all of them: far fewer wasted wakeups and `EAGAIN`s than
//! `shared:epoll`. The kernel favours the instance that waited most recently
//! (it is at the head of the wait queue), so at low load one worker takes
//! nearly every connection.
//!
//! Everything else is as in [`crate::epoll`]: the same
//! [`lab_common::intake::ListenerIntake`], here in its
//! [`ListenerWakeup::LevelExclusive`] mode, one `accept4` per wakeup, the
//! listener out of the epoll at `--max-conns`, and on stop the worker's copy
//! closed while the master's keeps the queue for the others.

use std::os::fd::OwnedFd;

use lab_common::intake::ListenerIntake;
use lab_common::strategy::WorkerEnv;
use lab_common::sys::epoll::ListenerWakeup;

/// A `shared:epoll-exclusive` worker's intake for the inherited
/// (non-blocking) listener.
pub fn intake(listener: OwnedFd, env: WorkerEnv) -> ListenerIntake {
    ListenerIntake::new(listener, ListenerWakeup::LevelExclusive, env, false)
}
