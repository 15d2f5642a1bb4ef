//! Co-change edges: pairs of files changed together in the recent history, weighted by recency.
//!
//! The history is read with a revwalk from the analysed commit (newest first, as `git log`
//! lists it) and a diff of each commit's tree against its first parent's that never descends into
//! a subtree both sides share. Merge commits are skipped (`git log` shows no files for them
//! either; the commits they bring in are walked themselves), and so are commits that change more
//! than `max_commit_files` files (a reformat, a vendored drop, the initial import: they couple
//! everything with everything and say nothing).

use std::collections::HashMap;

use git2::{ObjectType, Oid, Repository, Sort, Tree, TreeEntry};

use super::CouplingError;
use super::files::FileIndex;

/// The files one commit changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitChanges {
    /// The commit's position in the walk: 0 for the analysed commit itself.
    pub index: usize,
    /// Its abbreviated id.
    pub id: String,
    /// Every path it added, modified or deleted.
    pub paths: Vec<String>,
}

/// The recent history as co-change analysis sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Commits walked (at most the requested number).
    pub walked: usize,
    /// Of those, merges skipped.
    pub merges: usize,
    /// Of those, commits skipped for changing more than the limit of files.
    pub large: usize,
    /// The other commits, newest first.
    pub commits: Vec<CommitChanges>,
}

/// Two files changed together.
#[derive(Debug, Clone, PartialEq)]
pub struct CoChange {
    pub a: String,
    pub b: String,
    /// In how many of the walked commits.
    pub together: usize,
    /// Sum over those commits of `decay^index`.
    pub weight: f64,
    /// The newest of those commits (abbreviated id).
    pub last: String,
}

/// The weight of a change `index` commits back: halves every `half_life` commits.
pub fn recency(index: usize, half_life: f64) -> f64 {
    if half_life <= 0.0 {
        return 1.0;
    }
    0.5f64.powf(index as f64 / half_life)
}

/// Co-changed pairs of files that exist in `present`, changed together at least `min_together`
/// times, strongest first. Pure.
pub fn cochanges(
    history: &History,
    present: &FileIndex,
    half_life: f64,
    min_together: usize,
) -> Vec<CoChange> {
    let index: HashMap<&str, u32> = present
        .paths()
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i as u32))
        .collect();
    let mut pairs: HashMap<(u32, u32), (usize, f64, usize)> = HashMap::new();
    for (ci, c) in history.commits.iter().enumerate() {
        let mut files: Vec<u32> = c
            .paths
            .iter()
            .filter_map(|p| index.get(p.as_str()).copied())
            .collect();
        files.sort_unstable();
        files.dedup();
        if files.len() < 2 {
            continue;
        }
        let w = recency(c.index, half_life);
        for i in 0..files.len() {
            for j in i + 1..files.len() {
                let e = pairs.entry((files[i], files[j])).or_insert((0, 0.0, ci));
                e.0 += 1;
                e.1 += w;
            }
        }
    }
    let paths = present.paths();
    let mut out: Vec<CoChange> = pairs
        .into_iter()
        .filter(|(_, (n, _, _))| *n >= min_together.max(1))
        .map(|((a, b), (together, weight, last))| CoChange {
            a: paths[a as usize].clone(),
            b: paths[b as usize].clone(),
            together,
            weight,
            last: history.commits[last].id.clone(),
        })
        .collect();
    out.sort_by(|x, y| {
        y.weight
            .total_cmp(&x.weight)
            .then_with(|| (&x.a, &x.b).cmp(&(&y.a, &y.b)))
    });
    out
}

fn git_err(context: String) -> impl FnOnce(git2::Error) -> CouplingError {
    move |error| CouplingError::Git { context, error }
}

/// Git's order of tree entries: by name, a tree's name as if it ended in `/`.
fn entry_order(a: &TreeEntry, b: &TreeEntry) -> std::cmp::Ordering {
    let (x, y) = (a.name_bytes(), b.name_bytes());
    let n = x.len().min(y.len());
    x[..n].cmp(&y[..n]).then_with(|| {
        let next = |name: &[u8], e: &TreeEntry| match name.get(n) {
            Some(&c) => c,
            None if e.kind() == Some(ObjectType::Tree) => b'/',
            None => 0,
        };
        next(x, a).cmp(&next(y, b))
    })
}

