//! The human summary of a result.

use super::*;

/// Formats µs for people.
pub fn fmt_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us >= 1000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{us}µs")
    }
}

/// The human summary printed on stdout.
pub fn summary(r: &LoadResult) -> String {
    use std::fmt::Write as _;
    let c = &r.config;
    let mut s = String::new();
    let loop_kind = match c.rate_rps {
        Some(rate) => format!(
            "open loop at {rate:.0} req/s{} ({})",
            c.rate_steps
                .iter()
                .map(|s| format!(", {:.0} from {:.3}s", s.rate_rps, s.at_s))
                .collect::<String>(),
            serde_json::to_value(c.arrivals)
                .unwrap_or_default()
                .as_str()
                .unwrap_or("")
        ),
        None => "closed loop".into(),
    };
    let mut mode = if c.mode == Mode::Close {
        "close".to_string()
    } else {
        "keepalive".to_string()
    };
    let recycle: Vec<String> = [
        c.requests_per_conn.map(|n| format!("every {n} requests")),
        c.conn_lifetime_s.map(|t| format!("after {t}s")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !recycle.is_empty() {
        mode += &format!(" (a new connection {})", recycle.join(" or "));
    }
    let _ = writeln!(
        s,
        "loadgen {}: {mode}, {} connections, {} thread(s), {:.1}s (+{:.1}s warm-up), {loop_kind}",
        c.target, c.connections, c.threads, c.duration_s, c.warmup_s
    );
    let _ = writeln!(
        s,
        "  requests  {} ok, {} errors, {:.1} req/s{}",
        r.ok,
        r.errors.total(),
        r.throughput_rps,
        r.target_rate_rps
            .map(|t| format!(" (sent {:.1} of {t:.1} req/s asked)", r.achieved_rate_rps))
            .unwrap_or_default()
    );
    let h = &r.latency;
    let _ = writeln!(
        s,
        "  latency   p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        fmt_us(h.p50_us),
        fmt_us(h.p90_us),
        fmt_us(h.p99_us),
        fmt_us(h.p999_us),
        fmt_us(h.max_us)
    );
    if r.target_rate_rps.is_some() {
        let h = &r.service;
        let _ = writeln!(
            s,
            "  service   p50 {}  p99 {}  max {}",
            fmt_us(h.p50_us),
            fmt_us(h.p99_us),
            fmt_us(h.max_us)
        );
    }
    if c.mode == Mode::Close {
        let _ = writeln!(
            s,
            "  connect   p50 {}  p99 {}",
            fmt_us(r.connect.p50_us),
            fmt_us(r.connect.p99_us)
        );
    }
    if !r.workers.is_empty() {
        let total: u64 = r.workers.iter().map(|w| w.requests).sum();
        let parts: Vec<String> = r
            .workers
            .iter()
            .map(|w| {
                format!(
                    "{} {:.1}%",
                    w.worker,
                    w.requests as f64 * 100.0 / total.max(1) as f64
                )
            })
            .collect();
        let _ = writeln!(s, "  workers   {}: {}", r.workers.len(), parts.join(", "));
    }
    for w in &r.warnings {
        let _ = writeln!(s, "  warning: {}", w.message());
    }
    s
}
