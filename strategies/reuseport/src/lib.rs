//! `SO_REUSEPORT`: every worker opens its own listening socket on the same
//! address after fork; the kernel keeps one accept queue per socket and hashes
//! each new connection's 4-tuple onto one of them. Balanced in count, blind to
//! load: a connection hashed to a busy worker waits in that worker's queue.
//!
//! `reuseport:cbpf-cpu` adds `SO_ATTACH_REUSEPORT_CBPF` with a program that
//! picks the listener by the CPU that received the SYN ([`cbpf`]), and pins
//! each worker to the CPU its group index maps to. The kernel fills a hole
//! left by a closed listener with the group's last socket; the master mirrors
//! that (`Vec::swap_remove`) and re-pins the worker that moved.
//!
//! So that a port chosen by the kernel (`--listen 127.0.0.1:0`) stays the
//! server's while workers come and go, the master holds a socket bound to the
//! address with `SO_REUSEPORT` but never listening: it reserves the port and
//! receives no connections (the kernel forms the TCP reuseport group at
//! `listen()`), and workers do not inherit it.
//!
//! # Stopping and rolling restarts
//!
//! A stopping worker accepts everything already queued on its own listener
//! (those connections are served) and then closes it, which takes it out of
//! the group (see [`lab_common::intake`]). A connection whose handshake
//! completes between that last `accept4` and the close is reset by the
//! kernel, unless `net.ipv4.tcp_migrate_req=1` (Linux 5.14), which migrates
//! it to another listener of the group. Until the replacement listens, the
//! kernel hashes new connections over the remaining listeners; with one
//! worker there is none, and connections are refused meanwhile.
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

pub mod cbpf;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use lab_common::channel::Frame;
use lab_common::intake::ListenerIntake;
use lab_common::listen::{bind, listen, local_addr, ListenOptions};
use lab_common::stats::Shared;
use lab_common::strategy::{Master, ServerConfig, Strategy, WorkerEnv};
use lab_common::sys::bpf::attach_reuseport_cbpf;
use lab_common::sys::epoll::ListenerWakeup;
use lab_common::worker;
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use std::os::fd::AsFd;

/// The reuseport strategy.
pub struct ReusePort {
    cpu_steering: bool,
    addr: Option<SocketAddr>,
    backlog: i32,
    workers: usize,
    /// The master's bound, never-listening socket that holds the port.
    reservation: Option<OwnedFd>,
    /// CPUs this process may run on (cbpf-cpu).
    cpus: Vec<usize>,
    /// Worker slots in reuseport-group order (cbpf-cpu).
    group: Vec<usize>,
}

impl ReusePort {
    /// Plain reuseport (`cpu_steering == false`) or `reuseport:cbpf-cpu`.
    pub fn new(cpu_steering: bool) -> Self {
        ReusePort {
            cpu_steering,
            addr: None,
            backlog: 0,
            workers: 0,
            reservation: None,
            cpus: Vec::new(),
            group: Vec::new(),
        }
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
}

fn allowed_cpus() -> io::Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect())
}

impl Strategy for ReusePort {
    fn prepare(&mut self, config: &ServerConfig, _shared: Shared) -> io::Result<SocketAddr> {
        // First a bind *without* SO_REUSEPORT: it fails if anything holds the
        // port, even another reuseport group we must not silently join.
        let probe = bind(config.listen, false)?;
        let addr = local_addr(&probe)?;
        drop(probe);
        let reservation = bind(addr, true)?;
        self.reservation = Some(reservation.into());
        self.addr = Some(addr);
        self.backlog = config.backlog;
        self.workers = config.workers;
        if self.cpu_steering {
            self.cpus = allowed_cpus()?;
            if self.cpus.is_empty() {
                return Err(io::Error::other("no CPU is allowed for this process"));
            }
        }
        Ok(addr)
    }

    fn worker_fds(&self) -> Vec<RawFd> {
        Vec::new() // each worker opens its own listener; none is inherited
    }

    fn worker_main(&mut self, env: WorkerEnv, control: UnixStream) -> io::Result<()> {
        let addr = self
            .addr
            .ok_or_else(|| io::Error::other("reuseport not prepared"))?;
        let socket = listen(
            addr,
            ListenOptions {
                reuse_port: true,
                nonblocking: true,
                backlog: self.backlog,
            },
        )?;
        if self.cpu_steering {
            // Every worker attaches the same program; the group keeps one.
            attach_reuseport_cbpf(socket.as_fd(), &cbpf::cpu_program(&self.cpus, self.workers))?;
        }
        // Only this worker waits on this listener: exclusivity is moot.
        worker::run(
            env,
            ListenerIntake::new(socket.into(), ListenerWakeup::LevelAll, env, true),
            control,
        )
    }

    fn serial_start(&self) -> bool {
        // The program indexes listeners in the order they called listen().
        self.cpu_steering
    }

    fn on_ready(&mut self, slot: usize, m: &mut Master<'_>) -> io::Result<()> {
        if !self.cpu_steering {
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
        if self.cpu_steering && frame == Frame::Draining {
            // The worker has closed its listener (it says so right after).
            self.detach(slot, m)?;
        }
        Ok(())
    }

    fn on_worker_gone(&mut self, slot: usize, _pid: Pid, m: &mut Master<'_>) -> io::Result<()> {
        if !self.cpu_steering {
            return Ok(());
        }
        self.detach(slot, m)
    }
}
