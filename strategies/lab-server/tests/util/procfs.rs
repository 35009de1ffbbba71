//! Reading the kernel's view of the server from `/proc`: processes, their
//! socket fds, `/proc/net/tcp{,6}` rows, fd flags and epoll registrations.

use std::collections::BTreeSet;
use std::fs;

/// `/proc/net/tcp` state code for LISTEN.
pub const TCP_LISTEN: u8 = 0x0A;
/// `/proc/net/tcp` state code for ESTABLISHED.
pub const TCP_ESTABLISHED: u8 = 0x01;
/// `O_CLOEXEC` as the kernel prints it (octal) in `/proc/PID/fdinfo/FD`.
pub const O_CLOEXEC: u32 = 0o2000000;
/// `O_NONBLOCK` as the kernel prints it (octal) in `/proc/PID/fdinfo/FD`.
pub const O_NONBLOCK: u32 = 0o4000;
/// `EPOLLEXCLUSIVE` in the `events:` mask of an epoll fdinfo `tfd:` line.
pub const EPOLLEXCLUSIVE: u32 = 1 << 28;
/// `EPOLLET` in the `events:` mask of an epoll fdinfo `tfd:` line.
pub const EPOLLET: u32 = 1 << 31;

/// The fields of `/proc/PID/stat` the tests use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// One-letter state (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Parent pid.
    pub ppid: i32,
    /// Start time in clock ticks since boot: with the pid, identifies one process.
    pub starttime: u64,
}

/// Parses `/proc/PID/stat`; `None` if the process does not exist (any more).
pub fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) may contain spaces and parentheses: everything after the
    // *last* ')' is space-separated, starting with field 3 (state).
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        starttime: fields.get(19)?.parse().ok()?,
    })
}

/// The parent pid of `pid`, if it exists.
pub fn ppid(pid: i32) -> Option<i32> {
    stat(pid).map(|s| s.ppid)
}

/// Whether `pid` exists and is not a zombie (or dead but not yet gone).
pub fn is_alive(pid: i32) -> bool {
    matches!(stat(pid), Some(s) if !matches!(s.state, 'Z' | 'X' | 'x'))
}

/// Every live (non-zombie) process whose parent is `parent`, found by
/// scanning `/proc/*/stat`.
pub fn live_children(parent: i32) -> BTreeSet<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| matches!(stat(pid), Some(s) if s.ppid == parent && !matches!(s.state, 'Z' | 'X' | 'x')))
        .collect()
}

/// Every process (not thread) id listed in `/proc`.
pub fn all_pids() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// A line of `/proc/PID/status`, e.g. `Cpus_allowed_list`, trimmed.
pub fn status_field(pid: i32, name: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(name)?
            .strip_prefix(':')
            .map(|v| v.trim().to_string())
    })
}

/// What each fd of `pid` points at: `(fd, readlink target)`.
pub fn fd_targets(pid: i32) -> Vec<(i32, String)> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut out: Vec<(i32, String)> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = fs::read_link(e.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect();
    out.sort();
    out
}

/// The socket fds of `pid` with their inodes: `(fd, inode)` for every
/// `socket:[INODE]` link in `/proc/PID/fd`.
pub fn socket_fds(pid: i32) -> Vec<(i32, u64)> {
    fd_targets(pid)
        .into_iter()
        .filter_map(|(fd, t)| {
            Some((
                fd,
                t.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse()
                    .ok()?,
            ))
        })
        .collect()
}

/// The fd numbers under which `pid` holds the socket `inode` (empty if none).
pub fn fds_holding(pid: i32, inode: u64) -> Vec<i32> {
    socket_fds(pid)
        .into_iter()
        .filter(|&(_, ino)| ino == inode)
        .map(|(fd, _)| fd)
        .collect()
}

/// One row of `/proc/net/tcp` or `/proc/net/tcp6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpRow {
    /// Local port.
    pub local_port: u16,
    /// Remote port (0 for a listener).
    pub remote_port: u16,
    /// State code (`TCP_LISTEN`, `TCP_ESTABLISHED`, ...).
    pub state: u8,
    /// Socket inode; 0 for a connection not yet accepted (no file yet).
    pub inode: u64,
    /// `rx_queue`: for a LISTEN socket, the connections in its accept queue
    /// (handshake complete, not accepted yet).
    pub rx_queue: u64,
}

