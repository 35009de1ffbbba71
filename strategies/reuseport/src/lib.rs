//! `SO_REUSEPORT`: one listening socket per worker on the same address; the
//! kernel keeps one accept queue per socket and hashes each new connection's
//! 4-tuple onto one of them. Balanced in count, blind to load: a connection
//! hashed to a busy worker waits in that worker's queue.
//!
//! Who opens the sockets is what the variants differ in ([`Variant`]):
//!
//! - `reuseport` ([`Variant::MasterOwned`], nginx's design): the master opens
//!   one listening socket per worker slot in [`Strategy::prepare`], before
//!   any fork, and keeps every one of them open for its whole life, as
//!   nginx's master does with `listen ... reuseport` (`ngx_clone_listening`
//!   makes one listening entry per worker, `ngx_open_listening_sockets`
//!   opens them all in the master). The worker of slot `i` keeps only socket
//!   `i` (the supervisor's sweep closes the others in the child: see
//!   [`Strategy::worker_slot_fds`]) and polls it; nginx's workers inherit all
//!   of them and skip the others in `ngx_event_process_init`. A replacement
//!   in the same slot, after a crash or in a rolling restart, inherits the
//!   same socket again. So no listener ever closes while the server runs:
//!   the group never changes, and a worker that dies or retires loses
//!   nothing queued on its listener. The queue waits (the kernel keeps
//!   hashing a share of new connections to it) and the replacement accepts
//!   it. `net.ipv4.tcp_migrate_req` makes no difference here.
//! - `reuseport:worker-owned` ([`Variant::WorkerOwned`], Go and many Rust
//!   servers): each worker opens its own listener after fork. A worker that
//!   dies takes its listener and its queue with it: the kernel resets every
//!   connection queued there, unless `net.ipv4.tcp_migrate_req=1` (Linux
//!   5.14), which moves them to another listener of the group. Its
//!   replacement opens a new socket that joins the group.
//! - `reuseport:ebpf-least-loaded` ([`Variant::EbpfLeastLoaded`]) is
//!   master-owned, and attaches an eBPF program that gives each new
//!   connection to the listener of the least-loaded worker (connections the
//!   program gave it minus connections it finished), ties broken by the
//!   connection's hash ([`ebpf`], built with [`asm`]; the maps, the drift
//!   correction and the worker's count in [`least_loaded`]). Master-owned so
//!   that the array of listeners the program selects from never changes and a
//!   dead worker's queue waits for its replacement. A worker at
//!   `--max-conns` stops accepting like any `reuseport` worker; its queue,
//!   and so its load, grows, and new connections go to the others. Loading
//!   the program needs root.
//! - `reuseport:cbpf-cpu` ([`Variant::CbpfCpu`]) is worker-owned too, and adds
//!   `SO_ATTACH_REUSEPORT_CBPF` with a program that picks the listener by the
//!   CPU that received the SYN ([`cbpf`]), and pins each worker to the CPU
//!   its group index maps to. The kernel fills a hole left by a closed
//!   listener with the group's last socket; the master mirrors that
//!   (`Vec::swap_remove`) and re-pins the worker that moved.
//!
//! For the worker-owned variants, so that a port chosen by the kernel
//! (`--listen 127.0.0.1:0`) stays the server's while workers come and go, the
//! master holds a socket bound to the address with `SO_REUSEPORT` but never
//! listening: it reserves the port and receives no connections (the kernel
//! forms the TCP reuseport group at `listen()`), and workers do not inherit
//! it. The master-owned variant needs no reservation: its listeners hold the
//! port.
//!
//! # Stopping and rolling restarts
//!
//! Master-owned: a stopping worker takes its listener out of its epoll and
//! closes its own descriptor; the master's copy keeps the socket and its
//! queue (see [`lab_common::intake`], `drain_on_stop == false`). In a rolling
//! restart the replacement is forked into the slot once the old worker has
//! exited and inherits the same socket, so what was queued meanwhile waits
//! for it and is served: nothing is reset. nginx's reload keeps the sockets
//! too: `ngx_init_cycle` gives each listening entry of the new cycle the
//! descriptor of the old cycle's first not yet taken entry with the same
//! address, so with the same number of workers new worker `i` gets old
//! worker `i`'s socket (a worker count that shrinks closes the surplus
//! sockets, one that grows opens new ones; ours cannot change the count).
//! Unlike nginx, which starts all the new workers before it tells the old
//! ones to quit (for a moment both poll the same socket), our rolling restart
//! replaces one slot at a time and forks the replacement only after the old
//! worker exited, so the connections hashed to a retiring slot wait for the
//! old worker's drain and the replacement's start.
//!
//! Worker-owned: a stopping worker accepts everything already queued on its
//! own listener (those connections are served) and then closes it, which
//! takes it out of the group (see [`lab_common::intake`]). A connection whose
//! handshake completes between that last `accept4` and the close is reset by
//! the kernel, unless `net.ipv4.tcp_migrate_req=1`, which migrates it to
//! another listener of the group. Until the replacement listens, the kernel
//! hashes new connections over the remaining listeners; with one worker
//! there is none, and connections are refused meanwhile.
//!
//! For `cbpf-cpu` the master's mirror of the group order must follow the
//! kernel: the listener leaves the group when the worker closes it, before
//! the worker exits, so the worker says `Draining` on its control channel
//! right after the close and the master removes it then (`swap_remove`, as
//! `reuseport_detach_sock` moves the last socket into the hole, also when the
//! socket is kept aside for `tcp_migrate_req`) and re-pins the worker that
//! moved; a worker that dies without saying so is removed when it is gone.
//! The replacement joins at the end of the group (serial start) and is
//! pinned to its position's CPU when it says `Ready`.
#![deny(missing_docs)]

