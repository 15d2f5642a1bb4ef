//! Recovery from the intent journal: every effect a dead process began and never ended is
//! finished or undone, so that a SIGKILL at any instant leaves nothing half made.
//!
//! | effect | half done means | recovery |
//! |---|---|---|
//! | create branch | a `.lock` on the run's ref | remove the run's own ref locks |
//! | add worktree | an admin dir without `HEAD`/`gitdir`, a partial checkout | remove both: nothing ran in it yet (the agent starts only after the add ended) |
//! | remove worktree | an admin dir without `gitdir`, a partly deleted directory | finish the removal (its work was committed before the removal began) |
//! | commit, move branch, delete refs | `index.lock` of the domain's worktree, ref locks of the run | remove the run's own locks; resume commits the worktree again |
//! | land | `refs/heads/<into>.lock`, a half-updated checkout, `index.lock` | [`crate::txn::recover_land`]: the checkout ends exactly where `into` points |
//!
//! Intents of the calling process are never touched (its effects may be running); the caller
//! makes sure no process of the dead run is alive (the run lock, then [`kill_run_processes`]).
//!
//! [`kill_run_processes`]: crate::runner::process::kill_run_processes

use std::path::{Path, PathBuf};

use crate::git;
use crate::journal::{Effect, Journal, OpenIntent, open_intents};
use crate::names::RunNames;

/// Remove a worktree's admin dir and directory, however little of them exists. Blocking.
pub fn remove_worktree_entirely(
    repo: &git2::Repository,
    admin: &str,
    path: &Path,
) -> git::Result<()> {
    let admin_dir = repo.commondir().join("worktrees").join(admin);
    if admin_dir.exists() {
        std::fs::remove_dir_all(&admin_dir).map_err(|source| git::GitError::Io {
            context: format!("cannot remove {}", admin_dir.display()),
            source,
        })?;
    }
    if std::fs::symlink_metadata(path).is_ok() {
        std::fs::remove_dir_all(path).map_err(|source| git::GitError::Io {
            context: format!("cannot remove {}", path.display()),
            source,
        })?;
    }
    Ok(())
}

/// Finish or undo one effect. Returns what was done, for the report. Blocking.
pub fn recover_effect(
    repo: &git2::Repository,
    names: &RunNames,
    effect: &Effect,
) -> git::Result<String> {
    let common = repo.commondir().to_path_buf();
    let remove_ref_lock = |refname: &str| -> Option<PathBuf> {
        // Only inside the run's own namespaces.
        let short = refname.strip_prefix("refs/heads/").unwrap_or(refname);
        let ours = crate::names::run_of_branch(short) == Some(names.run_id.as_str())
            || refname.starts_with(&names.hidden_prefix());
        if !ours {
            return None;
        }
        let full = if refname.starts_with("refs/") {
            common.join(format!("{refname}.lock"))
        } else {
            common.join(format!("refs/heads/{refname}.lock"))
        };
        std::fs::remove_file(&full).ok().map(|_| full)
    };
    Ok(match effect {
        Effect::CreateBranch { branch, .. } => match remove_ref_lock(branch) {
            Some(l) => format!("removed {}", l.display()),
            None => format!("{branch}: nothing half made"),
        },
        Effect::AddWorktree {
            admin,
            path,
            branch,
            ..
        } => {
            // The add ended but its end was never written (a full disk): the checkout marker,
            // written before anything ran in it, says it may hold work. Keep it.
            let marker = names.domain_of_admin(admin).map(|d| {
                crate::record::RunPaths::new(repo.commondir(), &names.run_id)
                    .domain_file(d, "checkout.done")
            });
            if marker.is_some_and(|m| m.exists()) {
                return Ok(format!(
                    "the worktree {} was completed; kept",
                    path.display()
                ));
            }
            remove_worktree_entirely(repo, admin, path)?;
            if branch.as_deref() == Some(names.verify_branch().as_str()) {
                let _ = remove_ref_lock(&names.verify_branch());
                let _ = git::delete_branch(repo, &names.verify_branch());
            }
            format!("removed the half-made worktree {}", path.display())
        }
        Effect::RemoveWorktree { admin, path } => {
            remove_worktree_entirely(repo, admin, path)?;
            format!("finished removing the worktree {}", path.display())
        }
        Effect::Commit { domain, .. } => {
            let admin_dir = common.join("worktrees").join(names.worktree_admin(domain));
            let mut removed = Vec::new();
            for f in ["index.lock", "HEAD.lock"] {
                let p = admin_dir.join(f);
                if std::fs::remove_file(&p).is_ok() {
                    removed.push(p);
                }
            }
            removed.extend(remove_ref_lock(&names.branch(domain)));
            removed.extend(remove_ref_lock(&names.off_branch_ref(domain)));
            removed.extend(remove_ref_lock(&names.rejected_ref(domain)));
            if removed.is_empty() {
                format!("commit of `{domain}`: nothing half made")
            } else {
                format!("removed {}", display(&removed))
            }
        }
        Effect::MoveBranch { branch, .. } => match remove_ref_lock(branch) {
            Some(l) => format!("removed {}", l.display()),
            None => format!("{branch}: nothing half made"),
        },
        Effect::DeleteRefs { refs } => {
            let removed: Vec<PathBuf> = refs.iter().filter_map(|r| remove_ref_lock(r)).collect();
            if removed.is_empty() {
                "deleting refs: nothing half made".into()
            } else {
                format!("removed {}", display(&removed))
            }
        }
        Effect::Land { into, .. } => {
            // Not while another run lands (it may be updating the same checkout): later.
            let lock = crate::lock::LandLock::try_acquire(repo.commondir()).map_err(|source| {
                git::GitError::Io {
                    context: "cannot open the landing lock".into(),
                    source,
                }
            })?;
            let Some(_lock) = lock else {
                return Err(git::GitError::Locked {
                    path: repo.commondir().join("agent-farm/land.lock"),
                });
            };
            let r = crate::txn::recover_land(repo, effect)?;
            let mut s = match r.rolled_forward {
                Some(true) => format!("finished landing on `{into}` (its checkout completed)"),
                Some(false) => {
                    format!("undid an unfinished landing on `{into}` (its checkout restored)")
                }
                None => format!("`{into}` moved since; only removed the run's own locks"),
            };
            if !r.locks_removed.is_empty() {
                s.push_str(&format!("; removed {}", display(&r.locks_removed)));
            }
            if r.checkout_switched {
                s.push_str(
                    "; its checkout was switched to another branch since and was left as it is",
                );
            }
            if !r.left_alone.is_empty() {
                s.push_str(&format!(
                    "; left {} as found (changed since)",
                    r.left_alone.join(", ")
                ));
            }
            s
        }
    })
}

