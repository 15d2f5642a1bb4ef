//! Every git operation agent-farm performs, through git2. All functions here are blocking:
//! call them from `spawn_blocking` or a plain thread, never on the event loop.
//!
//! Rules kept here: never move a ref without checking its old value, never force-update a user's
//! branch, never touch a checkout with uncommitted changes, never delete a commit that is not
//! reachable from a branch we keep.

use std::path::{Path, PathBuf};

use git2::{
    BranchType, IndexAddOption, MergeOptions, Oid, Repository, Signature, Time, WorktreeAddOptions,
    WorktreePruneOptions, build::CheckoutBuilder,
};

/// A git operation that failed, with what it was doing.
///
/// Like every error of agent-farm, its message names its cause once: the git or I/O error is
/// part of the message and not returned again by [`std::error::Error::source`] (see `error.rs`).
#[derive(Debug)]
pub enum GitError {
    Git {
        context: String,
        source: git2::Error,
    },
    Io {
        context: String,
        source: std::io::Error,
    },
    /// Another git process holds the lock file of something we must change.
    Locked { path: PathBuf },
    /// A worktree is only ever added where nothing is.
    WorktreeDirOccupied { path: PathBuf },
    /// A commit id (from the journal or the record) that does not parse.
    BadCommitId { id: String, source: git2::Error },
    /// A journaled effect was handed to the recovery of another kind of effect.
    WrongEffect {
        expected: &'static str,
        found: String,
    },
    /// The run's integration branch is gone and the record knows no commit of it.
    IntegrationBranchMissing { branch: String },
    /// The branch to create exists already.
    BranchExists { branch: String },
    /// The checkout being updated no longer has `branch` checked out (someone switched it).
    CheckoutSwitched { worktree: PathBuf, branch: String },
    /// The record holds no base commit for the run.
    UnknownBaseCommit,
    /// The record holds no commit the domain's branch started from.
    NoStartCommit { domain: String },
    /// A commit hook of the repository refused the commit (or could not be run). The work it
    /// refused is kept, uncommitted, in the worktree and as `kept` under `kept_ref`.
    HookRejected(Box<HookRejection>),
    /// A worktree to be removed holds work that is in no commit (see `crate::unsaved`).
    HoldsUnsaved { path: PathBuf, paths: Vec<String> },
    /// A blocking git task panicked or was cancelled.
    Task(tokio::task::JoinError),
}

impl std::fmt::Display for GitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitError::Git { context, source } => write!(f, "{context}: {source}"),
            GitError::Io { context, source } => write!(f, "{context}: {source}"),
            GitError::Locked { path } => write!(
                f,
                "{} is locked by another git process; nothing was changed",
                path.display()
            ),
            GitError::WorktreeDirOccupied { path } => write!(
                f,
                "cannot add a worktree at {}: the directory exists and is not empty",
                path.display()
            ),
            GitError::BadCommitId { id, source } => {
                write!(f, "bad commit id {id}: {source}")
            }
            GitError::WrongEffect { expected, found } => {
                write!(f, "expected a journaled {expected}, found: {found}")
            }
            GitError::IntegrationBranchMissing { branch } => {
                write!(f, "integration branch {branch} is missing")
            }
            GitError::BranchExists { branch } => write!(f, "branch {branch} already exists"),
            GitError::CheckoutSwitched { worktree, branch } => write!(
                f,
                "{} no longer has `{branch}` checked out; nothing was changed there",
                worktree.display()
            ),
            GitError::UnknownBaseCommit => f.write_str("the run's base commit is unknown"),
            GitError::NoStartCommit { domain } => {
                write!(f, "no start commit recorded for domain `{domain}`")
            }
            GitError::HookRejected(r) => {
                let crate::hooks::HookRun {
                    hook,
                    path,
                    status,
                    output,
                    ..
                } = &r.run;
                write!(
                    f,
                    "the {hook} hook ({}) rejected the commit ({status})",
                    path.display()
                )?;
                let output = output.trim();
                if output.is_empty() {
                    f.write_str(", printing nothing")?;
                } else {
                    write!(f, ": {}", output.lines().collect::<Vec<_>>().join(" | "))?;
                }
                match r.kept {
                    Some(c) => write!(f, "; the work is kept in {} ({c})", r.kept_ref),
                    None => f.write_str("; the work is kept only in the worktree"),
                }
            }
            GitError::HoldsUnsaved { path, paths } => write!(
                f,
                "{} holds {} path(s) that are in no commit ({}); it is kept as it is: take what you need from it first",
                path.display(),
                paths.len(),
                paths.join(", ")
            ),
            GitError::Task(e) => write!(f, "a git task failed: {e}"),
        }
    }
}

/// A commit a hook of the repository refused: which hook, how it ended, what it printed, and
/// where the refused work is kept.
#[derive(Debug)]
pub struct HookRejection {
    pub run: crate::hooks::HookRun,
    pub kept_ref: String,
    pub kept: Option<Oid>,
}

/// The cause is in the message; `source()` stays `None` so that a chain is never printed twice.
impl std::error::Error for GitError {}

impl From<tokio::task::JoinError> for GitError {
    fn from(e: tokio::task::JoinError) -> Self {
        GitError::Task(e)
    }
}

/// Why [`discover`] found no repository to work in.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("not inside a git repository ({path}): {}", error.message())]
    NotARepo { path: PathBuf, error: git2::Error },
    #[error("the repository at {path} is bare; agent-farm needs a working tree")]
    BareRepo { path: PathBuf },
}

pub type Result<T> = std::result::Result<T, GitError>;

pub(crate) trait Ctx<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Ctx<T> for std::result::Result<T, git2::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| GitError::Git {
            context: context(),
            source,
        })
    }
}

impl<T> Ctx<T> for std::result::Result<T, std::io::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| GitError::Io {
            context: context(),
            source,
        })
    }
}