pub mod asm;
pub mod cbpf;
pub mod ebpf;
pub mod least_loaded;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use lab_common::channel::Frame;
use lab_common::intake::ListenerIntake;
use lab_common::listen::{bind, listen, local_addr, ListenOptions};
use lab_common::stats::{MasterRecord, Shared};
use lab_common::strategy::{Master, ServerConfig, Strategy, WorkerEnv};
use lab_common::sys::bpf::attach_reuseport_cbpf;
use lab_common::sys::epoll::ListenerWakeup;
use lab_common::worker;
use least_loaded::{LeastLoaded, LeastLoadedIntake};
use mio::event::Event;
use mio::Registry;
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use std::os::fd::AsFd;

/// Who opens the listeners, and whether a program steers connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// `reuseport`: the master opens one listener per slot before forking and
    /// keeps them all; each slot's worker (and its every replacement) polls
    /// that slot's socket (nginx's `listen ... reuseport`).
    MasterOwned,
    /// `reuseport:worker-owned`: each worker opens its own listener after fork.
    WorkerOwned,
    /// `reuseport:ebpf-least-loaded`: master-owned, steered by an eBPF
    /// program to the least-loaded worker.
    EbpfLeastLoaded,
    /// `reuseport:cbpf-cpu`: worker-owned, steered by a cBPF program by
    /// receiving CPU, workers pinned.
    CbpfCpu,
}

/// The reuseport strategy.
pub struct ReusePort {
    variant: Variant,
    addr: Option<SocketAddr>,
    backlog: i32,
    workers: usize,
    /// Worker-owned: the master's bound, never-listening socket that holds
    /// the port.
    reservation: Option<OwnedFd>,
    /// Master-owned: slot i's listening socket. In a worker, only its own
    /// slot's entry is still open (the sweep closed the others' numbers, so
    /// those entries must never be dropped there: the child leaves with
    /// `_exit`, and the worker takes its own entry out).
    listeners: Vec<Option<OwnedFd>>,
    /// CPUs this process may run on (cbpf-cpu).
    cpus: Vec<usize>,
    /// Worker slots in reuseport-group order (cbpf-cpu).
    group: Vec<usize>,
    /// The maps, program, timer and corrections (ebpf-least-loaded). In a
    /// worker its descriptors' numbers are closed by the sweep, so it must
    /// never be dropped there (the child leaves with `_exit`); the worker
    /// uses only its slot's counters, in the inherited mapping.
    balancer: Option<LeastLoaded>,
}

