//! JavaScript and TypeScript: `import … from 'x'`, `import 'x'`, `export … from 'x'`,
//! `import('x')` and `require('x')`.
//!
//! A relative specifier (`./x`, `../x`) resolves against the importing file's directory the way
//! bundlers and TypeScript do: the exact file, else the file with one of the known extensions
//! (`./x.js` may be `x.ts` on disk), else `x/index.*`, or a `package.json` `main` in that
//! directory. A bare specifier resolves when it names a package of the repository (a
//! `package.json` `name`, as in a monorepo); anything else is a dependency from a registry.

use std::collections::HashMap;

use super::files::{FileIndex, child, join, parent};
use super::imports::Found;
use super::scan::{self, Tok};

const EXTENSIONS: &[&str] = &[
    "ts", "tsx", "d.ts", "js", "jsx", "mjs", "cjs", "mts", "cts", "json",
];

/// The repository's own packages by name: their directory and `main` entry.
#[derive(Debug, Default)]
pub(crate) struct Packages {
    by_name: HashMap<String, (String, Option<String>)>,
}

impl Packages {
    pub(crate) fn new(ix: &FileIndex, read: &mut dyn FnMut(&str) -> Option<String>) -> Packages {
        let mut by_name = HashMap::new();
        for manifest in ix.named("package.json") {
            if manifest.split('/').any(|c| c == "node_modules") {
                continue;
            }
            let Some(v) =
                read(manifest).and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            else {
                continue;
            };
            let Some(name) = v.get("name").and_then(|n| n.as_str()) else {
                continue;
            };
            let main = ["source", "module", "main", "types"]
                .iter()
                .find_map(|k| v.get(*k).and_then(|m| m.as_str()))
                .map(str::to_owned);
            by_name.insert(name.to_string(), (parent(manifest).to_string(), main));
        }
        Packages { by_name }
    }
}

/// The file `base` stands for: itself, with an extension, or its directory's entry point.
fn resolve_file(ix: &FileIndex, packages: &Packages, base: &str) -> Option<String> {
    if ix.contains(base) {
        return Some(base.to_string());
    }
    // `./x.js` written for `x.ts` (TypeScript's ESM convention).
    let stem = [".js", ".jsx", ".mjs", ".cjs"]
        .iter()
        .find_map(|e| base.strip_suffix(e))
        .unwrap_or(base);
    if let Some(f) = ix.first_of(EXTENSIONS.iter().map(|e| format!("{stem}.{e}"))) {
        return Some(f);
    }
    if !ix.is_dir(base) || base.is_empty() {
        return None;
    }
    let main = packages
        .by_name
        .values()
        .find(|(dir, _)| dir == base)
        .and_then(|(_, main)| main.as_deref())
        .and_then(|m| join(base, m));
    if let Some(m) = main
        && m != base
        && let Some(f) = resolve_file(ix, packages, &m)
    {
        return Some(f);
    }
    ix.first_of(
        EXTENSIONS
            .iter()
            .map(|e| child(base, &format!("index.{e}")))
            .chain(
                EXTENSIONS
                    .iter()
                    .map(|e| child(base, &format!("src/index.{e}"))),
            ),
    )
}

fn resolve(ix: &FileIndex, packages: &Packages, from: &str, spec: &str) -> Option<String> {
    let spec = spec.split(['?', '#']).next().unwrap_or(spec);
    if spec.starts_with("./") || spec.starts_with("../") || spec == "." || spec == ".." {
        return resolve_file(ix, packages, &join(parent(from), spec)?);
    }
    // A bare specifier: `@scope/name/sub` or `name/sub`.
    let mut parts = spec.splitn(3, '/');
    let first = parts.next()?;
    let (name, rest) = if first.starts_with('@') {
        let second = parts.next()?;
        (format!("{first}/{second}"), parts.next())
    } else {
        let rest = spec.split_once('/').map(|(_, r)| r);
        (first.to_string(), rest)
    };
    let (dir, _) = packages.by_name.get(&name)?;
    match rest {
        Some(r) => resolve_file(ix, packages, &join(dir, r)?),
        None => resolve_file(ix, packages, dir),
    }
}

pub(crate) fn imports(ix: &FileIndex, packages: &Packages, path: &str, text: &str) -> Vec<Found> {
    let toks = scan::tokens(text, scan::JS);
    let mut out = Vec::new();
    let mut push = |spec: &str, line: usize, stmt: String| {
        if let Some(to) = resolve(ix, packages, path, spec) {
            out.push(Found {
                to,
                line,
                statement: stmt,
            });
        }
    };
    for (i, (t, line)) in toks.iter().enumerate() {
        let next = toks.get(i + 1).map(|t| &t.0);
        let after = toks.get(i + 2).map(|t| &t.0);
        let before = i.checked_sub(1).map(|j| &toks[j].0);
        if matches!(before, Some(Tok::Punct(b'.'))) {
            continue; // `x.from('…')`, `obj.require('…')`
        }
        match (t, next, after) {
            (Tok::Ident("from"), Some(Tok::Str(s)), _) => push(s, *line, format!("from '{s}'")),
            (Tok::Ident("import"), Some(Tok::Str(s)), _) => push(s, *line, format!("import '{s}'")),
            (Tok::Ident("import"), Some(Tok::Punct(b'(')), Some(Tok::Str(s))) => {
                push(s, *line, format!("import('{s}')"))
            }
            (Tok::Ident("require"), Some(Tok::Punct(b'(')), Some(Tok::Str(s))) => {
                push(s, *line, format!("require('{s}')"))
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_package_specifiers() {
        let ix = FileIndex::new(
            [
                "web/src/app.ts",
                "web/src/api/index.ts",
                "web/src/util.js",
                "web/src/types.d.ts",
                "web/src/esm.ts",
                "web/src/data.json",
                "web/lib/old.cjs",
                "packages/ui/package.json",
                "packages/ui/lib/main.js",
                "packages/ui/button.tsx",
            ]
            .map(String::from),
        );
        let mut read = |p: &str| {
            (p == "packages/ui/package.json")
                .then(|| r#"{"name": "@acme/ui", "main": "lib/main.js"}"#.to_string())
        };
        let packages = Packages::new(&ix, &mut read);
        let text = "import { get } from './api';\nimport './util';\nimport type { T } from './types';\n\
                    export * from './esm.js';\nconst d = require('./data.json');\nconst o = require(\"../lib/old.cjs\");\n\
                    const lazy = () => import('./util');\nimport React from 'react';\nimport { Button } from '@acme/ui/button';\n\
                    import ui from '@acme/ui';\n// import x from './gone';\nconst s = Array.from('./nope');\n";
        let mut got: Vec<String> = imports(&ix, &packages, "web/src/app.ts", text)
            .into_iter()
            .map(|f| f.to)
            .collect();
        got.sort();
        got.dedup();
        assert_eq!(
            got,
            [
                "packages/ui/button.tsx",
                "packages/ui/lib/main.js",
                "web/lib/old.cjs",
                "web/src/api/index.ts",
                "web/src/data.json",
                "web/src/esm.ts",
                "web/src/types.d.ts",
                "web/src/util.js",
            ]
        );
    }
}
