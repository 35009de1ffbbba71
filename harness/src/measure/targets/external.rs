//! What the reference servers (nginx, Apache, Node.js) share: their process
//! tree — a master in its own process group and the workers it forks, none of
//! which is ours to supervise, started under `harness guard` so that none
//! outlives the harness — finding their binaries on `PATH`, and which
//! workloads a server that answers `/` with a fixed `ok` can serve.

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::measure::procs::children_of;
use crate::model::workload::Workload;

use std::fmt::Write as _;

/// A reference server's processes: the master, the leader of its own
/// process group, and the workers it forked; the master is our child or,
/// started with [`crate::measure::procs::guarded_external`], the only child of our
/// child `harness guard`. Dropping it stops them (SIGTERM, then SIGKILL), so
/// a run that fails half-way leaks no server.
pub struct ServerTree {
    /// For messages: `nginx`, `node`.
    name: &'static str,
    /// The process we started: the master, or its guard.
    child: Option<Child>,
    /// Whether `child` is a `harness guard` (which exits only once the
    /// master has and every other process of the server is killed and reaped).
    guarded: bool,
    /// The master (the group leader: its pid is the process group id).
    pub master_pid: i32,
    /// The workers, once known.
    pub workers: Vec<i32>,
}

/// How long dropping a [`ServerTree`] waits for a SIGTERM to work before it
/// kills.
const DROP_GRACE: Duration = Duration::from_secs(2);

/// How long [`ServerTree::guarded`] waits for the guard to start the master,
/// and the forced stop for the guard to reap what is left.
const GUARD_WAIT: Duration = Duration::from_secs(5);

impl ServerTree {
    /// Takes charge of `child`, which must have been started with
    /// `process_group(0)`.
    pub fn new(name: &'static str, child: Child) -> ServerTree {
        let master_pid = child.id() as i32;
        ServerTree {
            name,
            child: Some(child),
            guarded: false,
            master_pid,
            workers: Vec::new(),
        }
    }

    /// Takes charge of `child`, a `harness guard` started by
    /// [`crate::measure::procs::guarded_external`]: the master is the guard's only
    /// child, found in `/proc` once the guard has started it. If the guard
    /// exits first (the program could not start), the tree has exited.
    pub fn guarded(name: &'static str, mut child: Child) -> ServerTree {
        let guard = child.id() as i32;
        let deadline = Instant::now() + GUARD_WAIT;
        let master_pid = loop {
            if let Some(&pid) = children_of(guard).first() {
                break pid;
            }
            if !matches!(child.try_wait(), Ok(None)) || Instant::now() >= deadline {
                // No master to signal: its pid stands for the guard's.
                break guard;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        ServerTree {
            name,
            child: Some(child),
            guarded: true,
            master_pid,
            workers: Vec::new(),
        }
    }

    /// Whether the master has exited (it is reaped then; under a guard: the
    /// guard has exited, which it does once the master has).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Processes of the group, or the known workers, still running (not
    /// zombies: a zombie is done, its parent or init reaps it).
    fn alive(&self) -> Vec<i32> {
        let mut out = group_members(self.master_pid);
        for &w in &self.workers {
            if is_running(w) && !out.contains(&w) {
                out.push(w);
            }
        }
        out
    }

    /// Sends `first` to the master and waits up to `timeout` for it to exit
    /// and for every process of its group to be gone; then SIGTERM, and
    /// SIGKILL to the whole group and each known worker. The master is
    /// reaped in every case. `Err` when it had to force.
    pub fn shut_down(&mut self, first: Signal, timeout: Duration) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let master = Pid::from_raw(self.master_pid);
        let _ = kill(master, first);
        let gone = |child: &mut Child, until: Instant| loop {
            let master_done = !matches!(child.try_wait(), Ok(None));
            if master_done && self.alive().is_empty() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if gone(&mut child, Instant::now() + timeout) {
            return Ok(());
        }
        let mut left = self.alive();
        if first != Signal::SIGTERM && matches!(child.try_wait(), Ok(None)) {
            let _ = kill(master, Signal::SIGTERM);
            if gone(&mut child, Instant::now() + Duration::from_millis(500)) {
                return Err(format!("{} (pid {}) did not stop within {timeout:?} of {first}; stopped it with SIGTERM", self.name, self.master_pid));
            }
            left = self.alive();
        }
        // The master first: a master that sees a worker die forks a new one.
        let _ = kill(master, Signal::SIGKILL);
        if self.guarded {
            // The guard kills and reaps the rest once the master is gone; a
            // guard that does not is told to (SIGTERM), then killed.
            let guard = Pid::from_raw(child.id() as i32);
            if !wait_bounded(&mut child, GUARD_WAIT) {
                let _ = kill(guard, Signal::SIGTERM);
                if !wait_bounded(&mut child, GUARD_WAIT) {
                    let _ = kill(guard, Signal::SIGKILL);
                }
            }
        }
        let _ = child.wait();
        let _ = kill(Pid::from_raw(-self.master_pid), Signal::SIGKILL);
        for pid in self.alive() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // Killed workers are reparented and reaped by the guard or init;
        // wait for that.
        let until = Instant::now() + Duration::from_secs(1);
        while !self.alive().is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let still = self.alive();
        let mut msg = format!(
            "{} (pid {}) did not stop within {timeout:?} of {first}; killed it and its processes {left:?}",
            self.name, self.master_pid
        );
        if !still.is_empty() {
            let _ = write!(msg, " (still running: {still:?})");
        }
        Err(msg)
    }

    /// Waits until the server answers `GET /` on `addr` with a 200 and then
    /// until its master has exactly `workers` children (it serves once the
    /// first one runs; the others may still be forking), which become
    /// [`ServerTree::workers`]; or until `deadline`. nginx and Apache start
    /// alike: a master that forks its workers and exits if it cannot start.
    pub fn wait_ready(
        &mut self,
        addr: &str,
        workers: usize,
        deadline: Instant,
    ) -> Result<(), NotReady> {
        loop {
            if self.has_exited() {
                return Err(NotReady::Exited);
            }
            if super::wait_http_ok(addr, Duration::from_millis(50)).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(NotReady::NoAnswer);
            }
        }
        loop {
            let children = children_of(self.master_pid);
            if children.len() == workers {
                self.workers = children;
                return Ok(());
            }
            if Instant::now() >= deadline || self.has_exited() {
                return Err(NotReady::Workers(children));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Why [`ServerTree::wait_ready`] gave up.
#[derive(Debug)]
pub enum NotReady {
    /// The server exited before it answered (its logs say why).
    Exited,
    /// It did not answer within the deadline.
    NoAnswer,
    /// It answered, but its master had these children, not the number asked
    /// for, at the deadline (or when it exited).
    Workers(Vec<i32>),
}

impl Drop for ServerTree {
    fn drop(&mut self) {
        // A run that failed half-way must not leave its server behind.
        let _ = self.shut_down(Signal::SIGTERM, DROP_GRACE);
    }
}

/// Waits for `child` up to `limit`; whether it exited (and was reaped).
fn wait_bounded(child: &mut Child, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => return false,
            _ => return true,
        }
    }
}

/// Whether `pid` exists and is not a zombie.
fn is_running(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// State and process group of `pid`, from `/proc/PID/stat`.
fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state, ppid, pgrp.
    Some((f.first()?.chars().next()?, f.get(2)?.parse().ok()?))
}

/// Running (non-zombie) processes whose process group is `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            proc_stat(pid).is_some_and(|(state, g)| g == pgid && state != 'Z' && state != 'X')
        })
        .collect();
    out.sort_unstable();
    out
}

