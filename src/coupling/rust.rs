//! Rust: `mod x;` declarations and `use`/inline paths (`crate::`, `self::`, `super::`, and the
//! names of the workspace's crates), resolved to the files that hold those modules.
//!
//! Resolution follows the module tree as rustc lays it out on disk, as well as it can be known
//! without compiling: a crate is the directory of the nearest `Cargo.toml`; its roots are
//! `src/lib.rs`, `src/main.rs`, `src/bin/*`, `tests/*`, `examples/*`, `benches/*` and `build.rs`;
//! module `a::b` of a root in `R` is `R/a/b.rs` or `R/a/b/mod.rs`; a path names the deepest module
//! that exists (`crate::a::b::Item` is `a/b.rs`, or `a.rs` when `b` is an item of `a`).
//! `#[path]` on a `mod` declaration is honoured; inline `mod x { … }` blocks are not followed.

use std::collections::HashMap;

use super::files::{FileIndex, child, file_name, join, parent};
use super::imports::Found;
use super::scan::{self, Tok};

/// The workspace's crates: the identifier each is used by, and its directory.
#[derive(Debug, Default)]
pub(crate) struct Crates {
    by_name: HashMap<String, String>,
}

/// `name = "value"` in a TOML section, read line by line (enough for `[package] name`).
fn toml_names(text: &str) -> (Option<String>, Option<String>) {
    let (mut section, mut package, mut lib) = (String::new(), None, None);
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            section = l.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            continue;
        }
        let Some(rest) = l.strip_prefix("name") else {
            continue;
        };
        let Some(value) = rest.trim_start().strip_prefix('=') else {
            continue;
        };
        let v = value
            .trim()
            .trim_matches(|c| c == '"' || c == '\'')
            .to_string();
        match section.as_str() {
            "package" => package = Some(v),
            "lib" => lib = Some(v),
            _ => {}
        }
    }
    (package, lib)
}

impl Crates {
    pub(crate) fn new(ix: &FileIndex, read: &mut dyn FnMut(&str) -> Option<String>) -> Crates {
        let mut by_name = HashMap::new();
        for manifest in ix.named("Cargo.toml") {
            let dir = parent(manifest);
            if !ix.contains(&child(dir, "src/lib.rs")) {
                continue; // only a library can be `use`d by name
            }
            let Some(text) = read(manifest) else { continue };
            let (package, lib) = toml_names(&text);
            if let Some(name) = lib.or(package) {
                by_name.insert(name.replace('-', "_"), dir.to_string());
            }
        }
        Crates { by_name }
    }
}

/// Where a file sits in its crate's module tree.
#[derive(Debug, PartialEq, Eq)]
struct Module {
    /// The directory of the crate root's modules.
    root_dir: String,
    /// The module's path below the root (empty for the root itself).
    segs: Vec<String>,
    /// Where `mod x;` of this file looks for `x`.
    child_dir: String,
}

fn crate_dir_of(ix: &FileIndex, path: &str) -> Option<String> {
    let mut d = parent(path);
    loop {
        if ix.contains(&child(d, "Cargo.toml")) {
            return Some(d.to_string());
        }
        if d.is_empty() {
            return None;
        }
        d = parent(d);
    }
}

