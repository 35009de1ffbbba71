//! One trace: start the target as the bench does, attach strace to its
//! master and every worker, send the connections, detach, stop the target.
//! The target is stopped on every path, and the only process signalled is
//! the strace this module started (by its pid): the trace must leave the
//! machine as it found it, whatever went wrong.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::client;
use super::herd::Herd;
use super::skeleton::{self, Role, RoleTrace, Skeleton};
use super::strace;
use super::wakeups;
use crate::measure::procs::{guarded, Binaries};
use crate::measure::targets::{Running, StartCtx, TargetSpec};

/// What to trace.
pub struct Plan {
    /// The target.
    pub spec: TargetSpec,
    /// Worker processes.
    pub workers: usize,
    /// Connections sent one at a time.
    pub connections: usize,
    /// Concurrent connections sent after them.
    pub burst: usize,
    /// Where sessions go (`results`).
    pub results: PathBuf,
    /// Whether to run the tracepoint pass (who the kernel woke).
    pub kernel: bool,
    /// The exact folder to write (replacing a trace there), instead of
    /// `RESULTS/<UTC>/trace`.
    pub into: Option<PathBuf>,
}

/// What a trace wrote.
pub struct Outcome {
    /// `RESULTS/<UTC>/trace`.
    pub dir: PathBuf,
    /// The skeleton written there.
    pub skeleton: Skeleton,
    /// Who the kernel woke, when the tracepoint pass ran.
    pub herd: Option<Herd>,
}

/// strace's version line; `Err` says how to install it.
pub fn strace_version() -> Result<String, String> {
    let out = std::process::Command::new("strace")
        .arg("-V")
        .output()
        .map_err(|_| {
            "strace is not installed: install it (apt-get install strace) and run again".to_string()
        })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string())
}

/// Where a trace is written, and what to remove if it fails.
struct Place {
    /// The trace's folder while it is written.
    dir: PathBuf,
    /// Removed whole on failure: the session folder, or the new folder.
    scratch: PathBuf,
    /// Where it goes once complete (`Plan::into`).
    into: Option<PathBuf>,
}

fn is_trace(dir: &Path) -> bool {
    dir.join("skeleton.json").is_file()
}

/// A folder beside `into` for the new trace (`.NAME.new`), fresh.
fn place_into(into: &Path) -> Result<Place, String> {
    let name = into
        .file_name()
        .ok_or_else(|| format!("{} names no folder", into.display()))?
        .to_string_lossy()
        .to_string();
    let parent = into.parent().unwrap_or(Path::new("."));
    if into.exists() && !(into.is_dir() && is_trace(into)) {
        return Err(format!(
            "{} exists and is not a trace: choose another folder (--traces)",
            into.display()
        ));
    }
    let new = parent.join(format!(".{name}.new"));
    if new.exists() {
        // Ours by name: what a trace that failed there left.
        std::fs::remove_dir_all(&new)
            .map_err(|e| format!("cannot remove {}: {e}", new.display()))?;
    }
    std::fs::create_dir_all(&new).map_err(|e| format!("cannot create {}: {e}", new.display()))?;
    let dir = std::fs::canonicalize(&new)
        .map_err(|e| format!("cannot resolve {}: {e}", new.display()))?;
    Ok(Place {
        scratch: dir.clone(),
        dir,
        into: Some(into.to_path_buf()),
    })
}

impl Place {
    /// Moves a complete trace to its folder (`Plan::into`), replacing the
    /// trace that was there; the folder it is in at last.
    fn finish(self) -> Result<PathBuf, String> {
        let Some(into) = self.into else {
            return Ok(self.dir);
        };
        let old = into.with_file_name(format!(
            ".{}.old",
            into.file_name().unwrap_or_default().to_string_lossy()
        ));
        if into.exists() {
            if old.exists() {
                std::fs::remove_dir_all(&old)
                    .map_err(|e| format!("cannot remove {}: {e}", old.display()))?;
            }
            std::fs::rename(&into, &old)
                .map_err(|e| format!("cannot move {} aside: {e}", into.display()))?;
        }
        std::fs::rename(&self.dir, &into)
            .map_err(|e| format!("cannot move the trace to {}: {e}", into.display()))?;
        if old.exists() {
            let _ = std::fs::remove_dir_all(&old);
        }
        std::fs::canonicalize(&into).map_err(|e| format!("cannot resolve {}: {e}", into.display()))
    }
}

