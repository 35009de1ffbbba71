//! The sequence diagram of a trace (`diagram.svg`), written by hand as SVG
//! text: no font is measured, the browser sets the text in its own
//! sans-serif and monospace.
//!
//! The top part has one lane per process (the client, the master, each
//! worker) and one connection's life down the page: each system call a row,
//! in the order strace saw them across the processes, with arrows for the
//! client's connection and request, a descriptor's travel from the master
//! to a worker (`SCM_RIGHTS`), the worker's replies to the master and the
//! response to the client. Calls that are not part of the mechanism
//! (`fcntl`, `mmap`, reading a time zone file) are folded into one grey row.
//!
//! The bottom part is the burst and, when `herd.json` is there, the herd:
//! for each sequential connection a mark on every process the kernel woke
//! for its arrival (a herd is several marks on one row, `EPOLLEXCLUSIVE` or
//! `SO_REUSEPORT` one), and per process over the burst how often it was
//! woken, went back to sleep inside the kernel, returned, accepted, or lost
//! the race. Tracing slows the processes a lot: nothing drawn is a timing.
//!
//! The output depends only on its input (no clock, no hash order).

use std::fmt::Write;

use super::herd::{Herd, RoleWake};
use super::skeleton::{Call, Skeleton};
use super::strace::{is_accept, is_read, is_wait, is_write, split_top};

/// Escapes text for an SVG (XML) text node or attribute; characters XML
/// does not allow are dropped.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Whether a call returned an error (its `ret` is an errno name).
pub(crate) fn is_error(c: &Call) -> bool {
    c.ret.starts_with('E') && c.ret.chars().all(|ch| ch.is_ascii_uppercase())
}

/// The normalised arguments of a call (from its `text`).
pub(crate) fn args(c: &Call) -> Vec<String> {
    let Some(open) = c.text.find('(') else {
        return Vec::new();
    };
    let inner = &c.text[open + 1..];
    let inner = inner.rfind(") = ").map_or(inner, |j| &inner[..j]);
    split_top(inner)
}

/// `epoll_ctl`'s operation (`ADD`) and the descriptor it is about.
pub(crate) fn epoll_ctl_target(c: &Call) -> Option<(String, String)> {
    if c.call != "epoll_ctl" {
        return None;
    }
    let a = args(c);
    let op = a.get(1)?.trim_start_matches("EPOLL_CTL_").to_string();
    Some((op, a.get(2)?.clone()))
}

/// `SCM_RIGHTS[conn]` as the normalised text shows it.
fn rights_text(c: &Call) -> Option<&str> {
    let i = c.text.find("SCM_RIGHTS[")?;
    let j = c.text[i..].find(']')?;
    Some(&c.text[i..=i + j])
}

/// A channel between the master and a worker.
pub(crate) fn is_channel(fd: Option<&str>) -> bool {
    fd.is_some_and(|f| f.starts_with("channel-"))
}

/// Whether a call is part of the sharing mechanism (kept in the diagram)
/// rather than a process's own bookkeeping (folded).
pub(crate) fn is_mechanism(c: &Call) -> bool {
    let fd = c.fd.as_deref();
    if is_wait(&c.call) {
        // A poll that returned nothing at once is bookkeeping.
        return c.ret != "0";
    }
    if is_accept(&c.call) {
        return true;
    }
    if let Some((_, target)) = epoll_ctl_target(c) {
        return target == "listener" || target == "conn";
    }
    if is_read(&c.call) || is_write(&c.call) {
        return fd == Some("conn") || is_channel(fd);
    }
    matches!(c.call.as_str(), "close" | "shutdown") && fd == Some("conn")
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// A short label for a call: its descriptor, what it carried, its result.
pub(crate) fn label(c: &Call) -> String {
    let fd = c.fd.clone().unwrap_or_default();
    let body = if let Some((op, target)) = epoll_ctl_target(c) {
        let excl = if c.flags.iter().any(|f| f == "EPOLLEXCLUSIVE") {
            ", EPOLLEXCLUSIVE"
        } else {
            ""
        };
        format!("{op} {target}{excl}")
    } else if let Some(r) = rights_text(c) {
        format!("{fd}, {r}")
    } else if is_write(&c.call) && is_channel(c.fd.as_deref()) {
        // What the message says, when it says it in text (Node's JSON).
        match args(c).get(1).filter(|a| a.starts_with('"')) {
            Some(p) if p.starts_with("\"{") => {
                format!("{fd}, {}", shorten(&p.replace("\\\"", "\""), 34))
            }
            // A lab frame: its kind.
            Some(p) => match p[1..].chars().next().filter(char::is_ascii_alphabetic) {
                Some(kind) => format!("{fd}, \"{kind}…\""),
                None => fd,
            },
            None => fd,
        }
    } else if c.call == "shutdown" {
        let how = args(c).get(1).cloned().unwrap_or_default();
        format!("{fd}, {how}")
    } else if fd.is_empty() && !args(c).is_empty() {
        "…".to_string()
    } else {
        fd
    };
    shorten(&format!("{}({body}) = {}", c.call, c.ret), 64)
}

/// Lane colours: the client grey, the master blue, the workers the
/// report's palette without its red (kept for descriptors in transit).
fn lane_color(lane: usize) -> &'static str {
    const WORKERS: [&str; 10] = [
        "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#393b79",
        "#ad494a", "#7f7f7f",
    ];
    match lane {
        0 => "#7f7f7f",
        1 => "#1f77b4",
        i => WORKERS[(i - 2) % WORKERS.len()],
    }
}

const FD_RED: &str = "#d62728";
const CLIENT_BLUE: &str = "#1f77b4";
const REPLY_GREY: &str = "#555555";
const RESPONSE_GREEN: &str = "#2ca02c";
const SLEPT_GREY: &str = "#999999";
const ROW: i32 = 22;
const FONT: &str = "sans-serif";
const MONO: &str = "monospace";

