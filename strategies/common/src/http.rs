//! HTTP/1.1 as far as the lab needs it: parse one request head with
//! `httparse`, decide keep-alive, and format response heads.

use std::fmt::Write as _;

/// Largest request head accepted (nginx's `large_client_header_buffers` is
/// 4 x 8 KiB); a longer one is answered with 400 and a close.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers in one request.
pub const MAX_HEADERS: usize = 64;
/// Largest request body read and discarded (the lab's requests have none).
pub const MAX_BODY_BYTES: u64 = 1 << 20;

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// The request target, e.g. `/?cpu_us=50`.
    pub target: String,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// Length of the request head in bytes (consumed from the buffer).
    pub head_len: usize,
    /// Body bytes that follow the head and must be skipped.
    pub body_len: u64,
}

/// Outcome of trying to parse a request from the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// A whole request head.
    Complete(Request),
    /// More bytes needed.
    Partial,
    /// Not a request the lab serves; answer 400 with this reason and close.
    Invalid(String),
}

/// Parses the request head at the start of `buf`.
pub fn parse_request(buf: &[u8]) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > MAX_HEAD_BYTES {
                Parse::Invalid(format!("request head larger than {MAX_HEAD_BYTES} bytes"))
            } else {
                Parse::Partial
            };
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Parse::Invalid(format!("more than {MAX_HEADERS} headers"))
        }
        Err(e) => return Parse::Invalid(format!("malformed request: {e}")),
    };
    if head_len > MAX_HEAD_BYTES {
        return Parse::Invalid(format!("request head larger than {MAX_HEAD_BYTES} bytes"));
    }
    let version = req.version.unwrap_or(1);
    let mut saw_close = false;
    let mut saw_keep_alive = false;
    let mut body_len: Option<u64> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                saw_close |= token.eq_ignore_ascii_case(b"close");
                saw_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            match content_length(h.value) {
                // Two different lengths: which one frames the body is
                // ambiguous (request smuggling), so neither is taken.
                Some(n) if body_len.is_some_and(|l| l != n) => {
                    return Parse::Invalid("conflicting Content-Length headers".into())
                }
                Some(n) if n <= MAX_BODY_BYTES => body_len = Some(n),
                Some(_) => {
                    return Parse::Invalid(format!(
                        "request body larger than {MAX_BODY_BYTES} bytes"
                    ))
                }
                None => return Parse::Invalid("bad Content-Length".into()),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parse::Invalid(
                "Transfer-Encoding in a request is not supported; send Content-Length".into(),
            );
        }
    }
    // `close` wins over `keep-alive`, in whatever order they come; HTTP/1.0
    // closes unless it asked for keep-alive.
    let keep_alive = !saw_close && (version >= 1 || saw_keep_alive);
    Parse::Complete(Request {
        target: req.path.unwrap_or("/").to_string(),
        keep_alive,
        head_len,
        body_len: body_len.unwrap_or(0),
    })
}

/// `Content-Length = 1*DIGIT` (RFC 9110, 8.6): no sign and no blanks inside
/// (`str::parse::<u64>` alone would take `+5`), within `u64`.
fn content_length(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Formats a response head.
pub fn response_head(
    status: u16,
    reason: &str,
    worker_pid: u32,
    content_length: u64,
    keep_alive: bool,
) -> Vec<u8> {
    let mut head = String::with_capacity(128);
    let _ = write!(
        head,
        "HTTP/1.1 {status} {reason}\r\nServer: lab-server\r\nX-Worker: {worker_pid}\r\nContent-Type: text/plain\r\nContent-Length: {content_length}\r\n"
    );
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_is_the_default_for_http_1_1() {
        let Parse::Complete(r) = parse_request(b"GET /?cpu_us=5 HTTP/1.1\r\nHost: x\r\n\r\n")
        else {
            panic!()
        };
        assert_eq!(r.target, "/?cpu_us=5");
        assert!(r.keep_alive);
        assert_eq!(r.head_len, 36);
    }

    #[test]
    fn connection_close_and_http_1_0_close() {
        let Parse::Complete(r) = parse_request(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        else {
            panic!()
        };
        assert!(!r.keep_alive);
        let Parse::Complete(r) = parse_request(b"GET / HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert!(!r.keep_alive);
        let Parse::Complete(r) = parse_request(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        else {
            panic!()
        };
        assert!(r.keep_alive);
    }

    #[test]
    fn partial_then_oversized_head() {
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Parse::Partial
        );
        let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        big.resize(MAX_HEAD_BYTES + 10, b'a');
        assert!(matches!(parse_request(&big), Parse::Invalid(m) if m.contains("larger")));
    }

    #[test]
    fn garbage_and_chunked_bodies_are_invalid() {
        assert!(matches!(
            parse_request(b"\x16\x03\x01\x02\x00\r\n\r\n"),
            Parse::Invalid(_)
        ));
        assert!(matches!(
            parse_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Parse::Invalid(m) if m.contains("Transfer-Encoding")
        ));
        let Parse::Complete(r) = parse_request(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
        else {
            panic!()
        };
        assert_eq!(r.body_len, 3);
    }

    #[test]
    fn response_head_carries_the_worker_pid() {
        let h = String::from_utf8(response_head(200, "OK", 42, 2, false)).unwrap();
        assert!(h.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(h.contains("X-Worker: 42\r\n"));
        assert!(h.contains("Content-Length: 2\r\n"));
        assert!(h.ends_with("Connection: close\r\n\r\n"));
    }
}