fn trace_dir(root: &Path) -> Result<PathBuf, String> {
    let stamp = crate::store::results::utc_stamp();
    let mut dir = root.join(&stamp);
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = root.join(format!("{stamp}-{n}"));
    }
    let trace = dir.join("trace");
    std::fs::create_dir_all(&trace).map_err(|e| {
        format!(
            "cannot create {}: {e}; pass --results DIR with a writable directory",
            trace.display()
        )
    })?;
    std::fs::canonicalize(&trace).map_err(|e| format!("cannot resolve {}: {e}", trace.display()))
}

/// Runs the trace. `stop` (SIGINT, SIGTERM) ends it early, everything stopped.
pub fn run(plan: &Plan, stop: &AtomicBool) -> Result<Outcome, String> {
    let strace_line = strace_version()?;
    plan.spec.available()?;
    let bins = match &plan.spec {
        TargetSpec::Lab(_) => Binaries::locate()?,
        // A reference server needs no lab binary.
        _ => Binaries::locate().unwrap_or(Binaries {
            lab_server: PathBuf::new(),
            loadgen: PathBuf::new(),
        }),
    };
    let place = match &plan.into {
        Some(into) => place_into(into)?,
        None => {
            let dir = trace_dir(&plan.results)?;
            Place {
                scratch: dir.parent().map_or(dir.clone(), Path::to_path_buf),
                dir,
                into: None,
            }
        }
    };
    match trace_in(plan, &bins, &place.dir, &strace_line, stop) {
        Ok((skeleton, herd)) => {
            let scratch = place.scratch.clone();
            let dir = place.finish().inspect_err(|_| {
                let _ = std::fs::remove_dir_all(&scratch);
            })?;
            Ok(Outcome {
                dir,
                skeleton,
                herd,
            })
        }
        Err(e) => {
            // No half-written trace directory.
            let _ = std::fs::remove_dir_all(&place.scratch);
            Err(e)
        }
    }
}

/// Starts the target, traces it into `dir` and stops it.
fn trace_in(
    plan: &Plan,
    bins: &Binaries,
    dir: &Path,
    strace_line: &str,
    stop: &AtomicBool,
) -> Result<(Skeleton, Option<Herd>), String> {
    let work_dir = dir.join(".work");
    std::fs::create_dir_all(&work_dir)
        .map_err(|e| format!("cannot create {}: {e}", work_dir.display()))?;
    let ctx = StartCtx {
        bins,
        workers: plan.workers,
        cpus: &[],
        work_dir: &work_dir,
        ready_timeout: Duration::from_secs(10),
        inject_cpu_us: 0,
        keep_alive: false,
    };
    let server = plan.spec.start(&ctx)?;
    let traced = trace_running(plan, &*server, dir, strace_line, stop);
    let stopped = server.stop(Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&work_dir);
    let out = traced?;
    stopped.map_err(|e| format!("the target did not stop cleanly: {e}"))?;
    Ok(out)
}

/// The pids and their roles, with every thread of each.
fn roles_of(server: &dyn Running) -> Vec<(Role, i32)> {
    let mut v = vec![(Role::Master, server.master_pid())];
    v.extend(
        server
            .worker_pids()
            .into_iter()
            .enumerate()
            .map(|(i, p)| (Role::Worker(i), p)),
    );
    v
}

fn threads(pid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if !v.contains(&pid) {
        v.push(pid);
    }
    v
}

/// The strace we started, stopped on drop if still running.
struct Tracer {
    child: Child,
}

impl Tracer {
    /// SIGINT (strace detaches and exits), then SIGKILL after 5 s.
    fn detach(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.detach();
    }
}