/// Where worktrees go unless the plan says otherwise: `<parent>/<repo-dir>.farm`, beside the
/// working tree. Not inside `.git`: Claude Code refuses to edit files under a `.git` directory
/// ("sensitive file"), and other tools skip such paths too.
pub fn default_worktree_root(workdir: &Path) -> PathBuf {
    let name = workdir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "repo".into());
    workdir
        .parent()
        .unwrap_or(Path::new("/"))
        .join(format!("{name}.farm"))
}

/// Facts about the user's repository, gathered once.
#[derive(Debug, Clone)]
pub struct RepoInfo {
    /// The main working tree (or the linked worktree agent-farm was started from).
    pub workdir: PathBuf,
    /// The common git directory (`.git` of the main worktree).
    pub common_dir: PathBuf,
    /// The branch checked out where agent-farm was started, if any.
    pub head_branch: Option<String>,
}

pub fn discover(start: &Path) -> std::result::Result<RepoInfo, DiscoverError> {
    let repo = Repository::discover(start).map_err(|error| DiscoverError::NotARepo {
        path: start.to_owned(),
        error,
    })?;
    let Some(workdir) = repo.workdir() else {
        return Err(DiscoverError::BareRepo {
            path: repo.path().to_owned(),
        });
    };
    // The branch HEAD points at, even when it is unborn.
    let head_branch = repo
        .find_reference("HEAD")
        .ok()
        .and_then(|h| h.symbolic_target().ok().flatten().map(str::to_owned))
        .and_then(|t| t.strip_prefix("refs/heads/").map(str::to_owned));
    Ok(RepoInfo {
        workdir: workdir
            .canonicalize()
            .unwrap_or_else(|_| workdir.to_owned()),
        common_dir: repo
            .commondir()
            .canonicalize()
            .unwrap_or_else(|_| repo.commondir().to_owned()),
        head_branch,
    })
}

pub fn open(path: &Path) -> Result<Repository> {
    Repository::open(path).ctx(|| format!("cannot open repository {}", path.display()))
}

/// Resolve `spec` (branch, tag, commit) to a commit id.
pub fn resolve_commit(repo: &Repository, spec: &str) -> Option<Oid> {
    repo.revparse_single(spec)
        .ok()
        .and_then(|o| o.peel_to_commit().ok())
        .map(|c| c.id())
}

pub fn branch_exists(repo: &Repository, name: &str) -> bool {
    repo.find_branch(name, BranchType::Local).is_ok()
}

pub fn branch_tip(repo: &Repository, name: &str) -> Option<Oid> {
    repo.find_branch(name, BranchType::Local)
        .ok()
        .and_then(|b| b.get().target())
}

/// A date as git takes it in `GIT_AUTHOR_DATE` / `GIT_COMMITTER_DATE`: its internal format
/// (`@1112911993 +0200`, or without `@`), RFC 2822 (`Thu, 07 Apr 2005 22:13:13 +0200`) or
/// ISO 8601 (`2005-04-07T22:13:13`, a space for the `T`, fractions of seconds, an offset
/// `+0200`, `+02:00` or `Z`; without one, local time as git takes it).
pub fn parse_git_date(s: &str) -> Option<Time> {
    use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};
    let s = s.trim();
    if let Some(t) = parse_raw_date(s) {
        return Some(t);
    }
    let time =
        |d: DateTime<FixedOffset>| Time::new(d.timestamp(), d.offset().local_minus_utc() / 60);
    if let Ok(d) = DateTime::parse_from_rfc2822(s) {
        return Some(time(d));
    }
    let iso = s.strip_suffix('Z').map(|b| format!("{b}+0000"));
    let iso = iso.as_deref().unwrap_or(s);
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f %z",
        "%Y-%m-%d %H:%M:%S%.f %z",
    ] {
        if let Ok(d) = DateTime::parse_from_str(iso, f) {
            return Some(time(d));
        }
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, f) {
            let local = Local.from_local_datetime(&n).earliest()?;
            return Some(time(local.fixed_offset()));
        }
    }
    None
}

/// The first of `GIT_AUTHOR_DATE` / `GIT_COMMITTER_DATE` that is set but not a date
/// [`parse_git_date`] reads: (variable, value).
pub fn bad_date_env() -> Option<(String, String)> {
    ["GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"]
        .into_iter()
        .find_map(|var| {
            let value = std::env::var(var).ok()?;
            (!value.trim().is_empty() && parse_git_date(&value).is_none())
                .then(|| (var.to_string(), value))
        })
}

/// git's internal date format: seconds since the epoch (`@` optional), then an offset.
fn parse_raw_date(s: &str) -> Option<Time> {
    let s = s.strip_prefix('@').unwrap_or(s);
    let mut parts = s.split_whitespace();
    let secs: i64 = parts.next()?.parse().ok()?;
    let offset = match parts.next() {
        Some(tz) => {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            let digits = tz.strip_prefix(['+', '-'])?;
            if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let h: i32 = digits[..2].parse().ok()?;
            let m: i32 = digits[2..].parse().ok()?;
            sign * (h * 60 + m)
        }
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(Time::new(secs, offset))
}

fn sig_from_env(
    repo: &Repository,
    name_var: &str,
    email_var: &str,
    date_var: &str,
) -> Result<Signature<'static>> {
    let cfg = repo.config().ok();
    let get = |var: &str, key: &str| {
        std::env::var(var)
            .ok()
            .or_else(|| cfg.as_ref().and_then(|c| c.get_string(key).ok()))
    };
    let name = get(name_var, "user.name").unwrap_or_else(|| "agent-farm".into());
    let email = get(email_var, "user.email").unwrap_or_else(|| "agent-farm@localhost".into());
    match std::env::var(date_var)
        .ok()
        .and_then(|d| parse_git_date(&d))
    {
        Some(t) => Signature::new(&name, &email, &t),
        None => Signature::now(&name, &email),
    }
    .ctx(|| "cannot build commit signature".into())
}

/// Author and committer for commits agent-farm makes: `GIT_AUTHOR_*`/`GIT_COMMITTER_*` env,
/// then `user.name`/`user.email`, then `agent-farm <agent-farm@localhost>`.
pub fn signatures(repo: &Repository) -> Result<(Signature<'static>, Signature<'static>)> {
    Ok((
        sig_from_env(
            repo,
            "GIT_AUTHOR_NAME",
            "GIT_AUTHOR_EMAIL",
            "GIT_AUTHOR_DATE",
        )?,
        sig_from_env(
            repo,
            "GIT_COMMITTER_NAME",
            "GIT_COMMITTER_EMAIL",
            "GIT_COMMITTER_DATE",
        )?,
    ))
}

