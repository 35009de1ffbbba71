//! The skeleton of a connection's life: the system calls of each role
//! (master, worker i) with descriptors named by what they are (listener,
//! channel to worker i, the connection, epoll) instead of numbers, which
//! differ from run to run and from server to server. Two servers that share
//! connections the same way have the same skeleton; that is what lets a
//! twin be compared with its real server.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::holdings::Holdings;
use super::strace::{is_accept, is_wait, is_write, parse_fd, scm_rights, split_top, Event, Fd};

/// A process of the target, by what it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The master (Node's primary, nginx's master).
    Master,
    /// Worker i (0-based, in the target's order).
    Worker(usize),
}

impl Role {
    /// `master`, `worker-0`.
    pub fn name(&self) -> String {
        match self {
            Role::Master => "master".into(),
            Role::Worker(i) => format!("worker-{i}"),
        }
    }
}

/// The events of one role: every thread of the process, in time order.
#[derive(Clone, Debug)]
pub struct RoleTrace {
    /// Who.
    pub role: Role,
    /// Its process id.
    pub pid: i32,
    /// Its system calls.
    pub events: Vec<Event>,
}

/// One system call, normalised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The system call (`accept4`).
    pub call: String,
    /// The descriptor it works on, by role (`listener`, `conn`, `epoll`,
    /// `channel-to-worker-0`, `channel-from-master`).
    pub fd: Option<String>,
    /// The flags it was given (`SOCK_CLOEXEC`, `EPOLL_CTL_ADD`, ...).
    pub flags: Vec<String>,
    /// Descriptors carried with `SCM_RIGHTS`, if any.
    pub scm_rights_fds: Option<usize>,
    /// What it returned: a descriptor's role, an errno name, or the number.
    pub ret: String,
    /// The whole call, normalised, for people.
    pub text: String,
    /// The call as strace printed it (without its time and thread).
    #[serde(default)]
    pub raw: String,
    /// When it was made: strace's `-tt` time of day in microseconds (for
    /// ordering the roles' calls against each other, never for timing).
    #[serde(default)]
    pub time_us: u64,
    /// How long it took (strace's `-T`), microseconds.
    #[serde(default)]
    pub dur_us: u64,
}

/// Per-connection counts over the sequential connections.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Roles whose accept returned a connection.
    pub who_accepts: Vec<String>,
    /// Successful accepts.
    pub accepts: usize,
    /// Accepts that returned EAGAIN, per connection.
    pub accept_eagain_per_conn: f64,
    /// Returns from epoll_wait (or poll) of the accepting roles, per
    /// connection.
    pub wakeups_per_conn: f64,
    /// Of those, returns after which the role accepted nothing, per connection.
    pub wakeups_without_accept_per_conn: f64,
    /// Successful accepts per wakeup of the accepting roles.
    pub accepts_per_wakeup: f64,
    /// sendmsg calls with SCM_RIGHTS, per connection.
    pub scm_rights_messages_per_conn: f64,
    /// The numbers of descriptors those messages carried (distinct values).
    pub fds_per_message: Vec<usize>,
    /// Messages a worker sent back on its channel, per hand-off.
    pub replies_per_handoff: f64,
}

/// What each role did during the burst (after the sequential connections).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BurstRole {
    /// Who.
    pub role: String,
    /// Accepts that returned a connection.
    pub accepts: usize,
    /// Accepts that returned EAGAIN.
    pub accept_eagain: usize,
    /// Returns from epoll_wait / poll.
    pub wakeups: usize,
    /// Descriptors received with SCM_RIGHTS.
    pub received_fds: usize,
}

/// `skeleton.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Skeleton {
    /// The target's name.
    pub target: String,
    /// Worker processes.
    pub workers: usize,
    /// Sequential connections.
    pub connections: usize,
    /// Concurrent connections of the burst.
    pub burst: usize,
    /// `uname -r`.
    pub kernel: String,
    /// `strace -V`, first line.
    pub strace: String,
    /// When the trace was taken, ms since the Unix epoch.
    #[serde(default)]
    pub taken_unix_ms: u64,
    /// The master's pid and the workers', as traced.
    pub pids: Vec<(String, i32)>,
    /// The client address of the connection whose life is shown (the first
    /// sequential one whose accept, and the call before it, were seen).
    pub connection: String,
    /// Per role, the calls of that connection's life, in order (roles
    /// that never touched it are left out).
    pub life: Vec<(String, Vec<Call>)>,
    /// Counts over the sequential connections.
    pub sequential: Counts,
    /// Per role, over the burst.
    pub burst_roles: Vec<BurstRole>,
    /// Per role, every epoll_ctl on the listener over the whole trace, in
    /// order, one string per loop turn (the calls of a thread between two
    /// of its waits, joined with ` + `): the operation and, for an add or
    /// modify, the events (`EPOLL_CTL_DEL + EPOLL_CTL_ADD
    /// EPOLLIN|EPOLLEXCLUSIVE`); roles with none left out.
    #[serde(default)]
    pub listener_ctl: Vec<(String, Vec<String>)>,
    /// What each role held while the target ran (from /proc; the session
    /// sets it).
    #[serde(default)]
    pub holdings: Holdings,
}

