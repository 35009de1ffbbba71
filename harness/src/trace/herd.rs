//! Who the kernel woke for each connection, from scheduler and system-call
//! tracepoints (`herd.json`). strace sees a wakeup only when it returns to
//! user space; a worker woken by a connection's arrival and put back to
//! sleep inside the kernel (its `epoll_wait` found the event already
//! taken) shows only as `sched:sched_waking` followed by `sched:sched_switch`
//! with no system call returning in between. That is the thundering herd
//! strace cannot see.
//!
//! A wakeup is counted for a connection's arrival when its waker (the task
//! `sched_waking` fires in) is not the target itself and it happened while
//! the client was connecting or writing its request (see [`Window`]): on
//! loopback the whole handshake runs in the client's `connect`, so the
//! client's thread is the waker.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::tracefs::Line;

/// What happened to one role when connections arrived.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RoleWake {
    /// `master`, `worker-0`.
    pub role: String,
    /// Times one of its threads was woken by a connection's arrival
    /// (a `sched_waking` while the client's `connect` ran, the waker being
    /// the client's thread or the kernel on its behalf).
    pub woken: usize,
    /// Of those, times its wait (`epoll_wait`, `poll`, `accept`) then
    /// returned to user space.
    pub returned: usize,
    /// Of those, times it went back to sleep inside the kernel without a
    /// system call returning: woken for nothing, invisible to strace.
    pub slept_again: usize,
    /// Accepts that returned a connection.
    pub accepts: usize,
    /// Accepts that returned EAGAIN.
    pub accept_eagain: usize,
}

/// One sequential connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnWake {
    /// The client's address, as in skeleton.json.
    pub client: String,
    /// Roles woken by its arrival, in the order they were woken.
    pub woken: Vec<String>,
    /// Roles woken by its arrival that went back to sleep in the kernel.
    pub slept_again: Vec<String>,
    /// The role whose accept returned it (`master` for master-pass).
    pub accepted_by: Option<String>,
    /// Roles whose accept returned EAGAIN while it arrived.
    pub eagain: Vec<String>,
}

/// `herd.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Herd {
    /// The target's name.
    pub target: String,
    /// Worker processes.
    pub workers: usize,
    /// The tracepoints read (tracefs instance of our own).
    pub tracepoints: Vec<String>,
    /// Per sequential connection.
    pub sequential: Vec<ConnWake>,
    /// Per role, summed over the sequential connections.
    pub sequential_roles: Vec<RoleWake>,
    /// Roles woken per sequential connection's arrival (1 = no herd).
    pub woken_per_conn: f64,
    /// Of those, roles that went back to sleep in the kernel, per connection.
    pub slept_again_per_conn: f64,
    /// Concurrent connections of the burst.
    pub burst: usize,
    /// Per role, over the burst.
    pub burst_roles: Vec<RoleWake>,
    /// Arrival wakeups per burst connection.
    pub burst_woken_per_conn: f64,
    /// Per burst connection (a herd shows as one arrival waking several
    /// roles; once awake, a busy worker needs no wakeup for the next).
    #[serde(default)]
    pub burst_connections: Vec<ConnWake>,
    /// The most roles one arrival of the burst woke.
    #[serde(default)]
    pub burst_most_woken: usize,
}

/// One client's connection, as the client timed it (CLOCK_MONOTONIC, ns).
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Its local address.
    pub client: String,
    /// The client thread (the waker of what its `connect` caused).
    pub tid: i32,
    /// Just before `connect`.
    pub connect_ns: u64,
    /// Once the request was written. On loopback the handshake runs inside
    /// the client's `connect`, and a listener with `TCP_DEFER_ACCEPT`
    /// (Apache's default) wakes nobody until the request's first byte, in
    /// the client's `write`: what the client woke from `connect` to here is
    /// the connection's arrival (for a sequential connection, only until
    /// its accept returned, after which a wakeup is the request's).
    pub wrote_ns: u64,
    /// When the response had been read to its end.
    pub done_ns: u64,
}

