//! Interrupting a thread blocked in a system call (`accept`) with a signal.
//!
//! `shared:blocking-thread`'s acceptor thread sleeps in `accept()` on the shared
//! listener. To stop it without leaving a connection accepted behind the
//! worker's back, the worker sends the thread [`WAKE_SIGNAL`] with
//! `pthread_kill`; the signal's handler does nothing and is installed without
//! `SA_RESTART`, so the blocked `accept()` returns `EINTR` instead of being
//! restarted, and the thread sees its stop flag. A signal that lands just
//! before the thread enters `accept()` is lost, so the sender repeats it
//! until the thread says it has stopped.

use std::io;
use std::sync::Once;

/// The signal used to interrupt a blocked thread.
pub const WAKE_SIGNAL: libc::c_int = libc::SIGUSR1;

extern "C" fn do_nothing(_: libc::c_int) {}

/// Installs the do-nothing handler for [`WAKE_SIGNAL`] (once per process),
/// without `SA_RESTART`. The handler is process-wide: a SIGUSR1 sent to the
/// whole worker from outside is ignored instead of killing it (an
/// `epoll_wait` it interrupts returns `EINTR` and is called again).
pub fn install_wake_handler() -> io::Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        // SAFETY: sigaction is a plain C struct; all-zero is a valid value
        // (empty mask, no flags) that is filled in below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = do_nothing as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = 0; // no SA_RESTART: blocked calls return EINTR
                             // SAFETY: `action.sa_mask` is a valid sigset_t owned by us.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: `action` is fully initialised and outlives the call; the
        // handler is async-signal-safe (it does nothing); the old action is
        // not wanted (null).
        if unsafe { libc::sigaction(WAKE_SIGNAL, &action, std::ptr::null_mut()) } == -1 {
            result = Err(io::Error::last_os_error());
        }
    });
    result
}

/// A thread that can be sent [`WAKE_SIGNAL`].
#[derive(Clone, Copy, Debug)]
pub struct ThreadHandle(libc::pthread_t);

impl ThreadHandle {
    /// The calling thread.
    pub fn current() -> ThreadHandle {
        // SAFETY: pthread_self has no preconditions and cannot fail.
        ThreadHandle(unsafe { libc::pthread_self() })
    }

    /// Sends [`WAKE_SIGNAL`] to the thread.
    ///
    /// Only call this while the thread is known to be running (not joined):
    /// a `pthread_t` of a thread that has been joined may be reused.
    pub fn wake(self) -> io::Result<()> {
        // SAFETY: the caller guarantees the thread has not been joined, so
        // the handle names a live (possibly exiting) thread; pthread_kill
        // takes no pointers. The handler is installed (see
        // install_wake_handler), so the signal cannot kill the process.
        let rc = unsafe { libc::pthread_kill(self.0, WAKE_SIGNAL) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    }
}
