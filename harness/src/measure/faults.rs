//! Fault injection during a run: what the harness does to the server while
//! loadgen keeps offering its steady open-loop load, and the kernel setting
//! (`net.ipv4.tcp_migrate_req`) some targets run with.
//!
//! The injector runs on its own thread beside the loadgen process. Its
//! schedule is given as offsets from the start of loadgen's measured window;
//! every action is recorded with the wall-clock time it really happened, and
//! the analysis places it on loadgen's timeline from loadgen's own start
//! time, so start-up delays never misplace a fault.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::measure::kernel::proc_usage;
use crate::model::faults::{FaultRecord, Injection};
use crate::model::workload::Fault;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// loadgen arguments an overload adds (`--rate-step`), given the base rate.
pub fn loadgen_args(fault: &Fault, base_rps: f64, capacity_rps: f64) -> Vec<String> {
    match fault {
        Fault::Overload {
            from_ms,
            to_ms,
            share,
        } => vec![
            "--rate-step".into(),
            format!("{from_ms}ms:{:.1}", capacity_rps * share),
            "--rate-step".into(),
            format!("{to_ms}ms:{base_rps:.1}"),
        ],
        _ => Vec::new(),
    }
}

/// What the injector needs to know about the server.
#[derive(Clone, Debug)]
pub struct Victims {
    /// Worker pids when the server became ready.
    pub workers: Vec<i32>,
    /// Who gets the restart signal, and which signal.
    pub restart: (i32, Signal),
    /// CPU time of each worker before the load, µs.
    pub cpu_before: Vec<(i32, u64)>,
}

/// A running injector.
pub struct Injector {
    handle: JoinHandle<FaultRecord>,
    cancel: Arc<AtomicBool>,
}

impl Injector {
    /// Starts injecting `fault`; `measured_start` is when loadgen's measured
    /// window is expected to begin.
    pub fn start(fault: Fault, victims: Victims, measured_start: Instant) -> Injector {
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        let handle = std::thread::spawn(move || inject(fault, victims, measured_start, &flag));
        Injector { handle, cancel }
    }

    /// Waits for the injector to finish its schedule (or cuts it short if
    /// the load already ended), and returns what it did. A stopped worker is
    /// always continued before this returns.
    pub fn finish(self, cut_short: bool) -> FaultRecord {
        if cut_short {
            self.cancel.store(true, Ordering::Relaxed);
        }
        self.handle.join().unwrap_or_default()
    }
}

/// Sleeps until `at` or until cancelled; false if cancelled.
fn sleep_until(at: Instant, cancel: &AtomicBool) -> bool {
    loop {
        if cancel.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= at {
            return true;
        }
        std::thread::sleep((at - now).min(Duration::from_millis(5)));
    }
}

fn signal(pid: i32, sig: Signal, planned_ms: u64) -> Injection {
    let error = kill(Pid::from_raw(pid), sig).err().map(|e| e.to_string());
    Injection {
        action: sig.as_str().to_string(),
        pid,
        planned_ms,
        at_unix_ms: now_unix_ms(),
        error,
    }
}

/// The busiest worker now: the most CPU used since the load began.
fn busiest(victims: &Victims) -> Option<i32> {
    victims
        .cpu_before
        .iter()
        .filter_map(|&(pid, before)| Some((pid, proc_usage(pid)?.cpu_us.saturating_sub(before))))
        .max_by_key(|&(pid, used)| (used, std::cmp::Reverse(pid)))
        .map(|(pid, _)| pid)
        .or_else(|| victims.workers.first().copied())
}

