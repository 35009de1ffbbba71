//! The "Under the hood" page of a trace (`under-the-hood.md`): how the
//! trace was made and how to make it again, one connection's life per
//! process as normalised calls and as strace printed them, each call with a
//! line saying what it does for the connection, then the counts, the burst
//! and, when `herd.json` is there, who the kernel woke. The explanations
//! come from a small pure function of the call, so the same call always
//! reads the same way on every target's page.

use std::fmt::Write;
use std::path::Path;

use super::diagram::{self, args, epoll_ctl_target, is_channel, is_error};
use super::herd::Herd;
use super::skeleton::{Call, Skeleton};
use super::strace::{is_accept, is_read, is_wait, is_write};

/// What a call does for the connection, in one plain line. `role` is the
/// process that made it, `life` that process's whole life of the
/// connection (a close reads differently in a process that handed the
/// connection on).
pub fn explain(target: &str, role: &str, c: &Call, life: &[Call]) -> String {
    let fd = c.fd.as_deref().unwrap_or("");
    let worker = role.starts_with("worker");
    let nginx = target.starts_with("nginx");
    if is_wait(&c.call) {
        // After its own shutdown: Apache's lingering close.
        let after_shutdown = life
            .iter()
            .position(|x| std::ptr::eq(x, c))
            .is_some_and(|i| {
                life[..i]
                    .iter()
                    .any(|x| x.call == "shutdown" && x.fd.as_deref() == Some("conn"))
            });
        // The timeout: 0 means the call never slept.
        let timeout_at = if c.call.starts_with("epoll") { 3 } else { 2 };
        let no_wait = args(c).get(timeout_at).is_some_and(|t| t == "0");
        return match c.ret.as_str() {
            "0" if no_wait => "looks without waiting: nothing is ready".into(),
            r if no_wait && !is_error(c) => {
                format!("looks without waiting: {r} descriptor(s) ready")
            }
            r if after_shutdown && !is_error(c) && r != "0" => {
                "waits for the client to close its side (a lingering close: unread data would otherwise reset the connection)".into()
            }
            "0" => "looks without waiting: nothing is ready".into(),
            r if is_error(c) => format!("its wait was interrupted ({r})"),
            _ if c.call == "poll" || c.call == "ppoll" => {
                "wakes up: poll reports a descriptor ready".into()
            }
            _ => "wakes up: its epoll instance reports a descriptor ready".into(),
        };
    }
    if is_accept(&c.call) {
        return match c.ret.as_str() {
            "conn" if target.contains("reuseport") => {
                "takes the connection from its own listener's accept queue (SO_REUSEPORT: the kernel chose this process's socket when the connection arrived)".into()
            }
            "conn" if worker => {
                "takes the connection from the shared accept queue (one listening socket, inherited by every worker)".into()
            }
            "conn" => "takes the connection from the listening socket's accept queue".into(),
            "EAGAIN" => {
                "lost the race: woken for a connection another process already took (EAGAIN, the queue is empty)".into()
            }
            r => format!("accept failed ({r})"),
        };
    }
    if c.call == "sendmsg" && c.scm_rights_fds.is_some() {
        let to = fd
            .strip_prefix("channel-to-")
            .unwrap_or("the other process");
        return format!(
            "passes the descriptor to {to} over their Unix socket (SCM_RIGHTS: the kernel installs a copy of it in {to})"
        );
    }
    if c.call == "recvmsg" && c.scm_rights_fds.is_some() {
        return "receives it: the connection arrives as a new descriptor of its own".into();
    }
    if let Some((op, target_fd)) = epoll_ctl_target(c) {
        let excl = c.flags.iter().any(|f| f == "EPOLLEXCLUSIVE");
        // Removed just before: the listener is being added back.
        let readded = life
            .iter()
            .position(|x| std::ptr::eq(x, c))
            .is_some_and(|i| {
                life[..i].iter().any(|x| {
                    epoll_ctl_target(x).is_some_and(|(op, t)| op == "DEL" && t == "listener")
                })
            });
        return match (op.as_str(), target_fd.as_str()) {
            (_, _) if is_error(c) && c.ret == "ENOENT" => format!(
                "tries to remove {target_fd} from its epoll instance; it was never registered there (ENOENT)"
            ),
            ("ADD", "conn") => {
                "registers it in its own epoll instance, to be told when the request arrives".into()
            }
            ("DEL", "conn") => "removes it from its epoll instance".into(),
            ("MOD", "conn") => "changes the events it waits for on the connection".into(),
            ("ADD", "listener") if nginx && excl && readded => {
                "adds the listener back to its epoll with EPOLLEXCLUSIVE: nginx's reorder (re-adding moves this worker to the end of the wait queue, so the next connections wake other workers first)".into()
            }
            ("ADD", "listener") if excl => {
                "watches the listener with EPOLLEXCLUSIVE: the kernel wakes one waiting process per connection, not all of them".into()
            }
            ("ADD", "listener") => {
                "watches the listener in its epoll instance: every process watching it is woken by a new connection".into()
            }
            ("DEL", "listener") if nginx => {
                "stops watching the listener: nginx's reorder (the listener is added back at once) or its accept mutex given up".into()
            }
            ("DEL", "listener") => "stops watching the listener".into(),
            (_, t) if t.starts_with("channel-to-") => format!(
                "updates what it waits for on the channel to {}",
                t.trim_start_matches("channel-to-")
            ),
            (_, "channel-from-master") => {
                "updates what it waits for on the channel from the master".into()
            }
            (op, t) => format!("epoll_ctl {op} on {t}"),
        };
    }
    if is_channel(c.fd.as_deref()) {
        let text = &c.text;
        if is_read(&c.call) {
            if is_error(c) {
                return format!("nothing more on the channel ({})", c.ret);
            }
            return if worker {
                "reads a message from the master".into()
            } else {
                let from = fd.strip_prefix("channel-to-").unwrap_or("the worker");
                format!("reads what {from} wrote back (its acknowledgement)")
            };
        }
        if is_write(&c.call) {
            if text.contains("NODE_CLUSTER") && text.contains("accepted") {
                return "tells the primary it accepted the connection (the cluster's answer to newconn)".into();
            }
            if text.contains("NODE_HANDLE_ACK") {
                return "acknowledges the handle to the primary, which then closes its own copy"
                    .into();
            }
            // The lab's frames: `[kind, flag, 0, 0, seq]` (strategies/common's channel).
            let payload = args(c).get(1).cloned().unwrap_or_default();
            if worker {
                if payload.starts_with("\"H\\0") {
                    return "tells the master the descriptor arrived (the lab's twin of Node's NODE_HANDLE_ACK)".into();
                }
                if payload.starts_with("\"A\\1") {
                    return "tells the master it took the connection (an Ack, accepted)".into();
                }
                if payload.starts_with("\"A\\0") {
                    return "tells the master it refuses the connection (an Ack, not accepted): the master sends it elsewhere".into();
                }
                if payload.starts_with("\"C\\0") {
                    return "tells the master the connection is closed".into();
                }
            }
            return if worker {
                "writes back to the master on their channel (a reply about the connection)".into()
            } else {
                let to = fd.strip_prefix("channel-to-").unwrap_or("the worker");
                format!("writes a message to {to} on their channel")
            };
        }
    }
    if fd == "conn" {
        if is_read(&c.call) {
            return match c.ret.as_str() {
                "0" => "reads the end of the stream: the client has closed its side".into(),
                "EAGAIN" => "nothing to read yet (EAGAIN)".into(),
                r if is_error(c) => format!("the read failed ({r})"),
                _ => "reads the request".into(),
            };
        }
        if is_write(&c.call) {
            return "writes the response".into();
        }
        match c.call.as_str() {
            "shutdown" => {
                return "ends its sending side: the client reads the end of the response".into()
            }
            "close" => {
                let handed_on = life
                    .iter()
                    .any(|x| x.call == "sendmsg" && x.scm_rights_fds.is_some());
                return if handed_on {
                    "closes its own copy; the worker's copy keeps the connection open".into()
                } else {
                    "closes the connection".into()
                };
            }
            "fcntl" => {
                return "reads or sets the descriptor's flags (bookkeeping, not sharing)".into()
            }
            "setsockopt" => {
                let a = args(c);
                let opt = a.get(2).cloned().unwrap_or_default();
                return format!("sets a socket option ({opt})");
            }
            _ => {}
        }
    }
    if fd == "conn"
        && matches!(
            c.call.as_str(),
            "ioctl" | "fstat" | "getsockname" | "getpeername" | "getsockopt"
        )
    {
        return "looks at the descriptor it was given (its own bookkeeping)".into();
    }
    "the process's own work (files, memory), not part of sharing the connection".into()
}

