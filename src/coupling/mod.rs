//! Coupling analysis: how the files of a repository depend on each other, from two sources a
//! model cannot make up — static imports and includes, and co-change history — and which of that
//! coupling a plan cuts between domains that run at the same time.
//!
//! - [`analyze`] measures the repository at a commit (files per directory, languages) and builds a
//!   [`CouplingGraph`]: import edges for Rust, Python, JavaScript/TypeScript, Go and C/C++ (one
//!   resolver per language, reading blobs from git at the commit, never the checkout), co-change
//!   edges from the last commits of the history, weighted by recency, and, for files whose imports
//!   are not read, their directory.
//! - [`cut::cut`] lists the graph's edges whose ends belong to two domains with no `depends_on`
//!   path between them, heaviest first, each with its evidence.
//!
//! Everything but reading git is pure: [`build_graph`] takes a file list, a way to read a file and
//! a [`cochange::History`], so it runs on in-memory fixtures. Nothing here knows of runs.

pub mod cochange;
pub mod cut;
pub mod files;
pub mod graph;
pub mod imports;

mod cfamily;
mod golang;
mod js;
mod python;
mod rust;
mod scan;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};

use git2::{ObjectType, Oid, Repository};
use serde::Serialize;

pub use cochange::History;
pub use cut::{Cut, CutEdge, End, Independence, PairCut};
pub use files::{FileIndex, Language};
pub use graph::{CouplingGraph, Edge, Evidence};
pub use imports::Import;

use crate::ownership::OwnershipMap;
use crate::plan::Plan;

/// Why the analysis could not be made. Like every error of agent-farm, the cause is part of the
/// message and not returned again by `source()`.
#[derive(Debug, thiserror::Error)]
pub enum CouplingError {
    #[error("{context}: {error}")]
    Git { context: String, error: git2::Error },
    #[error("the plan's ownership globs do not compile: {0}")]
    Ownership(String),
}

/// What to analyse and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// How many commits of history to walk for co-changes (0: none).
    pub history: usize,
    /// Commits changing more files than this are skipped.
    pub max_commit_files: usize,
    /// A co-change's weight halves every this many commits back.
    pub half_life: f64,
    /// Pairs changed together fewer times than this are no edge.
    pub min_together: usize,
    /// Files larger than this are not read for imports.
    pub max_file_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            history: 500,
            max_commit_files: 50,
            half_life: 100.0,
            min_together: 2,
            max_file_bytes: 1 << 20,
        }
    }
}

/// The repository's size and shape at the analysed commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Measurements {
    /// Tracked files.
    pub files: usize,
    /// Files directly in each directory (`.` is the root).
    pub dirs: BTreeMap<String, usize>,
    /// Files per language, by extension (`other` for the rest).
    pub languages: BTreeMap<String, usize>,
    /// Files whose imports were read.
    pub read: usize,
    /// Files of a known language not read: larger than the limit, or binary.
    pub unread: usize,
}

impl Measurements {
    pub fn of(ix: &FileIndex) -> Measurements {
        let mut m = Measurements {
            files: ix.len(),
            ..Default::default()
        };
        for p in ix.paths() {
            let dir = files::parent(p);
            *m.dirs
                .entry(if dir.is_empty() {
                    ".".into()
                } else {
                    dir.into()
                })
                .or_default() += 1;
            *m.languages
                .entry(files::language_name(p).to_string())
                .or_default() += 1;
        }
        m
    }

    /// Files in `dir` and below (`""` or `.`: all).
    pub fn files_under(&self, dir: &str) -> usize {
        if dir.is_empty() || dir == "." {
            return self.files;
        }
        let prefix = format!("{dir}/");
        self.dirs
            .iter()
            .filter(|(d, _)| *d == dir || d.starts_with(&prefix))
            .map(|(_, n)| n)
            .sum()
    }
}

/// How much of the history was used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HistoryStats {
    pub walked: usize,
    pub merges: usize,
    pub large: usize,
    pub max_commit_files: usize,
}

