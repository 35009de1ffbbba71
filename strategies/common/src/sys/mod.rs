//! The operating system, fenced off.
//!
//! Every `unsafe` block of the lab's servers lives under this module, each with
//! a `// SAFETY:` comment. The rest of the code calls the safe functions here
//! and holds file descriptors as `OwnedFd`/`BorrowedFd`, never bare integers
//! that someone must remember to close.

pub mod bpf;
pub mod ebpf;
pub mod epoll;
pub mod fdpass;
pub mod fds;
pub mod interrupt;
pub mod process;
pub mod shm;
pub mod stop_latch;

/// Calls a libc function and turns `-1` into `io::Error::last_os_error()`.
macro_rules! syscall {
    ($fn: ident ( $($arg: expr),* $(,)? ) ) => {{
        #[allow(unused_unsafe)]
        // SAFETY: the caller's own SAFETY comment covers the arguments.
        let res = unsafe { libc::$fn($($arg, )*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
pub(crate) use syscall;
