//! The report's sections, in reading order, as blocks.

mod cost;
mod fairness;
mod faults;
mod hood;
mod references;
mod setup;
mod steadiness;
mod winners;
mod workload;

use super::doc::{heading, link, slug, text, Block, Inline};
use super::fmt::{fmt_seconds, fmt_utc};
use super::index::Index;
use super::plots::{Plot, PlotKind};
use crate::model::summary::Summary;

/// When the measurements were made: the session's start, or (a summary
/// from before it was recorded) when the summary was made.
fn measured_at(summary: &Summary) -> u64 {
    summary
        .session_started_unix_ms
        .unwrap_or(summary.created_unix_ms)
}

/// The report's title, with the date of the session.
pub(super) fn title(summary: &Summary) -> String {
    format!(
        "prefork-lab: how pre-forked workers share connections ({})",
        fmt_utc(measured_at(summary))
    )
}

/// Builds the report's blocks, in reading order.
pub(super) fn document(summary: &Summary, plots: &[Plot]) -> Vec<Block> {
    let m = Index::new(summary);
    let env = &summary.environment;
    let mut doc = vec![heading(
        1,
        "prefork-lab: how pre-forked workers share connections",
    )];

    let host = if env.hostname.is_empty() {
        String::new()
    } else {
        format!(" on {}", env.hostname)
    };
    doc.push(Block::Paragraph(text(format!(
        "Session of {}{host}: Linux {}, {} CPUs ({}), {} targets x {} workloads x {} worker counts, {} round{} of {} s each.",
        fmt_utc(measured_at(summary)),
        if env.kernel.is_empty() { "unknown" } else { &env.kernel },
        env.cpus_online,
        if env.cpu_model.is_empty() { "model unknown" } else { &env.cpu_model },
        m.targets.len(),
        m.workloads.len(),
        m.workers.len(),
        summary.config.rounds,
        if summary.config.rounds == 1 { "" } else { "s" },
        fmt_seconds(summary.config.duration_s),
    ))));

    doc.push(heading(2, "How to read this"));
    doc.push(Block::List(vec![
        text("Throughput is the median over rounds; the range beside it is the smallest and largest round, and the spread is (max − min) / median. Rounds ran interleaved in shuffled order, so a noisy moment hits every target alike."),
        text("Latency percentiles come from all rounds' HdrHistograms added together, never from averaged percentiles. Open-loop latency is measured from when each request was due, so a stalled server cannot hide its stall (no coordinated omission)."),
        text("Jain's index (Σx)² / (n·Σx²) of per-worker connections or CPU time is 1 when every worker got the same and 1/n when one worker got everything; max/mean says how much more the busiest worker got than the average."),
        text("Wasted wakeups are accepts that found the queue empty (EAGAIN) per connection served: the thundering herd. Master CPU is the master's share of the server's CPU time: the serial cost of passing every connection."),
    ]));

    let mut sections = vec![link("Who wins", "who-wins"), link("Findings", "findings")];
    if !summary.comparisons.is_empty() || !summary.skipped.is_empty() {
        sections.push(link("Reference servers", "reference-servers"));
    }
    for w in &m.workloads {
        sections.push(link(w, &slug(&format!("Workload {w}"))));
    }
    let section_doc = |f: &dyn Fn(&mut Vec<Block>)| {
        let mut d = Vec::new();
        f(&mut d);
        d
    };
    let fairness_doc = section_doc(&|d| fairness::section(d, &m));
    let cost_doc = section_doc(&|d| cost::section(d, &m, plots, env.cpus_online));
    let steadiness_doc =
        section_doc(&|d| steadiness::section(d, &m, plots, summary.config.warmup_cap_s));
    for (doc_part, name) in [
        (&fairness_doc, fairness::HEADING),
        (&cost_doc, cost::HEADING),
        (&steadiness_doc, steadiness::HEADING),
    ] {
        if !doc_part.is_empty() {
            sections.push(link(name, &slug(name)));
        }
    }
    if !summary.faults.is_empty() {
        sections.push(link(faults::HEADING, &slug(faults::HEADING)));
    }
    if !m.load_groups().is_empty() {
        sections.push(link(
            "Latency against offered load",
            "latency-against-offered-load",
        ));
    }
    sections.push(link(hood::HEADING, &slug(hood::HEADING)));
    sections.push(link(
        &format!("Warnings ({})", summary.warnings.len()),
        "warnings",
    ));
    sections.push(link("Environment", "environment"));
    sections.push(link("Configuration", "configuration"));
    let mut contents = text("Sections: ");
    for (i, s) in sections.into_iter().enumerate() {
        if i > 0 {
            contents.push(Inline::Text(" · ".into()));
        }
        contents.push(s);
    }
    doc.push(Block::Paragraph(contents));

    winners::section(&mut doc, summary, &m);

    doc.push(heading(2, "Findings"));
    if summary.findings.is_empty() {
        doc.push(Block::Paragraph(text("The analysis wrote no findings.")));
    } else {
        doc.push(Block::List(summary.findings.iter().map(text).collect()));
    }
    if !summary.warnings.is_empty() {
        doc.push(Block::Paragraph(vec![
            Inline::Strong(format!(
                "{} warning{} about this session",
                summary.warnings.len(),
                if summary.warnings.len() == 1 { "" } else { "s" }
            )),
            Inline::Text(": read ".into()),
            link("Warnings", "warnings"),
            Inline::Text(" before trusting the numbers.".into()),
        ]));
    }

    references::section(&mut doc, summary);

    for w in &m.workloads {
        workload::section(&mut doc, &m, w, plots);
    }
    doc.extend(fairness_doc);
    doc.extend(cost_doc);
    doc.extend(steadiness_doc);

    faults::section(&mut doc, summary);

    let groups = m.load_groups();
    if !groups.is_empty() {
        doc.push(heading(2, "Latency against offered load"));
        doc.push(Block::Paragraph(text(
            "Open-loop workloads that differ only in the rate offered, one line per target: how the median and the tail grow as the load approaches capacity.",
        )));
        for plot in plots.iter().filter(|p| p.kind == PlotKind::LatencyVsLoad) {
            doc.push(super::doc::figure(plot));
        }
    }

    hood::section(&mut doc, summary, measured_at(summary));

    doc.push(heading(2, "Warnings"));
    if summary.warnings.is_empty() {
        doc.push(Block::Paragraph(text("None: no round disagreed by more than 10%, the load generator kept up, the CPUs sufficed and no request failed.")));
    } else {
        doc.push(Block::List(
            summary.warnings.iter().map(|w| text(w.message())).collect(),
        ));
    }

    setup::environment(&mut doc, summary);
    setup::configuration(&mut doc, summary);
    doc
}
