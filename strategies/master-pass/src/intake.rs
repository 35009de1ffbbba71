//! The worker side: receive descriptors from the master, ack, report closes.
//!
//! Replies per descriptor ([`Replies`]): none (rotate, least-conn,
//! pipelined, whose `NewConns` frames carry several descriptors each); one
//! `Ack` (`master-pass:reroute`); or, as Node's worker does, two
//! (`master-pass`): `Received` the moment the descriptor is read (Node's
//! child_process.js answers every `NODE_HANDLE` message with
//! `NODE_HANDLE_ACK` before it hands the handle on), then the cluster-level
//! `Ack` (child.js's reply `{ ack, accepted }`), each in its own write.
//!
//! Stopping (the server stops, or a rolling restart retires this worker):
//! the master has already stopped routing to the worker (a retiring one) or
//! stopped accepting (a stopping server), so every descriptor meant for this
//! worker is in its channel by the time the SIGTERM arrives. The stopping
//! worker reads the channel to its end and then has quiesced:
//! - with acks (Node RR): a descriptor it has not acked yet is refused
//!   (`Ack { accepted: false }`); the master still holds its copy and routes
//!   the connection to another worker;
//! - without acks (rotate, least-conn): the master closed its copy right
//!   after `sendmsg`, so the worker is the connection's only holder: it
//!   serves it (`Connection: close`) rather than drop it.
//!
//! At `--max-conns`: with acks, a new descriptor is refused the same way and
//! the master re-routes it; the worker stays out of the master's free list
//! until it says `Resume` (room again). Without acks, the connection is
//! served anyway (refusing it would lose it), so the cap is not enforced in
//! those modes, except by `master-pass:pipelined`'s master, whose credit
//! window is never larger than the cap.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use lab_common::channel::{Frame, FrameReader, Outbox};
use lab_common::stats::WorkerCounters;
use lab_common::strategy::{Accepted, Intake, WorkerEnv, INTAKE_TOKEN_BASE};
use lab_common::sys::fdpass::recv_with_fds;
use mio::event::Event;
use mio::{Interest, Poll, Token};

const CHANNEL: Token = Token(INTAKE_TOKEN_BASE);

/// How a worker answers each descriptor the master sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replies {
    /// No answer: the master closed its copy after `sendmsg`.
    None,
    /// `Ack { accepted }` on receipt.
    Ack,
    /// `Received`, then `Ack { accepted }`, two writes (Node's
    /// `NODE_HANDLE_ACK` and the cluster reply).
    ReceivedThenAck,
}

/// Takes connections from the master over the control channel.
pub struct ChannelIntake {
    env: WorkerEnv,
    /// Node's round-robin: answer each connection on receipt.
    replies: Replies,
    /// least-conn: report each close.
    report_close: bool,
    channel: Option<mio::net::UnixStream>,
    frames: FrameReader,
    fds: VecDeque<OwnedFd>,
    outbox: Outbox,
    stopping: bool,
    /// After `stop`: the channel has been read to its end.
    drained: bool,
    /// At `--max-conns`.
    paused: bool,
    /// Refused a connection at the cap: say `Resume` when there is room.
    refused_at_cap: bool,
}

