//! File descriptor housekeeping: accept4, close-all-but, descriptor flags.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::syscall;

/// `accept4(listener, SOCK_NONBLOCK | SOCK_CLOEXEC)`.
///
/// Both flags are set atomically by the kernel on the new descriptor, instead
/// of `accept` + two `fcntl` calls: no window in which a concurrent fork/exec
/// could inherit the fd, and two fewer syscalls per connection (libuv and
/// nginx do the same). Whether the call itself blocks depends on the
/// listener's own `O_NONBLOCK`.
pub fn accept4(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: the listener fd is valid for the call; null address pointers
    // are allowed by accept4(2) when the peer address is not wanted.
    let fd = syscall!(accept4(
        listener.as_raw_fd(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
    ))?;
    // SAFETY: accept4 returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Why `accept4` returned no connection, as a server must treat it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptFailure {
    /// The queue is empty (`EAGAIN`): another process took the connection,
    /// or there was none.
    Empty,
    /// Only that one connection is lost, or the call was interrupted
    /// (`ECONNABORTED`, `EPROTO`, `EINTR`): call accept again.
    Retry,
    /// Out of descriptors or memory for a moment (`EMFILE`, `ENFILE`,
    /// `ENOBUFS`, `ENOMEM`): the connection stays queued; say so and back off.
    Resources,
    /// Anything else: the listener itself is broken.
    Fatal,
}

impl AcceptFailure {
    /// Classifies an error of [`accept4`].
    pub fn of(e: &std::io::Error) -> AcceptFailure {
        if e.kind() == io::ErrorKind::WouldBlock {
            return AcceptFailure::Empty;
        }
        match e.raw_os_error() {
            Some(libc::ECONNABORTED | libc::EPROTO | libc::EINTR) => AcceptFailure::Retry,
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                AcceptFailure::Resources
            }
            _ => AcceptFailure::Fatal,
        }
    }
}

/// Closes every descriptor of this process except stdin/stdout/stderr and
/// those in `keep`.
///
/// A freshly forked worker inherits the master's whole descriptor table: its
/// epoll instance, its signalfd, the other workers' channels and, for
/// master-pass, the listener. A worker must hold only what its strategy gives
/// it (the tests read `/proc/PID/fd` to check exactly that), so it sweeps the
/// table right after fork. Only call this in a single-threaded child before it
/// creates anything of its own.
pub fn close_all_except(keep: &[RawFd]) -> io::Result<()> {
    let keep: HashSet<RawFd> = keep.iter().copied().collect();
    // Collect first: closing while iterating would close the directory's fd.
    let mut open = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        if let Some(fd) = entry?
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<RawFd>().ok())
        {
            open.push(fd);
        }
    }
    for fd in open {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing a descriptor number is always memory-safe; the
            // objects that owned these fds belong to the master's stack frames,
            // which the child never returns to (it leaves with `_exit`). EBADF
            // for the read_dir fd, already closed, is expected and ignored.
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// Sets or clears `O_NONBLOCK` on the open file description behind `fd`.
///
/// The flag lives on the file description, so it is shared with every process
/// that holds a copy (inherited or passed with SCM_RIGHTS).
pub fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
    // SAFETY: fd is valid for the call; F_GETFL takes no pointer.
    let flags = syscall!(fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
    let flags = if nonblocking {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: fd is valid for the call; F_SETFL takes an int.
    syscall!(fcntl(fd.as_raw_fd(), libc::F_SETFL, flags))?;
    Ok(())
}
