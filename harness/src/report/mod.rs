//! The report: `report.md`, a self-contained `report.html` and `plots/*.svg`,
//! rendered from a [`Summary`] and nothing else.
//!
//! Measurement, analysis and report are kept apart (criterion's habit): this
//! module never runs anything and never reads a run file; `harness report DIR`
//! can re-render an old session from its `summary.json` alone, and the same
//! summary always renders to the same bytes.
//!
//! Both documents come from one block model (`doc.rs`), so the Markdown
//! and the HTML cannot drift apart: `sections/` builds the blocks from the
//! summary (through `index.rs`, the summary's cells by target, workload and
//! worker count, and `fmt.rs`, numbers for people), and `markdown.rs` and
//! `html.rs` only decide how a heading, a table or a figure is spelled.
//! `plots/` draws the SVGs with plotters, one file per chart (no system
//! font library: plotters' naive font metrics place the labels, and the SVG
//! carries real `<text>`).

mod doc;
mod fmt;
mod html;
mod index;
mod markdown;
mod plots;
mod sections;

use std::fs;
use std::path::{Path, PathBuf};

use crate::model::summary::Summary;

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
    let doc = sections::document(summary, &plots);
    let md = markdown::render(&doc);
    let html = html::render(&sections::title(summary), &doc);

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
