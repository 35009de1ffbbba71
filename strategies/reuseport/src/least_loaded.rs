//! `reuseport:ebpf-least-loaded`: the master's side (the maps, the program,
//! the drift correction) and the worker's intake (counting what it finished).
//!
//! # The maps and the program
//!
//! Before any fork the master creates
//! - a `REUSEPORT_SOCKARRAY` whose key i holds slot i's listener (the
//!   master-owned listeners of [`crate::Variant::MasterOwned`], which never
//!   close while the server runs, so a replacement worker in slot i polls the
//!   very socket the array holds);
//! - a one-element mmapable `ARRAY` whose value is one [`LoadSlot`] per slot
//!   (`assigned`, `finished`), which the master maps into memory: the workers
//!   inherit the mapping and a worker adds 1 to its slot's `finished` when it
//!   closes a connection, with no system call;
//! - the program ([`crate::ebpf`]), loaded and attached to the group with
//!   `SO_ATTACH_REUSEPORT_EBPF`. The group holds it until its last listener
//!   closes, when the master exits; nothing is pinned.
//!
//! # Drift correction
//!
//! `assigned - finished` is meant to be what slot i has outstanding: the
//! connections waiting in its listener's accept queue plus those its worker
//! has open. Left alone it drifts upwards, for good: the program runs at the
//! SYN, so a SYN the kernel drops because the accept queue is full is counted
//! when it arrives and again when the client retries it; a handshake that
//! never completes (the client gives up, or resets it, before its final ACK)
//! is counted and never reaches the queue; a worker that dies or is killed
//! at the drain deadline never finishes the connections it had open. (A
//! connection reset while it waits complete in the accept queue is not one
//! of them: `accept` still returns it, and the worker finishes it.) A slot
//! whose count is too high would get less than its share for ever.
//!
//! Measured (the overload test's scenario, by hand): 2 stopped workers,
//! `--backlog 2`, 24 clients with a 2.5 s connect timeout: 6 connect (3 per
//! queue), the other SYNs are dropped and retried; half of the 6 are then
//! reset in the queue and the workers resumed. The program had counted 60
//! assignments for 6 connections; the master applied 3 corrections per slot
//! (`corrected_by` -27 each), and at the end each slot's `assigned` =
//! `finished` = its worker's 3 connections.
//!
//! So the master measures the truth on a timer ([`TICK`], 100 ms): for each
//! slot, `outstanding = accept queue length + open connections`, the queue
//! length from `TCP_INFO` on the listener (`tcpi_unacked` of a `LISTEN`
//! socket is its `sk_ack_backlog`) and the open connections from the slot's
//! shared counter (0 when the slot has no live worker). The difference
//! `d = outstanding - (assigned - finished)` is added to `assigned` with an
//! atomic add (never a store, so that the program's concurrent adds are kept).
//!
//! The reading is not one instant: a connection moves from queue to worker
//! (accepted, not yet counted open), a worker closes one (open already down,
//! `finished` not yet up), the program assigns one (counted at the SYN, in
//! the queue only once the handshake completes). Each of these makes `d`
//! off by one for a moment. Two rules keep those moments from being
//! "corrected":
//! - a slot's reading counts only if `assigned` and `finished` are the same
//!   before and after the queue and the open count are read;
//! - a difference is applied only when the same non-zero `d` is seen at two
//!   consecutive ticks ([`decide`]). Real drift persists and is gone within
//!   two ticks; a race does not repeat the same way. Under steady load
//!   `d` moves and nothing is corrected, which costs little: the error is
//!   what is in flight, and the next quiet moment settles it.
//!
//! When a worker is gone (its channel closed or it was reaped), its slot is
//! corrected at once to its queue alone, with the first rule only: what the
//! worker had open is closed, and the queue waits for the replacement.
//!
//! Each applied correction is counted, per slot, in the stats file with the
//! sum of the differences (`least_loaded` in the master's record).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::Duration;

