//! One client connection inside a worker: read, parse, do the work, respond,
//! repeat while keep-alive holds.
//!
//! The state machine does no polling of its own: the event loop calls
//! [`Conn::drive`] when the socket is ready or a timer fired, and `drive`
//! reads and writes until the socket would block (the registration is
//! edge-triggered, so every call runs to `WouldBlock` or to a decision).

use std::io::{self, Read, Write};
use std::time::Duration;

use mio::net::TcpStream;

use crate::http::{self, Parse, MAX_HEAD_BYTES};
use crate::stats::WorkerCounters;
use crate::work::{burn_cpu, TargetError, Work};

/// Bytes of body kept in memory at once; larger bodies stream from a filler.
const INLINE_BODY: u64 = 16 * 1024;
static FILLER: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// Where the connection is in its request/response cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Waiting for (the rest of) a request.
    Idle,
    /// The request asked for `sleep_us`; a timer will resume it.
    Sleeping,
    /// A response is being written.
    Writing,
    /// An error response went out and our side is shut down; the rest of
    /// the client's input is read and dropped until it closes or a timer
    /// fires, so that closing with unread input does not send an RST that
    /// could destroy the response before the client reads it (nginx's
    /// `lingering_close`).
    Lingering,
}

/// How long a connection lingers after an error response.
pub const LINGER: Duration = Duration::from_millis(500);

/// What the event loop should do after [`Conn::drive`].
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Wait for the socket to become ready again.
    Wait,
    /// Start a timer and call [`Conn::wake`] when it fires.
    Sleep(Duration),
    /// Close the connection.
    Close,
}

/// A client connection.
pub struct Conn {
    /// The socket, registered edge-triggered for reading and writing.
    pub stream: TcpStream,
    /// For master-pass: the master's sequence number, echoed when it closes.
    pub tag: Option<u32>,
    /// Incremented on every timer so that a stale timer is ignored.
    pub timer_generation: u64,
    state: State,
    rbuf: Vec<u8>,
    skip_body: u64,
    wbuf: Vec<u8>,
    wpos: usize,
    body_left: u64,
    keep_alive: bool,
    response_is_ok: bool,
    linger_expired: bool,
}

