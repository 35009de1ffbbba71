//! A tracefs instance of our own (`/sys/kernel/tracing/instances/NAME`):
//! its own ring buffer, clock and enabled events, so that tracing here
//! never changes what somebody else traces on the machine (the global
//! buffer and other instances are left alone). The instance is removed
//! when dropped; the clock is `mono`, the timebase of `CLOCK_MONOTONIC`, so
//! that an event's time can be compared with the client's.

use std::path::{Path, PathBuf};

/// Where tracefs is mounted, if it is.
fn root() -> Option<PathBuf> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("instances").is_dir())
}

/// Removes the instances a trace killed before it could remove its own
/// left behind: ours by name (`prefork-lab-PID`), and only those whose
/// process is gone.
fn remove_stale(instances: &Path) {
    let Ok(dir) = std::fs::read_dir(instances) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix("prefork-lab-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::write(e.path().join("tracing_on"), "0");
            let _ = std::fs::write(e.path().join("events/enable"), "0");
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

/// One event read back from the buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// The task that was running when it fired (the waker, for a wakeup).
    pub common_pid: i32,
    /// CLOCK_MONOTONIC, nanoseconds (tracefs prints microseconds).
    pub time_ns: u64,
    /// `sched_waking`, `sched_switch`, `sys_accept4` (an exit).
    pub event: String,
    /// What follows the event's name.
    pub rest: String,
}

impl Line {
    /// `key=value` from the event's fields (`pid`, `prev_state`).
    pub fn field(&self, key: &str) -> Option<&str> {
        self.rest.split_whitespace().find_map(|t| {
            t.strip_prefix(key)
                .and_then(|v| v.strip_prefix('='))
                .filter(|_| !key.is_empty())
        })
    }

    /// A system call exit's return value (`sys_accept4 -> 0xfffffffffffffff5`
    /// is -11).
    pub fn ret(&self) -> Option<i64> {
        let hex = self.rest.trim().strip_prefix("-> 0x")?;
        u64::from_str_radix(hex, 16).ok().map(|v| v as i64)
    }
}

/// Parses the buffer's text (`trace` with `irq-info` off):
/// `  comm-PID  [CPU]  SECONDS.MICROS: event: fields`.
pub fn parse(text: &str) -> Vec<Line> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Line> {
    if line.trim_start().starts_with('#') {
        return None;
    }
    // The CPU column: the first `[` followed by digits and `]`.
    let open = line.match_indices('[').map(|(i, _)| i).find(|&i| {
        let tail = &line[i + 1..];
        let digits = tail.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && tail[digits..].starts_with(']')
    })?;
    let task = line[..open].trim_end();
    let common_pid = task.rsplit_once('-')?.1.parse().ok()?;
    let after = &line[open..];
    let after = &after[after.find(']')? + 1..];
    let after = after.trim_start();
    let (stamp, rest) = after.split_once(": ")?;
    let (secs, micros) = stamp.split_once('.')?;
    let time_ns = secs.parse::<u64>().ok()? * 1_000_000_000 + micros.parse::<u64>().ok()? * 1_000;
    let (event, rest) = match rest.split_once(": ") {
        Some((e, r)) if !e.contains(' ') => (e, r),
        // A system call exit: `sys_accept4 -> 0x5`.
        _ => rest.split_once(' ')?,
    };
    Some(Line {
        common_pid,
        time_ns,
        event: event.to_string(),
        rest: rest.to_string(),
    })
}

/// An instance of our own, removed on drop.
pub struct Instance {
    dir: PathBuf,
}

impl Instance {
    /// Creates `instances/prefork-lab-<pid>` with the `mono` clock and
    /// `per_cpu_kb` of buffer per CPU.
    pub fn create(per_cpu_kb: usize) -> Result<Instance, String> {
        let root = root().ok_or(
            "tracefs is not mounted: mount it (mount -t tracefs nodev /sys/kernel/tracing) or pass --no-kernel",
        )?;
        remove_stale(&root.join("instances"));
        let dir = root
            .join("instances")
            .join(format!("prefork-lab-{}", std::process::id()));
        if dir.exists() {
            // Ours (our pid), left by nothing alive: a previous trace of
            // this process. Reuse it after a reset.
            let _ = std::fs::write(dir.join("tracing_on"), "0");
        } else {
            std::fs::create_dir(&dir).map_err(|e| {
                format!(
                    "cannot create a tracefs instance ({}: {e}); tracepoints need root, or pass --no-kernel",
                    dir.display()
                )
            })?;
        }
        let inst = Instance { dir };
        inst.write("tracing_on", "0")?;
        inst.write("trace_clock", "mono")?;
        inst.write("options/irq-info", "0")?;
        inst.write("buffer_size_kb", &per_cpu_kb.to_string())?;
        inst.write("trace", "")?;
        Ok(inst)
    }

    fn write(&self, rel: &str, value: &str) -> Result<(), String> {
        let p = self.dir.join(rel);
        std::fs::write(&p, value).map_err(|e| format!("cannot write {}: {e}", p.display()))
    }

    /// Whether the kernel has the event (`syscalls/sys_exit_accept4`).
    pub fn has(&self, event: &str) -> bool {
        self.dir.join("events").join(event).join("enable").exists()
    }

    /// Enables `event` (`sched/sched_waking`) with a filter (empty: none).
    pub fn enable(&self, event: &str, filter: &str) -> Result<(), String> {
        let e = Path::new("events").join(event);
        if !filter.is_empty() {
            self.write(&e.join("filter").to_string_lossy(), filter)
                .map_err(|err| format!("{err} (filter {filter:?})"))?;
        }
        self.write(&e.join("enable").to_string_lossy(), "1")
    }

    /// Starts or stops recording.
    pub fn recording(&self, on: bool) -> Result<(), String> {
        self.write("tracing_on", if on { "1" } else { "0" })
    }

    /// The buffer's text.
    pub fn read(&self) -> Result<String, String> {
        let p = self.dir.join("trace");
        std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.write("tracing_on", "0");
        let _ = self.write("events/enable", "0");
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_wakeup_a_switch_and_a_system_call_exit() {
        let text = "# tracer: nop\n\
            #           TASK-PID     CPU#     TIMESTAMP  FUNCTION\n\
            \x20          loadgen-5296    [001]  30967.906968: sched_wakeup: comm=lab-server pid=2443 prio=120 target_cpu=001\n\
            \x20         <idle>-0       [000]  30967.906269: sched_switch: prev_comm=lab-server prev_pid=2443 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120\n\
            \x20  lab-server-x-2443    [001]  30967.907302: sys_accept4 -> 0xfffffffffffffff5\n";
        let v = parse(text);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].common_pid, 5296);
        assert_eq!(v[0].time_ns, 30_967_906_968_000);
        assert_eq!(v[0].event, "sched_wakeup");
        assert_eq!(v[0].field("pid"), Some("2443"));
        assert_eq!(v[1].common_pid, 0);
        assert_eq!(v[1].field("prev_state"), Some("S"));
        assert_eq!(v[1].field("prev_pid"), Some("2443"));
        assert_eq!(v[2].common_pid, 2443);
        assert_eq!(v[2].event, "sys_accept4");
        assert_eq!(v[2].ret(), Some(-11));
    }
}
