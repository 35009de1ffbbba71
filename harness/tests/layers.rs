//! No import cycle between the top-level modules of any crate of the
//! workspace: the layers of a crate (the harness's model -> store/measure
//! -> analyse -> report -> run -> cli) only depend downward, so each can
//! be read, tested and changed without the ones above it.
//!
//! The test reads the `.rs` sources of every workspace member as text and
//! builds, per crate, the graph of its top-level modules from the paths that
//! name them: `crate::X` (in `use`, in expressions, in `{...}` groups) and
//! `super::` paths resolved against the module they are written in (inline
//! `mod name { ... }` blocks included). Comments and string literals do not
//! count. A cycle fails the test and is printed with the file and line of
//! each of its edges.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// Crates whose cycles are reported but do not fail the test yet, with the
/// reason (none now: lab-common's `conn` <-> `worker` cycle is gone). Remove
/// an entry once its cycle is gone, so it cannot come back.
const NOT_YET_ASSERTED: &[(&str, &str)] = &[];

/// Where an edge comes from: file and line.
type Evidence = (PathBuf, usize);

/// One crate's module graph: top-level module -> (module it uses -> first place).
#[derive(Default)]
struct Graph {
    modules: BTreeSet<String>,
    edges: BTreeMap<String, BTreeMap<String, Evidence>>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the harness is in a workspace")
        .to_path_buf()
}

/// The workspace's members, from the root `Cargo.toml`.
fn members(root: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let start = text.find("members").expect("a members list");
    let list = &text[start..];
    let list = &list[list.find('[').unwrap() + 1..list.find(']').unwrap()];
    list.split(',')
        .map(|s| s.trim().trim_matches('"'))
        .filter(|s| !s.is_empty())
        .map(|s| root.join(s))
        .collect()
}

fn package_name(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    text.lines()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix("name")
                .map(|v| {
                    v.trim_start()
                        .trim_start_matches('=')
                        .trim()
                        .trim_matches('"')
                })
                .map(str::to_string)
        })
        .unwrap_or_else(|| dir.display().to_string())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a source file: `src/lib.rs` -> [], `src/a.rs` ->
/// [a], `src/a/mod.rs` -> [a], `src/a/b.rs` -> [a, b].
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    let at_root = parts.is_empty();
    if stem != "mod" && !(at_root && (stem == "lib" || stem == "main")) {
        parts.push(stem.to_string());
    }
    parts
}

/// The source without comments and string or char literals (newlines kept,
/// so that lines still count).
fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !(c[i - 1].is_alphanumeric() || c[i - 1] == '_'))
        {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                blank(&mut out, c[j]);
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                if let Some(&ch) = c.get(i) {
                    blank(&mut out, ch);
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c[i] == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Path,
    Punct(char),
}

/// Identifiers, `::` and single punctuation characters, with their lines.
fn tokens(text: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = text.chars().collect();
    let (mut out, mut i, mut line) = (Vec::new(), 0, 1);
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[start..i].iter().collect()), line));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Tok::Path, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

fn ident(t: Option<&(Tok, usize)>) -> Option<&str> {
    match t {
        Some((Tok::Ident(s), _)) => Some(s),
        _ => None,
    }
}

/// The first identifier of each item of the `{...}` group opening at
/// `toks[open]`.
fn group_heads(toks: &[(Tok, usize)], open: usize) -> Vec<String> {
    let (mut heads, mut depth, mut item_start) = (Vec::new(), 0, true);
    for (t, _) in &toks[open..] {
        match t {
            Tok::Punct('{') => {
                depth += 1;
                item_start = depth == 1;
            }
            Tok::Punct('}') => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            Tok::Punct(',') if depth == 1 => item_start = true,
            Tok::Ident(s) if item_start && depth == 1 => {
                heads.push(s.clone());
                item_start = false;
            }
            _ => {}
        }
    }
    heads
}

