//! fork (single-threaded processes only), the parent-death signal, wait4 with
//! resource usage, `_exit`.

use std::io;
use std::mem;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::syscall;

/// Which side of a fork we are on.
pub enum Forked {
    /// In the parent; the child's pid.
    Parent(Pid),
    /// In the child.
    Child,
}

/// `fork()`, for a single-threaded process only.
///
/// After a fork the child has one thread, a copy of the one that forked; if
/// other threads held locks (the allocator's, stdout's) at that moment, the
/// child would find them held forever and could only call async-signal-safe
/// functions. With one thread there is no such lock, and the child may run
/// any code: that is what makes this function safe. So it first counts the
/// threads of this process (`/proc/self/task`) and refuses, without forking,
/// if there is more than one. The lab's master never starts a thread.
pub fn fork_single_threaded() -> io::Result<Forked> {
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    if threads != 1 {
        return Err(io::Error::other(format!(
            "cannot fork safely: this process has {threads} threads, and the master must have one"
        )));
    }
    // SAFETY: the process has exactly one thread, counted just above: only
    // that thread (this one) could have started another since, and it did
    // not. So no other thread can hold a lock the child would inherit, and
    // the child may run arbitrary code.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// Asks the kernel to send `SIGKILL` to this process when its parent dies,
/// then checks that the parent is still `expected_parent` (it could have died
/// between fork and prctl, in which case the signal will never come).
pub fn die_with_parent(expected_parent: Pid) -> io::Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    if nix::unistd::getppid() != expected_parent {
        return Err(io::Error::other(
            "the master exited while this worker was starting",
        ));
    }
    Ok(())
}

/// Resource usage of one process, as `wait4`/`getrusage` report it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// User CPU time in microseconds.
    pub cpu_user_us: u64,
    /// System CPU time in microseconds.
    pub cpu_system_us: u64,
    /// Voluntary context switches (the process blocked).
    pub voluntary_ctxt_switches: u64,
    /// Involuntary context switches (the process was preempted).
    pub involuntary_ctxt_switches: u64,
}

impl Usage {
    fn from_rusage(ru: &libc::rusage) -> Usage {
        let us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
        Usage {
            cpu_user_us: us(ru.ru_utime),
            cpu_system_us: us(ru.ru_stime),
            voluntary_ctxt_switches: ru.ru_nvcsw as u64,
            involuntary_ctxt_switches: ru.ru_nivcsw as u64,
        }
    }
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `exit(code)`.
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Exit::Code(code) => write!(f, "exited with code {code}"),
            Exit::Signal(sig) => match Signal::try_from(sig) {
                Ok(s) => write!(f, "was killed by {}", s.as_str()),
                Err(_) => write!(f, "was killed by signal {sig}"),
            },
        }
    }
}

/// `wait4(-1, WNOHANG)`: one exited child with its resource usage, or `None`
/// when no child has exited (or there are no children).
pub fn reap_one() -> io::Result<Option<(Pid, Exit, Usage)>> {
    let mut status = 0;
    // SAFETY: rusage is a plain C struct; all-zero is valid.
    let mut ru: libc::rusage = unsafe { mem::zeroed() };
    // SAFETY: status and ru are valid, writable and outlive the call.
    match syscall!(wait4(-1, &mut status, libc::WNOHANG, &mut ru)) {
        Ok(0) => Ok(None),
        Ok(pid) => {
            let exit = if libc::WIFSIGNALED(status) {
                Exit::Signal(libc::WTERMSIG(status))
            } else {
                Exit::Code(libc::WEXITSTATUS(status))
            };
            Ok(Some((Pid::from_raw(pid), exit, Usage::from_rusage(&ru))))
        }
        Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(None),
        Err(e) => Err(e),
    }
}

/// This process's own resource usage.
pub fn own_usage() -> Usage {
    // SAFETY: rusage is a plain C struct; all-zero is valid.
    let mut ru: libc::rusage = unsafe { mem::zeroed() };
    // SAFETY: ru is valid and writable; RUSAGE_SELF cannot fail.
    let _ = syscall!(getrusage(libc::RUSAGE_SELF, &mut ru));
    Usage::from_rusage(&ru)
}

/// `_exit(code)`: ends a forked child without running the master's
/// destructors or atexit handlers (stdout is flushed by hand before fork, and
/// stderr is unbuffered).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes no pointers and never returns.
    unsafe { libc::_exit(code) }
}

/// Raises this process's soft `RLIMIT_NOFILE` to `want` descriptors, or as
/// far as the hard limit allows (children forked afterwards inherit it).
/// Returns the soft limit in force afterwards.
pub fn raise_nofile_limit(want: u64) -> io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let target = want.min(hard);
    if target > soft {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
        return Ok(target);
    }
    Ok(soft)
}
