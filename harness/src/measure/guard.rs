//! `harness guard -- PROGRAM ARGS...`: a small keeper for the servers we
//! did not write (nginx, Node.js), so that nothing they start outlives the
//! harness, however the harness ends.
//!
//! `setpriv --pdeathsig KILL` kills a server's master with the harness, but
//! not what the master forked: nginx's workers set no parent-death signal and
//! keep serving, re-parented to init. The guard sits between the harness and
//! the server:
//!
//! - it gets `SIGTERM` when the harness dies (`PR_SET_PDEATHSIG`; not
//!   `SIGKILL`, it must run code then), and checks after setting it that the
//!   harness is still its parent (it may have died before);
//! - it is a child subreaper (`PR_SET_CHILD_SUBREAPER`), so whatever the
//!   server forks and orphans is re-parented to the guard, not to init;
//! - it starts PROGRAM in a process group of its own (the server's master
//!   leads it, as the harness's stop path expects), with the harness's stdio;
//! - when the harness dies or the guard gets `SIGTERM`, `SIGINT` or `SIGHUP`,
//!   it `SIGKILL`s every descendant (found in `/proc` by parent chain) and
//!   reaps them all before it exits (`128 + signal`);
//! - when PROGRAM exits by itself, it kills and reaps whatever PROGRAM left
//!   and exits with PROGRAM's status (`128 + signal` if it was killed).
//!
//! The signals are caught with `signal-hook`'s self-pipe (no threads): not
//! blocked, because a blocked signal mask is inherited across `fork` and
//! `exec` and PROGRAM must start with none blocked (a caught signal, unlike
//! a blocked one, is reset to its default action by `exec`). The crate stays
//! free of `unsafe`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::prctl;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpid, getppid, Pid};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The hidden subcommand's name.
pub const SUBCOMMAND: &str = "guard";

/// Exit code when the guard could not start PROGRAM (as shells use for a
/// command that cannot be executed).
pub const EXIT_CANNOT_START: i32 = 126;

/// How long the guard keeps killing and reaping before it gives up on a
/// process that will not die (one in uninterruptible sleep).
const REAP_LIMIT: Duration = Duration::from_secs(5);

/// Runs the guard; returns the exit code.
///
/// `parent`: the pid of the process that started the guard (the harness);
/// if the guard's parent is another one once the parent-death signal is set,
/// the harness is already gone and PROGRAM is not started.
pub fn run(parent: Option<i32>, program: &[OsString]) -> i32 {
    let Some((prog, args)) = program.split_first() else {
        eprintln!("harness guard: no program given");
        return 2;
    };
    let name = prog.to_string_lossy().into_owned();
    // Caught before the parent-death signal is armed, so that it is never
    // delivered with its default action (which would end the guard without
    // cleaning up).
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGHUP, SIGCHLD]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("harness guard: cannot handle signals: {e}");
            return EXIT_CANNOT_START;
        }
    };
    if let Err(e) = prctl::set_pdeathsig(Signal::SIGTERM) {
        eprintln!("harness guard: cannot set the parent-death signal: {e}");
        return EXIT_CANNOT_START;
    }
    if let Err(e) = prctl::set_child_subreaper(true) {
        eprintln!("harness guard: cannot become a child subreaper: {e}");
        return EXIT_CANNOT_START;
    }
    let ppid = getppid().as_raw();
    if ppid == 1 || parent.is_some_and(|p| p != ppid) {
        eprintln!("harness guard: the harness is gone already; not starting {name}");
        return 128 + SIGTERM;
    }
    if let Some(sig) = signals.pending().find(|&s| s != SIGCHLD) {
        return 128 + sig;
    }
    let child = Command::new(prog).args(args).process_group(0).spawn();
    let child = match child {
        Ok(c) => Pid::from_raw(c.id() as i32),
        Err(e) => {
            eprintln!("harness guard: cannot start {name}: {e}");
            return EXIT_CANNOT_START;
        }
    };
    let mut program_status: Option<WaitStatus> = None;
    let code = 'wait: loop {
        // Blocks until a signal came (one that came before counts too).
        for sig in signals.wait() {
            if sig != SIGCHLD {
                // The harness died (parent-death signal) or asks us to stop.
                break 'wait 128 + sig;
            }
            reap(child, &mut program_status);
            if let Some(st) = program_status {
                break 'wait exit_code(st);
            }
        }
    };
    kill_and_reap_descendants(child, &mut program_status);
    code
}

/// Reaps every child that has exited, noting PROGRAM's status.
fn reap(program: Pid, status: &mut Option<WaitStatus>) -> bool {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return true,
            Ok(st) => {
                if st.pid() == Some(program) && status.is_none() {
                    *status = Some(st);
                }
            }
            Err(Errno::EINTR) => {}
            // ECHILD: no child left at all.
            Err(_) => return false,
        }
    }
}

/// The exit code that passes on PROGRAM's status.
fn exit_code(st: WaitStatus) -> i32 {
    match st {
        WaitStatus::Exited(_, c) => c,
        WaitStatus::Signaled(_, s, _) => 128 + s as i32,
        _ => 1,
    }
}

/// SIGKILLs every descendant and reaps them until the guard has no child
/// left (as a subreaper, every orphaned descendant becomes its child, so no
/// child means no descendant), or [`REAP_LIMIT`] passes.
fn kill_and_reap_descendants(program: Pid, status: &mut Option<WaitStatus>) {
    let me = getpid().as_raw();
    let deadline = Instant::now() + REAP_LIMIT;
    loop {
        for pid in descendants(me) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if !reap(program, status) {
            return;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "harness guard: processes {:?} did not die within {REAP_LIMIT:?} of SIGKILL",
                descendants(me)
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every process whose chain of parents leads to `root` (zombies included),
/// from `/proc`.
pub fn descendants(root: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: HashMap<i32, i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, ppid_of(pid)?)))
        .collect();
    let mut out: Vec<i32> = parents
        .keys()
        .copied()
        .filter(|&pid| {
            let mut p = pid;
            // Bounded: a chain is never longer than the process table.
            for _ in 0..parents.len() {
                match parents.get(&p) {
                    Some(&pp) if pp == root => return true,
                    Some(&pp) if pp > 1 && pp != p => p = pp,
                    _ => return false,
                }
            }
            false
        })
        .collect();
    out.sort_unstable();
    out
}

/// The parent of `pid`, from `/proc/PID/stat`.
fn ppid_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_not_its_own_descendant_and_its_children_are() {
        let me = std::process::id() as i32;
        assert!(!descendants(me).contains(&me));
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let pid = child.id() as i32;
        assert!(descendants(me).contains(&pid), "{:?}", descendants(me));
        let _ = child.kill();
        let _ = child.wait();
        assert!(!descendants(me).contains(&pid));
    }

    #[test]
    fn the_exit_code_passes_on_the_status() {
        let p = Pid::from_raw(1);
        assert_eq!(exit_code(WaitStatus::Exited(p, 3)), 3);
        assert_eq!(
            exit_code(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            137
        );
    }
}