use lab_common::intake::ListenerIntake;
use lab_common::stats::{LeastLoadedRecord, LeastLoadedSlot, LoadSlot, Shared};
use lab_common::strategy::{Accepted, Intake, Master};
use lab_common::sys::ebpf::{
    accept_queue_len, attach_reuseport_ebpf, create_map, load_program, map_shared_array,
    sockarray_cookie, update_elem, ATTACH_SK_REUSEPORT_SELECT, F_MMAPABLE, MAP_TYPE_ARRAY,
    MAP_TYPE_REUSEPORT_SOCKARRAY, PROG_TYPE_SK_REUSEPORT,
};
use mio::event::Event;
use mio::unix::SourceFd;
use mio::{Interest, Poll, Registry, Token};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use crate::ebpf::{least_loaded_program, SLOT_BYTES};

/// How often the master corrects the counts.
pub const TICK: Duration = Duration::from_millis(100);

/// The master's timer token (strategy tokens are below the supervisor's).
pub const TIMER: Token = Token(1);

/// The strategy's name, for messages.
const NAME: &str = "reuseport:ebpf-least-loaded";

/// What the master does with one slot's reading: the difference to add to
/// `assigned` now, if any, and the difference to remember for the next tick.
///
/// `prev`: the difference remembered at the previous tick; `d`: this tick's.
pub fn decide(prev: Option<i64>, d: i64) -> (Option<i64>, Option<i64>) {
    match (prev, d) {
        (_, 0) => (None, None),
        (Some(p), d) if p == d => (Some(d), None),
        (_, d) => (None, Some(d)),
    }
}

/// The master's maps, program, timer and corrections.
pub struct LeastLoaded {
    sockarray: OwnedFd,
    /// Kept so that `bpftool map` shows who holds it; the mapping keeps the
    /// map alive anyway.
    _load_map: OwnedFd,
    _prog: OwnedFd,
    slots: &'static [LoadSlot],
    shared: Shared,
    timer: Option<TimerFd>,
    pending: Vec<Option<i64>>,
    corrections: Vec<u64>,
    corrected_by: Vec<i64>,
}

/// The one-line refusal when BPF is not allowed here.
fn privilege_error(call: &str, e: io::Error) -> io::Error {
    let setting = std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
        .map(|s| format!("; kernel.unprivileged_bpf_disabled = {}", s.trim()))
        .unwrap_or_default();
    io::Error::new(
        e.kind(),
        format!(
            "{NAME} needs root (CAP_BPF/CAP_NET_ADMIN) to load its program: {call}: {e}{setting}"
        ),
    )
}

impl LeastLoaded {
    /// Creates the load map and maps it, for `workers` slots. The first BPF
    /// call: where BPF is not allowed, this is the one-line error.
    pub fn create_load_map(workers: usize) -> io::Result<(OwnedFd, &'static [LoadSlot])> {
        let value_size = u32::try_from(workers * SLOT_BYTES).map_err(io::Error::other)?;
        let map =
            create_map(MAP_TYPE_ARRAY, 4, value_size, 1, F_MMAPABLE, "lab_load").map_err(|e| {
                match e.raw_os_error() {
                    Some(libc::EPERM) | Some(libc::EACCES) => {
                        privilege_error("bpf(BPF_MAP_CREATE)", e)
                    }
                    _ => io::Error::new(e.kind(), format!("{NAME}: bpf(BPF_MAP_CREATE): {e}")),
                }
            })?;
        assert_eq!(std::mem::size_of::<LoadSlot>(), SLOT_BYTES);
        let slots = map_shared_array::<LoadSlot>(map.as_fd(), workers)
            .map_err(|e| io::Error::new(e.kind(), format!("{NAME}: mmap of the load map: {e}")))?;
        Ok((map, slots))
    }

