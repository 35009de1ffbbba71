//! Parses strace's text (`-tt -T -yy`) into events. strace is the tracer
//! every Linux machine can install without a kernel build, and its lines
//! already name what a descriptor is (`-yy`); this module only splits them,
//! so the skeleton can reason on fields instead of on text.

/// One system call, whole (an `unfinished ...` line joined with its
/// `<... resumed>` line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The thread that made it (from `[pid N]`, or from the `-ff` file).
    pub pid: i32,
    /// Wall-clock time of day in microseconds (`-tt`).
    pub time_us: u64,
    /// The system call's name.
    pub name: String,
    /// The arguments as strace printed them, without the parentheses.
    pub args: String,
    /// The return value as printed (`8<TCP:[...]>`, `-1 EAGAIN (...)`);
    /// `None` when the call never returned in the trace (detached).
    pub ret: Option<String>,
    /// How long it took (`-T`), microseconds: a wait that returned did so
    /// at `time_us + dur_us`.
    pub dur_us: u64,
}

impl Event {
    /// The return value's number, when it has one.
    pub fn ret_value(&self) -> Option<i64> {
        let r = self.ret.as_deref()?;
        let end = r
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
            .map_or(r.len(), |(i, _)| i);
        r[..end].parse().ok()
    }

    /// The error name of a failed call (`EAGAIN`).
    pub fn errno(&self) -> Option<&str> {
        let r = self.ret.as_deref()?;
        let rest = r.strip_prefix("-1 ")?;
        rest.split_whitespace().next()
    }

    /// The arguments split at top-level commas (not inside `{}`, `[]`,
    /// `<>`, `()` or a string).
    pub fn arg_list(&self) -> Vec<String> {
        split_top(&self.args)
    }
}

/// What one line of strace is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Line {
    Whole(Event),
    /// `name(args <unfinished ...>`.
    Unfinished(Event),
    /// `<... name resumed>rest) = ret`.
    Resumed {
        pid: i32,
        name: String,
        args: String,
        ret: Option<String>,
        dur_us: u64,
    },
}

/// Parses one file of strace output; `pid` is the thread of a `-ff` file
/// (lines with `[pid N]` override it). Lines that are not system calls
/// (signals, exits, `+++`) are skipped.
pub fn parse(text: &str, pid: i32) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    // Index into `out` of each thread's unfinished call.
    let mut pending: std::collections::HashMap<i32, usize> = std::collections::HashMap::new();
    for line in text.lines() {
        match parse_line(line, pid) {
            Some(Line::Whole(e)) => out.push(e),
            Some(Line::Unfinished(e)) => {
                pending.insert(e.pid, out.len());
                out.push(e);
            }
            Some(Line::Resumed {
                pid,
                name,
                args,
                ret,
                dur_us,
            }) => {
                if let Some(i) = pending.remove(&pid) {
                    if out[i].name == name {
                        let e = &mut out[i];
                        e.args = if e.args.ends_with(',') {
                            format!("{} {args}", e.args)
                        } else {
                            format!("{}{args}", e.args)
                        };
                        e.ret = ret;
                        e.dur_us = dur_us;
                    }
                }
            }
            None => {}
        }
    }
    out
}

fn parse_line(line: &str, default_pid: i32) -> Option<Line> {
    let mut rest = line.trim_end();
    let mut pid = default_pid;
    if let Some(r) = rest.strip_prefix("[pid") {
        let (n, r) = r.trim_start().split_once(']')?;
        pid = n.trim().parse().ok()?;
        rest = r.trim_start();
    } else if let Some((first, r)) = rest.split_once(' ') {
        // `strace -f -o FILE` without -ff: `PID HH:MM:SS.us ...`.
        if !first.contains(':') && first.chars().all(|c| c.is_ascii_digit()) {
            pid = first.parse().ok()?;
            rest = r.trim_start();
        }
    }
    let (stamp, rest) = rest.split_once(' ')?;
    let time_us = parse_time(stamp)?;
    let rest = rest.trim_start();
    if let Some(r) = rest.strip_prefix("<... ") {
        let (name, r) = r.split_once(" resumed>")?;
        let (args, ret, dur_us) = split_ret(r);
        return Some(Line::Resumed {
            pid,
            name: name.to_string(),
            args: args.trim_start().to_string(),
            ret,
            dur_us,
        });
    }
    let open = rest.find('(')?;
    let name = &rest[..open];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let body = &rest[open + 1..];
    for tail in [" <unfinished ...>", " <detached ...>"] {
        if let Some(args) = body.strip_suffix(tail) {
            let e = Event {
                pid,
                time_us,
                name: name.to_string(),
                // An unfinished call keeps its trailing comma for the join.
                args: if tail.contains("unfinished") {
                    args.trim_end().to_string()
                } else {
                    args.trim_end().trim_end_matches(',').to_string()
                },
                ret: None,
                dur_us: 0,
            };
            return Some(if tail.contains("unfinished") {
                Line::Unfinished(e)
            } else {
                Line::Whole(e)
            });
        }
    }
    let (args, ret, dur_us) = split_ret(body);
    Some(Line::Whole(Event {
        pid,
        time_us,
        name: name.to_string(),
        args,
        ret,
        dur_us,
    }))
}

