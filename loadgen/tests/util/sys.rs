//! Every libc call the tests make, fenced off here so the rest of the test
//! code has no `unsafe`: as mio does, one module holds the system calls, each
//! `unsafe` block with its reason, and the rest calls its safe functions.

use std::io;

pub use libc::{SIGCONT, SIGKILL, SIGSTOP, SIGTERM};

/// Sends `sig` to the single process `pid`.
///
/// `pid` must be positive: 0 and negative values would signal whole process
/// groups (the test runner included), which a test must never do.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    assert!(
        pid > 0,
        "refusing to signal pid {pid}: only a single positive pid is allowed"
    );
    // SAFETY: kill(2) has no memory-safety preconditions; pid > 0 names one process.
    let r = unsafe { libc::kill(pid, sig) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
