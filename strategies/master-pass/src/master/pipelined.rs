//! `master-pass:pipelined`: the master accepts and passes descriptors with
//! `SCM_RIGHTS` as the other master-pass policies do, but without Node's
//! stop-and-wait.
//!
//! - **Which worker.** The one with the fewest outstanding connections:
//!   descriptors sent to it (or queued for it) minus the connections it has
//!   finished. Workers count finished connections in shared memory
//!   (`WorkerCounters::closed`), which the master reads: no message per
//!   connection in either direction. Ties rotate
//!   ([`LeastOutstanding`](crate::scheduler::LeastOutstanding)).
//! - **Credit window.** A worker with [`WINDOW`] outstanding connections gets
//!   nothing more until it finishes some. When every ready worker is at its
//!   window the master stops accepting, and new connections wait in the
//!   kernel's accept queue (`credit_stalls`). With a smaller `--max-conns`
//!   the window is `--max-conns`: outstanding connections include every one
//!   the worker holds open, so the master never gives a worker more than
//!   it may hold, and the cap holds without a refusal (which, without acks,
//!   would lose the connection).
//! - **How the master learns that credit freed.** Without a message: while
//!   it is stalled, a one-shot timer (`timerfd`, [`RESUME_AFTER`]) brings it
//!   back to re-read the counters and accept again; the timer is re-armed as
//!   long as the stall lasts. A connection that arrives meanwhile wakes it
//!   too (the listener is edge-triggered). A stalled master is one whose
//!   workers are all busy, so polling then costs nothing that matters.
//! - **Accepting.** Edge-triggered; on each wakeup, accept until `EAGAIN` or
//!   until [`ACCEPT_BATCH`] connections, whichever comes first. After a full
//!   batch the same timer is armed to expire at once, so the master comes
//!   back for the rest after handling the events already waiting (the
//!   workers' channels, signals) rather than starving them. Out of
//!   descriptors (`EMFILE`), it leaves the queue alone for
//!   [`RETRY_AFTER_EMFILE`] and says so once.
//! - **Batching.** The connections of one wakeup are grouped by the worker
//!   they were given to, and each group goes in `sendmsg` calls of up to
//!   [`MAX_FDS_PER_MESSAGE`] descriptors: one `NewConns { count }` frame,
//!   `count` descriptors in one `SCM_RIGHTS` message. The master closes its
//!   copies right after the call; the worker sends nothing back.
//! - **No wake-up per read.** A unix socket becomes writable again each
//!   time its reader takes something out, so the master hears of a
//!   worker's channel becoming writable only while something is queued for
//!   that worker (its channel was full); otherwise every batch the worker
//!   reads would wake the master.
//! - **A worker that dies.** Descriptors sent to it that it had not yet
//!   received (sent minus its `connections` counter in shared memory) were
//!   in its channel; the kernel closes them with the channel, and their
//!   clients see a close or a reset. They cannot be re-routed: the master
//!   closed its copies when it sent them. They are counted
//!   (`connections_lost_in_flight`) and reported on standard error, never
//!   lost silently. Connections still queued in the master for that worker
//!   (its channel was full) go to the others (`connections_rerouted`).

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use lab_common::channel::Frame;
use lab_common::stats::WorkerCounters;
use lab_common::strategy::Master;
use lab_common::sys::fdpass::MAX_FDS_PER_MESSAGE;
use lab_common::sys::fds::{accept4, AcceptFailure};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use super::{MasterPass, Pending};
use crate::scheduler::LeastOutstanding;

/// The most outstanding connections one worker may have.
pub const WINDOW: u64 = 64;

/// The most connections accepted in one go before the master turns to its
/// other events.
pub const ACCEPT_BATCH: usize = 64;

/// While every worker is at its window: how often the master looks again.
pub const RESUME_AFTER: Duration = Duration::from_millis(1);

/// Out of descriptors: how long the master leaves the accept queue alone
/// before it tries again (the worker's own pause in the same case).
pub const RETRY_AFTER_EMFILE: Duration = Duration::from_millis(100);

/// The resume timer's token in the master's poll.
pub(super) const TIMER: Token = Token(2);

/// The pipelined master's own state.
pub(super) struct Pipeline {
    picker: LeastOutstanding,
    /// Every slot's counters, mapped before the first fork.
    counters: &'static [WorkerCounters],
    /// Descriptors sent to the slot's current worker.
    sent: Vec<u64>,
    /// Given to the slot's worker, not sent yet (its channel was full).
    queued: Vec<VecDeque<Pending>>,
    /// Accepted, not given to a worker yet (re-routed from a dead or retiring
    /// worker while no other had credit).
    held: VecDeque<Pending>,
    timer: TimerFd,
    timer_armed: bool,
    timer_registered: bool,
    /// Every ready worker was at its window at the last look.
    stalled: bool,
    /// Whether the master hears when the slot's channel becomes writable:
    /// only while something is queued for it (see `Master::watch_writable`;
    /// each worker's channel starts watched).
    watching: Vec<bool>,
}

