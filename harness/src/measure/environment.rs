//! The machine a session ran on, recorded with every result: kernel version
//! (4.5, 4.6, 5.14 and 6.1 each change how these mechanisms behave), CPUs,
//! the sysctls that shape accept queues and ports, and tool versions.

use std::collections::BTreeMap;
use std::process::Command;

use crate::model::environment::Environment;

/// The sysctls recorded with every session: the accept-queue and SYN-queue
/// limits (`somaxconn`, `tcp_max_syn_backlog`), what a full queue does
/// (`tcp_syncookies`, `tcp_abort_on_overflow`), whether a closing
/// SO_REUSEPORT listener hands its queue to a sibling (`tcp_migrate_req`),
/// and how many client ports a load generator has (`ip_local_port_range`,
/// `tcp_tw_reuse`): each changes what the strategies are seen to do.
pub const SYSCTLS: &[&str] = &[
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_abort_on_overflow",
    "net.ipv4.tcp_migrate_req",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_tw_reuse",
];

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    let s = String::from_utf8_lossy(&text)
        .lines()
        .next()?
        .trim()
        .to_string();
    (!s.is_empty()).then_some(s)
}

/// CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap_or(false))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the environment of this machine now.
pub fn capture() -> Environment {
    let sysctls = SYSCTLS
        .iter()
        .filter_map(|name| {
            let path = format!("/proc/sys/{}", name.replace('.', "/"));
            read(&path).map(|v| {
                (
                    name.to_string(),
                    v.split_whitespace().collect::<Vec<_>>().join(" "),
                )
            })
        })
        .collect();
    let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let memory_mib = read("/proc/meminfo")
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024);
    let git_commit = match (
        output("git", &["rev-parse", "HEAD"]),
        Command::new("git").args(["status", "--porcelain"]).output(),
    ) {
        (Some(head), Ok(status)) if !status.stdout.is_empty() => format!("{head}-dirty"),
        (Some(head), _) => head,
        _ => "unknown".into(),
    };
    let mut tools = BTreeMap::new();
    for (name, args) in [
        ("nginx", &["-v"][..]),
        ("apache2", &["-v"][..]),
        ("node", &["--version"][..]),
    ] {
        if let Some(v) = output(name, args) {
            tools.insert(name.to_string(), v);
        }
    }
    Environment {
        kernel: read("/proc/sys/kernel/osrelease").unwrap_or_default(),
        cpus_allowed: allowed_cpus(),
        cpus_online: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model,
        memory_mib,
        sysctls,
        git_commit,
        rustc: output("rustc", &["--version"]).unwrap_or_default(),
        tools,
        hostname: read("/proc/sys/kernel/hostname").unwrap_or_default(),
    }
}
