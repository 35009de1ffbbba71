//! The block model both documents are written from: headings, paragraphs,
//! lists, tables and figures made of inline runs of text.

use super::plots::Plot;
use super::PLOT_DIR;

/// A run of text inside a paragraph, list item or table cell.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Inline {
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
pub(super) type Line = Vec<Inline>;

pub(super) fn text(s: impl Into<String>) -> Line {
    vec![Inline::Text(s.into())]
}

/// One block of the report.
#[derive(Clone, Debug)]
pub(super) enum Block {
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

pub(super) fn heading(level: u8, text: impl Into<String>) -> Block {
    let text = text.into();
    Block::Heading {
        level,
        id: slug(&text),
        text,
    }
}

/// The anchor GitHub derives from a heading: lower case, spaces to `-`,
/// punctuation other than `-` and `_` dropped.
pub(super) fn slug(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// A link to a section of the report.
pub(super) fn link(text: &str, anchor: &str) -> Inline {
    Inline::Link {
        text: text.into(),
        href: format!("#{anchor}"),
    }
}

/// A plot as a block.
pub(super) fn figure(plot: &Plot) -> Block {
    Block::Figure {
        path: format!("{PLOT_DIR}/{}", plot.file),
        title: plot.title.clone(),
        caption: plot.caption.clone(),
        svg: plot.svg.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