/// Splits `args) = ret <0.000012>` at the closing parenthesis of the call;
/// the `-T` duration in microseconds (0 when absent).
fn split_ret(body: &str) -> (String, Option<String>, u64) {
    match body.rfind(") = ") {
        Some(i) => {
            let ret = body[i + 4..].trim();
            let (ret, dur_us) = match ret.rfind(" <") {
                Some(j)
                    if ret.ends_with('>')
                        && ret[j + 2..].starts_with(|c: char| c.is_ascii_digit()) =>
                {
                    let secs: f64 = ret[j + 2..ret.len() - 1].parse().unwrap_or(0.0);
                    (&ret[..j], (secs * 1e6).round() as u64)
                }
                _ => (ret, 0),
            };
            (body[..i].to_string(), Some(ret.to_string()), dur_us)
        }
        None => (body.trim_end_matches(')').to_string(), None, 0),
    }
}

/// `05:06:22.768276` in microseconds since midnight.
fn parse_time(s: &str) -> Option<u64> {
    let (hms, us) = s.split_once('.')?;
    let mut parts = hms.split(':');
    let h: u64 = parts.next()?.parse().ok()?;
    let m: u64 = parts.next()?.parse().ok()?;
    let sec: u64 = parts.next()?.parse().ok()?;
    let us: u64 = us.parse().ok()?;
    Some(((h * 60 + m) * 60 + sec) * 1_000_000 + us)
}

/// A call that waits for readiness (an event loop's wakeup).
pub fn is_wait(name: &str) -> bool {
    matches!(
        name,
        "epoll_wait" | "epoll_pwait" | "epoll_pwait2" | "poll" | "ppoll" | "select" | "pselect6"
    )
}

/// An accept.
pub fn is_accept(name: &str) -> bool {
    matches!(name, "accept" | "accept4")
}

/// A read from a socket or file.
pub fn is_read(name: &str) -> bool {
    matches!(name, "read" | "readv" | "recvfrom" | "recvmsg" | "recv")
}

/// A write to a socket or file.
pub fn is_write(name: &str) -> bool {
    matches!(name, "write" | "writev" | "sendto" | "sendmsg" | "send")
}

