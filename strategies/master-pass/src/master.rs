//! The master side: listen, accept, pick a worker, pass the descriptor.
//!
//! # Accepting
//!
//! - `master-pass` (Node-exact): the listener is registered level-triggered
//!   in the master's own epoll instance (mio registers edge-triggered only,
//!   so it is added with `lab_common::sys::epoll::add`, as `shared:epoll`
//!   adds its listener), and each wakeup accepts exactly one connection:
//!   libuv >= 1.45's `uv__server_io` (libuv/libuv#3696). A queue with more
//!   connections reports the listener again at the next `epoll_wait`, so the
//!   master's loop is `epoll_wait -> accept4 -> (sendmsg, acks) -> epoll_wait
//!   -> accept4`, and no accept finds the queue empty (`accept_eagain` 0).
//!   A level-triggered inner epoll whose descriptor sits edge-triggered in
//!   mio's epoll would not do: on Linux 6.18 the outer registration does not
//!   fire again while the inner one stays ready, not even after a wait on
//!   the inner one.
//! - `master-pass:reroute`, rotate, least-conn: edge-triggered, accept until
//!   `EAGAIN` on each wakeup (libuv <= 1.44): one `EAGAIN` per wakeup.
//! - `master-pass:pipelined`: edge-triggered, accept until `EAGAIN`, a full
//!   batch, or no worker with credit (see the `pipelined` module).
//!
//! # A worker that dies (crash, SIGKILL)
//!
//! Connections the dead worker had taken and was serving die with it in
//! every mode (their clients see a reset or a close without a response).
//! What differs is a connection on its way:
//! - Node RR exact (`master-pass`): the descriptor in flight to the dead
//!   worker (sent, not yet acknowledged) is not re-routed, as in Node, where
//!   `RoundRobinHandle.remove` forgets the worker and the reply that would
//!   have closed or re-distributed the handle never comes. The master closes
//!   its copy when it learns the worker is gone (`connections_lost_in_flight`),
//!   so that client sees its connection closed at once (Node keeps its copy
//!   open, and that client waits until it gives up). Connections still
//!   pending in the master go to the other workers, as in Node.
//! - Node RR with re-routing (`master-pass:reroute`, an improvement over
//!   Node): the master keeps its copy of a descriptor until the worker acks
//!   it, so the one unacknowledged connection of a dead worker is routed to
//!   another worker (`connections_rerouted`); so is anything still pending
//!   in the master. An accepted connection is lost only if the worker had
//!   acked it.
//! - rotate, least-conn (no acks): the master closes its copy right after
//!   `sendmsg`. Descriptors already sent but not yet read from the dead
//!   worker's channel are closed by the kernel with the channel, and those
//!   clients are lost; only the master's own backlog for that worker (sends
//!   that found the channel full) is re-routed.
//! - pipelined: as rotate, but the descriptors in the dead worker's channel
//!   are counted (`connections_lost_in_flight`) from what the master sent
//!   and what the worker's shared counters say it received.
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
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use lab_common::channel::Frame;
use lab_common::listen::{listen, local_addr, ListenOptions};
use lab_common::stats::{MasterRecord, Shared};
use lab_common::strategy::{Master, ServerConfig, Strategy, WorkerEnv};
use lab_common::sys::epoll::{self, ListenerWakeup};
use lab_common::sys::fds::{accept4, AcceptFailure};
use lab_common::worker;
use mio::event::Event;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use nix::unistd::Pid;
use std::os::fd::AsRawFd;

mod pipelined;

use crate::intake::{ChannelIntake, Replies};
use crate::scheduler::{LeastConnections, NodeRoundRobin, Rotation};
use crate::Policy;

const LISTENER: Token = Token(1);

/// How the listener sits in the master's epoll instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Registration {
    /// Not registered (before `master_register`, after `stop_master`).
    Absent,
    /// Level-triggered (Node-exact: one accept per wakeup).
    Level,
    /// Edge-triggered through mio (accept until `EAGAIN`).
    Edge,
}

impl Registration {
    /// Puts `listener` in the registry's epoll instance as `to` says,
    /// taking out a registration `from`.
    fn change(
        from: Registration,
        to: Registration,
        registry: &Registry,
        listener: BorrowedFd<'_>,
    ) -> io::Result<()> {
        let raw = listener.as_raw_fd();
        match from {
            Registration::Absent => {}
            Registration::Level => epoll::delete(registry.as_fd(), listener)?,
            Registration::Edge => registry.deregister(&mut SourceFd(&raw))?,
        }
        match to {
            Registration::Absent => {}
            Registration::Level => epoll::add(
                registry.as_fd(),
                listener,
                ListenerWakeup::LevelAll,
                LISTENER.0,
            )?,
            Registration::Edge => {
                registry.register(&mut SourceFd(&raw), LISTENER, Interest::READABLE)?
            }
        }
        Ok(())
    }
}

