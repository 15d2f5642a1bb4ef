//! Every name agent-farm gives to something in git or on disk, built in one place: branches,
//! hidden refs, worktree directories and git's administrative entries. A leaf module: it imports
//! nothing of ours, so that recovery, cleanup and the runner can never disagree on a name.
//!
//! A run owns these namespaces, and nothing else:
//! ```text
//! refs/heads/farm/<run>/<domain>       a domain's branch
//! refs/heads/farm/<run>/integration    the merged result
//! refs/heads/farm/<run>/_verify        transient: the branch the verify worktree is made from
//! refs/farm/<run>/<domain>/…           hidden refs keeping commits (off-branch, dropped, blocked,
//!                                      rejected)
//! <git>/worktrees/farm-<run>-<domain>  git's entry for a domain worktree
//! <git>/worktrees/farm-<run>--verify   git's entry for the verify worktree
//! <worktree-root>/<run>/<domain>       a domain's worktree
//! <worktree-root>/<run>/.verify        the verify worktree
//! ```
//! Domain names start with a letter or digit, so `_verify` and `-verify` never collide with one.

use std::path::{Path, PathBuf};

/// The names of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunNames {
    pub run_id: String,
}

impl RunNames {
    pub fn new(run_id: impl Into<String>) -> Self {
        RunNames {
            run_id: run_id.into(),
        }
    }

    /// `farm/<run>/` — every branch of the run starts with it.
    pub fn branch_prefix(&self) -> String {
        format!("farm/{}/", self.run_id)
    }

    pub fn branch(&self, domain: &str) -> String {
        format!("farm/{}/{domain}", self.run_id)
    }

    pub fn integration(&self) -> String {
        format!("farm/{}/integration", self.run_id)
    }

    /// The short-lived branch a detached verify worktree is created from (libgit2 needs one).
    pub fn verify_branch(&self) -> String {
        format!("farm/{}/_verify", self.run_id)
    }

    /// `refs/farm/<run>/` — the run's hidden refs.
    pub fn hidden_prefix(&self) -> String {
        format!("refs/farm/{}/", self.run_id)
    }

    /// Commits an agent made off its branch.
    pub fn off_branch_ref(&self, domain: &str) -> String {
        format!("refs/farm/{}/{domain}/off-branch", self.run_id)
    }

    /// Changes the revert policy dropped from a domain.
    pub fn dropped_ref(&self, domain: &str) -> String {
        format!("refs/farm/{}/{domain}/dropped", self.run_id)
    }

    /// Work a commit hook of the repository refused (the domain's commit failed on it).
    pub fn rejected_ref(&self, domain: &str) -> String {
        format!("refs/farm/{}/{domain}/rejected", self.run_id)
    }

    /// A blocked attempt set aside before the domain runs again.
    pub fn blocked_ref(&self, domain: &str) -> String {
        format!("refs/farm/{}/{domain}/blocked", self.run_id)
    }

    /// `farm-<run>-` — git's worktree entries of the run start with it.
    pub fn admin_prefix(&self) -> String {
        format!("farm-{}-", self.run_id)
    }

    pub fn worktree_admin(&self, domain: &str) -> String {
        format!("farm-{}-{domain}", self.run_id)
    }

    pub fn verify_admin(&self) -> String {
        format!("farm-{}--verify", self.run_id)
    }

    /// The directory holding the run's worktrees.
    pub fn worktrees_dir(&self, worktree_root: &Path) -> PathBuf {
        worktree_root.join(&self.run_id)
    }

    pub fn worktree(&self, worktree_root: &Path, domain: &str) -> PathBuf {
        self.worktrees_dir(worktree_root).join(domain)
    }

    pub fn verify_worktree(&self, worktree_root: &Path) -> PathBuf {
        self.worktrees_dir(worktree_root).join(".verify")
    }

    /// The domain a worktree entry of this run belongs to (`None` for verify or another run).
    pub fn domain_of_admin<'a>(&self, admin: &'a str) -> Option<&'a str> {
        let d = admin.strip_prefix(&self.admin_prefix())?;
        (!d.starts_with('-') && !d.is_empty()).then_some(d)
    }
}

/// The run id a branch name belongs to, if it is a farm branch (`farm/<run>/…`).
pub fn run_of_branch(branch: &str) -> Option<&str> {
    let rest = branch.strip_prefix("farm/")?;
    let (run, tail) = rest.split_once('/')?;
    (!run.is_empty() && !tail.is_empty()).then_some(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_parse_back() {
        let n = RunNames::new("20261201-101010-abcd");
        assert_eq!(n.branch("api"), "farm/20261201-101010-abcd/api");
        assert_eq!(
            run_of_branch(&n.branch("api")),
            Some("20261201-101010-abcd")
        );
        assert_eq!(
            run_of_branch(&n.integration()),
            Some("20261201-101010-abcd")
        );
        assert_eq!(run_of_branch("feature/x"), None);
        assert_eq!(n.domain_of_admin(&n.worktree_admin("ui")), Some("ui"));
        assert_eq!(n.domain_of_admin(&n.verify_admin()), None);
        assert_eq!(n.domain_of_admin("farm-other-ui"), None);
        assert_ne!(n.verify_branch(), n.branch("verify"));
    }
}
