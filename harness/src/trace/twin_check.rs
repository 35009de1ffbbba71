//! The twin check: a reference server's skeleton and its lab twin's must
//! agree on a stated list of normalised fields, once the documented
//! differences are allowed for. It is what keeps a twin faithful when
//! someone edits it later: a difference in mechanism that nobody wrote down
//! shows as `DIFFERENT`.
//!
//! [`fields`] reduces a skeleton to those fields, each a short phrase that
//! names no descriptor number, pid or port: which role accepts, accepts per
//! wakeup, accept flags, whether the listener is non-blocking, how the
//! descriptor travels (call, descriptors per message, messages and replies
//! per hand-off), how the worker takes it (call and flags), how the
//! connection is registered in epoll, how the listener is registered and
//! by whom (from the /proc snapshot, [`super::holdings`]), whether the
//! listener is taken out and put back, and who holds which listening
//! socket. [`check`] compares two of them; [`ALLOWED`] is the table of
//! differences known and explained, per pair, each with its reason in the
//! words of [`crate::model::twins::TWIN_NOTES`]. [`render`] writes the
//! comparison as Markdown lines for the report.
//!
//! Only what does not depend on timing is a field: who of two idle workers
//! woke first, or how many wakeups a connection cost, differs between two
//! runs of the same server and is left to the counts.

use serde::{Deserialize, Serialize};

use super::holdings::{Holdings, RoleHoldings};
use super::skeleton::{Call, Skeleton};
use super::strace::{is_accept, is_wait, split_top};

/// The normalised fields of one skeleton (see the module). A field that the
/// skeleton cannot tell (no holdings in an older skeleton.json) reads
/// `unknown`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fields {
    /// `master` or `workers`: the role whose accept returned connections.
    pub accepting_role: String,
    /// `1` (one accept per wakeup), `until EAGAIN`, or `1, no wait before`
    /// (a blocking accept with no poll before it).
    pub accepts_per_wakeup: String,
    /// The accept call and its flags (`accept4 SOCK_CLOEXEC|SOCK_NONBLOCK`).
    pub accept_flags: String,
    /// `O_NONBLOCK` or `blocking`: the listener as the accepting role holds it.
    pub listener_nonblocking: String,
    /// `sendmsg SCM_RIGHTS` or `none`: how the accepting role hands the
    /// connection over.
    pub handoff: String,
    /// Descriptors per SCM_RIGHTS message (`1`, `none`).
    pub fds_per_message: String,
    /// SCM_RIGHTS messages per connection.
    pub messages_per_handoff: String,
    /// Messages a worker sends back per hand-off.
    pub replies_per_handoff: String,
    /// `recvmsg MSG_CMSG_CLOEXEC` or `none`: how a worker takes the
    /// descriptor.
    pub worker_receives: String,
    /// The events the serving role registers the connection with
    /// (`EPOLLIN|EPOLLRDHUP|EPOLLET`), or `not in an epoll`.
    pub conn_registration: String,
    /// `edge`, `level`, or `not in an epoll`.
    pub conn_trigger: String,
    /// Who has a listener registered in an epoll: `master`, `every worker,
    /// the same socket`, `each worker, its own socket`, `some workers, the
    /// same socket`, `none`.
    pub listener_polled_by: String,
    /// The listener registrations' events (EPOLLERR and EPOLLHUP left out),
    /// distinct sets joined with `; `, or `none`.
    pub listener_events: String,
    /// `level`, `edge`, or `none`.
    pub listener_trigger: String,
    /// `EPOLL_CTL_DEL then EPOLL_CTL_ADD in one turn` when a worker takes
    /// the listener out of its epoll and puts it back between two waits
    /// (nginx's reordering after accepts), else `none`. Adds and removes in
    /// different turns (an accept mutex changing hands) depend on timing
    /// and are not counted.
    pub listener_reregistration: String,
    /// `N listener(s); master: all|none|K; each worker: all|its own|the
    /// shared one|none|mixed`.
    pub listeners_held: String,
}

impl Fields {
    /// The fields by name, in the order of the struct.
    pub fn entries(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("accepting_role", &self.accepting_role),
            ("accepts_per_wakeup", &self.accepts_per_wakeup),
            ("accept_flags", &self.accept_flags),
            ("listener_nonblocking", &self.listener_nonblocking),
            ("handoff", &self.handoff),
            ("fds_per_message", &self.fds_per_message),
            ("messages_per_handoff", &self.messages_per_handoff),
            ("replies_per_handoff", &self.replies_per_handoff),
            ("worker_receives", &self.worker_receives),
            ("conn_registration", &self.conn_registration),
            ("conn_trigger", &self.conn_trigger),
            ("listener_polled_by", &self.listener_polled_by),
            ("listener_events", &self.listener_events),
            ("listener_trigger", &self.listener_trigger),
            ("listener_reregistration", &self.listener_reregistration),
            ("listeners_held", &self.listeners_held),
        ]
    }
}