impl ReusePort {
    /// The given variant.
    pub fn new(variant: Variant) -> Self {
        ReusePort {
            variant,
            addr: None,
            backlog: 0,
            workers: 0,
            reservation: None,
            listeners: Vec::new(),
            cpus: Vec::new(),
            group: Vec::new(),
            balancer: None,
        }
    }

    fn master_owned(&self) -> bool {
        matches!(
            self.variant,
            Variant::MasterOwned | Variant::EbpfLeastLoaded
        )
    }

    /// The master's listeners, slot order (master-owned, in the master).
    fn listener_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.listeners.iter().flatten().map(|l| l.as_fd()).collect()
    }

    fn cpu_steering(&self) -> bool {
        self.variant == Variant::CbpfCpu
    }

    /// Pins `pid` to the CPU of group position `position`. A worker that
    /// has just exited (`ESRCH`) is not an error.
    fn pin(&self, pid: Pid, position: usize) -> io::Result<()> {
        let mut set = CpuSet::new();
        set.set(cbpf::cpu_for_position(&self.cpus, position))?;
        match sched_setaffinity(pid, &set) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Slot's listener has left the group: mirror the kernel's order.
    fn detach(&mut self, slot: usize, m: &mut Master<'_>) -> io::Result<()> {
        if let Some(position) = self.group.iter().position(|&s| s == slot) {
            // reuseport_detach_sock(): socks[i] = socks[num_socks - 1].
            self.group.swap_remove(position);
            if let Some(&moved) = self.group.get(position) {
                if let Some(pid) = m.pid(moved) {
                    self.pin(pid, position)?;
                }
            }
        }
        Ok(())
    }

    fn listen_options(&self) -> ListenOptions {
        ListenOptions {
            reuse_port: true,
            nonblocking: true,
            backlog: self.backlog,
        }
    }
}

fn allowed_cpus() -> io::Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect())
}

impl Strategy for ReusePort {
    fn prepare(&mut self, config: &ServerConfig, shared: Shared) -> io::Result<SocketAddr> {
        // First a bind *without* SO_REUSEPORT: it fails if anything holds the
        // port, even another reuseport group we must not silently join.
        let probe = bind(config.listen, false)?;
        let addr = local_addr(&probe)?;
        drop(probe);
        self.addr = Some(addr);
        self.backlog = config.backlog;
        self.workers = config.workers;
        // BPF first: where it is not allowed, say so before any listener is open.
        let load_map = if self.variant == Variant::EbpfLeastLoaded {
            Some(LeastLoaded::create_load_map(config.workers)?)
        } else {
            None
        };
        match self.variant {
            Variant::MasterOwned | Variant::EbpfLeastLoaded => {
                // One per slot, in slot order (the group's order too; nothing
                // here depends on it). Non-blocking: the flag is on the open
                // file, which the master and the slot's worker share; the
                // master never accepts.
                let opts = self.listen_options();
                self.listeners = (0..config.workers)
                    .map(|_| listen(addr, opts).map(|s| Some(s.into())))
                    .collect::<io::Result<_>>()?;
            }
            Variant::WorkerOwned | Variant::CbpfCpu => {
                self.reservation = Some(bind(addr, true)?.into());
            }
        }
        if let Some((map, slots)) = load_map {
            self.balancer = Some(LeastLoaded::new(map, slots, &self.listener_fds(), shared)?);
        }
        if self.cpu_steering() {
            self.cpus = allowed_cpus()?;
            if self.cpus.is_empty() {
                return Err(io::Error::other("no CPU is allowed for this process"));
            }
        }
        Ok(addr)
    }

