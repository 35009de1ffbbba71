//! What each role holds while the target runs, read from /proc: its
//! listening TCP sockets and, for each of its epoll instances, what is
//! registered there with which events. strace attaches after the target is
//! ready, so the listener's registration and the sockets inherited across
//! fork are not in the trace; this snapshot is where they show.
//!
//! A listening socket is a descriptor of /proc/PID/fd whose socket inode has
//! a row in state 0A (LISTEN) in /proc/PID/net/tcp or tcp6. An epoll
//! instance is a descriptor that reads `anon_inode:[eventpoll]`; its
//! registrations are the `tfd: N events: HEX ... ino: HEX` lines of
//! /proc/PID/fdinfo/FD, the events being the mask given to epoll_ctl as the
//! kernel keeps it (checked here by experiment: EPOLLEXCLUSIVE, EPOLLET and
//! EPOLLONESHOT stay in the mask; the kernel adds EPOLLERR and EPOLLHUP to
//! every registration, so those two are left out of the decoded names).
//! The descriptor table belongs to the process, so every thread's epoll is
//! listed (a Node process has several: the main loop's and libuv's own).
//!
//! Listeners are named by who holds them, not by number: `shared` (the
//! same socket in every worker), `own` (in exactly one worker), `master
//! only` (in the master and no worker), `some workers` otherwise.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::skeleton::Role;

/// One listening socket a role holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldListener {
    /// The descriptor in that process.
    pub fd: i32,
    /// The socket's inode (the same inode in two processes is the same
    /// open socket).
    pub inode: u64,
    /// Its local port.
    pub port: u16,
    /// Whether the descriptor has O_NONBLOCK (fdinfo `flags`).
    pub nonblocking: bool,
    /// `shared`, `own`, `master only` or `some workers` (see the module).
    pub identity: String,
}

/// One registration in an epoll instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The registered descriptor's number (`tfd`).
    pub tfd: i32,
    /// The registered file's inode (`ino`).
    pub inode: u64,
    /// Whether it is one of the listening sockets.
    pub listener: bool,
    /// The events, as the kernel keeps them (`events: HEX`).
    pub events_hex: String,
    /// The events by name (EPOLLERR and EPOLLHUP left out: the kernel
    /// adds them to every registration).
    pub events: Vec<String>,
}

/// One epoll instance of a role.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollFd {
    /// Its descriptor.
    pub fd: i32,
    /// What is registered in it.
    pub registrations: Vec<Registration>,
}

/// What one role holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleHoldings {
    /// `master`, `worker-0`.
    pub role: String,
    /// Its pid.
    pub pid: i32,
    /// Its listening TCP sockets.
    pub listeners: Vec<HeldListener>,
    /// Its epoll instances (several in a Node process).
    pub epolls: Vec<EpollFd>,
}

/// The snapshot, per role in the order given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holdings {
    /// Per role.
    pub roles: Vec<RoleHoldings>,
}

impl RoleHoldings {
    /// Whether this is a worker.
    pub fn is_worker(&self) -> bool {
        self.role.starts_with("worker-")
    }

    /// The events of every registration of a listener in this role's
    /// epolls.
    pub fn listener_registrations(&self) -> impl Iterator<Item = &Registration> {
        self.epolls
            .iter()
            .flat_map(|e| &e.registrations)
            .filter(|r| r.listener)
    }
}

/// Event bits by name, as in <sys/epoll.h>; EPOLLERR and EPOLLHUP are
/// left out (see the module).
const EVENT_BITS: &[(u32, &str)] = &[
    (0x001, "EPOLLIN"),
    (0x002, "EPOLLPRI"),
    (0x004, "EPOLLOUT"),
    (0x040, "EPOLLRDNORM"),
    (0x080, "EPOLLRDBAND"),
    (0x100, "EPOLLWRNORM"),
    (0x200, "EPOLLWRBAND"),
    (0x400, "EPOLLMSG"),
    (0x2000, "EPOLLRDHUP"),
    (1 << 28, "EPOLLEXCLUSIVE"),
    (1 << 29, "EPOLLWAKEUP"),
    (1 << 30, "EPOLLONESHOT"),
    (1 << 31, "EPOLLET"),
];

