//! Reading loadgen's JSON result (`--json`, schema `prefork-lab.loadgen.v2`)
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

/// One slice of `timeline`, read by field name, its histogram decoded.
#[derive(Debug)]
pub struct Slice {
    /// `start_s`.
    pub start_s: f64,
    /// `due`.
    pub due: u64,
    /// `ok`.
    pub ok: u64,
    /// `errors`, by kind (only non-zero kinds are written).
    pub errors: BTreeMap<String, u64>,
    /// `idle_connect_errors`.
    pub idle_connect_errors: u64,
    /// `p99_us`.
    pub p99_us: u64,
    /// The decoded `hdr_v2_base64`.
    pub latency: Histogram<u64>,
}

impl Slice {
    /// All its errors.
    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// `timeline`, every slice checked for what holds in any slice: its
/// histogram holds exactly its `ok` requests, its `p99_us` is that
/// histogram's, error kinds are known and non-zero, and
/// `ok + errors == due + idle_connect_errors`.
#[track_caller]
pub fn timeline(result: &Value) -> Vec<Slice> {
    let slices = result["timeline"]
        .as_array()
        .unwrap_or_else(|| panic!("loadgen result has no \"timeline\" array: {result:#}"));
    slices
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let errors: BTreeMap<String, u64> = s["errors"]
                .as_object()
                .unwrap_or_else(|| panic!("slice {i} has no \"errors\" object: {s}"))
                .iter()
                .map(|(k, v)| {
                    assert!(
                        ERROR_KINDS.contains(&k.as_str()),
                        "slice {i}: unknown error kind {k:?}"
                    );
                    let n = v
                        .as_u64()
                        .unwrap_or_else(|| panic!("slice {i}: {k} is {v}"));
                    assert!(n > 0, "slice {i}: only non-zero kinds are written: {s}");
                    (k.clone(), n)
                })
                .collect();
            let latency = decode_histogram(
                s["hdr_v2_base64"]
                    .as_str()
                    .unwrap_or_else(|| panic!("slice {i} has no histogram: {s}")),
            );
            let slice = Slice {
                start_s: s["start_s"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("slice {i} has no start_s: {s}")),
                due: uint(s, "due"),
                ok: uint(s, "ok"),
                errors,
                idle_connect_errors: uint(s, "idle_connect_errors"),
                p99_us: uint(s, "p99_us"),
                latency,
            };
            assert_eq!(
                slice.latency.len(),
                slice.ok,
                "slice {i}: its histogram must hold one latency per ok request"
            );
            let p99 = if slice.ok == 0 {
                0
            } else {
                slice.latency.value_at_quantile(0.99)
            };
            assert_eq!(slice.p99_us, p99, "slice {i}: p99_us vs its histogram");
            assert_eq!(
                slice.ok + slice.errors_total(),
                slice.due + slice.idle_connect_errors,
                "slice {i}: every request due in it ends ok or as one error: {s}"
            );
            slice
        })
        .collect()
}

/// Checks that the timeline adds up to the totals exactly: ok, every error
/// kind, and due == sent + unsent. Returns the timeline.
#[track_caller]
pub fn timeline_adding_up(result: &Value) -> Vec<Slice> {
    let t = timeline(result);
    let sum = |f: fn(&Slice) -> u64| t.iter().map(f).sum::<u64>();
    assert_eq!(
        sum(|s| s.ok),
        uint(result, "ok"),
        "sum of the slices' ok vs ok"
    );
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for s in &t {
        for (k, n) in &s.errors {
            *by_kind.entry(k.clone()).or_default() += n;
        }
    }
    let mut totals = errors(result);
    totals.retain(|_, n| *n > 0);
    assert_eq!(by_kind, totals, "the slices' errors by kind vs `errors`");
    assert_eq!(
        sum(|s| s.due),
        uint(result, "sent") + uint(result, "unsent"),
        "sum of the slices' due vs sent + unsent"
    );
    assert_eq!(
        sum(|s| s.idle_connect_errors),
        uint(result, "idle_connect_errors"),
        "sum of the slices' idle_connect_errors vs idle_connect_errors"
    );
    let interval = result["timeline_interval_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("no timeline_interval_s: {}", result["timeline_interval_s"]));
    for (i, s) in t.iter().enumerate() {
        assert!(
            (s.start_s - i as f64 * interval).abs() < 1e-9,
            "slice {i} starts at {} s, want {} s",
            s.start_s,
            i as f64 * interval
        );
    }
    t
}

/// Each worker's `latency` histogram, decoded, by pid; panics if a worker has
/// none or its `count` disagrees with the decoded histogram.
#[track_caller]
pub fn worker_latencies(result: &Value) -> BTreeMap<i32, Histogram<u64>> {
    result["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("loadgen result has no \"workers\" array: {result:#}"))
        .iter()
        .map(|w| {
            let pid = uint(w, "worker") as i32;
            (pid, histogram(w, "latency"))
        })
        .collect()
}
