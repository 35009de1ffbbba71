//! The second pass of a trace: scheduler and system-call tracepoints in a
//! tracefs instance of our own while K connections arrive one at a time and
//! then a burst of B, with no strace attached (ptrace stops every traced
//! call and would add wakeups of its own). It writes the instance's buffer
//! as `kernel.txt` and what it means as `herd.json` ([`super::herd`]).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::client;
use super::herd::{self, Herd};
use super::tracefs::{self, Instance};

/// The system calls whose return shows a thread back in user space after
/// a wait, or an accept's outcome.
const EXITS: &[&str] = &[
    "accept",
    "accept4",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "recvmsg",
];

fn any_of(field: &str, tids: &[i32]) -> String {
    tids.iter()
        .map(|t| format!("{field} == {t}"))
        .collect::<Vec<_>>()
        .join(" || ")
}

/// What the pass needs.
pub struct Pass<'a> {
    /// The target's name.
    pub target: &'a str,
    /// Worker processes.
    pub workers: usize,
    /// Its address.
    pub addr: &'a str,
    /// Each role's name and every thread of its process.
    pub roles: &'a [(String, Vec<i32>)],
    /// Sequential connections.
    pub connections: usize,
    /// The burst.
    pub burst: usize,
}

/// Runs the pass and writes `kernel.txt` and `herd.json` into `dir`.
pub fn run(pass: &Pass<'_>, dir: &Path, stop: &AtomicBool) -> Result<Herd, String> {
    let inst = Instance::create(4096)?;
    let tids: Vec<i32> = pass
        .roles
        .iter()
        .flat_map(|(_, t)| t.iter().copied())
        .collect();
    let mut tracepoints = vec![
        "sched:sched_waking".to_string(),
        "sched:sched_switch".to_string(),
    ];
    inst.enable("sched/sched_waking", &any_of("pid", &tids))?;
    inst.enable("sched/sched_switch", &any_of("prev_pid", &tids))?;
    let by_tid = any_of("common_pid", &tids);
    for call in EXITS {
        let event = format!("syscalls/sys_exit_{call}");
        if inst.has(&event) {
            inst.enable(&event, &by_tid)?;
            tracepoints.push(format!("syscalls:sys_exit_{call}"));
        }
    }
    inst.recording(true)?;
    let mut sequential = Vec::new();
    for _ in 0..pass.connections {
        if stop.load(Ordering::SeqCst) {
            return Err("interrupted; the target is stopped".into());
        }
        sequential.push(client::get(pass.addr)?);
        // Let what the connection caused (closes, a worker's reply) end
        // before the next one arrives.
        std::thread::sleep(Duration::from_millis(20));
    }
    let burst = client::burst(pass.addr, pass.burst)?;
    std::thread::sleep(Duration::from_millis(100));
    inst.recording(false)?;
    let text = inst.read()?;
    drop(inst);
    let raw = dir.join("kernel.txt");
    std::fs::write(&raw, &text).map_err(|e| format!("cannot write {}: {e}", raw.display()))?;
    let h = herd::analyse(
        &herd::Input {
            target: pass.target,
            workers: pass.workers,
            tracepoints,
            roles: pass.roles,
            sequential: &sequential,
            burst: &burst,
        },
        &tracefs::parse(&text),
    );
    let json = serde_json::to_string_pretty(&h).map_err(|e| e.to_string())?;
    let out = dir.join("herd.json");
    std::fs::write(&out, json + "\n")
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(h)
}
