//! Regressions from fuzzing the worker's request side (`fuzz/`, target
//! `request`), and a property test of its chunk-split invariance.
//!
//! The fuzz model itself (`fuzz/src/request_model.rs`: drive `parse_request`
//! and `Work::from_target` as `conn.rs` does, with its invariants) is compiled
//! in here, so every kept input in `fuzz/regressions/request/` runs on stable.

#[path = "../../../fuzz/src/chunks.rs"]
mod chunks;
#[path = "../../../fuzz/src/request_model.rs"]
mod request_model;

use lab_common::http::{parse_request, Parse, MAX_HEAD_BYTES};
use proptest::prelude::*;

fn complete(buf: &[u8]) -> lab_common::http::Request {
    match parse_request(buf) {
        Parse::Complete(r) => r,
        other => panic!("{other:?} for {:?}", String::from_utf8_lossy(buf)),
    }
}

#[test]
fn every_kept_fuzz_input_passes_the_model() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/regressions/request"
    );
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("fuzz/regressions/request") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| request_model::check(&data));
        assert!(r.is_ok(), "{} fails the request model", path.display());
        n += 1;
    }
    assert!(n >= 4, "only {n} kept inputs found in {dir}");
}

#[test]
fn connection_close_wins_over_keep_alive_in_any_order() {
    for head in [
        &b"GET / HTTP/1.1\r\nConnection: close, keep-alive\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n",
        b"GET / HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: close, Keep-Alive\r\n\r\n",
    ] {
        assert!(
            !complete(head).keep_alive,
            "{:?}",
            String::from_utf8_lossy(head)
        );
    }
    assert!(complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive, Upgrade\r\n\r\n").keep_alive);
    // The conn model: nothing after the closing request is served.
    let out = request_model::drive(&[
        b"GET / HTTP/1.1\r\nConnection: close, keep-alive\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    ]);
    assert_eq!(out.events.len(), 1);
    assert!(out.closed);
}

#[test]
fn content_length_must_be_digits_only() {
    for v in ["+3", "-0", "3 3", "0x3", ""] {
        let head = format!("POST / HTTP/1.1\r\nContent-Length: {v}\r\n\r\nabc");
        assert_eq!(
            parse_request(head.as_bytes()),
            Parse::Invalid("bad Content-Length".into()),
            "{v:?}"
        );
    }
    assert_eq!(
        complete(b"POST / HTTP/1.1\r\nContent-Length:  3 \r\n\r\nabc").body_len,
        3
    );
}

#[test]
fn conflicting_content_lengths_are_invalid_equal_ones_are_not() {
    assert_eq!(
        parse_request(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 10\r\n\r\n"),
        Parse::Invalid("conflicting Content-Length headers".into())
    );
    assert_eq!(
        complete(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc").body_len,
        3
    );
}

#[test]
fn head_limit_is_the_same_decision_whatever_the_reads() {
    // One read of a head well over the limit, and the same head arriving in
    // 1000-byte reads: both Invalid, neither ever Complete.
    let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    big.resize(MAX_HEAD_BYTES + 100, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    let whole = request_model::drive(&[&big]);
    let reads: Vec<&[u8]> = big.chunks(1000).collect();
    assert_eq!(request_model::drive(&reads), whole);
    assert!(
        matches!(&whole.events[..], [request_model::Event::Invalid(m)] if m.contains("larger"))
    );
}

/// Requests the lab would see, pipelined, with the headers the parser looks
/// at, some bodies, and now and then a byte of garbage.
fn request_stream() -> impl Strategy<Value = Vec<u8>> {
    let target = prop_oneof![
        Just("/".to_string()),
        (0u64..20_000_000, 0u64..70_000_000, 0u64..2_000_000_000)
            .prop_map(|(c, s, b)| format!("/?cpu_us={c}&sleep_us={s}&bytes={b}")),
        "/[a-z_=&?0-9+]{0,12}",
    ];
    let header = prop_oneof![
        Just("Host: x".to_string()),
        prop::sample::select(vec![
            "close",
            "keep-alive",
            "close, keep-alive",
            "Keep-Alive, close",
            "upgrade"
        ])
        .prop_map(|v| format!("Connection: {v}")),
        prop::sample::select(vec!["0", "3", "+3", " 3 ", "x"])
            .prop_map(|v| format!("Content-Length: {v}")),
        Just("Transfer-Encoding: chunked".to_string()),
    ];
    let request = (
        prop::sample::select(vec!["GET", "POST"]),
        target,
        prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0"]),
        prop::collection::vec(header, 0..4),
        prop::sample::select(vec!["", "abc"]),
    )
        .prop_map(|(m, t, v, hs, body)| {
            let mut s = format!("{m} {t} {v}\r\n");
            for h in hs {
                s.push_str(&h);
                s.push_str("\r\n");
            }
            s.push_str("\r\n");
            s.push_str(body);
            s.into_bytes()
        });
    (
        prop::collection::vec(request, 1..4),
        prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
    )
        .prop_map(|(reqs, garbage)| {
            let mut bytes = reqs.concat();
            if let Some((at, b)) = garbage {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// The same bytes in any reads give the same requests, the same refusal,
    /// the same leftover: the fuzz model's check (whole, these read sizes,
    /// one byte at a time) plus arbitrary cut points.
    #[test]
    fn request_parsing_does_not_depend_on_how_the_bytes_are_split(
        bytes in request_stream(),
        sizes in prop::collection::vec(0u8..=255, 0..7),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut input = vec![sizes.len() as u8];
        input.extend_from_slice(&sizes);
        input.extend_from_slice(&bytes);
        request_model::check(&input);

        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        at.sort_unstable();
        let mut reads = Vec::new();
        let mut from = 0;
        for &to in &at {
            reads.push(&bytes[from..to]);
            from = to;
        }
        reads.push(&bytes[from..]);
        prop_assert_eq!(request_model::drive(&reads), request_model::drive(&[&bytes]));
    }
}
