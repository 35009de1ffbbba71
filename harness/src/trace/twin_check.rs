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
use super::strace::split_top;

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
    /// What the trace shows done to the listener's registration after
    /// start-up: `none`, `EPOLL_CTL_DEL then EPOLL_CTL_ADD`, or the
    /// operations seen.
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

/// Reasons shared by several pairs.
const LIBUV_CONN: &str = "libuv registers a connection for EPOLLIN only, level-triggered (EPOLLOUT is added while a write waits); the lab's worker registers it once for EPOLLIN|EPOLLOUT|EPOLLRDHUP, edge-triggered";
const NGINX_ACCEPT: &str = "nginx accepts with SOCK_NONBLOCK only (its connections are not close-on-exec); ours adds SOCK_CLOEXEC";
const NGINX_CONN: &str = "nginx registers a new connection for reading (EPOLLIN|EPOLLRDHUP, edge-triggered) and adds EPOLLOUT only when a write would block; ours registers EPOLLIN|EPOLLOUT|EPOLLRDHUP at once, edge-triggered as well";
const NGINX_RDHUP: &str = "nginx adds the listener with EPOLLRDHUP, as every read event it adds (ngx_epoll_add_event); ours with EPOLLIN alone; EPOLLRDHUP never fires on a listening socket";
const APACHE_POLLSET: &str = "Apache's child builds its pollset (an epoll with the listener in it, EPOLLIN, level-triggered) but with one listener never waits on it before accept; ours has no epoll: both block in accept";

/// The differences known and explained: (reference, field, why). A field
/// listed here whose values agree counts as agreeing.
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
        "nginx's workers inherit every worker's socket and ignore the others; ours keep only their own (the master holds all either way)",
    ),
    (
        "apache:prefork",
        "accept_flags",
        "Apache accepts a blocking connection and sets O_NONBLOCK with fcntl next; ours asks for it in accept4 (the connection is non-blocking either way)",
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

fn is_wait(name: &str) -> bool {
    matches!(
        name,
        "epoll_wait" | "epoll_pwait" | "epoll_pwait2" | "poll" | "ppoll" | "select" | "pselect6"
    )
}

fn is_accept(name: &str) -> bool {
    matches!(name, "accept" | "accept4")
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
/// in the lives of `roles`.
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
    let listener_reregistration = {
        let ops = |v: &Vec<String>| -> Vec<String> {
            v.iter()
                .map(|o| o.split_whitespace().next().unwrap_or("").to_string())
                .collect()
        };
        let del_then_add = s.listener_ctl.iter().any(|(_, v)| {
            let o = ops(v);
            o.windows(2)
                .any(|w| w[0] == "EPOLL_CTL_DEL" && w[1] == "EPOLL_CTL_ADD")
        });
        if del_then_add {
            "EPOLL_CTL_DEL then EPOLL_CTL_ADD".to_string()
        } else {
            let mut all: Vec<String> = s.listener_ctl.iter().flat_map(|(_, v)| ops(v)).collect();
            all.sort();
            all.dedup();
            if all.is_empty() {
                "none".into()
            } else {
                all.join(", ")
            }
        }
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