/// One field on which the two sides differ.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// The field's name.
    pub field: String,
    /// The reference server's value.
    pub reference: String,
    /// The twin's value.
    pub twin: String,
    /// Why the difference is allowed; `None` when nothing explains it.
    pub why: Option<String>,
}

/// The comparison of one pair.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// (reference, twin), as the skeletons name their targets.
    pub pair: (String, String),
    /// The fields on which they agree.
    pub agree: Vec<String>,
    /// The value of each of those fields, in the same order.
    #[serde(default)]
    pub agreed_values: Vec<String>,
    /// Differences the table explains.
    pub allowed: Vec<Difference>,
    /// Differences nothing explains: the twin has drifted, or a difference
    /// was never written down.
    pub unexplained: Vec<Difference>,
}

/// Reasons shared by several pairs: each is, word for word, a line of
/// that pair's `differs` in [`crate::model::twins::TWIN_NOTES`] (a unit
/// test checks it).
const LIBUV_CONN: &str = "a worker registers a connection in its epoll once, for EPOLLIN|EPOLLOUT|EPOLLRDHUP, edge-triggered; libuv registers it for EPOLLIN only, level-triggered, and adds EPOLLOUT while a write waits";
const NGINX_ACCEPT: &str = "ours accepts with SOCK_CLOEXEC|SOCK_NONBLOCK; nginx with SOCK_NONBLOCK only (its connections are not close-on-exec)";
const NGINX_CONN: &str = "ours registers a new connection for EPOLLIN|EPOLLOUT|EPOLLRDHUP at once; nginx for EPOLLIN|EPOLLRDHUP and adds EPOLLOUT only when a write would block (edge-triggered both)";
const NGINX_RDHUP: &str = "nginx adds the listener with EPOLLIN|EPOLLRDHUP (as every read event, ngx_epoll_add_event); ours with EPOLLIN alone (EPOLLRDHUP never fires on a listening socket)";
const APACHE_POLLSET: &str = "Apache's child builds a pollset (an epoll holding the listener, EPOLLIN, level-triggered) that with one listener it never waits on; ours has no epoll (both block in accept)";

/// The differences known and explained: (reference, field, why), the why
/// being a line of the pair's note. A field listed here whose values agree
/// counts as agreeing. Only a difference in what the code does belongs
/// here, never one that comes and goes between runs.
pub const ALLOWED: &[(&str, &str, &str)] = &[
    ("node:rr", "conn_registration", LIBUV_CONN),
    ("node:rr", "conn_trigger", LIBUV_CONN),
    ("node:none", "conn_registration", LIBUV_CONN),
    ("node:none", "conn_trigger", LIBUV_CONN),
    ("nginx:epoll-exclusive", "accept_flags", NGINX_ACCEPT),
    ("nginx:epoll-exclusive", "conn_registration", NGINX_CONN),
    ("nginx:accept-mutex", "accept_flags", NGINX_ACCEPT),
    ("nginx:accept-mutex", "conn_registration", NGINX_CONN),
    ("nginx:accept-mutex", "listener_events", NGINX_RDHUP),
    ("nginx:reuseport", "accept_flags", NGINX_ACCEPT),
    ("nginx:reuseport", "conn_registration", NGINX_CONN),
    ("nginx:reuseport", "listener_events", NGINX_RDHUP),
    (
        "nginx:reuseport",
        "listeners_held",
        "nginx's workers inherit every worker's socket and ignore the others; ours keep only their own (the kernel sees no difference: the master holds all)",
    ),
    (
        "apache:prefork",
        "accept_flags",
        "Apache accepts a blocking connection and sets O_NONBLOCK with fcntl next; ours asks for SOCK_NONBLOCK in accept4",
    ),
    ("apache:prefork", "listener_polled_by", APACHE_POLLSET),
    ("apache:prefork", "listener_events", APACHE_POLLSET),
    ("apache:prefork", "listener_trigger", APACHE_POLLSET),
];

/// The reason the table gives for `field` of the pair whose reference is
/// `reference` (a label, `node:rr@b`, is ignored).
pub fn allowed(reference: &str, field: &str) -> Option<&'static str> {
    let base = reference.split('@').next().unwrap_or(reference);
    ALLOWED
        .iter()
        .find(|(r, f, _)| *r == base && *f == field)
        .map(|(_, _, why)| *why)
}

