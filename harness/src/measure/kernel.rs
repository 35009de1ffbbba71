//! What the kernel tells about a run: TCP counters (`/proc/net/netstat`,
//! `/proc/net/snmp`), accept-queue depth per listening socket (from
//! NETLINK_SOCK_DIAG, [`super::sockdiag`]; `/proc/net/tcp` where that is
//! missing), and per-process CPU time and context switches (`/proc/PID`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::sockdiag::SockDiag;
use crate::model::kernel::{Counters, ListenerQueue, ProcUsage, QueueSamples};

/// TcpExt counters recorded (`/proc/net/netstat`): connections dropped for a
/// full accept queue or SYN queue, SYN cookies sent and checked, what
/// `tcp_migrate_req` moved to a sibling listener or failed to, and the
/// resets sent when a socket was closed with data in flight.
pub const TCP_EXT: &[&str] = &[
    "ListenOverflows",
    "ListenDrops",
    "TCPReqQFullDrop",
    "TCPReqQFullDoCookies",
    "SyncookiesSent",
    "SyncookiesRecv",
    "SyncookiesFailed",
    "TCPMigrateReqSuccess",
    "TCPMigrateReqFailure",
    "TCPAbortOnClose",
    "TCPAbortOnData",
];

/// Tcp counters recorded (`/proc/net/snmp`): resets sent, established
/// connections reset, connection attempts that failed.
pub const TCP: &[&str] = &["OutRsts", "EstabResets", "AttemptFails"];

/// Parses the two-line "Prefix: names" / "Prefix: values" format of
/// `/proc/net/netstat` and `/proc/net/snmp`, keeping `prefix` entries.
pub fn parse_proc_net(text: &str, prefix: &str, wanted: &[&str]) -> Counters {
    let mut out = Counters::new();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{prefix}:")))
        .collect();
    for pair in lines.chunks(2) {
        if let [names, values] = pair {
            let names = names.split_whitespace().skip(1);
            let values = values.split_whitespace().skip(1);
            for (n, v) in names.zip(values) {
                if wanted.contains(&n) {
                    if let Ok(v) = v.parse() {
                        out.insert(n.to_string(), v);
                    }
                }
            }
        }
    }
    out
}

/// Reads the TcpExt counters and Tcp OutRsts now.
pub fn read_counters() -> Counters {
    counters_from(
        &std::fs::read_to_string("/proc/net/netstat").unwrap_or_default(),
        &std::fs::read_to_string("/proc/net/snmp").unwrap_or_default(),
    )
}

/// The counters from the text of `/proc/net/netstat` and `/proc/net/snmp`
/// (read here, or on a remote host).
pub fn counters_from(netstat: &str, snmp: &str) -> Counters {
    let mut c = parse_proc_net(netstat, "TcpExt", TCP_EXT);
    c.extend(parse_proc_net(snmp, "Tcp", TCP));
    c
}

/// A process's usage from the text of `/proc/PID/status` and the first
/// field (run time, ns) of each of its threads' `schedstat`.
pub fn usage_from(status: &str, thread_run_ns: &[u64]) -> ProcUsage {
    ProcUsage {
        cpu_us: thread_run_ns.iter().sum::<u64>() / 1000,
        voluntary_ctxt_switches: status_field(status, "voluntary_ctxt_switches:"),
        involuntary_ctxt_switches: status_field(status, "nonvoluntary_ctxt_switches:"),
    }
}

/// `after - before`, per counter (counters missing on this kernel are absent).
pub fn delta(before: &Counters, after: &Counters) -> Counters {
    after
        .iter()
        .map(|(k, a)| {
            (
                k.clone(),
                a.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .collect()
}

/// One LISTEN socket's row: inode and accept-queue length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenRow {
    /// Socket inode.
    pub inode: u64,
    /// Connections waiting in its accept queue.
    pub queue: u64,
}

/// LISTEN rows on `port` in `/proc/net/tcp`-format text (for a LISTEN
/// socket `rx_queue` is the accept queue's length). The sampler's fallback
/// where NETLINK_SOCK_DIAG is missing: reading these files formats every
/// TCP socket of the machine, TIME_WAIT ones included.
pub fn listen_rows(text: &str, port: u16) -> Vec<ListenRow> {
    let mut rows = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[3] != "0A" {
            continue;
        }
        let Some(local_port) = f[1]
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
        else {
            continue;
        };
        if local_port != port {
            continue;
        }
        let queue = f[4]
            .split(':')
            .nth(1)
            .and_then(|q| u64::from_str_radix(q, 16).ok())
            .unwrap_or(0);
        if let Ok(inode) = f[9].parse() {
            rows.push(ListenRow { inode, queue });
        }
    }
    rows
}

/// Samples the accept queues of a port's listeners in a thread until
/// stopped.
pub struct QueueSampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<QueueSamples>,
}

/// The listeners on `port` and their queues now: from `diag` when there is
/// one and it answers, else from `/proc/net/tcp{,6}`.
fn sample_listeners(diag: Option<&mut SockDiag>, port: u16) -> Vec<ListenRow> {
    if let Some(Ok(found)) = diag.map(|d| d.listeners(port)) {
        return found
            .into_iter()
            .map(|l| ListenRow {
                inode: l.inode,
                queue: l.queue,
            })
            .collect();
    }
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|file| listen_rows(&std::fs::read_to_string(file).unwrap_or_default(), port))
        .collect()
}

