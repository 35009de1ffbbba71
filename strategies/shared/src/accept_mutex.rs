//! `shared:accept-mutex`: nginx's `accept_mutex on`.
//!
//! A lock word in shared memory holds the pid of the worker that may accept.
//! Each loop iteration a worker tries the lock (`ngx_trylock_accept_mutex`):
//! the winner adds the listener to its epoll if it is not there yet and
//! sleeps in `epoll_wait` holding the lock; a loser removes the listener from
//! its epoll if it had it, and caps its `epoll_wait` at `accept_mutex_delay`
//! (nginx's default: 500 ms) before it tries again. After a wakeup the holder
//! handles its accept events first, then releases the lock, then serves its
//! connections (`ngx_process_events_and_timers`). The listener registration
//! is level-triggered without `EPOLLEXCLUSIVE` (`ngx_enable_accept_events`),
//! and the worker accepts once per event (`multi_accept off`).
//!
//! If a holder dies, the master clears the lock when it reaps it, as nginx's
//! master does with `ngx_shmtx_force_unlock`.
//!
//! Load back-off, as nginx 1.22.1 (`ngx_process_events_and_timers`): after
//! each successful accept the worker computes `ngx_accept_disabled`
//! ([`crate::nginx::accept_disabled`]: positive once more than 7/8 of
//! `--max-conns` are open). While it is positive, each loop turn counts it
//! down by one instead of trying the lock (`accept_disabled_turns`), so a
//! worker with many connections lets the others take the lock and the new
//! connections. Like nginx, it does not take the listener out of its epoll
//! then: a worker that held the lock on its last try keeps the listener
//! registered (`ngx_accept_mutex_held` is only cleared by a failed
//! `ngx_trylock_accept_mutex`) and may still accept, beside the new holder,
//! until a try fails.
//!
//! At `--max-conns` the worker does not try the lock, releases it if held
//! and takes the listener out of its epoll, so the others accept; the same
//! for [`RESOURCE_BACKOFF`] after `accept4` ran out of descriptors. Stopping
//! takes the listener out of the epoll, releases the lock if held, and
//! closes the worker's copy of the listener (the master keeps its copy, so
//! the queue stays intact for the others).
//!
//! Known differences from nginx 1.22.1: `ngx_accept_disabled` counts client
//! connections against `--max-conns` (nginx counts its listener and master
//! channel as used too, see [`crate::nginx`]); nginx has no pause at
//! `worker_connections` (it accepts and closes what it has no connection
//! for); after `EMFILE` nginx sets `ngx_accept_disabled = 1` and drops the
//! lock, the twin leaves the lock alone for [`RESOURCE_BACKOFF`]; nginx
//! posts a lock holder's accept events and handles them before the other
//! events, as the twin does, but in a turn without the lock (backing off)
//! it accepts in the order `epoll_wait` returned the events, where the twin
//! still takes the listener's first.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::time::{Duration, Instant};

use lab_common::intake::{accept_one, LISTENER, RESOURCE_BACKOFF};
use lab_common::stats::{LockWord, WorkerCounters};
use lab_common::strategy::{Accepted, Intake, WorkerEnv};
use lab_common::sys::epoll::{self, poll_fd, ListenerWakeup};
use lab_common::sys::fds::AcceptFailure;
use mio::event::Event;
use mio::Poll;

use crate::nginx;

/// Tries to take the lock for `pid` (`ngx_shmtx_trylock`: a plain load first,
/// so losers do not bounce the cache line with failed CAS writes).
pub fn try_lock(word: &LockWord, pid: i32) -> bool {
    word.0.load(Relaxed) == 0 && word.0.compare_exchange(0, pid, AcqRel, Relaxed).is_ok()
}

/// Releases the lock if `pid` holds it.
pub fn unlock(word: &LockWord, pid: i32) {
    let _ = word.0.compare_exchange(pid, 0, AcqRel, Relaxed);
}

/// Who holds the lock (0: nobody).
pub fn holder(word: &LockWord) -> i32 {
    word.0.load(Acquire)
}

/// The accept-mutex intake.
pub struct AcceptMutexIntake {
    /// `None` once stopped (the descriptor is closed).
    listener: Option<OwnedFd>,
    env: WorkerEnv,
    delay: Duration,
    /// `ngx_accept_mutex_held`: the listener is in this worker's epoll.
    registered: bool,
    /// The lock is held right now (between trylock and unlock).
    locked: bool,
    /// At `--max-conns`.
    paused: bool,
    /// Out of descriptors: leave the lock alone until then.
    backoff_until: Option<Instant>,
    /// nginx's `ngx_accept_disabled`: set after each accept, counted down
    /// once per loop turn while positive (no try of the lock meanwhile).
    accept_disabled: i64,
}

