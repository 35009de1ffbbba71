//! `report.md`: the report's blocks spelled as GitHub-flavoured Markdown.
//! Plots are linked by relative path (`plots/*.svg`), so the report reads the
//! same in a checkout, on a code host, or in an editor's preview.

use super::doc::{Block, Inline, Line};

/// The whole document as Markdown.
pub(super) fn render(doc: &[Block]) -> String {
    let mut out = String::new();
    for block in doc {
        match block {
            Block::Heading { level, text, .. } => {
                out.push_str(&"#".repeat(usize::from(*level).clamp(1, 6)));
                out.push(' ');
                out.push_str(&escape(text, false));
                out.push('\n');
            }
            Block::Paragraph(line) => {
                out.push_str(&line_md(line, false));
                out.push('\n');
            }
            Block::List(items) => {
                for item in items {
                    out.push_str("- ");
                    out.push_str(&line_md(item, false));
                    out.push('\n');
                }
            }
            Block::Table {
                header,
                numeric,
                rows,
            } => {
                let cells: Vec<String> = header.iter().map(|h| escape(h, true)).collect();
                out.push_str(&format!("| {} |\n", cells.join(" | ")));
                let align: Vec<&str> = (0..header.len())
                    .map(|i| {
                        if numeric.get(i).copied().unwrap_or(false) {
                            "---:"
                        } else {
                            "---"
                        }
                    })
                    .collect();
                out.push_str(&format!("| {} |\n", align.join(" | ")));
                for row in rows {
                    let cells: Vec<String> = row.iter().map(|c| line_md(c, true)).collect();
                    out.push_str(&format!("| {} |\n", cells.join(" | ")));
                }
            }
            Block::Figure {
                path,
                title,
                caption,
                ..
            } => {
                out.push_str(&format!(
                    "![{}]({})\n\n*{}*\n",
                    escape(title, false),
                    path,
                    escape(caption, false)
                ));
            }
        }
        out.push('\n');
    }
    // One trailing newline, not two.
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

fn line_md(line: &Line, in_table: bool) -> String {
    line.iter()
        .map(|inline| match inline {
            Inline::Text(s) => escape(s, in_table),
            Inline::Strong(s) => format!("**{}**", escape(s, in_table)),
            Inline::Code(s) => code(s, in_table),
            Inline::Link { text, href } => {
                format!("[{}]({})", escape(text, in_table), href.replace(' ', "%20"))
            }
        })
        .collect()
}

/// Escapes what Markdown would read as markup; `|` only matters in tables,
/// and a newline would end a table row or a list item. Kept minimal so the
/// raw file stays readable.
fn escape(s: &str, in_table: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' => {
                out.push('\\');
                out.push(c);
            }
            // Only markup at the start of a line (a heading, a quote).
            '#' | '>' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            '|' if in_table => out.push_str("\\|"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A code span, with a fence longer than any backtick run inside it.
fn code(s: &str, in_table: bool) -> String {
    let s = s.replace(['\n', '\r'], " ");
    let s = if in_table { s.replace('|', "\\|") } else { s };
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_escape_pipes_and_align_numbers_right() {
        let doc = vec![Block::Table {
            header: vec!["target".into(), "req/s".into()],
            numeric: vec![false, true],
            rows: vec![vec![
                vec![Inline::Text("a|b".into())],
                vec![Inline::Strong("52.1k".into())],
            ]],
        }];
        assert_eq!(
            render(&doc),
            "| target | req/s |\n| --- | ---: |\n| a\\|b | **52.1k** |\n"
        );
    }

    #[test]
    fn code_spans_survive_backticks() {
        assert_eq!(code("a`b", false), "``a`b``");
        assert_eq!(code("--rate 10", false), "`--rate 10`");
    }

    #[test]
    fn figures_link_the_svg_with_a_caption() {
        let doc = vec![Block::Figure {
            path: "plots/x.svg".into(),
            title: "Throughput".into(),
            caption: "The bar is the median.".into(),
            svg: String::new(),
        }];
        assert_eq!(
            render(&doc),
            "![Throughput](plots/x.svg)\n\n*The bar is the median.*\n"
        );
    }
}