impl Pipeline {
    /// State for `workers` slots whose counters are `counters`, each worker
    /// holding at most `max_conns` connections.
    pub(super) fn new(
        counters: &'static [WorkerCounters],
        workers: usize,
        max_conns: usize,
    ) -> io::Result<Self> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        Ok(Pipeline {
            picker: LeastOutstanding::new(WINDOW.min(max_conns.max(1) as u64)),
            counters,
            sent: vec![0; workers],
            queued: (0..workers).map(|_| VecDeque::new()).collect(),
            held: VecDeque::new(),
            timer,
            timer_armed: false,
            timer_registered: false,
            stalled: false,
            watching: vec![true; workers],
        })
    }

    /// Registers the resume timer in the master's poll (once).
    pub(super) fn register(&mut self, registry: &Registry) -> io::Result<()> {
        if !self.timer_registered {
            let raw = self.timer.as_fd().as_raw_fd();
            registry.register(&mut SourceFd(&raw), TIMER, Interest::READABLE)?;
            self.timer_registered = true;
        }
        Ok(())
    }

    /// The timer fired: consume its expiry.
    pub(super) fn timer_fired(&mut self) {
        // Non-blocking: EAGAIN if it was already read; nothing to do then.
        let _ = self.timer.wait();
        self.timer_armed = false;
    }

    /// Stops the timer (the server is stopping).
    pub(super) fn disarm(&mut self) {
        let _ = self.timer.unset();
        self.timer_armed = false;
    }

    fn arm(&mut self, after: Duration) -> io::Result<()> {
        if !self.timer_armed {
            self.timer
                .set(
                    Expiration::OneShot(TimeSpec::from_duration(after)),
                    TimerSetTimeFlags::empty(),
                )
                .map_err(io::Error::from)?;
            self.timer_armed = true;
        }
        Ok(())
    }

    /// Connections given to `slot`'s worker and not finished: sent or queued,
    /// minus those it has closed.
    fn outstanding(&self, slot: usize) -> u64 {
        let given = self.sent[slot] + self.queued[slot].len() as u64;
        given.saturating_sub(self.counters[slot].closed.load(Relaxed))
    }

    /// Connections accepted and not yet given to a worker.
    pub(super) fn take_held(&mut self) -> VecDeque<Pending> {
        std::mem::take(&mut self.held)
    }

    /// `slot`'s worker will get nothing more (retiring): what was queued for
    /// it goes back to be given to another.
    pub(super) fn requeue(&mut self, slot: usize) -> usize {
        let queued: Vec<Pending> = self.queued[slot].drain(..).collect();
        let n = queued.len();
        self.held.extend(queued);
        n
    }
}