/// Counts of what the graph was built from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GraphStats {
    pub imports: usize,
    pub cochanges: usize,
    pub edges: usize,
}

/// Where the analysis spent its time, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timings {
    /// Listing the commit's tree.
    pub tree: f64,
    /// Walking the history and diffing each commit's tree.
    pub history: f64,
    /// Reading the blobs, resolving imports, counting co-changes: building the graph.
    pub graph: f64,
    pub total: f64,
}

/// The analysis of one commit.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub commit: Oid,
    pub files: FileIndex,
    pub measurements: Measurements,
    pub history: HistoryStats,
    pub stats: GraphStats,
    pub graph: CouplingGraph,
    pub timings: Timings,
}

impl Analysis {
    /// The coupling `plan` cuts between independent domains.
    pub fn cut(&self, plan: &Plan) -> Result<Cut, CouplingError> {
        let map = OwnershipMap::for_plan(plan).map_err(CouplingError::Ownership)?;
        Ok(cut::cut(&self.graph, &map, &plan.domains))
    }
}

/// The coupling graph of the files in `ix`, from their texts (`read`), the history and the
/// directory structure. Pure.
pub fn build_graph(
    ix: &FileIndex,
    read: &mut dyn FnMut(&str) -> Option<String>,
    history: &History,
    opts: &Options,
) -> (CouplingGraph, GraphStats) {
    graph_of(ix, imports::scan(ix, read), history, opts)
}

/// The coupling graph from imports already found.
fn graph_of(
    ix: &FileIndex,
    imports: Vec<Import>,
    history: &History,
    opts: &Options,
) -> (CouplingGraph, GraphStats) {
    let mut g = CouplingGraph::new();
    let mut stats = GraphStats {
        imports: imports.len(),
        ..Default::default()
    };
    for i in imports {
        g.add_import(i);
    }
    let co = cochange::cochanges(history, ix, opts.half_life, opts.min_together);
    stats.cochanges = co.len();
    for c in co {
        g.add_cochange(c, history.walked);
    }
    g.add_structure(ix);
    stats.edges = g.len();
    (g, stats)
}

fn git_err(context: impl Into<String>) -> impl FnOnce(git2::Error) -> CouplingError {
    let context = context.into();
    move |error| CouplingError::Git { context, error }
}

/// The blobs of `commit`'s tree by path (symbolic links and submodules left out of the blobs to
/// read, but counted as files).
fn snapshot(
    repo: &Repository,
    commit: Oid,
) -> Result<(Vec<String>, HashMap<String, Oid>), CouplingError> {
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(git_err(format!("cannot read the tree of {commit}")))?;
    let mut paths = Vec::new();
    let mut blobs = HashMap::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        let kind = entry.kind();
        if matches!(kind, Some(ObjectType::Blob | ObjectType::Commit)) {
            let path = format!("{dir}{}", String::from_utf8_lossy(entry.name_bytes()));
            if kind == Some(ObjectType::Blob) && entry.filemode() != 0o120000 {
                blobs.insert(path.clone(), entry.id());
            }
            paths.push(path);
        }
        git2::TreeWalkResult::Ok
    })
    .map_err(git_err(format!("cannot walk the tree of {commit}")))?;
    Ok((paths, blobs))
}

