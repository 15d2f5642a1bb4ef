//! The files of a commit, indexed for the resolvers, and path arithmetic on `/`-separated paths.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

/// A language whose imports are read, by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Rust,
    Python,
    JavaScript,
    TypeScript,
    Go,
    C,
    Cpp,
}

impl Language {
    /// The language of `path` by its extension, if its imports are read.
    pub fn of(path: &str) -> Option<Language> {
        Some(match extension(path)? {
            "rs" => Language::Rust,
            "py" | "pyi" => Language::Python,
            "js" | "jsx" | "mjs" | "cjs" => Language::JavaScript,
            "ts" | "tsx" | "mts" | "cts" => Language::TypeScript,
            "go" => Language::Go,
            "c" | "h" => Language::C,
            "cc" | "cpp" | "cxx" | "c++" | "hh" | "hpp" | "hxx" | "h++" | "ipp" | "inl" | "tcc" => {
                Language::Cpp
            }
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::JavaScript => "javascript",
            Language::TypeScript => "typescript",
            Language::Go => "go",
            Language::C => "c",
            Language::Cpp => "c++",
        }
    }
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The language name counted in the measurements: the analysed languages, a few common others by
/// extension, else `other`.
pub fn language_name(path: &str) -> &'static str {
    if let Some(l) = Language::of(path) {
        return l.name();
    }
    match extension(path).unwrap_or("") {
        "java" => "java",
        "kt" | "kts" => "kotlin",
        "scala" => "scala",
        "cs" => "c#",
        "rb" => "ruby",
        "php" => "php",
        "swift" => "swift",
        "m" | "mm" => "objective-c",
        "sh" | "bash" | "zsh" => "shell",
        "md" | "markdown" | "rst" | "adoc" | "txt" => "text",
        "toml" | "yaml" | "yml" | "json" | "ini" | "cfg" => "config",
        "html" | "htm" | "css" | "scss" | "vue" | "svelte" => "web",
        _ => "other",
    }
}

/// The extension of the file name, without the dot (`None` for `Makefile` or `.gitignore`).
pub fn extension(path: &str) -> Option<&str> {
    let name = file_name(path);
    let dot = name.rfind('.')?;
    (dot > 0).then(|| &name[dot + 1..])
}

pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The directory holding `path`: `""` at the root.
pub fn parent(path: &str) -> &str {
    path.rfind('/').map(|i| &path[..i]).unwrap_or("")
}

/// `dir/rel` with `.` and `..` resolved; `None` when it leaves the repository.
pub fn join(dir: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|c| !c.is_empty()).collect();
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// `dir/name`, or `name` when `dir` is the root.
pub fn child(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// How many leading path components `a` and `b` share.
pub fn common_components(a: &str, b: &str) -> usize {
    a.split('/')
        .zip(b.split('/'))
        .take_while(|(x, y)| x == y)
        .count()
}

/// The tracked files of a commit, by path, directory and file name.
#[derive(Debug, Clone, Default)]
pub struct FileIndex {
    paths: Vec<String>,
    set: HashSet<String>,
    by_dir: HashMap<String, Vec<usize>>,
    dirs: HashSet<String>,
    by_name: HashMap<String, Vec<usize>>,
}

impl FileIndex {
    pub fn new(paths: impl IntoIterator<Item = String>) -> FileIndex {
        let mut paths: Vec<String> = paths.into_iter().collect();
        paths.sort();
        paths.dedup();
        let mut ix = FileIndex {
            set: paths.iter().cloned().collect(),
            ..Default::default()
        };
        for (i, p) in paths.iter().enumerate() {
            ix.by_dir.entry(parent(p).to_string()).or_default().push(i);
            ix.by_name
                .entry(file_name(p).to_string())
                .or_default()
                .push(i);
            let mut d = parent(p);
            while !d.is_empty() && ix.dirs.insert(d.to_string()) {
                d = parent(d);
            }
        }
        ix.paths = paths;
        ix
    }

    /// Every file, sorted.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    pub fn contains(&self, path: &str) -> bool {
        self.set.contains(path)
    }

    /// Whether some file lies under `dir`.
    pub fn is_dir(&self, dir: &str) -> bool {
        dir.is_empty() || self.dirs.contains(dir)
    }

    /// The files directly in `dir` (`""`: the root), sorted.
    pub fn files_in(&self, dir: &str) -> impl Iterator<Item = &str> {
        self.by_dir
            .get(dir)
            .into_iter()
            .flatten()
            .map(|&i| self.paths[i].as_str())
    }

    /// Every directory holding files directly.
    pub fn dirs_with_files(&self) -> impl Iterator<Item = &str> {
        self.by_dir.keys().map(String::as_str)
    }

    /// Every file with this file name, sorted.
    pub fn named(&self, name: &str) -> impl Iterator<Item = &str> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(|&i| self.paths[i].as_str())
    }

    /// The first of `candidates` that is a file.
    pub fn first_of(&self, candidates: impl IntoIterator<Item = String>) -> Option<String> {
        candidates.into_iter().find(|c| self.contains(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(join("a/b", "../c/./d"), Some("a/c/d".into()));
        assert_eq!(join("", "../x"), None);
        assert_eq!(parent("x.rs"), "");
        assert_eq!(extension("a/.gitignore"), None);
        assert_eq!(extension("a/b.tar.gz"), Some("gz"));
        assert_eq!(common_components("a/b/c", "a/b/d"), 2);
        let ix = FileIndex::new(["a/b/c.rs".to_string(), "x.md".to_string()]);
        assert!(ix.is_dir("a") && ix.is_dir("a/b") && !ix.is_dir("a/b/c.rs"));
        assert_eq!(ix.files_in("").collect::<Vec<_>>(), ["x.md"]);
        assert_eq!(language_name("src/x.tsx"), "typescript");
        assert_eq!(language_name("README.md"), "text");
    }
}