impl MasterPass {
    /// Gives held connections to workers with credit, accepts new ones while
    /// there is credit (up to [`ACCEPT_BATCH`]), and sends each worker its
    /// group.
    pub(super) fn pipeline_pump(&mut self, m: &mut Master<'_>) -> io::Result<()> {
        let Some(p) = self.pipeline.as_mut() else {
            return Ok(());
        };
        let mut candidates: Vec<(usize, u64)> =
            m.ready_slots().map(|s| (s, p.outstanding(s))).collect();
        let mut touched: Vec<usize> = Vec::new();
        let mut give = |p: &mut Pipeline, candidates: &mut [(usize, u64)], conn: Pending| {
            let slot = p.picker.pick(candidates).expect("picked before");
            p.picker.picked(slot);
            if let Some(c) = candidates.iter_mut().find(|(s, _)| *s == slot) {
                c.1 += 1;
            }
            p.queued[slot].push_back(conn);
            if !touched.contains(&slot) {
                touched.push(slot);
            }
        };
        while !p.held.is_empty() && p.picker.pick(&candidates).is_some() {
            let conn = p.held.pop_front().expect("checked non-empty");
            give(p, &mut candidates, conn);
        }
        let mut stalled = !p.held.is_empty() && !candidates.is_empty();
        let mut batch_full = false;
        let mut out_of_fds = false;
        if let (Some(listener), true, false) =
            (self.listener.as_ref(), p.held.is_empty(), self.stopping)
        {
            let mut accepted = 0;
            loop {
                if accepted == ACCEPT_BATCH {
                    batch_full = true;
                    break;
                }
                if p.picker.pick(&candidates).is_none() {
                    // No credit (or no ready worker: on_ready pumps again).
                    stalled = !candidates.is_empty();
                    break;
                }
                match accept4(listener.as_fd()) {
                    Ok(fd) => {
                        self.out_of_resources = false;
                        accepted += 1;
                        self.record.connections_accepted += 1;
                        let seq = self.next_seq;
                        self.next_seq = self.next_seq.wrapping_add(1);
                        give(p, &mut candidates, Pending { seq, fd });
                    }
                    Err(e) => match AcceptFailure::of(&e) {
                        AcceptFailure::Empty => {
                            self.record.accept_eagain += 1;
                            break;
                        }
                        AcceptFailure::Retry => {}
                        AcceptFailure::Resources => {
                            // Out of descriptors: the rest stay queued; the
                            // timer (or the next connection's event) retries.
                            if !std::mem::replace(&mut self.out_of_resources, true) {
                                eprintln!("lab-server: master: accept: {e}; retrying every {RETRY_AFTER_EMFILE:?}");
                            }
                            out_of_fds = true;
                            break;
                        }
                        AcceptFailure::Fatal => return Err(e),
                    },
                }
            }
        }
        if stalled && !p.stalled {
            self.record.credit_stalls += 1;
        }
        p.stalled = stalled;
        if out_of_fds {
            p.arm(RETRY_AFTER_EMFILE)?;
        } else if batch_full {
            p.arm(Duration::from_nanos(1))?;
        } else if stalled {
            p.arm(RESUME_AFTER)?;
        }
        for slot in touched {
            self.pipeline_flush(slot, m);
        }
        Ok(())
    }

    /// Sends what is queued for `slot`, up to [`MAX_FDS_PER_MESSAGE`]
    /// descriptors per `sendmsg`, until the channel is full or the queue
    /// empty. A dead worker's queue stays for `on_worker_gone` to re-route.
    pub(super) fn pipeline_flush(&mut self, slot: usize, m: &mut Master<'_>) {
        let Some(p) = self.pipeline.as_mut() else {
            return;
        };
        while !p.queued[slot].is_empty() {
            let q = &p.queued[slot];
            let n = q.len().min(MAX_FDS_PER_MESSAGE);
            let fds: Vec<BorrowedFd<'_>> = q.iter().take(n).map(|c| c.fd.as_fd()).collect();
            let frame = Frame::NewConns {
                seq: q[0].seq,
                count: n as u8,
            };
            match m.send_fds(slot, frame, &fds) {
                Ok(true) => {
                    drop(fds);
                    // Sent: the worker's copies are the only ones now.
                    p.queued[slot].drain(..n);
                    p.sent[slot] += n as u64;
                    self.record.connections_passed += n as u64;
                    self.record.fd_sendmsgs += 1;
                    self.record.fd_sendmsg_largest = self.record.fd_sendmsg_largest.max(n as u64);
                }
                // Full: on_writable sends the rest.
                Ok(false) => {
                    if !std::mem::replace(&mut p.watching[slot], true) {
                        let _ = m.watch_writable(slot, true);
                    }
                    return;
                }
                // Gone: on_worker_gone re-routes the rest.
                Err(_) => return,
            }
        }
        // Nothing waits for this worker: a read by it need not wake us.
        if std::mem::take(&mut p.watching[slot]) {
            let _ = m.watch_writable(slot, false);
        }
    }

    /// `slot`'s worker is gone: count what was in its channel as lost, give
    /// what was still queued for it to the others.
    pub(super) fn pipeline_worker_gone(
        &mut self,
        slot: usize,
        m: &mut Master<'_>,
    ) -> io::Result<()> {
        let Some(p) = self.pipeline.as_mut() else {
            return Ok(());
        };
        let received = p.counters[slot].connections.load(Relaxed);
        let lost = p.sent[slot].saturating_sub(received);
        p.sent[slot] = 0;
        if lost > 0 {
            self.record.connections_lost_in_flight += lost;
            eprintln!(
                "lab-server: master: worker slot {slot} died with {lost} connection(s) passed to it and not yet received; they cannot be re-routed (the master closed its copies when it sent them): their clients are lost"
            );
        }
        let n = p.requeue(slot) as u64;
        // The next worker in the slot gets a new channel, watched.
        p.watching[slot] = true;
        if self.stopping {
            self.record.connections_dropped += p.take_held().len() as u64;
            return Ok(());
        }
        self.record.connections_rerouted += n;
        if let Some(w) = m.workers.get_mut(slot).and_then(Option::as_mut) {
            w.ready = false;
        }
        self.pipeline_pump(m)
    }
}