/// The arguments of a normalised call's text (`epoll_ctl(epoll,
/// EPOLL_CTL_ADD, conn, EPOLLIN) = 0` -> `epoll, EPOLL_CTL_ADD, conn,
/// EPOLLIN`).
fn args(c: &Call) -> Vec<String> {
    let inner = c
        .text
        .split_once('(')
        .and_then(|(_, r)| r.rsplit_once(") = "))
        .map_or("", |(a, _)| a);
    split_top(inner)
}

fn joined(flags: impl IntoIterator<Item = String>) -> String {
    let mut v: Vec<String> = flags.into_iter().collect();
    v.sort();
    v.dedup();
    if v.is_empty() {
        "none".into()
    } else {
        v.join("|")
    }
}

fn number(x: f64) -> String {
    format!("{x:.2}")
}

/// The life of the role that accepted the connection, and its calls.
fn accepting_life(s: &Skeleton) -> Option<(&str, &[Call])> {
    s.life
        .iter()
        .find(|(_, calls)| {
            calls.iter().any(|c| {
                is_accept(&c.call) && c.fd.as_deref() == Some("listener") && c.ret == "conn"
            })
        })
        .map(|(r, c)| (r.as_str(), c.as_slice()))
}

/// `1`, `until EAGAIN`, or `1, no wait before`, from the accepting role's
/// life: the accepts between the wakeup before the connection's accept
/// and the next wait.
fn accepts_per_wakeup(calls: &[Call]) -> String {
    let Some(at) = calls
        .iter()
        .position(|c| is_accept(&c.call) && c.ret == "conn")
    else {
        return "none".into();
    };
    let waited = calls[..at].iter().any(|c| is_wait(&c.call));
    let from = calls[..at]
        .iter()
        .rposition(|c| is_wait(&c.call))
        .map_or(0, |j| j + 1);
    let to = calls[at..]
        .iter()
        .position(|c| is_wait(&c.call))
        .map_or(calls.len(), |j| at + j);
    let accepts: Vec<&Call> = calls[from..to]
        .iter()
        .filter(|c| is_accept(&c.call) && c.fd.as_deref() == Some("listener"))
        .collect();
    if accepts.len() > 1 && accepts.last().is_some_and(|c| c.ret == "EAGAIN") {
        "until EAGAIN".into()
    } else if waited {
        accepts.len().to_string()
    } else {
        format!("{}, no wait before", accepts.len())
    }
}

/// The events of the first `epoll_ctl(epoll, EPOLL_CTL_ADD, conn, EVENTS)`
/// in the given lives (those of the roles that serve the connection).
fn conn_registration<'a>(lives: impl Iterator<Item = &'a [Call]>) -> Option<String> {
    for calls in lives {
        for c in calls.iter().filter(|c| c.call == "epoll_ctl") {
            let a = args(c);
            if a.get(1).map(String::as_str) == Some("EPOLL_CTL_ADD")
                && a.get(2).map(String::as_str) == Some("conn")
            {
                return a.get(3).cloned();
            }
        }
    }
    None
}

fn trigger(events: &str) -> String {
    if events.split('|').any(|e| e == "EPOLLET") {
        "edge".into()
    } else {
        "level".into()
    }
}

/// Who polls a listener (see [`Fields::listener_polled_by`]).
fn polled_by(h: &Holdings) -> String {
    let workers: Vec<&RoleHoldings> = h.roles.iter().filter(|r| r.is_worker()).collect();
    let master = h
        .roles
        .iter()
        .any(|r| !r.is_worker() && r.listener_registrations().next().is_some());
    let polled: Vec<Vec<u64>> = workers
        .iter()
        .map(|w| {
            let mut v: Vec<u64> = w.listener_registrations().map(|r| r.inode).collect();
            v.sort_unstable();
            v.dedup();
            v
        })
        .filter(|v| !v.is_empty())
        .collect();
    let mut inodes: Vec<u64> = polled.iter().flatten().copied().collect();
    inodes.sort_unstable();
    inodes.dedup();
    let by_workers = if polled.is_empty() {
        None
    } else if inodes.len() == 1 {
        Some(if polled.len() == workers.len() {
            "every worker, the same socket"
        } else {
            "some workers, the same socket"
        })
    } else if polled.iter().all(|v| v.len() == 1) && inodes.len() == polled.len() {
        Some(if polled.len() == workers.len() {
            "each worker, its own socket"
        } else {
            "some workers, each its own socket"
        })
    } else {
        Some("workers, several sockets each")
    };
    match (master, by_workers) {
        (true, None) => "master".into(),
        (true, Some(w)) => format!("master and {w}"),
        (false, Some(w)) => w.into(),
        (false, None) => "none".into(),
    }
}

