//! What else used the machine during a measured window: CPU time stolen by
//! the hypervisor (`/proc/stat`), and the CPU time of every process that
//! is not part of the run. Ours are the harness and its descendants (the
//! server, nginx and Node under their guard, loadgen); kernel threads
//! (`PF_KTHREAD`) are left out too, since they do the run's own softirq
//! work. A process that ends inside the window is missed.

use std::collections::HashMap;
use std::time::Instant;

use crate::model::record::{Noise, OtherProcess};

/// `PF_KTHREAD` in `/proc/PID/stat`'s flags.
const PF_KTHREAD: u64 = 0x0020_0000;

/// One process as `/proc/PID/stat` shows it.
#[derive(Clone, Debug, PartialEq)]
struct Proc {
    comm: String,
    ppid: i32,
    kthread: bool,
    /// utime + stime, clock ticks.
    ticks: u64,
}

/// Parses `/proc/PID/stat` (the command name may hold spaces and parens).
fn parse_stat(text: &str) -> Option<Proc> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let f: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // f[0] is the state (field 3): ppid is field 4, flags 9, utime 14, stime 15.
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(Proc {
        comm,
        ppid: f.get(1)?.parse().ok()?,
        kthread: num(6)? & PF_KTHREAD != 0,
        ticks: num(11)? + num(12)?,
    })
}

/// The machine's CPU time (`cpu` line of `/proc/stat`): (all, steal), ticks.
fn parse_cpu_line(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice; guest
    // time is already in user and nice.
    let all: u64 = v.iter().take(8).sum();
    Some((all, *v.get(7).unwrap_or(&0)))
}

fn processes() -> HashMap<i32, Proc> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(p) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|t| parse_stat(&t))
        {
            out.insert(pid, p);
        }
    }
    out
}

/// The machine at the start of a window.
pub struct NoiseProbe {
    at: Instant,
    cpu: Option<(u64, u64)>,
    procs: HashMap<i32, Proc>,
}

impl NoiseProbe {
    /// Reads the machine now.
    pub fn start() -> NoiseProbe {
        NoiseProbe {
            at: Instant::now(),
            cpu: cpu_now(),
            procs: processes(),
        }
    }

    /// Reads it again: what happened in between.
    pub fn finish(self) -> Option<Noise> {
        let (all0, steal0) = self.cpu?;
        let (all1, steal1) = cpu_now()?;
        let after = processes();
        Some(noise(
            self.at.elapsed().as_secs_f64(),
            all1.saturating_sub(all0),
            steal1.saturating_sub(steal0),
            &self.procs,
            &after,
            std::process::id() as i32,
            clock_ticks(),
        ))
    }
}

fn cpu_now() -> Option<(u64, u64)> {
    parse_cpu_line(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64
}

/// The noise of a window, from two snapshots (pure).
fn noise(
    window_s: f64,
    all_ticks: u64,
    steal_ticks: u64,
    before: &HashMap<i32, Proc>,
    after: &HashMap<i32, Proc>,
    ours: i32,
    hz: f64,
) -> Noise {
    let is_ours = |mut pid: i32| {
        // Walk up the parents (a bounded walk: pids can be reused).
        for _ in 0..64 {
            if pid == ours {
                return true;
            }
            match after.get(&pid) {
                Some(p) if p.ppid > 0 => pid = p.ppid,
                _ => return false,
            }
        }
        false
    };
    let mut others: Vec<OtherProcess> = after
        .iter()
        .filter(|(pid, p)| !p.kthread && !is_ours(**pid))
        .filter_map(|(&pid, p)| {
            let was = before
                .get(&pid)
                .filter(|b| b.comm == p.comm)
                .map_or(0, |b| b.ticks);
            let ticks = p.ticks.saturating_sub(was);
            (ticks > 0).then(|| OtherProcess {
                pid,
                comm: p.comm.clone(),
                cpu_ms: ticks as f64 * 1000.0 / hz,
            })
        })
        .collect();
    others.sort_by(|a, b| b.cpu_ms.total_cmp(&a.cpu_ms));
    let other_ms: f64 = others.iter().map(|o| o.cpu_ms).sum();
    let all_ms = all_ticks as f64 * 1000.0 / hz;
    let pct = |x: f64| {
        if all_ms > 0.0 {
            x / all_ms * 100.0
        } else {
            0.0
        }
    };
    others.truncate(3);
    Noise {
        window_s,
        steal_pct: pct(steal_ticks as f64 * 1000.0 / hz),
        other_cpu_pct: pct(other_ms),
        others,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_spaces_in_the_name() {
        let p = parse_stat(
            "42 (my (odd) prog) S 7 42 42 0 -1 4194304 10 0 0 0 150 50 0 0 20 0 1 0 5 0 0",
        )
        .unwrap();
        assert_eq!(
            (p.comm.as_str(), p.ppid, p.kthread, p.ticks),
            ("my (odd) prog", 7, false, 200)
        );
        let k =
            parse_stat("2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 3 0 0 20 0 1 0 1 0 0").unwrap();
        assert!(k.kthread);
        assert_eq!(
            parse_cpu_line("cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 1 2 3\n"),
            Some((1000, 35))
        );
    }

    #[test]
    fn our_descendants_and_kernel_threads_are_not_noise() {
        let p = |comm: &str, ppid: i32, kthread: bool, ticks: u64| Proc {
            comm: comm.into(),
            ppid,
            kthread,
            ticks,
        };
        let before: HashMap<i32, Proc> = [
            (10, p("harness", 1, false, 0)),
            (30, p("cc1", 1, false, 100)),
        ]
        .into_iter()
        .collect();
        let after: HashMap<i32, Proc> = [
            (10, p("harness", 1, false, 50)),
            (11, p("lab-server", 10, false, 400)),
            (12, p("lab-server", 11, false, 400)),
            (20, p("ksoftirqd/0", 2, true, 90)),
            (30, p("cc1", 1, false, 300)),
        ]
        .into_iter()
        .collect();
        let n = noise(1.0, 200, 10, &before, &after, 10, 100.0);
        assert_eq!(n.others.len(), 1);
        assert_eq!(
            (n.others[0].comm.as_str(), n.others[0].cpu_ms),
            ("cc1", 2000.0)
        );
        assert!((n.other_cpu_pct - 100.0).abs() < 1e-9);
        assert!((n.steal_pct - 5.0).abs() < 1e-9);
    }
}