fn module_of(ix: &FileIndex, path: &str) -> Module {
    let crate_dir = crate_dir_of(ix, path).unwrap_or_default();
    let rel = if crate_dir.is_empty() {
        path
    } else {
        &path[crate_dir.len() + 1..]
    };
    let comps: Vec<&str> = rel.split('/').collect();
    let at = |parts: &[&str]| join(&crate_dir, &parts.join("/")).unwrap_or_default();
    let name = file_name(path);
    // The root directory (as components of `rel`), and whether the file is a crate root.
    let (root, is_root): (Vec<&str>, bool) = match comps.as_slice() {
        ["build.rs"] => (vec![], true),
        ["src", "bin", _] => (vec!["src", "bin"], true),
        ["src", "bin", x, ..] if ix.contains(&at(&["src", "bin", x, "main.rs"])) => {
            (vec!["src", "bin", x], comps.len() == 4 && name == "main.rs")
        }
        ["src", ..] => (
            vec!["src"],
            comps.len() == 2 && (name == "lib.rs" || name == "main.rs"),
        ),
        [t @ ("tests" | "examples" | "benches"), _] => (vec![t], true),
        [t @ ("tests" | "examples" | "benches"), x, ..] if ix.contains(&at(&[t, x, "main.rs"])) => {
            (vec![t, x], comps.len() == 3 && name == "main.rs")
        }
        [t @ ("tests" | "examples" | "benches"), ..] => (vec![t], false),
        _ => (
            comps[..comps.len() - 1].to_vec(),
            name == "lib.rs" || name == "main.rs",
        ),
    };
    let root_dir = at(&root);
    let below = &comps[root.len()..];
    let mut segs: Vec<String> = below.iter().map(|s| s.to_string()).collect();
    if is_root {
        segs.clear();
    } else if let Some(last) = segs.pop()
        && last != "mod.rs"
    {
        segs.push(last.trim_end_matches(".rs").to_string());
    }
    let child_dir = if is_root || name == "mod.rs" {
        parent(path).to_string()
    } else {
        child(parent(path), name.trim_end_matches(".rs"))
    };
    Module {
        root_dir,
        segs,
        child_dir,
    }
}

/// The file of the deepest module of `segs` below `root_dir` that exists; with `root_file`, the
/// crate root itself when no module matches.
fn resolve(ix: &FileIndex, root_dir: &str, segs: &[String], root_file: bool) -> Option<String> {
    resolve_below(ix, root_dir, segs, 1, root_file)
}

/// [`resolve`] taking only modules at least `min` segments deep.
fn resolve_below(
    ix: &FileIndex,
    root_dir: &str,
    segs: &[String],
    min: usize,
    root_file: bool,
) -> Option<String> {
    for k in (min.max(1)..=segs.len()).rev() {
        let base = child(root_dir, &segs[..k].join("/"));
        if let Some(f) = ix.first_of([format!("{base}.rs"), format!("{base}/mod.rs")]) {
            return Some(f);
        }
    }
    if root_file {
        ix.first_of([child(root_dir, "lib.rs"), child(root_dir, "main.rs")])
    } else {
        None
    }
}

const EXTERNAL: &[&str] = &["std", "core", "alloc", "proc_macro", "test"];

struct Scanner<'a> {
    ix: &'a FileIndex,
    crates: &'a Crates,
    module: Module,
    out: Vec<Found>,
}

impl Scanner<'_> {
    /// Resolve one path (`crate::a::b`, `super::x`, `name::y`) as written in a `use` or in code.
    fn path(&mut self, path: &[String], line: usize, in_use: bool) {
        let Some(first) = path.first() else { return };
        let m = &self.module;
        let target = match first.as_str() {
            "crate" | "$crate" => resolve(self.ix, &m.root_dir, &path[1..], true),
            "self" => {
                let mut segs = m.segs.clone();
                segs.extend_from_slice(&path[1..]);
                resolve_below(self.ix, &m.root_dir, &segs, m.segs.len() + 1, false)
            }
            "super" => {
                let mut segs = m.segs.clone();
                let mut rest = path;
                while rest.first().is_some_and(|s| s == "super") {
                    if segs.pop().is_none() {
                        return;
                    }
                    rest = &rest[1..];
                }
                segs.extend_from_slice(rest);
                resolve(self.ix, &m.root_dir, &segs, true)
            }
            name if EXTERNAL.contains(&name) => None,
            name => match self.crates.by_name.get(name) {
                Some(dir) => resolve(self.ix, &child(dir, "src"), &path[1..], true),
                // In a `use`, a leading name may be a child module (2018) or a module of the crate
                // root (2015).
                None if in_use => {
                    let mut segs = m.segs.clone();
                    segs.extend_from_slice(path);
                    resolve_below(self.ix, &m.root_dir, &segs, m.segs.len() + 1, false)
                        .or_else(|| resolve(self.ix, &m.root_dir, path, false))
                }
                None => None,
            },
        };
        if let Some(to) = target {
            let statement = if in_use {
                format!("use {}", path.join("::"))
            } else {
                path.join("::")
            };
            self.out.push(Found {
                to,
                line,
                statement,
            });
        }
    }
}

