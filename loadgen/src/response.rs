//! Reading HTTP/1.1 responses incrementally: head with `httparse`, then a
//! body by `Content-Length`, chunked, or until the server closes.

/// Most header bytes accepted in a response head.
pub const MAX_HEAD: usize = 64 * 1024;

/// What the generator needs from one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `X-Worker`, if the server sent a number there.
    pub worker: Option<u32>,
    /// Whether the server will close the connection after it.
    pub close: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// Incremental response parser for one connection.
///
/// What it leaves buffered while it waits for more bytes is bounded: a
/// response head, a chunk-size line or a trailer line longer than the limit
/// ([`MAX_HEAD`] unless made with [`ResponseReader::with_max_head`]) is
/// [`Malformed`], and body bytes are consumed as they arrive.
#[derive(Debug)]
pub struct ResponseReader {
    head: Option<(Response, Body)>,
    first_byte_seen: bool,
    max_head: usize,
}

impl Default for ResponseReader {
    fn default() -> Self {
        ResponseReader::with_max_head(MAX_HEAD)
    }
}

/// Why a response could not be read.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub String);

impl ResponseReader {
    /// A reader whose limit on a head or a line is `max_head` bytes instead
    /// of [`MAX_HEAD`] (fuzzing and tests reach the limit with small inputs).
    pub fn with_max_head(max_head: usize) -> Self {
        ResponseReader {
            head: None,
            first_byte_seen: false,
            max_head,
        }
    }

    fn too_long(&self, what: &str) -> Malformed {
        Malformed(format!("{what} over {} bytes", self.max_head))
    }

    /// Forgets any partial response (a new request on the connection).
    pub fn reset(&mut self) {
        self.head = None;
        self.first_byte_seen = false;
    }

    /// Whether any byte of the current response has arrived.
    pub fn started(&self) -> bool {
        self.first_byte_seen
    }

    /// Consumes what it can from `buf`. `Ok(Some)` when a whole response has
    /// been read (its bytes are removed from `buf`).
    pub fn feed(&mut self, buf: &mut Vec<u8>) -> Result<Option<Response>, Malformed> {
        if !buf.is_empty() {
            self.first_byte_seen = true;
        }
        // A `while`: interim 1xx responses (100 Continue, 103 Early Hints)
        // precede the final one and are skipped (RFC 9110, 15.2).
        while self.head.is_none() {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            // The head's length is over the limit whether it is complete
            // now or still partial with the limit reached (it is at least
            // one byte longer than what has arrived): the same decision
            // whatever the reads' sizes.
            let n = match resp.parse(buf) {
                Ok(httparse::Status::Complete(n)) if n > self.max_head => {
                    return Err(self.too_long("response head"))
                }
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) if buf.len() >= self.max_head => {
                    return Err(self.too_long("response head"))
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(Malformed(format!("not an HTTP response: {e}"))),
            };
            let status = resp.code.unwrap_or(0);
            if (100..200).contains(&status) && status != 101 {
                buf.drain(..n);
                continue;
            }
            let http_1_0 = resp.version == Some(0);
            let mut saw_close = false;
            let mut saw_keep_alive = false;
            let mut length: Option<u64> = None;
            let mut chunked = false;
            let mut worker = None;
            for h in resp.headers.iter() {
                let name = h.name;
                if name.eq_ignore_ascii_case("x-worker") {
                    worker = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse().ok());
                } else if name.eq_ignore_ascii_case("content-length") {
                    let n = content_length(h.value)
                        .ok_or_else(|| Malformed("bad Content-Length".into()))?;
                    if length.is_some_and(|l| l != n) {
                        return Err(Malformed("conflicting Content-Length headers".into()));
                    }
                    length = Some(n);
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    // Chunked only when it is the final coding.
                    chunked = h
                        .value
                        .split(|&b| b == b',')
                        .next_back()
                        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
                } else if name.eq_ignore_ascii_case("connection") {
                    for t in h.value.split(|&b| b == b',') {
                        let t = t.trim_ascii();
                        saw_close |= t.eq_ignore_ascii_case(b"close");
                        saw_keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
                    }
                }
            }
            // `close` wins over `keep-alive`, wherever each appears.
            let mut close = saw_close || (http_1_0 && !saw_keep_alive);
            let body = if status == 101 {
                // Switching Protocols: what follows is not HTTP any more.
                close = true;
                Body::Length(0)
            } else if status == 204 || status == 304 {
                Body::Length(0)
            } else if chunked {
                Body::Chunked(Chunk::Size)
            } else if let Some(n) = length {
                Body::Length(n)
            } else {
                close = true;
                Body::UntilClose
            };
            buf.drain(..n);
            self.head = Some((
                Response {
                    status,
                    worker,
                    close,
                },
                body,
            ));
        }
        let max_head = self.max_head;
        let (resp, body) = self.head.as_mut().expect("set above");
        match body {
            Body::Length(left) => {
                let take = (*left).min(buf.len() as u64);
                buf.drain(..take as usize);
                *left -= take;
                if *left == 0 {
                    let r = *resp;
                    self.reset();
                    return Ok(Some(r));
                }
                Ok(None)
            }
            Body::UntilClose => {
                buf.clear();
                Ok(None) // complete at end of stream: see `finish_at_eof`
            }
            Body::Chunked(state) => loop {
                match *state {
                    // chunk-size = 1*HEXDIG: httparse also takes an empty
                    // or blank size line, as 0 (the last chunk).
                    Chunk::Size if buf.first().is_some_and(|b| !b.is_ascii_hexdigit()) => {
                        return Err(Malformed("bad chunk size".into()))
                    }
                    // A size line over the limit, complete or not (see the head).
                    Chunk::Size => match httparse::parse_chunk_size(buf) {
                        Ok(httparse::Status::Complete((n, _))) if n > max_head => {
                            return Err(Malformed(format!("chunk-size line over {max_head} bytes")))
                        }
                        Ok(httparse::Status::Partial) if buf.len() >= max_head => {
                            return Err(Malformed(format!("chunk-size line over {max_head} bytes")))
                        }
                        Ok(httparse::Status::Complete((n, size))) => {
                            buf.drain(..n);
                            *state = if size == 0 {
                                Chunk::Trailers
                            } else {
                                Chunk::Data(size)
                            };
                        }
                        Ok(httparse::Status::Partial) => return Ok(None),
                        Err(_) => return Err(Malformed("bad chunk size".into())),
                    },
                    Chunk::Data(left) => {
                        let take = left.min(buf.len() as u64);
                        buf.drain(..take as usize);
                        if take < left {
                            *state = Chunk::Data(left - take);
                            return Ok(None);
                        }
                        *state = Chunk::DataEnd;
                    }
                    Chunk::DataEnd => {
                        if buf.len() < 2 {
                            return Ok(None);
                        }
                        if &buf[..2] != b"\r\n" {
                            return Err(Malformed("chunk not followed by CRLF".into()));
                        }
                        buf.drain(..2);
                        *state = Chunk::Size;
                    }
                    Chunk::Trailers => {
                        // Trailer fields, then an empty line; each line
                        // within the limit (as a chunk-size line).
                        let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                            if buf.len() >= max_head {
                                return Err(Malformed(format!(
                                    "trailer line over {max_head} bytes"
                                )));
                            }
                            return Ok(None);
                        };
                        if end + 2 > max_head {
                            return Err(Malformed(format!("trailer line over {max_head} bytes")));
                        }
                        buf.drain(..end + 2);
                        if end == 0 {
                            let r = *resp;
                            self.reset();
                            return Ok(Some(r));
                        }
                    }
                }
            },
        }
    }

    /// The server closed the connection: a response read until close is
    /// complete; anything else partial is an error.
    pub fn finish_at_eof(&mut self) -> Result<Option<Response>, Malformed> {
        match self.head.take() {
            Some((r, Body::UntilClose)) => Ok(Some(r)),
            Some(_) => Err(Malformed(
                "the server closed the connection in the middle of a response".into(),
            )),
            None if self.first_byte_seen => Err(Malformed(
                "the server closed the connection in the middle of a response head".into(),
            )),
            None => Ok(None),
        }
    }
}