/// Create `refs/heads/<name>` at `at`; fails if it exists.
pub fn create_branch(repo: &Repository, name: &str, at: Oid) -> Result<()> {
    let commit = repo
        .find_commit(at)
        .ctx(|| format!("cannot find commit {at}"))?;
    repo.branch(name, &commit, false)
        .ctx(|| format!("cannot create branch {name}"))?;
    Ok(())
}

/// libgit2's worktree code is not safe against concurrent adds and prunes in one repository: an
/// add scans every worktree's admin files to refuse a branch checked out twice and can read
/// another add's half-written entry. Worktree administration is serialized per process; the
/// agents themselves still run in parallel.
static WORKTREE_ADMIN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn admin_lock() -> std::sync::MutexGuard<'static, ()> {
    WORKTREE_ADMIN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Add a linked worktree at `path` with `branch` checked out, registered under `admin_name`.
pub fn add_worktree(repo: &Repository, admin_name: &str, path: &Path, branch: &str) -> Result<()> {
    let _guard = admin_lock();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).ctx(|| format!("cannot create {}", parent.display()))?;
    }
    // libgit2 fails when another thread creates `<git-dir>/worktrees` at the same moment
    // (EEXIST from its mkdir); make sure it exists before parallel adds race for it.
    let admin_root = repo.commondir().join("worktrees");
    std::fs::create_dir_all(&admin_root)
        .ctx(|| format!("cannot create {}", admin_root.display()))?;
    let reference = repo
        .find_reference(&format!("refs/heads/{branch}"))
        .ctx(|| format!("cannot find branch {branch}"))?;
    let mut opts = WorktreeAddOptions::new();
    opts.reference(Some(&reference));
    repo.worktree(admin_name, path, Some(&opts))
        .ctx(|| format!("cannot add worktree {} for {branch}", path.display()))?;
    Ok(())
}

/// Add a detached worktree at `commit` (for verify). libgit2 needs a branch to add a worktree,
/// so a temporary branch is created and deleted again once HEAD is detached.
pub fn add_detached_worktree(
    repo: &Repository,
    admin_name: &str,
    path: &Path,
    tmp_branch: &str,
    commit: Oid,
) -> Result<()> {
    // A crash between these steps can leave the temporary branch behind; it holds nothing.
    delete_branch(repo, tmp_branch)?;
    create_branch(repo, tmp_branch, commit)?;
    let res = add_worktree(repo, admin_name, path, tmp_branch).and_then(|()| {
        let wt = open(path)?;
        wt.set_head_detached(commit)
            .ctx(|| format!("cannot detach HEAD in {}", path.display()))
    });
    if let Ok(mut b) = repo.find_branch(tmp_branch, BranchType::Local) {
        let _ = b.delete();
    }
    res
}