/// Every row of `/proc/net/tcp` and `/proc/net/tcp6`, as the calling
/// thread's network namespace has them (`/proc/net` is the process's, which
/// differs for a test thread that entered a namespace of its own).
pub fn tcp_rows() -> Vec<TcpRow> {
    let mut rows = Vec::new();
    for file in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        // Columns: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
            let parsed = (|| {
                Some(TcpRow {
                    local_port: port(cols.get(1)?)?,
                    remote_port: port(cols.get(2)?)?,
                    state: u8::from_str_radix(cols.get(3)?, 16).ok()?,
                    inode: cols.get(9)?.parse().ok()?,
                    rx_queue: u64::from_str_radix(cols.get(4)?.split_once(':')?.1, 16).ok()?,
                })
            })();
            rows.extend(parsed);
        }
    }
    rows
}

/// The inodes of every LISTEN socket on `port`, in row order (may repeat
/// nothing: each row is one socket).
pub fn listen_inodes(port: u16) -> Vec<u64> {
    tcp_rows()
        .into_iter()
        .filter(|r| r.local_port == port && r.state == TCP_LISTEN)
        .map(|r| r.inode)
        .collect()
}

/// The accept queue length of the LISTEN socket `inode`, if there is one.
pub fn accept_queue(inode: u64) -> Option<u64> {
    tcp_rows()
        .into_iter()
        .find(|r| r.inode == inode && r.state == TCP_LISTEN)
        .map(|r| r.rx_queue)
}

/// The server-side ESTABLISHED socket of the connection from client port
/// `client_port` to server port `server_port`, once it has an inode
/// (i.e. once it has been accepted).
pub fn server_side_inode(server_port: u16, client_port: u16) -> Option<u64> {
    tcp_rows()
        .into_iter()
        .find(|r| {
            r.local_port == server_port
                && r.remote_port == client_port
                && r.state == TCP_ESTABLISHED
                && r.inode != 0
        })
        .map(|r| r.inode)
}

/// The `flags:` of `/proc/PID/fdinfo/FD` (printed in octal by the kernel).
pub fn fd_flags(pid: i32, fd: i32) -> Option<u32> {
    let text = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    text.lines()
        .find_map(|l| u32::from_str_radix(l.strip_prefix("flags:")?.trim(), 8).ok())
}

/// One registration in an epoll instance (a `tfd:` line of its fdinfo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpollEntry {
    /// The epoll fd in the process.
    pub epfd: i32,
    /// The registered fd number.
    pub tfd: i32,
    /// The registered events mask (`events:` is hex).
    pub events: u32,
    /// Inode of the registered file (`ino:` is hex).
    pub ino: u64,
}

/// Every registration of every epoll instance `pid` holds.
pub fn epoll_entries(pid: i32) -> Vec<EpollEntry> {
    let mut out = Vec::new();
    for (epfd, target) in fd_targets(pid) {
        if target != "anon_inode:[eventpoll]" {
            continue;
        }
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/fdinfo/{epfd}")) else {
            continue;
        };
        // tfd:        5 events:       19 data:                5  pos:0 ino:61 sdev:8
        for line in text.lines().filter(|l| l.starts_with("tfd:")) {
            let toks: Vec<&str> = line.split_whitespace().collect();
            let after = |key: &str| {
                toks.iter()
                    .position(|t| *t == key)
                    .and_then(|i| toks.get(i + 1))
                    .copied()
            };
            let parsed = (|| {
                Some(EpollEntry {
                    epfd,
                    tfd: after("tfd:")?.parse().ok()?,
                    events: u32::from_str_radix(after("events:")?, 16).ok()?,
                    ino: u64::from_str_radix(toks.iter().find_map(|t| t.strip_prefix("ino:"))?, 16)
                        .ok()?,
                })
            })();
            out.extend(parsed);
        }
    }
    out
}

/// The registrations of socket `inode` in `pid`'s epoll instances.
pub fn epoll_entries_for(pid: i32, inode: u64) -> Vec<EpollEntry> {
    epoll_entries(pid)
        .into_iter()
        .filter(|e| e.ino == inode)
        .collect()
}

/// TCP connections in `pid`'s descriptor table (not its listener: a
/// listener's row has remote port 0).
pub fn tcp_connections_of(pid: i32) -> usize {
    let conns: BTreeSet<u64> = tcp_rows()
        .into_iter()
        .filter(|r| r.remote_port != 0 && r.inode != 0)
        .map(|r| r.inode)
        .collect();
    socket_fds(pid)
        .into_iter()
        .filter(|(_, ino)| conns.contains(ino))
        .count()
}