    /// Fills the sockarray with `listeners` (slot order), loads the program
    /// and attaches it to their group.
    pub fn new(
        load_map: OwnedFd,
        slots: &'static [LoadSlot],
        listeners: &[BorrowedFd<'_>],
        shared: Shared,
    ) -> io::Result<LeastLoaded> {
        let n = listeners.len();
        let err =
            |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{NAME}: {what}: {e}"));
        let sockarray = create_map(
            MAP_TYPE_REUSEPORT_SOCKARRAY,
            4,
            8,
            n as u32,
            0,
            "lab_listeners",
        )
        .map_err(|e| err("bpf(BPF_MAP_CREATE) of the sockarray", e))?;
        for (i, l) in listeners.iter().enumerate() {
            update_elem(
                sockarray.as_fd(),
                i as u32,
                &(l.as_raw_fd() as u64).to_ne_bytes(),
            )
            .map_err(|e| err("bpf(BPF_MAP_UPDATE_ELEM) of a listener", e))?;
        }
        let insns = least_loaded_program(n, sockarray.as_raw_fd(), load_map.as_raw_fd());
        let prog = load_program(
            PROG_TYPE_SK_REUSEPORT,
            ATTACH_SK_REUSEPORT_SELECT,
            &insns,
            "Dual MIT/GPL",
            "lab_least_load",
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => privilege_error("bpf(BPF_PROG_LOAD)", e),
            _ => err("loading the program", e),
        })?;
        attach_reuseport_ebpf(listeners[0], prog.as_fd())
            .map_err(|e| err("setsockopt(SO_ATTACH_REUSEPORT_EBPF)", e))?;
        Ok(LeastLoaded {
            sockarray,
            _load_map: load_map,
            _prog: prog,
            slots,
            shared,
            timer: None,
            pending: vec![None; n],
            corrections: vec![0; n],
            corrected_by: vec![0; n],
        })
    }