/// Names descriptors by role for one trace.
struct Namer {
    /// Master-side channel `(a, b)` inode pair -> worker.
    to_worker: HashMap<(u64, u64), usize>,
    /// Channel pairs the master holds.
    master_pairs: Vec<(u64, u64)>,
}

fn unix_pair(path: &str) -> Option<(u64, u64)> {
    let inner = path.split_once(":[")?.1.strip_suffix(']')?;
    let (a, b) = inner.split_once("->")?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn is_unix(path: &str) -> bool {
    path.starts_with("UNIX")
}

fn is_tcp(path: &str) -> bool {
    path.starts_with("TCP")
}

/// Every descriptor path in an event's text.
fn paths(e: &Event) -> Vec<String> {
    let mut out = Vec::new();
    let mut texts: Vec<&str> = vec![&e.args];
    if let Some(r) = &e.ret {
        texts.push(r);
    }
    for t in texts {
        for (i, _) in t.match_indices('<') {
            let before = &t[..i];
            if before.ends_with(|c: char| c.is_ascii_digit()) {
                if let Some(fd) = parse_fd(
                    &t[before
                        .rfind(|c: char| !c.is_ascii_digit())
                        .map_or(0, |j| j + 1)..],
                ) {
                    out.push(fd.path);
                }
            }
        }
    }
    out
}

impl Namer {
    fn new(roles: &[RoleTrace]) -> Namer {
        let mut worker_pairs: Vec<(usize, (u64, u64))> = Vec::new();
        let mut master_pairs = Vec::new();
        for r in roles {
            for e in &r.events {
                for p in paths(e) {
                    if !is_unix(&p) {
                        continue;
                    }
                    if let Some(pair) = unix_pair(&p) {
                        match r.role {
                            Role::Master => master_pairs.push(pair),
                            Role::Worker(i) => worker_pairs.push((i, pair)),
                        }
                    }
                }
            }
        }
        let mut to_worker = HashMap::new();
        for &(a, b) in &master_pairs {
            if let Some((i, _)) = worker_pairs.iter().find(|(_, p)| *p == (b, a)) {
                to_worker.insert((a, b), *i);
            }
        }
        Namer {
            to_worker,
            master_pairs,
        }
    }

    fn name(&self, role: Role, fd: &Fd, conn_key: &str) -> String {
        let p = &fd.path;
        if p.is_empty() {
            return format!("fd{}", fd.num);
        }
        if is_tcp(p) {
            return if !p.contains("->") {
                "listener".into()
            } else if p.ends_with(conn_key) {
                "conn".into()
            } else {
                "other-conn".into()
            };
        }
        if is_unix(p) {
            if let Some(pair) = unix_pair(p) {
                match role {
                    Role::Master => {
                        if let Some(i) = self.to_worker.get(&pair) {
                            return format!("channel-to-worker-{i}");
                        }
                    }
                    Role::Worker(_) => {
                        if self.master_pairs.contains(&(pair.1, pair.0)) {
                            return "channel-from-master".into();
                        }
                    }
                }
            }
            return "unix".into();
        }
        if p.contains("eventpoll") {
            return "epoll".into();
        }
        if p.starts_with("pipe:") {
            return "pipe".into();
        }
        if p.starts_with("anon_inode:") {
            return p
                .trim_start_matches("anon_inode:")
                .trim_matches(['[', ']'])
                .into();
        }
        "file".into()
    }
}

/// Flags worth keeping, wherever they appear in a call's arguments.
const FLAGS: &[&str] = &[
    "SOCK_NONBLOCK",
    "SOCK_CLOEXEC",
    "SCM_RIGHTS",
    "MSG_CMSG_CLOEXEC",
    "MSG_NOSIGNAL",
    "MSG_DONTWAIT",
    "EPOLLEXCLUSIVE",
    "EPOLLONESHOT",
    "EPOLLET",
    "EPOLL_CTL_ADD",
    "EPOLL_CTL_DEL",
    "EPOLL_CTL_MOD",
];

fn without_strings(s: &str) -> String {
    let mut out = String::new();
    let mut in_str = false;
    let mut escaped = false;
    for c in s.chars() {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        if c == '"' {
            in_str = true;
            out.push_str("\"\"");
            continue;
        }
        out.push(c);
    }
    out
}

/// A string argument summarised: its start, so that Node's
/// `{"cmd":"NODE_HANDLE"...` and the lab's frames stay recognisable.
fn summarise_string(s: &str) -> String {
    let inner = s.strip_prefix('"').unwrap_or(s);
    let inner = &inner[..string_end(inner)];
    let mut short: String = inner.chars().take(48).collect();
    // Not a dangling half of an escape.
    while short.ends_with('\\') && !short.ends_with("\\\\") {
        short.pop();
    }
    let more = if short.len() < inner.len() { "..." } else { "" };
    format!("\"{short}\"{more}")
}

/// Where a string strace printed ends (the index of its closing quote, in
/// the text after the opening one), escapes skipped.
fn string_end(s: &str) -> usize {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return i;
        }
    }
    s.len()
}

