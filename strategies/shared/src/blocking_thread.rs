//! `shared:blocking-thread` (formerly `shared:blocking`): each worker blocks
//! in `accept()` on the inherited listener, on an acceptor thread beside its
//! event loop. (Classic pre-fork, one connection per process at a time, is
//! [`crate::prefork`].)
//!
//! A process blocked in `accept()` sleeps on the listener's wait queue as an
//! *exclusive* waiter; the kernel wakes exactly one per connection, the one
//! that has waited longest (FIFO), so connections rotate over the workers
//! (Cloudflare 2017: order 2,1,0,2,1,0).
//!
//! A single-threaded worker blocked in `accept()` could not serve its
//! keep-alive connections meanwhile, so the blocking call runs on an acceptor
//! thread, and hands each connection to the event loop through a channel.
//! The acceptor calls `accept()` only with a permit from the loop, one at a
//! time: the loop gives the next permit once it has taken the last
//! connection, and gives none while the worker is at `--max-conns` (the
//! acceptor waits, and the kernel's queue wakes another worker). A worker
//! whose loop is busy burning CPU therefore stops taking connections too —
//! what a single-threaded pre-fork worker does.
//!
//! Stopping: the acceptor may be blocked in `accept()`, which nothing but a
//! connection or a signal ends. [`Intake::stop`] sets a stop flag, withdraws
//! the permits, and sends the thread `SIGUSR1` (`sys::interrupt`: a handler
//! without `SA_RESTART`, so `accept()` returns `EINTR`) every
//! [`WAKE_EVERY`] until the thread has exited (a signal that lands just
//! before the thread enters `accept()` is lost; the next one is not). A
//! connection the thread accepted during the stop is handed over and served;
//! then the thread's copy of the listener is closed. The master keeps its
//! copy, so the queue stays intact for the other workers.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lab_common::strategy::{Accepted, Intake, WorkerEnv, INTAKE_TOKEN_BASE};
use lab_common::sys::fds::{accept4, AcceptFailure};
use lab_common::sys::interrupt::{install_wake_handler, ThreadHandle};
use mio::event::Event;
use mio::{Poll, Token, Waker};

const WAKER: Token = Token(INTAKE_TOKEN_BASE);

/// How often a stopping worker re-sends the wake signal to its acceptor.
pub const WAKE_EVERY: Duration = Duration::from_millis(2);

/// How long a stopping worker waits for its acceptor before it gives up on
/// it (never seen; said on stderr).
const STOP_PATIENCE: Duration = Duration::from_secs(1);

/// Blocking accept on an acceptor thread.
pub struct BlockingIntake {
    listener: Option<OwnedFd>,
    env: WorkerEnv,
    /// Connections from the acceptor (at most one at a time).
    accepted: Option<Receiver<OwnedFd>>,
    /// Permits: "you may accept one connection".
    permits: Option<SyncSender<()>>,
    /// A permit is out and no connection has come back for it yet.
    permit_out: bool,
    /// At `--max-conns`: no permits.
    paused: bool,
    stop: Arc<AtomicBool>,
    acceptor: Option<(JoinHandle<()>, ThreadHandle)>,
}

impl BlockingIntake {
    /// Wraps the inherited (blocking) listener.
    pub fn new(listener: OwnedFd, env: WorkerEnv) -> Self {
        BlockingIntake {
            listener: Some(listener),
            env,
            accepted: None,
            permits: None,
            permit_out: false,
            paused: false,
            stop: Arc::new(AtomicBool::new(false)),
            acceptor: None,
        }
    }

    fn grant_permit(&mut self) {
        if self.paused || self.permit_out {
            return;
        }
        if let Some(p) = self.permits.as_ref() {
            // Capacity 1 and no permit out: never full.
            if p.try_send(()).is_ok() {
                self.permit_out = true;
            }
        }
    }
}