/// A connection the master holds.
pub(crate) struct Pending {
    seq: u32,
    fd: OwnedFd,
}

/// The master-pass strategy.
pub struct MasterPass {
    policy: Policy,
    listener: Option<OwnedFd>,
    registration: Registration,
    /// Node-exact: the last accept failed for lack of descriptors (say so
    /// once, not on every turn of the loop).
    out_of_resources: bool,
    next_seq: u32,
    /// With acks (Node RR): pending connections and free workers.
    rr: NodeRoundRobin<Pending>,
    /// With acks (Node RR): the one unacknowledged connection of each worker; the master
    /// keeps its copy of the descriptor until the ack.
    unacked: Vec<Option<Pending>>,
    rotation: Rotation,
    least: LeastConnections,
    /// Rotate/LeastConn: connections picked for a worker whose channel was
    /// full, sent when it drains.
    backlog: Vec<VecDeque<Pending>>,
    /// With acks (Node RR): workers whose channel was full at the last send; they return
    /// to `free` when it drains.
    blocked: Vec<bool>,
    /// Rotate/LeastConn: connections that came while no worker could take
    /// one, sent when one is ready.
    waiting: VecDeque<Pending>,
    /// `master-pass:pipelined`'s state (`None` for the other policies).
    pipeline: Option<pipelined::Pipeline>,
    record: MasterRecord,
    stopping: bool,
}

impl MasterPass {
    /// A master-pass strategy with the given worker-picking policy.
    pub fn new(policy: Policy) -> Self {
        MasterPass {
            policy,
            listener: None,
            registration: Registration::Absent,
            out_of_resources: false,
            next_seq: 0,
            rr: NodeRoundRobin::default(),
            unacked: Vec::new(),
            rotation: Rotation::default(),
            least: LeastConnections::default(),
            backlog: Vec::new(),
            blocked: Vec::new(),
            waiting: VecDeque::new(),
            pipeline: None,
            record: MasterRecord::default(),
            stopping: false,
        }
    }

    fn pending(&mut self, fd: OwnedFd) -> Pending {
        self.record.connections_accepted += 1;
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        Pending { seq, fd }
    }

    /// Node-exact: accepts one connection (libuv >= 1.45 `uv__server_io`);
    /// the level-triggered registration brings the master back for the next
    /// one after a turn of its loop.
    fn accept_one(&mut self) -> io::Result<Option<Pending>> {
        let Some(listener) = self.listener.as_ref() else {
            return Ok(None);
        };
        loop {
            match accept4(listener.as_fd()) {
                Ok(fd) => {
                    self.out_of_resources = false;
                    return Ok(Some(self.pending(fd)));
                }
                Err(e) => match AcceptFailure::of(&e) {
                    AcceptFailure::Empty => {
                        // Not expected level-triggered (only the master
                        // accepts): counted, so a test would see it.
                        self.record.accept_eagain += 1;
                        return Ok(None);
                    }
                    // libuv retries ECONNABORTED at once, too.
                    AcceptFailure::Retry => {}
                    AcceptFailure::Resources => {
                        // The connection stays queued and the listener stays
                        // ready: the loop comes back for it at every turn
                        // (handling every other event in between) until a
                        // descriptor frees. libuv's emfile trick would
                        // accept and close the queued connections instead.
                        if !std::mem::replace(&mut self.out_of_resources, true) {
                            eprintln!("lab-server: master: accept: {e}; retrying at every turn of the loop");
                        }
                        return Ok(None);
                    }
                    AcceptFailure::Fatal => return Err(e),
                },
            }
        }
    }

    /// Accepts until the queue is empty (libuv <= 1.44's `uv__server_io`
    /// loop).
    fn accept_all(&mut self) -> io::Result<Vec<Pending>> {
        let mut out = Vec::new();
        let Some(listener) = self.listener.as_ref() else {
            return Ok(Vec::new());
        };
        loop {
            match accept4(listener.as_fd()) {
                Ok(fd) => out.push(fd),
                Err(e) => match AcceptFailure::of(&e) {
                    AcceptFailure::Empty => {
                        self.record.accept_eagain += 1;
                        break;
                    }
                    AcceptFailure::Retry => {}
                    AcceptFailure::Resources => {
                        // Out of descriptors: leave the rest in the kernel
                        // queue; the registration is edge-triggered, so the
                        // next connection's event retries them.
                        eprintln!("lab-server: master: accept: {e}");
                        break;
                    }
                    AcceptFailure::Fatal => return Err(e),
                },
            }
        }
        Ok(out.into_iter().map(|fd| self.pending(fd)).collect())
    }

