//! What a worktree holds that no commit of agent-farm can carry, and why: files git ignores, a
//! directory with a `.git` of its own (a repository an agent made, or a stray `.git` file or
//! directory), files inside a submodule's directory (worktrees never check submodules out). Each
//! is found here so that it is reported and kept (README, "Writes git cannot carry") instead of
//! vanishing with the worktree. Blocking; imports nothing of ours.

use std::path::Path;

use globset::GlobBuilder;

/// A path in a worktree that is in no commit, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsaved {
    /// Excluded by a `.gitignore` (or `info/exclude`, `core.excludesFile`) rule: `rule` is where,
    /// as `.gitignore:3 (*.env)`, when it was found. A directory stands for all it holds.
    Ignored { path: String, rule: Option<String> },
    /// A directory holding a `.git` of its own: git would record it as a gitlink at most and
    /// libgit2 refuses to stage it; what it holds is in no commit.
    NestedRepository { path: String },
    /// A `.git` (file or directory) in a directory git tracks: the directory's files are
    /// committed, its `.git` (and the history an agent made in it) never is.
    GitDir { path: String },
    /// A file inside the directory of a submodule, which the worktree does not check out.
    InSubmodule { path: String, submodule: String },
}

impl Unsaved {
    pub fn path(&self) -> &str {
        match self {
            Unsaved::Ignored { path, .. }
            | Unsaved::NestedRepository { path }
            | Unsaved::GitDir { path }
            | Unsaved::InSubmodule { path, .. } => path,
        }
    }

    /// Why it is in no commit, in words: `ignored by .gitignore:3 (*.env)`.
    pub fn why(&self) -> String {
        match self {
            Unsaved::Ignored {
                rule: Some(rule), ..
            } => format!("ignored by {rule}"),
            Unsaved::Ignored { rule: None, .. } => "ignored by git".into(),
            Unsaved::NestedRepository { .. } => {
                "a nested git repository (it has a .git of its own)".into()
            }
            Unsaved::GitDir { .. } => "git never commits a .git".into(),
            Unsaved::InSubmodule { submodule, .. } => {
                format!("inside the submodule {submodule}, which worktrees do not check out")
            }
        }
    }

    /// `path (not committed: why)`.
    pub fn describe(&self) -> String {
        let slash = match self {
            Unsaved::NestedRepository { .. } => "/",
            _ => "",
        };
        format!("{}{slash} (not committed: {})", self.path(), self.why())
    }
}

