//! The master side: listen, accept, pick a worker, pass the descriptor.
//!
//! # A worker that dies (crash, SIGKILL)
//!
//! Connections the dead worker had taken and was serving die with it in
//! every mode (their clients see a reset or a close without a response).
//! What differs is a connection on its way:
//! - Node RR (acks): the master keeps its copy of a descriptor until the
//!   worker acks it, so the one unacknowledged connection of a dead worker is
//!   routed to another worker (`connections_rerouted`); so is anything still
//!   pending in the master. An accepted connection is lost only if the
//!   worker had acked it.
//! - rotate, least-conn (no acks): the master closes its copy right after
//!   `sendmsg`. Descriptors already sent but not yet read from the dead
//!   worker's channel are closed by the kernel with the channel, and those
//!   clients are lost; only the master's own backlog for that worker (sends
//!   that found the channel full) is re-routed.
//!
//! # Rolling restart
//!
//! [`Strategy::on_retire`] runs before the retiring worker gets its SIGTERM:
//! Node RR takes it out of the free list (an ack that comes back does not
//! put it back), rotate and least-conn stop picking it (it leaves
//! [`Master::ready_slots`]) and send its backlog to the others. Nothing more
//! is sent to it, so what is in its channel is all it will get: it refuses
//! (acks) or serves (no acks) that, finishes its connections and exits.
//! While no worker can take connections (a one-worker server between the
//! old worker's exit and the replacement's `Ready`) they wait in the master.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use lab_common::channel::Frame;
use lab_common::listen::{listen, local_addr, ListenOptions};
use lab_common::stats::{MasterRecord, Shared};
use lab_common::strategy::{Master, ServerConfig, Strategy, WorkerEnv};
use lab_common::sys::fds::{accept4, AcceptFailure};
use lab_common::worker;
use mio::event::Event;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::unistd::Pid;
use std::os::fd::AsRawFd;

use crate::intake::ChannelIntake;
use crate::scheduler::{LeastConnections, NodeRoundRobin, Rotation};
use crate::Policy;

const LISTENER: Token = Token(1);

/// A connection the master holds.
struct Pending {
    seq: u32,
    fd: OwnedFd,
}

/// The master-pass strategy.
pub struct MasterPass {
    policy: Policy,
    listener: Option<OwnedFd>,
    next_seq: u32,
    /// NodeRr: pending connections and free workers.
    rr: NodeRoundRobin<Pending>,
    /// NodeRr: the one unacknowledged connection of each worker; the master
    /// keeps its copy of the descriptor until the ack.
    unacked: Vec<Option<Pending>>,
    rotation: Rotation,
    least: LeastConnections,
    /// Rotate/LeastConn: connections picked for a worker whose channel was
    /// full, sent when it drains.
    backlog: Vec<VecDeque<Pending>>,
    /// NodeRr: workers whose channel was full at the last send; they return
    /// to `free` when it drains.
    blocked: Vec<bool>,
    /// Rotate/LeastConn: connections that came while no worker could take
    /// one, sent when one is ready.
    waiting: VecDeque<Pending>,
    record: MasterRecord,
    stopping: bool,
}

impl MasterPass {
    /// A master-pass strategy with the given worker-picking policy.
    pub fn new(policy: Policy) -> Self {
        MasterPass {
            policy,
            listener: None,
            next_seq: 0,
            rr: NodeRoundRobin::default(),
            unacked: Vec::new(),
            rotation: Rotation::default(),
            least: LeastConnections::default(),
            backlog: Vec::new(),
            blocked: Vec::new(),
            waiting: VecDeque::new(),
            record: MasterRecord::default(),
            stopping: false,
        }
    }

    /// Accepts until the queue is empty (libuv's `uv__server_io` loop).
    fn accept_all(&mut self) -> io::Result<Vec<Pending>> {
        let mut out = Vec::new();
        let Some(listener) = self.listener.as_ref() else {
            return Ok(out);
        };
        loop {
            match accept4(listener.as_fd()) {
                Ok(fd) => {
                    self.record.connections_accepted += 1;
                    let seq = self.next_seq;
                    self.next_seq = self.next_seq.wrapping_add(1);
                    out.push(Pending { seq, fd });
                }
                Err(e) => match AcceptFailure::of(&e) {
                    AcceptFailure::Empty => return Ok(out),
                    AcceptFailure::Retry => {}
                    AcceptFailure::Resources => {
                        // Out of descriptors: leave the rest in the kernel
                        // queue; the registration is edge-triggered, so the
                        // next connection's event retries them.
                        eprintln!("lab-server: master: accept: {e}");
                        return Ok(out);
                    }
                    AcceptFailure::Fatal => return Err(e),
                },
            }
        }
    }