fn trace_running(
    plan: &Plan,
    server: &dyn Running,
    dir: &Path,
    strace_line: &str,
    stop: &AtomicBool,
) -> Result<(Skeleton, Option<Herd>), String> {
    let roles = roles_of(server);
    let mut cmd = guarded(Path::new("strace"), &[]);
    cmd.args(["-f", "-tt", "-T", "-yy", "-s", "256", "-ff", "-o"])
        .arg(dir.join("raw"));
    for (_, pid) in &roles {
        cmd.arg("-p").arg(pid.to_string());
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start strace: {e}; install it (apt-get install strace)"))?;
    let mut tracer = Tracer { child };
    let stderr = tracer.child.stderr.take().ok_or("strace has no stderr")?;
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // strace says "Process N attached" for each thread it seized.
    let mut attached: Vec<i32> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !roles.iter().all(|(_, p)| attached.contains(p)) {
        if stop.load(Ordering::SeqCst) {
            return Err("interrupted; the target is stopped".into());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(line) => {
                // `Process N attached`, or `... attached with 7 threads`.
                if let Some(n) = line
                    .strip_prefix("strace: Process ")
                    .and_then(|r| r.split_once(" attached"))
                    .and_then(|(n, _)| n.trim().parse().ok())
                {
                    attached.push(n);
                } else if line.starts_with("strace: attach:")
                    || line.contains("Operation not permitted")
                {
                    return Err(format!(
                        "strace cannot attach ({line}); run as root or allow ptrace (sysctl kernel.yama.ptrace_scope=0)"
                    ));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err("strace exited before it attached; run it by hand to see why".into())
            }
        }
        if let Ok(Some(st)) = tracer.child.try_wait() {
            return Err(format!("strace exited before it attached ({st})"));
        }
        if Instant::now() >= deadline {
            return Err("strace did not attach within 10 s; is ptrace allowed here?".into());
        }
    }
    let addr = server.addr();
    let mut clients = Vec::new();
    for _ in 0..plan.connections {
        if stop.load(Ordering::SeqCst) {
            return Err("interrupted; the target is stopped".into());
        }
        clients.push(client::get(&addr)?.client);
    }
    let burst_clients: Vec<String> = client::burst(&addr, plan.burst)?
        .into_iter()
        .map(|w| w.client)
        .collect();
    if stop.load(Ordering::SeqCst) {
        return Err("interrupted; the target is stopped".into());
    }
    // Every thread of each process, for the files strace wrote per thread.
    let mut role_of: HashMap<i32, Role> = HashMap::new();
    for (role, pid) in &roles {
        for t in threads(*pid) {
            role_of.insert(t, *role);
        }
    }
    // Let the last calls (the closes) be written before detaching.
    std::thread::sleep(Duration::from_millis(200));
    tracer.detach();
    // While the target still runs: what each role holds.
    let holdings = super::holdings::snapshot(&roles);
    let traces = collect(dir, &roles, &role_of)?;
    let herd = if plan.kernel {
        let by_role: Vec<(String, Vec<i32>)> =
            roles.iter().map(|(r, p)| (r.name(), threads(*p))).collect();
        let pass = wakeups::Pass {
            target: &plan.spec.name(),
            workers: plan.workers,
            addr: &addr,
            roles: &by_role,
            connections: plan.connections,
            burst: plan.burst,
        };
        Some(wakeups::run(&pass, dir, stop)?)
    } else {
        None
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut skel = skeleton::build(
        &skeleton::Input {
            target: &plan.spec.name(),
            workers: plan.workers,
            clients: &clients,
            burst: plan.burst,
            burst_clients: &burst_clients,
            kernel,
            strace: strace_line.to_string(),
            taken_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        },
        &traces,
    );
    skel.holdings = holdings;
    let json = serde_json::to_string_pretty(&skel).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("skeleton.json"), json + "\n")
        .map_err(|e| format!("cannot write {}: {e}", dir.join("skeleton.json").display()))?;
    super::page::write_pages(dir, &skel)?;
    Ok((skel, herd))
}

/// Renames strace's `raw.<tid>` files by role and parses them.
fn collect(
    dir: &Path,
    roles: &[(Role, i32)],
    role_of: &HashMap<i32, Role>,
) -> Result<Vec<RoleTrace>, String> {
    let mut traces: Vec<RoleTrace> = roles
        .iter()
        .map(|(role, pid)| RoleTrace {
            role: *role,
            pid: *pid,
            events: Vec::new(),
        })
        .collect();
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(tid) = name
            .strip_prefix("raw.")
            .and_then(|t| t.parse::<i32>().ok())
        else {
            continue;
        };
        let role = role_of.get(&tid).copied();
        let prefix = role.map_or("other".to_string(), |r| r.name());
        let to = dir.join(format!("{prefix}.{tid}.txt"));
        std::fs::rename(entry.path(), &to)
            .map_err(|e| format!("cannot rename {}: {e}", entry.path().display()))?;
        if let Some(role) = role {
            let mut text = String::new();
            std::fs::File::open(&to)
                .and_then(|mut f| f.read_to_string(&mut text))
                .map_err(|e| format!("cannot read {}: {e}", to.display()))?;
            if let Some(t) = traces.iter_mut().find(|t| t.role == role) {
                t.events.extend(strace::parse(&text, tid));
            }
        }
    }
    for t in &mut traces {
        t.events.sort_by_key(|e| e.time_us);
    }
    Ok(traces)
}
