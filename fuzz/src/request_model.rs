//! Drives lab-common's request parsing the way `conn.rs` does, and checks
//! invariants on every step.
//!
//! `conn.rs` keeps a read buffer, skips a request body by `Content-Length`,
//! re-parses the whole buffer with `http::parse_request` after every read,
//! drains the head of a complete request, hands its target to
//! `Work::from_target`, and stops reading requests once a response closes the
//! connection (`Connection: close`, HTTP/1.0, a bad query, an invalid head).
//! [`Conn`] does the same without a socket, so a fuzz input can be delivered
//! in any number of reads.

use lab_common::http::{parse_request, Parse, Request, MAX_BODY_BYTES, MAX_HEAD_BYTES};
use lab_common::work::{TargetError, Work, MAX_BYTES, MAX_CPU_US, MAX_SLEEP_US};

use crate::chunks::{split_input, splits};

/// What the worker decided for one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete request head and what its target asks for.
    Request {
        /// The parsed head.
        req: Request,
        /// `Work::from_target(&req.target)`.
        work: Result<Work, TargetError>,
    },
    /// `parse_request` refused the head (answered with 400 and a close).
    Invalid(String),
}

/// Where a connection ended up after all its input.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Every request decided, in order.
    pub events: Vec<Event>,
    /// The connection stopped reading requests (a response closes it).
    pub closed: bool,
    /// Bytes read but not yet consumed (a partial head).
    pub rbuf: Vec<u8>,
    /// Body bytes still to skip.
    pub skip_body: u64,
}

/// A socket-less model of `conn::Conn`'s request side.
#[derive(Debug, Default)]
pub struct Conn {
    rbuf: Vec<u8>,
    skip_body: u64,
    closed: bool,
    events: Vec<Event>,
    fed: usize,
    consumed: usize,
}

impl Conn {
    /// One read delivered `chunk`.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.closed {
            return;
        }
        self.rbuf.extend_from_slice(chunk);
        self.fed += chunk.len();
        self.run();
        assert_eq!(self.fed - self.consumed, self.rbuf.len(), "byte accounting");
    }

    fn run(&mut self) {
        loop {
            if self.skip_body > 0 {
                let n = self.skip_body.min(self.rbuf.len() as u64) as usize;
                self.rbuf.drain(..n);
                self.consumed += n;
                self.skip_body -= n as u64;
                if self.skip_body > 0 {
                    return;
                }
            }
            match parse_request(&self.rbuf) {
                Parse::Complete(req) => {
                    check_complete(&self.rbuf, &req);
                    self.rbuf.drain(..req.head_len);
                    self.consumed += req.head_len;
                    self.skip_body = req.body_len;
                    let work = Work::from_target(&req.target);
                    check_work(&req.target, &work);
                    // As conn.rs: a bad query is answered 400 with a close; a
                    // 404 or a 200 keeps the connection if the request asked.
                    let keep_alive = match &work {
                        Ok(_) | Err(TargetError::NotFound) => req.keep_alive,
                        Err(TargetError::BadQuery(_)) => false,
                    };
                    self.events.push(Event::Request { req, work });
                    if !keep_alive {
                        self.close();
                        return;
                    }
                }
                Parse::Invalid(reason) => {
                    assert!(!reason.is_empty(), "an Invalid without a reason");
                    self.events.push(Event::Invalid(reason));
                    self.close();
                    return;
                }
                Parse::Partial => {
                    // conn.rs reads more only while the buffer is within the
                    // head limit; parse_request must have decided by then.
                    assert!(
                        self.rbuf.len() <= MAX_HEAD_BYTES,
                        "Partial with {} bytes buffered (limit {MAX_HEAD_BYTES})",
                        self.rbuf.len()
                    );
                    return;
                }
            }
        }
    }

    /// The response closes the connection: conn.rs drops what it buffered
    /// (and lingers, reading and discarding) or closes.
    fn close(&mut self) {
        self.closed = true;
        self.consumed += self.rbuf.len();
        self.rbuf.clear();
        self.skip_body = 0;
    }

    /// The state after the last read.
    pub fn finish(self) -> Outcome {
        Outcome {
            events: self.events,
            closed: self.closed,
            rbuf: self.rbuf,
            skip_body: self.skip_body,
        }
    }
}