/// Remove a worktree we created: its directory and git's administrative entry. Idempotent.
pub fn remove_worktree(repo: &Repository, admin_name: &str, path: &Path) -> Result<()> {
    let _guard = admin_lock();
    if let Ok(wt) = repo.find_worktree(admin_name) {
        let _ = wt.unlock();
        let mut opts = WorktreePruneOptions::new();
        opts.valid(true).locked(true).working_tree(true);
        wt.prune(Some(&mut opts))
            .ctx(|| format!("cannot remove worktree {}", path.display()))?;
    }
    if path.exists() {
        std::fs::remove_dir_all(path).ctx(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

/// Stage everything changed in the worktree at `path` (new, modified and deleted files,
/// `.gitignore` respected, `exclude` never staged) and commit it on HEAD, running the
/// repository's commit hooks as `git commit` would (see [`crate::hooks`]). Returns the new commit,
/// or `None` when there was nothing to commit (no hook runs then).
///
/// A hook that refuses (`pre-commit`, `prepare-commit-msg` or `commit-msg` exiting non-zero, or
/// `commit-msg` leaving an empty message) fails the commit with [`GitError::HookRejected`]: HEAD
/// does not move, the files stay in the worktree (staged, as after a refused `git commit`), and
/// the tree that was to be committed is kept as a commit under `rejected_ref`.
pub fn commit_all(
    path: &Path,
    message: &str,
    exclude: &[String],
    rejected_ref: &str,
) -> Result<Option<Oid>> {
    let repo = open(path)?;
    let mut index = repo
        .index()
        .ctx(|| format!("cannot read index in {}", path.display()))?;
    // A directory with a `.git` of its own cannot be staged (libgit2 refuses the whole add):
    // left out, and reported by the audit as in no commit (see `crate::unsaved`).
    // Best effort: what cannot be told here fails the add below, as it always did.
    let nested: Vec<String> = crate::unsaved::find(path)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|u| match u {
            crate::unsaved::Unsaved::NestedRepository { path } => Some(path),
            _ => None,
        })
        .collect();
    let mut skip = |p: &Path, _: &[u8]| -> i32 {
        let s = p.to_string_lossy();
        let s = s.trim_end_matches('/');
        let inside = |d: &String| {
            s == d
                || s.strip_prefix(d.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        };
        if exclude.iter().any(|e| Path::new(e) == p) || nested.iter().any(inside) {
            1
        } else {
            0
        }
    };
    index
        .add_all(["*"], IndexAddOption::DEFAULT, Some(&mut skip))
        .ctx(|| format!("cannot stage changes in {}", path.display()))?;
    let mut skip_update = |p: &Path, _: &[u8]| -> i32 {
        if exclude.iter().any(|e| Path::new(e) == p) {
            1
        } else {
            0
        }
    };
    index
        .update_all(["*"], Some(&mut skip_update))
        .ctx(|| format!("cannot stage deletions in {}", path.display()))?;
    index.write().ctx(|| "cannot write index".into())?;
    let staged = index.write_tree().ctx(|| "cannot write tree".into())?;
    let head = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let unchanged = |tree: Oid| head.as_ref().is_some_and(|h| h.tree_id() == tree);
    if unchanged(staged) {
        return Ok(None);
    }
    let (author, committer) = signatures(&repo)?;
    let parents: Vec<&git2::Commit> = head.iter().collect();
    let hooks = crate::hooks::CommitHooks::new(&repo, path, &author);
    // What a refusal keeps: the tree that was to be committed, as a commit off every branch.
    let refuse = |run: crate::hooks::HookRun, tree: Oid| -> GitError {
        let kept = (|| {
            // Refused again as it was (cleanup tries once more): the kept commit stays as it is.
            let head_id = head.as_ref().map(|h| h.id());
            if let Some(c) = repo
                .find_reference(rejected_ref)
                .ok()
                .and_then(|r| r.peel_to_commit().ok())
                && c.tree_id() == tree
                && c.parent_ids().next() == head_id
            {
                return Ok(c.id());
            }
            let tree = repo.find_tree(tree)?;
            let msg = format!(
                "{}\n\nRefused by the {} hook ({}); kept by agent-farm, not on the domain's branch.\n",
                message.trim_end(),
                run.hook,
                run.status
            );
            let c = repo.commit(None, &author, &committer, &msg, &tree, &parents)?;
            repo.reference(
                rejected_ref,
                c,
                true,
                "agent-farm: work a commit hook refused",
            )?;
            Ok::<Oid, git2::Error>(c)
        })();
        if let Err(e) = &kept {
            tracing::warn!("cannot keep the refused work under {rejected_ref}: {e}");
        }
        GitError::HookRejected(Box::new(HookRejection {
            run,
            kept_ref: rejected_ref.to_string(),
            kept: kept.ok(),
        }))
    };
    if let Some(run) = hooks.run("pre-commit", &[])
        && !run.success
    {
        return Err(refuse(run, staged));
    }
    // pre-commit may have staged more (a formatter's `git add`): commit the index as it left it.
    index
        .read(true)
        .ctx(|| format!("cannot read index in {}", path.display()))?;
    let tree_id = index.write_tree().ctx(|| "cannot write tree".into())?;
    if unchanged(tree_id) {
        return Ok(None);
    }
    let msg_file = repo.path().join("COMMIT_EDITMSG");
    std::fs::write(&msg_file, message).ctx(|| format!("cannot write {}", msg_file.display()))?;
    for (hook, args) in [
        (
            "prepare-commit-msg",
            vec![msg_file.as_path(), Path::new("message")],
        ),
        ("commit-msg", vec![msg_file.as_path()]),
    ] {
        if let Some(run) = hooks.run(hook, &args)
            && !run.success
        {
            return Err(refuse(run, tree_id));
        }
    }
    let edited = std::fs::read(&msg_file).ctx(|| format!("cannot read {}", msg_file.display()))?;
    // `git commit -F` without an editor cleans the message up as `--cleanup=whitespace`.
    let message = git2::message_prettify(String::from_utf8_lossy(&edited).into_owned(), None)
        .ctx(|| "cannot clean up the commit message".into())?;
    if message.trim().is_empty() {
        let run = crate::hooks::HookRun {
            hook: "commit-msg",
            path: hooks.find("commit-msg").unwrap_or_default(),
            success: false,
            status: "it left an empty commit message".into(),
            output: String::new(),
        };
        return Err(refuse(run, tree_id));
    }
    let tree = repo.find_tree(tree_id).ctx(|| "cannot find tree".into())?;
    let oid = repo
        .commit(Some("HEAD"), &author, &committer, &message, &tree, &parents)
        .ctx(|| format!("cannot commit in {}", path.display()))?;
    // Its exit status cannot change anything, as with git.
    let _ = hooks.run("post-commit", &[]);
    Ok(Some(oid))
}

/// Where a worktree's HEAD stands relative to the branch agent-farm gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadState {
    /// HEAD is the domain branch.
    OnBranch,
    /// HEAD was detached ahead of the branch (the agent committed on a detached HEAD); the
    /// branch was fast-forwarded to it and HEAD re-attached.
    FastForwarded { to: Oid },
    /// HEAD points at commits that are not on the branch (the agent switched branches); they are
    /// kept reachable under `keep_ref`.
    Stray { commit: Oid },
}

/// Make sure every commit in the worktree stays reachable from a ref agent-farm keeps.
pub fn secure_head(path: &Path, branch: &str, keep_ref: &str) -> Result<HeadState> {
    let repo = open(path)?;
    let branch_ref = format!("refs/heads/{branch}");
    let symbolic = repo
        .find_reference("HEAD")
        .ok()
        .and_then(|h| h.symbolic_target().ok().flatten().map(str::to_owned));
    if symbolic.as_deref() == Some(branch_ref.as_str()) {
        return Ok(HeadState::OnBranch);
    }
    let Some(head) = repo.head().ok().and_then(|h| h.target()) else {
        return Ok(HeadState::OnBranch);
    };
    let tip = repo
        .refname_to_id(&branch_ref)
        .ctx(|| format!("cannot read branch {branch}"))?;
    if head == tip || repo.graph_descendant_of(head, tip).unwrap_or(false) {
        if head != tip {
            repo.reference_matching(
                &branch_ref,
                head,
                true,
                tip,
                "agent-farm: adopt detached commits",
            )
            .ctx(|| format!("cannot move {branch}"))?;
        }
        repo.set_head(&branch_ref)
            .ctx(|| format!("cannot re-attach HEAD to {branch}"))?;
        return Ok(if head == tip {
            HeadState::OnBranch
        } else {
            HeadState::FastForwarded { to: head }
        });
    }
    if !repo.graph_descendant_of(tip, head).unwrap_or(false) {
        repo.reference(
            keep_ref,
            head,
            true,
            "agent-farm: keep commits made off the domain branch",
        )
        .ctx(|| format!("cannot create {keep_ref}"))?;
    }
    Ok(HeadState::Stray { commit: head })
}

/// Commit everything the worktree at `path` holds (see [`commit_all`]) so that it stays
/// reachable: commits made off `branch` are secured under `keep_ref` before and after; work a
/// commit hook refuses is kept under `rejected_ref`.
/// Returns the HEAD states seen before and after, and the new commit.
pub fn commit_work(
    path: &Path,
    branch: &str,
    keep_ref: &str,
    rejected_ref: &str,
    message: &str,
    exclude: &[String],
) -> Result<(HeadState, Option<Oid>, HeadState)> {
    let before = secure_head(path, branch, keep_ref)?;
    let commit = commit_all(path, message, exclude, rejected_ref)?;
    let after = secure_head(path, branch, keep_ref)?;
    Ok((before, commit, after))
}

/// Paths with uncommitted changes in a worktree, untracked (not ignored) files included.
pub fn uncommitted(path: &Path) -> Result<Vec<String>> {
    let repo = open(path)?;
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(false)
        .include_ignored(false);
    let statuses = repo
        .statuses(Some(&mut opts))
        .ctx(|| format!("cannot read status of {}", path.display()))?;
    Ok(statuses
        .iter()
        .filter(|s| s.status() != git2::Status::CURRENT)
        .filter_map(|s| s.path().ok().map(str::to_owned))
        .collect())
}

/// The tree of commit `id`.
fn tree_of(repo: &Repository, id: Oid) -> Result<git2::Tree<'_>> {
    repo.find_commit(id)
        .and_then(|c| c.tree())
        .ctx(|| format!("cannot read {id}"))
}

/// The conflicting paths of a merge index, sorted.
fn conflict_paths(index: &git2::Index) -> Result<Vec<String>> {
    let mut paths: Vec<String> = index
        .conflicts()
        .ctx(|| "cannot list conflicts".into())?
        .filter_map(|c| c.ok())
        .filter_map(|c| c.our.or(c.their).or(c.ancestor))
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    paths.sort();
    paths.dedup();
    Ok(paths)
}

/// What changed between two commits.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChangeStats {
    pub files: Vec<String>,
    pub insertions: usize,
    pub deletions: usize,
}

