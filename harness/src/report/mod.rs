//! The report: `report.md`, a self-contained `report.html` and `plots/*.svg`,
//! rendered from a [`Summary`] and nothing else.
//!
//! Measurement, analysis and report are kept apart (criterion's habit): this
//! module never runs anything and never reads a run file; `harness report DIR`
//! can re-render an old session from its `summary.json` alone, and the same
//! summary always renders to the same bytes.
//!
//! Both documents come from one block model built here ([`Block`]), so the
//! Markdown and the HTML cannot drift apart: `markdown.rs` and `html.rs` only
//! decide how a heading, a table or a figure is spelled. `plots.rs` draws the
//! SVGs with plotters (no system font library: plotters' naive font metrics
//! place the labels, and the SVG carries real `<text>`).

mod faults;
mod html;
mod markdown;
mod plots;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::model::summary::{Cell, KernelJson, Summary, WorkloadJson};

pub use plots::{Plot, PlotKind};

/// Renders the report of `summary` into `dir`: `report.md`, `report.html`
/// (the plots inlined, no external resource) and `plots/*.svg`.
///
/// Each file is written atomically (a temporary file in the same folder, then
/// a rename), so a reader never sees half a report. Returns the files written,
/// the two reports first. Files from an earlier rendering that this one does
/// not produce are left alone.
pub fn render(summary: &Summary, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let plots = plots::render_all(summary)?;
    let doc = document(summary, &plots);
    let md = markdown::render(&doc);
    let html = html::render(&title(summary), &doc);

    let plot_dir = dir.join(PLOT_DIR);
    fs::create_dir_all(&plot_dir).map_err(|e| {
        format!(
            "cannot create {}: {e}; check that the results directory is writable",
            plot_dir.display()
        )
    })?;
    let mut written = Vec::with_capacity(plots.len() + 2);
    for (name, text) in [("report.md", &md), ("report.html", &html)] {
        let path = dir.join(name);
        crate::store::results::write_atomic(&path, text.as_bytes())?;
        written.push(path);
    }
    for plot in &plots {
        let path = plot_dir.join(&plot.file);
        crate::store::results::write_atomic(&path, plot.svg.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

/// The folder of the SVGs, relative to the report.
const PLOT_DIR: &str = "plots";

// ---------------------------------------------------------------------------
// The block model shared by the Markdown and HTML writers.

/// A run of text inside a paragraph, list item or table cell.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Inline {
    /// Plain text.
    Text(String),
    /// Emphasised text (a winner in a table).
    Strong(String),
    /// Code: a command line, a file name, a sysctl.
    Code(String),
    /// A relative link (a section anchor `#...` or a file beside the report).
    Link { text: String, href: String },
}

/// A line of inline runs.
pub(crate) type Line = Vec<Inline>;

fn text(s: impl Into<String>) -> Line {
    vec![Inline::Text(s.into())]
}

/// One block of the report.
#[derive(Clone, Debug)]
pub(crate) enum Block {
    /// A heading; `id` is the anchor GitHub would derive from the text.
    Heading { level: u8, text: String, id: String },
    /// A paragraph.
    Paragraph(Line),
    /// A bulleted list.
    List(Vec<Line>),
    /// A table; `numeric[i]` right-aligns column `i`.
    Table {
        header: Vec<String>,
        numeric: Vec<bool>,
        rows: Vec<Vec<Line>>,
    },
    /// A plot: linked from Markdown, inlined in HTML.
    Figure {
        path: String,
        title: String,
        caption: String,
        svg: String,
    },
}

fn heading(level: u8, text: impl Into<String>) -> Block {
    let text = text.into();
    Block::Heading {
        level,
        id: slug(&text),
        text,
    }
}

/// The anchor GitHub derives from a heading: lower case, spaces to `-`,
/// punctuation other than `-` and `_` dropped.
pub(crate) fn slug(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The matrix as the report walks it: targets, workloads and worker counts in
// the configured order, then whatever the cells add.

/// The axes of the matrix, in report order.
pub(crate) struct Matrix<'a> {
    /// Targets: as configured, then any only the cells name.
    pub targets: Vec<&'a str>,
    /// Workloads: as configured, then any only the cells name.
    pub workloads: Vec<&'a str>,
    /// Worker counts, ascending.
    pub workers: Vec<usize>,
    cells: &'a [Cell],
    config_workloads: &'a [WorkloadJson],
}

impl<'a> Matrix<'a> {
    pub(crate) fn new(summary: &'a Summary) -> Matrix<'a> {
        fn push<'b>(v: &mut Vec<&'b str>, s: &'b str) {
            if !v.contains(&s) {
                v.push(s);
            }
        }
        let mut targets = Vec::new();
        let mut workloads = Vec::new();
        let mut workers: Vec<usize> = summary.config.workers.clone();
        // The fault scenarios and the +migrate targets (which only run
        // them) have their own section.
        summary
            .config
            .targets
            .iter()
            .filter(|t| !crate::model::names::migrate_req(t))
            .for_each(|t| push(&mut targets, t));
        summary
            .config
            .workloads
            .iter()
            .filter(|w| w.fault.is_none())
            .for_each(|w| push(&mut workloads, &w.name));
        for c in &summary.cells {
            push(&mut targets, &c.target);
            push(&mut workloads, &c.workload);
            workers.push(c.workers);
        }
        workers.sort_unstable();
        workers.dedup();
        Matrix {
            targets,
            workloads,
            workers,
            cells: &summary.cells,
            config_workloads: &summary.config.workloads,
        }
    }

    /// Position of a target, for its colour in every plot.
    pub(crate) fn target_index(&self, target: &str) -> usize {
        self.targets.iter().position(|t| *t == target).unwrap_or(0)
    }

    /// The cell of (target, workload, workers).
    pub(crate) fn cell(&self, target: &str, workload: &str, workers: usize) -> Option<&'a Cell> {
        self.cells
            .iter()
            .find(|c| c.target == target && c.workload == workload && c.workers == workers)
    }

    /// Cells of one workload and worker count, in target order.
    pub(crate) fn cells_of(&self, workload: &str, workers: usize) -> Vec<&'a Cell> {
        self.targets
            .iter()
            .filter_map(|t| self.cell(t, workload, workers))
            .collect()
    }

    /// All cells of one workload.
    pub(crate) fn cells_of_workload<'s>(
        &'s self,
        workload: &'s str,
    ) -> impl Iterator<Item = &'a Cell> + 's {
        self.cells.iter().filter(move |c| c.workload == workload)
    }

    /// Worker counts that have a cell of `workload`.
    pub(crate) fn workers_of(&self, workload: &str) -> Vec<usize> {
        self.workers
            .iter()
            .copied()
            .filter(|&w| {
                self.cells
                    .iter()
                    .any(|c| c.workload == workload && c.workers == w)
            })
            .collect()
    }

    /// The configured description of a workload.
    pub(crate) fn workload_json(&self, workload: &str) -> Option<&'a WorkloadJson> {
        self.config_workloads.iter().find(|w| w.name == workload)
    }

    /// Open-loop workloads grouped by their loadgen arguments: within a group
    /// only the offered rate differs (open-50 and open-90), so latency can be
    /// drawn against offered load. Groups of one are left out (heavy-tail is
    /// open loop too, but another request mix).
    pub(crate) fn load_groups(&self) -> Vec<Vec<&'a str>> {
        let mut groups: BTreeMap<Vec<String>, Vec<&'a str>> = BTreeMap::new();
        let mut order: Vec<Vec<String>> = Vec::new();
        for &w in &self.workloads {
            if !self
                .cells
                .iter()
                .any(|c| c.workload == w && c.offered_rps.is_some())
            {
                continue;
            }
            let key = match self.workload_json(w) {
                Some(j) => j.loadgen_args.clone(),
                None => vec![format!("workload {w}")],
            };
            if !groups.contains_key(&key) {
                order.push(key.clone());
            }
            groups.entry(key).or_default().push(w);
        }
        order
            .into_iter()
            .filter_map(|k| groups.remove(&k))
            .filter(|g| g.len() > 1)
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Numbers for people.