impl ChannelIntake {
    /// An intake that answers each descriptor as `replies` says (Node RR)
    /// and/or reports closes (least-conn).
    pub fn new(env: WorkerEnv, replies: Replies, report_close: bool) -> Self {
        ChannelIntake {
            env,
            replies,
            report_close,
            channel: None,
            frames: FrameReader::default(),
            fds: VecDeque::new(),
            outbox: Outbox::default(),
            stopping: false,
            drained: false,
            paused: false,
            refused_at_cap: false,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(ch) = self.channel.as_mut() {
            self.outbox.flush_to(ch)?;
        }
        Ok(())
    }

    /// Answers descriptor `seq`: taken (`accepted`) or refused.
    ///
    /// `Received` is written at once (its own write, as in Node); the `Ack`
    /// is only queued, and written when the channel has been read to its
    /// end (`on_event`, `stop`): the master sends the next descriptor on the
    /// `Ack`, and it must not arrive in this same read loop, before the
    /// worker has counted the one it just took against `--max-conns`.
    fn reply(&mut self, seq: u32, accepted: bool) -> io::Result<()> {
        if self.replies == Replies::ReceivedThenAck {
            self.outbox.push(Frame::Received { seq });
            self.flush()?;
        }
        self.outbox.push(Frame::Ack { seq, accepted });
        Ok(())
    }

    fn receive(&mut self, out: &mut Vec<Accepted>) -> io::Result<()> {
        let ack = self.replies != Replies::None;
        let mut buf = [0u8; 256];
        loop {
            let Some(ch) = self.channel.as_ref() else {
                return Ok(());
            };
            let got = match recv_with_fds(ch.as_fd(), &mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.drained = self.stopping;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if got.bytes == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the master closed the control channel",
                ));
            }
            if got.truncated {
                WorkerCounters::bump(&self.env.counters.fd_truncations);
            }
            self.fds.extend(got.fds);
            for frame in self.frames.feed(&buf[..got.bytes])? {
                let (seq, count) = match frame {
                    Frame::NewConn { seq } => (seq, 1),
                    // master-pass:pipelined: several descriptors in one
                    // message, never acked.
                    Frame::NewConns { seq, count } => (seq, count),
                    _ => continue,
                };
                for _ in 0..count {
                    let Some(fd) = self.fds.pop_front() else {
                        // MSG_CTRUNC dropped it; nothing to serve or ack.
                        break;
                    };
                    if ack && (self.stopping || self.paused) {
                        // Refuse: the master still holds its copy and re-routes it.
                        drop(fd);
                        self.refused_at_cap |= !self.stopping;
                        self.reply(seq, false)?;
                        continue;
                    }
                    // Without acks the master kept no copy: serve it, stopping
                    // or at the cap, or it is lost.
                    // Ack on receipt, before serving (Node's child.js does the same).
                    if ack {
                        self.reply(seq, true)?;
                    }
                    out.push(Accepted {
                        fd,
                        tag: self.report_close.then_some(seq),
                    });
                }
            }
        }
    }
}

impl Intake for ChannelIntake {
    fn register(&mut self, poll: &Poll, control: UnixStream) -> io::Result<Option<UnixStream>> {
        control.set_nonblocking(true)?;
        let mut ch = mio::net::UnixStream::from_std(control);
        poll.registry()
            .register(&mut ch, CHANNEL, Interest::READABLE | Interest::WRITABLE)?;
        self.channel = Some(ch);
        Ok(None)
    }

    fn on_event(&mut self, event: &Event, _poll: &Poll, out: &mut Vec<Accepted>) -> io::Result<()> {
        if event.is_readable() || event.is_read_closed() {
            self.receive(out)?;
        }
        self.flush()
    }

    fn on_closed(&mut self, tag: u32, _poll: &Poll) -> io::Result<()> {
        if self.report_close {
            self.outbox.push(Frame::Closed { seq: tag });
            self.flush()?;
        }
        Ok(())
    }

    fn set_paused(&mut self, _poll: &Poll, paused: bool) -> io::Result<()> {
        self.paused = paused;
        if !paused && std::mem::take(&mut self.refused_at_cap) {
            self.outbox.push(Frame::Resume);
            self.flush()?;
        }
        Ok(())
    }

    fn stop(&mut self, _poll: &Poll, out: &mut Vec<Accepted>) -> io::Result<()> {
        self.stopping = true;
        // Everything meant for us is in the channel already: take it now
        // (refused with acks, served without).
        self.receive(out)?;
        self.flush()
    }

    fn quiesced(&self) -> bool {
        self.drained && self.outbox.is_empty()
    }
}
