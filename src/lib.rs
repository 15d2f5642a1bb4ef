#![cfg_attr(test, allow(clippy::unwrap_used))]
//! agent-farm: run a team of AI coding agents in parallel on one git repository.
//!
//! The pure core ([`vocab`], [`plan`], [`ownership`], [`report`], [`record`]'s fold over [`events`])
//! is kept apart from the effectful shell ([`git`], [`runner`], [`cli`]). [`vocab`] is the leaf every
//! module may use: the names of statuses, phases and failure kinds.

pub mod cli;
pub mod coupling;
pub mod draft;
pub mod error;
pub mod events;
pub mod export;
pub mod fault;
pub mod git;
pub mod history;
pub mod hooks;
pub mod journal;
pub mod live;
pub mod lock;
pub mod names;
pub mod ownership;
pub mod plan;
pub mod record;
pub mod recover;
pub mod report;
pub mod reporter;
pub mod runner;
pub mod session;
pub mod sim;
pub mod supervise;
pub mod timeline;
pub mod transcript;
pub mod txn;
pub mod unsaved;
pub mod vocab;
pub mod watch;

#[cfg(test)]
mod module_graph {
    //! The modules' dependency graph, read from the source: who names `crate::<module>`.

    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    type Graph = BTreeMap<String, BTreeSet<String>>;

    /// The code alone: comments and the contents of string and char literals removed, so that
    /// neither a doc link nor a glob like `"src/**"` is read as code.
    fn strip_comments(src: &str) -> String {
        let c: Vec<char> = src.chars().collect();
        let mut out = String::with_capacity(src.len());
        let mut i = 0;
        let ident_before = |i: usize| i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        while i < c.len() {
            let at = |i: usize, k: usize| c.get(i + k).copied();
            if c[i] == '/' && at(i, 1) == Some('/') {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            } else if c[i] == '/' && at(i, 1) == Some('*') {
                let mut depth = 0;
                while i < c.len() {
                    if c[i] == '/' && at(i, 1) == Some('*') {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && at(i, 1) == Some('/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            } else if c[i] == 'r' && !ident_before(i) && matches!(at(i, 1), Some('"' | '#')) {
                // A raw string: r"…", r#"…"#.
                let hashes = c[i + 1..].iter().take_while(|&&h| h == '#').count();
                if c.get(i + 1 + hashes) != Some(&'"') {
                    out.push(c[i]);
                    i += 1;
                    continue;
                }
                i += 2 + hashes;
                while i < c.len()
                    && !(c[i] == '"' && c[i + 1..].iter().take(hashes).all(|&h| h == '#'))
                {
                    i += 1;
                }
                i += 1 + hashes;
                out.push_str("\"\"");
            } else if c[i] == '"' {
                i += 1;
                while i < c.len() && c[i] != '"' {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            } else if c[i] == '\'' && at(i, 1) == Some('\\') {
                // An escaped char literal: '\n', '\'', '\u{..}'.
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c[i] == '\'' && at(i, 2) == Some('\'') {
                i += 3; // 'x'
            } else {
                out.push(c[i]);
                i += 1;
            }
        }
        out
    }

    fn ident(s: &str) -> &str {
        let end = s
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        &s[..end]
    }

    /// The top-level modules named after each `crate::` (`crate::a::b`, `crate::{a, b::c}`).
    fn named_modules(src: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (i, _) in src.match_indices("crate::") {
            let after = &src[i + "crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                let (mut depth, mut item_start) = (0usize, true);
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        c if c.is_whitespace() => {}
                        _ if item_start => {
                            out.insert(ident(&group[j..]).to_string());
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                out.insert(ident(after).to_string());
            }
        }
        out
    }

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    fn graph() -> Graph {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
        let modules: BTreeSet<String> = lib
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub mod "))
            .filter_map(|l| l.strip_suffix(';'))
            .map(str::to_owned)
            .collect();
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut g: Graph = modules
            .iter()
            .map(|m| (m.clone(), BTreeSet::new()))
            .collect();
        for f in files {
            let rel = f.strip_prefix(&src).unwrap();
            let first = rel.components().next().unwrap().as_os_str();
            let top = first.to_string_lossy().trim_end_matches(".rs").to_string();
            if !modules.contains(&top) {
                continue; // lib.rs, main.rs
            }
            let text = strip_comments(&std::fs::read_to_string(&f).unwrap());
            for m in named_modules(&text) {
                assert!(
                    modules.contains(&m),
                    "{}: `crate::{m}` is no module",
                    f.display()
                );
                if m != top {
                    g.get_mut(&top).unwrap().insert(m);
                }
            }
        }
        g
    }

    /// A cycle, as the path that closes it, if there is one.
    fn find_cycle(g: &Graph) -> Option<Vec<String>> {
        fn visit(
            g: &Graph,
            m: &str,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(i) = path.iter().position(|p| p == m) {
                let mut cycle = path[i..].to_vec();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            if done.contains(m) {
                return None;
            }
            path.push(m.to_string());
            for next in &g[m] {
                if let Some(c) = visit(g, next, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(m.to_string());
            None
        }
        let mut done = BTreeSet::new();
        g.keys()
            .find_map(|m| visit(g, m, &mut Vec::new(), &mut done))
    }

    #[test]
    fn the_parser_sees_every_form_of_path() {
        let src = strip_comments(
            "use crate::a::X;\n// crate::b\n/* crate::c /* nested */ */ let y = crate::d::f();\n\
             let g = \"src/**\"; let q = '\"'; let r = r#\"crate::z\"#;\n\
             use crate::{e::Y, f, g::{h, i}};",
        );
        let got: Vec<String> = named_modules(&src).into_iter().collect();
        assert_eq!(got, ["a", "d", "e", "f", "g"]);
        let mut g = Graph::new();
        g.insert("x".into(), ["y".to_string()].into());
        g.insert("y".into(), ["x".to_string()].into());
        assert_eq!(find_cycle(&g).unwrap(), ["x", "y", "x"]);
    }

    #[test]
    fn modules_form_no_cycle() {
        let g = graph();
        let shown: Vec<String> = g
            .iter()
            .map(|(m, deps)| format!("{m} -> {deps:?}"))
            .collect();
        if let Some(cycle) = find_cycle(&g) {
            panic!("module cycle: {}\n{}", cycle.join(" -> "), shown.join("\n"));
        }
        // The leaves: the vocabulary and path ownership import nothing of ours; git and the
        // locks know nothing of commands or their error types.
        for leaf in ["vocab", "ownership", "names", "fault"] {
            assert!(g[leaf].is_empty(), "{leaf} imports {:?}", g[leaf]);
        }
        for m in ["git", "lock"] {
            for shell in ["cli", "error", "runner"] {
                assert!(!g[m].contains(shell), "{m} imports {shell}");
            }
        }
    }
}