/// Latency from µs: `850 µs`, `1.23 ms`, `12.3 ms`, `123 ms`, `1.23 s`.
pub(crate) fn fmt_us(us: f64) -> String {
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
pub(crate) fn fmt_us_range(lo: f64, hi: f64) -> String {
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
pub(crate) fn fmt_rate(r: f64) -> String {
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
pub(crate) fn fmt_rps(r: f64) -> String {
    format!("{} req/s", fmt_rate(r))
}

/// A share (0..1) as a percentage: `0.4%`, `12.3%`, `100%`.
pub(crate) fn fmt_share(x: f64) -> String {
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
fn fmt_num(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "–".into()
    }
}

/// Seconds without noise: `0.3`, `5`, `12.5`.
fn fmt_seconds(s: f64) -> String {
    let t = fmt_num(s, 1);
    t.strip_suffix(".0").map_or(t.clone(), str::to_string)
}

/// Milliseconds since the epoch as `2024-05-01 12:34:56 UTC`.
pub(crate) fn fmt_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// CPU list as ranges: `0-3,6`.
fn fmt_cpus(cpus: &[usize]) -> String {
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
fn fmt_kernel(k: &KernelJson, replacements: u64) -> String {
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

// ---------------------------------------------------------------------------
// The document.

fn title(summary: &Summary) -> String {
    format!(
        "prefork-lab: how pre-forked workers share connections ({})",
        fmt_utc(summary.created_unix_ms)
    )
}

/// Builds the report's blocks, in reading order.
pub(crate) fn document(summary: &Summary, plots: &[Plot]) -> Vec<Block> {
    let m = Matrix::new(summary);
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
        fmt_utc(summary.created_unix_ms),
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
    if !summary.faults.is_empty() {
        sections.push(link(faults::HEADING, &slug(faults::HEADING)));
    }
    if !m.load_groups().is_empty() {
        sections.push(link(
            "Latency against offered load",
            "latency-against-offered-load",
        ));
    }
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

    winners(&mut doc, summary, &m);

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

    references(&mut doc, summary);

    for w in &m.workloads {
        workload_section(&mut doc, &m, w, plots);
    }

    faults::section(&mut doc, summary);

    let groups = m.load_groups();
    if !groups.is_empty() {
        doc.push(heading(2, "Latency against offered load"));
        doc.push(Block::Paragraph(text(
            "Open-loop workloads that differ only in the rate offered, one line per target: how the median and the tail grow as the load approaches capacity.",
        )));
        for plot in plots.iter().filter(|p| p.kind == PlotKind::LatencyVsLoad) {
            doc.push(figure(plot));
        }
    }

    doc.push(heading(2, "Warnings"));
    if summary.warnings.is_empty() {
        doc.push(Block::Paragraph(text("None: no round disagreed by more than 10%, the load generator kept up, the CPUs sufficed and no request failed.")));
    } else {
        doc.push(Block::List(
            summary.warnings.iter().map(|w| text(w.message())).collect(),
        ));
    }

    environment(&mut doc, summary);
    configuration(&mut doc, summary);
    doc
}

/// The reference servers beside the lab strategy with the same mechanism,
/// and what could not run.
fn references(doc: &mut Vec<Block>, summary: &Summary) {
    if summary.comparisons.is_empty() && summary.skipped.is_empty() {
        return;
    }
    doc.push(heading(2, "Reference servers"));
    doc.push(Block::Paragraph(text(
        "Real servers nobody here wrote, measured by the same load generator with the same workloads, beside the lab strategy that uses the same mechanism (node:rr and master-pass pass descriptors from a master; node:none and shared:epoll share one listener without exclusivity; nginx's three modes and their lab twins). A throughput ratio above 1 means ours served more; a p99 ratio below 1 means ours had the shorter tail. Their per-worker counts come from the load generator's X-Worker tallies.",
    )));
    if !summary.comparisons.is_empty() {
        let rows = summary
            .comparisons
            .iter()
            .map(|c| {
                vec![
                    text(&c.workload),
                    text(c.workers.to_string()),
                    text(format!("{} vs {}", c.ours, c.theirs)),
                    text(format!(
                        "{} vs {}",
                        fmt_rps(c.ours_rps),
                        fmt_rps(c.theirs_rps)
                    )),
                    vec![Inline::Strong(format!(
                        "{}x",
                        fmt_num(c.throughput_ratio, 2)
                    ))],
                    text(format!(
                        "{} vs {}",
                        fmt_us(c.ours_p99_us as f64),
                        fmt_us(c.theirs_p99_us as f64)
                    )),
                    vec![Inline::Strong(format!("{}x", fmt_num(c.p99_ratio, 2)))],
                    text(format!(
                        "{} vs {}",
                        fmt_num(c.ours_jain, 2),
                        fmt_num(c.theirs_jain, 2)
                    )),
                ]
            })
            .collect();
        doc.push(Block::Table {
            header: [
                "workload",
                "workers",
                "ours vs theirs",
                "req/s",
                "ratio",
                "p99",
                "ratio",
                "Jain conn.",
            ]
            .map(String::from)
            .to_vec(),
            numeric: vec![false, true, false, true, true, true, true, true],
            rows,
        });
    }
    if !summary.skipped.is_empty() {
        doc.push(Block::Paragraph(text(
            "Could not run (no numbers are shown for these rather than wrong ones):",
        )));
        doc.push(Block::List(
            summary
                .skipped
                .iter()
                .map(|s| match &s.workload {
                    Some(w) => text(format!("{} / {}: {}", s.target, w, s.reason)),
                    None => text(format!("{}: {}", s.target, s.reason)),
                })
                .collect(),
        ));
    }
}

fn link(text: &str, anchor: &str) -> Inline {
    Inline::Link {
        text: text.into(),
        href: format!("#{anchor}"),
    }
}

fn figure(plot: &Plot) -> Block {
    Block::Figure {
        path: format!("{PLOT_DIR}/{}", plot.file),
        title: plot.title.clone(),
        caption: plot.caption.clone(),
        svg: plot.svg.clone(),
    }
}

fn winners(doc: &mut Vec<Block>, summary: &Summary, m: &Matrix) {
    doc.push(heading(2, "Who wins"));
    if summary.winners.is_empty() {
        doc.push(Block::Paragraph(text("No cell finished, so nothing won.")));
        return;
    }
    let mut ws: Vec<_> = summary.winners.iter().collect();
    let pos = |w: &str| {
        m.workloads
            .iter()
            .position(|x| *x == w)
            .unwrap_or(usize::MAX)
    };
    ws.sort_by_key(|w| (pos(&w.workload), w.workers));
    let rows = ws
        .iter()
        .map(|w| {
            vec![
                text(&w.workload),
                text(w.workers.to_string()),
                vec![
                    Inline::Strong(w.throughput_target.clone()),
                    Inline::Text(format!(" {}", fmt_rps(w.throughput_rps))),
                ],
                vec![
                    Inline::Strong(w.p99_target.clone()),
                    Inline::Text(format!(" {}", fmt_us(w.p99_us as f64))),
                ],
                vec![
                    Inline::Strong(w.fairest_target.clone()),
                    Inline::Text(format!(" Jain {}", fmt_num(w.fairest_jain, 3))),
                ],
            ]
        })
        .collect();
    doc.push(Block::Table {
        header: [
            "workload",
            "workers",
            "most throughput",
            "lowest p99",
            "fairest (connections)",
        ]
        .map(String::from)
        .to_vec(),
        numeric: vec![false, true, false, false, false],
        rows,
    });
}

fn workload_section(doc: &mut Vec<Block>, m: &Matrix, workload: &str, plots: &[Plot]) {
    doc.push(heading(2, format!("Workload {workload}")));
    let mut about = Vec::new();
    if let Some(j) = m.workload_json(workload) {
        about.push(Inline::Text(format!("{}. ", capitalise(&j.description))));
        about.push(Inline::Text("loadgen ".into()));
        about.push(Inline::Code(j.loadgen_args.join(" ")));
        if let Some(share) = j.capacity_share {
            about.push(Inline::Text(format!(
                ", offered at {} of the calibrated capacity",
                fmt_share(share)
            )));
        }
        about.push(Inline::Text(".".into()));
    }
    let workers = m.workers_of(workload);
    let offered: Vec<String> = workers
        .iter()
        .filter_map(|&n| {
            m.cells_of(workload, n)
                .iter()
                .find_map(|c| c.offered_rps)
                .map(|r| format!("{} at {n} workers", fmt_rps(r)))
        })
        .collect();
    if !offered.is_empty() {
        about.push(Inline::Text(format!(" Offered: {}.", offered.join(", "))));
    }
    if !about.is_empty() {
        doc.push(Block::Paragraph(about));
    }

    // Two tables rather than one of fourteen columns: how fast, then how
    // evenly and at what cost. Both list the same rows in the same order.
    let mut speed = Vec::new();
    let mut spread_rows = Vec::new();
    for &n in &workers {
        let cells = m.cells_of(workload, n);
        let contest = cells.len() > 1;
        let best_rps = cells
            .iter()
            .map(|c| c.throughput_rps.median)
            .fold(f64::NEG_INFINITY, f64::max);
        let best_p99 = cells
            .iter()
            .filter(|c| c.latency.count > 0)
            .map(|c| c.latency.p99_us)
            .min();
        let best_jain = cells
            .iter()
            .map(|c| c.fairness.connections.jain)
            .fold(f64::NEG_INFINITY, f64::max);
        for c in cells {
            let strong_if = |win: bool, s: String| {
                if win && contest {
                    vec![Inline::Strong(s)]
                } else {
                    text(s)
                }
            };
            let t = &c.throughput_rps;
            let p = &c.p99_us_per_round;
            let lat = &c.latency;
            let has_lat = lat.count > 0;
            let us = |v: u64| {
                if has_lat {
                    fmt_us(v as f64)
                } else {
                    "–".into()
                }
            };
            speed.push(vec![
                text(&c.target),
                text(n.to_string()),
                strong_if(
                    t.median == best_rps,
                    format!(
                        "{} ({}–{})",
                        fmt_rate(t.median),
                        fmt_rate(t.min),
                        fmt_rate(t.max)
                    ),
                ),
                text(format!("{}%", fmt_num(t.spread_pct, 0))),
                text(us(lat.p50_us)),
                strong_if(
                    has_lat && Some(lat.p99_us) == best_p99,
                    if has_lat && p.values.len() > 1 {
                        format!(
                            "{} ({})",
                            fmt_us(lat.p99_us as f64),
                            fmt_us_range(p.min, p.max)
                        )
                    } else {
                        us(lat.p99_us)
                    },
                ),
                text(us(lat.p999_us)),
                text(us(lat.max_us)),
                text(if c.errors == 0 {
                    "0".into()
                } else {
                    format!("{} ({})", c.errors, fmt_share(c.error_rate))
                }),
            ]);
            spread_rows.push(vec![
                text(&c.target),
                text(n.to_string()),
                strong_if(
                    c.fairness.connections.jain == best_jain,
                    fairness(&c.fairness.connections),
                ),
                text(fairness(&c.fairness.requests)),
                text(fairness(&c.fairness.cpu)),
                text(
                    c.wasted_wakeups_per_connection
                        .map_or("n/a".into(), |w| fmt_num(w, 2)),
                ),
                text(if c.master_cpu_share > 0.0 {
                    fmt_share(c.master_cpu_share)
                } else {
                    "–".into()
                }),
                text(fmt_kernel(&c.kernel, c.replacements)),
            ]);
        }
    }
    if speed.is_empty() {
        doc.push(Block::Paragraph(text("No cell of this workload finished.")));
        return;
    }
    doc.push(Block::Paragraph(vec![
        Inline::Strong("Speed.".into()),
        Inline::Text(
            " Throughput counts successful requests (median round, with the slowest and fastest); latency is of all rounds' histograms merged, the p99 range is each round's own p99. Bold: the best of its worker count."
                .into(),
        ),
    ]));
    doc.push(Block::Table {
        header: [
            "target",
            "workers",
            "req/s (min–max)",
            "spread",
            "p50",
            "p99 (rounds)",
            "p99.9",
            "max",
            "errors",
        ]
        .map(String::from)
        .to_vec(),
        numeric: vec![false, true, true, true, true, true, true, true, true],
        rows: speed,
    });
    doc.push(Block::Paragraph(vec![
        Inline::Strong("Fairness and cost.".into()),
        Inline::Text(
            " Jain's index per worker (1 = even, 1/n = one worker took all) with the busiest worker over the mean; wasted wakeups per connection; the master's share of the server's CPU; kernel counters that moved. Bold: the most even connection split."
                .into(),
        ),
    ]));
    doc.push(Block::Table {
        header: [
            "target",
            "workers",
            "Jain conn. (max/mean)",
            "Jain req. (max/mean)",
            "Jain CPU (max/mean)",
            "wasted wakeups",
            "master CPU",
            "kernel counters",
        ]
        .map(String::from)
        .to_vec(),
        numeric: vec![false, true, true, true, true, true, true, false],
        rows: spread_rows,
    });

    let of = |kind: PlotKind, workers: Option<usize>| {
        plots.iter().filter(move |p| {
            p.kind == kind
                && p.workload.as_deref() == Some(workload)
                && (workers.is_none() || p.workers == workers)
        })
    };
    for p in of(PlotKind::Throughput, None) {
        doc.push(figure(p));
    }
    for &n in &workers {
        for p in of(PlotKind::Spectrum, Some(n)).chain(of(PlotKind::Shares, Some(n))) {
            doc.push(figure(p));
        }
    }
}

fn fairness(f: &crate::model::summary::FairnessJson) -> String {
    if f.shares.is_empty() && f.jain_per_round.is_empty() {
        return "–".into();
    }
    format!("{} ({}×)", fmt_num(f.jain, 3), fmt_num(f.max_over_mean, 2))
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first
            .to_uppercase()
            .chain(c)
            .collect::<String>()
            .trim_end_matches('.')
            .to_string(),
        None => String::new(),
    }
}

fn environment(doc: &mut Vec<Block>, summary: &Summary) {
    let env = &summary.environment;
    doc.push(heading(2, "Environment"));
    let or_unknown = |s: &str| {
        if s.is_empty() {
            "unknown".to_string()
        } else {
            s.to_string()
        }
    };
    let mut rows: Vec<Vec<Line>> = vec![
        vec![text("host"), text(or_unknown(&env.hostname))],
        vec![text("kernel"), text(or_unknown(&env.kernel))],
        vec![text("CPUs online"), text(env.cpus_online.to_string())],
        vec![text("CPUs allowed"), text(fmt_cpus(&env.cpus_allowed))],
        vec![text("CPU model"), text(or_unknown(&env.cpu_model))],
        vec![text("memory"), text(format!("{} MiB", env.memory_mib))],
        vec![
            text("git commit"),
            vec![Inline::Code(or_unknown(&env.git_commit))],
        ],
        vec![text("rustc"), text(or_unknown(&env.rustc))],
    ];
    for (tool, version) in &env.tools {
        rows.push(vec![text(tool), text(version)]);
    }
    for (name, value) in &env.sysctls {
        rows.push(vec![
            vec![Inline::Code(name.clone())],
            vec![Inline::Code(value.clone())],
        ]);
    }
    doc.push(Block::Table {
        header: vec!["what".into(), "value".into()],
        numeric: vec![false, false],
        rows,
    });
}

fn configuration(doc: &mut Vec<Block>, summary: &Summary) {
    let c = &summary.config;
    doc.push(heading(2, "Configuration"));
    let hosts = match &c.remote {
        None => text("hosts: the server and the load generator on this machine"),
        Some(r) => text(format!(
            "hosts (over ssh): load from {}{}; the server on {}",
            if r.loadgen_hosts.is_empty() {
                "this machine".to_string()
            } else {
                r.loadgen_hosts.join(", ")
            },
            match r.loadgen_hosts.len() {
                0 | 1 => String::new(),
                n => format!(
                    " (each generator 1/{n} of the connections and of the offered rate, started together, results merged exactly with loadgen merge)"
                ),
            },
            r.server_host.as_deref().unwrap_or("this machine"),
        )),
    };
    doc.push(Block::List(vec![
        hosts,
        vec![
            Inline::Text("targets: ".into()),
            Inline::Code(c.targets.join(", ")),
        ],
        text(format!(
            "worker counts: {}",
            c.workers
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        text(format!(
            "rounds: {}, each run {} s measured after {} s of warm-up{}",
            c.rounds,
            fmt_seconds(c.duration_s),
            fmt_seconds(c.warmup_s),
            if c.quick { " (--quick)" } else { "" }
        )),
        vec![
            Inline::Text("raw data: ".into()),
            Inline::Link {
                text: "summary.json".into(),
                href: "summary.json".into(),
            },
            Inline::Text(" (each cell lists its run files under ".into()),
            Inline::Code("runs".into()),
            Inline::Text(")".into()),
        ],
    ]));
    if !c.workloads.is_empty() {
        doc.push(Block::Table {
            header: [
                "workload",
                "description",
                "loadgen arguments",
                "share of capacity",
            ]
            .map(String::from)
            .to_vec(),
            numeric: vec![false, false, false, true],
            rows: c
                .workloads
                .iter()
                .map(|w| {
                    vec![
                        text(&w.name),
                        text(&w.description),
                        vec![Inline::Code(w.loadgen_args.join(" "))],
                        text(w.capacity_share.map_or("closed loop".into(), fmt_share)),
                    ]
                })
                .collect(),
        });
    }
    if !summary.calibration.is_empty() {
        doc.push(Block::Paragraph(text(
            "Capacity measured at the start of the session, the base of the open-loop rates:",
        )));
        doc.push(Block::Table {
            header: ["workers", "measured with", "capacity", "loadgen arguments"]
                .map(String::from)
                .to_vec(),
            numeric: vec![true, false, true, false],
            rows: summary
                .calibration
                .iter()
                .map(|k| {
                    vec![
                        text(k.workers.to_string()),
                        text(&k.target),
                        text(fmt_rps(k.capacity_rps)),
                        vec![Inline::Code(k.loadgen_args.join(" "))],
                    ]
                })
                .collect(),
        });
    }
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

    #[test]
    fn anchors_match_what_github_derives() {
        assert_eq!(slug("Workload open-50"), "workload-open-50");
        assert_eq!(slug("Who wins"), "who-wins");
        assert_eq!(
            slug("Latency against offered load"),
            "latency-against-offered-load"
        );
    }
}