/// Measure the repository at `commit` and build its coupling graph, reading files and history
/// from git (never the checkout).
pub fn analyze(repo: &Repository, commit: Oid, opts: &Options) -> Result<Analysis, CouplingError> {
    let start = std::time::Instant::now();
    let (paths, blobs) = snapshot(repo, commit)?;
    let ix = FileIndex::new(paths);
    let mut measurements = Measurements::of(&ix);
    let tree = start.elapsed().as_secs_f64();
    let history = if opts.history == 0 {
        History::default()
    } else {
        cochange::history(repo, commit, opts.history, opts.max_commit_files)?
    };
    let history_s = start.elapsed().as_secs_f64() - tree;
    let (read_ok, unread) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let reader = |repo: Repository| {
        let (blobs, read_ok, unread) = (&blobs, &read_ok, &unread);
        move |path: &str| -> Option<String> {
            let blob = repo.find_blob(*blobs.get(path)?).ok()?;
            let content = blob.content();
            let head = &content[..content.len().min(8000)];
            if content.len() > opts.max_file_bytes || head.contains(&0) {
                unread.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            read_ok.fetch_add(1, Ordering::Relaxed);
            Some(String::from_utf8_lossy(content).into_owned())
        }
    };
    // The manifests the resolvers need, then every file on one thread per core (up to 4), each
    // with its own handle on the repository (a git2 `Repository` is not shared between threads).
    let open = || {
        Repository::open(repo.path()).map_err(git_err(format!(
            "cannot open {} again to read it on several threads",
            repo.path().display()
        )))
    };
    let resolvers = imports::Resolvers::new(&ix, &mut reader(open()?));
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let readers = (0..workers)
        .map(|_| open().map(reader))
        .collect::<Result<Vec<_>, _>>()?;
    let found = imports::scan_parallel(&ix, &resolvers, readers);
    let (graph, stats) = graph_of(&ix, found, &history, opts);
    let total = start.elapsed().as_secs_f64();
    measurements.read = read_ok.load(Ordering::Relaxed);
    measurements.unread = unread.load(Ordering::Relaxed);
    Ok(Analysis {
        commit,
        files: ix,
        measurements,
        history: HistoryStats {
            walked: history.walked,
            merges: history.merges,
            large: history.large,
            max_commit_files: opts.max_commit_files,
        },
        stats,
        graph,
        timings: Timings {
            tree,
            history: history_s,
            graph: total - tree - history_s,
            total,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_graph_from_in_memory_files_and_history() {
        let files: BTreeMap<&str, &str> = [
            ("Cargo.toml", "[package]\nname = \"shop\"\n"),
            ("src/lib.rs", "pub mod api;\npub mod db;\n"),
            ("src/api.rs", "use crate::db::Pool;\n"),
            ("src/db.rs", "pub struct Pool;\n"),
            ("web/app.ts", "import { x } from './client';\n"),
            ("web/client.ts", "export const x = 1;\n"),
            ("docs/a.md", "# a\n"),
            ("docs/b.md", "# b\n"),
        ]
        .into();
        let ix = FileIndex::new(files.keys().map(|k| k.to_string()));
        let history = History {
            walked: 3,
            merges: 0,
            large: 0,
            commits: vec![
                cochange::CommitChanges {
                    index: 0,
                    id: "aaaaaaa".into(),
                    paths: vec!["src/db.rs".into(), "web/client.ts".into()],
                },
                cochange::CommitChanges {
                    index: 2,
                    id: "bbbbbbb".into(),
                    paths: vec!["src/db.rs".into(), "web/client.ts".into()],
                },
            ],
        };
        let mut read = |p: &str| files.get(p).map(|t| t.to_string());
        let (g, stats) = build_graph(&ix, &mut read, &history, &Options::default());
        assert_eq!((stats.imports, stats.cochanges), (4, 1));
        assert!(g.edge("src/api.rs", "src/db.rs").is_some());
        assert!(g.edge("web/app.ts", "web/client.ts").is_some());
        assert!(g.edge("docs/a.md", "docs/b.md").is_some());
        let co = g.edge("src/db.rs", "web/client.ts").unwrap();
        assert_eq!(
            co.describe(),
            "changed together in 2 of the last 3 commits, last in aaaaaaa"
        );
        let m = Measurements::of(&ix);
        assert_eq!(
            (m.files, m.files_under("src"), m.languages["rust"]),
            (8, 3, 3)
        );
        // On several threads: the same imports in the same order.
        let sequential = imports::scan(&ix, &mut read);
        let resolvers = imports::Resolvers::new(&ix, &mut read);
        for n in 1..4 {
            let readers: Vec<_> = (0..n)
                .map(|_| |p: &str| files.get(p).map(|t| t.to_string()))
                .collect();
            assert_eq!(imports::scan_parallel(&ix, &resolvers, readers), sequential);
        }
    }
}
