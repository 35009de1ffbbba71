//! Starting a worker: a control channel, `fork`, and in the child the
//! sweep of inherited descriptors before the strategy's worker runs.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use mio::{Interest, Poll, Token};

use crate::channel::FrameReader;
use crate::config::WorkerEnv;
use crate::strategy::{Strategy, WorkerHandle, CHANNEL_BASE};
use crate::sys::fds::close_all_except;
use crate::sys::process::{die_with_parent, exit_now, fork_single_threaded, Forked};

use super::Supervisor;

impl Supervisor {
    /// Forks the workers waiting to start (one at a time if the strategy asks).
    pub(super) fn start_pending(
        &mut self,
        poll: &Poll,
        strategy: &mut dyn Strategy,
    ) -> io::Result<()> {
        while let Some(&slot) = self.to_start.front() {
            if strategy.serial_start() && self.workers.iter().flatten().any(|w| !w.ready) {
                return Ok(());
            }
            self.to_start.pop_front();
            self.spawn(slot, poll, strategy)?;
        }
        Ok(())
    }

    fn spawn(&mut self, slot: usize, poll: &Poll, strategy: &mut dyn Strategy) -> io::Result<()> {
        let (master_end, worker_end) = UnixStream::pair()?;
        // 64 KiB send and receive buffers, as on the socketpair libuv makes
        // for each of Node's cluster workers (`uv__process_init_stdio`).
        let sock = socket2::SockRef::from(&master_end);
        sock.set_send_buffer_size(64 * 1024)?;
        sock.set_recv_buffer_size(64 * 1024)?;
        let _ = std::io::stdout().flush();
        // The master never starts a thread, so this fork is allowed (and
        // checked: a second thread would make it fail, not fork).
        match fork_single_threaded()? {
            Forked::Child => {
                let code = match self.child(slot, worker_end, strategy) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!(
                            "lab-server: worker slot {slot} (pid {}): {e}",
                            std::process::id()
                        );
                        1
                    }
                };
                // _exit: run none of the master's destructors in the child.
                exit_now(code);
            }
            Forked::Parent(pid) => {
                drop(worker_end);
                master_end.set_nonblocking(true)?;
                let mut channel = mio::net::UnixStream::from_std(master_end);
                poll.registry().register(
                    &mut channel,
                    Token(CHANNEL_BASE + slot),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                self.workers[slot] = Some(WorkerHandle {
                    pid,
                    generation: self.generations[slot],
                    ready: false,
                    retiring: false,
                    channel: Some(channel),
                    frames: FrameReader::default(),
                });
                Ok(())
            }
        }
    }

    /// The child side of a fork: never returns to the master's loop.
    fn child(
        &self,
        slot: usize,
        control: UnixStream,
        strategy: &mut dyn Strategy,
    ) -> io::Result<()> {
        die_with_parent(self.master_pid)?;
        let mut keep = strategy.worker_fds();
        keep.extend(strategy.worker_slot_fds(slot));
        keep.push(control.as_raw_fd());
        close_all_except(&keep)?;
        let env = WorkerEnv {
            slot,
            pid: std::process::id(),
            counters: &self.shared.slots[slot],
            shared: self.shared,
            injected_cpu_us: self.config.injected_cpu_us,
            timeouts: self.config.timeouts,
            max_conns: self.config.max_conns,
        };
        strategy.worker_main(env, control)
    }
}
