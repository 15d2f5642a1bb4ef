//! Go: `import "x"` and `import ( … )`, resolved to package directories through the module paths
//! of the repository's `go.mod` files; an import path outside every module is a dependency.
//!
//! The graph is one of files, so an import edge goes to one file of the imported package (the one
//! named after its directory, else `doc.go`, else the first by name; test files never), and the
//! files of one package are chained to each other: they share one scope, so a split of a package
//! between domains is a cut too.

use super::files::{FileIndex, child, file_name, parent};
use super::imports::Found;
use super::scan::{self, Tok};

/// The repository's Go modules: module path and directory, longest path first.
#[derive(Debug, Default)]
pub(crate) struct Modules {
    modules: Vec<(String, String)>,
}

impl Modules {
    pub(crate) fn new(ix: &FileIndex, read: &mut dyn FnMut(&str) -> Option<String>) -> Modules {
        let mut modules = Vec::new();
        for gomod in ix.named("go.mod") {
            let Some(text) = read(gomod) else { continue };
            let module = text.lines().find_map(|l| {
                let rest = l.trim().strip_prefix("module")?;
                let m = rest.trim().trim_matches('"');
                (!m.is_empty() && rest.starts_with(char::is_whitespace)).then(|| m.to_string())
            });
            if let Some(m) = module {
                modules.push((m, parent(gomod).to_string()));
            }
        }
        modules.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
        Modules { modules }
    }

    /// The directory of the package at import path `import`, if it is in the repository.
    fn package_dir(&self, ix: &FileIndex, import: &str) -> Option<String> {
        self.modules.iter().find_map(|(m, dir)| {
            let rest = import.strip_prefix(m.as_str())?;
            let dir = match rest.strip_prefix('/') {
                Some(r) => child(dir, r),
                None if rest.is_empty() => dir.clone(),
                None => return None,
            };
            ix.is_dir(&dir).then_some(dir)
        })
    }
}

/// The package's non-test Go files, sorted.
pub(crate) fn package_files<'a>(ix: &'a FileIndex, dir: &str) -> Vec<&'a str> {
    ix.files_in(dir)
        .filter(|f| f.ends_with(".go") && !f.ends_with("_test.go"))
        .collect()
}

/// The file an import of the package in `dir` is drawn to.
pub(crate) fn representative(ix: &FileIndex, dir: &str) -> Option<String> {
    let files = package_files(ix, dir);
    let own = format!("{}.go", file_name(dir));
    files
        .iter()
        .find(|f| file_name(f) == own)
        .or_else(|| files.iter().find(|f| file_name(f) == "doc.go"))
        .or(files.first())
        .map(|f| f.to_string())
}

pub(crate) fn imports(ix: &FileIndex, modules: &Modules, path: &str, text: &str) -> Vec<Found> {
    let toks = scan::tokens(text, scan::GO);
    let mut out = Vec::new();
    let mut push = |spec: &str, line: usize| {
        if let Some(dir) = modules.package_dir(ix, spec)
            && dir != parent(path)
            && let Some(to) = representative(ix, &dir)
        {
            out.push(Found {
                to,
                line,
                statement: format!("import \"{spec}\" ({dir}/)"),
            });
        }
    };
    let mut i = 0;
    while i < toks.len() {
        if toks[i].0 != Tok::Ident("import") {
            i += 1;
            continue;
        }
        i += 1;
        let grouped = matches!(toks.get(i), Some((Tok::Punct(b'('), _)));
        if grouped {
            i += 1;
        }
        while let Some((t, line)) = toks.get(i) {
            match t {
                Tok::Str(s) => {
                    push(s, *line);
                    if !grouped {
                        break;
                    }
                }
                Tok::Punct(b')') => break,
                Tok::Ident(_) | Tok::Punct(b'.' | b';') => {}
                _ if !grouped => break,
                _ => {}
            }
            i += 1;
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_resolve_through_go_mod() {
        let ix = FileIndex::new(
            [
                "go.mod",
                "cmd/server/main.go",
                "internal/db/db.go",
                "internal/db/pool.go",
                "internal/db/db_test.go",
                "internal/api/handlers.go",
                "internal/api/routes.go",
                "tools/go.mod",
                "tools/gen/gen.go",
            ]
            .map(String::from),
        );
        let mut read = |p: &str| match p {
            "go.mod" => Some("module example.com/shop\n\ngo 1.22\n".to_string()),
            "tools/go.mod" => Some("module example.com/shop/tools\n".to_string()),
            _ => None,
        };
        let modules = Modules::new(&ix, &mut read);
        let text = "package main\n\nimport (\n\t\"fmt\"\n\tdb \"example.com/shop/internal/db\"\n\t_ \"example.com/shop/internal/api\"\n\t// \"example.com/shop/gone\"\n)\nimport \"example.com/shop/tools/gen\"\n";
        let got: Vec<String> = imports(&ix, &modules, "cmd/server/main.go", text)
            .into_iter()
            .map(|f| f.to)
            .collect();
        assert_eq!(
            got,
            [
                "internal/db/db.go",
                "internal/api/handlers.go",
                "tools/gen/gen.go"
            ]
        );
        assert_eq!(
            package_files(&ix, "internal/db"),
            ["internal/db/db.go", "internal/db/pool.go"]
        );
    }
}