/// One row of the top part.
struct Step<'a> {
    lane: usize,
    /// The first call of the row.
    call: Option<&'a Call>,
    text: String,
    /// A folded row (bookkeeping calls).
    folded: bool,
}

/// The roles' calls merged in strace's time order (ties: lane order, then
/// each role's own order), bookkeeping folded, repeats counted.
fn steps<'a>(s: &'a Skeleton, lanes: &[String]) -> Vec<Step<'a>> {
    let mut all: Vec<(u64, usize, usize, &Call)> = Vec::new();
    for (role, calls) in &s.life {
        let Some(lane) = lanes.iter().position(|l| l == role) else {
            continue;
        };
        for (i, c) in calls.iter().enumerate() {
            all.push((c.time_us, lane, i, c));
        }
    }
    all.sort_by_key(|&(t, lane, i, _)| (t, lane, i));
    let mut out: Vec<Step> = Vec::new();
    // Folded calls of the last row: (names, count).
    let mut folded: Vec<(Vec<String>, usize)> = Vec::new();
    let mut repeats: Vec<usize> = Vec::new();
    // The last row that is not folded: a folded row after it may take
    // more of its lane's calls without changing the order of the mechanism.
    let mut last_kept: Option<usize> = None;
    for (_, lane, _, c) in all {
        let last = out.len().checked_sub(1);
        let same_lane = last.is_some_and(|j| out[j].lane == lane);
        if !is_mechanism(c) {
            let pending = (0..out.len())
                .rev()
                .take_while(|&j| Some(j) != last_kept)
                .find(|&j| out[j].lane == lane);
            if let Some(j) = pending {
                let (names, n) = &mut folded[j];
                *n += 1;
                if !names.contains(&c.call) {
                    names.push(c.call.clone());
                }
                continue;
            }
            out.push(Step {
                lane,
                call: Some(c),
                text: String::new(),
                folded: true,
            });
            folded.push((vec![c.call.clone()], 1));
            repeats.push(1);
            continue;
        }
        let text = label(c);
        if let Some(j) = last.filter(|&j| same_lane && !out[j].folded && out[j].text == text) {
            repeats[j] += 1;
            continue;
        }
        out.push(Step {
            lane,
            call: Some(c),
            text,
            folded: false,
        });
        last_kept = Some(out.len() - 1);
        folded.push((Vec::new(), 0));
        repeats.push(1);
    }
    for (j, st) in out.iter_mut().enumerate() {
        if st.folded {
            let (names, n) = &folded[j];
            let shown: Vec<&str> = names.iter().take(4).map(String::as_str).collect();
            let more = if names.len() > 4 { ", …" } else { "" };
            let calls = if *n == 1 { "call" } else { "calls" };
            st.text = format!("⋯ {n} other {calls} ({}{more})", shown.join(", "));
        } else if repeats[j] > 1 {
            st.text = format!("{} ×{}", st.text, repeats[j]);
        }
    }
    out
}

/// The lanes: the client, then the roles of `s.pids` in order.
fn lanes(s: &Skeleton) -> Vec<String> {
    let mut v = vec!["client".to_string()];
    v.extend(s.pids.iter().map(|(r, _)| r.clone()));
    v
}

/// An arrow from step `from` to step `to` (or to a lane on the same row).
struct Arrow {
    from: (usize, usize),
    to: (usize, usize),
    kind: &'static str,
}

fn arrows(st: &[Step], lanes: &[String]) -> Vec<Arrow> {
    let mut out = Vec::new();
    let call = |j: usize| st[j].call.filter(|_| !st[j].folded);
    // The client's connect ends at the accept that returned it; its request
    // at the first read of it.
    if let Some(j) =
        (0..st.len()).find(|&j| call(j).is_some_and(|c| is_accept(&c.call) && c.ret == "conn"))
    {
        out.push(Arrow {
            from: (0, 0),
            to: (st[j].lane, j + 1),
            kind: "connect",
        });
    }
    if let Some(j) = (0..st.len()).find(|&j| {
        call(j).is_some_and(|c| {
            is_read(&c.call) && c.fd.as_deref() == Some("conn") && !is_error(c) && c.ret != "0"
        })
    }) {
        out.push(Arrow {
            from: (0, j + 1),
            to: (st[j].lane, j + 1),
            kind: "request",
        });
    }
    for j in 0..st.len() {
        let Some(c) = call(j) else { continue };
        let fd = c.fd.as_deref().unwrap_or("");
        // A descriptor's travel: to the worker's next recvmsg with rights.
        if c.call == "sendmsg" && c.scm_rights_fds.is_some() {
            if let Some(worker) = fd.strip_prefix("channel-to-") {
                if let Some(k) = (j + 1..st.len()).find(|&k| {
                    lanes[st[k].lane] == worker
                        && call(k)
                            .is_some_and(|r| r.call == "recvmsg" && r.scm_rights_fds.is_some())
                }) {
                    out.push(Arrow {
                        from: (st[j].lane, j + 1),
                        to: (st[k].lane, k + 1),
                        kind: "fd",
                    });
                }
            }
        }
        // A worker's message back: to the master's next read of it.
        if fd == "channel-from-master" && is_write(&c.call) && c.scm_rights_fds.is_none() {
            let me = &lanes[st[j].lane];
            let back = format!("channel-to-{me}");
            let k = (j + 1..st.len()).find(|&k| {
                call(k).is_some_and(|r| {
                    is_read(&r.call) && r.fd.as_deref() == Some(&back) && !is_error(r)
                })
            });
            if let Some(master) = lanes.iter().position(|l| l == "master") {
                out.push(Arrow {
                    from: (st[j].lane, j + 1),
                    to: (master, k.map_or(j, |k| k) + 1),
                    kind: "reply",
                });
            }
        }
        // The response.
        if fd == "conn" && is_write(&c.call) && !is_error(c) {
            out.push(Arrow {
                from: (st[j].lane, j + 1),
                to: (0, j + 1),
                kind: "response",
            });
        }
    }
    out
}