    /// NodeRr: hand pending connections to free workers.
    fn dispatch_rr(&mut self, m: &mut Master<'_>) -> io::Result<()> {
        while let Some((slot, conn)) = self.rr.assign() {
            match m.send_fd(slot, Frame::NewConn { seq: conn.seq }, conn.fd.as_fd()) {
                Ok(true) => {
                    self.record.connections_passed += 1;
                    if let Some(old) = self.unacked[slot].replace(conn) {
                        // Never expected (a free worker has nothing unacked);
                        // dropping it would reset its client: re-route it.
                        eprintln!(
                            "lab-server: master: slot {slot} still had connection {} unacknowledged; re-routing it",
                            old.seq
                        );
                        self.record.connections_rerouted += 1;
                        self.rr.push(old);
                    }
                }
                // Full channel: the worker is not reading. Keep it out of
                // `free` and retry this connection with the next worker.
                Ok(false) => {
                    self.blocked[slot] = true;
                    self.rr.unget(conn);
                }
                Err(_) => {
                    // Dead worker: on_worker_gone will clean up; re-route.
                    self.rr.unget(conn);
                }
            }
        }
        Ok(())
    }

    /// Rotate/LeastConn: pick a worker for `conn` and send (or queue) it.
    fn dispatch_blind(&mut self, conn: Pending, m: &mut Master<'_>) -> io::Result<()> {
        let ready: Vec<usize> = m.ready_slots().collect();
        let slot = match self.policy {
            Policy::Rotate => self.rotation.pick(&ready),
            _ => self.least.pick(&ready),
        };
        let Some(slot) = slot else {
            // No worker can take it (all are being replaced): hold it until
            // one is ready.
            self.waiting.push_back(conn);
            return Ok(());
        };
        if self.policy == Policy::LeastConn {
            self.least.opened(slot);
        }
        self.backlog[slot].push_back(conn);
        self.flush_backlog(slot, m)
    }

    /// NodeRr: `slot` may get a connection again, if it can take one.
    fn make_free(&mut self, slot: usize, m: &Master<'_>) {
        if m.can_take(slot) {
            self.rr.free(slot);
        }
    }

    fn flush_backlog(&mut self, slot: usize, m: &mut Master<'_>) -> io::Result<()> {
        while let Some(conn) = self.backlog[slot].front() {
            match m.send_fd(slot, Frame::NewConn { seq: conn.seq }, conn.fd.as_fd()) {
                Ok(true) => {
                    self.record.connections_passed += 1;
                    // No ack in these modes: close our copy right away.
                    self.backlog[slot].pop_front();
                }
                Ok(false) => return Ok(()),
                Err(_) => return Ok(()), // worker gone; on_worker_gone re-routes
            }
        }
        Ok(())
    }
}

impl Strategy for MasterPass {
    fn prepare(&mut self, config: &ServerConfig, _shared: Shared) -> io::Result<SocketAddr> {
        // The master alone listens. Non-blocking: it accepts in its own loop.
        let socket = listen(
            config.listen,
            ListenOptions {
                reuse_port: false,
                nonblocking: true,
                backlog: config.backlog,
            },
        )?;
        let addr = local_addr(&socket)?;
        self.listener = Some(socket.into());
        self.unacked = (0..config.workers).map(|_| None).collect();
        self.backlog = (0..config.workers).map(|_| VecDeque::new()).collect();
        self.blocked = vec![false; config.workers];
        Ok(addr)
    }

    fn worker_fds(&self) -> Vec<RawFd> {
        Vec::new() // workers get connections only through their channel
    }

    fn worker_main(&mut self, env: WorkerEnv, control: UnixStream) -> io::Result<()> {
        let intake = ChannelIntake::new(
            env,
            self.policy == Policy::NodeRr,
            self.policy == Policy::LeastConn,
        );
        worker::run(env, intake, control)
    }

    fn master_register(&mut self, registry: &Registry) -> io::Result<()> {
        if let Some(l) = self.listener.as_ref() {
            registry.register(&mut SourceFd(&l.as_raw_fd()), LISTENER, Interest::READABLE)?;
        }
        Ok(())
    }

