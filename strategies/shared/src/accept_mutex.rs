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

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::time::Duration;

use lab_common::intake::{accept_one, LISTENER};
use lab_common::stats::{LockWord, WorkerCounters};
use lab_common::sys::epoll::{self, poll_fd, ListenerWakeup};
use lab_common::worker::{Accepted, Intake, WorkerEnv};
use mio::event::Event;
use mio::Poll;

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
    listener: OwnedFd,
    env: WorkerEnv,
    delay: Duration,
    /// `ngx_accept_mutex_held`: the listener is in this worker's epoll.
    registered: bool,
    /// The lock is held right now (between trylock and unlock).
    locked: bool,
    stopped: bool,
}

impl AcceptMutexIntake {
    /// Wraps the inherited (non-blocking) listener.
    pub fn new(listener: OwnedFd, env: WorkerEnv, delay: Duration) -> Self {
        AcceptMutexIntake {
            listener,
            env,
            delay,
            registered: false,
            locked: false,
            stopped: false,
        }
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
        if self.stopped {
            return Ok(None);
        }
        if try_lock(self.env.shared.accept_mutex, self.pid()) {
            self.locked = true;
            if !self.registered {
                epoll::add(
                    poll_fd(poll),
                    self.listener.as_fd(),
                    ListenerWakeup::LevelAll,
                    LISTENER,
                )?;
                self.registered = true;
            }
            Ok(None)
        } else {
            if self.registered {
                epoll::delete(poll_fd(poll), self.listener.as_fd())?;
                self.registered = false;
            }
            Ok(Some(self.delay))
        }
    }

    fn on_event(
        &mut self,
        _event: &Event,
        _poll: &Poll,
        out: &mut Vec<Accepted>,
    ) -> io::Result<()> {
        WorkerCounters::bump(&self.env.counters.listener_wakeups);
        accept_one(self.listener.as_fd(), self.env.counters, out)
    }

    fn after_events(&mut self, _poll: &Poll) -> io::Result<()> {
        if std::mem::take(&mut self.locked) {
            unlock(self.env.shared.accept_mutex, self.pid());
        }
        Ok(())
    }

    fn stop(&mut self, poll: &Poll) -> io::Result<()> {
        self.stopped = true;
        if std::mem::take(&mut self.registered) {
            epoll::delete(poll_fd(poll), self.listener.as_fd())?;
        }
        if std::mem::take(&mut self.locked) {
            unlock(self.env.shared.accept_mutex, self.pid());
        }
        Ok(())
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
