//! Regressions from fuzzing loadgen's response reader (`fuzz/`, target
//! `response`), and a property test of its chunk-split invariance.
//!
//! The fuzz model itself (`fuzz/src/response_model.rs`: drive
//! `ResponseReader` as `engine.rs` does, with its invariants) is compiled in
//! here, so every kept input in `fuzz/regressions/response/` runs on stable.

#[path = "../../fuzz/src/chunks.rs"]
mod chunks;
#[path = "../../fuzz/src/response_model.rs"]
mod response_model;

use loadgen::response::{Response, ResponseReader, MAX_HEAD};
use proptest::prelude::*;
use response_model::{drive, End};

fn ok(status: u16, close: bool) -> Response {
    Response {
        status,
        worker: None,
        close,
    }
}

/// Feeds `bytes` in one read to a default reader.
fn feed_once(bytes: &[u8]) -> Result<Option<Response>, String> {
    let mut buf = bytes.to_vec();
    ResponseReader::default().feed(&mut buf).map_err(|m| m.0)
}

#[test]
fn every_kept_fuzz_input_passes_the_model() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/regressions/response");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("fuzz/regressions/response") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| response_model::check(&data));
        assert!(r.is_ok(), "{} fails the response model", path.display());
        n += 1;
    }
    assert!(n >= 6, "only {n} kept inputs found in {dir}");
}