/// `N listener(s); master: ...; each worker: ...`.
fn held(h: &Holdings) -> String {
    let mut all: Vec<u64> = h
        .roles
        .iter()
        .flat_map(|r| r.listeners.iter().map(|l| l.inode))
        .collect();
    all.sort_unstable();
    all.dedup();
    let n = all.len();
    let count = |r: &RoleHoldings| {
        let mut v: Vec<u64> = r.listeners.iter().map(|l| l.inode).collect();
        v.sort_unstable();
        v.dedup();
        v.len()
    };
    let master = match h.roles.iter().find(|r| !r.is_worker()).map(count) {
        None => "unknown".to_string(),
        Some(0) => "none".into(),
        Some(k) if k == n => "all".into(),
        Some(k) => k.to_string(),
    };
    let workers: Vec<&RoleHoldings> = h.roles.iter().filter(|r| r.is_worker()).collect();
    let each = if workers.iter().all(|w| w.listeners.is_empty()) {
        "none"
    } else if workers
        .iter()
        .all(|w| w.listeners.iter().all(|l| l.identity == "shared"))
        && workers.iter().all(|w| count(w) == n)
    {
        if n == 1 {
            "the shared one"
        } else {
            "all"
        }
    } else if workers
        .iter()
        .all(|w| count(w) == 1 && w.listeners[0].identity == "own")
    {
        "its own"
    } else {
        "mixed"
    };
    let s = if n == 1 { "" } else { "s" };
    format!("{n} listener{s}; master: {master}; each worker: {each}")
}

