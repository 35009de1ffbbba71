//! A tiny blocking HTTP/1.1 client over `std::net::TcpStream`, just enough to
//! talk to `lab-server`: requests, responses read by `Content-Length`, and raw
//! bytes for the bad-input tests. Every read and write has a timeout, so a
//! server that hangs makes a test fail instead of hang.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};

use super::IO_TIMEOUT;

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers in the order received (names as sent).
    pub headers: Vec<(String, String)>,
    /// Body (by `Content-Length`, or up to EOF without one).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The pid in `X-Worker`; panics if it is missing or not a pid.
    #[track_caller]
    pub fn worker(&self) -> i32 {
        let v = self
            .header("X-Worker")
            .unwrap_or_else(|| panic!("response has no X-Worker header: {self:?}"));
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("X-Worker {v:?} is not a pid"))
    }

    /// Whether the response says `Connection: close`.
    pub fn says_close(&self) -> bool {
        self.header("Connection")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("close"))
    }
}

/// One client connection with its read buffer (so keep-alive responses that
/// arrive together are split correctly).
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to `addr` with read and write timeouts of `IO_TIMEOUT`.
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr} failed: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// The client's local port (the remote port of the server-side socket).
    pub fn local_port(&self) -> u16 {
        self.stream.local_addr().unwrap().port()
    }

    /// Sends `GET target HTTP/1.1`, with `Connection: close` if `close`.
    #[track_caller]
    pub fn send_get(&mut self, target: &str, close: bool) {
        let conn = if close { "Connection: close\r\n" } else { "" };
        let req = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{conn}\r\n");
        self.stream
            .write_all(req.as_bytes())
            .unwrap_or_else(|e| panic!("sending {target:?} failed: {e}"));
    }

    /// Sends a GET and reads its response.
    #[track_caller]
    pub fn get(&mut self, target: &str, close: bool) -> Response {
        self.send_get(target, close);
        self.read_response()
            .unwrap_or_else(|| panic!("connection closed before a response to GET {target:?}"))
    }

    /// Reads one response; `None` if the server closed the connection cleanly
    /// before sending any byte of it. Panics on a timeout, a reset, a partial
    /// or unparsable response.
    #[track_caller]
    pub fn read_response(&mut self) -> Option<Response> {
        self.try_read_response()
            .unwrap_or_else(|e| panic!("reading a response failed: {e}"))
    }

    /// As `read_response`, with errors returned instead of panicking.
    pub fn try_read_response(&mut self) -> io::Result<Option<Response>> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.fill()? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "EOF inside a response head: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        };
        let (status, headers) = parse_head(&self.buf[..head_end])?;
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
            .map(|(_, v)| v.trim().parse::<usize>())
            .transpose()
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad Content-Length: {e}"),
                )
            })?;
        let body = match length {
            Some(n) => {
                while self.buf.len() < head_end + n {
                    if self.fill()? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("EOF after {} of {n} body bytes", self.buf.len() - head_end),
                        ));
                    }
                }
                let body = self.buf[head_end..head_end + n].to_vec();
                self.buf.drain(..head_end + n);
                body
            }
            None => {
                while self.fill()? != 0 {}
                let body = self.buf[head_end..].to_vec();
                self.buf.clear();
                body
            }
        };
        Ok(Some(Response {
            status,
            headers,
            body,
        }))
    }

    /// Reads until the server closes; panics if it sends more bytes or does
    /// not close within `IO_TIMEOUT`. A reset counts as closed.
    #[track_caller]
    pub fn expect_closed(&mut self) {
        match self.fill() {
            Ok(0) => {}
            Ok(n) => panic!(
                "expected the server to close, got {n} more bytes: {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected the server to close the connection, got: {e}"),
        }
    }

    /// Whether anything (a byte of a response, or EOF) is readable right now,
    /// without waiting.
    pub fn anything_readable_now(&mut self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        self.stream.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let r = self.stream.peek(&mut b);
        self.stream.set_nonblocking(false).unwrap();
        !matches!(r, Err(ref e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).map_err(|e| {
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {IO_TIMEOUT:?} (read timeout)"),
                )
            } else {
                e
            }
        })?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

/// One request on a fresh connection with `Connection: close`, read fully.
#[track_caller]
pub fn get(addr: SocketAddr, target: &str) -> Response {
    Client::connect(addr).get(target, true)
}

/// How the server ended a connection that carried bad input.
#[derive(Debug)]
pub enum BadInputOutcome {
    /// It answered (and then closed or reset).
    Answered(Response),
    /// It closed without answering (EOF).
    ClosedWithoutAnswer,
    /// It reset the connection without a readable answer.
    Reset,
}

/// Sends `bytes` on a fresh connection, then (if `shutdown_write`) shuts down
/// the write side, and reads until the server closes. A write that fails
/// because the server already closed counts as a close. Panics if the server
/// neither answers nor closes within `IO_TIMEOUT`, or sends something that is
/// not an HTTP response.
#[track_caller]
pub fn send_bad_input(addr: SocketAddr, bytes: &[u8], shutdown_write: bool) -> BadInputOutcome {
    let mut c = Client::connect(addr);
    if let Err(e) = c.stream.write_all(bytes) {
        match e.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {}
            _ => panic!("writing {} bytes of bad input failed ({e}): the server neither read them nor closed", bytes.len()),
        }
    }
    if shutdown_write {
        let _ = c.stream.shutdown(Shutdown::Write);
    }
    let mut reset = false;
    loop {
        match c.fill() {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                reset = true;
                break;
            }
            Err(e) => panic!("after bad input the server neither answered nor closed: {e}"),
        }
    }
    if c.buf.is_empty() {
        return if reset {
            BadInputOutcome::Reset
        } else {
            BadInputOutcome::ClosedWithoutAnswer
        };
    }
    let raw = String::from_utf8_lossy(&c.buf).into_owned();
    match c.try_read_response() {
        Ok(Some(r)) => BadInputOutcome::Answered(r),
        // A reset may cut the answer short: keep the head if it is complete,
        // else just the status.
        _ if reset && raw.starts_with("HTTP/1.1 ") && raw.len() >= 12 => {
            let head = find(&c.buf, b"\r\n\r\n").and_then(|i| parse_head(&c.buf[..i + 4]).ok());
            let (status, headers) = head.unwrap_or_else(|| {
                (raw[9..12].parse().unwrap_or_else(|_| panic!("bad status line in {raw:?}")), Vec::new())
            });
            BadInputOutcome::Answered(Response { status, headers, body: Vec::new() })
        }
        other => panic!("after bad input the server sent something that is not an HTTP response ({other:?}): {raw:?}"),
    }
}

fn parse_head(head: &[u8]) -> io::Result<(u16, Vec<(String, String)>)> {
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{what} in response head {:?}",
                String::from_utf8_lossy(head)
            ),
        )
    };
    let text = std::str::from_utf8(head).map_err(|_| bad("non-UTF-8 bytes"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let rest = status_line
        .strip_prefix("HTTP/1.1 ")
        .ok_or_else(|| bad("not HTTP/1.1"))?;
    let status = rest
        .get(..3)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("a header line without ':'"))?;
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok((status, headers))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