pub fn change_stats(repo: &Repository, from: Oid, to: Oid) -> Result<ChangeStats> {
    let a = tree_of(repo, from)?;
    let b = tree_of(repo, to)?;
    let mut opts = git2::DiffOptions::new();
    let mut diff = repo
        .diff_tree_to_tree(Some(&a), Some(&b), Some(&mut opts))
        .ctx(|| "cannot diff".into())?;
    diff.find_similar(None)
        .ctx(|| "cannot detect renames".into())?;
    let stats = diff.stats().ctx(|| "cannot compute diff stats".into())?;
    let files = diff
        .deltas()
        .filter_map(|d| {
            d.new_file()
                .path()
                .or_else(|| d.old_file().path())
                .map(|p| p.to_string_lossy().into_owned())
        })
        .collect();
    Ok(ChangeStats {
        files,
        insertions: stats.insertions(),
        deletions: stats.deletions(),
    })
}

/// One changed path between two commits, renames paired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffEntry {
    pub status: git2::Delta,
    pub old_path: Option<String>,
    pub new_path: Option<String>,
    /// For a symbolic link in the new tree: where it points.
    pub symlink_target: Option<String>,
}

/// Every changed path from `from` to `to`, with renames detected.
pub fn diff_entries(repo: &Repository, from: Oid, to: Oid) -> Result<Vec<DiffEntry>> {
    let a = tree_of(repo, from)?;
    let b = tree_of(repo, to)?;
    let mut diff = repo
        .diff_tree_to_tree(Some(&a), Some(&b), None)
        .ctx(|| "cannot diff".into())?;
    let mut find = git2::DiffFindOptions::new();
    find.renames(true);
    diff.find_similar(Some(&mut find))
        .ctx(|| "cannot detect renames".into())?;
    let path = |f: git2::DiffFile| f.path().map(|p| p.to_string_lossy().replace('\\', "/"));
    let mut out = Vec::new();
    for d in diff.deltas() {
        let nf = d.new_file();
        let symlink_target = (d.status() != git2::Delta::Deleted
            && nf.mode() == git2::FileMode::Link)
            .then(|| repo.find_blob(nf.id()).ok())
            .flatten()
            .map(|b| String::from_utf8_lossy(b.content()).into_owned());
        out.push(DiffEntry {
            status: d.status(),
            old_path: path(d.old_file()),
            new_path: path(nf),
            symlink_target,
        });
    }
    Ok(out)
}

/// Replace `paths` on `branch` (checked out in the worktree at `wt`) by their state at `start`,
/// as a new commit on top; files are updated in the worktree too. Returns the new commit.
pub fn revert_paths(
    wt: &Path,
    branch: &str,
    start: Oid,
    paths: &[String],
    message: &str,
) -> Result<Oid> {
    let repo = open(wt)?;
    let refname = format!("refs/heads/{branch}");
    let tip = repo
        .refname_to_id(&refname)
        .ctx(|| format!("cannot read {branch}"))?;
    let tip_commit = repo.find_commit(tip).ctx(|| format!("cannot read {tip}"))?;
    let tip_tree = tip_commit.tree().ctx(|| "cannot read tree".into())?;
    let start_tree = tree_of(&repo, start)?;
    let mut update = git2::build::TreeUpdateBuilder::new();
    for p in paths {
        match start_tree.get_path(Path::new(p)) {
            Ok(e) => {
                let mode = match e.filemode() {
                    0o100755 => git2::FileMode::BlobExecutable,
                    0o120000 => git2::FileMode::Link,
                    0o160000 => git2::FileMode::Commit,
                    _ => git2::FileMode::Blob,
                };
                update.upsert(p.as_str(), e.id(), mode);
            }
            Err(_) => {
                update.remove(p.as_str());
            }
        }
    }
    let tree_id = update
        .create_updated(&repo, &tip_tree)
        .ctx(|| "cannot build the reverted tree".into())?;
    let tree = repo.find_tree(tree_id).ctx(|| "cannot read tree".into())?;
    let (author, committer) = signatures(&repo)?;
    let commit = repo
        .commit(None, &author, &committer, message, &tree, &[&tip_commit])
        .ctx(|| "cannot commit the revert".into())?;
    repo.reference_matching(&refname, commit, true, tip, message)
        .ctx(|| format!("cannot move {branch}"))?;
    let mut co = CheckoutBuilder::new();
    co.force();
    for p in paths {
        co.path(p.as_str());
    }
    repo.checkout_head(Some(&mut co))
        .ctx(|| format!("cannot update the worktree {}", wt.display()))?;
    Ok(commit)
}

