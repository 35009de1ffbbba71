//! How a fuzz input is cut into the reads a socket would deliver.
//!
//! Input layout: byte 0 (mod 8) is `k`, the next `k` bytes are read sizes
//! (each `b + 1`, used in turn, cyclically), the rest is the payload. With
//! `k = 0` the payload arrives in one read. Byte 0 / 8 is a parameter a
//! target may use (the response target: its size limit).

/// Splits a fuzz input into (parameter, read sizes, payload).
pub fn split_input(data: &[u8]) -> (u8, Vec<usize>, &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return (0, Vec::new(), &[]);
    };
    let k = (first % 8) as usize;
    let k = k.min(rest.len());
    let sizes = rest[..k].iter().map(|&b| b as usize + 1).collect();
    (first / 8, sizes, &rest[k..])
}

/// Cuts `payload` into reads of the given sizes, cyclically (one read when
/// `sizes` is empty).
pub fn cut<'a>(payload: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    if sizes.is_empty() {
        return vec![payload];
    }
    let mut out = Vec::new();
    let mut rest = payload;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
        i += 1;
    }
    out
}

/// The splits every input is checked under: whole, the input's own read
/// sizes, one byte at a time (every split point; capped in length so that an
/// O(n^2) re-parse stays fast) else 7-byte reads.
pub fn splits<'a>(payload: &'a [u8], sizes: &[usize]) -> Vec<Vec<&'a [u8]>> {
    let fine = if payload.len() <= 1024 { 1 } else { 7 };
    vec![
        cut(payload, &[]),
        cut(payload, sizes),
        cut(payload, &[fine]),
    ]
}
