//! One trace: start the target as the bench does, attach strace to its
//! master and every worker, send the connections, detach, stop the target.
//! The target is stopped on every path, and the only process signalled is
//! the strace this module started (by its pid): the trace must leave the
//! machine as it found it, whatever went wrong.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::skeleton::{self, Role, RoleTrace, Skeleton};
use super::strace;
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
}

/// What a trace wrote.
pub struct Outcome {
    /// `RESULTS/<UTC>/trace`.
    pub dir: PathBuf,
    /// The skeleton written there.
    pub skeleton: Skeleton,
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
    let dir = trace_dir(&plan.results)?;
    let work_dir = dir.join(".work");
    std::fs::create_dir_all(&work_dir)
        .map_err(|e| format!("cannot create {}: {e}", work_dir.display()))?;
    let ctx = StartCtx {
        bins: &bins,
        workers: plan.workers,
        cpus: &[],
        work_dir: &work_dir,
        ready_timeout: Duration::from_secs(10),
        inject_cpu_us: 0,
        keep_alive: false,
    };
    let server = plan.spec.start(&ctx)?;
    let traced = trace_running(plan, &*server, &dir, &strace_line, stop);
    let stopped = server.stop(Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&work_dir);
    let skeleton = match traced {
        Ok(s) => s,
        Err(e) => {
            // No half-written trace directory.
            if let Some(session) = dir.parent() {
                let _ = std::fs::remove_dir_all(session);
            }
            return Err(e);
        }
    };
    stopped.map_err(|e| format!("the target did not stop cleanly: {e}"))?;
    Ok(Outcome { dir, skeleton })
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
) -> Result<Skeleton, String> {
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
        clients.push(get(&addr)?);
    }
    let burst: Vec<_> = (0..plan.burst)
        .map(|_| {
            let a = addr.clone();
            std::thread::spawn(move || get(&a))
        })
        .collect();
    let mut burst_clients = Vec::new();
    for b in burst {
        burst_clients.push(b.join().map_err(|_| "a burst connection panicked")??);
    }
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
    let traces = collect(dir, &roles, &role_of)?;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let skel = skeleton::build(
        &skeleton::Input {
            target: &plan.spec.name(),
            workers: plan.workers,
            clients: &clients,
            burst: plan.burst,
            burst_clients: &burst_clients,
            kernel,
            strace: strace_line.to_string(),
        },
        &traces,
    );
    let json = serde_json::to_string_pretty(&skel).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("skeleton.json"), json + "\n")
        .map_err(|e| format!("cannot write {}: {e}", dir.join("skeleton.json").display()))?;
    super::page::write_pages(dir, &skel)?;
    Ok(skel)
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

/// One `GET /` with `Connection: close`, read to its end; the client's
/// address, which names the connection in the trace.
fn get(addr: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let local = s.local_addr().map_err(|e| e.to_string())?.to_string();
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: trace\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| format!("no answer from {addr}: {e}"))?;
    if !buf.starts_with(b"HTTP/1.") {
        return Err(format!("{addr} did not answer with HTTP"));
    }
    Ok(local)
}