/// Found by the fuzzer (`regressions/response/interim-1xx-reported-as-final`):
/// a 1xx head was reported as the response, and the final response left
/// behind as garbage.
#[test]
fn interim_1xx_responses_are_skipped_not_reported() {
    let bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let whole = drive(&[bytes], MAX_HEAD);
    assert_eq!(whole.responses, vec![(bytes.len(), ok(200, false))]);
    assert_eq!(whole.end, End::Eof(Ok(None)));
    let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(drive(&one_by_one, MAX_HEAD), whole);
    // 101 ends HTTP on the connection: reported, and closing.
    assert_eq!(
        feed_once(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"),
        Ok(Some(ok(101, true)))
    );
}

#[test]
fn a_head_over_the_limit_is_malformed_even_when_it_arrives_in_one_read() {
    let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: ".to_vec();
    head.resize(MAX_HEAD + 10, b'a');
    head.extend_from_slice(b"\r\n\r\n");
    assert!(feed_once(&head).unwrap_err().contains("response head over"));
    let reads: Vec<&[u8]> = head.chunks(4096).collect();
    assert_eq!(drive(&reads, MAX_HEAD).end, End::Malformed);
}

#[test]
fn chunk_size_and_trailer_lines_cannot_buffer_without_bound() {
    let ext = "a".repeat(MAX_HEAD + 10);
    let mut r = ResponseReader::default();
    let mut buf =
        format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;{ext}").into_bytes();
    assert!(r
        .feed(&mut buf)
        .unwrap_err()
        .0
        .contains("chunk-size line over"));

    let mut r = ResponseReader::default();
    let mut buf = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: {ext}")
        .into_bytes();
    assert!(r
        .feed(&mut buf)
        .unwrap_err()
        .0
        .contains("trailer line over"));

    // Within the limit, a long extension and trailer are fine.
    let mut r = ResponseReader::with_max_head(64);
    let mut buf =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;e=1\r\nok\r\n0\r\nX-T: 1\r\n\r\n"
            .to_vec();
    assert_eq!(r.feed(&mut buf), Ok(Some(ok(200, false))));
    assert!(buf.is_empty());
}

#[test]
fn an_empty_or_blank_chunk_size_line_is_malformed_not_the_last_chunk() {
    for line in ["\r\n", " \r\n", ";x\r\n"] {
        let bytes = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{line}\r\n");
        assert_eq!(
            feed_once(bytes.as_bytes()),
            Err("bad chunk size".to_string()),
            "{line:?}"
        );
    }
}

#[test]
fn content_length_is_digits_only_and_unambiguous() {
    for v in ["+2", "2 2", "-2"] {
        let bytes = format!("HTTP/1.1 200 OK\r\nContent-Length: {v}\r\n\r\nok");
        assert_eq!(
            feed_once(bytes.as_bytes()),
            Err("bad Content-Length".into())
        );
    }
    assert_eq!(
        feed_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nok"),
        Err("conflicting Content-Length headers".into())
    );
    assert_eq!(
        feed_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"),
        Ok(Some(ok(200, false)))
    );
}

#[test]
fn connection_close_wins_and_chunked_must_be_the_final_coding() {
    assert_eq!(
        feed_once(b"HTTP/1.1 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"),
        Ok(Some(ok(200, true)))
    );
    assert_eq!(
        feed_once(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"),
        Ok(Some(ok(200, false)))
    );
    // `chunked, gzip`: not chunked framing, so the body runs to the close.
    let out = drive(
        &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"],
        MAX_HEAD,
    );
    assert!(out.responses.is_empty());
    assert_eq!(out.end, End::Eof(Ok(Some(ok(200, true)))));
}

/// Responses a server could send, back to back: Content-Length, chunked
/// (with extensions and trailers), 1xx, 204, until-close; now and then a
/// byte of garbage.
fn response_stream() -> impl Strategy<Value = Vec<u8>> {
    let body = "[a-z]{0,20}";
    let one = prop_oneof![
        (body, any::<Option<u16>>()).prop_map(|(b, w)| {
            let worker = w.map(|w| format!("X-Worker: {w}\r\n")).unwrap_or_default();
            format!(
                "HTTP/1.1 200 OK\r\n{worker}Content-Length: {}\r\n\r\n{b}",
                b.len()
            )
        }),
        (prop::collection::vec("[a-z]{1,12}", 0..4), any::<bool>()).prop_map(
            |(chunks, trailer)| {
                let mut s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_string();
                for c in chunks {
                    s.push_str(&format!("{:x};e=1\r\n{c}\r\n", c.len()));
                }
                s.push_str("0\r\n");
                if trailer {
                    s.push_str("X-T: 1\r\n");
                }
                s.push_str("\r\n");
                s
            }
        ),
        Just("HTTP/1.1 100 Continue\r\n\r\n".to_string()),
        Just("HTTP/1.1 204 No Content\r\n\r\n".to_string()),
        Just(
            "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx".to_string()
        ),
        (body).prop_map(|b| format!("HTTP/1.0 200 OK\r\n\r\n{b}")),
    ];
    (
        prop::collection::vec(one, 1..4),
        prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
    )
        .prop_map(|(rs, garbage)| {
            let mut bytes = rs.concat().into_bytes();
            if let Some((at, b)) = garbage {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// The same bytes in any reads give the same responses at the same
    /// offsets and the same end: the fuzz model's check (whole, these read
    /// sizes, one byte at a time; never complete before the last byte) plus
    /// arbitrary cut points, under the default and a small limit.
    #[test]
    fn response_reading_does_not_depend_on_how_the_bytes_are_split(
        bytes in response_stream(),
        sizes in prop::collection::vec(0u8..=255, 0..7),
        limit in prop_oneof![Just(0u8), 4u8..32],
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut input = vec![limit * 8 + sizes.len() as u8];
        input.extend_from_slice(&sizes);
        input.extend_from_slice(&bytes);
        response_model::check(&input);

        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        at.sort_unstable();
        let mut reads = Vec::new();
        let mut from = 0;
        for &to in &at {
            reads.push(&bytes[from..to]);
            from = to;
        }
        reads.push(&bytes[from..]);
        let max_head = if limit == 0 { MAX_HEAD } else { limit as usize * 8 };
        prop_assert_eq!(drive(&reads, max_head), drive(&[&bytes], max_head));
    }
}
