//! `shared:blocking`: each worker blocks in `accept()` on the inherited
//! listener.
//!
//! A process blocked in `accept()` sleeps on the listener's wait queue as an
//! *exclusive* waiter; the kernel wakes exactly one per connection, the one
//! that has waited longest (FIFO), so connections rotate over the workers
//! (Cloudflare 2017: order 2,1,0,2,1,0).
//!
//! A single-threaded worker blocked in `accept()` could not serve its
//! keep-alive connections meanwhile, so the blocking call runs on an acceptor
//! thread, and hands each connection to the event loop through a rendezvous
//! channel: it calls `accept()` again only after the loop has taken the last
//! one. A worker whose loop is busy burning CPU therefore stops taking
//! connections, and the kernel's queue wakes another worker — what a
//! single-threaded pre-fork worker does.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use lab_common::sys::fds::{accept4, AcceptFailure};
use lab_common::worker::{Accepted, Intake, WorkerEnv, INTAKE_TOKEN_BASE};
use mio::event::Event;
use mio::{Poll, Token, Waker};

const WAKER: Token = Token(INTAKE_TOKEN_BASE);

/// Blocking accept on an acceptor thread.
pub struct BlockingIntake {
    listener: Option<OwnedFd>,
    env: WorkerEnv,
    /// Connections from the acceptor (at most one at a time).
    accepted: Option<Receiver<OwnedFd>>,
    /// "Taken": lets the acceptor call `accept()` again.
    taken: Option<SyncSender<()>>,
}

impl BlockingIntake {
    /// Wraps the inherited (blocking) listener.
    pub fn new(listener: OwnedFd, env: WorkerEnv) -> Self {
        BlockingIntake {
            listener: Some(listener),
            env,
            accepted: None,
            taken: None,
        }
    }
}

impl Intake for BlockingIntake {
    fn register(&mut self, poll: &Poll, control: UnixStream) -> io::Result<Option<UnixStream>> {
        let listener = self
            .listener
            .take()
            .ok_or_else(|| io::Error::other("registered twice"))?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        // The connection goes into the channel first and the loop is woken
        // after, so a wakeup never finds the channel empty by a race; then the
        // acceptor waits for "taken" before it accepts the next one.
        let (conn_tx, conn_rx) = sync_channel::<OwnedFd>(1);
        let (taken_tx, taken_rx) = sync_channel::<()>(1);
        self.accepted = Some(conn_rx);
        self.taken = Some(taken_tx);
        let pid = self.env.pid;
        let (started_tx, started_rx) = sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("acceptor".into())
            .spawn(move || loop {
                // The first time round: tell register() we are about to block
                // in accept(), so the worker says "ready" only then.
                let _ = started_tx.try_send(());
                match accept4(listener.as_fd()) {
                    Ok(fd) => {
                        if conn_tx.send(fd).is_err()
                            || waker.wake().is_err()
                            || taken_rx.recv().is_err()
                        {
                            return; // the loop is gone
                        }
                    }
                    Err(e) if AcceptFailure::of(&e) == AcceptFailure::Retry => {}
                    Err(e) => {
                        eprintln!("lab-server: worker {pid}: accept: {e}");
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                }
            })?;
        started_rx
            .recv()
            .map_err(|_| io::Error::other("the acceptor thread died at start"))?;
        Ok(Some(control))
    }

    fn on_event(
        &mut self,
        _event: &Event,
        _poll: &Poll,
        out: &mut Vec<Accepted>,
    ) -> io::Result<()> {
        let (Some(rx), Some(taken)) = (self.accepted.as_ref(), self.taken.as_ref()) else {
            return Ok(());
        };
        while let Ok(fd) = rx.try_recv() {
            out.push(Accepted { fd, tag: None });
            // Capacity 1 and one connection in flight: never blocks.
            let _ = taken.try_send(());
        }
        Ok(())
    }
}
