//! Transactional changes to what the user owns: their branch (`into`) and its checkout.
//!
//! Following gitoxide's rule — prepare first, persist last, remove what was created on failure —
//! landing goes: journal the intent (with every path it will touch), take git's own lock files
//! on the ref and the index, update the checkout's files, stage the new index in its lock, then
//! the **commit point**: the ref lock is renamed over the ref. Only then is the index renamed into
//! place. A SIGKILL anywhere leaves the journal saying what was half done; [`recover_land`] sets
//! the checkout to exactly the state of wherever the ref points (old: roll back; new: roll
//! forward) and removes the locks — but only locks proven ours.
//!
//! **Owned locks.** git's lock files carry no owner. agent-farm takes a lock by writing its
//! content to a *stage* file in the run directory first and then `link(2)`-ing the stage to the
//! `.lock` path, which fails if the lock exists (git's own `O_EXCL` semantics). While the lock is
//! held, the lock and the stage are one inode: recovery removes a lock only when it is the same
//! inode as the dead run's stage, so a lock some live git process holds is never touched.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository, build::CheckoutBuilder};

use crate::git::{self, Ctx, GitError, Result};
use crate::journal::{Checkout, Effect, Journal};

fn lock_path(target: &Path) -> PathBuf {
    let mut s = target.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

fn fsync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Whether `lock` exists and is the same file as `stage` (so it is ours).
pub fn is_ours(lock: &Path, stage: &Path) -> bool {
    match (std::fs::metadata(lock), std::fs::metadata(stage)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// A git lock file (`<target>.lock`) held by this process, provably.
#[derive(Debug)]
pub struct OwnedLock {
    target: PathBuf,
    lock: PathBuf,
    stage: PathBuf,
    done: bool,
}

impl OwnedLock {
    /// Take the lock on `target` with `content` in it. `Ok(None)`: someone else holds it.
    pub fn acquire(target: &Path, stage: &Path, content: &[u8]) -> std::io::Result<Option<Self>> {
        if let Some(d) = stage.parent() {
            std::fs::create_dir_all(d)?;
        }
        let _ = std::fs::remove_file(stage);
        {
            let mut f = std::fs::File::create(stage)?;
            f.write_all(content)?;
            f.sync_all()?;
        }
        let lock = lock_path(target);
        if let Some(d) = lock.parent() {
            std::fs::create_dir_all(d)?;
        }
        match std::fs::hard_link(stage, &lock) {
            Ok(()) => {
                if let Some(d) = lock.parent() {
                    fsync_dir(d);
                }
                Ok(Some(OwnedLock {
                    target: target.to_owned(),
                    lock,
                    stage: stage.to_owned(),
                    done: false,
                }))
            }
            Err(e) => {
                let _ = std::fs::remove_file(stage);
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Replace what the lock holds (the lock stays the same inode, still provably ours).
    pub fn rewrite(&self, content: &[u8]) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&self.stage)?;
        f.write_all(content)?;
        f.sync_all()
    }

    /// Persist: the lock becomes the target (git's commit of a lock file).
    pub fn commit(mut self) -> std::io::Result<()> {
        std::fs::rename(&self.lock, &self.target)?;
        self.done = true;
        if let Some(d) = self.target.parent() {
            fsync_dir(d);
        }
        let _ = std::fs::remove_file(&self.stage);
        Ok(())
    }

    /// Give the lock up without changing the target.
    pub fn release(mut self) {
        self.drop_files();
        self.done = true;
    }

    fn drop_files(&mut self) {
        if is_ours(&self.lock, &self.stage) {
            let _ = std::fs::remove_file(&self.lock);
        }
        let _ = std::fs::remove_file(&self.stage);
    }
}

impl Drop for OwnedLock {
    fn drop(&mut self) {
        if !self.done {
            self.drop_files();
        }
    }
}

/// Remove `target`'s lock if it is provably ours (the same inode as `stage`), and the stage.
/// Returns the lock path when it removed it.
pub fn remove_own_lock(target: &Path, stage: &Path) -> Option<PathBuf> {
    let lock = lock_path(target);
    let ours = is_ours(&lock, stage);
    if ours {
        let _ = std::fs::remove_file(&lock);
    }
    let _ = std::fs::remove_file(stage);
    ours.then_some(lock)
}

/// The paths that differ between two trees (no rename detection: each side's path counts).
pub fn changed_paths(repo: &Repository, old: Oid, new: Oid) -> Result<Vec<String>> {
    let a = repo
        .find_commit(old)
        .and_then(|c| c.tree())
        .ctx(|| format!("cannot read {old}"))?;
    let b = repo
        .find_commit(new)
        .and_then(|c| c.tree())
        .ctx(|| format!("cannot read {new}"))?;
    let diff = repo
        .diff_tree_to_tree(Some(&a), Some(&b), None)
        .ctx(|| "cannot diff".into())?;
    let mut out: Vec<String> = Vec::new();
    for d in diff.deltas() {
        for f in [d.old_file(), d.new_file()] {
            if let Some(p) = f.path() {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Of `paths`, those whose file in the working directory differs from `commit`'s tree (filters
/// applied, untracked files counted).
fn differing_from(wrepo: &Repository, commit: Oid, paths: &[String]) -> Result<Vec<String>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let tree = wrepo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .ctx(|| format!("cannot read {commit}"))?;
    let mut opts = git2::DiffOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_typechange(true)
        .disable_pathspec_match(true);
    for p in paths {
        opts.pathspec(p.as_str());
    }
    let diff = wrepo
        .diff_tree_to_workdir(Some(&tree), Some(&mut opts))
        .ctx(|| "cannot compare the checkout".into())?;
    let mut out: Vec<String> = diff
        .deltas()
        .filter_map(|d| {
            d.new_file()
                .path()
                .or_else(|| d.old_file().path())
                .map(|p| p.to_string_lossy().into_owned())
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Whether the checkout's HEAD is `refs/heads/<branch>`.
fn on_branch(co: &Checkout, branch: &str) -> bool {
    std::fs::read_to_string(co.git_dir.join("HEAD"))
        .is_ok_and(|h| h.trim() == format!("ref: refs/heads/{branch}"))
}

/// Whether the file at `path` holds a proper prefix of its content in one of `commits`: a write
/// cut short by a kill (git writes a file from its start, in place).
fn cut_short(wrepo: &Repository, workdir: &Path, commits: &[Oid], path: &str) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(workdir.join(path)) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    let Ok(have) = std::fs::read(workdir.join(path)) else {
        return false;
    };
    commits.iter().any(|c| {
        wrepo
            .find_commit(*c)
            .and_then(|c| c.tree())
            .and_then(|t| t.get_path(Path::new(path)))
            .and_then(|e| wrepo.find_blob(e.id()))
            .is_ok_and(|b| have.len() < b.content().len() && b.content().starts_with(&have))
    })
}

/// The index of a checkout staged for `target` on `paths`, held in its (owned) lock.
struct StagedIndex {
    lock: OwnedLock,
}

/// Set `paths` of the checkout to their state in `target` (files and index entries), holding
/// the index lock (owned, at `stage`) until [`StagedIndex::commit`]. Paths in `skip` are left
/// alone (changed by someone else since).
fn stage_checkout(
    co: &Checkout,
    branch: &str,
    target: Oid,
    paths: &[String],
    skip: &[String],
    stage: &Path,
) -> Result<StagedIndex> {
    let index_path = co.git_dir.join("index");
    let current = match std::fs::read(&index_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(GitError::Io {
                context: format!("cannot read {}", index_path.display()),
                source: e,
            });
        }
    };
    let lock = OwnedLock::acquire(&index_path, stage, &current)
        .ctx(|| format!("cannot lock {}", index_path.display()))?
        .ok_or_else(|| GitError::Locked {
            path: lock_path(&index_path),
        })?;
    // Under the index lock nobody switches this checkout; it must still be on `branch`.
    if !on_branch(co, branch) {
        lock.release();
        return Err(GitError::CheckoutSwitched {
            worktree: co.workdir.clone(),
            branch: branch.to_string(),
        });
    }
    let paths: Vec<&String> = paths.iter().filter(|p| !skip.contains(p)).collect();
    let wrepo = git::open(&co.workdir)?;
    let tree = wrepo
        .find_commit(target)
        .and_then(|c| c.tree())
        .ctx(|| format!("cannot read {target}"))?;
    // Paths the target does not have go first (a file may become a directory or back)...
    let (present, absent): (Vec<&String>, Vec<&String>) = paths
        .iter()
        .partition(|p| tree.get_path(Path::new(p.as_str())).is_ok());
    for p in &absent {
        let full = co.workdir.join(p.as_str());
        if std::fs::symlink_metadata(&full).is_ok_and(|m| !m.is_dir()) {
            std::fs::remove_file(&full).ctx(|| format!("cannot remove {}", full.display()))?;
            let mut dir = full.parent();
            while let Some(d) = dir.filter(|d| *d != co.workdir) {
                if std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
        }
    }
    crate::fault::point("land.checkout");
    // ...then the others are written from the target tree (filters and modes applied by git).
    if !present.is_empty() {
        let mut cb = CheckoutBuilder::new();
        cb.force().update_index(false).disable_pathspec_match(true);
        for p in &present {
            cb.path(p.as_str());
        }
        wrepo
            .checkout_tree(tree.as_object(), Some(&mut cb))
            .ctx(|| format!("cannot update the checkout {}", co.workdir.display()))?;
    }
    crate::fault::point("land.files-written");
    // The new index: the current one with exactly these entries changed, stat data taken from
    // the files just written (so `git status` need not re-read them).
    let scratch = stage.with_extension("scratch");
    std::fs::write(&scratch, &current).ctx(|| format!("cannot write {}", scratch.display()))?;
    let mut index = git2::Index::open(&scratch).ctx(|| "cannot read the index".into())?;
    for p in &paths {
        let _ = index.remove(Path::new(p.as_str()), 0);
        let Ok(entry) = tree.get_path(Path::new(p.as_str())) else {
            continue;
        };
        // A path that is a directory in the target (a file became one): its files are paths
        // of their own.
        if entry.kind() == Some(git2::ObjectType::Tree) {
            continue;
        }
        let mode = entry.filemode() as u32;
        let meta = std::fs::symlink_metadata(co.workdir.join(p.as_str())).ok();
        let m = meta.as_ref();
        let t = |s: i64, ns: i64| git2::IndexTime::new(s as i32, ns as u32);
        let ie = git2::IndexEntry {
            ctime: m.map_or(t(0, 0), |m| t(m.ctime(), m.ctime_nsec())),
            mtime: m.map_or(t(0, 0), |m| t(m.mtime(), m.mtime_nsec())),
            dev: m.map_or(0, |m| m.dev() as u32),
            ino: m.map_or(0, |m| m.ino() as u32),
            mode,
            uid: m.map_or(0, |m| m.uid()),
            gid: m.map_or(0, |m| m.gid()),
            file_size: m.map_or(0, |m| m.size() as u32),
            id: entry.id(),
            flags: p.len().min(0xfff) as u16,
            flags_extended: 0,
            path: p.as_bytes().to_vec(),
        };
        index
            .add(&ie)
            .ctx(|| format!("cannot stage {p} in the index"))?;
    }
    index.write().ctx(|| "cannot write the index".into())?;
    let bytes = std::fs::read(&scratch).ctx(|| format!("cannot read {}", scratch.display()))?;
    let _ = std::fs::remove_file(&scratch);
    lock.rewrite(&bytes)
        .ctx(|| "cannot write the index lock".into())?;
    Ok(StagedIndex { lock })
}

impl StagedIndex {
    fn commit(self) -> Result<()> {
        self.lock
            .commit()
            .ctx(|| "cannot write the checkout's index".into())
    }
}

/// What landing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LandOutcome {
    /// `into` was moved to the new commit (and its checkout updated, if it has one).
    Landed,
    /// `into` is checked out with uncommitted changes; nothing was touched.
    DirtyCheckout {
        worktree: PathBuf,
        paths: Vec<String>,
    },
    /// `into` no longer points where it did when the landing was planned; nothing was touched.
    Moved,
    /// The checkout of `into` could not be updated safely; nothing was touched.
    CheckoutBlocked { worktree: PathBuf, message: String },
    /// Another git process holds the lock of `into` (or of its index); nothing was touched.
    Locked { what: String },
}

/// Where landing keeps its stage files: `<common-dir>/agent-farm-txn/<run>/`, beside the refs
/// and indexes they are linked to (a hard link cannot cross file systems, and the run directory
/// may be elsewhere or full).
pub struct Stages {
    pub ref_stage: PathBuf,
    pub index_stage: PathBuf,
}

impl Stages {
    pub fn dir(common_dir: &Path, run_id: &str) -> PathBuf {
        common_dir.join("agent-farm-txn").join(run_id)
    }

    pub fn new(common_dir: &Path, run_id: &str) -> Stages {
        let dir = Self::dir(common_dir, run_id);
        Stages {
            ref_stage: dir.join("land-ref.stage"),
            index_stage: dir.join("land-index.stage"),
        }
    }

    /// Remove the run's (empty) stage directory.
    pub fn remove_dir(common_dir: &Path, run_id: &str) {
        let dir = Self::dir(common_dir, run_id);
        let _ = std::fs::remove_dir(&dir);
        let _ = std::fs::remove_dir(common_dir.join("agent-farm-txn"));
    }
}

fn ref_file(common: &Path, into: &str) -> PathBuf {
    common.join("refs/heads").join(into)
}

/// The checkout of a branch: its working directory and git dir.
fn checkout_of(repo: &Repository, into: &str) -> Result<Option<Checkout>> {
    let Some(workdir) = git::checked_out_at(repo, into) else {
        return Ok(None);
    };
    let wrepo = git::open(&workdir)?;
    Ok(Some(Checkout {
        workdir,
        git_dir: wrepo.path().to_path_buf(),
    }))
}

/// Move `into` from `old` to `new` (planned by [`git::plan_landing`]), updating its checkout,
/// as one transaction journaled in `journal`. Blocking.
pub fn land(
    repo: &Repository,
    journal: &Journal,
    stages: &Stages,
    into: &str,
    old: Option<Oid>,
    new: Oid,
    message: &str,
) -> Result<LandOutcome> {
    let checkout = match old {
        Some(_) => checkout_of(repo, into)?,
        None => None,
    };
    if let Some(co) = &checkout {
        let dirty = git::dirty_paths(&co.workdir)?;
        if !dirty.is_empty() {
            return Ok(LandOutcome::DirtyCheckout {
                worktree: co.workdir.clone(),
                paths: dirty,
            });
        }
    }
    let paths = match (old, &checkout) {
        (Some(o), Some(_)) => changed_paths(repo, o, new)?,
        _ => Vec::new(),
    };
    // Files the new tree adds must not exist untracked (git's own rule: never overwrite them).
    if let (Some(o), Some(co)) = (old, &checkout) {
        let wrepo = git::open(&co.workdir)?;
        let not_old = differing_from(&wrepo, o, &paths)?;
        let not_new = differing_from(&wrepo, new, &paths)?;
        let blocked: Vec<String> = not_old
            .into_iter()
            .filter(|p| not_new.contains(p))
            .collect();
        if !blocked.is_empty() {
            return Ok(LandOutcome::CheckoutBlocked {
                worktree: co.workdir.clone(),
                message: format!(
                    "untracked or changed files would be overwritten: {}",
                    blocked.join(", ")
                ),
            });
        }
    }
    let effect = Effect::Land {
        into: into.to_string(),
        old: old.map(|o| o.to_string()),
        new: new.to_string(),
        checkout: checkout.clone(),
        ref_stage: stages.ref_stage.clone(),
        index_stage: stages.index_stage.clone(),
        paths: paths.clone(),
    };
    let intent = journal
        .begin(effect.clone())
        .ctx(|| "cannot write the journal".into())?;
    crate::fault::point("land.journaled");
    let steps = LandSteps {
        repo,
        stages,
        into,
        old,
        new,
        message,
        checkout: checkout.as_ref(),
        paths: &paths,
    };
    match steps.run() {
        Ok(outcome) => {
            intent.end(match &outcome {
                LandOutcome::Landed => "landed",
                LandOutcome::DirtyCheckout { .. } => "dirty",
                LandOutcome::Moved => "moved",
                LandOutcome::CheckoutBlocked { .. } => "blocked; nothing changed",
                LandOutcome::Locked { .. } => "locked",
            });
            Ok(outcome)
        }
        Err(e) => {
            // Whatever was half done is set right now, by the code that recovers it after a
            // crash; if even that fails the intent stays open for the next command.
            match recover_land(repo, &effect) {
                Ok(_) => intent.end(&format!("failed: {e}; recovered")),
                Err(u) => tracing::error!("cannot recover a failed landing: {u}"),
            }
            Err(e)
        }
    }
}

/// The steps of a landing after its intent is journaled.
struct LandSteps<'a> {
    repo: &'a Repository,
    stages: &'a Stages,
    into: &'a str,
    old: Option<Oid>,
    new: Oid,
    message: &'a str,
    checkout: Option<&'a Checkout>,
    paths: &'a [String],
}

impl LandSteps<'_> {
    fn run(&self) -> Result<LandOutcome> {
        let (repo, into, old, new) = (self.repo, self.into, self.old, self.new);
        let target = ref_file(repo.commondir(), into);
        // A lock left by an earlier attempt of this run that nothing recovered is ours: take
        // it back (the stage would otherwise be replaced and the lock stay for ever).
        let _ = remove_own_lock(&target, &self.stages.ref_stage);
        let Some(ref_lock) = OwnedLock::acquire(
            &target,
            &self.stages.ref_stage,
            format!("{new}\n").as_bytes(),
        )
        .ctx(|| format!("cannot lock {into}"))?
        else {
            return Ok(LandOutcome::Locked {
                what: lock_path(&target).display().to_string(),
            });
        };
        crate::fault::point("land.ref-locked");
        if git::branch_tip(repo, into) != old {
            ref_lock.release();
            return Ok(LandOutcome::Moved);
        }
        if old.is_none()
            && let Some(conflict) = ref_name_conflict(repo, into)
        {
            ref_lock.release();
            return Ok(LandOutcome::CheckoutBlocked {
                worktree: repo.commondir().to_path_buf(),
                message: format!("`{into}` cannot be created next to the existing ref {conflict}"),
            });
        }
        let staged = match self.checkout {
            Some(co) => {
                // Under the ref lock: nobody commits on `into`; re-check the files themselves.
                let wrepo = git::open(&co.workdir)?;
                let o = old.unwrap_or(new);
                let changed = differing_from(&wrepo, o, self.paths)?;
                if !changed.is_empty() || !git::dirty_paths(&co.workdir)?.is_empty() {
                    ref_lock.release();
                    return Ok(LandOutcome::DirtyCheckout {
                        worktree: co.workdir.clone(),
                        paths: changed,
                    });
                }
                let index_stage = &self.stages.index_stage;
                let _ = remove_own_lock(&co.git_dir.join("index"), index_stage);
                match stage_checkout(co, into, new, self.paths, &[], index_stage) {
                    Ok(s) => Some(s),
                    Err(e @ (GitError::Locked { .. } | GitError::CheckoutSwitched { .. })) => {
                        // Refused before any file was touched.
                        ref_lock.release();
                        return Ok(match e {
                            GitError::Locked { path } => LandOutcome::Locked {
                                what: path.display().to_string(),
                            },
                            e => LandOutcome::CheckoutBlocked {
                                worktree: co.workdir.clone(),
                                message: e.to_string(),
                            },
                        });
                    }
                    Err(e) => {
                        // Prepare failed: put back what was written, give the locks up.
                        let undo = stage_checkout(co, into, o, self.paths, &[], index_stage)
                            .and_then(StagedIndex::commit);
                        ref_lock.release();
                        undo?;
                        return Ok(LandOutcome::CheckoutBlocked {
                            worktree: co.workdir.clone(),
                            message: e.to_string(),
                        });
                    }
                }
            }
            None => None,
        };
        crate::fault::point("land.index-staged");
        // The commit point.
        ref_lock.commit().ctx(|| format!("cannot update {into}"))?;
        crate::fault::point("land.ref-moved");
        if let Some(s) = staged {
            s.commit()?;
        }
        crate::fault::point("land.index-written");
        append_reflogs(repo, into, old, new, self.message, self.checkout);
        Ok(LandOutcome::Landed)
    }
}

/// A ref whose name clashes with `refs/heads/<into>` as a path (`a` for `a/b`, or `a/b/c`).
fn ref_name_conflict(repo: &Repository, into: &str) -> Option<String> {
    let full = format!("refs/heads/{into}");
    let mut refs = repo.references().ok()?;
    let mut names = refs.names();
    names.find_map(|n| {
        let n = n.ok()?;
        let clash = full.starts_with(&format!("{n}/")) || n.starts_with(&format!("{full}/"));
        clash.then(|| n.to_string())
    })
}

/// Record the move in `into`'s reflog (and its checkout's HEAD log), as git would.
fn append_reflogs(
    repo: &Repository,
    into: &str,
    old: Option<Oid>,
    new: Oid,
    message: &str,
    checkout: Option<&Checkout>,
) {
    let Ok((_, committer)) = git::signatures(repo) else {
        return;
    };
    let t = committer.when();
    let off = t.offset_minutes();
    let line = format!(
        "{} {new} {} <{}> {} {}{:02}{:02}\t{}\n",
        old.unwrap_or(Oid::ZERO_SHA1),
        committer.name().unwrap_or("agent-farm"),
        committer.email().unwrap_or(""),
        t.seconds(),
        if off < 0 { '-' } else { '+' },
        off.abs() / 60,
        off.abs() % 60,
        message.lines().next().unwrap_or("")
    );
    let mut logs = vec![repo.commondir().join("logs/refs/heads").join(into)];
    if let Some(co) = checkout {
        logs.push(co.git_dir.join("logs/HEAD"));
    }
    for log in logs {
        if let Some(d) = log.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let torn = crate::journal::ends_mid_line(&log);
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
        {
            // One write per line, after ending a line a kill tore.
            let text = if torn {
                format!("\n{line}")
            } else {
                line.clone()
            };
            let _ = f.write_all(text.as_bytes());
        }
    }
}

/// What recovery did with a landing a crash cut short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandRecovery {
    /// `Some(true)`: the ref had moved, the checkout was finished; `Some(false)`: it had not,
    /// the checkout was restored; `None`: `into` points elsewhere now, only locks were removed.
    pub rolled_forward: Option<bool>,
    pub locks_removed: Vec<PathBuf>,
    /// Paths someone changed since the crash: left as they are.
    pub left_alone: Vec<String>,
    /// The checkout was switched to another branch since: its files were left alone.
    pub checkout_switched: bool,
}

/// Finish or undo a landing whose process died: the checkout ends exactly at the commit `into`
/// points to (old or new), never in between; only the dead run's own locks are removed. Call
/// only when no process of that run is alive. Blocking.
pub fn recover_land(repo: &Repository, effect: &Effect) -> Result<LandRecovery> {
    let Effect::Land {
        into,
        old,
        new,
        checkout,
        ref_stage,
        index_stage,
        paths,
    } = effect
    else {
        return Err(GitError::WrongEffect {
            expected: "landing",
            found: effect.describe(),
        });
    };
    let parse = |s: &str| {
        s.parse::<Oid>().map_err(|source| GitError::BadCommitId {
            id: s.to_string(),
            source,
        })
    };
    let new = parse(new)?;
    let old = old.as_deref().map(parse).transpose()?;
    let common = repo.commondir().to_path_buf();
    let mut locks_removed = Vec::new();
    locks_removed.extend(remove_own_lock(&ref_file(&common, into), ref_stage));
    let tip = git::branch_tip(repo, into);
    let target = if tip == Some(new) {
        Some(new)
    } else if tip == old {
        old
    } else {
        None
    };
    let mut left_alone = Vec::new();
    let mut checkout_switched = false;
    if let Some(co) = checkout {
        let index = co.git_dir.join("index");
        let index_ours = is_ours(&lock_path(&index), index_stage);
        if !on_branch(co, into) {
            // Switched to something else since: its files are not ours to touch.
            checkout_switched = true;
            if index_ours {
                locks_removed.extend(remove_own_lock(&index, index_stage));
            }
        } else if let Some(target) = target.filter(|_| co.workdir.is_dir()) {
            // Paths neither at old nor at new were changed by someone since: leave them.
            let wrepo = git::open(&co.workdir)?;
            let not_old = match old {
                Some(o) => differing_from(&wrepo, o, paths)?,
                None => paths.clone(),
            };
            let not_new = differing_from(&wrepo, new, paths)?;
            // A file the dead process was writing when it died holds the start of what it was
            // writing: that is ours to finish or undo, not a change someone made since.
            let commits: Vec<Oid> = old.into_iter().chain([new]).collect();
            left_alone = not_old
                .into_iter()
                .filter(|p| not_new.contains(p))
                .filter(|p| !cut_short(&wrepo, &co.workdir, &commits, p))
                .collect();
            if index_ours {
                locks_removed.extend(remove_own_lock(&index, index_stage));
            }
            stage_checkout(co, into, target, paths, &left_alone, index_stage)?.commit()?;
        } else if index_ours {
            locks_removed.extend(remove_own_lock(&index, index_stage));
        }
    }
    let _ = std::fs::remove_file(index_stage);
    // Rolled forward: the reflog says so too, as it would have had the landing finished.
    if target == Some(new) && old != Some(new) {
        let log = common.join("logs/refs/heads").join(into);
        let logged = std::fs::read_to_string(&log).ok().is_some_and(|t| {
            t.lines()
                .last()
                .and_then(|l| l.split(' ').nth(1))
                .is_some_and(|n| n == new.to_string())
        });
        if !logged {
            let msg = format!("farm: land on {into} (finished by recovery)");
            append_reflogs(repo, into, old, new, &msg, checkout.as_ref());
        }
    }
    Ok(LandRecovery {
        rolled_forward: target.map(|t| t == new && old != Some(new)),
        locks_removed,
        left_alone,
        checkout_switched,
    })
}
