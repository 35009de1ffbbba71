//! Reading loadgen's JSON result (`--json`, schema `prefork-lab.loadgen.v1`)
//! the way any consumer would: by field name, with the histograms decoded
//! from their base64 HdrHistogram V2 form by the `hdrhistogram` crate itself,
//! not by loadgen's own code.

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use serde_json::Value;

/// The unsigned integer at a dotted `path` (e.g. `"errors.refused"`).
#[track_caller]
pub fn uint(result: &Value, path: &str) -> u64 {
    let mut v = result;
    for key in path.split('.') {
        v = &v[key];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("loadgen result has no unsigned integer at {path:?}: {result:#}"))
}

/// The names of the error counters in `errors`.
pub const ERROR_KINDS: [&str; 8] = [
    "refused",
    "reset",
    "closed",
    "timeout",
    "malformed",
    "non_2xx",
    "connect_other",
    "unfinished",
];

/// Every error counter, by name; panics if `errors` has other keys or lacks one.
#[track_caller]
pub fn errors(result: &Value) -> BTreeMap<String, u64> {
    let obj = result["errors"]
        .as_object()
        .unwrap_or_else(|| panic!("loadgen result has no \"errors\" object: {result:#}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    let mut expected = ERROR_KINDS.to_vec();
    expected.sort();
    assert_eq!(
        keys, expected,
        "unexpected error kinds in {}",
        result["errors"]
    );
    ERROR_KINDS
        .iter()
        .map(|k| (k.to_string(), uint(result, &format!("errors.{k}"))))
        .collect()
}

/// All measured errors.
#[track_caller]
pub fn total_errors(result: &Value) -> u64 {
    errors(result).values().sum()
}

/// `workers` as `pid -> (requests, connections)`.
#[track_caller]
pub fn workers(result: &Value) -> BTreeMap<i32, (u64, u64)> {
    let mut m = BTreeMap::new();
    for w in result["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("loadgen result has no \"workers\" array: {result:#}"))
    {
        let pid = uint(w, "worker") as i32;
        let entry = (uint(w, "requests"), uint(w, "connections"));
        assert!(
            m.insert(pid, entry).is_none(),
            "worker {pid} appears twice in {}",
            result["workers"]
        );
    }
    m
}

/// The kinds of the warnings, in order.
#[track_caller]
pub fn warning_kinds(result: &Value) -> Vec<String> {
    result["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("loadgen result has no \"warnings\" array: {result:#}"))
        .iter()
        .map(|w| {
            w["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("warning without a \"kind\": {w}"))
                .to_string()
        })
        .collect()
}

/// Decodes base64 HdrHistogram V2 text.
#[track_caller]
pub fn decode_histogram(base64_text: &str) -> Histogram<u64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64_text)
        .unwrap_or_else(|e| panic!("histogram is not base64: {e}"));
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .unwrap_or_else(|e| panic!("histogram is not HdrHistogram V2: {e:?}"))
}

/// The histogram `name` (`latency`, `service`, `connect`, `ttfb`), decoded;
/// panics if its summary `count` disagrees with the decoded histogram.
#[track_caller]
pub fn histogram(result: &Value, name: &str) -> Histogram<u64> {
    let text = result[name]["hdr_v2_base64"]
        .as_str()
        .unwrap_or_else(|| panic!("loadgen result has no {name}.hdr_v2_base64: {result:#}"));
    let h = decode_histogram(text);
    assert_eq!(
        h.len(),
        uint(result, &format!("{name}.count")),
        "{name}: the decoded histogram and the `count` field disagree"
    );
    h
}

/// The summary of histogram `name` for messages: its fields without the
/// (long) base64 histogram.
pub fn summary(result: &Value, name: &str) -> Value {
    let mut v = result[name].clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("hdr_v2_base64");
    }
    v
}

/// Values in `h` above `limit_us` (whole buckets above the limit).
pub fn count_above(h: &Histogram<u64>, limit_us: u64) -> u64 {
    h.iter_recorded()
        .filter(|v| v.value_iterated_to() > limit_us)
        .map(|v| v.count_at_value())
        .sum()
}