/// The names of the bits of an events mask, in the order of
/// [`EVENT_BITS`] (EPOLLERR and EPOLLHUP left out).
pub fn decode_events(mask: u32) -> Vec<String> {
    EVENT_BITS
        .iter()
        .filter(|(bit, _)| mask & bit != 0)
        .map(|(_, name)| name.to_string())
        .collect()
}

/// Listening sockets of /proc/net/tcp or tcp6 text: inode -> port.
pub fn parse_net_tcp(text: &str) -> HashMap<u64, u16> {
    let mut out = HashMap::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
        if cols.len() < 10 || cols[3] != "0A" {
            continue;
        }
        let port = cols[1]
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        if let (Some(port), Ok(inode)) = (port, cols[9].parse::<u64>()) {
            if inode != 0 {
                out.insert(inode, port);
            }
        }
    }
    out
}

/// The `flags:` (octal) of an fdinfo text.
fn fdinfo_flags(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
}

/// The registrations of an epoll's fdinfo text (`tfd: N events: HEX data:
/// HEX pos:N ino:HEX sdev:HEX`), `listener` telling which inodes are
/// listening sockets.
pub fn parse_epoll_fdinfo(text: &str, listener: &dyn Fn(u64) -> bool) -> Vec<Registration> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix("tfd:") else {
            continue;
        };
        let toks: Vec<&str> = rest.split_whitespace().collect();
        let Some(tfd) = toks.first().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let after = |key: &str| -> Option<&str> {
            // `events: HEX` (a separate token) or `ino:HEX` (joined).
            toks.iter().enumerate().find_map(|(i, t)| {
                if *t == key {
                    toks.get(i + 1).copied()
                } else {
                    t.strip_prefix(key)
                }
            })
        };
        let hex = after("events:").unwrap_or("0");
        let mask = u32::from_str_radix(hex, 16).unwrap_or(0);
        let inode = after("ino:")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or(0);
        out.push(Registration {
            tfd,
            inode,
            listener: listener(inode),
            events_hex: hex.to_string(),
            events: decode_events(mask),
        });
    }
    out
}