fn is_path_sep(toks: &[(Tok, usize)], i: usize) -> bool {
    matches!(
        (toks.get(i), toks.get(i + 1)),
        (Some((Tok::Punct(b':'), _)), Some((Tok::Punct(b':'), _)))
    )
}

/// One `use` tree from `toks[*i]`, each full path pushed onto `out`; stops after `;` or at the
/// `,`/`}` that ends it.
fn use_tree(toks: &[(Tok, usize)], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    while *i < toks.len() {
        match &toks[*i].0 {
            Tok::Ident("as") => {
                *i += 2; // `as name`
                continue;
            }
            Tok::Ident(s) if *s == "self" && !path.is_empty() => {}
            Tok::Ident(s) => path.push(s.to_string()),
            Tok::Punct(b':') => {}
            Tok::Punct(b'{') => {
                *i += 1;
                while *i < toks.len() {
                    match toks[*i].0 {
                        Tok::Punct(b'}') => {
                            *i += 1;
                            break;
                        }
                        Tok::Punct(b',') => *i += 1,
                        _ => use_tree(toks, i, path.clone(), out),
                    }
                }
                return;
            }
            Tok::Punct(b'*') => {}
            Tok::Punct(b',' | b'}') => {
                out.push(path);
                return;
            }
            Tok::Punct(b';') => {
                out.push(path);
                *i += 1;
                return;
            }
            _ => {}
        }
        *i += 1;
    }
    out.push(path);
}

/// A path written `levels` inline modules deep, as seen from the file's module: `None` when it
/// names something inside those inline modules (no other file).
fn out_of_inline(mut p: Vec<String>, levels: usize) -> Option<Vec<String>> {
    if levels == 0 {
        return Some(p);
    }
    match p.first().map(String::as_str) {
        Some("self") => None,
        Some("super") => {
            let n = p.iter().take_while(|s| *s == "super").count();
            match n.cmp(&levels) {
                std::cmp::Ordering::Less => None,
                std::cmp::Ordering::Equal => {
                    p.drain(..n);
                    p.insert(0, "self".into());
                    Some(p)
                }
                std::cmp::Ordering::Greater => {
                    p.drain(..levels);
                    Some(p)
                }
            }
        }
        _ => Some(p),
    }
}

