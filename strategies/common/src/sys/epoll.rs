//! Raw `epoll_ctl` on a mio `Poll`'s epoll instance.
//!
//! mio registers every source edge-triggered (`EPOLLET`). The shared-listener
//! strategies must reproduce what Node (libuv) and nginx do with a listening
//! socket instead: a *level-triggered* registration, optionally with
//! `EPOLLEXCLUSIVE` (Linux 4.5). So those strategies add the listener to the
//! worker's one epoll instance themselves, with the flags they need, and a
//! token in `data` that mio hands back as `Event::token()` (mio's epoll
//! selector reads `epoll_event.u64` as the token).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::syscall;

/// How a listener is registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerWakeup {
    /// Level-triggered, every waiting epoll instance is woken (thundering herd).
    LevelAll,
    /// Level-triggered with `EPOLLEXCLUSIVE`: the kernel wakes one (or a few)
    /// of the epoll instances that wait on this file, not all.
    LevelExclusive,
}

impl ListenerWakeup {
    /// The `epoll_event.events` mask for this kind of registration.
    pub fn events(self) -> u32 {
        let base = libc::EPOLLIN as u32;
        match self {
            ListenerWakeup::LevelAll => base,
            ListenerWakeup::LevelExclusive => base | libc::EPOLLEXCLUSIVE as u32,
        }
    }
}

/// Adds `fd` to the epoll instance `epoll` with the given wakeup mode.
pub fn add(
    epoll: BorrowedFd<'_>,
    fd: BorrowedFd<'_>,
    mode: ListenerWakeup,
    token: usize,
) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events: mode.events(),
        u64: token as u64,
    };
    // SAFETY: both fds are valid for the duration of the call (borrowed), and
    // `event` is a valid, initialised epoll_event that outlives the call.
    syscall!(epoll_ctl(
        epoll.as_raw_fd(),
        libc::EPOLL_CTL_ADD,
        fd.as_raw_fd(),
        &mut event
    ))?;
    Ok(())
}

/// Removes `fd` from the epoll instance `epoll`.
pub fn delete(epoll: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    // A non-null event pointer keeps kernels before 2.6.9 happy; it is ignored.
    let mut event = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: both fds are valid for the duration of the call (borrowed), and
    // `event` is a valid epoll_event that outlives the call.
    syscall!(epoll_ctl(
        epoll.as_raw_fd(),
        libc::EPOLL_CTL_DEL,
        fd.as_raw_fd(),
        &mut event
    ))?;
    Ok(())
}

/// The epoll instance behind a mio `Poll`.
pub fn poll_fd(poll: &mio::Poll) -> BorrowedFd<'_> {
    // SAFETY: the Poll owns this epoll descriptor (mio's `AsRawFd` for Poll
    // returns its epoll fd) and outlives the borrow.
    unsafe { BorrowedFd::borrow_raw(poll.as_raw_fd()) }
}