    /// Slot `slot`'s counters (the worker's intake gets its own).
    pub fn slot(&self, slot: usize) -> &'static LoadSlot {
        &self.slots[slot]
    }

    /// Starts the correction timer and registers it.
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        timer.set(
            Expiration::Interval(TimeSpec::from_duration(TICK)),
            TimerSetTimeFlags::empty(),
        )?;
        registry.register(
            &mut SourceFd(&timer.as_fd().as_raw_fd()),
            TIMER,
            Interest::READABLE,
        )?;
        self.timer = Some(timer);
        Ok(())
    }

    /// Reads slot's counters and its outstanding connections, or `None` if
    /// the counters moved meanwhile. Returns (assigned - finished, outstanding).
    fn reading(
        &self,
        slot: usize,
        listener: BorrowedFd<'_>,
        open: Option<u64>,
    ) -> io::Result<Option<(i64, i64)>> {
        let s = &self.slots[slot];
        let (a, f) = (s.assigned.load(SeqCst), s.finished.load(SeqCst));
        let queued = accept_queue_len(listener)? as i64;
        let open = open.unwrap_or(0) as i64;
        if (a, f) != (s.assigned.load(SeqCst), s.finished.load(SeqCst)) {
            return Ok(None);
        }
        Ok(Some((a.wrapping_sub(f) as i64, queued + open)))
    }

    fn apply(&mut self, slot: usize, d: i64) {
        self.slots[slot].assigned.fetch_add(d as u64, SeqCst);
        self.corrections[slot] += 1;
        self.corrected_by[slot] += d;
    }

    /// The timer fired: one correction pass over every slot.
    /// `listeners[i]`: slot i's listener.
    pub fn tick(
        &mut self,
        event: &Event,
        listeners: &[BorrowedFd<'_>],
        m: &Master<'_>,
    ) -> io::Result<()> {
        if event.token() != TIMER {
            return Ok(());
        }
        if let Some(t) = &self.timer {
            match t.wait() {
                Ok(()) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for (slot, l) in listeners.iter().enumerate() {
            let open = m
                .pid(slot)
                .map(|_| self.shared.slots[slot].open_connections.load(Relaxed));
            let Some((load, outstanding)) = self.reading(slot, *l, open)? else {
                self.pending[slot] = None;
                continue;
            };
            let (now, next) = decide(self.pending[slot], outstanding - load);
            self.pending[slot] = next;
            if let Some(d) = now {
                self.apply(slot, d);
            }
        }
        Ok(())
    }

    /// Slot's worker is gone: what it had open is closed; the count becomes
    /// the queue's length at once (unless the counters moved while reading;
    /// then the timer does it).
    pub fn worker_gone(&mut self, slot: usize, listener: BorrowedFd<'_>) -> io::Result<()> {
        if let Some((load, outstanding)) = self.reading(slot, listener, None)? {
            let d = outstanding - load;
            if d != 0 {
                self.apply(slot, d);
            }
        }
        self.pending[slot] = None;
        Ok(())
    }

    /// The stats file's record.
    pub fn record(&self) -> LeastLoadedRecord {
        LeastLoadedRecord {
            corrections: self.corrections.iter().sum(),
            slots: (0..self.slots.len())
                .map(|i| LeastLoadedSlot {
                    slot: i,
                    listener_cookie: sockarray_cookie(self.sockarray.as_fd(), i as u32)
                        .ok()
                        .flatten(),
                    assigned: self.slots[i].assigned.load(SeqCst),
                    finished: self.slots[i].finished.load(SeqCst),
                    corrections: self.corrections[i],
                    corrected_by: self.corrected_by[i],
                })
                .collect(),
        }
    }
}

/// The worker's intake: slot's master-owned listener, as `reuseport`'s, and
/// one atomic add to the slot's `finished` for each connection it closes.
pub struct LeastLoadedIntake {
    inner: ListenerIntake,
    slot: &'static LoadSlot,
}

impl LeastLoadedIntake {
    /// `inner` polls the slot's listener; `slot` is the slot's counters.
    pub fn new(inner: ListenerIntake, slot: &'static LoadSlot) -> Self {
        LeastLoadedIntake { inner, slot }
    }
}

impl Intake for LeastLoadedIntake {
    fn register(&mut self, poll: &Poll, control: UnixStream) -> io::Result<Option<UnixStream>> {
        self.inner.register(poll, control)
    }

    fn before_poll(&mut self, poll: &Poll) -> io::Result<Option<Duration>> {
        self.inner.before_poll(poll)
    }

    fn on_event(&mut self, event: &Event, poll: &Poll, out: &mut Vec<Accepted>) -> io::Result<()> {
        self.inner.on_event(event, poll, out)
    }

    fn connection_closed(&mut self) {
        self.slot.finished.fetch_add(1, SeqCst);
    }

    fn set_paused(&mut self, poll: &Poll, paused: bool) -> io::Result<()> {
        self.inner.set_paused(poll, paused)
    }

    fn stop(&mut self, poll: &Poll, out: &mut Vec<Accepted>) -> io::Result<()> {
        self.inner.stop(poll, out)
    }

    fn quiesced(&self) -> bool {
        self.inner.quiesced()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difference_is_applied_when_it_repeats() {
        assert_eq!(decide(None, 0), (None, None));
        assert_eq!(decide(None, -3), (None, Some(-3)));
        assert_eq!(decide(Some(-3), -3), (Some(-3), None));
        assert_eq!(
            decide(Some(-3), 1),
            (None, Some(1)),
            "a race: remembered, not applied"
        );
        assert_eq!(decide(Some(2), 0), (None, None));
    }

    #[test]
    fn drift_settles_within_two_ticks_and_a_race_is_never_applied() {
        // Drift of +2 (two SYN retries counted twice): ticks see d = -2.
        let (mut pending, mut load) = (None, 5i64);
        let outstanding = 3;
        for _ in 0..2 {
            let (now, next) = decide(pending, outstanding - load);
            pending = next;
            if let Some(d) = now {
                load += d;
            }
        }
        assert_eq!(load, outstanding);
        // A one-tick blip (a connection between queue and worker) is not.
        let (now, next) = decide(None, -1);
        assert_eq!(now, None);
        assert_eq!(decide(next, 0), (None, None));
    }
}
