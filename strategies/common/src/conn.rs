//! One client connection inside a worker: read, parse, do the work, respond,
//! repeat while keep-alive holds.
//!
//! The state machine does no polling of its own: the event loop calls
//! [`Conn::drive`] when the socket is ready, and [`Conn::on_deadline`] when
//! the connection's [`Conn::deadline`] has passed; `drive` reads and writes
//! until the socket would block or to a decision (the registration is
//! edge-triggered).
//!
//! # Two system calls per keep-alive request
//!
//! A read that returns less than the buffer it was given has emptied the
//! socket's receive queue, as nginx assumes: the connection is then
//! *drained* and is not read again (a read that would only return `EAGAIN`)
//! until the event loop reports it readable ([`Conn::on_readable`]): bytes
//! that arrive after the read raise a new edge. So a keep-alive request
//! costs one `recvfrom` and one `sendto`. A peer's FIN that the same event
//! reported (`EPOLLRDHUP`) keeps the connection undrained, so its end of
//! stream is read at once and not left to the keep-alive timeout.
//!
//! # Limits a slow or idle client runs into
//!
//! Every connection has at most one deadline at a time, kept in the worker's
//! timer heap (no thread, no timer per connection):
//! - fresh connection, nothing received: closed (without an answer) after
//!   `header_timeout` from its accept;
//! - a request under way (its first byte arrived; the head or a body being
//!   skipped is not complete): answered `408 Request Timeout` and closed
//!   `header_timeout` after its first byte, however steadily bytes trickle
//!   in (slowloris: a byte a second never resets it);
//! - idle between requests on a keep-alive connection: closed after
//!   `keepalive_timeout` from the end of the last response;
//! - a head larger than [`MAX_HEAD_BYTES`](crate::http::MAX_HEAD_BYTES):
//!   `400` and close, decided as soon as that many bytes are buffered;
//! - `sleep_us`: the request's own timer; lingering after an error: [`LINGER`].
//!
//! A response being written has no deadline (a client that stops reading
//! holds its connection until it closes; see the worker's `--max-conns`).
//!
//! # When the worker stops
//!
//! [`Conn::set_closing`]: a response not yet started (including one waiting
//! out its `sleep_us`) says `Connection: close` and the connection closes
//! after it (lingering, so a request the client pipelined behind it does not
//! turn into an RST that destroys the response); a response whose first bytes
//! are already out finishes as it was, and the connection then counts as
//! idle. An idle connection is closed once
//! it has been idle for [`STOP_IDLE_GRACE`] (at once if it already has), after
//! a last read: a request that arrived meanwhile is served, not dropped. The
//! grace is what keeps a busy keep-alive client from losing a request: it
//! gets `Connection: close` on its next response instead of a close racing
//! its next request. A request the client sends at the very instant an idle
//! connection is closed is lost all the same (HTTP/1.1 has no way around that
//! race; clients retry idempotent requests).

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::config::{Timeouts, WorkerEnv};
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

/// How long a connection lingers after an error response or a close the
/// server decided on.
pub const LINGER: Duration = Duration::from_millis(500);

/// How long a stopping worker leaves an idle keep-alive connection open for
/// its client's next request (answered with `Connection: close`) before it
/// closes it.
pub const STOP_IDLE_GRACE: Duration = Duration::from_millis(200);

/// What the event loop should do after [`Conn::drive`].
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Wait for the socket to become ready or the deadline to pass.
    Wait,
    /// Close the connection.
    Close,
}

/// A client connection.
pub struct Conn {
    /// The socket, registered edge-triggered for reading and writing.
    pub stream: TcpStream,
    /// For master-pass: the master's sequence number, echoed when it closes.
    pub tag: Option<u32>,
    /// The deadline of this connection's live entry in the timer heap.
    pub armed: Option<Instant>,
    /// Identifies that entry (stale entries carry another id).
    pub timer_id: u64,
    state: State,
    rbuf: Vec<u8>,
    skip_body: u64,
    wbuf: Vec<u8>,
    wpos: usize,
    body_left: u64,
    keep_alive: bool,
    response_is_ok: bool,
    /// The server, not the client, ends the connection after this response.
    server_closes: bool,
    /// When the current phase began: the accept, the end of the last
    /// response, or the first byte of the request under way.
    since: Instant,
    /// Requests answered on this connection.
    answered: u64,
    /// End of a `sleep_us` wait or of the lingering time.
    wake_at: Option<Instant>,
    linger_expired: bool,
    /// The worker is stopping.
    closing: bool,
    /// The last read came back short and no readiness event has come since:
    /// reading now would only return `EAGAIN` (see the module doc).
    drained: bool,
    /// The event loop reported the peer's FIN (`EPOLLRDHUP`): read to the
    /// end of stream, never assume drained.
    peer_closed: bool,
}