impl Namer {
    fn normalise(&self, role: Role, e: &Event, conn_key: &str) -> Call {
        let flags_text = if is_wait(&e.name) {
            String::new()
        } else {
            without_strings(&e.args)
        };
        let mut flags: Vec<String> = Vec::new();
        for tok in flags_text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if FLAGS.contains(&tok) && !flags.iter().any(|f| f == tok) {
                flags.push(tok.to_string());
            }
        }
        let rights = scm_rights(&e.args);
        let mut fd = None;
        let mut shown: Vec<String> = Vec::new();
        for (i, a) in split_top(&e.args).iter().enumerate() {
            let piece = if let Some(f) = parse_fd(a).filter(|f| !f.path.is_empty()) {
                let n = self.name(role, &f, conn_key);
                if i == 0 {
                    fd = Some(n.clone());
                }
                n
            } else if a.starts_with('"') {
                summarise_string(a)
            } else if a.starts_with('{') && a.contains("msg_") {
                // A message: its payload's start, and what it carries.
                let payload = a
                    .find("iov_base=\"")
                    .map(|j| summarise_string(&a[j + "iov_base=".len()..]));
                let rights = rights.as_ref().map(|fds| {
                    let names: Vec<String> =
                        fds.iter().map(|f| self.name(role, f, conn_key)).collect();
                    format!("SCM_RIGHTS[{}]", names.join(", "))
                });
                match (payload, rights) {
                    (None, None) => "{msg}".into(),
                    (p, r) => format!(
                        "{{{}}}",
                        p.into_iter().chain(r).collect::<Vec<_>>().join(" ")
                    ),
                }
            } else if a.starts_with("{events=") && e.name.starts_with("epoll_ctl") {
                a.trim_start_matches("{events=")
                    .split(',')
                    .next()
                    .unwrap_or("")
                    .to_string()
            } else if a.starts_with('[') || a.starts_with('{') || a.starts_with("0x") {
                "…".into()
            } else {
                a.clone()
            };
            shown.push(piece);
        }
        let ret = match (&e.ret, e.errno()) {
            (None, _) => "?".to_string(),
            (Some(_), Some(err)) => err.to_string(),
            (Some(r), None) => match parse_fd(r).filter(|f| !f.path.is_empty()) {
                Some(f) => self.name(role, &f, conn_key),
                None => r.split_whitespace().next().unwrap_or("").to_string(),
            },
        };
        Call {
            call: e.name.clone(),
            fd,
            flags,
            scm_rights_fds: rights.map(|v| v.len()),
            text: format!("{}({}) = {ret}", e.name, shown.join(", ")),
            ret,
            raw: format!(
                "{}({}) = {}",
                e.name,
                e.args,
                e.ret.as_deref().unwrap_or("?")
            ),
            time_us: e.time_us,
            dur_us: e.dur_us,
        }
    }
}

/// The text strace shows for the server's side of a connection from
/// `client` (`127.0.0.1:49332`): `...->127.0.0.1:49332]`.
fn key(client: &str) -> String {
    format!("->{client}]")
}

fn mentions(e: &Event, key: &str) -> bool {
    e.args.contains(key) || e.ret.as_deref().is_some_and(|r| r.contains(key))
}

/// The client addresses of the connections an event names.
fn peers(e: &Event) -> Vec<String> {
    paths(e)
        .into_iter()
        .filter(|p| is_tcp(p))
        .filter_map(|p| {
            p.split_once("->")
                .map(|(_, c)| c.trim_end_matches(']').to_string())
        })
        .collect()
}

fn mentions_any(e: &Event, clients: &HashSet<&str>) -> bool {
    peers(e).iter().any(|c| clients.contains(c.as_str()))
}

fn mentions_other_conn(e: &Event, key: &str) -> bool {
    paths(e)
        .iter()
        .any(|p| is_tcp(p) && p.contains("->") && !p.ends_with(key))
}

/// The calls of one role for the connection from `client`: from the call
/// that gave it the connection (accept4, recvmsg) to its close, with the
/// wakeup just before; calls about other connections are left out.
fn life(namer: &Namer, r: &RoleTrace, client: &str) -> Option<Vec<Call>> {
    let k = key(client);
    let (from, end) = life_span(r, &k)?;
    // The threads that touched it (and the one that woke for it): the
    // other threads of a process (Node's V8 and libuv pool) are left out.
    let span = &r.events[from..=end];
    let mut threads: HashSet<i32> = span
        .iter()
        .filter(|e| mentions(e, &k))
        .map(|e| e.pid)
        .collect();
    threads.insert(span[0].pid);
    Some(
        span.iter()
            .filter(|e| threads.contains(&e.pid) && !mentions_other_conn(e, &k))
            .map(|e| namer.normalise(r.role, e, &k))
            .collect(),
    )
}

/// The indices of the first and last events of a connection's life in a
/// role (see [`life`]).
fn life_span(r: &RoleTrace, k: &str) -> Option<(usize, usize)> {
    let start = r.events.iter().position(|e| mentions(e, k))?;
    let end = r.events[start..]
        .iter()
        .position(|e| e.name == "close" && mentions(e, k))
        .map_or(r.events.len() - 1, |j| start + j);
    // The wakeup: the same thread's call before (other threads of a
    // Node process wait on epoll instances of their own).
    let tid = r.events[start].pid;
    let from = match r.events[..start].iter().rposition(|e| e.pid == tid) {
        Some(j) if is_wait(&r.events[j].name) => j,
        _ => start,
    };
    Some((from, end))
}

