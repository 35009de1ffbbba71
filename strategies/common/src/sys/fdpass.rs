//! Passing file descriptors over an `AF_UNIX` stream socket (`SCM_RIGHTS`).
//!
//! This is how Node.js cluster's master hands an accepted connection to a
//! worker: one `sendmsg()` carrying a small message and, as ancillary data,
//! the descriptor. A stream socket needs at least one data byte for the
//! control message to ride on. The receiver asks for `MSG_CMSG_CLOEXEC`:
//! close-on-exec is a property of the descriptor, not of the open file
//! description, so it does not travel and must be set on arrival (atomically,
//! rather than with a racy `fcntl` afterwards). `O_NONBLOCK` lives on the file
//! description and does travel.

use std::io::{self, IoSlice};
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::syscall;

/// The most descriptors one message carries: `master-pass:pipelined`
/// batches up to this many into one `sendmsg`; every other policy sends one.
/// Bounded so that the receiver's control buffer is small and fixed.
pub const MAX_FDS_PER_MESSAGE: usize = 16;

/// The most descriptors one `recv_with_fds` call can take. Unix stream
/// sockets never merge two messages that both carry descriptors into one
/// read, and no message carries more than [`MAX_FDS_PER_MESSAGE`], so a read
/// never needs more room; a peer that sent more would have the rest cut off
/// (`MSG_CTRUNC`, counted by the worker), not crash it.
pub const MAX_FDS_PER_READ: usize = MAX_FDS_PER_MESSAGE;

/// Sends `data` with `fd` attached, in one `sendmsg`.
///
/// Returns the number of data bytes sent; the descriptor went with the first
/// byte if the count is non-zero. `MSG_NOSIGNAL`: a dead worker is reported as
/// `EPIPE`, not by killing the master with SIGPIPE.
pub fn send_with_fd(socket: BorrowedFd<'_>, data: &[u8], fd: BorrowedFd<'_>) -> io::Result<usize> {
    send_with_fds(socket, data, &[fd])
}

/// Sends `data` with every descriptor of `fds` attached (one `SCM_RIGHTS`
/// control message), in one `sendmsg`; as [`send_with_fd`] otherwise.
pub fn send_with_fds(
    socket: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let iov = [IoSlice::new(data)];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &iov,
        &cmsg,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(io::Error::from)
}

/// What one `recvmsg` returned.
#[derive(Debug)]
pub struct Received {
    /// Data bytes read into the caller's buffer; 0 means the peer closed.
    pub bytes: usize,
    /// Descriptors that arrived, already close-on-exec.
    pub fds: Vec<OwnedFd>,
    /// The kernel had more ancillary data than fit (`MSG_CTRUNC`): some
    /// descriptors were discarded by the kernel. Never expected; counted.
    pub truncated: bool,
}

/// Reads from `socket` with `recvmsg(..., MSG_CMSG_CLOEXEC)`, collecting any
/// descriptors passed with `SCM_RIGHTS`.
pub fn recv_with_fds(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    // Room for MAX_FDS_PER_READ descriptors, aligned for cmsghdr.
    const SPACE: usize = cmsg_space(MAX_FDS_PER_READ);
    let mut control = [0u64; SPACE.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is a plain C struct; all-zero is a valid empty value.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = SPACE as _;
    // SAFETY: msg points at one iovec over `buf` and at `control`, both live
    // and writable for the call with the lengths given.
    let bytes = syscall!(recvmsg(
        socket.as_raw_fd(),
        &mut msg,
        libc::MSG_CMSG_CLOEXEC
    ))? as usize;
    let truncated = msg.msg_flags & libc::MSG_CTRUNC != 0;
    let mut fds = Vec::new();
    // Even when truncated, the kernel installed the descriptors that fit and
    // msg_controllen covers exactly those: take them, so none leaks.
    // SAFETY: msg was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR stay within
    // msg_control[..msg_controllen], which lies inside `control`.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: cmsg is non-null and points inside the control buffer.
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN(0) is a pure computation.
            let payload = hdr.cmsg_len as usize - unsafe { libc::CMSG_LEN(0) } as usize;
            // SAFETY: CMSG_DATA points at `payload` bytes of RawFd values
            // inside the control buffer; read_unaligned copes with alignment.
            let data = unsafe { libc::CMSG_DATA(cmsg) } as *const RawFd;
            for i in 0..payload / mem::size_of::<RawFd>() {
                // SAFETY: i indexes within the payload (see above).
                let raw = unsafe { data.add(i).read_unaligned() };
                // SAFETY: the kernel installed this descriptor for us just
                // now; nothing else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        // SAFETY: msg and cmsg are valid as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok(Received {
        bytes,
        fds,
        truncated,
    })
}

const fn cmsg_space(fds: usize) -> usize {
    // SAFETY: CMSG_SPACE is a pure computation on a length.
    unsafe { libc::CMSG_SPACE((fds * mem::size_of::<RawFd>()) as u32) as usize }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    fn files(n: usize) -> Vec<File> {
        (0..n).map(|_| File::open("/dev/null").unwrap()).collect()
    }

    fn send(a: &UnixStream, data: &[u8], files: &[File]) {
        let fds: Vec<BorrowedFd<'_>> = files.iter().map(|f| f.as_fd()).collect();
        assert_eq!(send_with_fds(a.as_fd(), data, &fds).unwrap(), data.len());
    }

    #[test]
    fn one_message_carries_up_to_the_maximum_and_one_read_takes_them_all() {
        let (a, b) = UnixStream::pair().unwrap();
        send(&a, b"batch", &files(MAX_FDS_PER_MESSAGE));
        send(&a, b"one", &files(1));
        let mut buf = [0u8; 64];
        let got = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..got.bytes], b"batch");
        assert_eq!(got.fds.len(), MAX_FDS_PER_MESSAGE);
        assert!(!got.truncated);
        // The next message's descriptors never join this read.
        let got = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!((&buf[..got.bytes], got.fds.len()), (&b"one"[..], 1));
    }

    #[test]
    fn more_than_a_read_takes_is_cut_off_and_says_so() {
        let (a, b) = UnixStream::pair().unwrap();
        send(&a, b"x", &files(MAX_FDS_PER_READ + 3));
        let mut buf = [0u8; 8];
        let got = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert!(got.truncated);
        assert_eq!(got.fds.len(), MAX_FDS_PER_READ);
    }
}