/// The patch from `from` to `to` limited to `paths`, as text.
pub fn patch_for(repo: &Repository, from: Oid, to: Oid, paths: &[String]) -> Result<String> {
    let a = tree_of(repo, from)?;
    let b = tree_of(repo, to)?;
    let mut opts = git2::DiffOptions::new();
    opts.disable_pathspec_match(true);
    for p in paths {
        opts.pathspec(p.as_str());
    }
    let diff = repo
        .diff_tree_to_tree(Some(&a), Some(&b), Some(&mut opts))
        .ctx(|| "cannot diff".into())?;
    let mut text = String::new();
    diff.print(git2::DiffFormat::Patch, |_, _, line| {
        if matches!(line.origin(), '+' | '-' | ' ') {
            text.push(line.origin());
        }
        text.push_str(&String::from_utf8_lossy(line.content()));
        true
    })
    .ctx(|| "cannot print the patch".into())?;
    Ok(text)
}

/// Result of merging one commit into a branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The branch now points at this new merge commit (or fast-forwarded commit).
    Merged(Oid),
    /// Nothing to do: the commit is already contained in the branch.
    UpToDate,
    /// The merge would conflict on these paths; the branch was not moved.
    Conflict(Vec<String>),
}

/// Merge `theirs` into `target` (a branch that exists) in memory, without any checkout.
/// Creates a merge commit (or fast-forwards when `ff` is set and possible), moving the branch
/// only if it still points where it did when we read it.
pub fn merge_into_branch(
    repo: &Repository,
    target: &str,
    theirs: Oid,
    message: &str,
    ff: bool,
) -> Result<MergeOutcome> {
    let refname = format!("refs/heads/{target}");
    let ours = repo
        .refname_to_id(&refname)
        .ctx(|| format!("cannot read branch {target}"))?;
    if ours == theirs || repo.graph_descendant_of(ours, theirs).unwrap_or(false) {
        return Ok(MergeOutcome::UpToDate);
    }
    if ff && repo.graph_descendant_of(theirs, ours).unwrap_or(false) {
        repo.reference_matching(&refname, theirs, true, ours, message)
            .ctx(|| format!("cannot fast-forward {target}"))?;
        return Ok(MergeOutcome::Merged(theirs));
    }
    match merge_commits(repo, ours, theirs, message)? {
        Ok(commit) => {
            repo.reference_matching(&refname, commit, true, ours, message)
                .ctx(|| format!("cannot update {target}"))?;
            Ok(MergeOutcome::Merged(commit))
        }
        Err(paths) => Ok(MergeOutcome::Conflict(paths)),
    }
}

/// The paths on which merging `a` and `b` would conflict (in memory; nothing is written).
pub fn conflicts_between(repo: &Repository, a: Oid, b: Oid) -> Result<Vec<String>> {
    let ac = repo.find_commit(a).ctx(|| format!("cannot read {a}"))?;
    let bc = repo.find_commit(b).ctx(|| format!("cannot read {b}"))?;
    let mut opts = MergeOptions::new();
    opts.find_renames(true);
    let index = repo
        .merge_commits(&ac, &bc, Some(&opts))
        .ctx(|| "cannot merge in memory".into())?;
    if !index.has_conflicts() {
        return Ok(Vec::new());
    }
    let paths = conflict_paths(&index)?;
    Ok(paths)
}

/// Create (without moving any ref) a merge commit of `ours` and `theirs`, or return the
/// conflicting paths.
pub fn merge_commits(
    repo: &Repository,
    ours: Oid,
    theirs: Oid,
    message: &str,
) -> Result<std::result::Result<Oid, Vec<String>>> {
    let oc = repo
        .find_commit(ours)
        .ctx(|| format!("cannot read {ours}"))?;
    let tc = repo
        .find_commit(theirs)
        .ctx(|| format!("cannot read {theirs}"))?;
    let mut opts = MergeOptions::new();
    opts.find_renames(true);
    let mut index = repo
        .merge_commits(&oc, &tc, Some(&opts))
        .ctx(|| "cannot merge in memory".into())?;
    if index.has_conflicts() {
        let paths = conflict_paths(&index)?;
        return Ok(Err(paths));
    }
    let tree_id = index
        .write_tree_to(repo)
        .ctx(|| "cannot write merged tree".into())?;
    let tree = repo
        .find_tree(tree_id)
        .ctx(|| "cannot read merged tree".into())?;
    let (author, committer) = signatures(repo)?;
    let commit = repo
        .commit(None, &author, &committer, message, &tree, &[&oc, &tc])
        .ctx(|| "cannot write merge commit".into())?;
    Ok(Ok(commit))
}

/// Where a branch is checked out, if anywhere: the worktree's directory.
pub fn checked_out_at(repo: &Repository, branch: &str) -> Option<PathBuf> {
    let refname = format!("refs/heads/{branch}");
    let head_of = |r: &Repository| {
        r.find_reference("HEAD")
            .ok()
            .and_then(|h| h.symbolic_target().ok().flatten().map(str::to_owned))
    };
    let main = if repo.is_worktree() {
        repo.commondir()
            .parent()
            .and_then(|p| Repository::open(p).ok())
    } else {
        Repository::open(repo.path()).ok()
    };
    // A bare main repository (the `.bare` + worktrees layout) has HEAD but no checkout: look
    // at the linked worktrees then.
    if let Some(main) = main
        && head_of(&main).as_deref() == Some(refname.as_str())
        && let Some(w) = main.workdir()
    {
        return Some(w.to_path_buf());
    }
    for name in repo.worktrees().ok()?.iter().flatten().flatten() {
        if let Ok(wt) = repo.find_worktree(name)
            && let Ok(r) = Repository::open_from_worktree(&wt)
            && head_of(&r).as_deref() == Some(refname.as_str())
        {
            return r.workdir().map(Path::to_path_buf);
        }
    }
    None
}