fn inject(fault: Fault, victims: Victims, start: Instant, cancel: &AtomicBool) -> FaultRecord {
    let mut rec = FaultRecord {
        kind: fault.kind().into(),
        ..FaultRecord::default()
    };
    let at = |ms: u64| start + Duration::from_millis(ms);
    match fault {
        Fault::WorkerCrash { at_ms, hang_ms } => {
            if sleep_until(at(at_ms), cancel) {
                rec.victim_pid = busiest(&victims);
                if let Some(pid) = rec.victim_pid {
                    rec.injections.push(signal(pid, Signal::SIGSTOP, at_ms));
                    // Killed even when cancelled: a SIGKILL ends a stopped
                    // process as well, and none may be left stopped.
                    let _ = sleep_until(at(at_ms + hang_ms), cancel);
                    rec.injections
                        .push(signal(pid, Signal::SIGKILL, at_ms + hang_ms));
                }
            }
        }
        Fault::RollingRestart { at_ms } => {
            if sleep_until(at(at_ms), cancel) {
                let (pid, sig) = victims.restart;
                rec.injections.push(signal(pid, sig, at_ms));
            }
        }
        Fault::SlowWorker {
            first_ms,
            every_ms,
            stop_ms,
            times,
        } => {
            for i in 0..times {
                let from = first_ms + i * every_ms;
                if !sleep_until(at(from), cancel) {
                    break;
                }
                if rec.victim_pid.is_none() {
                    rec.victim_pid = busiest(&victims);
                }
                let Some(pid) = rec.victim_pid else {
                    break;
                };
                rec.injections.push(signal(pid, Signal::SIGSTOP, from));
                // Continued whatever happens: even when cancelled, a
                // stopped worker must not be left stopped.
                let _ = sleep_until(at(from + stop_ms), cancel);
                rec.injections
                    .push(signal(pid, Signal::SIGCONT, from + stop_ms));
            }
        }
        Fault::Overload { .. } => {}
    }
    rec
}

/// The sysctl behind the `+migrate` targets.
pub const MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// `net.ipv4.tcp_migrate_req` now; `None` where the kernel has no such
/// setting (before Linux 5.14).
pub fn read_migrate_req() -> Option<u64> {
    std::fs::read_to_string(MIGRATE_REQ)
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn write_migrate_req(value: u64) -> Result<(), String> {
    std::fs::write(MIGRATE_REQ, format!("{value}\n")).map_err(|e| {
        format!(
            "cannot set net.ipv4.tcp_migrate_req ({MIGRATE_REQ}: {e}); it needs Linux 5.14+ and root (CAP_NET_ADMIN) in this network namespace"
        )
    })
}

/// Whether the harness may change the setting: it writes the current value
/// back. `Err` says why not.
pub fn check_migrate_req() -> Result<(), String> {
    let now = read_migrate_req().ok_or_else(|| {
        format!("this kernel has no net.ipv4.tcp_migrate_req ({MIGRATE_REQ} is missing; Linux 5.14+ has it)")
    })?;
    write_migrate_req(now)
}

/// `net.ipv4.tcp_migrate_req` set for one run and restored when dropped
/// (the harness only changes it around the runs that ask for it; a SIGKILL
/// of the harness in the middle of such a run leaves it changed, and the
/// run record says what it was).
pub struct MigrateReq {
    restore: Option<u64>,
    /// The value in effect during the run (`None`: no such setting).
    pub in_effect: Option<u64>,
}

impl MigrateReq {
    /// Sets it to `want` where it differs. A target that asked for 1 and
    /// cannot have it is an error; one that wants 0 and finds 1 that cannot
    /// be changed runs with 1, which the record shows.
    pub fn apply(want: u64) -> Result<MigrateReq, String> {
        let Some(now) = read_migrate_req() else {
            if want == 1 {
                return Err(check_migrate_req().unwrap_err());
            }
            return Ok(MigrateReq {
                restore: None,
                in_effect: None,
            });
        };
        if now == want {
            return Ok(MigrateReq {
                restore: None,
                in_effect: Some(now),
            });
        }
        match write_migrate_req(want) {
            Ok(()) => Ok(MigrateReq {
                restore: Some(now),
                in_effect: Some(want),
            }),
            Err(e) if want == 1 => Err(e),
            Err(_) => Ok(MigrateReq {
                restore: None,
                in_effect: Some(now),
            }),
        }
    }
}

impl Drop for MigrateReq {
    fn drop(&mut self) {
        if let Some(v) = self.restore.take() {
            if let Err(e) = write_migrate_req(v) {
                eprintln!("harness: restoring net.ipv4.tcp_migrate_req to {v}: {e}");
            }
        }
    }
}
