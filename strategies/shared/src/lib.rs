//! Shared listener, inherited accept: the master creates and listens on one
//! socket before it forks, every worker inherits it, and all workers accept
//! from the same kernel accept queue. One file per mechanism ([`Variant`]):
//! - [`prefork`], `shared:prefork`: classic pre-fork (Stevens, UNP ch. 30;
//!   Apache's prefork MPM): a worker is one thread that blocks in `accept()`
//!   and serves that one connection until it closes, then accepts again, so
//!   N workers serve at most N connections at a time. The kernel queues
//!   blocked acceptors as exclusive waiters and wakes them in FIFO order,
//!   which yields round-robin.
//! - [`blocking_thread`], `shared:blocking-thread` (formerly
//!   `shared:blocking`): the same blocking `accept()`, on an acceptor thread
//!   that hands each connection to the worker's event loop, so a worker
//!   serves many connections at once.
//! - [`epoll`], `shared:epoll`: each worker's own epoll, listener
//!   level-triggered, no exclusivity (Node's `SCHED_NONE`, libuv): every idle
//!   worker wakes for every connection (thundering herd); the losers'
//!   `accept` returns `EAGAIN`.
//! - [`epoll_exclusive`], `shared:epoll-exclusive`: the same with
//!   `EPOLLEXCLUSIVE` (Linux 4.5, nginx's default since 1.11.3): one waiter
//!   wakes, the first idle one in the order they registered, and, as nginx
//!   1.22.1 does, a worker re-adds the listener on its 1st and every 16th
//!   accept (and while backing off under load) to go to the back of that
//!   order. `shared:epoll-exclusive-raw` leaves the kernel's order alone
//!   (nginx before 1.21.6): at low load one worker takes nearly everything.
//! - [`accept_mutex`], `shared:accept-mutex`: nginx's `accept_mutex on`: only
//!   the worker holding a cross-process lock has the listener in its epoll;
//!   the others retry after `accept_mutex_delay`.
//!
//! The two nginx twins follow nginx 1.22.1's code, including its load
//! back-off `ngx_accept_disabled` ([`nginx`] holds that arithmetic); each
//! file lists what it does not copy. The epoll mechanisms are lab-common's
//! listener intake (`lab_common::intake`), which reuseport uses too, in one
//! mode or the other; their files say what is particular to each. This file
//! is the master's side, the same for all: create the listener before fork,
//! and hand it to the worker's intake.
//!
//! When a worker stops (the server stops, or a rolling restart retires it),
//! it stops taking connections without losing any: the epoll variants and
//! the accept mutex take the listener out of the worker's epoll (the mutex
//! is released if held) and close the worker's copy of the descriptor; the
//! blocking-thread variant interrupts its acceptor thread's `accept()` (see
//! [`blocking_thread`]), and a pre-fork worker's stop signal closes its copy
//! of the listener under its `accept()` (see [`prefork`]). The master keeps
//! its own copy of the listener for the whole
//! run, so the one accept queue stays intact and the other workers (and the
//! replacement) take what is queued: nothing is reset.
#![deny(missing_docs)]

pub mod accept_mutex;
pub mod blocking_thread;
pub mod epoll;
pub mod epoll_exclusive;
pub mod nginx;
pub mod prefork;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use lab_common::listen::{listen, local_addr, ListenOptions};
use lab_common::stats::Shared;
use lab_common::strategy::{ServerConfig, Strategy, WorkerEnv};
use lab_common::worker;

/// Which way the workers take connections from the shared listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Classic pre-fork: blocking `accept()`, one connection at a time.
    Prefork,
    /// Blocking `accept()` on an acceptor thread in every worker.
    BlockingThread,
    /// Level-triggered epoll, every worker woken.
    Epoll,
    /// Level-triggered epoll with `EPOLLEXCLUSIVE`, reordered as nginx 1.22.1
    /// does.
    EpollExclusive,
    /// Level-triggered epoll with `EPOLLEXCLUSIVE`, never reordered.
    EpollExclusiveRaw,
    /// nginx's accept mutex, with its `accept_mutex_delay`.
    AcceptMutex {
        /// How long a worker without the lock waits before trying again.
        delay: Duration,
    },
}

/// The shared-listener strategy.
pub struct SharedListener {
    variant: Variant,
    listener: Option<OwnedFd>,
}

impl SharedListener {
    /// A shared-listener strategy of the given variant.
    pub fn new(variant: Variant) -> Self {
        SharedListener {
            variant,
            listener: None,
        }
    }
}

impl Strategy for SharedListener {
    fn prepare(&mut self, config: &ServerConfig, _shared: Shared) -> io::Result<SocketAddr> {
        // O_NONBLOCK lives on the open file description that every worker
        // inherits: blocking accept needs it off, the epoll variants on.
        let nonblocking = !matches!(self.variant, Variant::Prefork | Variant::BlockingThread);
        let socket = listen(
            config.listen,
            ListenOptions {
                reuse_port: false,
                nonblocking,
                backlog: config.backlog,
            },
        )?;
        let addr = local_addr(&socket)?;
        self.listener = Some(socket.into());
        Ok(addr)
    }

    fn worker_fds(&self) -> Vec<RawFd> {
        self.listener.iter().map(|l| l.as_raw_fd()).collect()
    }

    fn worker_main(&mut self, env: WorkerEnv, control: UnixStream) -> io::Result<()> {
        // The child's copy of the strategy owns the inherited descriptor:
        // move it into the intake (no dup: the worker holds exactly one).
        let listener = self
            .listener
            .take()
            .ok_or_else(|| io::Error::other("listener not prepared"))?;
        match self.variant {
            Variant::Prefork => prefork::run(listener, env, control),
            Variant::BlockingThread => worker::run(
                env,
                blocking_thread::BlockingIntake::new(listener, env),
                control,
            ),
            Variant::Epoll => worker::run(env, epoll::intake(listener, env), control),
            Variant::EpollExclusive => {
                worker::run(env, epoll_exclusive::intake(listener, env), control)
            }
            Variant::EpollExclusiveRaw => {
                worker::run(env, epoll_exclusive::raw_intake(listener, env), control)
            }
            Variant::AcceptMutex { delay } => worker::run(
                env,
                accept_mutex::AcceptMutexIntake::new(listener, env, delay),
                control,
            ),
        }
    }
}
