//! The run's effects on git, each journaled (see [`crate::journal`]): the intent is on disk
//! before the effect starts and its outcome after it ends. An effect that fails part way is
//! undone at once by the same code that recovers it after a crash ([`crate::recover`]), so
//! nothing half made is left behind either way. All blocking.

use std::path::Path;

use git2::{Oid, Repository};

use crate::git::{self, GitError, Result};
use crate::journal::{Effect, Journal};
use crate::names::RunNames;

fn journal_err(e: std::io::Error) -> GitError {
    GitError::Io {
        context: "cannot write the run's journal".into(),
        source: e,
    }
}

/// Run `f` as the journaled `effect`; on failure undo what it made, then record the outcome.
fn journaled<T>(
    journal: &Journal,
    repo: &Repository,
    names: &RunNames,
    effect: Effect,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let intent = journal.begin(effect.clone()).map_err(journal_err)?;
    match f() {
        Ok(v) => {
            intent.end("done");
            Ok(v)
        }
        // A failed ref update or commit leaves nothing of ours behind (git2 drops its own
        // locks on error), and a lock it ran into may be a live process's: nothing to undo.
        Err(e)
            if !matches!(
                effect,
                Effect::AddWorktree { .. } | Effect::RemoveWorktree { .. }
            ) =>
        {
            intent.end(&format!("failed: {e}"));
            Err(e)
        }
        Err(e) => {
            match crate::recover::recover_effect(repo, names, &effect) {
                Ok(undo) => intent.end(&format!("failed: {e}; {undo}")),
                Err(u) => {
                    // Left open: the next recovery tries again.
                    tracing::warn!("cannot undo a failed effect ({}): {u}", effect.describe());
                }
            }
            Err(e)
        }
    }
}

/// A worktree is only ever added where nothing is: undoing a failed add removes the directory,
/// which must never hold anything but what the add made.
fn refuse_occupied(path: &Path) -> Result<()> {
    let occupied = std::fs::read_dir(path).map(|mut d| d.next().is_some());
    match occupied {
        Ok(false) => Ok(()),
        Ok(true) => Err(GitError::WorktreeDirOccupied {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(GitError::Io {
            context: format!("cannot use {}", path.display()),
            source: e,
        }),
    }
}

pub fn create_branch(
    journal: &Journal,
    repo: &Repository,
    names: &RunNames,
    branch: &str,
    at: Oid,
) -> Result<()> {
    let effect = Effect::CreateBranch {
        branch: branch.to_string(),
        at: at.to_string(),
    };
    journaled(journal, repo, names, effect, || {
        crate::fault::point("branch.create");
        git::create_branch(repo, branch, at)
    })
}

/// A domain's worktree on its branch.
pub fn add_worktree(
    journal: &Journal,
    repo: &Repository,
    names: &RunNames,
    admin: &str,
    path: &Path,
    branch: &str,
) -> Result<()> {
    refuse_occupied(path)?;
    let effect = Effect::AddWorktree {
        admin: admin.to_string(),
        path: path.to_owned(),
        branch: Some(branch.to_string()),
        commit: None,
    };
    journaled(journal, repo, names, effect, || {
        crate::fault::point("worktree.add");
        git::add_worktree(repo, admin, path, branch)?;
        crate::fault::point("worktree.added");
        Ok(())
    })
}

/// The verify worktree, detached at `commit`.
pub fn add_verify_worktree(
    journal: &Journal,
    repo: &Repository,
    names: &RunNames,
    path: &Path,
    commit: Oid,
) -> Result<()> {
    let admin = names.verify_admin();
    let branch = names.verify_branch();
    refuse_occupied(path)?;
    let effect = Effect::AddWorktree {
        admin: admin.clone(),
        path: path.to_owned(),
        branch: Some(branch.clone()),
        commit: Some(commit.to_string()),
    };
    journaled(journal, repo, names, effect, || {
        crate::fault::point("verify.add");
        git::add_detached_worktree(repo, &admin, path, &branch, commit)
    })
}

/// Remove a worktree whose work is committed (or that never held any).
pub fn remove_worktree(
    journal: &Journal,
    repo: &Repository,
    names: &RunNames,
    admin: &str,
    path: &Path,
) -> Result<()> {
    if repo.find_worktree(admin).is_err()
        && std::fs::symlink_metadata(path).is_err()
        && !repo.commondir().join("worktrees").join(admin).exists()
    {
        return Ok(());
    }
    let effect = Effect::RemoveWorktree {
        admin: admin.to_string(),
        path: path.to_owned(),
    };
    journaled(journal, repo, names, effect, || {
        crate::fault::point("worktree.remove");
        git::remove_worktree(repo, admin, path)?;
        // libgit2 leaves an admin dir it could not fully prune; so does a kill mid-prune.
        crate::recover::remove_worktree_entirely(repo, admin, path)
    })
}

/// Delete refs of the run (full names). Returns whether the ref existed.
pub fn delete_ref(
    journal: &Journal,
    repo: &Repository,
    names: &RunNames,
    refname: &str,
) -> Result<bool> {
    let Ok(mut r) = repo.find_reference(refname) else {
        return Ok(false);
    };
    let effect = Effect::DeleteRefs {
        refs: vec![refname.to_string()],
    };
    journaled(journal, repo, names, effect, || {
        crate::fault::point("ref.delete");
        r.delete().map_err(|source| GitError::Git {
            context: format!("cannot delete {refname}"),
            source,
        })?;
        Ok(true)
    })
}

/// Commit what a domain's worktree holds (see [`git::commit_work`]).
/// `after`: the agent attempt whose work this is, and whether it succeeded.
#[allow(clippy::too_many_arguments)]
pub fn commit_work(
    journal: &Journal,
    repo: &Repository,
    names: &RunNames,
    domain: &str,
    path: &Path,
    message: &str,
    exclude: &[String],
    after: Option<(u32, bool)>,
) -> Result<(git::HeadState, Option<Oid>, git::HeadState)> {
    let effect = Effect::Commit {
        domain: domain.to_string(),
        path: path.to_owned(),
        attempt: after.map(|a| a.0),
        agent_succeeded: after.map(|a| a.1),
    };
    let (branch, keep) = (names.branch(domain), names.off_branch_ref(domain));
    let rejected = names.rejected_ref(domain);
    journaled(journal, repo, names, effect, || {
        crate::fault::point("commit");
        git::commit_work(path, &branch, &keep, &rejected, message, exclude)
    })
}

/// Merge `theirs` into a branch of the run (see [`git::merge_into_branch`]).
pub fn merge_into_branch(
    journal: &Journal,
    repo: &Repository,
    names: &RunNames,
    target: &str,
    theirs: Oid,
    message: &str,
) -> Result<git::MergeOutcome> {
    let effect = Effect::MoveBranch {
        branch: target.to_string(),
        old: git::branch_tip(repo, target).map(|o| o.to_string()),
        new: theirs.to_string(),
    };
    journaled(journal, repo, names, effect, || {
        crate::fault::point("merge");
        git::merge_into_branch(repo, target, theirs, message, false)
    })
}
