//! Node.js `cluster` as a reference target: `references/node/cluster.js`,
//! a primary that forks N workers each running `http.createServer` on the
//! same port, with one of cluster's two scheduling policies:
//!
//! - `node:rr` (`NODE_CLUSTER_SCHED_POLICY=rr`, the default on Linux): the
//!   primary accepts every connection and passes its fd to a worker over the
//!   worker's IPC channel (the lab's `master-pass`);
//! - `node:none` (`NODE_CLUSTER_SCHED_POLICY=none`): the primary hands the
//!   listening socket to every worker once, and each worker accepts from it
//!   in its own libuv loop, level-triggered epoll without exclusivity (the
//!   lab's `shared:epoll`).
//!
//! The script answers the same request targets as lab-server
//! (`/?cpu_us=N&sleep_us=M&bytes=B`) and prints a ready line like
//! lab-server's, which gives the worker pids. Its workers exit when the
//! primary does (their IPC channel closes), and the primary runs in a
//! process group of its own so that a stop reaches every worker.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::external::{find_on_path, ServerTree};
use super::{Running, StartCtx};
use crate::measure::procs::guarded_external;
use crate::model::record::ServerStats;

/// Node.js cluster's scheduling policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// `SCHED_RR`: the primary accepts and passes each connection on.
    Rr,
    /// `SCHED_NONE`: every worker accepts from the shared listener.
    None,
}

impl Policy {
    /// Both policies, in report order.
    pub const ALL: [Policy; 2] = [Policy::Rr, Policy::None];

    /// Parses a target name (`node:rr`, `node:none`).
    pub fn parse(name: &str) -> Option<Policy> {
        Policy::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The target name.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::Rr => "node:rr",
            Policy::None => "node:none",
        }
    }

    /// The value of `NODE_CLUSTER_SCHED_POLICY`.
    pub fn env_value(&self) -> &'static str {
        match self {
            Policy::Rr => "rr",
            Policy::None => "none",
        }
    }
}

/// What [`available`] says when node is missing.
pub const MISSING: &str = "node is not installed: the node:* references are skipped; install it with `just setup-references` (apt-get install -y nodejs)";

/// Environment variable naming the `references/` directory (default: the
/// one in this repository, found from the harness's source directory).
pub const REFERENCES_ENV: &str = "PREFORK_LAB_REFERENCES";

/// The node executable on `PATH`.
pub fn binary() -> Result<PathBuf, String> {
    find_on_path("node").ok_or_else(|| MISSING.to_string())
}

/// Whether node is installed (on `PATH`); `Err` says how to install it.
pub fn available() -> Result<(), String> {
    binary().map(|_| ())
}

/// `references/node/cluster.js`: under `$PREFORK_LAB_REFERENCES` when set,
/// else in the repository this harness was built from.
pub fn script() -> Result<PathBuf, String> {
    let dir = match std::env::var_os(REFERENCES_ENV) {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("references"),
    };
    let p = dir.join("node").join("cluster.js");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found: run the harness from its repository's build or set {REFERENCES_ENV} to the repository's references/ directory",
            p.display()
        ))
    }
}

#[derive(serde::Deserialize)]
struct ReadyLine {
    event: String,
    addr: String,
    strategy: String,
    master_pid: i32,
    worker_pids: Vec<i32>,
}

/// Starts `node cluster.js` with `policy` and `ctx.workers` workers on a
/// port the kernel picks (`--port 0`: every worker of a cluster shares the
/// primary's one handle, so they all get the same port, with no race
/// between choosing a port and binding it), and waits for its ready line.
pub fn start(policy: Policy, ctx: &StartCtx<'_>) -> Result<Box<dyn Running>, String> {
    let node = binary()?;
    let script = script()?;
    std::fs::create_dir_all(ctx.work_dir)
        .map_err(|e| format!("cannot create {}: {e}", ctx.work_dir.display()))?;
    let stderr_path = ctx.work_dir.join("node-stderr.log");
    let stderr = std::fs::File::create(&stderr_path)
        .map_err(|e| format!("cannot create {}: {e}", stderr_path.display()))?;
    let mut cmd = guarded_external(&node, ctx.cpus)?;
    cmd.arg(&script)
        .args(["--port", "0", "--workers", &ctx.workers.to_string()])
        .env("NODE_CLUSTER_SCHED_POLICY", policy.env_value())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        // See nginx.rs: one group for the primary and its workers.
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", node.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let mut tree = ServerTree::guarded("node", child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        for _ in lines {} // drain, so node never blocks on stdout
    });
    let stderr_tail = || {
        let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(8)..].join(" | ");
        if tail.is_empty() {
            String::new()
        } else {
            format!(": {tail}")
        }
    };
    let deadline = Instant::now() + ctx.ready_timeout;
    let line = match rx.recv_timeout(ctx.ready_timeout) {
        Ok(Some(Ok(line))) => line,
        Ok(_) => {
            // Give the stderr of a failing start a moment to land.
            while !tree.has_exited() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            drop(tree);
            return Err(format!(
                "{} exited before it was ready{}",
                policy.name(),
                stderr_tail()
            ));
        }
        Err(_) => {
            drop(tree);
            return Err(format!(
                "{} was not ready within {:?}{}",
                policy.name(),
                ctx.ready_timeout,
                stderr_tail()
            ));
        }
    };
    let ready: ReadyLine = serde_json::from_str(&line)
        .map_err(|e| format!("{}'s ready line {line:?}: {e}", policy.name()))?;
    if ready.event != "ready"
        || ready.strategy != policy.name()
        || ready.master_pid != tree.master_pid
    {
        return Err(format!(
            "{} printed {line:?}, not the ready line of {} pid {}",
            policy.name(),
            policy.name(),
            tree.master_pid
        ));
    }
    if ready.worker_pids.len() != ctx.workers {
        return Err(format!(
            "{} started {} workers, expected {}: {line}",
            policy.name(),
            ready.worker_pids.len(),
            ctx.workers
        ));
    }
    tree.workers = ready.worker_pids;
    Ok(Box::new(RunningNode {
        tree,
        addr: ready.addr,
    }))
}

/// A started Node.js cluster.
struct RunningNode {
    tree: ServerTree,
    addr: String,
}

impl Running for RunningNode {
    fn addr(&self) -> String {
        self.addr.clone()
    }

    fn master_pid(&self) -> i32 {
        self.tree.master_pid
    }

    fn worker_pids(&self) -> Vec<i32> {
        self.tree.workers.clone()
    }

    /// SIGTERM (the primary kills its workers, waits for them and exits),
    /// then SIGKILL of the primary and any worker after `timeout`.
    fn stop(mut self: Box<Self>, timeout: Duration) -> Result<Option<ServerStats>, String> {
        self.tree.shut_down(Signal::SIGTERM, timeout)?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Policy::ALL {
            assert_eq!(Policy::parse(p.name()), Some(p));
            assert_eq!(p.name(), format!("node:{}", p.env_value()));
        }
        assert_eq!(Policy::parse("node"), None);
    }

    #[test]
    fn the_script_ships_with_the_repository() {
        if std::env::var_os(REFERENCES_ENV).is_none() {
            let p = script().unwrap();
            assert!(p.ends_with("references/node/cluster.js"), "{}", p.display());
        }
        assert!(MISSING.contains("just setup-references") && MISSING.contains("nodejs"));
    }
}