/// What to analyse.
pub struct Input<'a> {
    /// The target's name.
    pub target: &'a str,
    /// Worker processes.
    pub workers: usize,
    /// The tracepoints that were enabled.
    pub tracepoints: Vec<String>,
    /// Each role's name and every thread of its process.
    pub roles: &'a [(String, Vec<i32>)],
    /// The sequential connections, in order.
    pub sequential: &'a [Window],
    /// The burst's connections.
    pub burst: &'a [Window],
}

/// What happened after a thread was woken.
#[derive(Clone, Copy, Debug, PartialEq)]
enum After {
    /// A system call (its wait) returned.
    Returned,
    /// It was switched out asleep first.
    SleptAgain,
    /// The buffer ends before either.
    Unknown,
}

fn after_wakeup(lines: &[Line], from: usize, tid: i32) -> After {
    for l in &lines[from + 1..] {
        if l.event.starts_with("sys_") && l.common_pid == tid {
            return After::Returned;
        }
        if l.event == "sched_switch"
            && l.field("prev_pid").and_then(|p| p.parse().ok()) == Some(tid)
            && l.field("prev_state")
                .is_some_and(|s| s.starts_with(['S', 'D', 'I']))
        {
            return After::SleptAgain;
        }
    }
    After::Unknown
}

fn is_accept_exit(l: &Line) -> bool {
    l.event == "sys_accept4" || l.event == "sys_accept"
}

/// Sums what the arrivals in `windows` did to each role.
fn tally(
    lines: &[Line],
    role_of: &HashMap<i32, usize>,
    names: &[String],
    windows: &[Window],
) -> (Vec<RoleWake>, Vec<ConnWake>) {
    let mut roles: Vec<RoleWake> = names
        .iter()
        .map(|n| RoleWake {
            role: n.clone(),
            ..RoleWake::default()
        })
        .collect();
    let mut conns: Vec<ConnWake> = windows
        .iter()
        .map(|w| ConnWake {
            client: w.client.clone(),
            ..ConnWake::default()
        })
        .collect();
    for (i, l) in lines.iter().enumerate() {
        if l.event == "sched_waking" {
            let Some(wakee) = l.field("pid").and_then(|p| p.parse::<i32>().ok()) else {
                continue;
            };
            let Some(&r) = role_of.get(&wakee) else {
                continue;
            };
            // Woken by the target itself (the master passing a descriptor,
            // a worker's reply): not an arrival. `sched_waking` fires in
            // the waker's context, so its task is the waker even when the
            // wakeup itself is done later on the wakee's CPU.
            if role_of.contains_key(&l.common_pid) {
                continue;
            }
            // The arrival of the connection whose client woke it (on
            // loopback the client's thread runs the handshake), or of the
            // one arriving then when the kernel did it on its behalf.
            let arriving = |w: &&Window| (w.connect_ns..=w.wrote_ns).contains(&l.time_ns);
            let Some(c) = windows
                .iter()
                .position(|w| arriving(&w) && w.tid == l.common_pid)
                .or_else(|| {
                    if windows.iter().any(|w| w.tid == l.common_pid) {
                        None
                    } else {
                        windows.iter().position(|w| arriving(&w))
                    }
                })
            else {
                continue;
            };
            roles[r].woken += 1;
            let conn = &mut conns[c];
            if !conn.woken.contains(&names[r]) {
                conn.woken.push(names[r].clone());
            }
            match after_wakeup(lines, i, wakee) {
                After::Returned => roles[r].returned += 1,
                After::SleptAgain => {
                    roles[r].slept_again += 1;
                    if !conn.slept_again.contains(&names[r]) {
                        conn.slept_again.push(names[r].clone());
                    }
                }
                After::Unknown => {}
            }
        } else if is_accept_exit(l) {
            let Some(&r) = role_of.get(&l.common_pid) else {
                continue;
            };
            let Some(c) = windows
                .iter()
                .position(|w| (w.connect_ns..=w.done_ns).contains(&l.time_ns))
            else {
                continue;
            };
            match l.ret() {
                Some(v) if v >= 0 => {
                    roles[r].accepts += 1;
                    if conns[c].accepted_by.is_none() {
                        conns[c].accepted_by = Some(names[r].clone());
                    }
                }
                Some(-11) => {
                    roles[r].accept_eagain += 1;
                    if !conns[c].eagain.contains(&names[r]) {
                        conns[c].eagain.push(names[r].clone());
                    }
                }
                _ => {}
            }
        }
    }
    (roles, conns)
}

