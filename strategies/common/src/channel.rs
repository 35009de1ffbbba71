//! The control channel between the master and one worker.
//!
//! One `socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)` per worker, made by
//! the master before it forks that worker (as libuv does for Node's IPC
//! channel). Every strategy uses it to say "ready"; master-pass also sends
//! each connection's descriptor down it and gets acks and close reports back.
//!
//! Messages are fixed 8-byte frames: `[kind, flag, 0, 0, seq (u32 LE)]`. A
//! `NewConn` frame carries one descriptor with `SCM_RIGHTS` (the frame is the
//! data byte the descriptor rides on); a `NewConns` frame carries `count` of
//! them in one message (`master-pass:pipelined`).

use std::collections::VecDeque;
use std::io::{self, Write};

/// Size of every frame.
pub const FRAME_LEN: usize = 8;

/// A control message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Worker -> master: this worker can take connections now.
    Ready,
    /// Master -> worker: a connection, with its descriptor attached.
    NewConn {
        /// Sequence number of the connection, echoed in acks and close reports.
        seq: u32,
    },
    /// Master -> worker (`master-pass:pipelined`): `count` connections, their
    /// descriptors attached to this one message in order. Fewer arrive only
    /// if the kernel cut the control data off (`MSG_CTRUNC`).
    NewConns {
        /// Sequence number of the first connection (for traces; nothing is
        /// echoed back).
        seq: u32,
        /// How many descriptors the message carries (1 to
        /// `sys::fdpass::MAX_FDS_PER_MESSAGE`).
        count: u8,
    },
    /// Worker -> master: connection `seq` was taken (`accepted`) or refused
    /// because the worker is shutting down (the master re-routes it).
    Ack {
        /// Sequence number from `NewConn`.
        seq: u32,
        /// Whether the worker took it.
        accepted: bool,
    },
    /// Worker -> master: connection `seq` is closed (for least-conn).
    Closed {
        /// Sequence number from `NewConn`.
        seq: u32,
    },
    /// Worker -> master: this worker has stopped taking new connections (its
    /// own listener, if it had one, is closed) and is finishing what it has.
    /// Sent by workers whose intake does not use the channel itself.
    Draining,
    /// Worker -> master (master-pass with acks): the worker refused
    /// connections at its `--max-conns` cap and has room again.
    Resume,
    /// Worker -> master (Node-exact master-pass): the descriptor of `NewConn`
    /// `seq` arrived, sent on receipt before the `Ack` (Node's
    /// child_process-level `NODE_HANDLE_ACK`; the `Ack` is the cluster-level
    /// reply).
    Received {
        /// Sequence number from `NewConn`.
        seq: u32,
    },
}

impl Frame {
    /// Encodes the frame.
    pub fn encode(self) -> [u8; FRAME_LEN] {
        let (kind, flag, seq) = match self {
            Frame::Ready => (b'R', 0, 0),
            Frame::NewConn { seq } => (b'N', 0, seq),
            Frame::NewConns { seq, count } => (b'B', count, seq),
            Frame::Ack { seq, accepted } => (b'A', accepted as u8, seq),
            Frame::Closed { seq } => (b'C', 0, seq),
            Frame::Draining => (b'D', 0, 0),
            Frame::Resume => (b'U', 0, 0),
            Frame::Received { seq } => (b'H', 0, seq),
        };
        let s = seq.to_le_bytes();
        [kind, flag, 0, 0, s[0], s[1], s[2], s[3]]
    }

    /// Decodes a frame; `None` for an unknown kind (a protocol error).
    pub fn decode(b: [u8; FRAME_LEN]) -> Option<Frame> {
        let seq = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        Some(match b[0] {
            b'R' => Frame::Ready,
            b'N' => Frame::NewConn { seq },
            b'B' => Frame::NewConns { seq, count: b[1] },
            b'A' => Frame::Ack {
                seq,
                accepted: b[1] != 0,
            },
            b'C' => Frame::Closed { seq },
            b'D' => Frame::Draining,
            b'U' => Frame::Resume,
            b'H' => Frame::Received { seq },
            _ => return None,
        })
    }
}

/// Reassembles frames from a byte stream that may split them anywhere.
#[derive(Default, Debug)]
pub struct FrameReader {
    partial: Vec<u8>,
}

impl FrameReader {
    /// Feeds bytes; returns the complete frames, or an error for an unknown kind.
    pub fn feed(&mut self, bytes: &[u8]) -> io::Result<Vec<Frame>> {
        self.partial.extend_from_slice(bytes);
        let whole = self.partial.len() / FRAME_LEN * FRAME_LEN;
        let mut frames = Vec::with_capacity(whole / FRAME_LEN);
        for chunk in self.partial[..whole].chunks_exact(FRAME_LEN) {
            let raw: [u8; FRAME_LEN] = chunk.try_into().expect("chunk of FRAME_LEN");
            frames.push(Frame::decode(raw).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown control frame {raw:?}"),
                )
            })?);
        }
        self.partial.drain(..whole);
        Ok(frames)
    }
}

/// Frames waiting to be written to a non-blocking channel.
#[derive(Default, Debug)]
pub struct Outbox {
    bytes: VecDeque<u8>,
}

impl Outbox {
    /// Queues a frame.
    pub fn push(&mut self, frame: Frame) {
        self.bytes.extend(frame.encode());
    }

    /// Whether everything has been written.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Writes as much as the socket takes; `Ok` also when it would block.
    pub fn flush_to<W: Write>(&mut self, w: &mut W) -> io::Result<()> {
        while !self.bytes.is_empty() {
            let (front, _) = self.bytes.as_slices();
            match w.write(front) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => drop(self.bytes.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        for f in [
            Frame::Ready,
            Frame::NewConn { seq: 7 },
            Frame::NewConns { seq: 8, count: 16 },
            Frame::Ack {
                seq: u32::MAX,
                accepted: false,
            },
            Frame::Closed { seq: 1 },
            Frame::Draining,
            Frame::Resume,
            Frame::Received { seq: 9 },
        ] {
            assert_eq!(Frame::decode(f.encode()), Some(f));
        }
    }

    #[test]
    fn reader_reassembles_split_frames() {
        let mut r = FrameReader::default();
        let a = Frame::Ack {
            seq: 3,
            accepted: true,
        }
        .encode();
        let c = Frame::Closed { seq: 4 }.encode();
        let mut bytes = a.to_vec();
        bytes.extend_from_slice(&c);
        assert_eq!(r.feed(&bytes[..5]).unwrap(), vec![]);
        assert_eq!(
            r.feed(&bytes[5..11]).unwrap(),
            vec![Frame::Ack {
                seq: 3,
                accepted: true
            }]
        );
        assert_eq!(
            r.feed(&bytes[11..]).unwrap(),
            vec![Frame::Closed { seq: 4 }]
        );
        assert!(r.feed(b"Zxxxxxxx").is_err());
    }
}