/// The normalised fields of a skeleton (see [`Fields`]).
pub fn fields(s: &Skeleton) -> Fields {
    let h = &s.holdings;
    let known = !h.roles.is_empty();
    let unknown = || "unknown".to_string();
    let accepting = accepting_life(s);
    let accepting_role = match s.sequential.who_accepts.as_slice() {
        [] => "none".to_string(),
        w if w.iter().any(|r| r == "master") => "master".into(),
        _ => "workers".into(),
    };
    let accept_call = accepting
        .and_then(|(_, calls)| calls.iter().find(|c| is_accept(&c.call) && c.ret == "conn"));
    let accept_flags = accept_call.map_or("none".into(), |c| {
        format!("{} {}", c.call, joined(c.flags.iter().cloned()))
    });
    let listener_nonblocking = if !known {
        unknown()
    } else {
        let roles: Vec<&RoleHoldings> = h
            .roles
            .iter()
            .filter(|r| match accepting {
                Some((role, _)) => r.role == role,
                None => true,
            })
            .collect();
        let ls: Vec<bool> = roles
            .iter()
            .flat_map(|r| r.listeners.iter().map(|l| l.nonblocking))
            .collect();
        if ls.is_empty() {
            "none".into()
        } else if ls.iter().all(|b| *b) {
            "O_NONBLOCK".into()
        } else if ls.iter().all(|b| !*b) {
            "blocking".into()
        } else {
            "mixed".into()
        }
    };
    let handoff_call = accepting.and_then(|(_, calls)| {
        calls
            .iter()
            .find(|c| c.scm_rights_fds.is_some() && c.fd.as_deref() != Some("listener"))
    });
    let handoff = handoff_call.map_or("none".into(), |c| format!("{} SCM_RIGHTS", c.call));
    let fds_per_message = if s.sequential.fds_per_message.is_empty() {
        "none".to_string()
    } else {
        let mut v = s.sequential.fds_per_message.clone();
        v.sort_unstable();
        v.iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let worker_receives = s
        .life
        .iter()
        .filter(|(r, _)| r.starts_with("worker-"))
        .flat_map(|(_, calls)| calls)
        .find(|c| c.scm_rights_fds.is_some() && c.fd.as_deref() == Some("channel-from-master"))
        .map_or("none".into(), |c| {
            let flags = c.flags.iter().filter(|f| *f != "SCM_RIGHTS").cloned();
            format!("{} {}", c.call, joined(flags))
        });
    // The role that serves: a worker given the descriptor, else the
    // accepting role.
    let serving: Vec<&[Call]> = if handoff_call.is_some() {
        s.life
            .iter()
            .filter(|(r, _)| r.starts_with("worker-"))
            .map(|(_, c)| c.as_slice())
            .collect()
    } else {
        accepting.map(|(_, c)| c).into_iter().collect()
    };
    let registration = conn_registration(serving.into_iter());
    let conn_trigger = registration
        .as_deref()
        .map_or("not in an epoll".into(), trigger);
    let conn_registration = registration.unwrap_or_else(|| "not in an epoll".into());
    let mut listener_sets: Vec<String> = h
        .roles
        .iter()
        .flat_map(|r| r.listener_registrations())
        .map(|r| r.events.join("|"))
        .collect();
    listener_sets.sort();
    listener_sets.dedup();
    let (listener_events, listener_trigger) = if !known {
        (unknown(), unknown())
    } else if listener_sets.is_empty() {
        ("none".into(), "none".into())
    } else {
        let mut triggers: Vec<String> = listener_sets.iter().map(|e| trigger(e)).collect();
        triggers.dedup();
        (listener_sets.join("; "), triggers.join("; "))
    };
    // Taken out and put back within one loop turn; a listener added or
    // removed between waits (an accept mutex changing hands) comes with
    // timing and is left out.
    let listener_reregistration = if s.listener_ctl.iter().any(|(_, turns)| {
        turns.iter().any(|t| {
            let ops: Vec<&str> = t
                .split(" + ")
                .filter_map(|o| o.split_whitespace().next())
                .collect();
            ops.windows(2)
                .any(|w| w[0] == "EPOLL_CTL_DEL" && w[1] == "EPOLL_CTL_ADD")
        })
    }) {
        "EPOLL_CTL_DEL then EPOLL_CTL_ADD in one turn".to_string()
    } else {
        "none".to_string()
    };
    Fields {
        accepting_role,
        accepts_per_wakeup: accepting.map_or("none".into(), |(_, c)| accepts_per_wakeup(c)),
        accept_flags,
        listener_nonblocking,
        handoff,
        fds_per_message,
        messages_per_handoff: number(s.sequential.scm_rights_messages_per_conn),
        replies_per_handoff: number(s.sequential.replies_per_handoff),
        worker_receives,
        conn_registration,
        conn_trigger,
        listener_polled_by: if known { polled_by(h) } else { unknown() },
        listener_events,
        listener_trigger,
        listener_reregistration,
        listeners_held: if known { held(h) } else { unknown() },
    }
}

/// Compares a reference's skeleton with its twin's (see the module).
pub fn check(reference: &Skeleton, twin: &Skeleton) -> Check {
    let (a, b) = (fields(reference), fields(twin));
    let mut c = Check {
        pair: (reference.target.clone(), twin.target.clone()),
        ..Check::default()
    };
    for ((field, r), (_, t)) in a.entries().into_iter().zip(b.entries()) {
        if r == t {
            c.agree.push(field.to_string());
            c.agreed_values.push(r.to_string());
            continue;
        }
        let why = allowed(&reference.target, field).map(str::to_string);
        let d = Difference {
            field: field.to_string(),
            reference: r.to_string(),
            twin: t.to_string(),
            why,
        };
        if d.why.is_some() {
            c.allowed.push(d);
        } else {
            c.unexplained.push(d);
        }
    }
    c
}

/// The comparison as Markdown table lines: field, reference, twin, and
/// `same`, `allowed (why)` or `DIFFERENT`, in the order of [`Fields`].
pub fn render(c: &Check) -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out = format!(
        "| field | {} | {} | verdict |\n|---|---|---|---|\n",
        cell(&c.pair.0),
        cell(&c.pair.1)
    );
    let names: Vec<&'static str> = Fields::default()
        .entries()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for name in names {
        let diff = c
            .allowed
            .iter()
            .chain(&c.unexplained)
            .find(|d| d.field == name);
        match diff {
            Some(d) => {
                let verdict = match &d.why {
                    Some(why) => format!("allowed ({})", cell(why)),
                    None => "DIFFERENT".into(),
                };
                out.push_str(&format!(
                    "| {name} | {} | {} | {verdict} |\n",
                    cell(&d.reference),
                    cell(&d.twin)
                ));
            }
            None => {
                if let Some(i) = c.agree.iter().position(|a| a == name) {
                    let v = c.agreed_values.get(i).map_or("", String::as_str);
                    out.push_str(&format!("| {name} | {} | {} | same |\n", cell(v), cell(v)));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::twins::note_for;
    use crate::trace::holdings::{EpollFd, HeldListener, Registration};
    use crate::trace::skeleton::Counts;

    /// A normalised call from its text (`accept4(listener, ...) = conn`).
    fn call(text: &str, flags: &[&str], scm: Option<usize>) -> Call {
        let (name, rest) = text.split_once('(').unwrap();
        let (args, ret) = rest.rsplit_once(") = ").unwrap();
        Call {
            call: name.into(),
            fd: split_top(args).first().cloned(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            scm_rights_fds: scm,
            ret: ret.into(),
            text: text.into(),
            raw: String::new(),
            time_us: 0,
            dur_us: 0,
        }
    }

    fn listener(inode: u64, identity: &str, nonblocking: bool) -> HeldListener {
        HeldListener {
            fd: 4,
            inode,
            port: 8080,
            nonblocking,
            identity: identity.into(),
        }
    }

    fn epoll(regs: &[(u64, bool, &str)]) -> EpollFd {
        EpollFd {
            fd: 3,
            registrations: regs
                .iter()
                .map(|&(inode, listener, events)| Registration {
                    tfd: 4,
                    inode,
                    listener,
                    events_hex: String::new(),
                    events: events.split('|').map(str::to_string).collect(),
                })
                .collect(),
        }
    }

    fn role(name: &str, listeners: Vec<HeldListener>, epolls: Vec<EpollFd>) -> RoleHoldings {
        RoleHoldings {
            role: name.into(),
            pid: 1,
            listeners,
            epolls,
        }
    }

    fn skeleton(
        target: &str,
        life: Vec<(&str, Vec<Call>)>,
        sequential: Counts,
        holdings: Holdings,
    ) -> Skeleton {
        Skeleton {
            target: target.into(),
            workers: 2,
            connections: 3,
            burst: 4,
            kernel: String::new(),
            strace: String::new(),
            taken_unix_ms: 0,
            pids: Vec::new(),
            connection: "127.0.0.1:40000".into(),
            life: life.into_iter().map(|(r, c)| (r.to_string(), c)).collect(),
            sequential,
            burst_roles: Vec::new(),
            listener_ctl: Vec::new(),
            holdings,
        }
    }

    /// master-pass as traced here: the master accepts and sends one
    /// descriptor; worker 0 receives it and registers it edge-triggered.
    fn master_pass(target: &str, conn_events: &str) -> Skeleton {
        let master = vec![
            call("epoll_wait(epoll, …, 256, -1) = 1", &[], None),
            call(
                "accept4(listener, NULL, NULL, SOCK_CLOEXEC|SOCK_NONBLOCK) = conn",
                &["SOCK_CLOEXEC", "SOCK_NONBLOCK"],
                None,
            ),
            call(
                "sendmsg(channel-to-worker-0, {\"N\" SCM_RIGHTS[conn]}, MSG_NOSIGNAL) = 8",
                &["SCM_RIGHTS", "MSG_NOSIGNAL"],
                Some(1),
            ),
            call("close(conn) = 0", &[], None),
        ];
        let worker = vec![
            call("epoll_wait(epoll, …, 256, -1) = 1", &[], None),
            call(
                "recvmsg(channel-from-master, {\"N\" SCM_RIGHTS[conn]}, MSG_CMSG_CLOEXEC) = 8",
                &["SCM_RIGHTS", "MSG_CMSG_CLOEXEC"],
                Some(1),
            ),
            call(
                &format!("epoll_ctl(epoll, EPOLL_CTL_ADD, conn, {conn_events}) = 0"),
                &["EPOLL_CTL_ADD"],
                None,
            ),
            call("close(conn) = 0", &[], None),
        ];
        let counts = Counts {
            who_accepts: vec!["master".into()],
            accepts: 3,
            scm_rights_messages_per_conn: 1.0,
            fds_per_message: vec![1],
            replies_per_handoff: 2.0,
            ..Counts::default()
        };
        let holdings = Holdings {
            roles: vec![
                role(
                    "master",
                    vec![listener(7, "master only", true)],
                    vec![epoll(&[(7, true, "EPOLLIN")])],
                ),
                role("worker-0", vec![], vec![epoll(&[])]),
                role("worker-1", vec![], vec![epoll(&[])]),
            ],
        };
        skeleton(
            target,
            vec![("master", master), ("worker-0", worker)],
            counts,
            holdings,
        )
    }

    #[test]
    fn fields_of_a_master_pass_skeleton_name_the_mechanism() {
        let f = fields(&master_pass(
            "master-pass",
            "EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET",
        ));
        assert_eq!(f.accepting_role, "master");
        assert_eq!(f.accepts_per_wakeup, "1");
        assert_eq!(f.accept_flags, "accept4 SOCK_CLOEXEC|SOCK_NONBLOCK");
        assert_eq!(f.listener_nonblocking, "O_NONBLOCK");
        assert_eq!(f.handoff, "sendmsg SCM_RIGHTS");
        assert_eq!(f.fds_per_message, "1");
        assert_eq!(f.messages_per_handoff, "1.00");
        assert_eq!(f.replies_per_handoff, "2.00");
        assert_eq!(f.worker_receives, "recvmsg MSG_CMSG_CLOEXEC");
        assert_eq!(f.conn_registration, "EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET");
        assert_eq!(f.conn_trigger, "edge");
        assert_eq!(f.listener_polled_by, "master");
        assert_eq!(f.listener_events, "EPOLLIN");
        assert_eq!(f.listener_trigger, "level");
        assert_eq!(f.listener_reregistration, "none");
        assert_eq!(
            f.listeners_held,
            "1 listener; master: all; each worker: none"
        );
    }

    #[test]
    fn a_documented_difference_is_allowed_with_its_reason_and_the_rest_agree() {
        let node = master_pass("node:rr", "EPOLLIN");
        let lab = master_pass("master-pass", "EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET");
        let c = check(&node, &lab);
        assert_eq!(c.pair, ("node:rr".to_string(), "master-pass".to_string()));
        assert!(c.unexplained.is_empty(), "{:?}", c.unexplained);
        let fields: Vec<&str> = c.allowed.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["conn_registration", "conn_trigger"]);
        assert_eq!(c.allowed[1].reference, "level");
        assert_eq!(c.allowed[1].twin, "edge");
        assert_eq!(c.allowed[0].why.as_deref(), Some(LIBUV_CONN));
        assert_eq!(
            c.agree.len() + c.allowed.len(),
            Fields::default().entries().len()
        );
        assert_eq!(c.agree.len(), c.agreed_values.len());
    }

    #[test]
    fn a_difference_nobody_wrote_down_is_unexplained() {
        let node = master_pass("node:rr", "EPOLLIN");
        let mut lab = master_pass("master-pass", "EPOLLIN");
        // The twin's master now accepts until EAGAIN and sends two
        // descriptors per message.
        let calls = &mut lab.life[0].1;
        calls.insert(
            2,
            call(
                "accept4(listener, NULL, NULL, SOCK_CLOEXEC|SOCK_NONBLOCK) = EAGAIN",
                &["SOCK_CLOEXEC", "SOCK_NONBLOCK"],
                None,
            ),
        );
        calls.insert(
            2,
            call(
                "accept4(listener, NULL, NULL, SOCK_CLOEXEC|SOCK_NONBLOCK) = conn",
                &["SOCK_CLOEXEC", "SOCK_NONBLOCK"],
                None,
            ),
        );
        lab.sequential.fds_per_message = vec![2];
        let c = check(&node, &lab);
        let fields: Vec<&str> = c.unexplained.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["accepts_per_wakeup", "fds_per_message"]);
        assert_eq!(c.unexplained[0].reference, "1");
        assert_eq!(c.unexplained[0].twin, "until EAGAIN");
        assert!(c.unexplained.iter().all(|d| d.why.is_none()));
        // The same difference in a pair whose table does not list it.
        let c = check(
            &master_pass("node:none", "EPOLLIN"),
            &master_pass("shared:epoll", "EPOLLIN|EPOLLET"),
        );
        assert!(c.unexplained.is_empty(), "node:none lists it");
        let c = check(
            &master_pass("nginx:epoll-exclusive", "EPOLLIN"),
            &master_pass("shared:epoll-exclusive", "EPOLLIN|EPOLLET"),
        );
        let fields: Vec<&str> = c.unexplained.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["conn_trigger"], "only the events are listed");
    }

    /// A pre-fork skeleton: a blocking accept with no wait before it in a
    /// worker, the one shared listener blocking; `pollset`: the children
    /// also hold an epoll with the listener in it (Apache).
    fn prefork(target: &str, pollset: bool) -> Skeleton {
        let worker = vec![
            call("accept4(listener, …, …) = conn", &["SOCK_CLOEXEC"], None),
            call("read(conn, \"GET\", 8000) = 50", &[], None),
            call("close(conn) = 0", &[], None),
        ];
        let counts = Counts {
            who_accepts: vec!["worker-0".into(), "worker-1".into()],
            accepts: 3,
            ..Counts::default()
        };
        let epolls = || {
            if pollset {
                vec![epoll(&[(7, true, "EPOLLIN")])]
            } else {
                vec![]
            }
        };
        let holdings = Holdings {
            roles: vec![
                role("master", vec![listener(7, "shared", false)], vec![]),
                role("worker-0", vec![listener(7, "shared", false)], epolls()),
                role("worker-1", vec![listener(7, "shared", false)], epolls()),
            ],
        };
        skeleton(target, vec![("worker-0", worker)], counts, holdings)
    }

    #[test]
    fn prefork_fields_show_a_blocking_accept_with_no_wait_and_apaches_pollset_is_allowed() {
        let apache = prefork("apache:prefork", true);
        let lab = prefork("shared:prefork", false);
        let (a, b) = (fields(&apache), fields(&lab));
        assert_eq!(a.accepting_role, "workers");
        assert_eq!(a.accepts_per_wakeup, "1, no wait before");
        assert_eq!(a.listener_nonblocking, "blocking");
        assert_eq!(a.handoff, "none");
        assert_eq!(a.conn_registration, "not in an epoll");
        assert_eq!(a.listener_polled_by, "every worker, the same socket");
        assert_eq!(b.listener_polled_by, "none");
        assert_eq!(b.listener_events, "none");
        assert_eq!(
            a.listeners_held,
            "1 listener; master: all; each worker: the shared one"
        );
        let c = check(&apache, &lab);
        assert!(c.unexplained.is_empty(), "{:?}", c.unexplained);
        let fields: Vec<&str> = c.allowed.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(
            fields,
            ["listener_polled_by", "listener_events", "listener_trigger"]
        );
    }

    #[test]
    fn reuseport_holdings_name_own_sockets_and_listener_reregistration_is_read_from_the_ctl_list() {
        let mut s = prefork("reuseport", false);
        s.holdings = Holdings {
            roles: vec![
                role(
                    "master",
                    vec![listener(7, "own", true), listener(8, "own", true)],
                    vec![],
                ),
                role(
                    "worker-0",
                    vec![listener(7, "own", true)],
                    vec![epoll(&[(7, true, "EPOLLIN")])],
                ),
                role(
                    "worker-1",
                    vec![listener(8, "own", true)],
                    vec![epoll(&[(8, true, "EPOLLIN|EPOLLEXCLUSIVE")])],
                ),
            ],
        };
        s.listener_ctl = vec![(
            "worker-1".into(),
            vec!["EPOLL_CTL_DEL + EPOLL_CTL_ADD EPOLLIN|EPOLLEXCLUSIVE".into()],
        )];
        let f = fields(&s);
        assert_eq!(f.listener_polled_by, "each worker, its own socket");
        assert_eq!(
            f.listeners_held,
            "2 listeners; master: all; each worker: its own"
        );
        assert_eq!(f.listener_events, "EPOLLIN; EPOLLIN|EPOLLEXCLUSIVE");
        assert_eq!(f.listener_trigger, "level");
        assert_eq!(
            f.listener_reregistration,
            "EPOLL_CTL_DEL then EPOLL_CTL_ADD in one turn"
        );
        // An accept mutex changing hands: removed in one turn, added in a
        // later one.
        s.listener_ctl = vec![(
            "worker-1".into(),
            vec!["EPOLL_CTL_DEL".into(), "EPOLL_CTL_ADD EPOLLIN".into()],
        )];
        assert_eq!(fields(&s).listener_reregistration, "none");
    }

    #[test]
    fn a_skeleton_without_holdings_reads_unknown_for_the_proc_fields() {
        let mut s = master_pass("master-pass", "EPOLLIN");
        s.holdings = Holdings::default();
        let f = fields(&s);
        assert_eq!(f.listener_polled_by, "unknown");
        assert_eq!(f.listeners_held, "unknown");
        assert_eq!(f.listener_nonblocking, "unknown");
        assert_eq!(f.accepting_role, "master");
    }

    #[test]
    fn render_writes_one_line_per_field_with_its_verdict() {
        let node = master_pass("node:rr", "EPOLLIN");
        let mut lab = master_pass("master-pass", "EPOLLIN|EPOLLET");
        lab.sequential.replies_per_handoff = 1.0;
        let md = render(&check(&node, &lab));
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "| field | node:rr | master-pass | verdict |");
        assert_eq!(lines.len(), 2 + Fields::default().entries().len());
        assert!(md.contains("| handoff | sendmsg SCM_RIGHTS | sendmsg SCM_RIGHTS | same |"));
        assert!(md.contains("| replies_per_handoff | 2.00 | 1.00 | DIFFERENT |"));
        assert!(md.contains("| conn_trigger | level | edge | allowed (a worker registers"));
        // A `|` inside a cell is escaped.
        assert!(md.contains("| conn_registration | EPOLLIN | EPOLLIN\\|EPOLLET | allowed"));
    }

    #[test]
    fn every_allowed_difference_is_a_line_of_its_pairs_note_and_names_a_field() {
        let names: Vec<&str> = Fields::default()
            .entries()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for (reference, field, why) in ALLOWED {
            let note = note_for(reference).unwrap_or_else(|| panic!("{reference}: no note"));
            assert!(
                note.differs.contains(why),
                "{reference} {field}: not in TWIN_NOTES: {why}"
            );
            assert!(names.contains(field), "{reference}: no field {field}");
        }
    }
}