/// Everything in the worktree at `workdir` that a commit of the whole worktree leaves out, in
/// path order.
pub fn find(workdir: &Path) -> Result<Vec<Unsaved>, git2::Error> {
    let repo = git2::Repository::open(workdir)?;
    let mut out = Vec::new();
    // Submodules: gitlinks of the index whose directory holds files but no repository.
    let index = repo.index()?;
    for e in index.iter().filter(|e| e.mode == 0o160000) {
        let sub = String::from_utf8_lossy(&e.path).into_owned();
        let dir = workdir.join(&sub);
        if dir.join(".git").exists() {
            continue;
        }
        let mut files = Vec::new();
        walk_files(&dir, &mut files);
        for f in files {
            if let Ok(rel) = f.strip_prefix(workdir) {
                out.push(Unsaved::InSubmodule {
                    path: rel.to_string_lossy().into_owned(),
                    submodule: sub.clone(),
                });
            }
        }
    }
    // A `.git` in a directory git tracks (an agent ran `git init` there).
    let mut tracked_dirs: Vec<String> = index
        .iter()
        .filter_map(|e| {
            let p = String::from_utf8_lossy(&e.path).into_owned();
            p.rsplit_once('/').map(|(d, _)| d.to_string())
        })
        .collect();
    tracked_dirs.sort();
    tracked_dirs.dedup();
    let mut parents: Vec<String> = tracked_dirs
        .iter()
        .flat_map(|d| {
            d.match_indices('/')
                .map(|(i, _)| d[..i].to_string())
                .chain(std::iter::once(d.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    parents.sort();
    parents.dedup();
    for d in parents {
        if std::fs::symlink_metadata(workdir.join(&d).join(".git")).is_ok() {
            out.push(Unsaved::GitDir {
                path: format!("{d}/.git"),
            });
        }
    }
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(false)
        .include_ignored(true)
        .recurse_ignored_dirs(false)
        .exclude_submodules(true);
    for s in repo.statuses(Some(&mut opts))?.iter() {
        let Ok(p) = s.path() else { continue };
        let is_dir = p.ends_with('/');
        let rel = p.trim_end_matches('/');
        let ignored = s.status().contains(git2::Status::IGNORED);
        let untracked = s.status().contains(git2::Status::WT_NEW);
        if ignored {
            let rule = ignore_rule(&repo, workdir, rel, is_dir);
            if rule.is_none() && is_dir && !nested_repos(workdir, rel).is_empty() {
                // libgit2 reports a directory with a broken `.git` file as ignored.
                for path in nested_repos(workdir, rel) {
                    out.push(Unsaved::NestedRepository { path });
                }
            } else {
                out.push(Unsaved::Ignored {
                    path: rel.to_string(),
                    rule,
                });
            }
        } else if untracked && is_dir {
            for path in nested_repos(workdir, rel) {
                out.push(Unsaved::NestedRepository { path });
            }
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out.dedup();
    Ok(out)
}

/// The directories at or under `rel` (a directory of the worktree) that hold a `.git` entry, not
/// looking inside those.
pub fn nested_repos(workdir: &Path, rel: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![rel.to_string()];
    while let Some(d) = stack.pop() {
        let abs = workdir.join(&d);
        if std::fs::symlink_metadata(abs.join(".git")).is_ok() {
            out.push(d);
            continue;
        }
        for e in std::fs::read_dir(&abs).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(format!("{d}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

/// The files under the directory `rel` of the worktree, as worktree paths; `None` when there
/// are more than `limit`.
pub fn files_under(workdir: &Path, rel: &str, limit: usize) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![workdir.join(rel)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else if let Ok(r) = p.strip_prefix(workdir) {
                if out.len() == limit {
                    return None;
                }
                out.push(r.to_string_lossy().into_owned());
            }
        }
    }
    Some(out)
}

fn walk_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk_files(&p, out),
            Ok(_) => out.push(p),
            Err(_) => {}
        }
    }
}

/// The exclude rule that makes git ignore `rel` (`.gitignore:3 (*.env)`): the last matching line
/// of the deepest `.gitignore` that has one, then `info/exclude`, then `core.excludesFile`.
/// Only for the report: whether a path is ignored is git's answer, not this one's.
pub fn ignore_rule(
    repo: &git2::Repository,
    workdir: &Path,
    rel: &str,
    is_dir: bool,
) -> Option<String> {
    let mut sources: Vec<(String, std::path::PathBuf, String)> = Vec::new();
    let parts: Vec<&str> = rel.split('/').collect();
    for depth in (0..parts.len()).rev() {
        let dir = parts[..depth].join("/");
        let shown = if dir.is_empty() {
            ".gitignore".to_string()
        } else {
            format!("{dir}/.gitignore")
        };
        sources.push((shown.clone(), workdir.join(&shown), dir));
    }
    let exclude = repo.commondir().join("info/exclude");
    sources.push((exclude.display().to_string(), exclude, String::new()));
    let global = repo
        .config()
        .ok()
        .and_then(|c| c.get_path("core.excludesFile").ok())
        .or_else(|| {
            std::env::var_os("XDG_CONFIG_HOME")
                .map(std::path::PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))
                .map(|c| c.join("git/ignore"))
        });
    if let Some(g) = global {
        sources.push((g.display().to_string(), g, String::new()));
    }
    for (shown, file, base) in sources {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let hit = text
            .lines()
            .enumerate()
            .filter(|(_, l)| rule_matches(l, &base, rel, is_dir))
            .last();
        if let Some((n, line)) = hit {
            return (!line.starts_with('!'))
                .then(|| format!("{shown}:{} ({})", n + 1, line.trim()));
        }
    }
    None
}

/// Whether the gitignore line `line` of the `.gitignore` in directory `base` matches `rel`.
fn rule_matches(line: &str, base: &str, rel: &str, is_dir: bool) -> bool {
    let line = line.trim_end();
    if line.is_empty() || line.starts_with('#') {
        return false;
    }
    let pat = line.strip_prefix('!').unwrap_or(line);
    let (pat, dir_only) = match pat.strip_suffix('/') {
        Some(p) => (p, true),
        None => (pat, false),
    };
    if dir_only && !is_dir {
        return false;
    }
    let rel = match base {
        "" => rel,
        b => match rel.strip_prefix(b).and_then(|r| r.strip_prefix('/')) {
            Some(r) => r,
            None => return false,
        },
    };
    let glob = match pat.strip_prefix('/') {
        Some(anchored) => anchored.to_string(),
        None if pat.contains('/') => pat.to_string(),
        None => format!("**/{pat}"),
    };
    GlobBuilder::new(&glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .is_ok_and(|g| g.compile_matcher().is_match(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitignore_lines() {
        assert!(rule_matches("*.env", "", "a.env", false));
        assert!(rule_matches("*.env", "", "src/a.env", false));
        assert!(!rule_matches("/a.env", "", "src/a.env", false));
        assert!(rule_matches("/a.env", "src", "src/a.env", false));
        assert!(rule_matches("build/", "", "web/build", true));
        assert!(!rule_matches("build/", "", "web/build", false));
        assert!(rule_matches("web/*.log", "", "web/x.log", false));
        assert!(!rule_matches("web/*.log", "", "web/a/x.log", false));
        assert!(!rule_matches("# *.env", "", "a.env", false));
        assert!(rule_matches("!keep.env", "", "keep.env", false));
    }
}