impl Conn {
    /// Wraps a freshly accepted or received socket.
    pub fn new(stream: TcpStream, tag: Option<u32>) -> Conn {
        Conn {
            stream,
            tag,
            armed: None,
            timer_id: 0,
            state: State::Idle,
            rbuf: Vec::new(),
            skip_body: 0,
            wbuf: Vec::new(),
            wpos: 0,
            body_left: 0,
            keep_alive: true,
            response_is_ok: false,
            server_closes: false,
            since: Instant::now(),
            answered: 0,
            wake_at: None,
            linger_expired: false,
            closing: false,
            drained: false,
            peer_closed: false,
        }
    }

    /// The event loop saw the socket readable (`read_closed`: with the
    /// peer's FIN): there may be bytes to read again.
    pub fn on_readable(&mut self, read_closed: bool) {
        self.drained = false;
        self.peer_closed |= read_closed;
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the connection is between requests with nothing buffered, so a
    /// shutting-down worker may close it without cutting a request off.
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle && !self.request_under_way()
    }

    fn request_under_way(&self) -> bool {
        !self.rbuf.is_empty() || self.skip_body > 0
    }

    /// The worker is stopping: end the connection after the next response,
    /// or once idle for [`STOP_IDLE_GRACE`].
    pub fn set_closing(&mut self) {
        self.closing = true;
        // A response formatted but not started yet (a `sleep_us` wait, or a
        // socket that was full from the first byte) can still say it.
        if self.keep_alive
            && self.wpos == 0
            && matches!(self.state, State::Sleeping | State::Writing)
        {
            if let Some(end) = self.wbuf.windows(4).position(|w| w == b"\r\n\r\n") {
                self.wbuf
                    .splice(end + 2..end + 2, b"Connection: close\r\n".iter().copied());
                self.keep_alive = false;
                self.server_closes = true;
            }
        }
    }

    /// When this connection needs [`Conn::on_deadline`], if ever.
    pub fn deadline(&self, limits: &Timeouts) -> Option<Instant> {
        match self.state {
            State::Sleeping | State::Lingering => self.wake_at,
            State::Writing => None,
            State::Idle if self.request_under_way() => Some(self.since + limits.header),
            State::Idle => {
                let limit = if self.answered == 0 {
                    limits.header
                } else {
                    limits.keepalive
                };
                let limit = if self.closing {
                    limit.min(STOP_IDLE_GRACE)
                } else {
                    limit
                };
                Some(self.since + limit)
            }
        }
    }

    /// The deadline has passed: end the `sleep_us` wait or the lingering, or
    /// (after a last read) time the request or the idle connection out.
    pub fn on_deadline(&mut self, env: &WorkerEnv) -> io::Result<Next> {
        match self.state {
            State::Sleeping => {
                self.wake_at = None;
                self.state = State::Writing;
            }
            State::Lingering => self.linger_expired = true,
            State::Writing => {}
            State::Idle => {
                // Whatever arrived is read (and answered) first.
                if self.drive(env)? == Next::Close {
                    return Ok(Next::Close);
                }
                let due = self.deadline(&env.timeouts);
                if self.state != State::Idle || due.is_some_and(|d| d > Instant::now()) {
                    return Ok(Next::Wait);
                }
                if !self.request_under_way() {
                    // A fresh connection on which nothing arrived has nobody
                    // to answer; an idle keep-alive one is simply closed.
                    if self.closing {
                        // The stopping worker's grace, not a timeout.
                    } else if self.answered == 0 {
                        WorkerCounters::bump(&env.counters.header_timeouts);
                    } else {
                        WorkerCounters::bump(&env.counters.idle_timeouts);
                    }
                    return Ok(Next::Close);
                }
                WorkerCounters::bump(&env.counters.header_timeouts);
                self.respond_error(
                    env.pid,
                    408,
                    "Request Timeout",
                    &format!(
                        "the request was not complete within {:?} (--header-timeout)\n",
                        env.timeouts.header
                    ),
                    false,
                );
                self.rbuf.clear();
                self.skip_body = 0;
                self.state = State::Writing;
            }
        }
        self.drive(env)
    }