/// Paths that differ between two trees (`None`: the empty tree), below `prefix`, by a merge of
/// their sorted entries that never descends into a subtree both share; stops once more than
/// `limit` are found and returns false then.
fn diff_trees(
    repo: &Repository,
    old: Option<&Tree>,
    new: Option<&Tree>,
    prefix: &str,
    out: &mut Vec<String>,
    limit: usize,
) -> Result<bool, CouplingError> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let (no, nn) = (old.map_or(0, Tree::len), new.map_or(0, Tree::len));
    let (mut i, mut j) = (0, 0);
    while i < no || j < nn {
        let a = old.filter(|_| i < no).and_then(|t| t.get(i));
        let b = new.filter(|_| j < nn).and_then(|t| t.get(j));
        let order = match (&a, &b) {
            (Some(a), Some(b)) => entry_order(a, b),
            (Some(_), None) => Less,
            (None, Some(_)) => Greater,
            (None, None) => break,
        };
        let (x, y) = match order {
            Less => {
                i += 1;
                (a, None)
            }
            Greater => {
                j += 1;
                (None, b)
            }
            Equal => {
                i += 1;
                j += 1;
                (a, b)
            }
        };
        if let (Some(x), Some(y)) = (&x, &y)
            && x.id() == y.id()
        {
            continue;
        }
        let Some(e) = x.as_ref().or(y.as_ref()) else {
            break;
        };
        let path = format!("{prefix}{}", String::from_utf8_lossy(e.name_bytes()));
        let subtree = |e: Option<&TreeEntry>| -> Result<Option<Tree>, CouplingError> {
            match e {
                Some(e) if e.kind() == Some(ObjectType::Tree) => repo
                    .find_tree(e.id())
                    .map(Some)
                    .map_err(git_err(format!("cannot read tree {} at {path}", e.id()))),
                _ => Ok(None),
            }
        };
        let (tx, ty) = (subtree(x.as_ref())?, subtree(y.as_ref())?);
        if (tx.is_some() || ty.is_some())
            && !diff_trees(
                repo,
                tx.as_ref(),
                ty.as_ref(),
                &format!("{path}/"),
                out,
                limit,
            )?
        {
            return Ok(false);
        }
        let blob = |e: &Option<TreeEntry>| {
            e.as_ref()
                .is_some_and(|e| e.kind() == Some(ObjectType::Blob))
        };
        if blob(&x) || blob(&y) {
            out.push(path);
        }
        if out.len() > limit {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The last `n` commits reachable from `commit`, newest first, with the files each changed.
pub fn history(
    repo: &Repository,
    commit: Oid,
    n: usize,
    max_commit_files: usize,
) -> Result<History, CouplingError> {
    let mut walk = repo
        .revwalk()
        .map_err(git_err("cannot walk the history".into()))?;
    // By commit time, as `git log` lists: incremental, where a topological sort would walk the
    // whole history first.
    walk.set_sorting(Sort::TIME)
        .map_err(git_err("cannot walk the history".into()))?;
    walk.push(commit)
        .map_err(git_err(format!("cannot walk the history from {commit}")))?;
    let mut h = History::default();
    for (index, id) in walk.take(n).enumerate() {
        let id = id.map_err(git_err("cannot walk the history".into()))?;
        h.walked += 1;
        let c = repo
            .find_commit(id)
            .map_err(git_err(format!("cannot read commit {id}")))?;
        if c.parent_count() > 1 {
            h.merges += 1;
            continue;
        }
        let tree = c
            .tree()
            .map_err(git_err(format!("cannot read the tree of {id}")))?;
        let parent = match c.parent_count() {
            0 => None,
            _ => Some(
                c.parent(0)
                    .and_then(|p| p.tree())
                    .map_err(git_err(format!("cannot read the parent tree of {id}")))?,
            ),
        };
        let mut paths = Vec::new();
        if !diff_trees(
            repo,
            parent.as_ref(),
            Some(&tree),
            "",
            &mut paths,
            max_commit_files,
        )? {
            h.large += 1;
            continue;
        }
        let short = id.to_string()[..7].to_string();
        h.commits.push(CommitChanges {
            index,
            id: short,
            paths,
        });
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(index: usize, paths: &[&str]) -> CommitChanges {
        CommitChanges {
            index,
            id: format!("c{index:06}"),
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// A commit whose tree holds exactly `files`, at `time`, on `parents` (no ref moves).
    fn commit_files(repo: &Repository, parents: &[Oid], files: &[(&str, &str)], time: i64) -> Oid {
        let root = repo.workdir().unwrap();
        for e in std::fs::read_dir(root).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap() != ".git" {
                if p.is_dir() {
                    std::fs::remove_dir_all(&p).unwrap();
                } else {
                    std::fs::remove_file(&p).unwrap();
                }
            }
        }
        for (path, text) in files {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let mut index = repo.index().unwrap();
        index.clear().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::new("T", "t@example.com", &git2::Time::new(time, 0)).unwrap();
        let parents: Vec<git2::Commit> = parents
            .iter()
            .map(|p| repo.find_commit(*p).unwrap())
            .collect();
        let parents: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(None, &sig, &sig, "c", &tree, &parents).unwrap()
    }

    #[test]
    fn history_walks_newest_first_and_skips_merges_and_large_commits() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let t = 1_700_000_000;
        let c0 = commit_files(&repo, &[], &[("a", "0"), ("d/x", "0"), ("d/y", "0")], t);
        let c1 = commit_files(
            &repo,
            &[c0],
            &[("a", "1"), ("d/x", "1"), ("d/y", "0")],
            t + 10,
        );
        // Three files changed (one deleted): more than the limit of 2.
        let c2 = commit_files(
            &repo,
            &[c1],
            &[("a", "2"), ("d/x", "2"), ("e", "2")],
            t + 20,
        );
        let c3 = commit_files(
            &repo,
            &[c1],
            &[("a", "1"), ("d/x", "1"), ("d/y", "3")],
            t + 30,
        );
        let m = commit_files(
            &repo,
            &[c2, c3],
            &[("a", "2"), ("d/x", "2"), ("d/y", "3")],
            t + 40,
        );
        let h = history(&repo, m, 10, 2).unwrap();
        assert_eq!((h.walked, h.merges, h.large), (5, 1, 2), "{h:?}");
        let got: Vec<(usize, Vec<&str>)> = h
            .commits
            .iter()
            .map(|c| (c.index, c.paths.iter().map(String::as_str).collect()))
            .collect();
        // m (merge), c3, c2 (large), c1, c0 (root, three files: large).
        assert_eq!(got, [(1, vec!["d/y"]), (3, vec!["a", "d/x"])]);
        assert_eq!(h.commits[1].id, c1.to_string()[..7]);
        // Only the newest n commits.
        let h = history(&repo, m, 2, 50).unwrap();
        assert_eq!((h.walked, h.commits.len()), (2, 1));
    }

    #[test]
    fn tree_diffs_follow_git_order_and_file_to_directory_changes() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let t = 1_700_000_000;
        let base = [
            ("d-x", "0"),
            ("d.txt", "0"),
            ("d/x", "0"),
            ("d0", "0"),
            ("f", "0"),
        ];
        let c0 = commit_files(&repo, &[], &base, t);
        let c1 = commit_files(
            &repo,
            &[c0],
            &[
                ("d-x", "1"),
                ("d.txt", "0"),
                ("d/x", "1"),
                ("d0", "1"),
                ("f/g", "1"),
            ],
            t + 10,
        );
        let h = history(&repo, c1, 1, 50).unwrap();
        let mut paths = h.commits[0].paths.clone();
        paths.sort();
        assert_eq!(paths, ["d-x", "d/x", "d0", "f", "f/g"]);
    }

    #[test]
    fn pairs_are_counted_and_weighted_by_recency() {
        let present = FileIndex::new(["a", "b", "c", "d"].map(String::from));
        let history = History {
            walked: 10,
            merges: 0,
            large: 0,
            commits: vec![
                commit(0, &["a", "b"]),
                commit(1, &["c", "d", "gone"]),
                commit(4, &["a", "b", "c"]),
                commit(9, &["c", "d"]),
            ],
        };
        let all = cochanges(&history, &present, 2.0, 1);
        let get = |a: &str, b: &str| all.iter().find(|c| c.a == a && c.b == b).cloned();
        let ab = get("a", "b").unwrap();
        assert_eq!((ab.together, ab.last.as_str()), (2, "c000000"));
        assert!((ab.weight - (1.0 + 0.25)).abs() < 1e-9, "{}", ab.weight);
        let cd = get("c", "d").unwrap();
        assert_eq!(cd.together, 2);
        assert!((cd.weight - (0.5f64.powf(0.5) + 0.5f64.powf(4.5))).abs() < 1e-9);
        // The more recent pair weighs more for the same count; strongest first.
        assert_eq!((all[0].a.as_str(), all[0].b.as_str()), ("a", "b"));
        assert!(ab.weight > cd.weight);
        // A file that no longer exists makes no pair; min_together filters.
        assert!(all.iter().all(|c| c.a != "gone" && c.b != "gone"));
        let strong = cochanges(&history, &present, 2.0, 2);
        assert_eq!(strong.len(), 2);
        assert!((recency(0, 100.0) - 1.0).abs() < 1e-12);
        assert!((recency(100, 100.0) - 0.5).abs() < 1e-12);
    }
}
