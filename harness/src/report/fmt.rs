//! Numbers for people: latencies, rates, shares, dates, CPU lists and
//! kernel counters as the report prints them.

use crate::model::summary::KernelJson;
use crate::model::time::UtcTime;

/// Latency from µs: `850 µs`, `1.23 ms`, `12.3 ms`, `123 ms`, `1.23 s`.
pub(super) fn fmt_us(us: f64) -> String {
    if !us.is_finite() {
        return "–".into();
    }
    let us = us.max(0.0);
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else if us < 100_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else if us < 1_000_000.0 {
        format!("{:.0} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// A latency range in the unit of its upper end: `4.59–5.48 ms`.
pub(super) fn fmt_us_range(lo: f64, hi: f64) -> String {
    if !(lo.is_finite() && hi.is_finite()) {
        return "–".into();
    }
    let (div, unit) = if hi < 1000.0 {
        (1.0, "µs")
    } else if hi < 1_000_000.0 {
        (1e3, "ms")
    } else {
        (1e6, "s")
    };
    let num = |v: f64| {
        let v = v.max(0.0) / div;
        if v >= 100.0 {
            format!("{v:.0}")
        } else if v >= 10.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.2}")
        }
    };
    if unit == "µs" {
        format!("{:.0}–{:.0} µs", lo.max(0.0), hi)
    } else {
        format!("{}–{} {unit}", num(lo), num(hi))
    }
}

/// A rate without its unit: `850`, `5.21k`, `52.1k`, `521k`, `1.23M`.
pub(super) fn fmt_rate(r: f64) -> String {
    if !r.is_finite() {
        return "–".into();
    }
    let a = r.abs();
    if a < 1000.0 {
        format!("{r:.0}")
    } else if a < 10_000.0 {
        format!("{:.2}k", r / 1e3)
    } else if a < 100_000.0 {
        format!("{:.1}k", r / 1e3)
    } else if a < 1_000_000.0 {
        format!("{:.0}k", r / 1e3)
    } else {
        format!("{:.2}M", r / 1e6)
    }
}

/// A rate with its unit: `52.1k req/s`.
pub(super) fn fmt_rps(r: f64) -> String {
    format!("{} req/s", fmt_rate(r))
}

/// A share (0..1) as a percentage: `0.4%`, `12.3%`, `100%`.
pub(super) fn fmt_share(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let p = x * 100.0;
    if p > 0.0 && p < 0.05 {
        return "<0.1%".into();
    }
    let s = format!("{p:.1}");
    format!("{}%", s.strip_suffix(".0").unwrap_or(&s))
}

/// A ratio with a few significant digits.
pub(super) fn fmt_num(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "–".into()
    }
}

/// Seconds without noise: `0.3`, `5`, `12.5`.
pub(super) fn fmt_seconds(s: f64) -> String {
    let t = fmt_num(s, 1);
    t.strip_suffix(".0").map_or(t.clone(), str::to_string)
}

/// Milliseconds since the epoch as `2024-05-01 12:34:56 UTC`.
pub(super) fn fmt_utc(ms: u64) -> String {
    let t = UtcTime::from_unix_secs(ms / 1000);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// CPU list as ranges: `0-3,6`.
pub(super) fn fmt_cpus(cpus: &[usize]) -> String {
    let mut v = cpus.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    if parts.is_empty() {
        "unknown".into()
    } else {
        parts.join(",")
    }
}

/// The kernel counters that are not zero, named as in /proc/net/netstat.
pub(super) fn fmt_kernel(k: &KernelJson, replacements: u64) -> String {
    let mut parts: Vec<String> = [
        ("ListenOverflows", k.listen_overflows),
        ("ListenDrops", k.listen_drops),
        ("TCPReqQFullDrop", k.req_q_full_drop),
        ("TCPMigrateReqSuccess", k.migrate_req_success),
        ("TCPMigrateReqFailure", k.migrate_req_failure),
        ("OutRsts", k.out_rsts),
        ("accept queue max", k.max_accept_queue),
        ("workers replaced", replacements),
    ]
    .iter()
    .filter(|(_, v)| *v != 0)
    .map(|(name, v)| format!("{name} {v}"))
    .collect();
    if parts.is_empty() {
        parts.push("–".into());
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_read_in_the_unit_a_person_would_use() {
        assert_eq!(fmt_us(850.0), "850 µs");
        assert_eq!(fmt_us(1234.0), "1.23 ms");
        assert_eq!(fmt_us(12_345.0), "12.3 ms");
        assert_eq!(fmt_us(123_456.0), "123 ms");
        assert_eq!(fmt_us(1_234_567.0), "1.23 s");
        assert_eq!(fmt_us(f64::NAN), "–");
        assert_eq!(fmt_us_range(4_590.0, 5_480.0), "4.59–5.48 ms");
        assert_eq!(fmt_us_range(850.0, 12_300.0), "0.85–12.3 ms");
        assert_eq!(fmt_us_range(300.0, 410.0), "300–410 µs");
    }

    #[test]
    fn rates_read_in_thousands() {
        assert_eq!(fmt_rate(850.0), "850");
        assert_eq!(fmt_rate(5_213.0), "5.21k");
        assert_eq!(fmt_rate(52_130.0), "52.1k");
        assert_eq!(fmt_rate(521_300.0), "521k");
        assert_eq!(fmt_rate(1_234_000.0), "1.23M");
        assert_eq!(fmt_rps(52_130.0), "52.1k req/s");
    }

    #[test]
    fn shares_are_percentages() {
        assert_eq!(fmt_share(0.0), "0%");
        assert_eq!(fmt_share(0.004), "0.4%");
        assert_eq!(fmt_share(0.0004), "<0.1%");
        assert_eq!(fmt_share(0.123), "12.3%");
        assert_eq!(fmt_share(0.5), "50%");
        assert_eq!(fmt_share(1.0), "100%");
    }

    #[test]
    fn epoch_milliseconds_become_a_utc_date() {
        assert_eq!(fmt_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(fmt_utc(1_714_566_896_000), "2024-05-01 12:34:56 UTC");
    }

    #[test]
    fn seconds_keep_a_decimal_only_when_needed() {
        assert_eq!(fmt_seconds(0.3), "0.3");
        assert_eq!(fmt_seconds(5.0), "5");
    }

    #[test]
    fn cpu_lists_collapse_into_ranges() {
        assert_eq!(fmt_cpus(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(fmt_cpus(&[5]), "5");
        assert_eq!(fmt_cpus(&[]), "unknown");
    }

    #[test]
    fn only_non_zero_kernel_counters_are_named() {
        let k = KernelJson {
            listen_overflows: 3,
            max_accept_queue: 17,
            ..KernelJson::default()
        };
        assert_eq!(fmt_kernel(&k, 0), "ListenOverflows 3, accept queue max 17");
        assert_eq!(fmt_kernel(&KernelJson::default(), 0), "–");
    }
}
