//! `report.html`: the report's blocks as one self-contained page. The SVG
//! plots are inlined and the CSS is in the page, so it opens offline, from an
//! e-mail attachment or a CI artifact, and loads nothing from anywhere.

use super::doc::{Block, Inline, Line};

/// Plain, readable, printable; no web fonts, no scripts.
const CSS: &str = "\
body{font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;color:#1d1d1f;background:#fff;margin:0}
main{max-width:1240px;margin:0 auto;padding:1rem 1.5rem 4rem}
h1{font-size:1.7rem;margin:1rem 0 .5rem}
h2{font-size:1.35rem;margin:2.2rem 0 .6rem;padding-bottom:.2rem;border-bottom:1px solid #ddd}
a{color:#0b57d0}
code{font:.9em/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f3f3f3;padding:0 .25em;border-radius:3px}
.table{overflow-x:auto;margin:.6rem 0 1rem}
table{border-collapse:collapse;font-size:14px}
th,td{border:1px solid #d8d8d8;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f7;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td:first-child{white-space:nowrap}
tbody tr:nth-child(even){background:#fafafa}
figure{margin:1.2rem 0 1.8rem}
figure svg{display:block;max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:14px;margin-top:.3rem}
@media print{figure{break-inside:avoid}main{max-width:none}}
";

/// The whole document as an HTML page titled `title`.
pub(super) fn render(title: &str, doc: &[Block]) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str(&format!(
        "<title>{}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n<main>\n",
        escape(title)
    ));
    for block in doc {
        match block {
            Block::Heading { level, text, id } => {
                let l = level.clamp(&1, &6);
                out.push_str(&format!(
                    "<h{l} id=\"{}\">{}</h{l}>\n",
                    escape(id),
                    escape(text)
                ));
            }
            Block::Paragraph(line) => out.push_str(&format!("<p>{}</p>\n", line_html(line))),
            Block::List(items) => {
                out.push_str("<ul>\n");
                for item in items {
                    out.push_str(&format!("<li>{}</li>\n", line_html(item)));
                }
                out.push_str("</ul>\n");
            }
            Block::Table {
                header,
                numeric,
                rows,
            } => {
                let class = |i: usize| {
                    if numeric.get(i).copied().unwrap_or(false) {
                        " class=\"num\""
                    } else {
                        ""
                    }
                };
                out.push_str("<div class=\"table\"><table>\n<thead><tr>");
                for (i, h) in header.iter().enumerate() {
                    out.push_str(&format!("<th{}>{}</th>", class(i), escape(h)));
                }
                out.push_str("</tr></thead>\n<tbody>\n");
                for row in rows {
                    out.push_str("<tr>");
                    for (i, cell) in row.iter().enumerate() {
                        out.push_str(&format!("<td{}>{}</td>", class(i), line_html(cell)));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</tbody>\n</table></div>\n");
            }
            Block::Figure {
                path,
                title,
                caption,
                svg,
            } => {
                out.push_str(&format!(
                    "<figure id=\"{}\">\n{}\n<figcaption>{} (<a href=\"{}\">SVG</a>)</figcaption>\n</figure>\n",
                    escape(&figure_id(path)),
                    inline_svg(svg, title),
                    escape(caption),
                    escape(path)
                ));
            }
        }
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// `plots/throughput-keepalive.svg` -> `plot-throughput-keepalive`.
fn figure_id(path: &str) -> String {
    let stem = path
        .rsplit('/')
        .next()
        .unwrap_or(path)
        .trim_end_matches(".svg");
    format!("plot-{stem}")
}

/// The SVG as an element of the page: without an XML declaration, and
/// without the `xmlns` attribute, which the HTML parser supplies for an
/// inline `<svg>` (so the page holds no URL at all); labelled for screen
/// readers with its title.
fn inline_svg(svg: &str, title: &str) -> String {
    let svg = svg.trim();
    let svg = match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => return format!("<p>(plot missing: {})</p>", escape(title)),
    };
    let end = svg.find('>').unwrap_or(0);
    let (open, rest) = svg.split_at(end);
    let open = open.replace(" xmlns=\"http://www.w3.org/2000/svg\"", "");
    let open = open.replacen(
        "<svg",
        &format!("<svg role=\"img\" aria-label=\"{}\"", escape(title)),
        1,
    );
    format!("{open}{rest}")
}

fn line_html(line: &Line) -> String {
    line.iter()
        .map(|inline| match inline {
            Inline::Text(s) => escape(s),
            Inline::Strong(s) => format!("<strong>{}</strong>", escape(s)),
            Inline::Code(s) => format!("<code>{}</code>", escape(s)),
            Inline::Link { text, href } => {
                format!("<a href=\"{}\">{}</a>", escape(href), escape(text))
            }
        })
        .collect()
}

/// Escapes text and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        let doc = vec![Block::Paragraph(vec![Inline::Text("<b> & \"q\"".into())])];
        assert!(render("t", &doc).contains("<p>&lt;b&gt; &amp; &quot;q&quot;</p>"));
    }

    #[test]
    fn inline_svg_drops_the_declaration_and_namespace() {
        let svg = "<?xml version=\"1.0\"?>\n<svg width=\"10\" height=\"10\" viewBox=\"0 0 10 10\" xmlns=\"http://www.w3.org/2000/svg\">\n<text>a</text></svg>";
        let out = inline_svg(svg, "A plot");
        assert!(
            out.starts_with("<svg role=\"img\" aria-label=\"A plot\" width=\"10\""),
            "{out}"
        );
        assert!(!out.contains("http"), "{out}");
        assert!(out.ends_with("</svg>"));
    }

    #[test]
    fn numeric_columns_are_right_aligned() {
        let doc = vec![Block::Table {
            header: vec!["a".into(), "n".into()],
            numeric: vec![false, true],
            rows: vec![vec![
                vec![Inline::Text("x".into())],
                vec![Inline::Text("1".into())],
            ]],
        }];
        let html = render("t", &doc);
        assert!(html.contains("<th class=\"num\">n</th>"));
        assert!(html.contains("<td class=\"num\">1</td>"));
    }
}