/// A code span for a table cell: `|` escaped, the fence longer than any
/// run of backticks inside.
fn code(s: &str) -> String {
    let s = s.replace(['\n', '\r'], " ").replace('|', "\\|");
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// Plain text for a table cell.
fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '|' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A fenced block around `lines`, its fence longer than any inside.
fn block(lines: &[String]) -> String {
    let longest = lines
        .iter()
        .flat_map(|l| l.split(|c| c != '`').map(str::len))
        .max()
        .unwrap_or(0);
    let fence = "`".repeat((longest + 1).max(3));
    format!("{fence}text\n{}\n{fence}\n", lines.join("\n"))
}

/// The command that makes this trace again.
pub fn command(s: &Skeleton) -> String {
    format!(
        "harness trace {} --workers {} --connections {} --burst {}",
        s.target, s.workers, s.connections, s.burst
    )
}

/// The page. `age_note`, when given, is printed under the title (say, that
/// the trace is older than the code).
pub fn markdown(s: &Skeleton, herd: Option<&Herd>, age_note: Option<&str>) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# Under the hood: {}\n", cell(&s.target));
    if let Some(note) = age_note {
        let _ = writeln!(m, "> {}\n", cell(note));
    }
    let pids: Vec<String> = s.pids.iter().map(|(r, p)| format!("{r} {p}")).collect();
    let _ = writeln!(
        m,
        "Made with {} on kernel {}, {}; traced processes: {}. {} workers, {} connections one at a time, then a burst of {} at once; the life below is the first connection's (client {}).\n",
        code(&command(s)),
        cell(&s.kernel),
        cell(&s.strace),
        cell(&pids.join(", ")),
        s.workers,
        s.connections,
        s.burst,
        cell(&s.connection),
    );
    let _ = writeln!(
        m,
        "**Tracing slows the traced processes a lot** (every system call stops in the tracer): nothing here is a timing. What counts is which calls are made, in which order, with which arguments.\n"
    );
    let _ = writeln!(m, "## One connection's life\n");
    if s.life.is_empty() {
        let _ = writeln!(m, "No process was seen touching the connection.\n");
    }
    for (role, calls) in &s.life {
        let _ = writeln!(m, "### {}\n", cell(role));
        let _ = writeln!(m, "| # | call | what it does |");
        let _ = writeln!(m, "|---|------|--------------|");
        for (i, c) in calls.iter().enumerate() {
            let _ = writeln!(
                m,
                "| {} | {} | {} |",
                i + 1,
                code(&c.text),
                cell(&explain(&s.target, role, c, calls))
            );
        }
        let raw: Vec<String> = calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let line = if c.raw.is_empty() { &c.text } else { &c.raw };
                format!("{:>3}  {}", i + 1, line.replace(['\n', '\r'], " "))
            })
            .collect();
        let _ = writeln!(m, "\nAs strace printed them:\n");
        m.push_str(&block(&raw));
        m.push('\n');
    }
    let q = &s.sequential;
    let _ = writeln!(
        m,
        "## Counts over the {} sequential connections\n",
        s.connections
    );
    let _ = writeln!(m, "| count | value |");
    let _ = writeln!(m, "|-------|-------|");
    let who = if q.who_accepts.is_empty() {
        "nobody seen".to_string()
    } else {
        q.who_accepts.join(", ")
    };
    let fds: Vec<String> = q.fds_per_message.iter().map(usize::to_string).collect();
    let rows = [
        ("who accepts", who),
        ("accepts", q.accepts.to_string()),
        (
            "accepts that returned EAGAIN, per connection",
            format!("{:.2}", q.accept_eagain_per_conn),
        ),
        (
            "returns from a wait of the accepting processes, per connection",
            format!("{:.2}", q.wakeups_per_conn),
        ),
        (
            "of those, with nothing accepted after, per connection",
            format!("{:.2}", q.wakeups_without_accept_per_conn),
        ),
        ("accepts per wakeup", format!("{:.2}", q.accepts_per_wakeup)),
        (
            "SCM_RIGHTS messages per connection",
            format!("{:.2}", q.scm_rights_messages_per_conn),
        ),
        ("descriptors per message", fds.join(", ")),
        (
            "messages back to the master per hand-off",
            format!("{:.2}", q.replies_per_handoff),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(m, "| {} | {} |", cell(k), cell(&v));
    }
    m.push('\n');
    match herd {
        Some(h) => herd_section(&mut m, s, h),
        None => {
            let _ = writeln!(m, "## The burst of {}, as strace saw it\n", s.burst);
            let _ = writeln!(
                m,
                "No `herd.json` here: a process woken by an arrival and put back to sleep inside the kernel (its wait found the event already taken) never returns to user space, so strace cannot see it, and these counts can hide a thundering herd.\n"
            );
            let _ = writeln!(
                m,
                "| process | wakeups (returns from a wait) | accepted | EAGAIN | descriptors received |"
            );
            let _ = writeln!(m, "|---|---|---|---|---|");
            for b in &s.burst_roles {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} | {} |",
                    cell(&b.role),
                    b.wakeups,
                    b.accepts,
                    b.accept_eagain,
                    b.received_fds
                );
            }
            m.push('\n');
        }
    }
    let _ = writeln!(
        m,
        "## Sequence diagram\n\n[diagram.svg](diagram.svg): one lane per process, the connection's life down the page, the descriptor's travel, and who woke for each arrival.\n\n![sequence diagram](diagram.svg)"
    );
    m
}

