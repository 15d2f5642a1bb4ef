//! Static import edges: one scanner and resolver per language, over an in-memory view of the
//! files (pure: the caller hands in the file list and a way to read a file's text).

use serde::Serialize;

use super::files::{FileIndex, Language};
use super::{cfamily, golang, js, python, rust};

/// An import found in a file, resolved to a file of the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub to: String,
    pub line: usize,
    pub statement: String,
}

/// `from` imports `to` (at `line`, written as `statement`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Import {
    pub from: String,
    pub to: String,
    pub line: usize,
    pub statement: String,
    pub language: Language,
}

/// What the resolvers know of the repository beyond its file list: Cargo crates, Python package
/// roots, JS packages, Go modules, C include directories.
#[derive(Debug, Default)]
pub struct Resolvers {
    crates: rust::Crates,
    roots: python::Roots,
    packages: js::Packages,
    modules: golang::Modules,
    include: cfamily::IncludeDirs,
}

impl Resolvers {
    /// Reads the manifests it needs (`Cargo.toml`, `package.json`, `go.mod`) with `read`.
    pub fn new(ix: &FileIndex, read: &mut dyn FnMut(&str) -> Option<String>) -> Resolvers {
        Resolvers {
            crates: rust::Crates::new(ix, read),
            roots: python::Roots::new(ix),
            packages: js::Packages::new(ix, read),
            modules: golang::Modules::new(ix, read),
            include: cfamily::IncludeDirs::new(ix),
        }
    }

    /// The imports of one file: each target once (its first import), never the file itself.
    pub fn imports_of(&self, ix: &FileIndex, path: &str, text: &str) -> Vec<Import> {
        let Some(language) = Language::of(path) else {
            return Vec::new();
        };
        let found = match language {
            Language::Rust => rust::imports(ix, &self.crates, path, text),
            Language::Python => python::imports(ix, &self.roots, path, text),
            Language::JavaScript | Language::TypeScript => {
                js::imports(ix, &self.packages, path, text)
            }
            Language::Go => golang::imports(ix, &self.modules, path, text),
            Language::C | Language::Cpp => cfamily::imports(ix, &self.include, path, text),
        };
        let mut seen = std::collections::HashSet::new();
        found
            .into_iter()
            .filter(|f| f.to != path && seen.insert(f.to.clone()))
            .map(|f| Import {
                from: path.to_string(),
                to: f.to,
                line: f.line,
                statement: f.statement,
                language,
            })
            .collect()
    }
}

/// Every import of every file of a known language in `ix`, reading texts with `read`.
pub fn scan(ix: &FileIndex, read: &mut dyn FnMut(&str) -> Option<String>) -> Vec<Import> {
    let resolvers = Resolvers::new(ix, read);
    let mut out = Vec::new();
    for p in ix.paths() {
        if Language::of(p).is_none() {
            continue;
        }
        if let Some(text) = read(p) {
            out.extend(resolvers.imports_of(ix, p, &text));
        }
    }
    out
}

/// [`scan`] on one thread per reader, each reading every n-th file; the same imports in the same
/// order (by importing file, then as found in it).
pub fn scan_parallel<R>(ix: &FileIndex, resolvers: &Resolvers, readers: Vec<R>) -> Vec<Import>
where
    R: FnMut(&str) -> Option<String> + Send,
{
    let n = readers.len().max(1);
    let paths: Vec<&str> = ix
        .paths()
        .iter()
        .map(String::as_str)
        .filter(|p| Language::of(p).is_some())
        .collect();
    let mut all: Vec<Import> = std::thread::scope(|s| {
        let handles: Vec<_> = readers
            .into_iter()
            .enumerate()
            .map(|(k, mut read)| {
                let paths = &paths;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for p in paths.iter().skip(k).step_by(n) {
                        if let Some(text) = read(p) {
                            out.extend(resolvers.imports_of(ix, p, &text));
                        }
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            match h.join() {
                Ok(found) => all.extend(found),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    });
    // Each file's imports are contiguous and in order within its worker's list: a stable sort by
    // file restores the sequential order.
    all.sort_by(|a, b| a.from.cmp(&b.from));
    all
}