/// The socket inode of a /proc/PID/fd link (`socket:[12345]`).
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// One process's descriptors: (fd, link target).
fn fds(pid: i32) -> Vec<(i32, String)> {
    let mut v: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| {
                let e = e.ok()?;
                let n: i32 = e.file_name().to_str()?.parse().ok()?;
                let link = std::fs::read_link(e.path()).ok()?;
                Some((n, link.to_string_lossy().to_string()))
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Takes the snapshot of `roles` (pids as traced). A process that is gone
/// or unreadable holds nothing.
pub fn snapshot(roles: &[(Role, i32)]) -> Holdings {
    // Each process's own view (its network namespace).
    let mut listening: HashMap<u64, u16> = HashMap::new();
    for (_, pid) in roles {
        for f in ["tcp", "tcp6"] {
            let text = std::fs::read_to_string(format!("/proc/{pid}/net/{f}"));
            listening.extend(parse_net_tcp(&text.unwrap_or_default()));
        }
    }
    let is_listener = |inode: u64| listening.contains_key(&inode);
    let mut out = Holdings::default();
    for (role, pid) in roles {
        let mut h = RoleHoldings {
            role: role.name(),
            pid: *pid,
            ..RoleHoldings::default()
        };
        for (fd, link) in fds(*pid) {
            let info = || std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"));
            if let Some(inode) = socket_inode(&link).filter(|i| is_listener(*i)) {
                let flags = info().ok().as_deref().and_then(fdinfo_flags).unwrap_or(0);
                h.listeners.push(HeldListener {
                    fd,
                    inode,
                    port: listening[&inode],
                    nonblocking: flags & libc::O_NONBLOCK as u32 != 0,
                    identity: String::new(),
                });
            } else if link == "anon_inode:[eventpoll]" {
                let text = info().unwrap_or_default();
                h.epolls.push(EpollFd {
                    fd,
                    registrations: parse_epoll_fdinfo(&text, &is_listener),
                });
            }
        }
        out.roles.push(h);
    }
    name_listeners(&mut out);
    out
}

/// Sets each held listener's identity from who else holds its inode.
pub fn name_listeners(h: &mut Holdings) {
    let workers = h.roles.iter().filter(|r| r.is_worker()).count();
    let mut holders: HashMap<u64, (bool, usize)> = HashMap::new();
    for r in &h.roles {
        for l in &r.listeners {
            let e = holders.entry(l.inode).or_default();
            if r.is_worker() {
                e.1 += 1;
            } else {
                e.0 = true;
            }
        }
    }
    for r in &mut h.roles {
        for l in &mut r.listeners {
            let (_, in_workers) = holders[&l.inode];
            l.identity = match in_workers {
                0 => "master only",
                n if n == workers && workers > 1 => "shared",
                1 => "own",
                _ => "some workers",
            }
            .to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_tcp_rows_in_listen_state_give_inode_and_port() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:B6A9 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 171 1 0000 100 0 0 10 0\n\
   1: 0100007F:B6A9 0100007F:C1D2 01 00000000:00000000 00:00000000 00000000     0        0 172 1 0000 100 0 0 10 0\n";
        let m = parse_net_tcp(text);
        assert_eq!(m.len(), 1);
        assert_eq!(m[&171], 0xB6A9);
    }

    #[test]
    fn epoll_fdinfo_lines_decode_exclusive_and_edge() {
        // Read here from a socket registered with EPOLLIN|EPOLLEXCLUSIVE and
        // another with EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLONESHOT|EPOLLET.
        let text = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1039\n\
tfd:        3 events: 10000019 data:                3  pos:0 ino:494160a sdev:9\n\
tfd:        5 events: c000201d data:                5  pos:0 ino:12 sdev:9\n";
        let regs = parse_epoll_fdinfo(text, &|i| i == 0x494160a);
        assert_eq!(regs.len(), 2);
        assert_eq!(regs[0].tfd, 3);
        assert!(regs[0].listener);
        assert_eq!(regs[0].events, ["EPOLLIN", "EPOLLEXCLUSIVE"]);
        assert!(!regs[1].listener);
        assert_eq!(
            regs[1].events,
            [
                "EPOLLIN",
                "EPOLLOUT",
                "EPOLLRDHUP",
                "EPOLLONESHOT",
                "EPOLLET"
            ]
        );
    }

    fn held(role: &str, inodes: &[u64]) -> RoleHoldings {
        RoleHoldings {
            role: role.into(),
            listeners: inodes
                .iter()
                .map(|&inode| HeldListener {
                    inode,
                    ..HeldListener::default()
                })
                .collect(),
            ..RoleHoldings::default()
        }
    }

    #[test]
    fn listeners_are_named_by_who_holds_them() {
        let mut h = Holdings {
            roles: vec![
                held("master", &[1, 2, 3, 9]),
                held("worker-0", &[1, 2]),
                held("worker-1", &[1, 3]),
            ],
        };
        name_listeners(&mut h);
        let ids = |i: usize| -> Vec<&str> {
            h.roles[i]
                .listeners
                .iter()
                .map(|l| l.identity.as_str())
                .collect()
        };
        assert_eq!(ids(0), ["shared", "own", "own", "master only"]);
        assert_eq!(ids(1), ["shared", "own"]);
    }

    #[test]
    fn a_snapshot_of_this_process_finds_its_blocking_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let pid = std::process::id() as i32;
        let h = snapshot(&[(Role::Master, pid)]);
        assert!(
            h.roles[0]
                .listeners
                .iter()
                .any(|x| x.port == port && x.identity == "master only" && !x.nonblocking),
            "{h:?}"
        );
    }
}