fn herd_section(m: &mut String, s: &Skeleton, h: &Herd) {
    let _ = writeln!(m, "## Who the kernel woke\n");
    let _ = writeln!(
        m,
        "From kernel tracepoints (`herd.json`: {}). A process woken and put back to sleep inside the kernel never returns to user space: strace cannot see it, these can.\n",
        cell(&h.tracepoints.join(", "))
    );
    let _ = writeln!(
        m,
        "Processes woken per sequential connection: **{:.2}** (1 = no herd), of which back to sleep in the kernel: {:.2}. Per burst connection: {:.2}.\n",
        h.woken_per_conn, h.slept_again_per_conn, h.burst_woken_per_conn
    );
    if !h.sequential.is_empty() {
        let _ = writeln!(
            m,
            "| connection | woken | back to sleep in the kernel | accepted by | EAGAIN |"
        );
        let _ = writeln!(m, "|---|---|---|---|---|");
        for c in &h.sequential {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} |",
                cell(&c.client),
                cell(&c.woken.join(", ")),
                cell(&c.slept_again.join(", ")),
                cell(c.accepted_by.as_deref().unwrap_or("")),
                cell(&c.eagain.join(", "))
            );
        }
        m.push('\n');
    }
    let _ = writeln!(m, "### The burst of {}\n", h.burst);
    let _ = writeln!(
        m,
        "| process | woken | back to sleep in the kernel | returned | accepted | EAGAIN | descriptors received |"
    );
    let _ = writeln!(m, "|---|---|---|---|---|---|---|");
    let mut roles: Vec<&str> = s.pids.iter().map(|(r, _)| r.as_str()).collect();
    for r in &h.burst_roles {
        if !roles.contains(&r.role.as_str()) {
            roles.push(&r.role);
        }
    }
    for role in roles {
        let w = h.burst_roles.iter().find(|r| r.role == role);
        let fds = s
            .burst_roles
            .iter()
            .find(|r| r.role == role)
            .map_or(0, |r| r.received_fds);
        let v = |f: fn(&super::herd::RoleWake) -> usize| w.map_or(0, f);
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | {} | {} |",
            cell(role),
            v(|r| r.woken),
            v(|r| r.slept_again),
            v(|r| r.returned),
            v(|r| r.accepts),
            v(|r| r.accept_eagain),
            fds
        );
    }
    m.push('\n');
}