/// `Content-Length = 1*DIGIT` (no sign, no blanks inside), within `u64`.
fn content_length(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(chunks: &[&[u8]]) -> Result<Option<Response>, Malformed> {
        let mut r = ResponseReader::default();
        let mut buf = Vec::new();
        for c in chunks {
            buf.extend_from_slice(c);
            if let Some(resp) = r.feed(&mut buf)? {
                return Ok(Some(resp));
            }
        }
        Ok(None)
    }

    #[test]
    fn content_length_across_reads_with_worker() {
        let got = feed_all(&[
            b"HTTP/1.1 200 OK\r\nX-Worker: 42\r\nContent-",
            b"Length: 5\r\n\r\nhel",
            b"lo",
        ])
        .unwrap();
        assert_eq!(
            got,
            Some(Response {
                status: 200,
                worker: Some(42),
                close: false
            })
        );
    }

    #[test]
    fn chunked_body() {
        let got = feed_all(&[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n",
            b"0\r\n\r\n",
        ])
        .unwrap();
        assert_eq!(
            got,
            Some(Response {
                status: 200,
                worker: None,
                close: false
            })
        );
    }

    #[test]
    fn two_pipelined_responses_leave_the_second_in_the_buffer() {
        let mut r = ResponseReader::default();
        let mut buf = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec();
        assert_eq!(r.feed(&mut buf).unwrap().unwrap().status, 200);
        assert_eq!(r.feed(&mut buf).unwrap().unwrap().status, 404);
        assert!(buf.is_empty());
    }

    #[test]
    fn garbage_and_cut_off_responses_are_malformed() {
        assert!(feed_all(&[b"SSH-2.0-OpenSSH\r\n\r\n"]).is_err());
        let mut r = ResponseReader::default();
        let mut buf = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec();
        assert_eq!(r.feed(&mut buf).unwrap(), None);
        assert!(r
            .finish_at_eof()
            .unwrap_err()
            .0
            .contains("middle of a response"));
    }

    #[test]
    fn body_until_close() {
        let mut r = ResponseReader::default();
        let mut buf = b"HTTP/1.0 200 OK\r\n\r\nwhatever".to_vec();
        assert_eq!(r.feed(&mut buf).unwrap(), None);
        assert_eq!(
            r.finish_at_eof().unwrap(),
            Some(Response {
                status: 200,
                worker: None,
                close: true
            })
        );
    }
}