impl Intake for BlockingIntake {
    fn register(&mut self, poll: &Poll, control: UnixStream) -> io::Result<Option<UnixStream>> {
        let listener = self
            .listener
            .take()
            .ok_or_else(|| io::Error::other("registered twice"))?;
        install_wake_handler()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        // The connection goes into the channel first and the loop is woken
        // after, so a wakeup never finds the channel empty by a race.
        let (conn_tx, conn_rx) = sync_channel::<OwnedFd>(1);
        let (permit_tx, permit_rx) = sync_channel::<()>(1);
        self.accepted = Some(conn_rx);
        self.permits = Some(permit_tx);
        self.grant_permit();
        let pid = self.env.pid;
        let stop = self.stop.clone();
        let (started_tx, started_rx) = sync_channel::<ThreadHandle>(1);
        let join = std::thread::Builder::new()
            .name("acceptor".into())
            .spawn(move || {
                // Tell register() we are about to block in accept(), so the
                // worker says "ready" only then.
                let _ = started_tx.send(ThreadHandle::current());
                // One connection per permit; no permit (the sender dropped):
                // the worker is stopping.
                while permit_rx.recv().is_ok() {
                    loop {
                        if stop.load(SeqCst) {
                            return;
                        }
                        match accept4(listener.as_fd()) {
                            Ok(fd) => {
                                // A failed send or wake means the loop is
                                // stopping; it drains the channel itself.
                                if conn_tx.send(fd).is_err() || waker.wake().is_err() {
                                    return;
                                }
                                break;
                            }
                            // EINTR (the stop's signal) lands here too.
                            Err(e) => match AcceptFailure::of(&e) {
                                AcceptFailure::Retry | AcceptFailure::Empty => {}
                                _ => {
                                    eprintln!("lab-server: worker {pid}: accept: {e}");
                                    std::thread::sleep(Duration::from_millis(10));
                                }
                            },
                        }
                    }
                }
            })?;
        let handle = started_rx
            .recv()
            .map_err(|_| io::Error::other("the acceptor thread died at start"))?;
        self.acceptor = Some((join, handle));
        Ok(Some(control))
    }

    fn before_poll(&mut self, _poll: &Poll) -> io::Result<Option<Duration>> {
        self.grant_permit();
        Ok(None)
    }

    fn on_event(
        &mut self,
        _event: &Event,
        _poll: &Poll,
        out: &mut Vec<Accepted>,
    ) -> io::Result<()> {
        let Some(rx) = self.accepted.as_ref() else {
            return Ok(());
        };
        while let Ok(fd) = rx.try_recv() {
            out.push(Accepted { fd, tag: None });
            self.permit_out = false;
        }
        Ok(())
    }

    fn set_paused(&mut self, _poll: &Poll, paused: bool) -> io::Result<()> {
        self.paused = paused;
        Ok(())
    }

    fn stop(&mut self, _poll: &Poll, out: &mut Vec<Accepted>) -> io::Result<()> {
        let Some((join, thread)) = self.acceptor.take() else {
            return Ok(());
        };
        self.stop.store(true, SeqCst);
        self.permits = None; // a thread waiting for a permit returns
        let give_up = Instant::now() + STOP_PATIENCE;
        while !join.is_finished() {
            if Instant::now() > give_up {
                eprintln!(
                    "lab-server: worker {}: the acceptor thread did not stop within {STOP_PATIENCE:?}",
                    self.env.pid
                );
                break;
            }
            // Not joined yet, so the handle names a live thread.
            let _ = thread.wake();
            std::thread::sleep(WAKE_EVERY);
        }
        if join.is_finished() {
            let _ = join.join(); // the thread's copy of the listener is closed
        }
        // A connection accepted during the stop is served, not lost.
        if let Some(rx) = self.accepted.as_ref() {
            while let Ok(fd) = rx.try_recv() {
                out.push(Accepted { fd, tag: None });
            }
        }
        Ok(())
    }

    fn quiesced(&self) -> bool {
        self.acceptor.is_none()
    }
}