/// Whether some role's accept of the connection from `client` is in the
/// trace with a call of the same thread before it. A call in progress when
/// strace attached is never shown, even when it returns later: a worker
/// blocked in accept (or in epoll_wait) since before the attach takes its
/// first connection unseen, so the life shown is the first connection whose
/// accept, and what came before it, were seen.
fn accept_seen(roles: &[RoleTrace], client: &str) -> bool {
    let k = key(client);
    roles.iter().any(|r| {
        r.events.iter().enumerate().any(|(i, e)| {
            is_accept(&e.name)
                && e.errno().is_none()
                && e.ret.as_deref().is_some_and(|ret| ret.contains(&k))
                && r.events[..i].iter().any(|p| p.pid == e.pid)
        })
    })
}

/// What a trace of a target says. `clients` are the local addresses of
/// the sequential connections, in order.
pub struct Input<'a> {
    /// Target name.
    pub target: &'a str,
    /// Worker processes.
    pub workers: usize,
    /// The sequential connections' client addresses.
    pub clients: &'a [String],
    /// Concurrent connections of the burst.
    pub burst: usize,
    /// The burst's client addresses (the sequential part ends where the
    /// first of them shows).
    pub burst_clients: &'a [String],
    /// `uname -r`.
    pub kernel: String,
    /// strace's version line.
    pub strace: String,
    /// When the trace was taken, ms since the Unix epoch.
    pub taken_unix_ms: u64,
}

/// Builds the skeleton.
pub fn build(input: &Input<'_>, roles: &[RoleTrace]) -> Skeleton {
    let namer = Namer::new(roles);
    let first = input
        .clients
        .iter()
        .find(|c| accept_seen(roles, c))
        .or(input.clients.first())
        .cloned()
        .unwrap_or_default();
    let life_by_role = roles
        .iter()
        .filter_map(|r| life(&namer, r, &first).map(|c| (r.role.name(), c)))
        .collect();
    // The sequential part: from the first event about any of those
    // connections to the last one, in every role.
    let seq_set: HashSet<&str> = input.clients.iter().map(String::as_str).collect();
    let mut lo = u64::MAX;
    let mut hi = 0;
    for r in roles {
        for e in &r.events {
            if mentions_any(e, &seq_set) {
                lo = lo.min(e.time_us);
                hi = hi.max(e.time_us);
            }
        }
    }
    // From the wakeup that led to the first connection: a worker that
    // woke with the winner and lost the race (EAGAIN) may call accept
    // before the winner's accept shows the connection.
    if let Some(first) = input.clients.first() {
        for r in roles {
            if let Some((from, _)) = life_span(r, &key(first)) {
                lo = lo.min(r.events[from].time_us);
            }
        }
    }
    // A late close of the last sequential connection may come after the
    // burst began: the sequential part ends before the burst's first event.
    let burst_set: HashSet<&str> = input.burst_clients.iter().map(String::as_str).collect();
    let burst_start = roles
        .iter()
        .flat_map(|r| &r.events)
        .filter(|e| mentions_any(e, &burst_set))
        .map(|e| e.time_us)
        .min();
    if let Some(b) = burst_start {
        hi = hi.min(b.saturating_sub(1));
    }
    let seq = counts(roles, lo, hi, &seq_set);
    let burst_roles = roles
        .iter()
        .map(|r| {
            let mut b = BurstRole {
                role: r.role.name(),
                ..BurstRole::default()
            };
            for e in r.events.iter().filter(|e| e.time_us > hi) {
                if is_accept(&e.name) {
                    if e.errno().is_some() {
                        b.accept_eagain += usize::from(e.errno() == Some("EAGAIN"));
                    } else if e.ret.is_some() {
                        b.accepts += 1;
                    }
                } else if is_wait(&e.name) && e.ret_value().is_some_and(|v| v > 0) {
                    b.wakeups += 1;
                } else if e.name == "recvmsg" && e.ret_value().is_some_and(|v| v > 0) {
                    b.received_fds += scm_rights(&e.args).map_or(0, |v| v.len());
                }
            }
            b
        })
        .collect();
    Skeleton {
        target: input.target.to_string(),
        workers: input.workers,
        connections: input.clients.len(),
        burst: input.burst,
        kernel: input.kernel.clone(),
        strace: input.strace.clone(),
        taken_unix_ms: input.taken_unix_ms,
        pids: roles.iter().map(|r| (r.role.name(), r.pid)).collect(),
        connection: first,
        life: life_by_role,
        sequential: seq,
        burst_roles,
        listener_ctl: listener_ctl(roles),
        holdings: Holdings::default(),
    }
}

/// Per role, the epoll_ctl calls on the listener (see [`Skeleton`]).
fn listener_ctl(roles: &[RoleTrace]) -> Vec<(String, Vec<String>)> {
    roles
        .iter()
        .filter_map(|r| {
            // Per thread, the operations since its last wait.
            let mut turn: HashMap<i32, Vec<String>> = HashMap::new();
            let mut turns: Vec<String> = Vec::new();
            for e in &r.events {
                if is_wait(&e.name) {
                    if let Some(ops) = turn.remove(&e.pid) {
                        turns.push(ops.join(" + "));
                    }
                    continue;
                }
                if e.name != "epoll_ctl" || e.ret.is_none() || e.errno().is_some() {
                    continue;
                }
                let args = split_top(&e.args);
                let Some(target) = args.get(2).and_then(|a| parse_fd(a)) else {
                    continue;
                };
                if !is_tcp(&target.path) || target.path.contains("->") {
                    continue;
                }
                let op = args.get(1).cloned().unwrap_or_default();
                let events = args
                    .get(3)
                    .and_then(|a| a.strip_prefix("{events="))
                    .and_then(|a| a.split(',').next())
                    .map(|ev| format!(" {ev}"))
                    .unwrap_or_default();
                turn.entry(e.pid).or_default().push(format!("{op}{events}"));
            }
            let mut rest: Vec<(i32, Vec<String>)> = turn.into_iter().collect();
            rest.sort();
            turns.extend(rest.into_iter().map(|(_, ops)| ops.join(" + ")));
            (!turns.is_empty()).then(|| (r.role.name(), turns))
        })
        .collect()
}

