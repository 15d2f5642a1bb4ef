//! The coupling graph: undirected, weighted edges between files, each with the evidence for it.

use std::collections::HashMap;

use serde::Serialize;

use super::cochange::CoChange;
use super::files::{FileIndex, Language, parent};
use super::golang;
use super::imports::Import;

/// The weight of one file importing another (each direction counts).
pub const IMPORT_WEIGHT: f64 = 1.0;
/// The weight of two neighbouring files of one Go package.
pub const SAME_PACKAGE_WEIGHT: f64 = 0.5;
/// The weight of two neighbouring files of one directory whose imports are not read.
pub const SAME_DIRECTORY_WEIGHT: f64 = 0.25;

/// Why two files are coupled.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    /// `from` imports `to`.
    Import {
        from: String,
        to: String,
        line: usize,
        statement: String,
        language: Language,
    },
    /// Changed together in `together` of the last `of` commits, the newest of them `last`.
    CoChange {
        together: usize,
        of: usize,
        last: String,
        weight: f64,
    },
    /// Files of one Go package (one scope).
    SamePackage { dir: String },
    /// Files of one directory in a language whose imports are not read.
    SameDirectory { dir: String },
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Evidence::Import {
                from,
                to,
                line,
                statement,
                ..
            } => write!(f, "{from}:{line} imports {to} (`{statement}`)"),
            Evidence::CoChange {
                together, of, last, ..
            } => write!(
                f,
                "changed together in {together} of the last {of} commits, last in {last}"
            ),
            Evidence::SamePackage { dir } => write!(f, "same Go package {dir}/"),
            Evidence::SameDirectory { dir } => write!(
                f,
                "same directory {}/ (imports not read for these files)",
                if dir.is_empty() { "." } else { dir }
            ),
        }
    }
}

/// Two coupled files (`a` < `b`), the sum of their evidence's weights, and the evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    pub a: String,
    pub b: String,
    pub weight: f64,
    pub evidence: Vec<Evidence>,
}

impl Edge {
    /// The evidence in one line.
    pub fn describe(&self) -> String {
        self.evidence
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Weighted, evidenced edges between the files of one commit.
#[derive(Debug, Clone, Default)]
pub struct CouplingGraph {
    edges: Vec<Edge>,
    index: HashMap<(String, String), usize>,
}

impl CouplingGraph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add evidence between `x` and `y` (in either order); a file is never coupled to itself.
    pub fn add(&mut self, x: &str, y: &str, weight: f64, evidence: Evidence) {
        if x == y {
            return;
        }
        let (a, b) = if x < y { (x, y) } else { (y, x) };
        let key = (a.to_string(), b.to_string());
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                self.edges.push(Edge {
                    a: key.0.clone(),
                    b: key.1.clone(),
                    weight: 0.0,
                    evidence: Vec::new(),
                });
                self.index.insert(key, self.edges.len() - 1);
                self.edges.len() - 1
            }
        };
        let e = &mut self.edges[i];
        e.weight += weight;
        e.evidence.push(evidence);
    }

    pub fn add_import(&mut self, i: Import) {
        let (from, to) = (i.from.clone(), i.to.clone());
        self.add(
            &from,
            &to,
            IMPORT_WEIGHT,
            Evidence::Import {
                from: i.from,
                to: i.to,
                line: i.line,
                statement: i.statement,
                language: i.language,
            },
        );
    }

    pub fn add_cochange(&mut self, c: CoChange, of: usize) {
        self.add(
            &c.a,
            &c.b,
            c.weight,
            Evidence::CoChange {
                together: c.together,
                of,
                last: c.last,
                weight: c.weight,
            },
        );
    }

    /// Edges no import can show: the files of one Go package, and the files of one directory in
    /// languages whose imports are not read, each chained to the next by name.
    pub fn add_structure(&mut self, ix: &FileIndex) {
        let mut dirs: Vec<&str> = ix.dirs_with_files().collect();
        dirs.sort();
        for dir in dirs {
            let files: Vec<&str> = ix.files_in(dir).collect();
            let go: Vec<&&str> = files.iter().filter(|f| f.ends_with(".go")).collect();
            if go.len() > 1 && !golang::package_files(ix, dir).is_empty() {
                for w in go.windows(2) {
                    self.add(
                        w[0],
                        w[1],
                        SAME_PACKAGE_WEIGHT,
                        Evidence::SamePackage {
                            dir: dir.to_string(),
                        },
                    );
                }
            }
            let other: Vec<&&str> = files.iter().filter(|f| Language::of(f).is_none()).collect();
            for w in other.windows(2) {
                self.add(
                    w[0],
                    w[1],
                    SAME_DIRECTORY_WEIGHT,
                    Evidence::SameDirectory {
                        dir: parent(w[0]).to_string(),
                    },
                );
            }
        }
    }

    /// Every edge, in the order first added.
    pub fn edges(&self) -> &[Edge] {
        &self.edges
    }

    pub fn len(&self) -> usize {
        self.edges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    pub fn edge(&self, x: &str, y: &str) -> Option<&Edge> {
        let (a, b) = if x < y { (x, y) } else { (y, x) };
        self.index
            .get(&(a.to_string(), b.to_string()))
            .map(|&i| &self.edges[i])
    }

    /// The `n` heaviest edges, heaviest first (ties by path).
    pub fn strongest(&self, n: usize) -> Vec<&Edge> {
        let mut all: Vec<&Edge> = self.edges.iter().collect();
        all.sort_by(|x, y| by_weight(x, y));
        all.truncate(n);
        all
    }
}