impl Conn {
    /// Wraps a freshly accepted or received socket.
    pub fn new(stream: TcpStream, tag: Option<u32>) -> Conn {
        Conn {
            stream,
            tag,
            timer_generation: 0,
            state: State::Idle,
            rbuf: Vec::new(),
            skip_body: 0,
            wbuf: Vec::new(),
            wpos: 0,
            body_left: 0,
            keep_alive: true,
            response_is_ok: false,
            linger_expired: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the connection is between requests with nothing buffered, so a
    /// shutting-down worker may close it without cutting a request off.
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle && self.rbuf.is_empty()
    }

    /// A timer fired: the `sleep_us` wait is over (the response can go out),
    /// or the lingering time is up.
    pub fn wake(&mut self) {
        match self.state {
            State::Sleeping => self.state = State::Writing,
            State::Lingering => self.linger_expired = true,
            _ => {}
        }
    }

    /// Makes as much progress as the socket allows.
    pub fn drive(
        &mut self,
        pid: u32,
        counters: &WorkerCounters,
        injected_cpu_us: u64,
    ) -> io::Result<Next> {
        loop {
            match self.state {
                State::Sleeping => return Ok(Next::Wait),
                State::Lingering => {
                    if self.linger_expired {
                        return Ok(Next::Close);
                    }
                    let mut sink = [0u8; 16 * 1024];
                    loop {
                        match self.stream.read(&mut sink) {
                            Ok(0) => return Ok(Next::Close),
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                return Ok(Next::Wait)
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(_) => return Ok(Next::Close),
                        }
                    }
                }
                State::Writing => {
                    if !self.flush()? {
                        return Ok(Next::Wait);
                    }
                    if self.response_is_ok {
                        WorkerCounters::bump(&counters.requests);
                    }
                    if !self.keep_alive {
                        if self.response_is_ok {
                            return Ok(Next::Close);
                        }
                        self.rbuf.clear();
                        let _ = self.stream.shutdown(std::net::Shutdown::Write);
                        self.state = State::Lingering;
                        return Ok(Next::Sleep(LINGER));
                    }
                    self.state = State::Idle;
                }
                State::Idle => {
                    if self.skip_body > 0 {
                        let n = self.skip_body.min(self.rbuf.len() as u64) as usize;
                        self.rbuf.drain(..n);
                        self.skip_body -= n as u64;
                        if self.skip_body > 0 {
                            match self.read_more()? {
                                Some(0) => return Ok(Next::Close),
                                Some(_) => continue,
                                None => return Ok(Next::Wait),
                            }
                        }
                    }
                    match http::parse_request(&self.rbuf) {
                        Parse::Complete(req) => {
                            self.rbuf.drain(..req.head_len);
                            self.skip_body = req.body_len;
                            self.keep_alive = req.keep_alive;
                            match Work::from_target(&req.target) {
                                Ok(work) => {
                                    burn_cpu(work.cpu_us + injected_cpu_us);
                                    self.respond_ok(pid, &work);
                                    if let Some(d) = work.sleep() {
                                        self.state = State::Sleeping;
                                        return Ok(Next::Sleep(d));
                                    }
                                }
                                Err(TargetError::NotFound) => {
                                    WorkerCounters::bump(&counters.bad_requests);
                                    self.respond_error(
                                        pid,
                                        404,
                                        "Not Found",
                                        "not found: the lab serves /\n",
                                        self.keep_alive,
                                    );
                                }
                                Err(TargetError::BadQuery(reason)) => {
                                    WorkerCounters::bump(&counters.bad_requests);
                                    self.respond_error(
                                        pid,
                                        400,
                                        "Bad Request",
                                        &format!("{reason}\n"),
                                        false,
                                    );
                                }
                            }
                            self.state = State::Writing;
                        }
                        Parse::Invalid(reason) => {
                            WorkerCounters::bump(&counters.bad_requests);
                            self.respond_error(
                                pid,
                                400,
                                "Bad Request",
                                &format!("{reason}\n"),
                                false,
                            );
                            self.rbuf.clear();
                            self.state = State::Writing;
                        }
                        Parse::Partial => match self.read_more()? {
                            // EOF: a clean close between requests, or a request
                            // cut off mid-way; either way there is nobody to answer.
                            Some(0) => return Ok(Next::Close),
                            Some(_) => {}
                            None => return Ok(Next::Wait),
                        },
                    }
                }
            }
        }
    }

    /// Reads until the socket would block or the head limit is passed.
    /// `Some(0)` is end of stream, `Some(n)` bytes read, `None` would block.
    fn read_more(&mut self) -> io::Result<Option<usize>> {
        let mut total = 0;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(Some(total).filter(|&t| t > 0).or(Some(0))),
                Ok(n) => {
                    self.rbuf.extend_from_slice(&chunk[..n]);
                    total += n;
                    // Enough to decide: parse before reading (and buffering) more.
                    if self.rbuf.len() > MAX_HEAD_BYTES {
                        return Ok(Some(total));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(if total > 0 { Some(total) } else { None });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn respond_ok(&mut self, pid: u32, work: &Work) {
        let len = work.bytes.unwrap_or(2);
        self.wbuf = http::response_head(200, "OK", pid, len, self.keep_alive);
        match work.bytes {
            None => self.wbuf.extend_from_slice(b"ok"),
            Some(n) if n <= INLINE_BODY => self.wbuf.extend_from_slice(&FILLER[..n as usize]),
            Some(n) => self.body_left = n,
        }
        self.wpos = 0;
        self.response_is_ok = true;
    }

    fn respond_error(&mut self, pid: u32, status: u16, reason: &str, body: &str, keep_alive: bool) {
        self.keep_alive = keep_alive;
        self.wbuf = http::response_head(status, reason, pid, body.len() as u64, keep_alive);
        self.wbuf.extend_from_slice(body.as_bytes());
        self.wpos = 0;
        self.body_left = 0;
        self.response_is_ok = false;
    }

    /// Writes the pending response; `true` when all of it is out.
    fn flush(&mut self) -> io::Result<bool> {
        loop {
            let result = if self.wpos < self.wbuf.len() {
                self.stream
                    .write(&self.wbuf[self.wpos..])
                    .inspect(|&n| self.wpos += n)
            } else if self.body_left > 0 {
                let n = self.body_left.min(FILLER.len() as u64) as usize;
                self.stream
                    .write(&FILLER[..n])
                    .inspect(|&n| self.body_left -= n as u64)
            } else {
                self.wbuf.clear();
                self.wpos = 0;
                return Ok(true);
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