/// Invariants of one `Parse::Complete` for the buffer it was parsed from.
fn check_complete(buf: &[u8], req: &Request) {
    assert!(req.head_len > 0, "empty head reported complete");
    assert!(
        req.head_len <= buf.len(),
        "head_len {} > {} bytes given",
        req.head_len,
        buf.len()
    );
    assert!(
        req.head_len <= MAX_HEAD_BYTES,
        "head over the limit accepted"
    );
    assert!(
        req.body_len <= MAX_BODY_BYTES,
        "body over the limit accepted"
    );
    assert_eq!(buf[req.head_len - 1], b'\n', "a head ends with a line end");
    assert!(!req.target.is_empty(), "empty target");
    assert!(
        !req.target.bytes().any(|b| b <= b' ' || b == 0x7f),
        "target with whitespace or a control byte: {:?}",
        req.target
    );
    check_headers(&buf[..req.head_len], req);
    // The head alone parses the same (nothing after it mattered) ...
    assert_eq!(
        parse_request(&buf[..req.head_len]),
        Parse::Complete(Request {
            target: req.target.clone(),
            keep_alive: req.keep_alive,
            head_len: req.head_len,
            body_len: req.body_len,
        }),
        "the head alone parses differently"
    );
    // ... and one byte less is not yet a request.
    assert_eq!(
        parse_request(&buf[..req.head_len - 1]),
        Parse::Partial,
        "complete before its last byte arrived"
    );
}

/// An independent reading of the head's headers: `Connection: close`
/// always closes, and the body length is exactly what the (one, all-digits)
/// `Content-Length` says.
fn check_headers(head: &[u8], req: &Request) {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut r = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(n)) = r.parse(head) else {
        panic!("a complete head that httparse does not parse");
    };
    assert_eq!(n, req.head_len);
    let mut lengths = Vec::new();
    let mut close = r.version == Some(0);
    let mut asked_keep_alive = false;
    for h in r.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            lengths.push(h.value);
        } else if h.name.eq_ignore_ascii_case("connection") {
            for t in h.value.split(|&b| b == b',') {
                let t = t.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    asked_keep_alive = true;
                }
            }
        }
    }
    let has_close_token = r.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("connection")
            && h.value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    });
    if has_close_token {
        assert!(!req.keep_alive, "Connection: close, yet keep-alive");
    } else {
        assert_eq!(req.keep_alive, !close || asked_keep_alive, "keep-alive");
    }
    match lengths.as_slice() {
        [] => assert_eq!(req.body_len, 0, "a body without Content-Length"),
        [v, rest @ ..] => {
            assert!(
                rest.iter().all(|r| r.trim_ascii() == v.trim_ascii()),
                "differing Content-Length headers accepted"
            );
            let v = v.trim_ascii();
            assert!(
                !v.is_empty() && v.iter().all(u8::is_ascii_digit),
                "Content-Length {:?} is not 1*DIGIT",
                String::from_utf8_lossy(v)
            );
            let n: u64 = std::str::from_utf8(v).unwrap().parse().unwrap();
            assert_eq!(req.body_len, n, "body length");
        }
    }
}

/// Invariants of `Work::from_target`.
fn check_work(target: &str, work: &Result<Work, TargetError>) {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    match work {
        Ok(w) => {
            assert_eq!(path, "/", "work for a path other than /");
            assert!(w.cpu_us <= MAX_CPU_US);
            assert!(w.sleep_us <= MAX_SLEEP_US);
            assert!(w.bytes.unwrap_or(0) <= MAX_BYTES);
            assert_eq!(w.sleep().is_some(), w.sleep_us > 0);
            // The canonical target of this work asks for the same work.
            let mut canon = format!("/?cpu_us={}&sleep_us={}", w.cpu_us, w.sleep_us);
            if let Some(b) = w.bytes {
                canon.push_str(&format!("&bytes={b}"));
            }
            assert_eq!(Work::from_target(&canon).as_ref(), Ok(w), "{canon}");
        }
        Err(TargetError::NotFound) => assert_ne!(path, "/", "404 for /"),
        Err(TargetError::BadQuery(m)) => {
            assert_eq!(path, "/", "a query refused on a path that is a 404");
            assert!(!m.is_empty(), "a BadQuery without a reason");
        }
    }
}

/// Feeds `payload` in the given reads.
pub fn drive(reads: &[&[u8]]) -> Outcome {
    let mut conn = Conn::default();
    for r in reads {
        conn.push(r);
    }
    conn.finish()
}

/// The fuzz target: every split of the input gives the same outcome, and
/// every step keeps the invariants above.
pub fn check(data: &[u8]) {
    let (_, sizes, payload) = split_input(data);
    let mut all = splits(payload, &sizes).into_iter();
    let whole = drive(&all.next().expect("the whole split"));
    for reads in all {
        let got = drive(&reads);
        assert_eq!(
            got,
            whole,
            "split into {} reads differs from one read",
            reads.len()
        );
    }
}