/// Splits at commas outside brackets and strings.
pub fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut in_str = false;
    let mut escaped = false;
    let mut cur = String::new();
    let mut prev = ' ';
    for c in s.chars() {
        let arrow = c == '>' && prev == '-';
        prev = c;
        if in_str {
            cur.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' | '[' | '(' | '<' => depth += 1,
            '}' | ']' | ')' => depth -= 1,
            '>' if !arrow => depth -= 1,
            ',' if depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// A descriptor as `-yy` prints it: `8<TCP:[127.0.0.1:1->127.0.0.1:2]>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fd {
    /// Its number in the process.
    pub num: i32,
    /// What strace says it is (`TCP:[...]`, `UNIX-STREAM:[a->b]`,
    /// `anon_inode:[eventpoll]`); empty when strace did not say.
    pub path: String,
}

/// Parses a descriptor at the start of `s`.
pub fn parse_fd(s: &str) -> Option<Fd> {
    let s = s.trim();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    let num = s[..end].parse().ok()?;
    let rest = &s[end..];
    let path = match rest.strip_prefix('<') {
        Some(r) => {
            // The path ends at the '>' that closes the first '<'.
            let mut depth = 1;
            let mut close = r.len();
            let mut prev = ' ';
            for (i, c) in r.char_indices() {
                let arrow = c == '>' && prev == '-';
                prev = c;
                match c {
                    '<' => depth += 1,
                    '>' if !arrow => {
                        depth -= 1;
                        if depth == 0 {
                            close = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            r[..close].to_string()
        }
        None => String::new(),
    };
    Some(Fd { num, path })
}

/// Every descriptor inside `SCM_RIGHTS` data (`cmsg_data=[8<TCP:[...]>]`).
pub fn scm_rights(args: &str) -> Option<Vec<Fd>> {
    if !args.contains("SCM_RIGHTS") {
        return None;
    }
    let start = args.find("cmsg_data=[")? + "cmsg_data=[".len();
    let body = &args[start..];
    let mut depth = 1;
    let mut end = body.len();
    for (i, c) in body.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            _ => {}
        }
    }
    Some(
        split_top(&body[..end])
            .iter()
            .filter_map(|s| parse_fd(s))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real lines, captured here from `lab-server --strategy master-pass
    // --workers 2` under `strace -f -tt -T -yy -s 256 -ff`.
    const MASTER: &str = r#"05:06:22.768276 accept4(4<TCP:[127.0.0.1:36017]>, NULL, NULL, SOCK_CLOEXEC|SOCK_NONBLOCK) = 8<TCP:[127.0.0.1:36017->127.0.0.1:49332]> <0.000028>
05:06:22.769461 sendmsg(6<UNIX-STREAM:[73266815->73266816]>, {msg_name=NULL, msg_namelen=0, msg_iov=[{iov_base="N\0\0\0\0\0\0\0", iov_len=8}], msg_iovlen=1, msg_control=[{cmsg_len=20, cmsg_level=SOL_SOCKET, cmsg_type=SCM_RIGHTS, cmsg_data=[8<TCP:[127.0.0.1:36017->127.0.0.1:49332]>]}], msg_controllen=24, msg_flags=0}, MSG_NOSIGNAL) = 8 <0.000099>
05:06:22.770849 recvfrom(6<UNIX-STREAM:[73266815->73266816]>, 0x7ffdd91e9e00, 4096, 0, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable) <0.000009>
05:06:22.786498 epoll_wait(5<anon_inode:[eventpoll]>,  <detached ...>"#;

    #[test]
    fn a_master_pass_master_line_gives_its_fields() {
        let ev = parse(MASTER, 24852);
        assert_eq!(ev.len(), 4);
        let a = &ev[0];
        assert_eq!(a.pid, 24852);
        assert_eq!(a.name, "accept4");
        assert_eq!(a.time_us, ((5 * 60 + 6) * 60 + 22) * 1_000_000 + 768_276);
        assert_eq!(a.ret_value(), Some(8));
        let args = a.arg_list();
        assert_eq!(args[3], "SOCK_CLOEXEC|SOCK_NONBLOCK");
        assert_eq!(
            parse_fd(&args[0]),
            Some(Fd {
                num: 4,
                path: "TCP:[127.0.0.1:36017]".into()
            })
        );
        assert_eq!(
            parse_fd(a.ret.as_deref().unwrap()).unwrap().path,
            "TCP:[127.0.0.1:36017->127.0.0.1:49332]"
        );
        let fds = scm_rights(&ev[1].args).unwrap();
        assert_eq!(fds.len(), 1);
        assert_eq!(fds[0].num, 8);
        assert_eq!(ev[1].arg_list().len(), 3);
        assert_eq!(ev[2].errno(), Some("EAGAIN"));
        assert_eq!(ev[2].ret_value(), Some(-1));
        assert_eq!(ev[3].name, "epoll_wait");
        assert_eq!(ev[3].ret, None);
    }

    #[test]
    fn an_unfinished_call_is_joined_with_its_resumption() {
        // The shape strace -f (one file) prints when two threads interleave.
        let text = r#"[pid 24855] 05:06:22.783360 epoll_wait(3<anon_inode:[eventpoll]>,  <unfinished ...>
[pid 24854] 05:06:22.783361 close(5<TCP:[127.0.0.1:36017->127.0.0.1:49346]>) = 0 <0.000052>
[pid 24855] 05:06:22.785213 <... epoll_wait resumed>[{events=EPOLLIN, data={u32=0, u64=0}}], 256, 5000) = 1 <0.001853>
[pid 24855] 05:06:22.785214 +++ exited with 0 +++"#;
        let ev = parse(text, 0);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].pid, 24855);
        assert_eq!(ev[0].name, "epoll_wait");
        assert_eq!(ev[0].ret_value(), Some(1));
        assert_eq!(ev[0].arg_list().len(), 4);
        assert_eq!(ev[1].pid, 24854);
    }

    #[test]
    fn a_worker_recvmsg_shows_the_descriptor_and_its_flags() {
        let line = r#"05:06:22.769738 recvmsg(7<UNIX-STREAM:[73266816->73266815]>, {msg_name=NULL, msg_namelen=0, msg_iov=[{iov_base="N\0\0\0\0\0\0\0", iov_len=256}], msg_iovlen=1, msg_control=[{cmsg_len=20, cmsg_level=SOL_SOCKET, cmsg_type=SCM_RIGHTS, cmsg_data=[5<TCP:[127.0.0.1:36017->127.0.0.1:49332]>]}], msg_controllen=24, msg_flags=MSG_CMSG_CLOEXEC}, MSG_CMSG_CLOEXEC) = 8 <0.000046>"#;
        let ev = parse(line, 24854);
        let fds = scm_rights(&ev[0].args).unwrap();
        assert_eq!(fds[0].num, 5);
        assert_eq!(ev[0].arg_list()[2], "MSG_CMSG_CLOEXEC");
    }
}
