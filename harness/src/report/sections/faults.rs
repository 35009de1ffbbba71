//! The report's "Under faults" section: per scenario, what each target's
//! clients saw, how long it took to recover, and the kernel counters that
//! explain it.

use crate::model::faults::FaultCell;
use crate::model::summary::{Spread, Summary};
use crate::report::doc::{heading, text, Block, Inline};
use crate::report::fmt::{fmt_num, fmt_us};

/// The section's heading (and anchor).
pub(super) const HEADING: &str = "Under faults";

/// What each scenario does, and what to look for.
fn about(scenario: &str) -> &'static str {
    match scenario {
        "worker-crash" => "The busiest worker hangs (SIGSTOP) and is killed with SIGKILL 200 ms later, as a watchdog kills a wedged worker; the master replaces it. While it hangs, what the strategy keeps giving it waits: a SO_REUSEPORT listener's queue fills with its hash share; when the worker dies, a listener its master keeps (reuseport, nginx:reuseport) keeps that queue for the replacement, while one the worker opened itself (reuseport:worker-owned) dies with it and the kernel resets those connections unless net.ipv4.tcp_migrate_req moves them to a sibling listener; a shared queue simply loses one taker; master-pass, as Node, loses the one connection the worker had not acknowledged, and master-pass:reroute routes it to another worker.",
        "rolling-restart" => "Every worker in turn is replaced gracefully (lab-server: SIGHUP, one worker at a time: it stops taking connections, finishes its own, exits, a new one takes the slot; nginx: a reload, all old workers at once; Apache: SIGUSR1, a graceful restart, likewise all at once; Node: the replacement listens before the old worker is disconnected).",
        "slow-worker" => "The busiest worker is stopped (SIGSTOP) for 200 ms, twice, 600 ms apart. A shared queue lets the others take its share while it is stopped; a reuseport listener keeps receiving its hash share, which waits; master-pass keeps handing it connections until its acknowledgements stop.",
        "overload" => "The offered rate jumps from 25% to 150% of the calibrated capacity for 0.8 s (a new connection per request, up to 2048 at once: more than a 511 backlog), then falls back. Accept queues overflow: the kernel drops the handshake's last ACK or the SYN (ListenOverflows, ListenDrops) or answers with SYN cookies, and the clients retransmit after 1 s; requests the generator could not send wait and are charged from their due time. Recovery is when the backlog has drained.",
        _ => "",
    }
}

fn med_range(s: &Spread, fmt: impl Fn(f64) -> String) -> String {
    if s.values.is_empty() {
        return "–".into();
    }
    if s.values.len() == 1 || s.min == s.max {
        return fmt(s.median);
    }
    format!("{} [{}–{}]", fmt(s.median), fmt(s.min), fmt(s.max))
}

fn per_10k(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x < 10.0 {
        fmt_num(x, 1)
    } else {
        fmt_num(x, 0)
    }
}

fn ms(x: f64) -> String {
    format!("{} ms", fmt_num(x, 0))
}

fn recovery(c: &FaultCell) -> String {
    let rounds = c.runs.len();
    match (c.recover_ms.values.is_empty(), c.not_recovered) {
        (true, _) => format!("not within the window ({rounds} of {rounds})"),
        (false, 0) => med_range(&c.recover_ms, ms),
        (false, n) => format!(
            "{}; not within the window in {n} of {rounds}",
            med_range(&c.recover_ms, ms)
        ),
    }
}

