//! The report's plots, drawn with plotters into SVG strings.
//!
//! No system font library is linked: plotters then sizes text with its naive
//! metrics (0.7 em per byte) and writes real `<text>` elements, which the
//! browser sets in its own sans-serif. Label areas are therefore sized here
//! from the longest label rather than measured.
//!
//! Every plot keeps a target's colour and its family's marker (master-pass:
//! circle, shared: triangle, reuseport: square) across the whole report, and
//! puts its legend in a strip of its own beside the chart, so no legend ever
//! hides data.

mod axes;
mod cost;
mod latency_vs_load;
mod shares;
mod spectrum;
mod style;
mod throughput;
mod warmup;

use super::index::Index;
use crate::model::summary::Summary;
use cost::cost;
use latency_vs_load::latency_vs_load;
use shares::shares;
use spectrum::spectrum;
use throughput::throughput;
use warmup::warmup;

/// What a plot shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlotKind {
    /// Throughput per target of one workload, all worker counts.
    Throughput,
    /// Latency percentile spectrum of one workload and worker count.
    Spectrum,
    /// Per-worker share of connections and CPU of one workload and worker count.
    Shares,
    /// p50 and p99 against offered load, one worker count.
    LatencyVsLoad,
    /// CPU per request at a fixed load and context switches per connection.
    Cost,
    /// Throughput per slice of the warm-up, one round per target.
    Warmup,
}

/// One rendered plot.
#[derive(Clone, Debug)]
pub struct Plot {
    /// What it shows.
    pub kind: PlotKind,
    /// File name under `plots/`.
    pub file: String,
    /// The plot's own title, short (alt text, accessible name).
    pub title: String,
    /// One sentence for the figure caption.
    pub caption: String,
    /// The workload it belongs to, if one.
    pub workload: Option<String>,
    /// The worker count it belongs to, if one.
    pub workers: Option<usize>,
    /// The SVG document.
    pub svg: String,
}

/// A file-name-safe version of a workload name.
pub(super) fn file_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Every plot the summary supports, in report order.
pub(crate) fn render_all(summary: &Summary) -> Result<Vec<Plot>, String> {
    let m = Index::new(summary);
    let mut plots = Vec::new();
    for &w in &m.workloads {
        plots.extend(throughput(&m, w)?);
        for n in m.workers_of(w) {
            plots.extend(spectrum(&m, w, n)?);
            plots.extend(shares(&m, w, n)?);
        }
    }
    for (i, group) in m.load_groups().iter().enumerate() {
        for &n in &m.workers {
            plots.extend(latency_vs_load(&m, group, i, n)?);
        }
    }
    plots.extend(cost(&m)?);
    plots.extend(warmup(&m)?);
    Ok(plots)
}
