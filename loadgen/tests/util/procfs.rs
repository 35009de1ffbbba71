//! The little the tests read from `/proc`: whether a process is alive, and
//! its start time (which, with the pid, names one process even if the pid is
//! recycled).

use std::fs;

/// State letter and start time (clock ticks since boot) of `pid`, from
/// `/proc/PID/stat`; `None` if there is no such process (any more).
pub fn state_and_start(pid: i32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) may contain spaces and parentheses: everything after the
    // *last* ')' is space-separated, starting with field 3 (state); the start
    // time is field 22.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((
        fields.first()?.chars().next()?,
        fields.get(19)?.parse().ok()?,
    ))
}

/// Whether `pid` exists and has not yet died (zombies count as dead).
pub fn is_alive(pid: i32) -> bool {
    matches!(state_and_start(pid), Some((s, _)) if !matches!(s, 'Z' | 'X' | 'x'))
}

/// Whether `pid` is still the very process that started at `start`, alive.
pub fn is_same_live_process(pid: i32, start: u64) -> bool {
    matches!(state_and_start(pid), Some((s, t)) if t == start && !matches!(s, 'Z' | 'X' | 'x'))
}