    fn master_event(&mut self, event: &Event, m: &mut Master<'_>) -> io::Result<()> {
        if event.token() != LISTENER || self.stopping {
            return Ok(());
        }
        let conns = self.accept_all()?;
        match self.policy {
            Policy::NodeRr => {
                for c in conns {
                    self.rr.push(c);
                }
                self.dispatch_rr(m)
            }
            _ => {
                for c in conns {
                    self.dispatch_blind(c, m)?;
                }
                Ok(())
            }
        }
    }

    fn on_ready(&mut self, slot: usize, m: &mut Master<'_>) -> io::Result<()> {
        if self.policy == Policy::NodeRr {
            self.make_free(slot, m);
            self.dispatch_rr(m)?;
        } else {
            for conn in std::mem::take(&mut self.waiting) {
                self.dispatch_blind(conn, m)?;
            }
        }
        Ok(())
    }

    fn on_retire(&mut self, slot: usize, m: &mut Master<'_>) -> io::Result<()> {
        // Before the worker is told to stop: nothing new goes to it.
        self.rr.remove(slot);
        self.blocked[slot] = false;
        let queued: Vec<Pending> = self.backlog[slot].drain(..).collect();
        if self.policy == Policy::LeastConn {
            for _ in &queued {
                self.least.closed(slot);
            }
        }
        for conn in queued {
            self.dispatch_blind(conn, m)?;
        }
        Ok(())
    }

    fn on_frame(&mut self, slot: usize, frame: Frame, m: &mut Master<'_>) -> io::Result<()> {
        match frame {
            Frame::Ack { seq, accepted } if self.policy == Policy::NodeRr => {
                let Some(conn) = self.unacked[slot].take_if(|c| c.seq == seq) else {
                    return Ok(()); // an ack for something we no longer hold
                };
                if accepted {
                    drop(conn); // the master's copy closes after the ack
                    self.make_free(slot, m);
                } else {
                    // The worker is shutting down or at its --max-conns:
                    // Node re-distributes the handle; so do we, and the
                    // worker stays out of `free` (until `Resume`).
                    self.record.connections_rerouted += 1;
                    self.rr.push(conn);
                }
                self.dispatch_rr(m)
            }
            Frame::Resume if self.policy == Policy::NodeRr => {
                self.make_free(slot, m);
                self.dispatch_rr(m)
            }
            Frame::Closed { .. } if self.policy == Policy::LeastConn => {
                self.least.closed(slot);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn on_writable(&mut self, slot: usize, m: &mut Master<'_>) -> io::Result<()> {
        match self.policy {
            Policy::NodeRr => {
                if std::mem::take(&mut self.blocked[slot]) {
                    self.make_free(slot, m);
                }
                self.dispatch_rr(m)
            }
            _ => self.flush_backlog(slot, m),
        }
    }

    fn on_worker_gone(&mut self, slot: usize, _pid: Pid, m: &mut Master<'_>) -> io::Result<()> {
        self.rr.remove(slot);
        self.least.reset(slot);
        self.blocked[slot] = false;
        // The master still holds its copy of an unacknowledged connection:
        // the client is not lost, it goes to another worker.
        if let Some(conn) = self.unacked.get_mut(slot).and_then(Option::take) {
            self.record.connections_rerouted += 1;
            self.rr.push(conn);
        }
        let queued: Vec<Pending> = self
            .backlog
            .get_mut(slot)
            .map(|b| b.drain(..).collect())
            .unwrap_or_default();
        if self.stopping {
            return Ok(());
        }
        // The slot is empty now; make sure the rest of the logic sees that.
        if let Some(w) = m.workers.get_mut(slot).and_then(Option::as_mut) {
            w.ready = false;
        }
        for conn in queued {
            self.record.connections_rerouted += 1;
            self.dispatch_blind(conn, m)?;
        }
        if self.policy == Policy::NodeRr {
            self.dispatch_rr(m)?;
        }
        Ok(())
    }

    fn stop_master(&mut self, registry: &Registry) -> io::Result<()> {
        self.stopping = true;
        if let Some(l) = self.listener.take() {
            let _ = registry.deregister(&mut SourceFd(&l.as_raw_fd()));
        }
        self.record.connections_dropped += self.rr.drain().count() as u64;
        self.record.connections_dropped += std::mem::take(&mut self.waiting).len() as u64;
        Ok(())
    }

    fn master_record(&self) -> MasterRecord {
        self.record.clone()
    }
}