impl AcceptMutexIntake {
    /// Wraps the inherited (non-blocking) listener.
    pub fn new(listener: OwnedFd, env: WorkerEnv, delay: Duration) -> Self {
        AcceptMutexIntake {
            listener: Some(listener),
            env,
            delay,
            registered: false,
            locked: false,
            paused: false,
            backoff_until: None,
            accept_disabled: 0,
        }
    }

    /// Takes the listener out of the epoll and releases the lock if held.
    fn step_back(&mut self, poll: &Poll) -> io::Result<()> {
        if std::mem::take(&mut self.registered) {
            if let Some(l) = self.listener.as_ref() {
                epoll::delete(poll_fd(poll), l.as_fd())?;
            }
        }
        if std::mem::take(&mut self.locked) {
            unlock(self.env.shared.accept_mutex, self.pid());
        }
        Ok(())
    }

    fn pid(&self) -> i32 {
        self.env.pid as i32
    }
}

impl Intake for AcceptMutexIntake {
    fn register(&mut self, _poll: &Poll, control: UnixStream) -> io::Result<Option<UnixStream>> {
        Ok(Some(control)) // the listener is added only while holding the lock
    }

    fn before_poll(&mut self, poll: &Poll) -> io::Result<Option<Duration>> {
        let Some(listener) = self.listener.as_ref() else {
            return Ok(None);
        };
        // nginx counts down every turn, whatever else holds the worker back.
        let disabled = self.accept_disabled > 0;
        if disabled {
            self.accept_disabled -= 1;
            WorkerCounters::bump(&self.env.counters.accept_disabled_turns);
        }
        if self.paused {
            return Ok(None);
        }
        if let Some(until) = self.backoff_until {
            let now = Instant::now();
            if now < until {
                return Ok(Some(until - now));
            }
            self.backoff_until = None;
        }
        if disabled {
            return Ok(None); // no try, the registration left as it is
        }
        // Still ours if the last wait was interrupted (EINTR skips
        // `after_events`): our own pid in the word would fail the try and
        // take the listener out, which nginx never does (it releases the
        // lock after every turn, interrupted or not).
        if self.locked || try_lock(self.env.shared.accept_mutex, self.pid()) {
            self.locked = true;
            if !self.registered {
                epoll::add(
                    poll_fd(poll),
                    listener.as_fd(),
                    ListenerWakeup::LevelAll,
                    LISTENER,
                )?;
                self.registered = true;
            }
            Ok(None)
        } else {
            if self.registered {
                epoll::delete(poll_fd(poll), listener.as_fd())?;
                self.registered = false;
            }
            Ok(Some(self.delay))
        }
    }

    fn on_event(&mut self, _event: &Event, poll: &Poll, out: &mut Vec<Accepted>) -> io::Result<()> {
        let Some(listener) = self.listener.as_ref().filter(|_| self.registered) else {
            return Ok(());
        };
        WorkerCounters::bump(&self.env.counters.listener_wakeups);
        let before = out.len();
        match accept_one(listener.as_fd(), self.env.counters, out)? {
            None => {
                // Open before this accept: the loop's count plus what this
                // wakeup already handed over.
                let open = self.env.counters.open_connections.load(Relaxed) as usize + before;
                self.accept_disabled = nginx::accept_disabled(self.env.max_conns.max(1), open);
            }
            Some(AcceptFailure::Resources) => {
                self.backoff_until = Some(Instant::now() + RESOURCE_BACKOFF);
                self.step_back(poll)?;
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn after_events(&mut self, _poll: &Poll) -> io::Result<()> {
        if std::mem::take(&mut self.locked) {
            unlock(self.env.shared.accept_mutex, self.pid());
        }
        Ok(())
    }

    fn set_paused(&mut self, poll: &Poll, paused: bool) -> io::Result<()> {
        self.paused = paused;
        if paused {
            self.step_back(poll)?;
        }
        Ok(())
    }

    fn stop(&mut self, poll: &Poll, _out: &mut Vec<Accepted>) -> io::Result<()> {
        self.step_back(poll)?;
        self.listener = None;
        Ok(())
    }

    fn quiesced(&self) -> bool {
        self.listener.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI32;

    #[test]
    fn lock_is_exclusive_and_only_the_holder_unlocks() {
        let word = LockWord(AtomicI32::new(0));
        assert!(try_lock(&word, 10));
        assert!(!try_lock(&word, 11));
        unlock(&word, 11);
        assert_eq!(holder(&word), 10, "a non-holder cannot release it");
        unlock(&word, 10);
        assert!(try_lock(&word, 11));
    }
}
