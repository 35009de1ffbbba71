//! "Under the hood": what the latest traces showed of each target's
//! mechanism (who accepts, who the kernel wakes for one connection, how a
//! descriptor travels) and each twin beside its real server, field by field.
//! The traces come from `harness trace`, never from the measured runs.

use crate::model::hood::Hood;
use crate::model::summary::Summary;
use crate::report::doc::{heading, text, Block, Inline};
use crate::report::fmt::{fmt_num, fmt_utc};

/// The section's heading.
pub(super) const HEADING: &str = "Under the hood";

/// How long before (or after) the session a trace was taken: `3 h 5 min
/// before this session`.
fn age(taken_ms: u64, session_ms: u64) -> String {
    if taken_ms == 0 {
        return "time not recorded".into();
    }
    let (d, side) = if taken_ms <= session_ms {
        (session_ms - taken_ms, "before")
    } else {
        (taken_ms - session_ms, "after")
    };
    let mins = d / 60_000;
    let span = if mins < 1 {
        "less than a minute".to_string()
    } else if mins < 60 {
        format!("{mins} min")
    } else if mins < 48 * 60 {
        format!("{} h {} min", mins / 60, mins % 60)
    } else {
        format!("{} days", mins / (24 * 60))
    };
    format!("{span} {side} this session")
}

fn opt(x: Option<f64>) -> String {
    x.map_or("not traced".into(), |v| fmt_num(v, 2))
}

pub(super) fn section(doc: &mut Vec<Block>, summary: &Summary, session_ms: u64) {
    doc.push(heading(2, HEADING));
    let Some(hood) = summary
        .under_the_hood
        .as_ref()
        .filter(|h| !h.traces.is_empty())
    else {
        doc.push(Block::Paragraph(vec![
            Inline::Text("No trace was found beside this session. ".into()),
            Inline::Code("harness trace TARGET".into()),
            Inline::Text(" traces one target's system calls and the kernel's wakeups for a few connections, and ".into()),
            Inline::Code("just under-the-hood".into()),
            Inline::Text(" traces every twin pair and writes docs/under-the-hood.md; the next report shows what they found here.".into()),
        ]));
        return;
    };
    doc.push(Block::Paragraph(vec![
        Inline::Text(format!("From the newest trace of each target under {} (", hood.root)),
        Inline::Code("harness trace".into()),
        Inline::Text(", not from the measured runs: tracing slows every process it watches, so only the order and the arguments of the calls count, never their times). Accepts, EAGAIN and SCM_RIGHTS come from strace over connections sent one at a time; woken per arrival comes from the scheduler's tracepoints in a second pass without strace: how many processes the kernel woke when one connection arrived, and how many of them found nothing and went back to sleep inside the kernel (the part of a thundering herd strace cannot see). docs/under-the-hood.md quotes and explains the calls.".into()),
    ]));
    rows(doc, hood, session_ms);
    pairs(doc, hood);
}

fn rows(doc: &mut Vec<Block>, hood: &Hood, session_ms: u64) {
    let rows = hood
        .traces
        .iter()
        .map(|t| {
            vec![
                text(&t.target),
                text(t.who_accepts.join(", ")),
                text(opt(t.woken_per_conn)),
                text(opt(t.slept_again_per_conn)),
                text(fmt_num(t.accept_eagain_per_conn, 2)),
                text(fmt_num(t.scm_rights_messages_per_conn, 2)),
                text(t.workers.to_string()),
                text(if t.taken_unix_ms == 0 {
                    t.dir.clone()
                } else {
                    format!(
                        "{} ({}), {}",
                        fmt_utc(t.taken_unix_ms),
                        age(t.taken_unix_ms, session_ms),
                        t.dir
                    )
                }),
            ]
        })
        .collect();
    doc.push(Block::Table {
        header: [
            "target",
            "who accepts",
            "woken per arrival",
            "of them asleep again in the kernel",
            "EAGAIN accepts per conn.",
            "SCM_RIGHTS messages per conn.",
            "workers",
            "traced",
        ]
        .map(String::from)
        .to_vec(),
        numeric: vec![false, false, true, true, true, true, true, false],
        rows,
    });
}

fn pairs(doc: &mut Vec<Block>, hood: &Hood) {
    if hood.pairs.is_empty() {
        doc.push(Block::Paragraph(text(
            "No twin pair has both sides traced: trace a reference and its twin (for example node:rr and master-pass) to see them field by field.",
        )));
        return;
    }
    doc.push(heading(3, "Each twin beside its real server"));
    doc.push(Block::Paragraph(text(
        "The same normalised fields of both traces: same, a difference the twin documents (with why), or a difference nobody documented (the twin no longer does what its server does).",
    )));
    for p in &hood.pairs {
        let unexplained = p.unexplained().count();
        let allowed = p.fields.iter().filter(|f| f.verdict == "allowed").count();
        let same = p.fields.iter().filter(|f| f.verdict == "same").count();
        let mut line = vec![Inline::Strong(format!("{} twins {}", p.twin, p.reference))];
        line.push(Inline::Text(format!(
            ": {same} field{} the same, {allowed} documented difference{}, {unexplained} undocumented.",
            if same == 1 { "" } else { "s" },
            if allowed == 1 { "" } else { "s" },
        )));
        doc.push(Block::Paragraph(line));
        let rows = p
            .fields
            .iter()
            .filter(|f| f.verdict != "same")
            .map(|f| {
                vec![
                    text(&f.field),
                    text(&f.reference),
                    text(&f.twin),
                    match (&*f.verdict, &f.why) {
                        ("allowed", Some(why)) => text(format!("documented: {why}")),
                        ("different", _) => vec![Inline::Strong("undocumented difference".into())],
                        (v, _) => text(v),
                    },
                ]
            })
            .collect::<Vec<_>>();
        if !rows.is_empty() {
            doc.push(Block::Table {
                header: ["field", &p.reference, &p.twin, "verdict"]
                    .map(String::from)
                    .to_vec(),
                numeric: vec![false; 4],
                rows,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_says_how_long_before_or_after_the_session_it_was_taken() {
        let h = 3_600_000;
        assert_eq!(
            age(10 * h, 13 * h + 300_000),
            "3 h 5 min before this session"
        );
        assert_eq!(age(10 * h + 120_000, 10 * h), "2 min after this session");
        assert_eq!(
            age(10 * h, 10 * h + 10_000),
            "less than a minute before this session"
        );
        assert_eq!(age(0, 10 * h), "time not recorded");
        assert_eq!(age(h, 5 * 24 * h), "4 days before this session");
    }
}