/// The module paths one file names, each with its line: `crate::` paths
/// from the crate root, `super::` paths resolved from where they are.
fn used_paths(file_module: &[String], text: &str) -> Vec<(Vec<String>, usize)> {
    let toks = tokens(&strip(text));
    let mut out = Vec::new();
    // Inline modules: (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < toks.len() {
        let (tok, line) = (&toks[i].0, toks[i].1);
        match tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth -= 1;
                while inline.last().is_some_and(|(_, d)| *d > depth) {
                    inline.pop();
                }
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let (Some(name), Some((Tok::Punct('{'), _))) =
                    (ident(toks.get(i + 1)), toks.get(i + 2))
                {
                    inline.push((name.to_string(), depth + 1));
                }
            }
            Tok::Ident(kw)
                if (kw == "crate" || kw == "super")
                    && toks.get(i + 1).is_some_and(|t| t.0 == Tok::Path) =>
            {
                let mut base: Vec<String> = if kw == "crate" {
                    Vec::new()
                } else {
                    let mut here: Vec<String> = file_module.to_vec();
                    here.extend(inline.iter().map(|(n, _)| n.clone()));
                    here.pop();
                    here
                };
                let mut j = i + 2;
                // super::super::...
                while kw == "super"
                    && ident(toks.get(j)) == Some("super")
                    && toks.get(j + 1).is_some_and(|t| t.0 == Tok::Path)
                {
                    base.pop();
                    j += 2;
                }
                match toks.get(j) {
                    Some((Tok::Ident(s), _)) => {
                        let mut p = base.clone();
                        p.push(s.clone());
                        out.push((p, line));
                    }
                    Some((Tok::Punct('{'), _)) => {
                        for h in group_heads(&toks, j) {
                            let mut p = base.clone();
                            if h != "self" {
                                p.push(h);
                            }
                            out.push((p, line));
                        }
                    }
                    _ => out.push((base.clone(), line)),
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The module graph of the crate whose sources are under `src`.
fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut g = Graph::default();
    for f in &files {
        if let Some(top) = module_path(src, f).first() {
            g.modules.insert(top.clone());
        }
    }
    for f in &files {
        let module = module_path(src, f);
        let Some(from) = module.first() else {
            continue; // the crate root: above every module
        };
        let text = std::fs::read_to_string(f).unwrap();
        for (path, line) in used_paths(&module, &text) {
            let Some(to) = path.first() else { continue };
            if to != from && g.modules.contains(to) {
                g.edges
                    .entry(from.clone())
                    .or_default()
                    .entry(to.clone())
                    .or_insert_with(|| (f.clone(), line));
            }
        }
    }
    g
}

/// The shortest path of edges from `a` to `b`, if any.
fn path(g: &Graph, a: &str, b: &str) -> Option<Vec<String>> {
    let mut prev: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = VecDeque::from([a.to_string()]);
    while let Some(n) = queue.pop_front() {
        for m in g.edges.get(&n).into_iter().flat_map(|e| e.keys()) {
            if m == b {
                let mut p = vec![b.to_string(), n.clone()];
                let mut cur = n.clone();
                while cur != a {
                    cur = prev[&cur].clone();
                    p.push(cur.clone());
                }
                p.reverse();
                return Some(p);
            }
            if !prev.contains_key(m) && m != a {
                prev.insert(m.clone(), n.clone());
                queue.push_back(m.clone());
            }
        }
    }
    None
}

/// Every cycle, one per strongly connected group of modules, each printed
/// as `a -> b (file:line) -> ... -> a (file:line)`.
fn cycles(g: &Graph, root: &Path) -> Vec<String> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for a in &g.modules {
        if seen.contains(a) {
            continue;
        }
        let Some(cycle) = path(g, a, a) else { continue };
        let group: BTreeSet<String> = g
            .modules
            .iter()
            .filter(|b| path(g, a, b).is_some() && path(g, b, a).is_some())
            .cloned()
            .collect();
        seen.extend(group.iter().cloned());
        let mut s = cycle[0].clone();
        for w in cycle.windows(2) {
            let (file, line) = &g.edges[&w[0]][&w[1]];
            let file = file.strip_prefix(root).unwrap_or(file);
            s.push_str(&format!(" -> {} ({}:{line})", w[1], file.display()));
        }
        out.push(format!(
            "{s}   [modules in the cycle group: {}]",
            group.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    out
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let root = workspace_root();
    let mut failures = Vec::new();
    let mut checked = Vec::new();
    for dir in members(&root) {
        let name = package_name(&dir);
        let g = graph(&dir.join("src"));
        checked.push(format!("{name} ({} modules)", g.modules.len()));
        let found = cycles(&g, &root);
        if found.is_empty() {
            continue;
        }
        match NOT_YET_ASSERTED.iter().find(|(n, _)| *n == name) {
            Some((_, why)) => {
                for c in &found {
                    eprintln!("NOT YET ASSERTED ({why}): {name}: import cycle {c}");
                }
            }
            None => failures.extend(found.iter().map(|c| format!("{name}: import cycle {c}"))),
        }
    }
    eprintln!("checked: {}", checked.join(", "));
    assert!(checked.iter().any(|c| c.starts_with("harness ")));
    assert!(
        failures.is_empty(),
        "top-level modules that use each other:\n{}",
        failures.join("\n")
    );
}

#[test]
fn paths_resolve_from_where_they_are_written() {
    let src = "
        use crate::model::{names, summary::Summary};
        use crate::{store, report::render};
        use super::super::analyse::x; // super::nothing
        const S: &str = \"crate::not_a_path\";
        fn f<'a>(c: char) -> bool { c == '{' && crate::run::go() }
        mod tests {
            use super::*;
            use super::super::cli;
        }
    ";
    let module = vec!["run".to_string(), "one".to_string()];
    let tops: Vec<(String, usize)> = used_paths(&module, src)
        .into_iter()
        .map(|(p, line)| (p.join("::"), line))
        .collect();
    let want: Vec<(String, usize)> = [
        ("model", 2),
        ("store", 3),
        ("report", 3),
        ("analyse", 4),
        ("run", 6),
        ("run::one", 8),
        ("run::cli", 9),
    ]
    .iter()
    .map(|(p, l)| (p.to_string(), *l))
    .collect();
    assert_eq!(tops, want);
}
