//! Stopping a single-threaded process that sleeps in `accept()`: the
//! classic pre-fork worker's stop signal.
//!
//! A pre-fork worker (`shared:prefork`) is one thread that blocks in
//! `accept()` on the inherited listener, with no event loop that could watch
//! a signalfd. Apache's prefork MPM stops such a child gracefully with a
//! signal whose handler (`stop_listening` in `server/mpm/prefork/prefork.c`)
//! closes the child's listening sockets and sets `die_now`; the same is done
//! here. The handler for SIGTERM and SIGINT, installed without
//! `SA_RESTART`, sets a flag and closes the worker's copy of the listener:
//! - a signal that comes while the worker sleeps in `accept()` ends it with
//!   `EINTR`;
//! - a signal that comes just before the worker calls `accept()` leaves it a
//!   closed descriptor, so `accept()` fails with `EBADF` at once instead of
//!   sleeping: no window in which the signal is lost (a do-nothing handler
//!   would have one);
//! - a signal that comes while the worker serves a connection lets it
//!   finish that connection; the flag tells it to end it
//!   ([`StopLatch::stopped`]).
//!
//! Closing the descriptor number in the handler is safe because this thread
//! is the only one and it creates no descriptor between reading the number
//! and calling `accept()` on it. The master keeps its own copy of the
//! listener, so closing the worker's copy loses nothing queued.

use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::SeqCst};

use super::syscall;

/// Set by the handler: the worker was asked to stop.
static STOP: AtomicBool = AtomicBool::new(false);
/// The worker's copy of the listener (-1: closed, by the handler or by
/// [`StopLatch`]'s drop).
static LISTENER: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, SeqCst);
    let fd = LISTENER.swap(-1, SeqCst);
    if fd >= 0 {
        // SAFETY: close is async-signal-safe; the swap took the number out
        // of LISTENER, so nothing closes it twice; the listener is this
        // module's own (see StopLatch::install).
        unsafe { libc::close(fd) };
    }
}

/// The worker's listener and its stop signal; one per process.
pub struct StopLatch {
    _own: (),
}

impl StopLatch {
    /// Takes ownership of the listener, installs the handler for SIGTERM and
    /// SIGINT (without `SA_RESTART`) and unblocks the two signals in this
    /// thread (the master blocks them before it forks). A signal pending
    /// since the fork is delivered here and the latch starts stopped.
    /// Fails if a latch was installed before in this process.
    pub fn install(listener: OwnedFd) -> io::Result<StopLatch> {
        let fd = listener.into_raw_fd();
        if LISTENER.compare_exchange(-1, fd, SeqCst, SeqCst).is_err() {
            // SAFETY: `fd` came from into_raw_fd just above and nothing else owns it.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
            return Err(io::Error::other("a stop latch is installed already"));
        }
        // SAFETY: sigaction is a plain C struct; all-zero is a valid value
        // (empty mask, no flags) that is filled in below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = 0; // no SA_RESTART: a blocked accept() returns EINTR
                             // SAFETY: `action.sa_mask` is a valid sigset_t owned by us.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        for sig in [libc::SIGTERM, libc::SIGINT] {
            // SAFETY: `action` is fully initialised and outlives the call;
            // the handler only does async-signal-safe things (atomics and
            // close); the old action is not wanted (null).
            syscall!(sigaction(sig, &action, std::ptr::null_mut()))?;
        }
        // SAFETY: an all-zero sigset_t is a valid argument for sigemptyset,
        // which initialises it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t owned by us for these calls.
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
        }
        // SAFETY: `set` is initialised; the old mask is not wanted (null).
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(StopLatch { _own: () })
    }

    /// Whether the stop signal came.
    pub fn stopped(&self) -> bool {
        STOP.load(SeqCst)
    }

    /// One blocking `accept4` on the listener (the connection comes back
    /// non-blocking and close-on-exec); `Ok(None)` once the stop signal came
    /// (before the call, or during it).
    pub fn accept(&self) -> io::Result<Option<OwnedFd>> {
        let fd = LISTENER.load(SeqCst);
        if fd < 0 {
            return Ok(None);
        }
        // SAFETY: `fd` is the listener or, if the handler closed it after the
        // load, a closed number (accept4 fails with EBADF): this thread opens
        // no descriptor in between. Null address pointers are allowed.
        let res = syscall!(accept4(
            fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        ));
        match res {
            // SAFETY: accept4 returned a fresh descriptor that nothing else owns.
            Ok(conn) => Ok(Some(unsafe { OwnedFd::from_raw_fd(conn) })),
            Err(_) if self.stopped() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for StopLatch {
    fn drop(&mut self) {
        let fd = LISTENER.swap(-1, SeqCst);
        if fd >= 0 {
            // SAFETY: the swap took the number out of LISTENER (the handler
            // cannot close it too); it is the listener this module owns.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
}