    /// With acks (Node RR): hand pending connections to free workers.
    fn dispatch_rr(&mut self, m: &mut Master<'_>) -> io::Result<()> {
        while let Some((slot, conn)) = self.rr.assign() {
            match m.send_fd(slot, Frame::NewConn { seq: conn.seq }, conn.fd.as_fd()) {
                Ok(true) => {
                    self.record.connections_passed += 1;
                    self.record.fd_sendmsgs += 1;
                    self.record.fd_sendmsg_largest = 1;
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

    /// With acks (Node RR): `slot` may get a connection again, if it can take one.
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
                    self.record.fd_sendmsgs += 1;
                    self.record.fd_sendmsg_largest = 1;
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
    fn prepare(&mut self, config: &ServerConfig, shared: Shared) -> io::Result<SocketAddr> {
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
        if self.policy == Policy::Pipelined {
            self.pipeline = Some(pipelined::Pipeline::new(
                shared.slots,
                config.workers,
                config.max_conns,
            )?);
        }
        Ok(addr)
    }

    fn worker_fds(&self) -> Vec<RawFd> {
        Vec::new() // workers get connections only through their channel
    }

    fn worker_main(&mut self, env: WorkerEnv, control: UnixStream) -> io::Result<()> {
        let replies = match self.policy {
            Policy::NodeRr => Replies::ReceivedThenAck,
            Policy::NodeRrReroute => Replies::Ack,
            Policy::Rotate | Policy::LeastConn | Policy::Pipelined => Replies::None,
        };
        let intake = ChannelIntake::new(env, replies, self.policy == Policy::LeastConn);
        worker::run(env, intake, control)
    }

    fn master_register(&mut self, registry: &Registry) -> io::Result<()> {
        if let Some(l) = self.listener.as_ref() {
            let to = match self.policy {
                Policy::NodeRr => Registration::Level,
                _ => Registration::Edge,
            };
            Registration::change(self.registration, to, registry, l.as_fd())?;
            self.registration = to;
        }
        if let Some(p) = self.pipeline.as_mut() {
            p.register(registry)?;
        }
        Ok(())
    }

    fn master_event(&mut self, event: &Event, m: &mut Master<'_>) -> io::Result<()> {
        if event.token() == pipelined::TIMER {
            if let Some(p) = self.pipeline.as_mut() {
                p.timer_fired();
            }
            return if self.stopping {
                Ok(())
            } else {
                self.pipeline_pump(m)
            };
        }
        if event.token() != LISTENER || self.stopping {
            return Ok(());
        }
        self.record.listener_wakeups += 1;
        match self.policy {
            Policy::NodeRr => {
                if let Some(c) = self.accept_one()? {
                    self.rr.push(c);
                }
                self.dispatch_rr(m)
            }
            Policy::NodeRrReroute => {
                for c in self.accept_all()? {
                    self.rr.push(c);
                }
                self.dispatch_rr(m)
            }
            Policy::Pipelined => self.pipeline_pump(m),
            Policy::Rotate | Policy::LeastConn => {
                let conns = self.accept_all()?;
                for c in conns {
                    self.dispatch_blind(c, m)?;
                }
                Ok(())
            }
        }
    }

    fn on_ready(&mut self, slot: usize, m: &mut Master<'_>) -> io::Result<()> {
        if self.policy == Policy::Pipelined {
            self.pipeline_flush(slot, m); // stops watching its channel
            self.pipeline_pump(m)?;
        } else if self.policy.acks() {
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
        if let Some(p) = self.pipeline.as_mut() {
            self.record.connections_rerouted += p.requeue(slot) as u64;
            return self.pipeline_pump(m);
        }
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
            // Node-exact: child_process's NODE_HANDLE_ACK. In Node it lets
            // the primary send that worker the next message that carries a
            // handle; the cluster's stop-and-wait never has one queued behind
            // it (the next descriptor waits for the `Ack`), so nothing follows.
            Frame::Received { .. } => Ok(()),
            Frame::Ack { seq, accepted } if self.policy.acks() => {
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
            Frame::Resume if self.policy.acks() => {
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
            Policy::NodeRr | Policy::NodeRrReroute => {
                if std::mem::take(&mut self.blocked[slot]) {
                    self.make_free(slot, m);
                }
                self.dispatch_rr(m)
            }
            Policy::Pipelined => {
                self.pipeline_flush(slot, m);
                Ok(())
            }
            _ => self.flush_backlog(slot, m),
        }
    }

    fn on_worker_gone(&mut self, slot: usize, _pid: Pid, m: &mut Master<'_>) -> io::Result<()> {
        if self.policy == Policy::Pipelined {
            return self.pipeline_worker_gone(slot, m);
        }
        self.rr.remove(slot);
        self.least.reset(slot);
        self.blocked[slot] = false;
        if let Some(conn) = self.unacked.get_mut(slot).and_then(Option::take) {
            if self.policy == Policy::NodeRr {
                // Node: the reply never comes, the handle is never
                // re-distributed. Closing our copy loses the client at once.
                self.record.connections_lost_in_flight += 1;
                drop(conn);
            } else {
                // The master still holds its copy of an unacknowledged
                // connection: the client is not lost, it goes to another
                // worker.
                self.record.connections_rerouted += 1;
                self.rr.push(conn);
            }
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
        if self.policy.acks() {
            self.dispatch_rr(m)?;
        }
        Ok(())
    }

    fn stop_master(&mut self, registry: &Registry) -> io::Result<()> {
        self.stopping = true;
        if let Some(l) = self.listener.take() {
            let _ =
                Registration::change(self.registration, Registration::Absent, registry, l.as_fd());
            self.registration = Registration::Absent;
        }
        self.record.connections_dropped += self.rr.drain().count() as u64;
        self.record.connections_dropped += std::mem::take(&mut self.waiting).len() as u64;
        if let Some(p) = self.pipeline.as_mut() {
            p.disarm();
            self.record.connections_dropped += p.take_held().len() as u64;
        }
        Ok(())
    }

    fn master_record(&self) -> MasterRecord {
        self.record.clone()
    }
}

#[cfg(test)]
mod tests {
    //! The epoll behaviour `master-pass` relies on, checked on this kernel
    //! with real sockets.
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    use mio::{Events, Poll};
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

    /// A non-blocking listener with `n` connections in its accept queue.
    fn listener_with_queue(n: usize) -> (TcpListener, Vec<TcpStream>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let clients = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
        (l, clients)
    }

    fn listener_events(poll: &mut Poll, events: &mut Events) -> usize {
        poll.poll(events, Some(Duration::ZERO)).unwrap();
        events.iter().filter(|e| e.token() == LISTENER).count()
    }

    #[test]
    fn a_level_triggered_listener_in_mios_epoll_is_reported_until_its_queue_is_empty() {
        let (l, _clients) = listener_with_queue(3);
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(8);
        Registration::change(
            Registration::Absent,
            Registration::Level,
            poll.registry(),
            l.as_fd(),
        )
        .unwrap();
        for _ in 0..3 {
            assert_eq!(listener_events(&mut poll, &mut events), 1);
            accept4(l.as_fd()).unwrap(); // one accept per wakeup
        }
        assert_eq!(listener_events(&mut poll, &mut events), 0);
        Registration::change(
            Registration::Level,
            Registration::Absent,
            poll.registry(),
            l.as_fd(),
        )
        .unwrap();
    }

    #[test]
    fn an_edge_triggered_listener_is_not_reported_again_while_connections_wait() {
        let (l, _clients) = listener_with_queue(3);
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(8);
        Registration::change(
            Registration::Absent,
            Registration::Edge,
            poll.registry(),
            l.as_fd(),
        )
        .unwrap();
        assert_eq!(listener_events(&mut poll, &mut events), 1);
        accept4(l.as_fd()).unwrap();
        // Two more are queued, but nothing new arrived: no event.
        assert_eq!(listener_events(&mut poll, &mut events), 0);
    }

    /// Why the Node-exact master does not use a level-triggered epoll of its
    /// own inside mio's: mio's edge-triggered registration of the inner
    /// epoll fires once, and not again while the inner one stays ready,
    /// even after a wait on the inner one.
    #[test]
    fn an_edge_triggered_registration_of_a_level_triggered_inner_epoll_does_not_fire_again() {
        let (l, _clients) = listener_with_queue(3);
        let inner = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
        inner
            .add(&l, EpollEvent::new(EpollFlags::EPOLLIN, 7))
            .unwrap();
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(8);
        poll.registry()
            .register(
                &mut SourceFd(&inner.0.as_raw_fd()),
                LISTENER,
                Interest::READABLE,
            )
            .unwrap();
        assert_eq!(listener_events(&mut poll, &mut events), 1);
        accept4(l.as_fd()).unwrap();
        assert_eq!(listener_events(&mut poll, &mut events), 0);
        let mut got = [EpollEvent::empty(); 4];
        assert_eq!(
            inner.wait(&mut got, 0u8).unwrap(),
            1,
            "the inner one is ready"
        );
        assert_eq!(listener_events(&mut poll, &mut events), 0);
    }
}