fn errors_by_kind(c: &FaultCell) -> String {
    if c.errors.is_empty() {
        return "–".into();
    }
    c.errors
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn counters(c: &FaultCell) -> String {
    let mut parts: Vec<String> = c
        .counters
        .iter()
        .map(|(k, s)| format!("{k} {}", med_range(s, |x| fmt_num(x, 0))))
        .collect();
    if let Some(r) = &c.replacements {
        if r.median > 0.0 {
            parts.push(format!("workers replaced {}", fmt_num(r.median, 0)));
        }
    }
    if let Some(r) = &c.rerouted {
        if r.max > 0.0 {
            parts.push(format!(
                "re-routed by the master {}",
                med_range(r, |x| fmt_num(x, 0))
            ));
        }
    }
    if parts.is_empty() {
        "–".into()
    } else {
        parts.join(", ")
    }
}

fn target_name(c: &FaultCell) -> String {
    match c.tcp_migrate_req {
        Some(v) if c.target.contains("reuseport") => {
            format!("{} (tcp_migrate_req={v})", c.target)
        }
        _ => c.target.clone(),
    }
}

/// Appends the section (nothing when the session ran no fault scenario).
pub(super) fn section(doc: &mut Vec<Block>, summary: &Summary) {
    if summary.faults.is_empty() {
        return;
    }
    doc.push(heading(2, HEADING));
    doc.push(Block::Paragraph(text(format!(
        "Each scenario runs under a steady open-loop load (Poisson arrivals at 25% of the calibrated capacity, a new connection per request, so every request goes through the accept path), {} round{} per target. loadgen files every request under its due time in 100 ms slices; the affected window runs from the slice of the first injection to recovery, the first slice after the fault from which every later slice has no error and a p99 within 2x the pre-fault p99 (or +5 ms). Errors are client-visible failures per 10,000 connections over the whole run, median [smallest–largest round]; latencies are p99s per round, median [range]. Kernel counters are system-wide deltas over the run (median of the rounds): ListenOverflows/ListenDrops are SYNs or handshake completions dropped for a full accept queue, OutRsts resets sent, TCPMigrateReq* what tcp_migrate_req moved.",
        summary.config.rounds,
        if summary.config.rounds == 1 { "" } else { "s" },
    ))));
    if !summary.fault_findings.is_empty() {
        doc.push(Block::List(
            summary.fault_findings.iter().map(text).collect(),
        ));
    }
    let mut scenarios: Vec<&str> = Vec::new();
    for c in &summary.faults {
        if !scenarios.contains(&c.scenario.as_str()) {
            scenarios.push(&c.scenario);
        }
    }
    for scenario in scenarios {
        let cells: Vec<&FaultCell> = summary
            .faults
            .iter()
            .filter(|c| c.scenario == scenario)
            .collect();
        let workers = cells.first().map_or(0, |c| c.workers);
        doc.push(heading(3, format!("Fault: {scenario}")));
        doc.push(Block::Paragraph(vec![
            Inline::Text(format!("{} ", about(scenario))),
            Inline::Strong(format!("{workers} workers.")),
        ]));
        let slow = scenario == "slow-worker";
        let mut header: Vec<String> = [
            "target",
            "errors /10k conn.",
            "errors by kind (all rounds)",
            "affected p99",
            "rest p99",
            "recovery",
        ]
        .map(String::from)
        .to_vec();
        if slow {
            header.push("stopped worker's p99 vs others'".into());
        }
        header.push("kernel and server counters".into());
        let mut numeric = vec![false, true, false, true, true, true];
        if slow {
            numeric.push(true);
        }
        numeric.push(false);
        let rows = cells
            .iter()
            .map(|c| {
                let mut row = vec![
                    text(target_name(c)),
                    text(med_range(&c.errors_per_10k, per_10k)),
                    text(errors_by_kind(c)),
                    text(med_range(&c.affected_p99_us, fmt_us)),
                    text(med_range(&c.rest_p99_us, fmt_us)),
                    text(recovery(c)),
                ];
                if slow {
                    row.push(text(match (&c.victim_p99_us, &c.others_p99_us) {
                        (Some(v), Some(o)) => {
                            format!("{} vs {}", med_range(v, fmt_us), med_range(o, fmt_us))
                        }
                        _ => "–".into(),
                    }));
                }
                row.push(text(counters(c)));
                row
            })
            .collect();
        doc.push(Block::Table {
            header,
            numeric,
            rows,
        });
    }
}