fn display(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Finish or undo every effect of the run in `run_dir` that a dead process left open, oldest
/// last (undo in reverse order). Returns one message per effect recovered. Blocking.
pub fn recover_journal(repo_dir: &Path, run_dir: &Path, run_id: &str) -> Vec<String> {
    let open: Vec<OpenIntent> = open_intents(run_dir)
        .into_iter()
        .filter(|i| !crate::journal::is_mine(i))
        .collect();
    if open.is_empty() {
        return Vec::new();
    }
    let repo = match git::open(repo_dir) {
        Ok(r) => r,
        Err(e) => return vec![format!("cannot recover the run's unfinished effects: {e}")],
    };
    let names = RunNames::new(run_id);
    let journal = Journal::new(run_dir);
    let mut out = Vec::new();
    for intent in open.iter().rev() {
        match recover_effect(&repo, &names, &intent.effect) {
            Ok(what) => {
                let _ = journal.end_recovered(&intent.id, &format!("recovered: {what}"));
                out.push(format!(
                    "recovered an effect cut short ({}): {what}",
                    intent.effect.describe()
                ));
            }
            Err(e) => out.push(format!(
                "cannot recover an effect cut short ({}): {e}",
                intent.effect.describe()
            )),
        }
    }
    out
}

/// git's worktree entries of the run that are half made or half removed (no `gitdir`, no
/// `HEAD`, or pointing at a directory that is gone): whatever the journal says, they can hold
/// nothing. Returns the entries removed. Blocking.
pub fn prune_broken_admin_dirs(repo: &git2::Repository, names: &RunNames) -> Vec<String> {
    let root = repo.commondir().join("worktrees");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&names.admin_prefix()) {
            continue;
        }
        let dir = e.path();
        let gitdir = std::fs::read_to_string(dir.join("gitdir")).ok();
        // `gitdir` names `<worktree>/.git`; the directory itself is what must exist (an agent
        // may have deleted the `.git` file, which cleanup repairs).
        let points_at_something = gitdir
            .as_deref()
            .and_then(|g| Path::new(g.trim()).parent().map(Path::exists))
            .unwrap_or(false);
        if dir.join("HEAD").is_file() && points_at_something {
            continue;
        }
        // The worktree directory (if any) has no usable link back; its files, if a checkout
        // completed, are saved by cleanup from outside before this runs.
        if std::fs::remove_dir_all(&dir).is_ok() {
            out.push(name);
        }
    }
    out
}
