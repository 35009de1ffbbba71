//! Rolling restart (SIGHUP to the master).
//!
//! Every worker that was running and ready when the SIGHUP arrived is
//! replaced in turn, slot 0, 1, ...: the master stops routing to it
//! ([`Strategy::on_retire`]), marks it retiring (it leaves
//! [`Master::ready_slots`]), sends it SIGTERM (the worker stops taking new
//! connections, finishes what it has and exits: see [`crate::worker`]), reaps
//! it, forks the replacement into the same slot (generation + 1), and goes on
//! to the next slot only once the replacement has said `Ready`. On stderr:
//!
//! ```text
//! lab-server: rolling restart: begins (N workers)
//! lab-server: rolling restart: slot 0 pid 123 -> pid 456
//! ...
//! lab-server: rolling restart: done (N workers replaced)
//! ```
//!
//! - A retiring worker still there [`KILL_AFTER`] after its SIGTERM is sent
//!   SIGKILL (`lab-server: rolling restart: slot S pid P did not exit within
//!   1.5s; sending SIGKILL`); it still counts as retired.
//! - A retired worker's exit is not a crash: it is not an early death, not
//!   in `replacements`, and its stats record says `"retired": true,
//!   "replaced": false`; `retirements` and `rolling_restarts` count them.
//! - A SIGHUP while a restart runs is ignored with a stderr line (`SIGHUP
//!   ignored: a rolling restart is in progress (slot S of N)`): the
//!   replacements are forked from the same master, so a second pass would
//!   bring nothing new. A SIGHUP before the ready line or while stopping is
//!   ignored too, with a line.
//! - A worker that dies (crash, kill) during a restart is replaced as usual;
//!   a slot whose worker was replaced that way after the SIGHUP is skipped
//!   (its worker is new already), with a line.
//! - SIGTERM/SIGINT during a restart abandons it (a line) and stops
//!   everything as usual.

use std::io;
use std::time::Instant;

use mio::Poll;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::strategy::{Master, Strategy};

use super::{Supervisor, KILL_AFTER};

/// A rolling restart in progress.
pub(super) struct Rolling {
    /// Each slot's worker when the SIGHUP came (`None`: none was ready; its
    /// slot's next worker is new anyway).
    pub(super) targets: Vec<Option<Pid>>,
    /// The slot being replaced.
    pub(super) slot: usize,
    pub(super) phase: Phase,
    pub(super) replaced: usize,
}

pub(super) enum Phase {
    /// SIGTERM sent to `old` at `since`; waiting for it to exit.
    Retiring {
        old: Pid,
        since: Instant,
        killed: bool,
    },
    /// `old` is gone; waiting for its slot's replacement to be ready.
    Starting { old: Pid },
}

impl Supervisor {
    /// SIGHUP: start a rolling restart (or say why not).
    pub(super) fn begin_rolling(
        &mut self,
        poll: &Poll,
        strategy: &mut dyn Strategy,
    ) -> io::Result<()> {
        if self.stopping_since.is_some() {
            eprintln!("lab-server: SIGHUP ignored: the server is stopping");
            return Ok(());
        }
        if !self.announced {
            eprintln!("lab-server: SIGHUP ignored: the workers are not all ready yet");
            return Ok(());
        }
        if let Some(r) = &self.rolling {
            eprintln!(
                "lab-server: SIGHUP ignored: a rolling restart is in progress (slot {} of {})",
                r.slot,
                r.targets.len()
            );
            return Ok(());
        }
        let targets: Vec<Option<Pid>> = self
            .workers
            .iter()
            .map(|w| w.as_ref().filter(|w| w.ready && !w.retiring).map(|w| w.pid))
            .collect();
        eprintln!(
            "lab-server: rolling restart: begins ({} workers)",
            targets.len()
        );
        self.rolling = Some(Rolling {
            targets,
            slot: 0,
            phase: Phase::Starting {
                old: Pid::from_raw(0),
            },
            replaced: 0,
        });
        self.retire_next(0, poll, strategy)
    }

    /// Retires the first slot at or after `from` whose worker is still the
    /// one the restart found; ends the restart after the last slot.
    fn retire_next(
        &mut self,
        from: usize,
        poll: &Poll,
        strategy: &mut dyn Strategy,
    ) -> io::Result<()> {
        let Some(r) = self.rolling.as_mut() else {
            return Ok(());
        };
        for slot in from..r.targets.len() {
            let Some(old) = r.targets[slot] else {
                continue;
            };
            let current = self.workers[slot].as_ref();
            match current {
                Some(w) if w.pid == old && w.ready && !w.retiring => {}
                other => {
                    eprintln!(
                        "lab-server: rolling restart: slot {slot} skipped: pid {old} died meanwhile{}",
                        match other {
                            Some(w) if w.pid != old => format!(" and pid {} replaced it", w.pid),
                            _ => String::new(),
                        }
                    );
                    continue;
                }
            }
            r.slot = slot;
            r.phase = Phase::Retiring {
                old,
                since: Instant::now(),
                killed: false,
            };
            if let Some(w) = self.workers[slot].as_mut() {
                w.retiring = true;
            }
            let mut m = Master {
                workers: &mut self.workers,
                registry: poll.registry(),
            };
            // The master stops routing to it before the worker is told.
            strategy.on_retire(slot, &mut m)?;
            let _ = kill(old, Signal::SIGTERM);
            return Ok(());
        }
        let r = self.rolling.take().expect("checked above");
        self.rolling_restarts += 1;
        eprintln!(
            "lab-server: rolling restart: done ({} workers replaced)",
            r.replaced
        );
        Ok(())
    }

    /// Worker `slot` said ready: if it is the replacement the restart waits
    /// for, say so and go on to the next slot.
    pub(super) fn rolling_ready(
        &mut self,
        slot: usize,
        poll: &Poll,
        strategy: &mut dyn Strategy,
    ) -> io::Result<()> {
        let Some(r) = self.rolling.as_mut() else {
            return Ok(());
        };
        let Phase::Starting { old } = r.phase else {
            return Ok(());
        };
        if r.slot != slot {
            return Ok(());
        }
        let Some(new) = self.workers[slot].as_ref().map(|w| w.pid) else {
            return Ok(());
        };
        r.replaced += 1;
        eprintln!("lab-server: rolling restart: slot {slot} pid {old} -> pid {new}");
        self.retire_next(slot + 1, poll, strategy)
    }

    /// When the retiring worker must have exited.
    pub(super) fn retire_deadline(&self) -> Option<Instant> {
        match self.rolling.as_ref()?.phase {
            Phase::Retiring {
                since,
                killed: false,
                ..
            } => Some(since + KILL_AFTER),
            _ => None,
        }
    }

    /// SIGKILLs a retiring worker that overran its drain time.
    pub(super) fn check_retire_deadline(&mut self) {
        let Some(r) = self.rolling.as_mut() else {
            return;
        };
        if let Phase::Retiring {
            old,
            since,
            ref mut killed,
        } = r.phase
        {
            if !*killed && Instant::now() >= since + KILL_AFTER {
                *killed = true;
                eprintln!(
                    "lab-server: rolling restart: slot {} pid {old} did not exit within {KILL_AFTER:?}; sending SIGKILL",
                    r.slot
                );
                let _ = kill(old, Signal::SIGKILL);
            }
        }
    }
}