pub(crate) fn imports(ix: &FileIndex, crates: &Crates, path: &str, text: &str) -> Vec<Found> {
    let toks = scan::tokens(text, scan::RUST);
    let mut s = Scanner {
        ix,
        crates,
        module: module_of(ix, path),
        out: Vec::new(),
    };
    let mut path_attr: Option<String> = None;
    // Inline modules (`mod tests { … }`): `self::` and `super::` inside them are relative to
    // them, not to the file's module. The brace depth at which each open one's body began.
    let (mut depth, mut inline, mut inline_next): (usize, Vec<usize>, bool) =
        (0, Vec::new(), false);
    let mut i = 0;
    while i < toks.len() {
        let (tok, line) = (&toks[i].0, toks[i].1);
        match tok {
            Tok::Punct(b'{') => {
                depth += 1;
                if std::mem::take(&mut inline_next) {
                    inline.push(depth);
                }
            }
            Tok::Punct(b'}') => {
                if inline.last() == Some(&depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        match tok {
            // #[path = "x.rs"]
            Tok::Punct(b'#')
                if matches!(toks.get(i + 2), Some((Tok::Ident("path"), _)))
                    && matches!(toks.get(i + 3), Some((Tok::Punct(b'='), _))) =>
            {
                if let Some((Tok::Str(p), _)) = toks.get(i + 4) {
                    path_attr = Some(p.to_string());
                }
                i += 5;
                continue;
            }
            Tok::Ident("mod")
                if matches!(
                    (toks.get(i + 1), toks.get(i + 2)),
                    (Some((Tok::Ident(_), _)), Some((Tok::Punct(b'{'), _)))
                ) =>
            {
                inline_next = true;
            }
            Tok::Ident("mod") => {
                if let (Some((Tok::Ident(name), _)), Some((Tok::Punct(b';'), _))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    let candidates = match path_attr.take() {
                        Some(p) => join(parent(path), &p).into_iter().collect::<Vec<_>>(),
                        None => vec![
                            child(&s.module.child_dir, &format!("{name}.rs")),
                            child(&s.module.child_dir, &format!("{name}/mod.rs")),
                        ],
                    };
                    if let Some(to) = ix.first_of(candidates) {
                        s.out.push(Found {
                            to,
                            line,
                            statement: format!("mod {name}"),
                        });
                    }
                    i += 3;
                    continue;
                }
            }
            Tok::Ident("use") => {
                let mut paths = Vec::new();
                i += 1;
                use_tree(&toks, &mut i, Vec::new(), &mut paths);
                for p in paths {
                    if let Some(p) = out_of_inline(p, inline.len()) {
                        s.path(&p, line, true);
                    }
                }
                path_attr = None;
                continue;
            }
            Tok::Ident(first)
                if is_path_sep(&toks, i + 1)
                    && !(i >= 2 && is_path_sep(&toks, i - 2))
                    && (matches!(*first, "crate" | "$crate" | "self" | "super")
                        || s.crates.by_name.contains_key(*first)) =>
            {
                let mut p = vec![first.to_string()];
                let mut j = i + 1;
                while is_path_sep(&toks, j) {
                    match toks.get(j + 2) {
                        Some((Tok::Ident(seg), _)) => {
                            p.push(seg.to_string());
                            j += 3;
                        }
                        _ => break,
                    }
                }
                if let Some(p) = out_of_inline(p, inline.len()) {
                    s.path(&p, line, false);
                }
                i = j;
                continue;
            }
            Tok::Punct(b';' | b'{' | b'}') => path_attr = None,
            _ => {}
        }
        i += 1;
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ix(paths: &[&str]) -> FileIndex {
        FileIndex::new(paths.iter().map(|p| p.to_string()))
    }

    fn targets(ix: &FileIndex, crates: &Crates, path: &str, text: &str) -> Vec<String> {
        let mut t: Vec<String> = imports(ix, crates, path, text)
            .into_iter()
            .map(|f| f.to)
            .filter(|t| t != path)
            .collect();
        t.sort();
        t.dedup();
        t
    }

    #[test]
    fn module_tree_layout() {
        let ix = ix(&[
            "Cargo.toml",
            "src/lib.rs",
            "src/api/mod.rs",
            "src/api/routes.rs",
            "src/db.rs",
            "src/db/pool.rs",
            "src/bin/tool.rs",
            "tests/it.rs",
            "tests/common/mod.rs",
        ]);
        let m = module_of(&ix, "src/api/routes.rs");
        assert_eq!(
            (m.root_dir.as_str(), m.segs.clone()),
            ("src", vec!["api".into(), "routes".into()])
        );
        assert_eq!(m.child_dir, "src/api/routes");
        let m = module_of(&ix, "src/db.rs");
        assert_eq!(
            (m.segs.clone(), m.child_dir.as_str()),
            (vec!["db".into()], "src/db")
        );
        let m = module_of(&ix, "src/lib.rs");
        assert!(m.segs.is_empty());
        assert_eq!(m.child_dir, "src");
        let m = module_of(&ix, "tests/it.rs");
        assert_eq!(
            (m.root_dir.as_str(), m.child_dir.as_str()),
            ("tests", "tests")
        );
        let m = module_of(&ix, "tests/common/mod.rs");
        assert_eq!(
            (m.root_dir.as_str(), m.segs.clone()),
            ("tests", vec!["common".into()])
        );
    }

    #[test]
    fn paths_inside_inline_modules_are_relative_to_them() {
        let ix = ix(&["Cargo.toml", "src/lib.rs", "src/api/mod.rs", "src/db.rs"]);
        let crates = Crates::default();
        // `super` in `mod tests { }` is the file's own module, not its parent; two levels up
        // from inside it is one level up from the file.
        assert_eq!(
            targets(
                &ix,
                &crates,
                "src/api/mod.rs",
                "fn f() {}
#[cfg(test)]
mod tests {
    use super::*;
    use self::helpers::x;
    use super::super::db::Pool;
}
use super::db::Conn;"
            ),
            ["src/db.rs"]
        );
    }

    #[test]
    fn mod_use_and_paths_resolve_to_files() {
        let ix = ix(&[
            "Cargo.toml",
            "src/lib.rs",
            "src/api/mod.rs",
            "src/api/routes.rs",
            "src/db.rs",
            "src/db/pool.rs",
            "src/gen/out.rs",
            "src/util.rs",
        ]);
        let crates = Crates::default();
        assert_eq!(
            targets(
                &ix,
                &crates,
                "src/lib.rs",
                "pub mod api;\nmod db;\nmod nothere;\n#[path = \"gen/out.rs\"]\nmod generated;\nmod inline { }"
            ),
            ["src/api/mod.rs", "src/db.rs", "src/gen/out.rs"]
        );
        assert_eq!(
            targets(
                &ix,
                &crates,
                "src/api/routes.rs",
                "use crate::db::pool::{Pool, connect};\nuse super::Thing;\nuse std::io;\nfn f() { crate::util::helper(); let s = \"crate::nope::x\"; }"
            ),
            ["src/api/mod.rs", "src/db/pool.rs", "src/util.rs"]
        );
        // A path into an item of a module resolves to that module's file; `crate::Item` to the root.
        assert_eq!(
            targets(
                &ix,
                &crates,
                "src/api/mod.rs",
                "use crate::{db::{self, Conn}, Error};\npub mod routes;"
            ),
            ["src/api/routes.rs", "src/db.rs", "src/lib.rs"]
        );
        // 2018 child-module and 2015 crate-relative `use` paths.
        assert_eq!(
            targets(
                &ix,
                &crates,
                "src/api/mod.rs",
                "use routes::x; use db::pool;"
            ),
            ["src/api/routes.rs", "src/db/pool.rs"]
        );
    }

    #[test]
    fn workspace_crates_by_name() {
        let ix = ix(&[
            "Cargo.toml",
            "crates/core-lib/Cargo.toml",
            "crates/core-lib/src/lib.rs",
            "crates/core-lib/src/model.rs",
            "crates/app/Cargo.toml",
            "crates/app/src/main.rs",
        ]);
        let mut read = |p: &str| match p {
            "crates/core-lib/Cargo.toml" => Some("[package]\nname = \"core-lib\"\n".to_string()),
            "crates/app/Cargo.toml" => Some("[package]\nname = \"app\"\n".to_string()),
            _ => Some("[workspace]\nmembers = [\"crates/*\"]\n".to_string()),
        };
        let crates = Crates::new(&ix, &mut read);
        assert_eq!(
            targets(
                &ix,
                &crates,
                "crates/app/src/main.rs",
                "use core_lib::model::Thing;\nfn main() { core_lib::run(); }"
            ),
            ["crates/core-lib/src/lib.rs", "crates/core-lib/src/model.rs"]
        );
    }
}
