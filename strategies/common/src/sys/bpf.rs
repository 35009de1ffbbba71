//! Attaching a classic BPF program to a `SO_REUSEPORT` group.
//!
//! `SO_ATTACH_REUSEPORT_CBPF` installs a program that runs for each new
//! connection and returns the index of the listener (in the order the sockets
//! joined the group) that gets it; an index out of range makes the kernel fall
//! back to its hash. The program is built by the reuseport strategy; this
//! module only hands it to the kernel.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::syscall;

/// One classic BPF instruction (`struct sock_filter`).
pub type Instruction = libc::sock_filter;

/// Attaches `program` to the reuseport group of `socket`.
pub fn attach_reuseport_cbpf(socket: BorrowedFd<'_>, program: &[Instruction]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| io::Error::other("BPF program too long"))?,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prog points at `program`, which outlives the call; the kernel
    // copies the instructions and does not write through the pointer.
    syscall!(setsockopt(
        socket.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_ATTACH_REUSEPORT_CBPF,
        (&prog as *const libc::sock_fprog).cast(),
        std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
    ))?;
    Ok(())
}
