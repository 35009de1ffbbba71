//! Drives loadgen's `ResponseReader` the way `engine.rs` does, and checks
//! invariants on every step.
//!
//! `engine.rs` appends every read to the slot's buffer, calls
//! `ResponseReader::feed` on it, stops reading responses after one that
//! closes the connection (it then only waits for the end of stream), and
//! calls `finish_at_eof` when the server closes. [`drive`] does the same
//! without a socket, feeding until the reader needs more bytes, so that
//! pipelined responses are all read.

use loadgen::response::{Malformed, Response, ResponseReader, MAX_HEAD};

use crate::chunks::{split_input, splits};

/// How the byte stream ended for the reader.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// `feed` refused the bytes (its reason is not compared: whether a head
    /// over the limit is also malformed further on depends on bytes that
    /// have not arrived when the limit is reached).
    Malformed,
    /// A response said the server closes; the engine reads no more responses.
    Closed,
    /// The stream ended; what `finish_at_eof` said.
    Eof(Result<Option<Response>, Malformed>),
}

/// Everything the reader reported for one byte stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Each complete response, with the stream offset at which it ended.
    pub responses: Vec<(usize, Response)>,
    /// How it ended.
    pub end: End,
}

fn check_response(r: &Response) {
    assert!(
        r.status == 101 || !(100..200).contains(&r.status),
        "interim 1xx response {} reported as the response",
        r.status
    );
}

/// Feeds the reads in order, then the end of stream, to a reader with the
/// given limit on a head or a line.
pub fn drive(reads: &[&[u8]], max_head: usize) -> Outcome {
    let mut reader = ResponseReader::with_max_head(max_head);
    let mut buf = Vec::new();
    let mut fed = 0usize;
    let mut responses = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        fed += read.len();
        loop {
            let before = buf.len();
            match reader.feed(&mut buf) {
                Ok(Some(resp)) => {
                    assert!(buf.len() < before, "a response from no bytes");
                    check_response(&resp);
                    responses.push((fed - buf.len(), resp));
                    if resp.close {
                        return Outcome {
                            responses,
                            end: End::Closed,
                        };
                    }
                }
                Ok(None) => {
                    assert!(buf.len() <= before, "feed grew the buffer");
                    assert!(
                        buf.len() < max_head.max(2),
                        "{} bytes left buffered (limit {max_head})",
                        buf.len()
                    );
                    if fed > responses.last().map_or(0, |r| r.0) {
                        assert!(reader.started(), "bytes arrived but not started()");
                    }
                    break;
                }
                Err(e) => {
                    assert!(!e.0.is_empty(), "Malformed without a reason");
                    return Outcome {
                        responses,
                        end: End::Malformed,
                    };
                }
            }
        }
    }
    let end = reader.finish_at_eof();
    if let Ok(Some(r)) = &end {
        check_response(r);
        assert!(r.close, "a response completed by the close must say close");
    }
    Outcome {
        responses,
        end: End::Eof(end),
    }
}

/// The fuzz target: every split of the input gives the same responses at the
/// same offsets, and no response is reported before its last byte.
pub fn check(data: &[u8]) {
    let (param, sizes, payload) = split_input(data);
    let max_head = match param {
        0 => MAX_HEAD,
        p => p as usize * 8,
    };
    let mut all = splits(payload, &sizes).into_iter();
    let whole = drive(&all.next().expect("the whole split"), max_head);
    if let Some(&(end, _)) = whole.responses.first() {
        if end > 0 {
            let cut = drive(&[&payload[..end - 1]], max_head);
            assert!(
                cut.responses.is_empty(),
                "a response reported without its last byte: {cut:?}"
            );
        }
    }
    for reads in all {
        let got = drive(&reads, max_head);
        assert_eq!(
            got,
            whole,
            "split into {} reads differs from one read",
            reads.len()
        );
    }
}