fn arrow_color(kind: &str) -> &'static str {
    match kind {
        "fd" => FD_RED,
        "reply" => REPLY_GREY,
        "response" => RESPONSE_GREEN,
        _ => CLIENT_BLUE,
    }
}

/// Text at `(x, y)`.
fn text(out: &mut String, x: i32, y: i32, size: u32, attrs: &str, s: &str) {
    let _ = writeln!(
        out,
        r#"<text x="{x}" y="{y}" font-family="{FONT}" font-size="{size}" {attrs}>{}</text>"#,
        esc(s)
    );
}

/// The diagram. `herd` is `herd.json` when the kernel pass wrote it.
pub fn svg(s: &Skeleton, herd: Option<&Herd>) -> String {
    let lanes = lanes(s);
    let n = lanes.len() as i32;
    let lane_w = (640 / n.max(1)).clamp(70, 120);
    let lane_x = |i: usize| 50 + i as i32 * lane_w;
    let label_x = lane_x(lanes.len() - 1) + 50;
    let width = (label_x + 620).max(1160);
    let mut b = String::new();

    // Title.
    text(
        &mut b,
        20,
        30,
        18,
        r#"font-weight="bold""#,
        &format!("Under the hood: {}", s.target),
    );
    text(
        &mut b,
        20,
        52,
        13,
        "",
        &format!(
            "One connection ({}) down the page: one lane per process, one row per system call, in the order strace saw them (not to scale).",
            s.connection
        ),
    );

    // Lane heads.
    let head_y = 84;
    let pid_of = |role: &str| s.pids.iter().find(|(r, _)| r == role).map(|(_, p)| *p);
    for (i, l) in lanes.iter().enumerate() {
        let x = lane_x(i);
        let _ = writeln!(
            b,
            r#"<text class="lane" x="{x}" y="{head_y}" text-anchor="middle" font-family="{FONT}" font-size="14" font-weight="bold" fill="{}">{}</text>"#,
            lane_color(i),
            esc(l)
        );
        let sub = pid_of(l).map_or("(harness)".to_string(), |p| format!("pid {p}"));
        let _ = writeln!(
            b,
            r##"<text x="{x}" y="{}" text-anchor="middle" font-family="{FONT}" font-size="11" fill="#555555">{}</text>"##,
            head_y + 15,
            esc(&sub)
        );
    }

    // Rows: the client's connect, the steps, the client's end.
    let st = steps(s, &lanes);
    let top = head_y + 36;
    let row_y = |r: usize| top + r as i32 * ROW;
    // Who the kernel woke for this connection's arrival, when herd.json
    // says: a row of its own under the client's connect.
    let arrival = herd.and_then(|h| h.sequential.iter().find(|c| c.client == s.connection));
    let extra = usize::from(arrival.is_some());
    let step_row = |r: usize| if r == 0 { 0 } else { r + extra };
    let rows = st.len() + 2 + extra;
    let bottom = row_y(rows - 1) + 14;
    for i in 0..lanes.len() {
        let x = lane_x(i);
        let _ = writeln!(
            b,
            r#"<line x1="{x}" y1="{}" x2="{x}" y2="{bottom}" stroke="{}" stroke-width="2" stroke-opacity="0.45"/>"#,
            top - 14,
            lane_color(i)
        );
    }
    let row = |b: &mut String, r: usize, lane: usize, label: &str, folded: bool| {
        let (x, y) = (lane_x(lane), row_y(r));
        let (fill, style) = if folded {
            ("#888888", r#" font-style="italic""#)
        } else {
            (lane_color(lane), "")
        };
        let _ = writeln!(
            b,
            r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#cccccc" stroke-dasharray="1,3"/>"##,
            x + 6,
            label_x - 6
        );
        if folded {
            let _ = writeln!(
                b,
                r#"<circle class="folded" cx="{x}" cy="{y}" r="3" fill="{fill}"/>"#
            );
        } else {
            let _ = writeln!(
                b,
                r#"<circle class="step" cx="{x}" cy="{y}" r="5" fill="{fill}"/>"#
            );
        }
        let _ = writeln!(
            b,
            r#"<text x="{label_x}" y="{}" font-family="{MONO}" font-size="12" fill="{fill}"{style}>{}</text>"#,
            y + 4,
            esc(label)
        );
    };
    row(
        &mut b,
        0,
        0,
        "client: connect(), then GET / (Connection: close)",
        false,
    );
    if let Some(c) = arrival {
        let y = row_y(1);
        let _ = writeln!(
            b,
            r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#cccccc" stroke-dasharray="1,3"/>"##,
            lane_x(0) + 6,
            label_x - 6
        );
        for (i, l) in lanes.iter().enumerate() {
            if c.woken.contains(l) {
                arrival_mark(
                    &mut b,
                    lane_x(i),
                    y,
                    lane_color(i),
                    c.slept_again.contains(l),
                );
            }
        }
        let mut note = format!("kernel: woke {} for this arrival", c.woken.len());
        if !c.woken.is_empty() {
            let _ = write!(note, " ({})", c.woken.join(", "));
        }
        if !c.slept_again.is_empty() {
            let _ = write!(note, "; back to sleep: {}", c.slept_again.join(", "));
        }
        let _ = writeln!(
            b,
            r##"<text x="{label_x}" y="{}" font-family="{MONO}" font-size="12" fill="#a04000">{}</text>"##,
            y + 4,
            esc(&note)
        );
    }
    for (j, step) in st.iter().enumerate() {
        let who = &lanes[step.lane];
        row(
            &mut b,
            step_row(j + 1),
            step.lane,
            &format!("{who}: {}", step.text),
            step.folded,
        );
    }
    row(
        &mut b,
        rows - 1,
        0,
        "client: reads the response to its end, closes",
        false,
    );
    for a in arrows(&st, &lanes) {
        let (x1, y1) = (lane_x(a.from.0), row_y(step_row(a.from.1)));
        let (x2, y2) = (lane_x(a.to.0), row_y(step_row(a.to.1)));
        // Stop short of the dots.
        let dx = (x2 - x1) as f64;
        let dy = (y2 - y1) as f64;
        let len = (dx * dx + dy * dy).sqrt().max(1.0);
        let (ux, uy) = (dx / len, dy / len);
        let p = |x: i32, y: i32, d: f64| (x as f64 + ux * d, y as f64 + uy * d);
        let (ax, ay) = p(x1, y1, 6.0);
        let (bx, by) = p(x2, y2, -7.0);
        let dash = match a.kind {
            "connect" | "request" | "reply" => r#" stroke-dasharray="5,3""#,
            _ => "",
        };
        let w = if a.kind == "fd" { 2.5 } else { 1.5 };
        if a.kind == "fd" {
            let _ = writeln!(
                b,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-family="{MONO}" font-size="11" fill="{FD_RED}">conn</text>"#,
                (ax + bx) / 2.0,
                (ay + by) / 2.0 - 5.0
            );
        }
        let _ = writeln!(
            b,
            r#"<line class="arrow {}" x1="{ax:.1}" y1="{ay:.1}" x2="{bx:.1}" y2="{by:.1}" stroke="{}" stroke-width="{w}"{dash} marker-end="url(#head-{})"/>"#,
            a.kind,
            arrow_color(a.kind),
            a.kind
        );
    }

    // Bottom part.
    let mut y = bottom + 44;
    text(
        &mut b,
        20,
        y,
        16,
        r#"font-weight="bold""#,
        "Who woke, who took what",
    );
    y += 22;
    match herd {
        Some(h) => y = herd_part(&mut b, s, h, &lanes, &lane_x, label_x, y),
        None => y = strace_part(&mut b, s, &lanes, label_x, y),
    }

    // Legend.
    y += 30;
    y = legend(&mut b, y);

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" viewBox="0 0 {width} {y}">"#
    );
    out.push_str("<defs>\n");
    for kind in ["connect", "request", "fd", "reply", "response"] {
        let _ = writeln!(
            out,
            r#"<marker id="head-{kind}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="5" markerHeight="5" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{}"/></marker>"#,
            arrow_color(kind)
        );
    }
    out.push_str("</defs>\n");
    let _ = writeln!(
        out,
        r#"<rect x="0" y="0" width="{width}" height="{y}" fill="white"/>"#
    );
    out.push_str(&b);
    out.push_str("</svg>\n");
    out
}