fn counts(roles: &[RoleTrace], lo: u64, hi: u64, clients: &HashSet<&str>) -> Counts {
    let k = clients.len().max(1);
    let mut c = Counts::default();
    let per = |n: usize| n as f64 / k as f64;
    let mut eagain = 0;
    let mut wakeups = 0;
    let mut empty_wakeups = 0;
    let mut messages = 0;
    let mut replies = 0;
    let namer = Namer::new(roles);
    for r in roles {
        let evs: Vec<&Event> = r
            .events
            .iter()
            .filter(|e| e.time_us >= lo && e.time_us <= hi)
            .collect();
        let accepted = evs
            .iter()
            .filter(|e| is_accept(&e.name) && e.errno().is_none() && e.ret.is_some())
            .count();
        if accepted > 0 {
            c.who_accepts.push(r.role.name());
            c.accepts += accepted;
        }
        eagain += evs
            .iter()
            .filter(|e| is_accept(&e.name) && e.errno() == Some("EAGAIN"))
            .count();
        if evs.iter().any(|e| is_accept(&e.name)) {
            // Each return from a wait, and whether an accept followed it
            // before the next wait.
            let mut open: Option<bool> = None;
            for e in &evs {
                if is_wait(&e.name) && e.ret_value().is_some_and(|v| v > 0) {
                    if open == Some(false) {
                        empty_wakeups += 1;
                    }
                    open = Some(false);
                    wakeups += 1;
                } else if is_accept(&e.name) && e.errno().is_none() && e.ret.is_some() {
                    open = Some(true);
                }
            }
            if open == Some(false) {
                empty_wakeups += 1;
            }
        }
        for e in &evs {
            let rights = scm_rights(&e.args);
            // A message counts for the sequential connections it carries.
            if e.name == "sendmsg" && rights.is_some() && mentions_any(e, clients) {
                messages += 1;
                let n = rights.as_ref().map_or(0, |v| v.len());
                if !c.fds_per_message.contains(&n) {
                    c.fds_per_message.push(n);
                }
            }
            if let Role::Worker(_) = r.role {
                if is_write(&e.name) && rights.is_none() {
                    if let Some(fd) = split_top(&e.args).first().and_then(|a| parse_fd(a)) {
                        if namer.name(r.role, &fd, "") == "channel-from-master" {
                            replies += 1;
                        }
                    }
                }
            }
        }
    }
    c.accept_eagain_per_conn = per(eagain);
    c.wakeups_per_conn = per(wakeups);
    c.wakeups_without_accept_per_conn = per(empty_wakeups);
    c.accepts_per_wakeup = if wakeups > 0 {
        c.accepts as f64 / wakeups as f64
    } else {
        0.0
    };
    c.scm_rights_messages_per_conn = per(messages);
    c.replies_per_handoff = if messages > 0 {
        replies as f64 / messages as f64
    } else {
        0.0
    };
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::strace::parse;

    // Real lines from `lab-server --strategy master-pass --workers 2`,
    // traced here with `strace -f -tt -T -yy -s 256 -ff` (one connection).
    const MASTER: &str = r#"05:06:21.693365 epoll_wait(5<anon_inode:[eventpoll]>, [{events=EPOLLIN, data={u32=1, u64=1}}], 256, -1) = 1 <1.074730>
05:06:22.768276 accept4(4<TCP:[127.0.0.1:36017]>, NULL, NULL, SOCK_CLOEXEC|SOCK_NONBLOCK) = 8<TCP:[127.0.0.1:36017->127.0.0.1:49332]> <0.000028>
05:06:22.769461 sendmsg(6<UNIX-STREAM:[73266815->73266816]>, {msg_name=NULL, msg_namelen=0, msg_iov=[{iov_base="N\0\0\0\0\0\0\0", iov_len=8}], msg_iovlen=1, msg_control=[{cmsg_len=20, cmsg_level=SOL_SOCKET, cmsg_type=SCM_RIGHTS, cmsg_data=[8<TCP:[127.0.0.1:36017->127.0.0.1:49332]>]}], msg_controllen=24, msg_flags=0}, MSG_NOSIGNAL) = 8 <0.000099>
05:06:22.769830 epoll_wait(5<anon_inode:[eventpoll]>, [{events=EPOLLIN|EPOLLOUT, data={u32=1000001, u64=1000001}}], 256, -1) = 1 <0.000312>
05:06:22.770270 recvfrom(6<UNIX-STREAM:[73266815->73266816]>, "H\0\0\0\0\0\0\0A\1\0\0\0\0\0\0", 4096, 0, NULL, NULL) = 16 <0.000040>
05:06:22.770781 close(8<TCP:[127.0.0.1:36017->127.0.0.1:49332]>) = 0 <0.000036>
05:06:22.770849 recvfrom(6<UNIX-STREAM:[73266815->73266816]>, 0x7ffdd91e9e00, 4096, 0, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable) <0.000009>"#;
    const WORKER: &str = r#"05:06:21.693324 epoll_wait(3<anon_inode:[eventpoll]>, [{events=EPOLLIN|EPOLLOUT, data={u32=4294967295, u64=9223372036854775807}}], 256, -1) = 1 <1.076306>
05:06:22.769738 recvmsg(7<UNIX-STREAM:[73266816->73266815]>, {msg_name=NULL, msg_namelen=0, msg_iov=[{iov_base="N\0\0\0\0\0\0\0", iov_len=256}], msg_iovlen=1, msg_control=[{cmsg_len=20, cmsg_level=SOL_SOCKET, cmsg_type=SCM_RIGHTS, cmsg_data=[5<TCP:[127.0.0.1:36017->127.0.0.1:49332]>]}], msg_controllen=24, msg_flags=MSG_CMSG_CLOEXEC}, MSG_CMSG_CLOEXEC) = 8 <0.000046>
05:06:22.769929 sendto(7<UNIX-STREAM:[73266816->73266815]>, "H\0\0\0\0\0\0\0", 8, MSG_NOSIGNAL, NULL, 0) = 8 <0.000012>
05:06:22.770118 epoll_ctl(3<anon_inode:[eventpoll]>, EPOLL_CTL_ADD, 5<TCP:[127.0.0.1:36017->127.0.0.1:49332]>, {events=EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET, data={u32=0, u64=0}}) = 0 <0.000040>
05:06:22.772713 epoll_ctl(3<anon_inode:[eventpoll]>, EPOLL_CTL_DEL, 5<TCP:[127.0.0.1:36017->127.0.0.1:49332]>, NULL) = 0 <0.000014>
05:06:22.772806 close(5<TCP:[127.0.0.1:36017->127.0.0.1:49332]>) = 0 <0.000051>"#;

    fn skeleton() -> Skeleton {
        let roles = vec![
            RoleTrace {
                role: Role::Master,
                pid: 24852,
                events: parse(MASTER, 24852),
            },
            RoleTrace {
                role: Role::Worker(0),
                pid: 24854,
                events: parse(WORKER, 24854),
            },
        ];
        let clients = vec!["127.0.0.1:49332".to_string()];
        build(
            &Input {
                target: "master-pass",
                workers: 2,
                clients: &clients,
                burst: 0,
                burst_clients: &[],
                kernel: "k".into(),
                strace: "s".into(),
                taken_unix_ms: 0,
            },
            &roles,
        )
    }

    #[test]
    fn master_pass_master_accepts_and_passes_one_fd_to_worker_0() {
        let s = skeleton();
        let (role, calls) = &s.life[0];
        assert_eq!(role, "master");
        assert_eq!(calls[0].call, "epoll_wait");
        assert_eq!(calls[1].call, "accept4");
        assert_eq!(calls[1].fd.as_deref(), Some("listener"));
        assert_eq!(calls[1].ret, "conn");
        assert_eq!(calls[1].flags, ["SOCK_CLOEXEC", "SOCK_NONBLOCK"]);
        assert_eq!(calls[2].call, "sendmsg");
        assert_eq!(calls[2].fd.as_deref(), Some("channel-to-worker-0"));
        assert_eq!(calls[2].scm_rights_fds, Some(1));
        assert!(
            calls[2].text.contains("SCM_RIGHTS[conn]"),
            "{}",
            calls[2].text
        );
        assert_eq!(calls.last().unwrap().text, "close(conn) = 0");
    }

    #[test]
    fn master_pass_worker_receives_and_registers_the_connection() {
        let s = skeleton();
        let (role, calls) = &s.life[1];
        assert_eq!(role, "worker-0");
        assert_eq!(calls[1].call, "recvmsg");
        assert_eq!(calls[1].fd.as_deref(), Some("channel-from-master"));
        assert!(calls[1].flags.contains(&"MSG_CMSG_CLOEXEC".to_string()));
        let add = calls.iter().find(|c| c.call == "epoll_ctl").unwrap();
        assert_eq!(
            add.text,
            "epoll_ctl(epoll, EPOLL_CTL_ADD, conn, EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET) = 0"
        );
    }

    #[test]
    fn master_pass_counts_one_message_of_one_fd_and_one_reply() {
        let s = skeleton();
        assert_eq!(s.sequential.who_accepts, ["master"]);
        assert_eq!(s.sequential.scm_rights_messages_per_conn, 1.0);
        assert_eq!(s.sequential.fds_per_message, [1]);
        assert_eq!(s.sequential.replies_per_handoff, 1.0);
        assert_eq!(s.sequential.accept_eagain_per_conn, 0.0);
    }
    #[test]
    fn node_primary_hands_off_with_a_json_message_and_the_worker_acks() {
        // Real lines from `node:rr` (Node v20 cluster, round-robin), traced here.
        let master = r#"05:10:08.484945 epoll_pwait(14<anon_inode:[eventpoll]>, [{events=EPOLLIN, data={u32=21, u64=21}}], 1024, -1, NULL, 8) = 1 <0.000325>
05:10:08.485407 accept4(21<TCP:[127.0.0.1:34791]>, NULL, NULL, SOCK_CLOEXEC|SOCK_NONBLOCK) = 22<TCP:[127.0.0.1:34791->127.0.0.1:44482]> <0.000021>
05:10:08.486723 sendmsg(19<UNIX-STREAM:[73269446->73269447]>, {msg_name=NULL, msg_namelen=0, msg_iov=[{iov_base="{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"cmd\":\"NODE_CLUSTER\",\"act\":\"newconn\",\"key\":\"127.0.0.1:0:4:undefined:0\",\"seq\":2}}\n", iov_len=129}], msg_iovlen=1, msg_control=[{cmsg_len=20, cmsg_level=SOL_SOCKET, cmsg_type=SCM_RIGHTS, cmsg_data=[22<TCP:[127.0.0.1:34791->127.0.0.1:44482]>]}], msg_controllen=24, msg_flags=0}, 0) = 129 <0.000043>"#;
        let worker = r#"05:10:08.487824 write(3<UNIX-STREAM:[73269447->73269446]>, "{\"cmd\":\"NODE_HANDLE_ACK\"}\n", 26) = 26 <0.000063>"#;
        let roles = vec![
            RoleTrace {
                role: Role::Master,
                pid: 1,
                events: parse(master, 1),
            },
            RoleTrace {
                role: Role::Worker(0),
                pid: 2,
                events: parse(worker, 2),
            },
        ];
        let clients = vec!["127.0.0.1:44482".to_string()];
        let s = build(
            &Input {
                target: "node:rr",
                workers: 1,
                clients: &clients,
                burst: 0,
                burst_clients: &[],
                kernel: String::new(),
                strace: String::new(),
                taken_unix_ms: 0,
            },
            &roles,
        );
        let calls = &s.life[0].1;
        assert_eq!(calls[0].call, "epoll_pwait");
        assert_eq!(calls[1].flags, ["SOCK_CLOEXEC", "SOCK_NONBLOCK"]);
        assert!(
            calls[2]
                .text
                .starts_with(r#"sendmsg(channel-to-worker-0, {"{\"cmd\":\"NODE_HANDLE\","#),
            "{}",
            calls[2].text
        );
        assert_eq!(calls[2].scm_rights_fds, Some(1));
        assert_eq!(s.sequential.fds_per_message, [1]);
    }
    #[test]
    fn shared_epoll_worker_accepts_on_the_listener_and_a_lost_race_is_counted() {
        // Real lines from `shared:epoll`, 2 workers, traced here: worker 0
        // woke for a connection worker 1 had taken (EAGAIN), then took the
        // next one itself.
        let w0 = r#"05:14:18.409203 epoll_wait(3<anon_inode:[eventpoll]>, [{events=EPOLLIN, data={u32=4294967295, u64=9223372036854775807}}], 256, -1) = 1 <0.000460>
05:14:18.409761 accept4(4<TCP:[127.0.0.1:44459]>, NULL, NULL, SOCK_CLOEXEC|SOCK_NONBLOCK) = -1 EAGAIN (Resource temporarily unavailable) <0.000665>
05:14:18.411504 epoll_wait(3<anon_inode:[eventpoll]>, [{events=EPOLLIN, data={u32=4294967295, u64=9223372036854775807}}], 256, -1) = 1 <0.000460>
05:14:18.412504 accept4(4<TCP:[127.0.0.1:44459]>, NULL, NULL, SOCK_CLOEXEC|SOCK_NONBLOCK) = 6<TCP:[127.0.0.1:44459->127.0.0.1:50662]> <0.001944>
05:14:18.415582 epoll_ctl(3<anon_inode:[eventpoll]>, EPOLL_CTL_ADD, 6<TCP:[127.0.0.1:44459->127.0.0.1:50662]>, {events=EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET, data={u32=0, u64=0}}) = 0 <0.000075>
05:14:18.416434 epoll_ctl(3<anon_inode:[eventpoll]>, EPOLL_CTL_DEL, 6<TCP:[127.0.0.1:44459->127.0.0.1:50662]>, NULL) = 0 <0.000074>
05:14:18.416534 close(6<TCP:[127.0.0.1:44459->127.0.0.1:50662]>) = 0 <0.000052>"#;
        let roles = vec![RoleTrace {
            role: Role::Worker(0),
            pid: 524,
            events: parse(w0, 524),
        }];
        let clients = vec!["127.0.0.1:50662".to_string()];
        let s = build(
            &Input {
                target: "shared:epoll",
                workers: 2,
                clients: &clients,
                burst: 0,
                burst_clients: &[],
                kernel: String::new(),
                strace: String::new(),
                taken_unix_ms: 0,
            },
            &roles,
        );
        let (role, calls) = &s.life[0];
        assert_eq!(role, "worker-0");
        let texts: Vec<&str> = calls.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "epoll_wait(epoll, …, 256, -1) = 1",
                "accept4(listener, NULL, NULL, SOCK_CLOEXEC|SOCK_NONBLOCK) = conn",
                "epoll_ctl(epoll, EPOLL_CTL_ADD, conn, EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET) = 0",
                "epoll_ctl(epoll, EPOLL_CTL_DEL, conn, NULL) = 0",
                "close(conn) = 0",
            ]
        );
        // The sequential part starts at the wakeup before the connection
        // showed: the lost race just before it is not in it.
        assert_eq!(s.sequential.who_accepts, ["worker-0"]);
        assert_eq!(s.sequential.accept_eagain_per_conn, 0.0);
        assert_eq!(s.sequential.accepts_per_wakeup, 1.0);
        assert_eq!(s.sequential.scm_rights_messages_per_conn, 0.0);
    }

    #[test]
    fn listener_ctl_groups_a_workers_calls_on_the_listener_by_loop_turn() {
        // Real lines from `nginx:epoll-exclusive`, 2 workers, traced here:
        // the listener taken out and put back after the worker's first
        // accept; then, made up from the accept mutex's lines, a removal
        // and an add in two turns.
        let w = r#"06:08:47.869086 epoll_wait(7<anon_inode:[eventpoll]>, [{events=EPOLLIN, data={u32=4293185552, u64=139663744749584}}], 512, -1) = 1 <0.000407>
06:08:47.869542 accept4(5<TCP:[127.0.0.1:32875]>, {sa_family=AF_INET, sin_port=htons(57832), sin_addr=inet_addr("127.0.0.1")}, [112 => 16], SOCK_NONBLOCK) = 9<TCP:[127.0.0.1:32875->127.0.0.1:57832]> <0.000044>
06:08:47.870002 epoll_ctl(7<anon_inode:[eventpoll]>, EPOLL_CTL_ADD, 9<TCP:[127.0.0.1:32875->127.0.0.1:57832]>, {events=EPOLLIN|EPOLLRDHUP|EPOLLET, data={u32=4293186032, u64=139663744750064}}) = 0 <0.000047>
06:08:47.870125 epoll_ctl(7<anon_inode:[eventpoll]>, EPOLL_CTL_DEL, 5<TCP:[127.0.0.1:32875]>, 0x7ffc58f7bc4c) = 0 <0.000037>
06:08:47.870217 epoll_ctl(7<anon_inode:[eventpoll]>, EPOLL_CTL_ADD, 5<TCP:[127.0.0.1:32875]>, {events=EPOLLIN|EPOLLEXCLUSIVE, data={u32=4293185552, u64=139663744749584}}) = 0 <0.000034>
06:08:47.870308 epoll_wait(7<anon_inode:[eventpoll]>, [{events=EPOLLIN, data={u32=4293186032, u64=139663744750064}}], 512, 60000) = 1 <0.000036>
06:08:48.000000 epoll_ctl(7<anon_inode:[eventpoll]>, EPOLL_CTL_DEL, 5<TCP:[127.0.0.1:32875]>, 0x7ffc58f7bc4c) = 0 <0.000037>
06:08:48.000100 epoll_wait(7<anon_inode:[eventpoll]>, [], 512, 500) = 0 <0.500000>
06:08:48.500200 epoll_ctl(7<anon_inode:[eventpoll]>, EPOLL_CTL_ADD, 5<TCP:[127.0.0.1:32875]>, {events=EPOLLIN, data={u32=4293185552, u64=139663744749584}}) = 0 <0.000034>"#;
        let roles = vec![RoleTrace {
            role: Role::Worker(0),
            pid: 8144,
            events: parse(w, 8144),
        }];
        assert_eq!(
            listener_ctl(&roles),
            [(
                "worker-0".to_string(),
                vec![
                    "EPOLL_CTL_DEL + EPOLL_CTL_ADD EPOLLIN|EPOLLEXCLUSIVE".to_string(),
                    "EPOLL_CTL_DEL".to_string(),
                    "EPOLL_CTL_ADD EPOLLIN".to_string(),
                ]
            )]
        );
    }

    #[test]
    fn the_life_shown_is_the_first_connection_whose_accept_was_seen() {
        // A worker blocked in accept4 when strace attached takes the first
        // connection unseen: its first line is already about it.
        let w = r#"06:12:27.182647 setsockopt(3<TCP:[127.0.0.1:43547->127.0.0.1:43626]>, SOL_TCP, TCP_NODELAY, [1], 4) = 0 <0.000067>
06:12:27.183900 close(3<TCP:[127.0.0.1:43547->127.0.0.1:43626]>) = 0 <0.000020>
06:12:27.184000 accept4(4<TCP:[127.0.0.1:43547]>, NULL, NULL, SOCK_CLOEXEC|SOCK_NONBLOCK) = 3<TCP:[127.0.0.1:43547->127.0.0.1:43630]> <0.000030>
06:12:27.184100 close(3<TCP:[127.0.0.1:43547->127.0.0.1:43630]>) = 0 <0.000020>"#;
        let roles = vec![RoleTrace {
            role: Role::Worker(1),
            pid: 7,
            events: parse(w, 7),
        }];
        let clients = vec!["127.0.0.1:43626".to_string(), "127.0.0.1:43630".to_string()];
        let s = build(
            &Input {
                target: "shared:prefork",
                workers: 2,
                clients: &clients,
                burst: 0,
                burst_clients: &[],
                kernel: String::new(),
                strace: String::new(),
                taken_unix_ms: 0,
            },
            &roles,
        );
        assert_eq!(s.connection, "127.0.0.1:43630");
        assert_eq!(s.life[0].1[0].call, "accept4");
    }
}