fn per(n: usize, d: usize) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}

/// Who the kernel woke for each connection, from the instance's events.
pub fn analyse(input: &Input<'_>, lines: &[Line]) -> Herd {
    let names: Vec<String> = input.roles.iter().map(|(n, _)| n.clone()).collect();
    let role_of: HashMap<i32, usize> = input
        .roles
        .iter()
        .enumerate()
        .flat_map(|(i, (_, tids))| tids.iter().map(move |t| (*t, i)))
        .collect();
    let mut lines: Vec<Line> = lines.to_vec();
    lines.sort_by_key(|l| l.time_ns);
    // Each sequential connection alone, so that what one woke is not
    // counted for another.
    let mut sequential = Vec::new();
    let mut sequential_roles: Vec<RoleWake> = names
        .iter()
        .map(|n| RoleWake {
            role: n.clone(),
            ..RoleWake::default()
        })
        .collect();
    for w in input.sequential {
        let accepted = lines
            .iter()
            .filter(|l| is_accept_exit(l) && role_of.contains_key(&l.common_pid))
            .filter(|l| l.ret().is_some_and(|v| v >= 0))
            .map(|l| l.time_ns)
            .find(|t| (w.connect_ns..=w.done_ns).contains(t));
        let arrival = Window {
            wrote_ns: accepted.map_or(w.wrote_ns, |t| t.min(w.wrote_ns)),
            ..w.clone()
        };
        let (roles, conns) = tally(&lines, &role_of, &names, std::slice::from_ref(&arrival));
        for (sum, r) in sequential_roles.iter_mut().zip(roles) {
            sum.woken += r.woken;
            sum.returned += r.returned;
            sum.slept_again += r.slept_again;
            sum.accepts += r.accepts;
            sum.accept_eagain += r.accept_eagain;
        }
        sequential.extend(conns);
    }
    let (burst_roles, burst_connections) = tally(&lines, &role_of, &names, input.burst);
    let k = input.sequential.len();
    Herd {
        target: input.target.to_string(),
        workers: input.workers,
        tracepoints: input.tracepoints.clone(),
        woken_per_conn: per(sequential.iter().map(|c| c.woken.len()).sum(), k),
        slept_again_per_conn: per(sequential.iter().map(|c| c.slept_again.len()).sum(), k),
        sequential,
        sequential_roles,
        burst: input.burst.len(),
        burst_woken_per_conn: per(burst_roles.iter().map(|r| r.woken).sum(), input.burst.len()),
        burst_roles,
        burst_most_woken: burst_connections
            .iter()
            .map(|c| c.woken.len())
            .max()
            .unwrap_or(0),
        burst_connections,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(pid: i32, t: u64, event: &str, rest: &str) -> Line {
        Line {
            common_pid: pid,
            time_ns: t,
            event: event.into(),
            rest: rest.into(),
        }
    }

    fn waking(waker: i32, t: u64, wakee: i32) -> Line {
        line(
            waker,
            t,
            "sched_waking",
            &format!("comm=x pid={wakee} prio=120 target_cpu=000"),
        )
    }

    fn asleep(t: u64, tid: i32) -> Line {
        line(0, t, "sched_switch", &format!("prev_comm=x prev_pid={tid} prev_prio=120 prev_state=S ==> next_comm=y next_pid=0 next_prio=120"))
    }

    fn analysed(roles: &[(String, Vec<i32>)], seq: &[Window], lines: &[Line]) -> Herd {
        analyse(
            &Input {
                target: "t",
                workers: roles.len() - 1,
                tracepoints: vec![],
                roles,
                sequential: seq,
                burst: &[],
            },
            lines,
        )
    }

    fn roles() -> Vec<(String, Vec<i32>)> {
        vec![
            ("master".into(), vec![1]),
            ("worker-0".into(), vec![10]),
            ("worker-1".into(), vec![11, 12]),
        ]
    }

    fn window(t0: u64) -> Window {
        Window {
            client: format!("127.0.0.1:{t0}"),
            tid: 5,
            connect_ns: t0,
            wrote_ns: t0 + 100,
            done_ns: t0 + 500,
        }
    }

    #[test]
    fn a_herd_is_every_worker_woken_for_one_arrival_and_the_losers_sleep_again() {
        let lines = [
            waking(5, 1010, 10),
            waking(5, 1011, 11),
            line(10, 1020, "sys_epoll_wait", "-> 0x1"),
            line(10, 1021, "sys_accept4", "-> 0x7"),
            // Woken, found nothing, asleep again: no system call returned.
            asleep(1022, 11),
            // The request's bytes wake worker-0 again: not an arrival.
            waking(5, 1150, 10),
        ];
        let h = analysed(&roles(), &[window(1000)], &lines);
        let c = &h.sequential[0];
        assert_eq!(c.woken, ["worker-0", "worker-1"]);
        assert_eq!(c.slept_again, ["worker-1"]);
        assert_eq!(c.accepted_by.as_deref(), Some("worker-0"));
        assert_eq!(h.woken_per_conn, 2.0);
        assert_eq!(h.slept_again_per_conn, 1.0);
        assert_eq!(h.sequential_roles[1].returned, 1);
    }

    #[test]
    fn a_wakeup_by_the_target_itself_is_not_an_arrival() {
        // master-pass: the client wakes the master, the master's sendmsg
        // wakes the worker.
        let lines = [
            waking(5, 1010, 1),
            line(1, 1012, "sys_epoll_wait", "-> 0x1"),
            line(1, 1013, "sys_accept4", "-> 0xb"),
            waking(1, 1014, 10),
            line(10, 1016, "sys_epoll_wait", "-> 0x1"),
        ];
        let h = analysed(&roles(), &[window(1000)], &lines);
        assert_eq!(h.sequential[0].woken, ["master"]);
        assert_eq!(h.sequential[0].accepted_by.as_deref(), Some("master"));
        assert_eq!(h.woken_per_conn, 1.0);
    }

    #[test]
    fn a_lost_race_in_user_space_is_an_eagain_and_counts_per_burst_arrival() {
        let mut a = window(1000);
        a.tid = 6;
        let mut b = window(1001);
        b.tid = 7;
        let lines = [
            waking(6, 1010, 10),
            waking(6, 1011, 12),
            line(10, 1020, "sys_accept4", "-> 0x7"),
            line(12, 1021, "sys_accept4", "-> 0xfffffffffffffff5"),
            waking(7, 1030, 11),
            line(11, 1031, "sys_accept4", "-> 0x8"),
        ];
        let h = analyse(
            &Input {
                target: "t",
                workers: 2,
                tracepoints: vec![],
                roles: &roles(),
                sequential: &[],
                burst: &[a, b],
            },
            &lines,
        );
        assert_eq!(h.burst_connections[0].woken, ["worker-0", "worker-1"]);
        assert_eq!(h.burst_connections[1].woken, ["worker-1"]);
        assert_eq!(h.burst_most_woken, 2);
        assert_eq!(h.burst_roles[2].accept_eagain, 1);
        assert_eq!(h.burst_roles[2].accepts, 1);
        assert_eq!(h.burst_woken_per_conn, 1.5);
    }
}