/// A mark for one role woken by one arrival: filled when its wait returned,
/// hollow grey when it went back to sleep inside the kernel.
fn woken_mark(b: &mut String, x: i32, y: i32, color: &str, slept: bool) {
    if slept {
        let _ = writeln!(
            b,
            r#"<circle class="woken" cx="{x}" cy="{y}" r="6" fill="white" stroke="{SLEPT_GREY}" stroke-width="2"/>"#
        );
        let _ = writeln!(
            b,
            r#"<text x="{x}" y="{}" text-anchor="middle" font-family="{FONT}" font-size="8" fill="{SLEPT_GREY}">z</text>"#,
            y + 3
        );
    } else {
        let _ = writeln!(
            b,
            r#"<circle class="woken" cx="{x}" cy="{y}" r="6" fill="{color}"/>"#
        );
    }
}

/// The same for the arrival of the connection whose life is drawn: a ring
/// on the lane (hollow grey when it went back to sleep in the kernel).
fn arrival_mark(b: &mut String, x: i32, y: i32, color: &str, slept: bool) {
    let (stroke, dash) = if slept {
        (SLEPT_GREY, r#" stroke-dasharray="2,2""#)
    } else {
        (color, "")
    };
    let _ = writeln!(
        b,
        r#"<circle class="arrival-woken" cx="{x}" cy="{y}" r="7" fill="white" stroke="{stroke}" stroke-width="2.5"{dash}/>"#
    );
}

fn accepted_mark(b: &mut String, x: i32, y: i32) {
    let _ = writeln!(
        b,
        r#"<rect class="accepted" x="{}" y="{}" width="18" height="18" fill="none" stroke="{RESPONSE_GREEN}" stroke-width="2.5"/>"#,
        x - 9,
        y - 9
    );
}

fn eagain_mark(b: &mut String, x: i32, y: i32) {
    let _ = writeln!(
        b,
        r#"<path class="eagain" d="M{} {} L{} {} M{} {} L{} {}" stroke="{FD_RED}" stroke-width="2.5"/>"#,
        x + 8,
        y - 8,
        x + 14,
        y - 2,
        x + 14,
        y - 8,
        x + 8,
        y - 2
    );
}

const SHOWN_CONNS: usize = 12;

#[allow(clippy::too_many_arguments)]
fn herd_part(
    b: &mut String,
    s: &Skeleton,
    h: &Herd,
    lanes: &[String],
    lane_x: &dyn Fn(usize) -> i32,
    label_x: i32,
    mut y: i32,
) -> i32 {
    text(
        b,
        20,
        y,
        13,
        "",
        "Sequential connections: one row per connection's arrival, a mark on every process the kernel woke for it (kernel tracepoints, herd.json).",
    );
    y += 18;
    text(
        b,
        20,
        y,
        13,
        "",
        &format!(
            "Woken per connection: {:.2} (1 = no herd); of them back to sleep inside the kernel: {:.2}.",
            h.woken_per_conn, h.slept_again_per_conn
        ),
    );
    y += 26;
    for (i, l) in lanes.iter().enumerate().skip(1) {
        let _ = writeln!(
            b,
            r#"<text x="{}" y="{y}" text-anchor="middle" font-family="{FONT}" font-size="12" font-weight="bold" fill="{}">{}</text>"#,
            lane_x(i),
            lane_color(i),
            esc(l)
        );
    }
    y += 22;
    for (k, c) in h.sequential.iter().take(SHOWN_CONNS).enumerate() {
        let _ = writeln!(
            b,
            r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#eeeeee"/>"##,
            lane_x(1) - 20,
            label_x - 6
        );
        for (i, l) in lanes.iter().enumerate().skip(1) {
            let x = lane_x(i);
            if c.woken.contains(l) {
                woken_mark(b, x, y, lane_color(i), c.slept_again.contains(l));
            }
            if c.accepted_by.as_deref() == Some(l.as_str()) {
                accepted_mark(b, x, y);
            }
            if c.eagain.contains(l) {
                eagain_mark(b, x, y);
            }
        }
        let by = c.accepted_by.as_deref().unwrap_or("nobody seen");
        let mut note = format!(
            "#{} {}: {} woken ({} back to sleep), taken by {by}",
            k + 1,
            c.client,
            c.woken.len(),
            c.slept_again.len()
        );
        if !c.eagain.is_empty() {
            let _ = write!(note, "; EAGAIN: {}", c.eagain.join(", "));
        }
        let _ = writeln!(
            b,
            r#"<text x="{label_x}" y="{}" font-family="{MONO}" font-size="12">{}</text>"#,
            y + 4,
            esc(&note)
        );
        y += 24;
    }
    if h.sequential.len() > SHOWN_CONNS {
        text(
            b,
            label_x,
            y,
            12,
            "",
            &format!(
                "… and {} more connections (herd.json)",
                h.sequential.len() - SHOWN_CONNS
            ),
        );
        y += 22;
    }
    y += 14;
    text(
        b,
        20,
        y,
        13,
        "",
        &format!(
            "The burst ({} connections at once), per process; woken per burst connection: {:.2}.",
            h.burst, h.burst_woken_per_conn
        ),
    );
    y += 8;
    let rows: Vec<(String, [String; 6])> = lanes
        .iter()
        .skip(1)
        .map(|l| {
            let w = h.burst_roles.iter().find(|r| &r.role == l);
            let fds = s
                .burst_roles
                .iter()
                .find(|r| &r.role == l)
                .map_or(0, |r| r.received_fds);
            let d = RoleWake::default();
            let w = w.unwrap_or(&d);
            (
                l.clone(),
                [
                    w.woken.to_string(),
                    w.slept_again.to_string(),
                    w.returned.to_string(),
                    w.accepts.to_string(),
                    w.accept_eagain.to_string(),
                    fds.to_string(),
                ],
            )
        })
        .collect();
    let bars: Vec<(usize, usize, usize, usize)> = lanes
        .iter()
        .skip(1)
        .map(|l| {
            h.burst_roles
                .iter()
                .find(|r| &r.role == l)
                .map_or((0, 0, 0, 0), |r| {
                    (r.woken, r.slept_again, r.accepts, r.accept_eagain)
                })
        })
        .collect();
    table(
        b,
        y,
        &[
            "woken",
            "back to sleep",
            "returned",
            "accepted",
            "EAGAIN",
            "fds received",
        ],
        &rows,
        Some(&bars),
    )
}

/// Without herd.json: what strace saw.
fn strace_part(b: &mut String, s: &Skeleton, lanes: &[String], _label_x: i32, mut y: i32) -> i32 {
    let q = &s.sequential;
    text(
        b,
        20,
        y,
        13,
        "",
        &format!(
            "Sequential connections (strace): accepted by {}; per connection {:.2} returns from a wait of the accepting processes, {:.2} of them with nothing to accept, {:.2} EAGAIN.",
            if q.who_accepts.is_empty() { "nobody seen".to_string() } else { q.who_accepts.join(", ") },
            q.wakeups_per_conn,
            q.wakeups_without_accept_per_conn,
            q.accept_eagain_per_conn
        ),
    );
    y += 18;
    text(
        b,
        20,
        y,
        13,
        r##"fill="#a04000""##,
        "No herd.json: a process woken and put back to sleep inside the kernel is invisible to strace, so these counts can hide a herd.",
    );
    y += 26;
    text(
        b,
        20,
        y,
        13,
        "",
        &format!(
            "The burst ({} connections at once), per process, as strace saw it:",
            s.burst
        ),
    );
    y += 8;
    let rows: Vec<(String, [String; 6])> = lanes
        .iter()
        .skip(1)
        .map(|l| {
            let r = s.burst_roles.iter().find(|r| &r.role == l);
            let v = |f: fn(&super::skeleton::BurstRole) -> usize| r.map_or(0, f).to_string();
            (
                l.clone(),
                [
                    "—".to_string(),
                    "—".to_string(),
                    v(|r| r.wakeups),
                    v(|r| r.accepts),
                    v(|r| r.accept_eagain),
                    v(|r| r.received_fds),
                ],
            )
        })
        .collect();
    let bars: Vec<(usize, usize, usize, usize)> = lanes
        .iter()
        .skip(1)
        .map(|l| {
            s.burst_roles
                .iter()
                .find(|r| &r.role == l)
                .map_or((0, 0, 0, 0), |r| (r.wakeups, 0, r.accepts, r.accept_eagain))
        })
        .collect();
    table(
        b,
        y,
        &[
            "woken",
            "back to sleep",
            "returned",
            "accepted",
            "EAGAIN",
            "fds received",
        ],
        &rows,
        Some(&bars),
    )
}

const BAR_MARKS: usize = 40;

/// The per-process table of the burst, with a strip of marks per row:
/// one per wakeup (hollow: back to sleep in the kernel), then one green
/// square per accept.
fn table(
    b: &mut String,
    mut y: i32,
    heads: &[&str],
    rows: &[(String, [String; 6])],
    bars: Option<&[(usize, usize, usize, usize)]>,
) -> i32 {
    let col = |i: usize| 130 + i as i32 * 92;
    y += 20;
    for (i, h) in heads.iter().enumerate() {
        let _ = writeln!(
            b,
            r#"<text x="{}" y="{y}" text-anchor="end" font-family="{FONT}" font-size="12" font-weight="bold">{}</text>"#,
            col(i + 1) - 10,
            esc(h)
        );
    }
    let strip_x = col(heads.len() + 1) + 10;
    text(
        b,
        strip_x,
        y,
        12,
        r#"font-weight="bold""#,
        "● woken, returned  ○ back to sleep  □ accepted  × EAGAIN",
    );
    for (k, (role, vals)) in rows.iter().enumerate() {
        y += 22;
        let _ = writeln!(
            b,
            r#"<text x="20" y="{y}" font-family="{FONT}" font-size="12" font-weight="bold" fill="{}">{}</text>"#,
            lane_color(k + 1),
            esc(role)
        );
        for (i, v) in vals.iter().enumerate() {
            let _ = writeln!(
                b,
                r#"<text x="{}" y="{y}" text-anchor="end" font-family="{MONO}" font-size="12">{}</text>"#,
                col(i + 1) - 10,
                esc(v)
            );
        }
        if let Some((woken, slept, accepts, eagain)) = bars.and_then(|v| v.get(k)).copied() {
            let mut x = strip_x + 5;
            let cy = y - 4;
            for w in 0..woken.min(BAR_MARKS) {
                let fill = if w < woken - slept.min(woken) {
                    lane_color(k + 1)
                } else {
                    "white"
                };
                let _ = writeln!(
                    b,
                    r#"<circle class="burst-woken" cx="{x}" cy="{cy}" r="4" fill="{fill}" stroke="{}"/>"#,
                    if fill == "white" {
                        SLEPT_GREY
                    } else {
                        lane_color(k + 1)
                    }
                );
                x += 10;
            }
            if woken > BAR_MARKS {
                let _ = writeln!(
                    b,
                    r#"<text x="{x}" y="{y}" font-family="{FONT}" font-size="11">+{}</text>"#,
                    woken - BAR_MARKS
                );
                x += 30;
            }
            x += 8;
            for _ in 0..accepts.min(BAR_MARKS) {
                let _ = writeln!(
                    b,
                    r#"<rect class="burst-accepted" x="{}" y="{}" width="8" height="8" fill="none" stroke="{RESPONSE_GREEN}" stroke-width="2"/>"#,
                    x - 4,
                    cy - 4
                );
                x += 10;
            }
            if accepts > BAR_MARKS {
                let _ = writeln!(
                    b,
                    r#"<text x="{x}" y="{y}" font-family="{FONT}" font-size="11">+{}</text>"#,
                    accepts - BAR_MARKS
                );
                x += 30;
            }
            x += 4;
            for _ in 0..eagain.min(BAR_MARKS) {
                let _ = writeln!(
                    b,
                    r#"<path class="burst-eagain" d="M{} {} L{} {} M{} {} L{} {}" stroke="{FD_RED}" stroke-width="2"/>"#,
                    x - 4,
                    cy - 4,
                    x + 4,
                    cy + 4,
                    x + 4,
                    cy - 4,
                    x - 4,
                    cy + 4
                );
                x += 10;
            }
            if eagain > BAR_MARKS {
                let _ = writeln!(
                    b,
                    r#"<text x="{x}" y="{y}" font-family="{FONT}" font-size="11">+{}</text>"#,
                    eagain - BAR_MARKS
                );
            }
        }
    }
    y + 10
}

fn legend(b: &mut String, mut y: i32) -> i32 {
    text(b, 20, y, 14, r#"font-weight="bold""#, "Legend");
    let line = |b: &mut String, y: i32, kind: &str, dash: &str, what: &str| {
        let _ = writeln!(
            b,
            r#"<line x1="24" y1="{}" x2="74" y2="{}" stroke="{}" stroke-width="2"{dash} marker-end="url(#head-{kind})"/>"#,
            y - 4,
            y - 4,
            arrow_color(kind)
        );
        text(b, 86, y, 12, "", what);
    };
    let dashed = r#" stroke-dasharray="5,3""#;
    y += 20;
    line(
        b,
        y,
        "connect",
        dashed,
        "the client's connection (to the accept that returned it) and its request (at the first read of it)",
    );
    y += 18;
    line(
        b,
        y,
        "fd",
        "",
        "a descriptor in transit: sendmsg with SCM_RIGHTS from the master, received by the worker's recvmsg",
    );
    y += 18;
    line(
        b,
        y,
        "reply",
        dashed,
        "a worker's message back to the master on their channel (to the master's read of it)",
    );
    y += 18;
    line(b, y, "response", "", "the response written to the client");
    y += 22;
    woken_mark(b, 48, y - 4, "#ff7f0e", false);
    text(
        b,
        86,
        y,
        12,
        "",
        "woken by an arrival and its wait returned (several on one row: a thundering herd; one: EPOLLEXCLUSIVE, SO_REUSEPORT, a single acceptor)",
    );
    y += 20;
    woken_mark(b, 48, y - 4, "", true);
    text(
        b,
        86,
        y,
        12,
        "",
        "woken, then back to sleep inside the kernel (another process had taken the event): invisible to strace",
    );
    y += 20;
    arrival_mark(b, 48, y - 4, "#ff7f0e", false);
    text(
        b,
        86,
        y,
        12,
        "",
        "on the row under the client's connect: woken by this connection's arrival (dashed grey: back to sleep in the kernel)",
    );
    y += 20;
    accepted_mark(b, 48, y - 4);
    text(b, 86, y, 12, "", "its accept returned the connection");
    y += 20;
    eagain_mark(b, 38, y - 4);
    text(
        b,
        86,
        y,
        12,
        "",
        "its accept returned EAGAIN: woken, but another process took the connection (lost the race)",
    );
    y += 20;
    let _ = writeln!(
        b,
        r##"<circle cx="48" cy="{}" r="3" fill="#888888"/>"##,
        y - 4
    );
    text(
        b,
        86,
        y,
        12,
        "",
        "⋯ a row of folded calls: the process's own bookkeeping (fcntl, setsockopt, files), not part of sharing the connection",
    );
    y += 26;
    text(
        b,
        20,
        y,
        12,
        r##"font-weight="bold" fill="#a04000""##,
        "Tracing slows the traced processes a lot: this shows the mechanism (which calls, in which order, with which arguments), never a timing.",
    );
    y + 20
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::trace::herd::ConnWake;
    use crate::trace::skeleton::{BurstRole, Counts};

    fn call(call: &str, fd: &str, text: &str, ret: &str, t: u64) -> Call {
        Call {
            call: call.into(),
            fd: Some(fd.into()),
            flags: Vec::new(),
            scm_rights_fds: text.contains("SCM_RIGHTS").then_some(1),
            ret: ret.into(),
            text: text.into(),
            raw: String::new(),
            time_us: t,
            dur_us: 0,
        }
    }

    /// master-pass with two workers, the connection handed to worker-0.
    pub(crate) fn master_pass() -> Skeleton {
        Skeleton {
            target: "master-pass".into(),
            workers: 2,
            connections: 3,
            burst: 8,
            kernel: "6.1".into(),
            strace: "strace -- version 6.1".into(),
            taken_unix_ms: 0,
            listener_ctl: Vec::new(),
            holdings: Default::default(),
            pids: vec![
                ("master".into(), 10),
                ("worker-0".into(), 11),
                ("worker-1".into(), 12),
            ],
            connection: "127.0.0.1:49332".into(),
            life: vec![
                (
                    "master".into(),
                    vec![
                        call(
                            "epoll_wait",
                            "epoll",
                            "epoll_wait(epoll, …, 256, -1) = 1",
                            "1",
                            1,
                        ),
                        call(
                            "accept4",
                            "listener",
                            "accept4(listener, NULL, NULL, SOCK_CLOEXEC|SOCK_NONBLOCK) = conn",
                            "conn",
                            2,
                        ),
                        call(
                            "sendmsg",
                            "channel-to-worker-0",
                            r#"sendmsg(channel-to-worker-0, {"N\0\0\0\0\0\0\0" SCM_RIGHTS[conn]}, MSG_NOSIGNAL) = 8"#,
                            "8",
                            3,
                        ),
                        call("fcntl", "conn", "fcntl(conn, F_GETFD) = 0x1", "0x1", 7),
                        call(
                            "recvfrom",
                            "channel-to-worker-0",
                            r#"recvfrom(channel-to-worker-0, "H\0\0\0\0\0\0\0", 4096, 0, NULL, NULL) = 8"#,
                            "8",
                            8,
                        ),
                        call("close", "conn", "close(conn) = 0", "0", 9),
                    ],
                ),
                (
                    "worker-0".into(),
                    vec![
                        call(
                            "epoll_wait",
                            "epoll",
                            "epoll_wait(epoll, …, 256, -1) = 1",
                            "1",
                            4,
                        ),
                        call(
                            "recvmsg",
                            "channel-from-master",
                            r#"recvmsg(channel-from-master, {"N\0\0\0\0\0\0\0" SCM_RIGHTS[conn]}, MSG_CMSG_CLOEXEC) = 8"#,
                            "8",
                            5,
                        ),
                        call(
                            "sendto",
                            "channel-from-master",
                            r#"sendto(channel-from-master, "H\0\0\0\0\0\0\0", 8, MSG_NOSIGNAL, NULL, 0) = 8"#,
                            "8",
                            6,
                        ),
                        call(
                            "epoll_ctl",
                            "epoll",
                            "epoll_ctl(epoll, EPOLL_CTL_ADD, conn, EPOLLIN|EPOLLET) = 0",
                            "0",
                            10,
                        ),
                        call(
                            "recvfrom",
                            "conn",
                            r#"recvfrom(conn, "GET / HTTP/1.1\r\n", 16384, 0, NULL, NULL) = 50"#,
                            "50",
                            11,
                        ),
                        call(
                            "sendto",
                            "conn",
                            r#"sendto(conn, "HTTP/1.1 200 OK", 121, MSG_NOSIGNAL, NULL, 0) = 121"#,
                            "121",
                            12,
                        ),
                        call("close", "conn", "close(conn) = 0", "0", 13),
                    ],
                ),
            ],
            sequential: Counts::default(),
            burst_roles: vec![
                BurstRole {
                    role: "master".into(),
                    accepts: 8,
                    wakeups: 8,
                    ..BurstRole::default()
                },
                BurstRole {
                    role: "worker-0".into(),
                    wakeups: 4,
                    received_fds: 4,
                    ..BurstRole::default()
                },
            ],
        }
    }

    fn herd_of_four() -> Herd {
        let roles: Vec<String> = (0..4).map(|i| format!("worker-{i}")).collect();
        Herd {
            target: "shared:epoll".into(),
            workers: 4,
            sequential: vec![ConnWake {
                client: "127.0.0.1:5000".into(),
                woken: roles.clone(),
                slept_again: vec!["worker-2".into(), "worker-3".into()],
                accepted_by: Some("worker-0".into()),
                eagain: vec!["worker-1".into()],
            }],
            woken_per_conn: 4.0,
            slept_again_per_conn: 2.0,
            ..Herd::default()
        }
    }

    fn shared_four() -> Skeleton {
        let mut s = master_pass();
        s.target = "shared:epoll".into();
        s.workers = 4;
        s.pids = vec![("master".into(), 10)];
        s.pids
            .extend((0..4).map(|i| (format!("worker-{i}"), 11 + i)));
        s.life = vec![(
            "worker-0".into(),
            vec![call(
                "accept4",
                "listener",
                "accept4(listener, NULL, NULL, SOCK_CLOEXEC) = conn",
                "conn",
                1,
            )],
        )];
        s.burst_roles = Vec::new();
        s
    }

    #[test]
    fn one_lane_per_process_and_the_client() {
        let svg = svg(&master_pass(), None);
        let lanes: Vec<&str> = svg
            .lines()
            .filter(|l| l.starts_with(r#"<text class="lane""#))
            .map(|l| l.split('>').nth(1).unwrap().trim_end_matches("</text"))
            .collect();
        assert_eq!(lanes, ["client", "master", "worker-0", "worker-1"]);
        assert!(svg.starts_with("<svg "));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn the_descriptor_travels_from_sendmsg_to_recvmsg() {
        let svg = svg(&master_pass(), None);
        assert_eq!(svg.matches(r#"class="arrow fd""#).count(), 1, "{svg}");
        assert_eq!(svg.matches(r#"class="arrow reply""#).count(), 1);
        assert_eq!(svg.matches(r#"class="arrow response""#).count(), 1);
        assert_eq!(svg.matches(r#"class="arrow connect""#).count(), 1);
        assert!(svg.contains("sendmsg(channel-to-worker-0, SCM_RIGHTS[conn]) = 8"));
        // The fd arrow goes from the master's lane to worker-0's, downwards.
        let line = svg
            .lines()
            .find(|l| l.contains(r#"class="arrow fd""#))
            .unwrap();
        let attr = |name: &str| -> f64 {
            let i = line.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            line[i..].split('"').next().unwrap().parse().unwrap()
        };
        assert!(attr("x2") > attr("x1") && attr("y2") > attr("y1"), "{line}");
    }

    #[test]
    fn bookkeeping_is_folded_and_the_mechanism_kept() {
        let svg = svg(&master_pass(), None);
        assert!(svg.contains("master: ⋯ 1 other call (fcntl)"), "{svg}");
        assert!(svg.contains("worker-0: epoll_ctl(ADD conn) = 0"));
        assert!(svg.contains("worker-0: close(conn) = 0"));
    }

    #[test]
    fn text_is_escaped() {
        let mut s = master_pass();
        s.target = "a<b>&\"c'".into();
        s.life[0].1[1].ret = "<&>".into();
        let svg = svg(&s, None);
        assert!(svg.contains("Under the hood: a&lt;b&gt;&amp;&quot;c&#39;"));
        assert!(svg.contains("= &lt;&amp;&gt;"));
        assert!(!svg.contains("a<b"));
        // Every '&' starts an entity.
        for (i, _) in svg.match_indices('&') {
            let rest = &svg[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                    .iter()
                    .any(|e| rest.starts_with(e)),
                "{}",
                &rest[..rest.len().min(20)]
            );
        }
    }

    #[test]
    fn a_herd_of_four_shows_four_woken_marks() {
        let h = herd_of_four();
        let out = svg(&shared_four(), Some(&h));
        // The legend draws one of each mark too.
        let legend = 2;
        assert_eq!(out.matches(r#"class="woken""#).count(), 4 + legend);
        assert_eq!(out.matches(r#"class="accepted""#).count(), 1 + 1);
        assert_eq!(out.matches(r#"class="eagain""#).count(), 1 + 1);
        assert!(out.contains("4 woken (2 back to sleep), taken by worker-0; EAGAIN: worker-1"));
        // One woken for an exclusive wakeup.
        let mut one = h.clone();
        one.sequential[0].woken = vec!["worker-0".into()];
        one.sequential[0].slept_again.clear();
        let exclusive = svg(&shared_four(), Some(&one));
        assert_eq!(exclusive.matches(r#"class="woken""#).count(), 1 + legend);
    }

    #[test]
    fn the_arrival_of_the_drawn_connection_shows_who_the_kernel_woke() {
        let mut h = herd_of_four();
        let s = shared_four();
        h.sequential[0].client = s.connection.clone();
        let out = svg(&s, Some(&h));
        // And one in the legend.
        assert_eq!(out.matches(r#"class="arrival-woken""#).count(), 4 + 1);
        assert!(out.contains("kernel: woke 4 for this arrival (worker-0, worker-1, worker-2, worker-3); back to sleep: worker-2, worker-3"));
        // The grid below still has one mark per woken process.
        assert_eq!(out.matches(r#"class="woken""#).count(), 4 + 2);
    }

    #[test]
    fn the_output_is_deterministic() {
        let h = herd_of_four();
        assert_eq!(svg(&shared_four(), Some(&h)), svg(&shared_four(), Some(&h)));
    }
}