/// Writes `diagram.svg` and `under-the-hood.md` into a trace directory,
/// with `herd.json` from there when the kernel pass wrote it. A `herd.json`
/// that cannot be read leaves the herd out and says so on the page: the
/// trace itself is still good.
pub fn write_pages(dir: &Path, s: &Skeleton) -> Result<(), String> {
    let herd_path = dir.join("herd.json");
    let (herd, note): (Option<Herd>, Option<String>) = if herd_path.exists() {
        match std::fs::read_to_string(&herd_path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(h) => (Some(h), None),
            Err(e) => (
                None,
                Some(format!(
                    "herd.json is here but could not be read ({e}): who the kernel woke is left out."
                )),
            ),
        }
    } else {
        (None, None)
    };
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    write("diagram.svg", diagram::svg(s, herd.as_ref()))?;
    write(
        "under-the-hood.md",
        markdown(s, herd.as_ref(), note.as_deref()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::diagram::tests::master_pass;

    fn c(call: &str, fd: &str, text: &str, ret: &str) -> Call {
        Call {
            call: call.into(),
            fd: Some(fd.into()),
            flags: Vec::new(),
            scm_rights_fds: text.contains("SCM_RIGHTS").then_some(1),
            ret: ret.into(),
            text: text.into(),
            raw: String::new(),
            time_us: 0,
            dur_us: 0,
        }
    }

    #[test]
    fn explains_the_mechanism_calls() {
        let accept = c("accept4", "listener", "accept4(listener) = conn", "conn");
        assert!(explain("shared:epoll", "worker-1", &accept, &[])
            .starts_with("takes the connection from the shared accept queue"));
        let lost = c(
            "accept4",
            "listener",
            "accept4(listener) = EAGAIN",
            "EAGAIN",
        );
        assert!(explain("shared:epoll", "worker-1", &lost, &[]).starts_with("lost the race"));
        let send = c(
            "sendmsg",
            "channel-to-worker-1",
            "sendmsg(channel-to-worker-1, {SCM_RIGHTS[conn]}, 0) = 8",
            "8",
        );
        assert!(explain("master-pass", "master", &send, &[])
            .starts_with("passes the descriptor to worker-1"));
        let recv = c(
            "recvmsg",
            "channel-from-master",
            "recvmsg(channel-from-master, {SCM_RIGHTS[conn]}, 0) = 8",
            "8",
        );
        assert!(explain("master-pass", "worker-1", &recv, &[]).starts_with("receives it"));
        let add = c(
            "epoll_ctl",
            "epoll",
            "epoll_ctl(epoll, EPOLL_CTL_ADD, conn, EPOLLIN) = 0",
            "0",
        );
        assert!(
            explain("node:rr", "worker-0", &add, &[]).starts_with("registers it in its own epoll")
        );
        let del = c(
            "epoll_ctl",
            "epoll",
            "epoll_ctl(epoll, EPOLL_CTL_DEL, listener, NULL) = 0",
            "0",
        );
        assert!(explain("nginx", "worker-0", &del, &[]).contains("nginx's reorder"));
        let ack = c(
            "sendto",
            "channel-from-master",
            r#"sendto(channel-from-master, "H\0\0\0\0\0\0\0", 8) = 8"#,
            "8",
        );
        assert!(explain("master-pass", "worker-0", &ack, &[]).contains("the descriptor arrived"));
        let close = c("close", "conn", "close(conn) = 0", "0");
        assert!(
            explain("master-pass", "master", &close, std::slice::from_ref(&send))
                .contains("own copy")
        );
        assert_eq!(
            explain("shared:epoll", "worker-0", &close, &[]),
            "closes the connection"
        );
    }

    #[test]
    fn the_page_has_the_command_the_warning_each_role_and_the_raw_lines() {
        let mut s = master_pass();
        s.life[0].1[1].raw =
            "accept4(4<TCP:[127.0.0.1:1]>, NULL, NULL, SOCK_CLOEXEC) = 8<TCP:[a->b]>".into();
        let md = markdown(&s, None, Some("older than the code"));
        assert!(md.starts_with("# Under the hood: master-pass\n"));
        assert!(md.contains("`harness trace master-pass --workers 2 --connections 3 --burst 8`"));
        assert!(md.contains("nothing here is a timing"));
        assert!(md.contains("> older than the code"));
        assert!(md.contains("### master\n") && md.contains("### worker-0\n"));
        assert!(md.contains(
            "  2  accept4(4<TCP:[127.0.0.1:1]>, NULL, NULL, SOCK_CLOEXEC) = 8<TCP:[a->b]>"
        ));
        assert!(md.contains("passes the descriptor to worker-0"));
        assert!(md.contains("[diagram.svg](diagram.svg)"));
        assert!(md.contains("No `herd.json` here"));
    }

    #[test]
    fn write_pages_reads_herd_json_and_survives_a_broken_one() {
        let dir = std::env::temp_dir().join(format!("trace-page-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = master_pass();
        write_pages(&dir, &s).unwrap();
        let md = std::fs::read_to_string(dir.join("under-the-hood.md")).unwrap();
        assert!(md.contains("No `herd.json` here"));
        assert!(std::fs::read_to_string(dir.join("diagram.svg"))
            .unwrap()
            .starts_with("<svg "));
        let herd = Herd {
            target: "master-pass".into(),
            woken_per_conn: 1.0,
            burst: 8,
            ..Herd::default()
        };
        std::fs::write(dir.join("herd.json"), serde_json::to_string(&herd).unwrap()).unwrap();
        write_pages(&dir, &s).unwrap();
        let md = std::fs::read_to_string(dir.join("under-the-hood.md")).unwrap();
        assert!(md.contains("## Who the kernel woke"), "{md}");
        std::fs::write(dir.join("herd.json"), "{not json").unwrap();
        write_pages(&dir, &s).unwrap();
        let md = std::fs::read_to_string(dir.join("under-the-hood.md")).unwrap();
        assert!(md.contains("could not be read"), "{md}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn table_cells_cannot_break_the_table() {
        let mut s = master_pass();
        s.life[0].1[0].text = "read(conn, \"a|b`c\") = 1".into();
        let md = markdown(&s, None, None);
        assert!(
            md.contains(r#"| 1 | ``read(conn, "a\|b`c") = 1`` |"#),
            "{md}"
        );
    }
}
