//! `shared:epoll`: every worker polls the inherited listener in its own
//! epoll, level-triggered, without exclusivity (Node's `SCHED_NONE`, libuv).
//!
//! A connection in the shared accept queue makes the listener readable in
//! every epoll instance that holds it, so every idle worker wakes for every
//! connection (the thundering herd). Each calls `accept4` once per wakeup
//! (nginx's `multi_accept off`); one gets the connection, and the others find
//! the queue empty: their `EAGAIN`s are counted (`accept_eagain`), as are the
//! wakeups (`listener_wakeups`).
//!
//! The intake is the listener intake this mechanism shares with
//! `shared:epoll-exclusive` and reuseport,
//! [`lab_common::intake::ListenerIntake`], in its [`ListenerWakeup::LevelAll`]
//! mode. At `--max-conns` (and for a moment after `accept4` ran out of
//! descriptors) the worker takes the listener out of its epoll and the other
//! workers take the queue. Stopping takes it out for good and closes the
//! worker's copy of the descriptor; the master keeps its copy, so the queue
//! stays intact for the other workers.

use std::os::fd::OwnedFd;

use lab_common::intake::ListenerIntake;
use lab_common::strategy::WorkerEnv;
use lab_common::sys::epoll::ListenerWakeup;

/// A `shared:epoll` worker's intake for the inherited (non-blocking) listener.
pub fn intake(listener: OwnedFd, env: WorkerEnv) -> ListenerIntake {
    ListenerIntake::new(listener, ListenerWakeup::LevelAll, env, false)
}
