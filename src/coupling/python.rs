//! Python: `import a.b`, `from a.b import c` (a submodule `c` when it is a file), and relative
//! imports (`from . import x`, `from ..a import b`).
//!
//! An absolute module is looked up under the roots of the top-level packages of that name found
//! in the repository (the parent of the outermost directory with an `__init__.py`), then under
//! the importing file's own directories, nearest first: `a.b` is `R/a/b.py` or
//! `R/a/b/__init__.py`.

use std::collections::HashMap;

use super::files::{FileIndex, child, common_components, file_name, join, parent};
use super::imports::Found;
use super::scan::{self, Tok};

/// Top-level package and module names, with the directories they are importable from.
#[derive(Debug, Default)]
pub(crate) struct Roots {
    by_name: HashMap<String, Vec<String>>,
}

impl Roots {
    pub(crate) fn new(ix: &FileIndex) -> Roots {
        let mut by_name: HashMap<String, Vec<String>> = HashMap::new();
        for p in ix.paths() {
            if !(p.ends_with(".py") || p.ends_with(".pyi")) {
                continue;
            }
            let mut dir = parent(p);
            let is_pkg = |d: &str| !d.is_empty() && ix.contains(&child(d, "__init__.py"));
            let (name, root) = if is_pkg(dir) {
                while is_pkg(parent(dir)) {
                    dir = parent(dir);
                }
                (file_name(dir).to_string(), parent(dir).to_string())
            } else {
                let stem = file_name(p).split('.').next().unwrap_or_default();
                (stem.to_string(), dir.to_string())
            };
            let roots = by_name.entry(name).or_default();
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
        Roots { by_name }
    }
}

fn module_file(ix: &FileIndex, dir: &str, dotted: &[&str]) -> Option<String> {
    let base = join(dir, &dotted.join("/"))?;
    if dotted.is_empty() {
        return ix.first_of([child(&base, "__init__.py")]);
    }
    ix.first_of([
        format!("{base}.py"),
        format!("{base}/__init__.py"),
        format!("{base}.pyi"),
    ])
}

/// The file of an absolute module, looked up in the candidate roots.
fn absolute(ix: &FileIndex, roots: &Roots, from: &str, dotted: &[&str]) -> Option<String> {
    let first = *dotted.first()?;
    let mut candidates: Vec<String> = roots.by_name.get(first).cloned().unwrap_or_default();
    candidates.sort_by_key(|r| std::cmp::Reverse(common_components(r, from)));
    let mut d = parent(from);
    loop {
        candidates.push(d.to_string());
        if d.is_empty() {
            break;
        }
        d = parent(d);
    }
    candidates
        .iter()
        .find_map(|root| module_file(ix, root, dotted))
}

pub(crate) fn imports(ix: &FileIndex, roots: &Roots, path: &str, text: &str) -> Vec<Found> {
    let toks = scan::tokens(text, scan::PYTHON);
    let mut out = Vec::new();
    let dotted_at = |i: &mut usize| -> Vec<&str> {
        let mut name = Vec::new();
        while let Some((Tok::Ident(s), _)) = toks.get(*i) {
            if *s == "import" {
                break; // `from . import x`
            }
            name.push(*s);
            *i += 1;
            if matches!(toks.get(*i), Some((Tok::Punct(b'.'), _))) {
                *i += 1;
            } else {
                break;
            }
        }
        name
    };
    let mut i = 0;
    while i < toks.len() {
        let line = toks[i].1;
        match &toks[i].0 {
            Tok::Ident("import") => {
                // import a.b [as c], d
                i += 1;
                loop {
                    let name = dotted_at(&mut i);
                    if name.is_empty() {
                        break;
                    }
                    if let Some(to) = absolute(ix, roots, path, &name) {
                        out.push(Found {
                            to,
                            line,
                            statement: format!("import {}", name.join(".")),
                        });
                    }
                    if matches!(toks.get(i), Some((Tok::Ident("as"), _))) {
                        i += 2;
                    }
                    match toks.get(i) {
                        Some((Tok::Punct(b','), l)) if *l == line => i += 1,
                        _ => break,
                    }
                }
                continue;
            }
            Tok::Ident("from") => {
                i += 1;
                let mut level = 0;
                while let Some((Tok::Punct(b'.'), _)) = toks.get(i) {
                    level += 1;
                    i += 1;
                }
                let module = dotted_at(&mut i);
                if !matches!(toks.get(i), Some((Tok::Ident("import"), _))) {
                    continue; // `yield from x`, `raise X from e`
                }
                i += 1;
                let mut names = Vec::new();
                let paren = matches!(toks.get(i), Some((Tok::Punct(b'('), _)));
                if paren {
                    i += 1;
                }
                while let Some((t, l)) = toks.get(i) {
                    match t {
                        Tok::Ident("as") => i += 1,
                        Tok::Ident(n) if paren || *l == line => names.push(*n),
                        Tok::Punct(b',') => {}
                        Tok::Punct(b'*') => {}
                        _ => break,
                    }
                    i += 1;
                    if !paren && matches!(toks.get(i), Some((_, l)) if *l != line) {
                        break;
                    }
                }
                let base = if level > 0 {
                    let mut d = Some(parent(path).to_string());
                    for _ in 1..level {
                        d = d.and_then(|d| join(&d, ".."));
                    }
                    let Some(d) = d else { continue };
                    Some(d)
                } else {
                    None
                };
                let stmt = format!("from {}{} import", ".".repeat(level), module.join("."));
                let resolve = |dotted: &[&str]| match &base {
                    Some(d) => module_file(ix, d, dotted),
                    None => absolute(ix, roots, path, dotted),
                };
                // Names that are submodules are edges to their files; any other name (or `*`)
                // is an attribute of the module itself.
                let mut attribute = names.is_empty();
                for n in &names {
                    let mut sub = module.clone();
                    sub.push(n);
                    match resolve(&sub) {
                        Some(to) => out.push(Found {
                            to,
                            line,
                            statement: format!("{stmt} {n}"),
                        }),
                        None => attribute = true,
                    }
                }
                if attribute && let Some(to) = resolve(&module) {
                    out.push(Found {
                        to,
                        line,
                        statement: format!("{stmt} {}", names.join(", ")),
                    });
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(paths: &[&str], from: &str, text: &str) -> Vec<String> {
        let ix = FileIndex::new(paths.iter().map(|p| p.to_string()));
        let roots = Roots::new(&ix);
        let mut t: Vec<String> = imports(&ix, &roots, from, text)
            .into_iter()
            .map(|f| f.to)
            .filter(|t| t != from)
            .collect();
        t.sort();
        t.dedup();
        t
    }

    #[test]
    fn absolute_from_and_relative_imports() {
        let files = [
            "src/shop/__init__.py",
            "src/shop/models.py",
            "src/shop/api/__init__.py",
            "src/shop/api/views.py",
            "src/shop/db/__init__.py",
            "src/shop/db/pool.py",
            "tests/test_views.py",
            "scripts/tool.py",
            "scripts/helpers.py",
        ];
        assert_eq!(
            targets(
                &files,
                "tests/test_views.py",
                "import os\nimport shop.api.views as v, json\nfrom shop.db import pool\nfrom shop.models import (\n  Order,\n  Item,\n)\n"
            ),
            [
                "src/shop/api/views.py",
                "src/shop/db/pool.py",
                "src/shop/models.py"
            ]
        );
        assert_eq!(
            targets(
                &files,
                "src/shop/api/views.py",
                "from . import views\nfrom ..db.pool import connect\nfrom .. import models\n\"\"\"import shop.models\"\"\"\n# from shop import nothing\n"
            ),
            ["src/shop/db/pool.py", "src/shop/models.py"]
        );
        // A sibling module of a script, by the script's own directory.
        assert_eq!(
            targets(
                &files,
                "scripts/tool.py",
                "import helpers\ndef f():\n    yield from helpers.g()\n"
            ),
            ["scripts/helpers.py"]
        );
    }
}
