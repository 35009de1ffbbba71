//! What the harness measures: a *target* is a server it can start with N
//! workers on a loopback port, whose worker processes it can find, and that
//! it can stop leaving nothing behind. The lab's own strategies are one kind
//! ([`lab`]); real servers nobody here wrote are the others ([`nginx`],
//! [`apache`], [`node`]), measured by the same load generator with the same
//! workloads.

pub mod apache;
pub mod external;
pub mod lab;
pub mod nginx;
pub mod node;
pub mod remote_lab;

use std::path::Path;
use std::time::Duration;

use crate::measure::procs::Binaries;
use crate::model::names::{family, MIGRATE_SUFFIX, MIGRATE_VARIANTS, STRATEGIES};
use crate::model::record::ServerStats;
use crate::model::workload::Workload;

/// A target, parsed from its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSpec {
    /// `lab-server --strategy NAME`.
    Lab(String),
    /// nginx in one of its three accept modes.
    Nginx(nginx::Mode),
    /// Apache httpd with the prefork MPM.
    Apache,
    /// Node.js cluster with one of its two scheduling policies.
    Node(node::Policy),
}

impl TargetSpec {
    /// Parses a target name; `None` for an unknown one.
    pub fn parse(name: &str) -> Option<TargetSpec> {
        // A label (`reuseport@b`) names a cell, not a different server.
        if let Some((base, label)) = name.split_once(crate::model::names::LABEL_SEP) {
            let ok = !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            return ok.then(|| TargetSpec::parse(base)).flatten();
        }
        if let Some(base) = name.strip_suffix(MIGRATE_SUFFIX) {
            return MIGRATE_VARIANTS
                .contains(&name)
                .then(|| TargetSpec::parse(base))
                .flatten();
        }
        if STRATEGIES.contains(&name) {
            return Some(TargetSpec::Lab(name.to_string()));
        }
        if name == apache::NAME {
            return Some(TargetSpec::Apache);
        }
        nginx::Mode::parse(name)
            .map(TargetSpec::Nginx)
            .or_else(|| node::Policy::parse(name).map(TargetSpec::Node))
    }

    /// Its name (`--strategies`, reports).
    pub fn name(&self) -> String {
        match self {
            TargetSpec::Lab(s) => s.clone(),
            TargetSpec::Nginx(m) => m.name().to_string(),
            TargetSpec::Apache => apache::NAME.to_string(),
            TargetSpec::Node(p) => p.name().to_string(),
        }
    }

    /// Whether its workers listen in a SO_REUSEPORT group (where
    /// `net.ipv4.tcp_migrate_req` changes what a closing listener does).
    pub fn has_reuseport_group(&self) -> bool {
        match self {
            TargetSpec::Lab(s) => family(s) == "reuseport",
            TargetSpec::Nginx(m) => *m == nginx::Mode::ReusePort,
            TargetSpec::Apache | TargetSpec::Node(_) => false,
        }
    }

    /// Whether it is a reference server rather than a lab strategy.
    pub fn is_reference(&self) -> bool {
        !matches!(self, TargetSpec::Lab(_))
    }

    /// Whether this machine can run it; `Err` says how to install what is missing.
    pub fn available(&self) -> Result<(), String> {
        match self {
            TargetSpec::Lab(name) => lab::available(name),
            TargetSpec::Nginx(_) => nginx::available(),
            TargetSpec::Apache => apache::available(),
            TargetSpec::Node(_) => node::available(),
        }
    }

    /// Whether it can serve `workload` faithfully; `Err` says why not (the
    /// report lists it instead of showing wrong numbers).
    pub fn supports(&self, workload: &Workload) -> Result<(), String> {
        match self {
            TargetSpec::Nginx(_) => nginx::supports(workload),
            TargetSpec::Apache => apache::supports(workload),
            _ => Ok(()),
        }
    }

    /// The most warm-up its runs may take before they are measured anyway
    /// (and marked not steady). The harness warms every run until its last
    /// slices agree; Node.js compiles its hot paths only after some traffic
    /// (V8's JIT): cluster.js in round-robin mode, 2 workers, `close`, in
    /// 0.5 s windows right after start served 4.7k, 7.7k, 11.5k, 11.6k,
    /// 11.3k req/s, steady after about 1.5 s of load; the cap leaves it
    /// several times that. The lab's own strategies and nginx are steady at
    /// once.
    pub fn warmup_cap(&self) -> Duration {
        if self.jit() {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(3)
        }
    }

    /// The least warm-up its runs get: a JIT-compiled server climbs in
    /// steps (V8's tiers), and a stall between two steps looks like a
    /// plateau. Measured here (cluster.js, rr, 2 workers, from cold, 500 ms
    /// windows): `close` 3.0k, 3.1k, 4.5k, 5.6k, 6.4k, 6.3k, 6.5k, then
    /// 6.0-7.3k req/s; keep-alive 12k, 43k, 47k, 58k, 59k, 55k, then
    /// 49-58k: both on their plateau after 2.5 s of load. The plateau test
    /// still runs after this floor.
    pub fn min_warmup(&self) -> Duration {
        if self.jit() {
            Duration::from_secs(3)
        } else {
            Duration::ZERO
        }
    }