/// `name` in a directory of `PATH`, if it is an executable file there.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    find_in(name, &std::env::var_os("PATH")?)
}

/// `name` in a directory of the `PATH`-style list `path`.
pub(crate) fn find_in(name: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Whether `server`, which answers `GET /` with a fixed `ok` (nginx's
/// `return 200`, Apache's Lua handler), can serve `w` faithfully. A request
/// target asking for CPU (`cpu_us`), a wait (`sleep_us`), a body size
/// (`bytes`), another path or an unknown parameter would get a cheap answer
/// (or another one than lab-server's 404/400) where lab-server works, waits,
/// or refuses; such a workload is refused with the reason, naming `server`.
pub fn supports_plain_get(server: &str, w: &Workload) -> Result<(), String> {
    request_targets(w.args)
        .into_iter()
        .try_for_each(|t| check_target(server, t))
}

/// The request targets a loadgen argument list asks for (`--path P`,
/// `--mix W:P,W:P`, also in their `--flag=value` form).
fn request_targets<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(&arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (arg, None),
        };
        let value = match flag {
            "--path" | "--mix" => inline.or_else(|| it.next().copied()),
            _ => None,
        };
        match (flag, value) {
            ("--path", Some(p)) => out.push(p),
            ("--mix", Some(spec)) => out.extend(
                spec.split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(|e| e.split_once(':').map_or(e, |(_, path)| path)),
            ),
            _ => {}
        }
    }
    out
}

fn check_target(server: &str, target: &str) -> Result<(), String> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != "/" {
        return Err(format!(
            "{server} answers only / the way lab-server does; another path gets another answer than lab-server's 404 ({target})"
        ));
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "cpu_us" | "sleep_us" if value.trim_start_matches('0').is_empty() && !value.is_empty() => {}
            "cpu_us" => return Err(format!("{server} cannot burn CPU per request ({target})")),
            "sleep_us" => return Err(format!("{server} cannot wait per request ({target})")),
            "bytes" => {
                return Err(format!(
                    "{server} answers every request with the 2-byte body \"ok\", it cannot size the body per request ({target})"
                ))
            }
            _ => {
                return Err(format!(
                    "{server} ignores the query where lab-server answers 400 to the parameter {key:?} ({target})"
                ))
            }
        }
    }
    Ok(())
}
