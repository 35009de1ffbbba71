//! One connection of a generator thread: its socket, its state, the request
//! on it, and the socket I/O (connect, write, read a response, wait for the
//! server's FIN). It reports what happened; the generator decides what that
//! means for the run and the tallies.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::response::{Response, ResponseReader};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No socket.
    Free,
    /// connect() in progress.
    Connecting,
    /// Connected, no request (keep-alive).
    Idle,
    /// A request in flight.
    Busy,
    /// `close` mode: response complete, waiting for the server's FIN.
    AwaitEof,
}

/// The request a connection carries.
#[derive(Debug, Clone, Copy)]
pub struct InFlight {
    /// When it fell due (closed loop: when it was sent).
    pub due: Instant,
    /// When it was sent (`None` while its connection is being opened).
    pub sent: Option<Instant>,
    /// When its response's first byte arrived.
    pub first_byte: Option<Instant>,
    /// It times out at this instant.
    pub deadline: Instant,
    /// Index of its request bytes (the path in the mix).
    pub path: usize,
    /// Request bytes written so far.
    pub written: usize,
    /// Due in the measured window.
    pub measured: bool,
}

/// What reading a busy connection came to.
#[derive(Debug)]
pub enum ReadOutcome {
    /// Nothing more to read now; the response is not complete yet.
    Pending,
    /// A whole response; the connection stays open.
    Response(Response),
    /// The server closed the connection after a whole response (one read
    /// until close).
    ResponseAtEof(Response),
    /// The server closed the connection before a whole response.
    Closed,
    /// The bytes were not an HTTP response.
    Malformed,
    /// The read failed.
    Failed(io::Error),
}

/// Whether a connect in progress has completed.
#[derive(Debug)]
pub enum ConnectStatus {
    /// Not yet.
    Pending,
    /// Connected.
    Connected,
    /// It failed.
    Failed(io::Error),
}

/// One connection slot.
pub struct Slot {
    stream: Option<TcpStream>,
    /// Where the connection is.
    pub state: State,
    /// Its request, if any.
    pub req: Option<InFlight>,
    rbuf: Vec<u8>,
    reader: ResponseReader,
    /// The worker last credited with this connection.
    pub credited: Option<u32>,
    /// A refused connect is retried from this instant on.
    pub retry_at: Option<Instant>,
    /// `close` mode: give up waiting for the server's FIN at this instant.
    pub eof_deadline: Option<Instant>,
    /// When the current connect() started.
    pub connecting_since: Option<Instant>,
    /// When the current connection was established.
    pub opened_at: Option<Instant>,
    /// Responses received on the current connection.
    pub served: u64,
}

impl Slot {
    /// A slot without a socket.
    pub fn new() -> Slot {
        Slot {
            stream: None,
            state: State::Free,
            req: None,
            rbuf: Vec::with_capacity(4096),
            reader: ResponseReader::default(),
            credited: None,
            retry_at: None,
            eof_deadline: None,
            connecting_since: None,
            opened_at: None,
            served: 0,
        }
    }

    /// Whether the slot has a socket.
    pub fn is_open(&self) -> bool {
        self.stream.is_some()
    }

    /// Forgets the last connection's read state and credit.
    pub fn reset(&mut self) {
        self.retry_at = None;
        self.credited = None;
        self.opened_at = None;
        self.served = 0;
        self.rbuf.clear();
        self.reader.reset();
    }

    /// Starts a non-blocking connect to `target`, registered with
    /// `registry` under `token`; the slot is then `Connecting`.
    pub fn open(
        &mut self,
        target: SocketAddr,
        registry: &Registry,
        token: Token,
        now: Instant,
    ) -> io::Result<()> {
        let mut stream = TcpStream::connect(target)?;
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        self.stream = Some(stream);
        self.state = State::Connecting;
        self.connecting_since = Some(now);
        Ok(())
    }

    /// Whether the connect in progress completed (two syscalls: used when
    /// no request write can tell).
    pub fn connect_status(&mut self) -> ConnectStatus {
        let Some(stream) = self.stream.as_mut() else {
            return ConnectStatus::Pending;
        };
        match stream.take_error() {
            Ok(Some(e)) | Err(e) => ConnectStatus::Failed(e),
            Ok(None) => match stream.peer_addr() {
                Ok(_) => ConnectStatus::Connected,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => ConnectStatus::Pending,
                Err(e) => ConnectStatus::Failed(e),
            },
        }
    }

    /// Writes what is left of the request (`bytes`) until it is all out or
    /// the socket is full.
    pub fn write_request(&mut self, bytes: &[u8]) -> io::Result<()> {
        let (Some(stream), Some(req)) = (self.stream.as_mut(), self.req.as_mut()) else {
            return Ok(());
        };
        while req.written < bytes.len() {
            match stream.write(&bytes[req.written..]) {
                Ok(n) => req.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads the response to the request in flight, through `chunk` (one
    /// buffer shared by all connections, never zeroed).
    pub fn read_response(&mut self, chunk: &mut [u8], now: Instant) -> ReadOutcome {
        let stream = self.stream.as_mut().expect("busy slot has a stream");
        loop {
            match stream.read(chunk) {
                Ok(0) => {
                    return match self.reader.finish_at_eof() {
                        Ok(Some(resp)) => ReadOutcome::ResponseAtEof(resp),
                        Ok(None) | Err(_) => ReadOutcome::Closed,
                    };
                }
                Ok(n) => {
                    if let Some(req) = self.req.as_mut() {
                        req.first_byte.get_or_insert(now);
                    }
                    self.rbuf.extend_from_slice(&chunk[..n]);
                    match self.reader.feed(&mut self.rbuf) {
                        // Edge-triggered, but Linux reports every arrival,
                        // and nothing more is expected on this connection
                        // until the next request: no extra read to EAGAIN.
                        Ok(Some(resp)) => return ReadOutcome::Response(resp),
                        Ok(None) => {}
                        Err(_) => return ReadOutcome::Malformed,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return ReadOutcome::Failed(e),
            }
        }
    }

    /// Reads and drops whatever comes until the server's FIN; true once it
    /// came (or the read failed), false if the socket has nothing more now.
    pub fn drain_to_eof(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let stream = self.stream.as_mut().expect("awaiting slot has a stream");
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }

    /// An idle keep-alive connection became readable: true if the server
    /// closed it (or sent something unasked) and it must be reopened.
    pub fn idle_readable(&mut self) -> bool {
        let mut buf = [0u8; 512];
        let stream = self.stream.as_mut().expect("idle slot has a stream");
        !matches!(stream.read(&mut buf), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Closes the socket (which takes it out of epoll: it is the only
    /// descriptor; an explicit `EPOLL_CTL_DEL` would be one more syscall per
    /// connection) and forgets the request; true if there was one.
    pub fn close(&mut self) -> bool {
        drop(self.stream.take());
        self.state = State::Free;
        self.eof_deadline = None;
        self.rbuf.clear();
        self.reader.reset();
        self.req.take().is_some()
    }
}