    fn worker_fds(&self) -> Vec<RawFd> {
        // Worker-owned: each worker opens its own listener; none is
        // inherited. Master-owned: only the slot's own, below.
        Vec::new()
    }

    fn worker_slot_fds(&self, slot: usize) -> Vec<RawFd> {
        self.listeners
            .get(slot)
            .and_then(Option::as_ref)
            .map(|l| l.as_raw_fd())
            .into_iter()
            .collect()
    }

    fn worker_main(&mut self, env: WorkerEnv, control: UnixStream) -> io::Result<()> {
        if self.master_owned() {
            let listener = self
                .listeners
                .get_mut(env.slot)
                .and_then(Option::take)
                .ok_or_else(|| io::Error::other("reuseport: no listener for this slot"))?;
            // The master keeps its copy, so stopping just closes ours: the
            // queue stays for the slot's next worker.
            let intake = ListenerIntake::new(listener, ListenerWakeup::LevelAll, env, false);
            return match &self.balancer {
                Some(b) => worker::run(
                    env,
                    LeastLoadedIntake::new(intake, b.slot(env.slot)),
                    control,
                ),
                None => worker::run(env, intake, control),
            };
        }
        let addr = self
            .addr
            .ok_or_else(|| io::Error::other("reuseport not prepared"))?;
        let socket = listen(addr, self.listen_options())?;
        if self.cpu_steering() {
            // Every worker attaches the same program; the group keeps one.
            attach_reuseport_cbpf(socket.as_fd(), &cbpf::cpu_program(&self.cpus, self.workers))?;
        }
        // Only this worker waits on this listener: exclusivity is moot. It
        // is the only holder, so stopping drains the queue before the close.
        worker::run(
            env,
            ListenerIntake::new(socket.into(), ListenerWakeup::LevelAll, env, true),
            control,
        )
    }

    fn serial_start(&self) -> bool {
        // The program indexes listeners in the order they called listen().
        self.cpu_steering()
    }

    fn master_register(&mut self, registry: &Registry) -> io::Result<()> {
        match self.balancer.as_mut() {
            Some(b) => b.register(registry),
            None => Ok(()),
        }
    }

    fn master_event(&mut self, event: &Event, m: &mut Master<'_>) -> io::Result<()> {
        let listeners: Vec<BorrowedFd<'_>> =
            self.listeners.iter().flatten().map(|l| l.as_fd()).collect();
        match self.balancer.as_mut() {
            Some(b) => b.tick(event, &listeners, m),
            None => Ok(()),
        }
    }

    fn master_record(&self) -> MasterRecord {
        MasterRecord {
            least_loaded: self.balancer.as_ref().map(LeastLoaded::record),
            ..MasterRecord::default()
        }
    }

    fn on_ready(&mut self, slot: usize, m: &mut Master<'_>) -> io::Result<()> {
        if !self.cpu_steering() {
            return Ok(());
        }
        self.group.retain(|&s| s != slot);
        self.group.push(slot);
        if let Some(pid) = m.pid(slot) {
            self.pin(pid, self.group.len() - 1)?;
        }
        Ok(())
    }

    fn on_frame(&mut self, slot: usize, frame: Frame, m: &mut Master<'_>) -> io::Result<()> {
        if self.cpu_steering() && frame == Frame::Draining {
            // The worker has closed its listener (it says so right after).
            self.detach(slot, m)?;
        }
        Ok(())
    }

    fn on_worker_gone(&mut self, slot: usize, _pid: Pid, m: &mut Master<'_>) -> io::Result<()> {
        if let (Some(b), Some(Some(l))) = (self.balancer.as_mut(), self.listeners.get(slot)) {
            b.worker_gone(slot, l.as_fd())?;
        }
        if !self.cpu_steering() {
            return Ok(());
        }
        self.detach(slot, m)
    }
}
