//! Every libc call the tests make, fenced off here so the rest of the test code
//! has no `unsafe`: as mio does, one module holds the system calls, each
//! `unsafe` block with its reason, and the rest calls its safe functions.

use std::io;

/// Turns a libc `-1` return into `io::Error::last_os_error()`.
macro_rules! syscall {
    ($e:expr) => {{
        let r = $e;
        if r == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }};
}

/// Sends `sig` to `pid`. `ESRCH` (already gone) is reported as an error like any other.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    assert!(
        pid > 0,
        "refusing to signal pid {pid}: only a single positive pid is allowed"
    );
    // SAFETY: kill(2) has no memory-safety preconditions; pid > 0 names one process.
    syscall!(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// The CPUs the calling thread may run on.
pub fn thread_affinity() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is a plain bitmask; all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size we pass; pid 0 = calling thread.
    syscall!(unsafe {
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set)
    })?;
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `set` is initialised and `cpu` < CPU_SETSIZE.
    Ok((0..max)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Pins the calling thread (not the whole test process: pid 0 in
/// sched_setaffinity(2) means "this thread") to exactly one CPU.
pub fn pin_current_thread_to(cpu: usize) -> io::Result<()> {
    // SAFETY: all-zero is a valid empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t and `cpu` is checked against its size by the caller's CPU list.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size we pass; pid 0 = calling thread.
    syscall!(unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) })
        .map(drop)
}

/// Makes this test process the reaper of orphaned descendants
/// (PR_SET_CHILD_SUBREAPER), so a process the server leaves behind after its
/// master exits becomes our child and can be found by its ppid.
pub fn become_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) only flips a flag on this process.
    syscall!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) })
        .map(drop)
}

/// Reaps `pid` if it has exited (a zombie child of ours); returns whether it did.
pub fn try_reap(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid(2) with a valid out-pointer; WNOHANG never blocks.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    r == pid
}

/// The pid of this test process.
pub fn own_pid() -> i32 {
    std::process::id() as i32
}

/// Moves the calling thread (not the test process) into a new network
/// namespace and brings its loopback interface up, so that what the thread
/// starts (servers, clients) and the namespace's sysctls
/// (`/proc/sys/net/...`, read and written from this thread) are its own.
/// Needs CAP_SYS_ADMIN (the suite runs as root).
pub fn enter_new_network_namespace() -> io::Result<()> {
    // SAFETY: unshare(2) with CLONE_NEWNET only changes the calling thread's
    // network namespace; no memory is involved.
    syscall!(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
    // A socket made after the unshare belongs to the new namespace.
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `fd` is an open socket and `req` a valid, writable ifreq naming
    // an interface; SIOCGIFFLAGS fills its flags.
    syscall!(unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: SIOCGIFFLAGS has just written the `ifru_flags` member.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    syscall!(unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) })?;
    Ok(())
}

/// Closes `stream` with a reset instead of a FIN (`SO_LINGER` on with a
/// zero timeout, then close), as a client that gives up abruptly does.
pub fn close_with_reset(stream: std::net::TcpStream) -> io::Result<()> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is the open socket `stream` owns; the option value is a
    // live `linger` of the size passed, which the kernel only reads.
    syscall!(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    })?;
    drop(stream);
    Ok(())
}

pub use libc::{SIGCONT, SIGHUP, SIGINT, SIGKILL, SIGSTOP, SIGTERM};