    /// Makes as much progress as the socket allows.
    pub fn drive(&mut self, env: &WorkerEnv) -> io::Result<Next> {
        let counters = env.counters;
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
                    self.answered += 1;
                    if !self.keep_alive {
                        if self.response_is_ok && !self.server_closes {
                            // The client asked for the close.
                            return Ok(Next::Close);
                        }
                        self.rbuf.clear();
                        self.skip_body = 0;
                        let _ = self.stream.shutdown(std::net::Shutdown::Write);
                        self.state = State::Lingering;
                        self.wake_at = Some(Instant::now() + LINGER);
                        continue;
                    }
                    self.state = State::Idle;
                    self.since = Instant::now();
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
                    if self.rbuf.is_empty() {
                        // Nothing of a request yet: read before parsing, and
                        // start the request's clock at its first byte.
                        match self.read_more()? {
                            Some(0) => return Ok(Next::Close),
                            Some(_) => {
                                self.since = Instant::now();
                                continue;
                            }
                            None => return Ok(Next::Wait),
                        }
                    }
                    match http::parse_request(&self.rbuf) {
                        Parse::Complete(req) => {
                            self.rbuf.drain(..req.head_len);
                            self.skip_body = req.body_len;
                            self.keep_alive = req.keep_alive && !self.closing;
                            self.server_closes = req.keep_alive && self.closing;
                            match Work::from_target(&req.target) {
                                Ok(work) => {
                                    burn_cpu(work.cpu_us + env.injected_cpu_us);
                                    self.respond_ok(env.pid, &work);
                                    if let Some(d) = work.sleep() {
                                        self.state = State::Sleeping;
                                        self.wake_at = Some(Instant::now() + d);
                                        return Ok(Next::Wait);
                                    }
                                }
                                Err(TargetError::NotFound) => {
                                    WorkerCounters::bump(&counters.bad_requests);
                                    self.respond_error(
                                        env.pid,
                                        404,
                                        "Not Found",
                                        "not found: the lab serves /\n",
                                        self.keep_alive,
                                    );
                                }
                                Err(TargetError::BadQuery(reason)) => {
                                    WorkerCounters::bump(&counters.bad_requests);
                                    self.respond_error(
                                        env.pid,
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
                                env.pid,
                                400,
                                "Bad Request",
                                &format!("{reason}\n"),
                                false,
                            );
                            self.rbuf.clear();
                            self.state = State::Writing;
                        }
                        Parse::Partial => match self.read_more()? {
                            // EOF: a request cut off mid-way; nobody to answer.
                            Some(0) => return Ok(Next::Close),
                            Some(_) => {}
                            None => return Ok(Next::Wait),
                        },
                    }
                }
            }
        }
    }

    /// Reads until the socket is drained (a short read, or `WouldBlock`) or
    /// the head limit is passed. `Some(0)` is end of stream, `Some(n)` bytes
    /// read, `None` would block (or is known to: drained).
    fn read_more(&mut self) -> io::Result<Option<usize>> {
        if self.drained {
            return Ok(None);
        }
        let mut total = 0;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(Some(total).filter(|&t| t > 0).or(Some(0))),
                Ok(n) => {
                    self.rbuf.extend_from_slice(&chunk[..n]);
                    total += n;
                    // A short read emptied the receive queue (unless a FIN
                    // waits behind the bytes: then read on to it).
                    if n < chunk.len() && !self.peer_closed {
                        self.drained = true;
                        return Ok(Some(total));
                    }
                    // Enough to decide: parse before reading (and buffering) more.
                    if self.rbuf.len() > MAX_HEAD_BYTES {
                        return Ok(Some(total));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.drained = true;
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