pub(crate) fn by_weight(x: &Edge, y: &Edge) -> std::cmp::Ordering {
    y.weight
        .total_cmp(&x.weight)
        .then_with(|| (&x.a, &x.b).cmp(&(&y.a, &y.b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_adds_up_on_one_undirected_edge() {
        let mut g = CouplingGraph::new();
        for (from, to) in [("b.rs", "a.rs"), ("a.rs", "b.rs")] {
            g.add_import(Import {
                from: from.into(),
                to: to.into(),
                line: 1,
                statement: "mod x".into(),
                language: Language::Rust,
            });
        }
        g.add_cochange(
            CoChange {
                a: "a.rs".into(),
                b: "b.rs".into(),
                together: 3,
                weight: 2.5,
                last: "abc1234".into(),
            },
            500,
        );
        g.add(
            "a.rs",
            "a.rs",
            1.0,
            Evidence::SameDirectory { dir: String::new() },
        );
        assert_eq!(g.len(), 1);
        let e = g.edge("b.rs", "a.rs").unwrap();
        assert_eq!((e.a.as_str(), e.b.as_str()), ("a.rs", "b.rs"));
        assert!((e.weight - 4.5).abs() < 1e-9);
        assert_eq!(
            e.describe(),
            "b.rs:1 imports a.rs (`mod x`); a.rs:1 imports b.rs (`mod x`); changed together in 3 of the last 500 commits, last in abc1234"
        );
    }

    #[test]
    fn structure_chains_go_packages_and_unread_directories() {
        let ix = FileIndex::new(
            [
                "db/a.go",
                "db/b.go",
                "db/c.go",
                "docs/x.md",
                "docs/y.md",
                "src/a.rs",
                "src/b.rs",
            ]
            .map(String::from),
        );
        let mut g = CouplingGraph::new();
        g.add_structure(&ix);
        let mut pairs: Vec<(String, String)> = g
            .edges()
            .iter()
            .map(|e| (e.a.clone(), e.b.clone()))
            .collect();
        pairs.sort();
        assert_eq!(
            pairs,
            [
                ("db/a.go".to_string(), "db/b.go".to_string()),
                ("db/b.go".into(), "db/c.go".into()),
                ("docs/x.md".into(), "docs/y.md".into())
            ]
        );
    }
}