/// Tracked files with uncommitted changes (staged or not) in the checkout at `path`.
/// Untracked files are not counted: a safe checkout refuses to overwrite them anyway.
pub fn dirty_paths(path: &Path) -> Result<Vec<String>> {
    let repo = open(path)?;
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(false).include_ignored(false);
    let statuses = repo
        .statuses(Some(&mut opts))
        .ctx(|| format!("cannot read status of {}", path.display()))?;
    Ok(statuses
        .iter()
        .filter(|s| s.status() != git2::Status::CURRENT)
        .filter_map(|s| s.path().ok().map(str::to_owned))
        .collect())
}

/// What landing would do, computed before verify so that verify runs on exactly the commit that
/// lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LandPlan {
    /// `into` already contains the result.
    UpToDate,
    /// Move `into` from `old` (None: create it) to `commit`.
    Move {
        old: Option<Oid>,
        commit: Oid,
        fast_forward: bool,
    },
    /// `into` moved since the run started and merging the result into it conflicts.
    Conflict(Vec<String>),
}

pub fn plan_landing(repo: &Repository, into: &str, result: Oid, message: &str) -> Result<LandPlan> {
    let Some(old) = branch_tip(repo, into) else {
        return Ok(LandPlan::Move {
            old: None,
            commit: result,
            fast_forward: true,
        });
    };
    if old == result || repo.graph_descendant_of(old, result).unwrap_or(false) {
        return Ok(LandPlan::UpToDate);
    }
    if repo.graph_descendant_of(result, old).unwrap_or(false) {
        return Ok(LandPlan::Move {
            old: Some(old),
            commit: result,
            fast_forward: true,
        });
    }
    Ok(match merge_commits(repo, old, result, message)? {
        Ok(commit) => LandPlan::Move {
            old: Some(old),
            commit,
            fast_forward: false,
        },
        Err(paths) => LandPlan::Conflict(paths),
    })
}

/// True when every commit of `branch_tip` is reachable from `from`.
pub fn is_merged(repo: &Repository, branch_tip: Oid, from: Oid) -> bool {
    branch_tip == from || repo.graph_descendant_of(from, branch_tip).unwrap_or(false)
}

/// Whether everything `start..tip` changed is in `into` with the same content, as after a
/// squash merge or a cherry-pick (which leave no ancestry behind).
pub fn content_merged(repo: &Repository, start: Oid, tip: Oid, into: Oid) -> Result<bool> {
    let into_tree = tree_of(repo, into)?;
    let tip_tree = tree_of(repo, tip)?;
    for e in diff_entries(repo, start, tip)? {
        let paths = [e.new_path.as_deref(), e.old_path.as_deref()];
        for p in paths.into_iter().flatten() {
            let want = tip_tree.get_path(Path::new(p)).ok().map(|t| t.id());
            let have = into_tree.get_path(Path::new(p)).ok().map(|t| t.id());
            if want != have {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Make a linked worktree usable again when its `.git` file was deleted (an agent ran `rm -rf
/// .git`): rewrite it to point at its administrative directory. Returns whether it was repaired.
pub fn repair_worktree_link(repo: &Repository, admin_name: &str, path: &Path) -> Result<bool> {
    let dot_git = path.join(".git");
    if dot_git.exists() || !path.is_dir() {
        return Ok(false);
    }
    let admin = repo.commondir().join("worktrees").join(admin_name);
    if !admin.is_dir() {
        return Ok(false);
    }
    std::fs::write(&dot_git, format!("gitdir: {}\n", admin.display()))
        .ctx(|| format!("cannot restore {}", dot_git.display()))?;
    Ok(true)
}

/// Commit the files of a directory that git no longer knows as a worktree (its administrative
/// entry is gone) onto `branch`, so that removing the directory loses nothing. Paths the main
/// repository ignores are left out. Returns the new commit, or `None` when the directory holds
/// exactly the branch's tree.
pub fn snapshot_dir_onto_branch(
    repo: &Repository,
    dir: &Path,
    branch: &str,
    message: &str,
    exclude: &[String],
) -> Result<Option<Oid>> {
    let refname = format!("refs/heads/{branch}");
    let tip = repo
        .refname_to_id(&refname)
        .ctx(|| format!("cannot read {branch}"))?;
    let tip_commit = repo.find_commit(tip).ctx(|| format!("cannot read {tip}"))?;
    let empty = repo
        .treebuilder(None)
        .and_then(|b| b.write())
        .and_then(|id| repo.find_tree(id))
        .ctx(|| "cannot build an empty tree".into())?;
    let mut update = git2::build::TreeUpdateBuilder::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).ctx(|| format!("cannot read {}", d.display()))?;
        for e in entries.flatten() {
            let path = e.path();
            let Ok(rel) = path.strip_prefix(dir) else {
                continue;
            };
            let rel_s = rel.to_string_lossy().replace('\\', "/");
            if rel_s == ".git"
                || exclude.contains(&rel_s)
                || repo.is_path_ignored(rel).unwrap_or(false)
            {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path)
                .ctx(|| format!("cannot stat {}", path.display()))?;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.file_type().is_symlink() {
                let target =
                    std::fs::read_link(&path).ctx(|| format!("cannot read {}", path.display()))?;
                let blob = repo
                    .blob(target.to_string_lossy().as_bytes())
                    .ctx(|| "cannot write blob".into())?;
                update.upsert(rel_s.as_str(), blob, git2::FileMode::Link);
            } else {
                use std::os::unix::fs::PermissionsExt;
                let content =
                    std::fs::read(&path).ctx(|| format!("cannot read {}", path.display()))?;
                let blob = repo.blob(&content).ctx(|| "cannot write blob".into())?;
                let mode = if meta.permissions().mode() & 0o111 != 0 {
                    git2::FileMode::BlobExecutable
                } else {
                    git2::FileMode::Blob
                };
                update.upsert(rel_s.as_str(), blob, mode);
            }
        }
    }
    let tree_id = update
        .create_updated(repo, &empty)
        .ctx(|| "cannot build the directory's tree".into())?;
    if tree_id == tip_commit.tree_id() {
        return Ok(None);
    }
    let tree = repo.find_tree(tree_id).ctx(|| "cannot read tree".into())?;
    let (author, committer) = signatures(repo)?;
    let commit = repo
        .commit(None, &author, &committer, message, &tree, &[&tip_commit])
        .ctx(|| "cannot commit".into())?;
    repo.reference_matching(&refname, commit, true, tip, message)
        .ctx(|| format!("cannot move {branch}"))?;
    Ok(Some(commit))
}

/// Remove lock files a killed process left on the run's refs and worktrees (`*.lock` under
/// `refs/heads/farm/<run>/` and `refs/farm/<run>/`, `index.lock` and `HEAD.lock` of its worktree
/// entries). Only call once no process of the run is alive. Returns the files removed.
pub fn remove_stale_locks(repo: &Repository, run_id: &str, admins: &[String]) -> Vec<PathBuf> {
    let common = repo.commondir().to_path_buf();
    let mut found = Vec::new();
    let mut stack = vec![
        common.join("refs/heads/farm").join(run_id),
        common.join("refs/farm").join(run_id),
    ];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "lock") {
                found.push(p);
            }
        }
    }
    for a in admins {
        for f in ["index.lock", "HEAD.lock"] {
            let p = common.join("worktrees").join(a).join(f);
            if p.exists() {
                found.push(p);
            }
        }
    }
    found.retain(|p| std::fs::remove_file(p).is_ok());
    found
}