    /// Whether it compiles its hot paths while it serves (Node.js): its
    /// warm-up must show a plateau, two probes in a row that agree, not just
    /// one probe without a trend.
    pub fn jit(&self) -> bool {
        matches!(self, TargetSpec::Node(_))
    }

    /// Starts it and waits until it serves.
    pub fn start(&self, ctx: &StartCtx<'_>) -> Result<Box<dyn Running>, String> {
        match self {
            TargetSpec::Lab(strategy) => lab::start(strategy, ctx),
            TargetSpec::Nginx(mode) => nginx::start(*mode, ctx),
            TargetSpec::Apache => apache::start(ctx),
            TargetSpec::Node(policy) => node::start(*policy, ctx),
        }
    }
}

/// What starting a target needs.
pub struct StartCtx<'a> {
    /// The lab's binaries.
    pub bins: &'a Binaries,
    /// Worker processes.
    pub workers: usize,
    /// CPUs to pin the server to (empty: not pinned).
    pub cpus: &'a [usize],
    /// A directory for the run's files (configuration, logs, stats); the
    /// target may write there; the harness removes what it does not keep.
    pub work_dir: &'a Path,
    /// How long it may take to serve.
    pub ready_timeout: Duration,
    /// TEST ONLY: extra µs of CPU per request (lab strategies only; 0 normally).
    pub inject_cpu_us: u64,
    /// Whether the workload's connections carry more than one request
    /// ([`Workload::keeps_alive`]): Apache's `KeepAlive` follows it (a
    /// prefork child held by an idle keep-alive connection serves no one
    /// else); nginx, Node and the lab keep connections alive either way.
    pub keep_alive: bool,
}

/// A started target.
pub trait Running {
    /// `127.0.0.1:PORT`.
    fn addr(&self) -> String;
    /// The port.
    fn port(&self) -> u16 {
        self.addr()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }
    /// The master (or supervising) process.
    fn master_pid(&self) -> i32;
    /// The worker processes when it became ready.
    fn worker_pids(&self) -> Vec<i32>;
    /// The signal that asks for a graceful rolling restart, and whom it
    /// goes to (lab-server's master: SIGHUP, each worker in turn; nginx's
    /// master: SIGHUP, a reload: new workers start, the old ones finish
    /// their connections and exit; Apache's parent: SIGUSR1, a graceful
    /// restart, likewise all at once; the Node primary: SIGHUP, each worker in
    /// turn is replaced, then disconnected).
    fn restart_signal(&self) -> (i32, nix::sys::signal::Signal) {
        (self.master_pid(), nix::sys::signal::Signal::SIGHUP)
    }
    /// The kernel's TCP counters where it runs.
    fn kernel_counters(&self) -> crate::model::kernel::Counters {
        crate::measure::kernel::read_counters()
    }
    /// CPU time and context switches of one of its processes, now.
    fn usage(&self, pid: i32) -> Option<crate::model::kernel::ProcUsage> {
        crate::measure::kernel::proc_usage(pid)
    }
    /// Whether the harness can sample its accept queues (sock_diag of this
    /// machine's network namespace): not for a server on another host.
    fn local(&self) -> bool {
        true
    }
    /// Stops it (gracefully, then by force after `timeout`), leaving no
    /// process behind; returns the server's own per-worker counts where it
    /// has them (lab-server's stats file).
    fn stop(self: Box<Self>, timeout: Duration) -> Result<Option<ServerStats>, String>;
}

/// A free loopback port (bound and released; a reference server binds it
/// right after, by name).
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Polls until `addr` answers an HTTP request with a 200, or `timeout`.
pub fn wait_http_ok(addr: &str, timeout: Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let ok = (|| -> std::io::Result<bool> {
            let mut s = std::net::TcpStream::connect(addr)?;
            s.set_read_timeout(Some(Duration::from_millis(500)))?;
            s.write_all(b"GET / HTTP/1.1\r\nHost: ready\r\nConnection: close\r\n\r\n")?;
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf)?;
            Ok(buf[..n].starts_with(b"HTTP/1.1 200") || buf[..n].starts_with(b"HTTP/1.0 200"))
        })();
        if matches!(ok, Ok(true)) {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!("{addr} did not answer within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the harness runs as root (effective uid 0, from
/// `/proc/self/status`): Apache then needs `User`/`Group` for its children
/// (it refuses to run them as root), and only root loads eBPF programs.
pub(crate) fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::names::{all_targets, is_reference, REFERENCES};

    #[test]
    fn every_catalogue_name_is_a_target_and_agrees_on_being_a_reference() {
        for name in all_targets() {
            let spec = TargetSpec::parse(name).unwrap_or_else(|| panic!("{name} parses"));
            assert_eq!(spec.is_reference(), is_reference(name), "{name}");
            assert_eq!(
                spec.name(),
                name.strip_suffix(MIGRATE_SUFFIX).unwrap_or(name),
                "{name}"
            );
        }
        let servers: Vec<&str> = nginx::Mode::ALL
            .iter()
            .map(|m| m.name())
            .chain([apache::NAME])
            .chain(node::Policy::ALL.iter().map(|p| p.name()))
            .collect();
        assert_eq!(
            servers, REFERENCES,
            "every reference server is in the catalogue"
        );
        assert!(TargetSpec::parse("node:rr+migrate").is_none());
        assert!(!is_reference("node:rr+migrate"));
    }
}