impl QueueSampler {
    /// Starts sampling the listeners on `port` every `interval`.
    pub fn start(port: u16, interval: Duration) -> QueueSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            // Fallback: a kernel without sock_diag / inet_diag (or one that
            // refuses the socket) leaves only /proc/net/tcp, which costs far
            // more a read when many sockets exist (see `sockdiag`), but
            // gives the same figures.
            let mut diag = SockDiag::open().ok();
            let mut per: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new(); // inode -> (max, sum, n)
            let mut samples = 0;
            while !flag.load(Ordering::Relaxed) {
                for row in sample_listeners(diag.as_mut(), port) {
                    let e = per.entry(row.inode).or_default();
                    e.0 = e.0.max(row.queue);
                    e.1 += row.queue;
                    e.2 += 1;
                }
                samples += 1;
                std::thread::sleep(interval);
            }
            QueueSamples {
                interval_ms: interval.as_millis() as u64,
                samples,
                listeners: per
                    .into_iter()
                    .map(|(inode, (max, sum, n))| ListenerQueue {
                        inode,
                        max,
                        mean: sum as f64 / n.max(1) as f64,
                    })
                    .collect(),
            }
        });
        QueueSampler { stop, handle }
    }

    /// Stops and returns what was seen.
    pub fn finish(self) -> QueueSamples {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// A `Name:  value` field of a `/proc/.../status` file (0 if missing).
fn status_field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Reads `pid`'s usage now, all its threads added (`/proc/PID/status`
/// counts the context switches of the main thread only; each thread's are
/// in `/proc/PID/task/TID/status`); `None` if the process is gone.
pub fn proc_usage(pid: i32) -> Option<ProcUsage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut cpu_ns = 0u64;
    let mut have_schedstat = false;
    let (mut voluntary, mut involuntary, mut threads) = (0, 0, 0);
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                if let Some(ns) = s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    cpu_ns += ns;
                    have_schedstat = true;
                }
            }
            if let Ok(s) = std::fs::read_to_string(t.path().join("status")) {
                voluntary += status_field(&s, "voluntary_ctxt_switches:");
                involuntary += status_field(&s, "nonvoluntary_ctxt_switches:");
                threads += 1;
            }
        }
    }
    if threads == 0 {
        voluntary = status_field(&status, "voluntary_ctxt_switches:");
        involuntary = status_field(&status, "nonvoluntary_ctxt_switches:");
    }
    let cpu_us = if have_schedstat {
        cpu_ns / 1000
    } else {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may contain spaces): utime is
        // the 14th field overall, stime the 15th.
        let after = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as u64;
        ticks * 1_000_000 / hz
    };
    Some(ProcUsage {
        cpu_us,
        voluntary_ctxt_switches: voluntary,
        involuntary_ctxt_switches: involuntary,
    })
}

/// `after - before`.
pub fn usage_delta(before: ProcUsage, after: ProcUsage) -> ProcUsage {
    ProcUsage {
        cpu_us: after.cpu_us.saturating_sub(before.cpu_us),
        voluntary_ctxt_switches: after
            .voluntary_ctxt_switches
            .saturating_sub(before.voluntary_ctxt_switches),
        involuntary_ctxt_switches: after
            .involuntary_ctxt_switches
            .saturating_sub(before.involuntary_ctxt_switches),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netstat_pairs_are_matched_by_prefix() {
        let text = "TcpExt: SyncookiesSent ListenOverflows PAWSActive ListenDrops\nTcpExt: 1 7 4 9\nIpExt: InNoRoutes\nIpExt: 3\n";
        let c = parse_proc_net(text, "TcpExt", TCP_EXT);
        assert_eq!(c.get("SyncookiesSent"), Some(&1));
        assert_eq!(c.get("ListenOverflows"), Some(&7));
        assert_eq!(c.get("ListenDrops"), Some(&9));
        assert_eq!(c.len(), 3, "only the counters asked for: {c:?}");
    }

    #[test]
    fn listen_rows_read_the_accept_queue_of_listeners_on_the_port() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 12345 1\n   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 12346 1\n   2: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12347 1\n";
        assert_eq!(
            listen_rows(text, 8080),
            vec![ListenRow {
                inode: 12345,
                queue: 3
            }]
        );
    }

    #[test]
    fn counters_delta_saturates() {
        let before = Counters::from([("A".to_string(), 5), ("B".to_string(), 1)]);
        let after = Counters::from([("A".to_string(), 8), ("B".to_string(), 0)]);
        assert_eq!(
            delta(&before, &after),
            Counters::from([("A".to_string(), 3), ("B".to_string(), 0)])
        );
    }

    #[test]
    fn own_process_usage_is_readable() {
        let u = proc_usage(std::process::id() as i32).expect("our own /proc entry");
        assert!(u.voluntary_ctxt_switches + u.involuntary_ctxt_switches > 0);
    }
}