/// Delete a local branch if it exists. Returns whether it existed.
pub fn delete_branch(repo: &Repository, name: &str) -> Result<bool> {
    match repo.find_branch(name, BranchType::Local) {
        Ok(mut b) => {
            b.delete().ctx(|| format!("cannot delete branch {name}"))?;
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

/// Local branches whose names start with `prefix`.
pub fn branches_with_prefix(repo: &Repository, prefix: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for b in repo
        .branches(Some(BranchType::Local))
        .ctx(|| "cannot list branches".into())?
    {
        let (b, _) = b.ctx(|| "cannot read branch".into())?;
        if let Ok(Some(name)) = b.name()
            && name.starts_with(prefix)
        {
            out.push(name.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Files (blobs) in the tree of `commit`, as `/`-separated paths.
pub fn tree_paths(repo: &Repository, commit: Oid) -> Result<Vec<String>> {
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .ctx(|| format!("cannot read tree of {commit}"))?;
    let mut out = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(git2::ObjectType::Blob) {
            out.push(format!("{dir}{}", entry.name().unwrap_or_default()));
        }
        git2::TreeWalkResult::Ok
    })
    .ctx(|| "cannot walk tree".into())?;
    Ok(out)
}

/// The submodules of the tree of `commit`: the paths of its gitlinks, and for each the names of
/// the other entries of its parent directory (directories with a trailing `/`).
pub fn submodules_at(repo: &Repository, commit: Oid) -> Result<Vec<(String, Vec<String>)>> {
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .ctx(|| format!("cannot read tree of {commit}"))?;
    let mut links = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(git2::ObjectType::Commit) {
            links.push((
                dir.to_string(),
                entry.name().unwrap_or_default().to_string(),
            ));
        }
        git2::TreeWalkResult::Ok
    })
    .ctx(|| "cannot walk tree".into())?;
    let mut out = Vec::new();
    for (dir, name) in links {
        let parent = match dir.trim_end_matches('/') {
            "" => Some(tree.clone()),
            d => tree
                .get_path(Path::new(d))
                .ok()
                .and_then(|e| repo.find_tree(e.id()).ok()),
        };
        let siblings = parent
            .iter()
            .flat_map(|t| t.iter())
            .filter(|e| e.name().ok() != Some(name.as_str()))
            .map(|e| {
                let slash = if e.kind() == Some(git2::ObjectType::Tree) {
                    "/"
                } else {
                    ""
                };
                format!("{dir}{}{slash}", e.name().unwrap_or_default())
            })
            .collect();
        out.push((format!("{dir}{name}"), siblings));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_dates() {
        assert_eq!(
            parse_git_date("@1700000000 +0100"),
            Some(Time::new(1700000000, 60))
        );
        assert_eq!(
            parse_git_date("1700000000 -0230"),
            Some(Time::new(1700000000, -150))
        );
        assert_eq!(parse_git_date("1700000000"), Some(Time::new(1700000000, 0)));
        assert_eq!(parse_git_date("yesterday"), None);
    }

    #[test]
    fn git_dates_in_rfc_2822_and_iso_8601() {
        // git's own examples (git-commit(1), "DATE FORMATS"): 2005-04-07 22:13:13 at +0200.
        let at = Some(Time::new(1112904793, 120));
        assert_eq!(parse_git_date("Thu, 07 Apr 2005 22:13:13 +0200"), at);
        assert_eq!(parse_git_date("2005-04-07T22:13:13+0200"), at);
        assert_eq!(parse_git_date("2005-04-07T22:13:13+02:00"), at);
        assert_eq!(parse_git_date("2005-04-07 22:13:13 +0200"), at);
        assert_eq!(parse_git_date("2005-04-07T22:13:13.019+0200"), at);
        assert_eq!(
            parse_git_date("2005-04-07T20:13:13Z"),
            Some(Time::new(1112904793, 0))
        );
        // Without an offset: local time, as git takes it.
        let local = parse_git_date("2005-04-07T22:13:13").unwrap();
        let offset_s = i64::from(local.offset_minutes()) * 60;
        assert_eq!(local.seconds() + offset_s, 1112904793 + 7200);
        assert_eq!(parse_git_date("2005-04-07 22:13:13"), Some(local));
        assert_eq!(parse_git_date("2005-13-07T22:13:13"), None);
    }
}
