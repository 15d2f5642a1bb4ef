//! Live file watching over the domains' worktrees: which paths changed, while the agents run.
//!
//! This module owns one background thread (`agent-farm-watch`) and everything on it: the OS
//! notification handle, one [`git2::Repository`] per watched worktree (for its ignore rules and
//! index), the set of watched directories, the pending batch and the polling snapshots. The caller
//! only sends commands ([`Watcher::add`], [`Watcher::remove`]) and receives batches of [`Change`]s on
//! a bounded tokio channel, so the event loop never blocks on the file system or on git: `add`
//! returns at once, and the mode it chose arrives through the returned future once the worktree
//! has been walked.
//!
//! # Modes
//!
//! * [`Mode::Notify`]: OS notifications (inotify on Linux) through the `notify` crate. Watches are
//!   non-recursive, one per directory: the worktree is walked, `.git` and every directory git
//!   ignores (unless the index tracks something under it) are skipped. A directory that appears
//!   later is watched and scanned at once, and the files already in it are reported as
//!   [`ChangeKind::Created`], so `mkdir d && echo > d/f` is not missed.
//! * [`Mode::Poll`]: every `poll_interval` (default 2 s) the worktree's `git status` (untracked
//!   files included, ignored files excluded) is compared with the previous one: a path that
//!   enters or leaves the list, or whose mtime or size changed, is reported (the status tells
//!   created from modified). Cost: one status per interval, no watches at all.
//!
//! # Fallback
//!
//! A worktree is polled instead of watched when notifications cannot start at all (the reason
//! names the error), when adding a watch hits the OS limit (ENOSPC, `notify`'s `MaxFilesWatch`;
//! the reason reads `inotify watch limit reached (fs.inotify.max_user_watches=N)`), or when the
//! optional [`WatchOptions::watch_budget`] is used up. The watches already added for that worktree
//! are released. When this happens after `add` returned (a new directory cannot be watched), the
//! worktree switches to polling and a [`ChangeKind::Overflow`] marker is sent for its domain.
//! Polling can be forced with `AGENT_FARM_WATCH=poll` in the environment (read by
//! [`WatchOptions::new`]) or with [`WatchOptions::force_poll`].
//!
//! # What is reported
//!
//! Files (and symlinks), never directories, as '/'-separated paths relative to the worktree root.
//! Never: anything under `.git` (a directory in a main worktree, a file in a linked one), nor a
//! path git ignores, unless the index tracks it. A directory that disappears (deleted or renamed
//! away) is reported as the tracked files it held. A rename seen whole (both names in one watched
//! tree) is a [`ChangeKind::Renamed`] at the new path plus a [`ChangeKind::Removed`] at the old
//! one; otherwise, and always in poll mode, it is a `Removed` plus a `Created`. When a
//! `.gitignore` changes, the worktree is walked again: directories git now sees are watched and
//! the files already in them reported as `Created` (they are new to git), directories it now
//! ignores are unwatched. Untracked files in a directory that disappears are not listed.
//!
//! # Batches and bounds
//!
//! The first change after a quiet period opens a window of `debounce`; at its end the window's
//! changes go out as one batch, deduplicated per (domain, path) and sorted: a write is reported
//! `debounce` after it (plus about a millisecond) in notify mode, within `poll_interval` +
//! `debounce` in poll mode. Merging keeps the
//! latest kind, except that a file created (or renamed into place) within the window stays
//! `Created` (or `Renamed`) when it is then modified. When the channel is full, changes keep
//! accumulating into the pending batch and sending is retried; the pending batch holds at most
//! `max_pending` (default 100 000) paths: past that, the pending paths are dropped and each
//! affected domain gets one [`ChangeKind::Overflow`] marker (path `""`), meaning "rescan this
//! worktree". The same marker is sent when the kernel's or this module's event queue overflows.
//! Raw notifications travel from `notify`'s thread to ours through a queue of at most 65 536
//! events. When the receiver is dropped the thread stops; dropping the [`Watcher`] stops it too
//! and joins it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use git2::{Repository, Status, StatusOptions};
use notify::event::{CreateKind, ModifyKind, RemoveKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

/// Environment variable read by [`WatchOptions::new`]: `poll` forces [`Mode::Poll`].
pub const ENV_MODE: &str = "AGENT_FARM_WATCH";
/// Default interval between two `git status` snapshots in poll mode.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Default cap on distinct pending paths before an overflow marker replaces them.
pub const DEFAULT_MAX_PENDING: usize = 100_000;
/// Cap on raw notifications queued between `notify`'s thread and ours.
const FS_QUEUE_CAP: usize = 65_536;
/// Messages handled before timers are looked at again.
const DRAIN_LIMIT: usize = 1024;

/// What happened to a path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ChangeKind {
    Created,
    Modified,
    Removed,
    /// The file at `path` was renamed from `from` (same worktree). `from` is also reported as
    /// `Removed` in the same batch.
    Renamed {
        from: String,
    },
    /// Changes for this domain were lost (too many pending paths, or an event queue overflowed):
    /// rescan the whole worktree. `path` is empty.
    Overflow,
}

/// One changed path in one domain's worktree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub domain: String,
    /// Relative to the worktree root, '/'-separated; empty for [`ChangeKind::Overflow`].
    pub path: String,
    #[serde(flatten)]
    pub kind: ChangeKind,
    /// When the latest event for this path was seen, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// How a worktree is watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Notify,
    Poll { reason: String },
}

/// Why a worktree could not be watched at all.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch {root} for domain {domain}: {error}")]
    Resolve {
        domain: String,
        root: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot watch {root} for domain {domain}: not a git worktree ({error})")]
    OpenRepo {
        domain: String,
        root: PathBuf,
        error: git2::Error,
    },
    #[error(
        "cannot watch {root} for domain {domain}: it overlaps {other_root} (domain {other}); \
         give each domain its own worktree"
    )]
    RootInUse {
        domain: String,
        root: PathBuf,
        other: String,
        other_root: PathBuf,
    },
    #[error("cannot poll {root} for domain {domain}: git status failed ({error})")]
    Status {
        domain: String,
        root: PathBuf,
        error: git2::Error,
    },
    #[error("the file watcher has stopped (its receiver was dropped or its thread failed)")]
    Stopped,
}

/// Tuning for a [`Watcher`].
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Length of a batch window, from the first change in it.
    pub debounce: Duration,
    /// Interval between two snapshots in poll mode.
    pub poll_interval: Duration,
    /// `Some(reason)` polls every worktree; [`Mode::Poll`] then says `polling forced: {reason}`.
    pub force_poll: Option<String>,
    /// Distinct pending paths kept before they are replaced by overflow markers.
    pub max_pending: usize,
    /// At most this many directory watches for this watcher; past it, a worktree falls back to
    /// polling as if the OS limit had been hit. `None`: only the OS limit applies.
    pub watch_budget: Option<usize>,
}

impl WatchOptions {
    /// Defaults, with polling forced when `AGENT_FARM_WATCH=poll`.
    pub fn new(debounce: Duration) -> WatchOptions {
        let force_poll = match std::env::var(ENV_MODE) {
            Ok(v) if v.eq_ignore_ascii_case("poll") => Some(format!("{ENV_MODE}=poll")),
            Ok(v) if v.is_empty() || v.eq_ignore_ascii_case("notify") => None,
            Ok(v) => {
                warn!("ignoring {ENV_MODE}={v:?}: expected `poll` or `notify`");
                None
            }
            Err(_) => None,
        };
        WatchOptions {
            debounce,
            poll_interval: DEFAULT_POLL_INTERVAL,
            force_poll,
            max_pending: DEFAULT_MAX_PENDING,
            watch_budget: None,
        }
    }
}

/// Handle to the watcher thread. Dropping it stops the thread and joins it.
pub struct Watcher {
    cmd: std_mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

/// The answer to [`Watcher::add`]: resolves once the worktree is walked and watched (or polled).
/// The command is sent when `add` is called; awaiting this is only needed to learn the mode.
pub struct Adding(oneshot::Receiver<Result<Mode, WatchError>>);

impl Future for Adding {
    type Output = Result<Mode, WatchError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(WatchError::Stopped)))
    }
}

impl Watcher {
    /// Starts the watcher thread with [`WatchOptions::new`]`(debounce)`. Batches go to `tx`.
    pub fn start(tx: mpsc::Sender<Vec<Change>>, debounce: Duration) -> Watcher {
        Watcher::with_options(tx, WatchOptions::new(debounce))
    }

    /// Starts the watcher thread with explicit options.
    pub fn with_options(tx: mpsc::Sender<Vec<Change>>, opts: WatchOptions) -> Watcher {
        let (cmd, rx) = std_mpsc::channel();
        let events = cmd.clone();
        let thread = std::thread::Builder::new()
            .name("agent-farm-watch".into())
            .spawn(move || Engine::new(tx, opts, events).run(rx));
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                warn!("cannot start the file watcher thread: {e}");
                None
            }
        };
        Watcher { cmd, thread }
    }

    /// Starts watching `root` (a git worktree) for `domain`, replacing any earlier root of that
    /// domain. Returns at once; the returned future resolves to the mode used.
    pub fn add(&self, domain: &str, root: &Path) -> Adding {
        let (reply, rx) = oneshot::channel();
        // On failure the message, and with it `reply`, is dropped: the future yields `Stopped`.
        let _ = self.cmd.send(Msg::Add {
            domain: domain.to_owned(),
            root: root.to_owned(),
            reply,
        });
        Adding(rx)
    }

    /// Stops watching that domain's worktree and drops its pending changes (idempotent). Batches
    /// already in the channel may still mention it. The command is sent when `remove` is called;
    /// the returned future resolves once no directory of that worktree is watched any more
    /// (or the watcher has stopped), so a caller about to delete the worktree can wait for it.
    pub fn remove(&self, domain: &str) -> Removed {
        self.unwatch(Some(domain.to_owned()))
    }

    /// Stops watching every worktree (as [`Watcher::remove`] does for one). A worktree must not
    /// be deleted while it is watched: its directories' watches would vanish under notify, which
    /// then logs a warning for each of them.
    pub fn remove_all(&self) -> Removed {
        self.unwatch(None)
    }

    fn unwatch(&self, domain: Option<String>) -> Removed {
        let (reply, rx) = oneshot::channel();
        // On failure the message is dropped, and with it `reply`: the future resolves at once.
        let _ = self.cmd.send(Msg::Remove { domain, reply });
        Removed(rx)
    }
}

/// The answer to [`Watcher::remove`]: resolves once the worktree is no longer watched.
pub struct Removed(oneshot::Receiver<()>);

impl Future for Removed {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.cmd.send(Msg::Shutdown);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            warn!("the file watcher thread panicked");
        }
    }
}

enum Msg {
    Add {
        domain: String,
        root: PathBuf,
        reply: oneshot::Sender<Result<Mode, WatchError>>,
    },
    /// One domain's worktree, or every one (`None`).
    Remove {
        domain: Option<String>,
        reply: oneshot::Sender<()>,
    },
    Fs(notify::Result<notify::Event>),
    Shutdown,
}

/// Bounds the raw events in flight from `notify`'s thread: past the cap they are dropped and
/// `overflowed` asks for a rescan.
#[derive(Default)]
struct FsQueue {
    len: AtomicUsize,
    overflowed: AtomicBool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

// ---------------------------------------------------------------------------------------------
// Pending batch: pure bookkeeping.

#[derive(Debug, Clone)]
struct Entry {
    kind: ChangeKind,
    at_ms: u64,
    /// Held back one window already (a temporary that may still be renamed away).
    held: bool,
    /// The path may have been a directory (a rename away of something we did not watch): the
    /// ignore check then also tries it as a directory.
    maybe_dir: bool,
}

/// Whether a file name looks like an atomic-write temporary: `NAME.tmp.<pid>.<suffix>` (Claude
/// Code's Write and Edit), `NAME.tmp` or `.NAME.swp`-style editor files are not included.
fn is_atomic_temp(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let mut parts = name.rsplitn(4, '.');
    let (Some(suffix), Some(pid), Some(tmp), Some(stem)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    tmp == "tmp"
        && !stem.is_empty()
        && !pid.is_empty()
        && pid.chars().all(|c| c.is_ascii_digit())
        && !suffix.is_empty()
        && suffix.chars().all(|c| c.is_ascii_alphanumeric())
}

fn merge(old: &ChangeKind, new: ChangeKind) -> ChangeKind {
    match (old, new) {
        (ChangeKind::Created, ChangeKind::Modified) => ChangeKind::Created,
        (ChangeKind::Renamed { from }, ChangeKind::Modified) => {
            ChangeKind::Renamed { from: from.clone() }
        }
        (_, new) => new,
    }
}

#[derive(Debug)]
struct Pending {
    debounce: Duration,
    /// Most distinct paths kept.
    cap: usize,
    entries: HashMap<(String, String), Entry>,
    /// Paths that appeared and went again within the window (an editor's or the agent's
    /// atomic-write temporary): not changes; a rename from one is a change of its target only.
    transient: std::collections::HashSet<(String, String)>,
    /// Domains whose changes were dropped, with when: one Overflow marker each.
    overflow: BTreeMap<String, u64>,
    /// End of the current window (or the next send retry).
    deadline: Option<Instant>,
}

impl Pending {
    fn new(debounce: Duration, cap: usize) -> Pending {
        Pending {
            debounce,
            cap,
            entries: HashMap::new(),
            transient: std::collections::HashSet::new(),
            overflow: BTreeMap::new(),
            deadline: None,
        }
    }

    fn open_window(&mut self, now: Instant) {
        if self.deadline.is_none() {
            self.deadline = Some(now + self.debounce);
        }
    }

    fn push(
        &mut self,
        domain: &str,
        path: String,
        kind: ChangeKind,
        maybe_dir: bool,
        at_ms: u64,
        now: Instant,
    ) {
        self.open_window(now);
        if self.overflow.contains_key(domain) {
            return; // the consumer rescans this domain anyway
        }
        let key = (domain.to_owned(), path);
        if let Some(e) = self.entries.get_mut(&key) {
            let appeared = matches!(e.kind, ChangeKind::Created | ChangeKind::Renamed { .. });
            if appeared && kind == ChangeKind::Removed {
                // Created and gone within one window: nothing changed at this path. What was
                // renamed from it changed only at its target.
                self.entries.remove(&key);
                for ((d, _), e) in self.entries.iter_mut() {
                    if d == domain
                        && matches!(&e.kind, ChangeKind::Renamed { from } if *from == key.1)
                    {
                        e.kind = ChangeKind::Modified;
                    }
                }
                self.transient.insert(key);
                return;
            }
            e.kind = merge(&e.kind, kind);
            e.at_ms = at_ms;
            e.maybe_dir |= maybe_dir;
            return;
        }
        if self.entries.len() >= self.cap {
            for (d, _) in self.entries.keys() {
                self.overflow.entry(d.clone()).or_insert(at_ms);
            }
            self.overflow.insert(key.0, at_ms);
            self.entries = HashMap::new();
            return;
        }
        self.entries.insert(
            key,
            Entry {
                kind,
                at_ms,
                held: false,
                maybe_dir,
            },
        );
    }

    /// The file at `to` came from `from`: upgrade its `Created` to `Renamed`.
    fn renamed(&mut self, domain: &str, to: &str, from: &str) {
        if self
            .transient
            .contains(&(domain.to_owned(), from.to_owned()))
        {
            // From a temporary of this window: a change of `to`, as written in place.
            return;
        }
        let key = (domain.to_owned(), to.to_owned());
        if let Some(e) = self.entries.get_mut(&key)
            && e.kind == ChangeKind::Created
        {
            e.kind = ChangeKind::Renamed {
                from: from.to_owned(),
            };
        }
    }

    fn mark_overflow(&mut self, domain: &str, at_ms: u64, now: Instant) {
        self.open_window(now);
        self.entries.retain(|(d, _), _| d != domain);
        self.overflow.entry(domain.to_owned()).or_insert(at_ms);
    }

    fn drop_domain(&mut self, domain: &str) {
        self.entries.retain(|(d, _), _| d != domain);
        self.overflow.remove(domain);
        if self.entries.is_empty() && self.overflow.is_empty() {
            self.deadline = None;
        }
    }

    fn clear(&mut self) {
        self.entries = HashMap::new();
        self.transient.clear();
        self.overflow.clear();
        self.deadline = None;
    }
}

// ---------------------------------------------------------------------------------------------
// Poll snapshots: pure comparison.

/// What a file looked like: enough to tell a write from an index-only change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: Option<SystemTime>,
    size: u64,
}

/// A path `git status` lists as changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dirty {
    /// Untracked, or new in the index.
    new: bool,
    /// `None`: the path does not exist on disk.
    stamp: Option<Stamp>,
}

type Snapshot = HashMap<String, Dirty>;

/// Changes between two snapshots. `stat` gives the current stamp of a path that is clean now
/// (it is absent from `new`).
fn diff_snapshots(
    old: &Snapshot,
    new: &Snapshot,
    stat: impl Fn(&str) -> Option<Stamp>,
) -> Vec<(String, ChangeKind)> {
    let mut out = Vec::new();
    for (path, now) in new {
        let kind = match old.get(path) {
            None => Some(match now.stamp {
                None => ChangeKind::Removed,
                Some(_) if now.new => ChangeKind::Created,
                Some(_) => ChangeKind::Modified,
            }),
            Some(before) => between(before.stamp, now.stamp),
        };
        if let Some(k) = kind {
            out.push((path.clone(), k));
        }
    }
    for (path, before) in old {
        if !new.contains_key(path)
            && let Some(k) = between(before.stamp, stat(path))
        {
            out.push((path.clone(), k));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn between(before: Option<Stamp>, now: Option<Stamp>) -> Option<ChangeKind> {
    match (before, now) {
        (Some(_), None) => Some(ChangeKind::Removed),
        (None, Some(_)) => Some(ChangeKind::Created),
        (Some(a), Some(b)) if a != b => Some(ChangeKind::Modified),
        _ => None,
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::symlink_metadata(path).ok()?;
    Some(Stamp {
        mtime: m.modified().ok(),
        size: m.len(),
    })
}

fn take_snapshot(repo: &Repository, root: &Path) -> Result<Snapshot, git2::Error> {
    let mut opts = StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo.statuses(Some(&mut opts))?;
    let mut snap = Snapshot::with_capacity(statuses.len());
    for entry in statuses.iter() {
        let path = String::from_utf8_lossy(entry.path_bytes()).into_owned();
        let st = entry.status();
        let dirty = Dirty {
            new: st.intersects(Status::WT_NEW | Status::INDEX_NEW),
            stamp: stamp(&root.join(&path)),
        };
        snap.insert(path, dirty);
    }
    Ok(snap)
}

// ---------------------------------------------------------------------------------------------
// Paths and git's view of them.

/// True for paths never reported: the root itself and anything under a `.git` entry.
fn skip_rel(rel: &str) -> bool {
    rel.is_empty() || rel.split('/').any(|c| c == ".git")
}

fn rel_path(root: &Path, abs: &Path) -> Option<String> {
    let rest = abs.strip_prefix(root).ok()?;
    let mut out = String::new();
    for c in rest.components() {
        let Component::Normal(c) = c else {
            return None;
        };
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(&c.to_string_lossy());
    }
    Some(out)
}

/// One worktree's repository, for its ignore rules and index (read lazily, refreshed at most once
/// per flush or walk).
struct GitView {
    repo: Repository,
    index: Option<git2::Index>,
    index_fresh: bool,
}

impl GitView {
    fn index(&mut self) -> Option<&git2::Index> {
        if self.index.is_none() {
            self.index = self.repo.index().ok();
            self.index_fresh = true;
        }
        let idx = self.index.as_mut()?;
        if !self.index_fresh {
            if let Err(e) = idx.read(false) {
                debug!("cannot reread the index: {e}");
            }
            self.index_fresh = true;
        }
        Some(idx)
    }

    fn ignored(&self, rel: &str) -> bool {
        self.repo.is_path_ignored(rel).unwrap_or(false)
    }

    /// Whether a directory's contents can matter to git: not ignored, or tracked files inside.
    fn dir_watchable(&mut self, rel_dir: &str) -> bool {
        if rel_dir.is_empty() {
            return true;
        }
        let as_dir = format!("{rel_dir}/");
        !self.ignored(&as_dir)
            || self
                .index()
                .is_some_and(|i| i.find_prefix(&*as_dir).is_ok())
    }

    fn reportable(&mut self, rel: &str, maybe_dir: bool) -> bool {
        if skip_rel(rel) {
            return false;
        }
        let ignored = self.ignored(rel) || (maybe_dir && self.ignored(&format!("{rel}/")));
        !ignored
            || self
                .index()
                .is_some_and(|i| i.get_path(Path::new(rel), 0).is_some())
    }

    /// Tracked paths under `rel_dir/`.
    fn tracked_under(&mut self, rel_dir: &str) -> Vec<String> {
        let prefix = format!("{rel_dir}/");
        let mut out = Vec::new();
        if let Some(idx) = self.index()
            && let Ok(mut i) = idx.find_prefix(&*prefix)
        {
            while let Some(e) = idx.get(i) {
                if !e.path.starts_with(prefix.as_bytes()) {
                    break;
                }
                out.push(String::from_utf8_lossy(&e.path).into_owned());
                i += 1;
            }
        }
        out.dedup();
        out
    }
}

enum RootMode {
    Notify,
    Poll {
        snapshot: Snapshot,
        next_at: Instant,
    },
}

struct Root {
    path: PathBuf,
    git: GitView,
    /// Watched directories (absolute); empty in poll mode.
    dirs: HashSet<PathBuf>,
    /// Directories unwatched since the last flush: a directory moved away is announced twice (by
    /// its parent and by itself), and the second time it is no longer in `dirs`.
    gone_dirs: HashSet<PathBuf>,
    mode: RootMode,
}

/// The OS notification handle and how many watches this watcher holds.
struct Watches {
    w: RecommendedWatcher,
    count: usize,
    budget: Option<usize>,
}

fn limit_reason() -> String {
    match std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches") {
        Ok(n) => format!(
            "inotify watch limit reached (fs.inotify.max_user_watches={})",
            n.trim()
        ),
        Err(_) => "OS file watch limit reached".to_owned(),
    }
}

fn is_limit(e: &notify::Error) -> bool {
    match &e.kind {
        notify::ErrorKind::MaxFilesWatch => true,
        notify::ErrorKind::Io(io) => io.raw_os_error() == Some(nix::errno::Errno::ENOSPC as i32),
        _ => false,
    }
}

impl Watches {
    /// Watches `start` and every directory under it that can matter to git. With `found`, lists
    /// the files in the directories newly watched; with `seen`, all the directories walked.
    /// `Err` carries the fallback reason.
    fn watch_tree(
        &mut self,
        root: &mut Root,
        start: &Path,
        mut found: Option<&mut Vec<String>>,
        mut seen: Option<&mut HashSet<PathBuf>>,
    ) -> Result<(), String> {
        let mut stack = vec![start.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if let Some(s) = seen.as_deref_mut() {
                s.insert(dir.clone());
            }
            // Watch before listing: a file created in between shows up in one or the other.
            let newly = !root.dirs.contains(&dir);
            if newly {
                if let Some(b) = self.budget
                    && self.count >= b
                {
                    return Err(format!("watch budget of {b} directories used up"));
                }
                match self.w.watch(&dir, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        root.dirs.insert(dir.clone());
                        self.count += 1;
                    }
                    Err(e) if is_limit(&e) => return Err(limit_reason()),
                    Err(e) => {
                        debug!("not watching {}: {e}", dir.display());
                        continue;
                    }
                }
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_name() == ".git" {
                    continue;
                }
                let Ok(ft) = entry.file_type() else {
                    continue;
                };
                let abs = entry.path();
                let Some(rel) = rel_path(&root.path, &abs) else {
                    continue;
                };
                if ft.is_dir() {
                    if root.git.dir_watchable(&rel) {
                        stack.push(abs);
                    }
                } else if newly && let Some(f) = found.as_deref_mut() {
                    f.push(rel);
                }
            }
        }
        Ok(())
    }

    fn unwatch_under(&mut self, root: &mut Root, top: &Path) {
        let gone: Vec<PathBuf> = root
            .dirs
            .iter()
            .filter(|d| d.starts_with(top))
            .cloned()
            .collect();
        for d in gone {
            root.dirs.remove(&d);
            self.count = self.count.saturating_sub(1);
            // notify already dropped watches of directories deleted or moved away.
            let _ = self.w.unwatch(&d);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The thread.

struct Engine {
    opts: WatchOptions,
    tx: mpsc::Sender<Vec<Change>>,
    /// `Err(reason)` when OS notifications could not start.
    watches: Result<Watches, String>,
    roots: HashMap<String, Root>,
    pending: Pending,
    queue: Arc<FsQueue>,
    /// Domains whose `.gitignore` files changed: walked again once the queued events are handled.
    resync: HashSet<String>,
}

enum Flow {
    Continue,
    Stop,
}

impl Engine {
    fn new(
        tx: mpsc::Sender<Vec<Change>>,
        opts: WatchOptions,
        events: std_mpsc::Sender<Msg>,
    ) -> Self {
        let queue = Arc::new(FsQueue::default());
        let q = Arc::clone(&queue);
        let handler = move |res: notify::Result<notify::Event>| {
            // Opens and closes (every read of every file) are never reported: drop them here.
            if let Ok(ev) = &res
                && matches!(ev.kind, EventKind::Access(_))
            {
                return;
            }
            if q.len.fetch_add(1, Ordering::AcqRel) >= FS_QUEUE_CAP {
                q.len.fetch_sub(1, Ordering::AcqRel);
                q.overflowed.store(true, Ordering::Release);
                return;
            }
            if events.send(Msg::Fs(res)).is_err() {
                q.len.fetch_sub(1, Ordering::AcqRel);
            }
        };
        let watches = match notify::recommended_watcher(handler) {
            Ok(w) => Ok(Watches {
                w,
                count: 0,
                budget: opts.watch_budget,
            }),
            Err(e) => Err(format!("cannot start OS file notifications: {e}")),
        };
        let pending = Pending::new(opts.debounce, opts.max_pending);
        Engine {
            opts,
            tx,
            watches,
            roots: HashMap::new(),
            pending,
            queue,
            resync: HashSet::new(),
        }
    }

    fn run(mut self, rx: std_mpsc::Receiver<Msg>) {
        loop {
            let msg = match self.next_wake() {
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(m) => Some(m),
                    Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                },
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => return,
                },
            };
            if let Some(m) = msg {
                if let Flow::Stop = self.handle(m) {
                    return self.shutdown();
                }
                for _ in 0..DRAIN_LIMIT {
                    let Ok(m) = rx.try_recv() else { break };
                    if let Flow::Stop = self.handle(m) {
                        return self.shutdown();
                    }
                }
            }
            if self.queue.overflowed.swap(false, Ordering::AcqRel) {
                self.rescan_all();
            }
            for domain in std::mem::take(&mut self.resync) {
                self.resync(&domain, true);
            }
            if let Flow::Stop = self.tick(Instant::now()) {
                return;
            }
        }
    }

    fn shutdown(mut self) {
        if self.pending.deadline.is_some() {
            self.flush(Instant::now());
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let polls = self.roots.values().filter_map(|r| match r.mode {
            RootMode::Poll { next_at, .. } => Some(next_at),
            RootMode::Notify => None,
        });
        self.pending.deadline.into_iter().chain(polls).min()
    }

    fn handle(&mut self, msg: Msg) -> Flow {
        match msg {
            Msg::Add {
                domain,
                root,
                reply,
            } => {
                let res = self.add(&domain, &root);
                let _ = reply.send(res);
            }
            Msg::Remove { domain, reply } => {
                match domain {
                    Some(d) => self.remove(&d),
                    None => {
                        let all: Vec<String> = self.roots.keys().cloned().collect();
                        for d in all {
                            self.remove(&d);
                        }
                    }
                }
                let _ = reply.send(());
            }
            Msg::Fs(ev) => {
                self.queue.len.fetch_sub(1, Ordering::AcqRel);
                self.on_fs(ev);
            }
            Msg::Shutdown => return Flow::Stop,
        }
        Flow::Continue
    }

    fn tick(&mut self, now: Instant) -> Flow {
        let due: Vec<String> = self
            .roots
            .iter()
            .filter(|(_, r)| matches!(r.mode, RootMode::Poll { next_at, .. } if next_at <= now))
            .map(|(d, _)| d.clone())
            .collect();
        for domain in due {
            self.poll_root(&domain, now);
        }
        if self.pending.deadline.is_some_and(|d| d <= now) {
            return self.flush(now);
        }
        Flow::Continue
    }

    // -- commands --------------------------------------------------------------------------

    fn add(&mut self, domain: &str, root: &Path) -> Result<Mode, WatchError> {
        self.remove(domain);
        let path = root.canonicalize().map_err(|error| WatchError::Resolve {
            domain: domain.to_owned(),
            root: root.to_owned(),
            error,
        })?;
        if let Some((other, r)) = self
            .roots
            .iter()
            .find(|(_, r)| r.path.starts_with(&path) || path.starts_with(&r.path))
        {
            return Err(WatchError::RootInUse {
                domain: domain.to_owned(),
                root: path,
                other: other.clone(),
                other_root: r.path.clone(),
            });
        }
        let repo = Repository::open(&path)
            .and_then(|repo| match repo.workdir() {
                Some(_) => Ok(repo),
                None => Err(git2::Error::from_str(
                    "a bare repository has no files to watch",
                )),
            })
            .map_err(|error| WatchError::OpenRepo {
                domain: domain.to_owned(),
                root: path.clone(),
                error,
            })?;
        let mut r = Root {
            path,
            git: GitView {
                repo,
                index: None,
                index_fresh: false,
            },
            dirs: HashSet::new(),
            gone_dirs: HashSet::new(),
            mode: RootMode::Notify,
        };
        let reason = match (&self.opts.force_poll, &mut self.watches) {
            (Some(why), _) => Some(format!("polling forced: {why}")),
            (None, Err(why)) => Some(why.clone()),
            (None, Ok(w)) => {
                let top = r.path.clone();
                match w.watch_tree(&mut r, &top, None, None) {
                    Ok(()) => None,
                    Err(why) => {
                        w.unwatch_under(&mut r, &top);
                        Some(why)
                    }
                }
            }
        };
        let mode = match reason {
            None => Mode::Notify,
            Some(reason) => {
                let snapshot =
                    take_snapshot(&r.git.repo, &r.path).map_err(|error| WatchError::Status {
                        domain: domain.to_owned(),
                        root: r.path.clone(),
                        error,
                    })?;
                r.mode = RootMode::Poll {
                    snapshot,
                    next_at: Instant::now() + self.opts.poll_interval,
                };
                debug!("polling {} for {domain}: {reason}", r.path.display());
                Mode::Poll { reason }
            }
        };
        self.roots.insert(domain.to_owned(), r);
        Ok(mode)
    }

    fn remove(&mut self, domain: &str) {
        if let Some(mut r) = self.roots.remove(domain)
            && let Ok(w) = &mut self.watches
        {
            let top = r.path.clone();
            w.unwatch_under(&mut r, &top);
        }
        self.pending.drop_domain(domain);
    }

    /// Switches a watched worktree to polling after `add` returned.
    fn fall_back(&mut self, domain: &str, reason: String) {
        let Some(r) = self.roots.get_mut(domain) else {
            return;
        };
        if let Ok(w) = &mut self.watches {
            let top = r.path.clone();
            w.unwatch_under(r, &top);
        }
        let snapshot = take_snapshot(&r.git.repo, &r.path).unwrap_or_else(|e| {
            warn!("git status failed in {}: {e}", r.path.display());
            Snapshot::new()
        });
        warn!(
            "watching {} for {domain} by polling from now on: {reason}",
            r.path.display()
        );
        r.mode = RootMode::Poll {
            snapshot,
            next_at: Instant::now() + self.opts.poll_interval,
        };
        self.pending.mark_overflow(domain, now_ms(), Instant::now());
    }

    // -- notifications ---------------------------------------------------------------------

    /// The watched root holding `abs` (longest match), as (domain, relative path).
    fn locate(&self, abs: &Path) -> Option<(String, String)> {
        let (domain, r) = self
            .roots
            .iter()
            .filter(|(_, r)| matches!(r.mode, RootMode::Notify) && abs.starts_with(&r.path))
            .max_by_key(|(_, r)| r.path.as_os_str().len())?;
        let rel = rel_path(&r.path, abs)?;
        (!skip_rel(&rel)).then(|| (domain.clone(), rel))
    }

    fn push(&mut self, domain: &str, rel: String, kind: ChangeKind, maybe_dir: bool) {
        self.pending
            .push(domain, rel, kind, maybe_dir, now_ms(), Instant::now());
    }

    fn on_fs(&mut self, ev: notify::Result<notify::Event>) {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                warn!("file notification error: {e}");
                return;
            }
        };
        if ev.need_rescan() {
            self.rescan_all();
            return;
        }
        for p in &ev.paths {
            if p.file_name().is_some_and(|n| n == ".gitignore")
                && let Some((domain, _)) = self.locate(p)
            {
                self.resync.insert(domain);
            }
        }
        match ev.kind {
            EventKind::Create(kind) => {
                for p in &ev.paths {
                    self.appeared(p, matches!(kind, CreateKind::Folder));
                }
            }
            EventKind::Remove(kind) => {
                let hint = match kind {
                    RemoveKind::Folder => Some(true),
                    RemoveKind::File => Some(false),
                    _ => None,
                };
                for p in &ev.paths {
                    self.gone(p, hint);
                }
            }
            EventKind::Modify(ModifyKind::Name(mode)) => match (mode, ev.paths.as_slice()) {
                (RenameMode::From, [p]) => self.gone(p, None),
                (RenameMode::To, [p]) => self.appeared(p, false),
                (RenameMode::Both, [from, to]) => self.paired(from, to),
                _ => {
                    for p in &ev.paths {
                        self.by_existence(p);
                    }
                }
            },
            EventKind::Modify(_) => {
                for p in &ev.paths {
                    self.modified(p);
                }
            }
            EventKind::Any => {
                for p in &ev.paths {
                    self.by_existence(p);
                }
            }
            EventKind::Access(_) | EventKind::Other => {}
        }
    }

    fn by_existence(&mut self, p: &Path) {
        if std::fs::symlink_metadata(p).is_ok() {
            self.appeared(p, false);
        } else {
            self.gone(p, None);
        }
    }

    fn appeared(&mut self, p: &Path, dir_hint: bool) {
        let Some((domain, rel)) = self.locate(p) else {
            return;
        };
        let is_dir = std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
        if !is_dir {
            if !dir_hint {
                self.push(&domain, rel, ChangeKind::Created, false);
            }
            return;
        }
        let (Some(r), Ok(w)) = (self.roots.get_mut(&domain), &mut self.watches) else {
            return;
        };
        r.git.index_fresh = false;
        if !r.git.dir_watchable(&rel) {
            return;
        }
        let mut found = Vec::new();
        match w.watch_tree(r, p, Some(&mut found), None) {
            Ok(()) => {
                for f in found {
                    self.push(&domain, f, ChangeKind::Created, false);
                }
            }
            Err(reason) => self.fall_back(&domain, reason),
        }
    }

    /// `dir_hint`: `Some(true)` for a directory, `Some(false)` for a file, `None` unknown.
    fn gone(&mut self, p: &Path, dir_hint: Option<bool>) {
        let Some((domain, rel)) = self.locate(p) else {
            return;
        };
        let (Some(r), Ok(w)) = (self.roots.get_mut(&domain), &mut self.watches) else {
            return;
        };
        if r.dirs.contains(p) {
            w.unwatch_under(r, p);
            r.gone_dirs.insert(p.to_owned());
            r.git.index_fresh = false;
            let root = r.path.clone();
            let lost: Vec<String> = r
                .git
                .tracked_under(&rel)
                .into_iter()
                .filter(|t| std::fs::symlink_metadata(root.join(t)).is_err())
                .collect();
            for t in lost {
                self.push(&domain, t, ChangeKind::Removed, false);
            }
        } else if dir_hint != Some(true) && !r.gone_dirs.contains(p) {
            // An unwatched directory is either ignored or was never seen: nothing to report.
            self.push(&domain, rel, ChangeKind::Removed, dir_hint.is_none());
        }
    }

    fn modified(&mut self, p: &Path) {
        let Some((domain, rel)) = self.locate(p) else {
            return;
        };
        if self.roots.get(&domain).is_some_and(|r| r.dirs.contains(p)) {
            return; // a directory's own metadata
        }
        self.push(&domain, rel, ChangeKind::Modified, false);
    }

    fn paired(&mut self, from: &Path, to: &Path) {
        let (Some((d1, from_rel)), Some((d2, to_rel))) = (self.locate(from), self.locate(to))
        else {
            return;
        };
        let to_is_dir = self.roots.get(&d2).is_some_and(|r| r.dirs.contains(to));
        if d1 == d2 && !to_is_dir {
            self.pending.renamed(&d2, &to_rel, &from_rel);
        }
    }

    /// Events were lost: every watched domain gets an overflow marker, and watches are brought
    /// back in line with the directories on disk.
    fn rescan_all(&mut self) {
        let domains: Vec<String> = self
            .roots
            .iter()
            .filter(|(_, r)| matches!(r.mode, RootMode::Notify))
            .map(|(d, _)| d.clone())
            .collect();
        for domain in domains {
            self.pending
                .mark_overflow(&domain, now_ms(), Instant::now());
            self.resync(&domain, false);
        }
    }

    /// Walks a watched worktree again: directories that now matter to git are watched (with
    /// `report`, their files are reported as created: git sees them now), directories that no
    /// longer do are unwatched.
    fn resync(&mut self, domain: &str, report: bool) {
        let (Some(r), Ok(w)) = (self.roots.get_mut(domain), &mut self.watches) else {
            return;
        };
        if !matches!(r.mode, RootMode::Notify) {
            return;
        }
        r.git.index_fresh = false;
        let top = r.path.clone();
        let mut seen = HashSet::new();
        let mut found = Vec::new();
        let walked = w.watch_tree(r, &top, report.then_some(&mut found), Some(&mut seen));
        if let Err(reason) = walked {
            self.fall_back(domain, reason);
            return;
        }
        let stale: Vec<PathBuf> = r.dirs.difference(&seen).cloned().collect();
        for d in stale {
            w.unwatch_under(r, &d);
        }
        for f in found {
            self.push(domain, f, ChangeKind::Created, false);
        }
    }

    // -- polling and sending ---------------------------------------------------------------

    fn poll_root(&mut self, domain: &str, now: Instant) {
        let Some(r) = self.roots.get_mut(domain) else {
            return;
        };
        let RootMode::Poll { snapshot, next_at } = &mut r.mode else {
            return;
        };
        *next_at = now + self.opts.poll_interval;
        let fresh = match take_snapshot(&r.git.repo, &r.path) {
            Ok(s) => s,
            Err(e) => {
                warn!("git status failed in {}: {e}", r.path.display());
                return;
            }
        };
        let root = r.path.clone();
        let changes = diff_snapshots(snapshot, &fresh, |p| stamp(&root.join(p)));
        *snapshot = fresh;
        for (path, kind) in changes {
            self.push(domain, path, kind, false);
        }
    }

    fn flush(&mut self, now: Instant) -> Flow {
        let Engine {
            roots,
            pending,
            tx,
            opts,
            ..
        } = self;
        // Reserve first: while the consumer is behind, nothing is filtered or copied again.
        let permit = match tx.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(())) => {
                let retry =
                    (opts.debounce / 4).clamp(Duration::from_millis(5), Duration::from_millis(50));
                pending.deadline = Some(now + retry);
                return Flow::Continue;
            }
            Err(mpsc::error::TrySendError::Closed(())) => {
                debug!("the watch receiver is gone; stopping the watcher");
                return Flow::Stop;
            }
        };
        for r in roots.values_mut() {
            r.git.index_fresh = false;
            r.gone_dirs.clear();
        }
        let mut batch: Vec<Change> = pending
            .overflow
            .iter()
            .filter(|(d, _)| roots.contains_key(*d))
            .map(|(d, at)| Change {
                domain: d.clone(),
                path: String::new(),
                kind: ChangeKind::Overflow,
                at_ms: *at,
            })
            .collect();
        // An atomic-write temporary created at the end of a window is usually renamed away at
        // the start of the next: hold it back once rather than report it.
        let held: Vec<((String, String), Entry)> = pending
            .entries
            .iter()
            .filter(|((_, path), e)| {
                !e.held && e.kind == ChangeKind::Created && is_atomic_temp(path)
            })
            .map(|(k, e)| {
                let mut e = e.clone();
                e.held = true;
                (k.clone(), e)
            })
            .collect();
        for (k, _) in &held {
            pending.entries.remove(k);
        }
        let mut files: Vec<Change> = pending
            .entries
            .iter()
            .filter_map(|((domain, path), e)| {
                let r = roots.get_mut(domain)?;
                if !r.git.reportable(path, e.maybe_dir) {
                    return None;
                }
                let kind = match &e.kind {
                    ChangeKind::Renamed { from } if !r.git.reportable(from, false) => {
                        ChangeKind::Created
                    }
                    k => k.clone(),
                };
                Some(Change {
                    domain: domain.clone(),
                    path: path.clone(),
                    kind,
                    at_ms: e.at_ms,
                })
            })
            .collect();
        files.sort_by(|a, b| (&a.domain, &a.path).cmp(&(&b.domain, &b.path)));
        batch.extend(files);
        if !batch.is_empty() {
            permit.send(batch);
        }
        pending.clear();
        if !held.is_empty() {
            pending.open_window(now);
            pending.entries.extend(held);
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const WAIT: Duration = Duration::from_secs(5);
    const DEBOUNCE: Duration = Duration::from_millis(50);
    use ChangeKind::{Created, Modified, Overflow, Removed};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    fn notify_opts() -> WatchOptions {
        WatchOptions {
            force_poll: None,
            ..WatchOptions::new(DEBOUNCE)
        }
    }

    fn poll_opts() -> WatchOptions {
        WatchOptions {
            force_poll: Some("test".into()),
            poll_interval: Duration::from_millis(100),
            ..WatchOptions::new(DEBOUNCE)
        }
    }

    fn write(root: &Path, rel: &str, text: &str) {
        fs::write(root.join(rel), text).unwrap();
    }

    /// A repository with one commit (`.gitignore` ignoring `target/` and `*.log`, `src/lib.rs`,
    /// `src/util/mod.rs`, and `keep.log`, tracked though ignored) and one linked worktree per
    /// name. `KEEP_TEMP_DIR=1` keeps the directory.
    struct Fixture {
        tmp: Option<tempfile::TempDir>,
        main: PathBuf,
        wts: Vec<PathBuf>,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            if std::env::var_os("KEEP_TEMP_DIR").is_some()
                && let Some(t) = self.tmp.take()
            {
                eprintln!("kept temp dir {}", t.keep().display());
            }
        }
    }

    fn fixture(names: &[&str]) -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("agent-farm-watch-")
            .tempdir()
            .unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let main = base.join("repo");
        let repo = Repository::init(&main).unwrap();
        fs::create_dir_all(main.join("src/util")).unwrap();
        let files = [
            (".gitignore", "target/\n*.log\n"),
            ("src/lib.rs", "pub fn a() {}\n"),
            ("src/util/mod.rs", "\n"),
            ("keep.log", "tracked though ignored\n"),
        ];
        let mut idx = repo.index().unwrap();
        for (p, text) in files {
            write(&main, p, text);
            idx.add_path(Path::new(p)).unwrap();
        }
        idx.write().unwrap();
        let tree = repo.find_tree(idx.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::new(
            "Farm Tester",
            "tester@example.com",
            &git2::Time::new(1_700_000_000, 0),
        )
        .unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "init", &tree, &[])
            .unwrap();
        let wts = names
            .iter()
            .map(|n| {
                let p = base.join(format!("wt-{n}"));
                repo.worktree(n, &p, None).unwrap();
                p
            })
            .collect();
        Fixture {
            tmp: Some(tmp),
            main,
            wts,
        }
    }

    /// Everything received so far, and bounded waits for more.
    struct Batches {
        rx: mpsc::Receiver<Vec<Change>>,
        seen: Vec<Change>,
        batches: usize,
    }

    impl Batches {
        fn new(rx: mpsc::Receiver<Vec<Change>>) -> Batches {
            Batches {
                rx,
                seen: Vec::new(),
                batches: 0,
            }
        }

        /// Receives until `done` holds for everything seen; panics after [`WAIT`].
        async fn until(&mut self, what: &str, done: impl Fn(&[Change]) -> bool) {
            let deadline = tokio::time::Instant::now() + WAIT;
            while !done(&self.seen) {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(b)) => {
                        assert!(!b.is_empty(), "empty batch");
                        self.batches += 1;
                        self.seen.extend(b);
                    }
                    Ok(None) => panic!("channel closed waiting for {what}; seen {:#?}", self.seen),
                    Err(_) => panic!("timed out waiting for {what}; seen {:#?}", self.seen),
                }
            }
        }
    }

    fn has(seen: &[Change], domain: &str, path: &str, kind: &ChangeKind) -> bool {
        seen.iter()
            .any(|c| c.domain == domain && c.path == path && &c.kind == kind)
    }

    fn renamed(from: &str) -> ChangeKind {
        ChangeKind::Renamed { from: from.into() }
    }

    /// Shared by both modes: the same file operations, the same kinds reported.
    async fn file_kinds(b: &mut Batches, wt: &Path, paired_renames: bool) {
        write(wt, "src/new.rs", "x");
        b.until("create", |s| has(s, "a", "src/new.rs", &Created))
            .await;
        write(wt, "src/lib.rs", "changed");
        b.until("modify", |s| has(s, "a", "src/lib.rs", &Modified))
            .await;
        fs::remove_file(wt.join("src/new.rs")).unwrap();
        b.until("delete", |s| has(s, "a", "src/new.rs", &Removed))
            .await;
        fs::rename(wt.join("src/lib.rs"), wt.join("src/main.rs")).unwrap();
        let new_kind = if paired_renames {
            renamed("src/lib.rs")
        } else {
            Created
        };
        b.until("rename", |s| {
            has(s, "a", "src/lib.rs", &Removed) && has(s, "a", "src/main.rs", &new_kind)
        })
        .await;
        fs::create_dir_all(wt.join("x/y")).unwrap();
        write(wt, "x/y/z.rs", "nested");
        b.until("nested create", |s| has(s, "a", "x/y/z.rs", &Created))
            .await;
        assert!(
            b.seen
                .iter()
                .all(|c| !["", "src", "x", "x/y"].contains(&c.path.as_str())),
            "directories reported: {:#?}",
            b.seen
        );
    }

    #[test]
    fn notify_reports_file_changes() {
        rt().block_on(async {
            let fx = fixture(&["a"]);
            let (tx, rx) = mpsc::channel(16);
            let w = Watcher::with_options(tx, notify_opts());
            assert_eq!(w.add("a", &fx.wts[0]).await.unwrap(), Mode::Notify);
            let mut b = Batches::new(rx);
            file_kinds(&mut b, &fx.wts[0], true).await;
        });
    }

    #[test]
    fn atomic_writes_are_reported_as_their_target_only() {
        rt().block_on(async {
            let fx = fixture(&["a"]);
            let wt = &fx.wts[0];
            let (tx, rx) = mpsc::channel(16);
            let w = Watcher::with_options(tx, notify_opts());
            assert_eq!(w.add("a", wt).await.unwrap(), Mode::Notify);
            let mut b = Batches::new(rx);
            // As Claude Code's Write/Edit does: a temporary beside the target, renamed over it.
            write(wt, "src/lib.rs.tmp.4242.9f3a", "new content");
            fs::rename(wt.join("src/lib.rs.tmp.4242.9f3a"), wt.join("src/lib.rs")).unwrap();
            // (Created or Modified: written in place or renamed into place, it is a change.)
            b.until("the target", |s| {
                has(s, "a", "src/lib.rs", &Modified) || has(s, "a", "src/lib.rs", &Created)
            })
            .await;
            // A temporary whose window closes before it is renamed: held back, then dropped.
            write(wt, "src/new.rs.tmp.4242.0b1c", "fresh");
            write(wt, "src/other.rs", "x");
            b.until("a batch without the temporary", |s| {
                has(s, "a", "src/other.rs", &Created)
            })
            .await;
            fs::rename(wt.join("src/new.rs.tmp.4242.0b1c"), wt.join("src/new.rs")).unwrap();
            b.until("the new file", |s| has(s, "a", "src/new.rs", &Created))
                .await;
            assert!(
                b.seen.iter().all(|c| !c.path.contains(".tmp.")),
                "a temporary was reported: {:#?}",
                b.seen
            );
        });
    }

    #[test]
    fn poll_mode_reports_the_same_kinds() {
        rt().block_on(async {
            let fx = fixture(&["a"]);
            let wt = &fx.wts[0];
            let (tx, rx) = mpsc::channel(16);
            let w = Watcher::with_options(tx, poll_opts());
            let mode = w.add("a", wt).await.unwrap();
            assert_eq!(
                mode,
                Mode::Poll {
                    reason: "polling forced: test".into()
                }
            );
            let mut b = Batches::new(rx);
            file_kinds(&mut b, wt, false).await;
            // Ignored paths, .git, and a tracked-though-ignored file.
            fs::create_dir_all(wt.join("target/debug")).unwrap();
            write(wt, "target/debug/out", "x");
            write(wt, "scratch.log", "x");
            let dotgit = fs::read(wt.join(".git")).unwrap();
            fs::write(wt.join(".git"), dotgit).unwrap();
            write(wt, "keep.log", "changed");
            write(wt, "sentinel", "x");
            b.until("sentinel", |s| {
                has(s, "a", "sentinel", &Created) && has(s, "a", "keep.log", &Modified)
            })
            .await;
            assert!(
                b.seen.iter().all(|c| !c.path.starts_with("target")
                    && !c.path.contains(".git")
                    && c.path != "scratch.log"),
                "ignored paths reported: {:#?}",
                b.seen
            );
        });
    }

    #[test]
    fn notify_new_directories_and_directory_moves() {
        rt().block_on(async {
            let fx = fixture(&["a"]);
            let wt = &fx.wts[0];
            let (tx, rx) = mpsc::channel(16);
            let w = Watcher::with_options(tx, notify_opts());
            assert_eq!(w.add("a", wt).await.unwrap(), Mode::Notify);
            let mut b = Batches::new(rx);
            // Files written right after mkdir, before any watch on the new directories.
            fs::create_dir_all(wt.join("a/b/c")).unwrap();
            write(wt, "a/b/c/deep.rs", "x");
            fs::create_dir(wt.join("d")).unwrap();
            write(wt, "d/f.rs", "x");
            b.until("files in new dirs", |s| {
                has(s, "a", "a/b/c/deep.rs", &Created) && has(s, "a", "d/f.rs", &Created)
            })
            .await;
            write(wt, "a/b/c/later.rs", "x");
            b.until("file in a watched new dir", |s| {
                has(s, "a", "a/b/c/later.rs", &Created)
            })
            .await;
            // A tracked directory moved: its tracked files are gone, the new ones appear, and
            // later writes are attributed to the new path.
            fs::rename(wt.join("src/util"), wt.join("lib2")).unwrap();
            b.until("directory move", |s| {
                has(s, "a", "src/util/mod.rs", &Removed) && has(s, "a", "lib2/mod.rs", &Created)
            })
            .await;
            write(wt, "lib2/more.rs", "x");
            b.until("write in moved dir", |s| {
                has(s, "a", "lib2/more.rs", &Created)
            })
            .await;
            fs::remove_dir_all(wt.join("a")).unwrap();
            b.until("tree removed", |s| {
                has(s, "a", "a/b/c/deep.rs", &Removed) && has(s, "a", "a/b/c/later.rs", &Removed)
            })
            .await;
            let dirs = ["a", "a/b", "a/b/c", "d", "lib2", "src/util"];
            assert!(
                b.seen.iter().all(|c| !dirs.contains(&c.path.as_str())),
                "directories reported: {:#?}",
                b.seen
            );
            assert!(
                !b.seen
                    .iter()
                    .any(|c| c.path.starts_with("src/util/") && c.kind != Removed),
                "{:#?}",
                b.seen
            );
        });
    }

    #[test]
    fn ignored_paths_and_git_are_never_reported() {
        rt().block_on(async {
            let fx = fixture(&["a"]);
            let wt = &fx.wts[0];
            let (tx, rx) = mpsc::channel(16);
            let w = Watcher::with_options(tx, notify_opts());
            // The main worktree has a .git directory, the linked one a .git file.
            assert_eq!(w.add("main", &fx.main).await.unwrap(), Mode::Notify);
            assert_eq!(w.add("a", wt).await.unwrap(), Mode::Notify);
            let mut b = Batches::new(rx);
            for root in [&fx.main, wt] {
                fs::create_dir_all(root.join("target/debug/deps")).unwrap();
                write(root, "target/debug/deps/x", "x");
                write(root, "target/top", "x");
                write(root, "scratch.log", "x");
            }
            write(&fx.main, ".git/scratch", "x");
            let repo = Repository::open(&fx.main).unwrap();
            repo.index().unwrap().write().unwrap();
            let dotgit = fs::read(wt.join(".git")).unwrap();
            fs::write(wt.join(".git"), dotgit).unwrap();
            write(wt, "keep.log", "changed");
            write(&fx.main, "sentinel", "x");
            write(wt, "sentinel", "x");
            b.until("sentinels", |s| {
                has(s, "main", "sentinel", &Created)
                    && has(s, "a", "sentinel", &Created)
                    && has(s, "a", "keep.log", &Modified)
            })
            .await;
            assert!(
                b.seen.iter().all(|c| !c.path.starts_with("target")
                    && !c.path.contains(".git")
                    && c.path != "scratch.log"),
                "ignored paths reported: {:#?}",
                b.seen
            );
        });
    }

    #[test]
    fn gitignore_edits_take_effect() {
        rt().block_on(async {
            let fx = fixture(&["a"]);
            let wt = &fx.wts[0];
            fs::create_dir_all(wt.join("target/debug")).unwrap();
            write(wt, "target/debug/old", "x");
            let (tx, rx) = mpsc::channel(16);
            let w = Watcher::with_options(tx, notify_opts());
            assert_eq!(w.add("a", wt).await.unwrap(), Mode::Notify);
            let mut b = Batches::new(rx);
            // Un-ignored: the directory is watched, and what it holds is visible to git now.
            write(wt, ".gitignore", "*.log\n");
            b.until("un-ignored files", |s| {
                has(s, "a", ".gitignore", &Modified) && has(s, "a", "target/debug/old", &Created)
            })
            .await;
            write(wt, "target/debug/new", "x");
            b.until("write in un-ignored dir", |s| {
                has(s, "a", "target/debug/new", &Created)
            })
            .await;
            // Ignored again: nothing under it is reported.
            write(wt, ".gitignore", "target/\n*.log\n");
            write(wt, "target/debug/newer", "x");
            write(wt, "sentinel", "x");
            b.until("sentinel", |s| has(s, "a", "sentinel", &Created))
                .await;
            assert!(
                !b.seen.iter().any(|c| c.path == "target/debug/newer"),
                "{:#?}",
                b.seen
            );
        });
    }

    #[test]
    fn two_domains_are_attributed_correctly() {
        rt().block_on(async {
            let fx = fixture(&["a", "b"]);
            let (wa, wb) = (&fx.wts[0], &fx.wts[1]);
            let (tx, rx) = mpsc::channel(16);
            let w = Watcher::with_options(tx, notify_opts());
            assert_eq!(w.add("a", wa).await.unwrap(), Mode::Notify);
            assert_eq!(w.add("b", wb).await.unwrap(), Mode::Notify);
            let mut b = Batches::new(rx);
            write(wa, "src/x.rs", "a");
            write(wb, "src/x.rs", "b");
            write(wa, "only_a.rs", "a");
            write(wb, "only_b.rs", "b");
            b.until("both domains", |s| {
                has(s, "a", "src/x.rs", &Created)
                    && has(s, "b", "src/x.rs", &Created)
                    && has(s, "a", "only_a.rs", &Created)
                    && has(s, "b", "only_b.rs", &Created)
            })
            .await;
            // A move across worktrees cannot be a rename of one domain.
            fs::rename(wa.join("only_a.rs"), wb.join("from_a.rs")).unwrap();
            b.until("cross move", |s| {
                has(s, "a", "only_a.rs", &Removed) && has(s, "b", "from_a.rs", &Created)
            })
            .await;
            let wrong = b.seen.iter().find(|c| {
                (c.domain == "a" && (c.path == "only_b.rs" || c.path == "from_a.rs"))
                    || (c.domain == "b" && c.path == "only_a.rs")
            });
            assert!(wrong.is_none(), "misattributed: {wrong:?}");
        });
    }

    #[test]
    fn remove_all_resolves_once_nothing_is_watched() {
        rt().block_on(async {
            let fx = fixture(&["a", "b", "c"]);
            let (tx, rx) = mpsc::channel(16);
            let w = Watcher::with_options(tx, notify_opts());
            for (d, wt) in ["a", "b"].iter().zip(&fx.wts) {
                assert_eq!(w.add(d, wt).await.unwrap(), Mode::Notify);
            }
            let mut b = Batches::new(rx);
            write(&fx.wts[1], "one.rs", "x");
            b.until("b watched", |s| has(s, "b", "one.rs", &Created))
                .await;
            w.remove_all().await;
            assert_eq!(w.add("c", &fx.wts[2]).await.unwrap(), Mode::Notify);
            let before = b.seen.len();
            // Deleting the unwatched worktrees is invisible to the watcher.
            std::fs::remove_dir_all(&fx.wts[0]).unwrap();
            std::fs::remove_dir_all(&fx.wts[1]).unwrap();
            // Events are handled in order: a report of the deletions would come no later.
            write(&fx.wts[2], "sentinel", "x");
            b.until("c watched", |s| has(s, "c", "sentinel", &Created))
                .await;
            let leaked: Vec<_> = b.seen[before..]
                .iter()
                .filter(|c| c.domain != "c")
                .collect();
            assert!(leaked.is_empty(), "reported after remove_all: {leaked:#?}");
        });
    }

    #[test]
    fn remove_stops_reports_and_drop_stops_the_thread() {
        rt().block_on(async {
            let fx = fixture(&["a", "b"]);
            let (wa, wb) = (&fx.wts[0], &fx.wts[1]);
            let (tx, rx) = mpsc::channel(16);
            let w = Watcher::with_options(tx, notify_opts());
            assert_eq!(w.add("a", wa).await.unwrap(), Mode::Notify);
            assert_eq!(w.add("b", wb).await.unwrap(), Mode::Notify);
            let mut b = Batches::new(rx);
            write(wa, "one.rs", "x");
            b.until("a watched", |s| has(s, "a", "one.rs", &Created))
                .await;
            w.remove("a");
            w.remove("a");
            let before = b.seen.len();
            write(wa, "two.rs", "x");
            // Events are handled in order: a report of two.rs would come no later than this.
            write(wb, "sentinel", "x");
            b.until("b still watched", |s| has(s, "b", "sentinel", &Created))
                .await;
            let leaked: Vec<_> = b.seen[before..]
                .iter()
                .filter(|c| c.domain == "a")
                .collect();
            assert!(leaked.is_empty(), "reported after remove: {leaked:#?}");
            // Watching again works.
            assert_eq!(w.add("a", wa).await.unwrap(), Mode::Notify);
            write(wa, "three.rs", "x");
            b.until("a watched again", |s| has(s, "a", "three.rs", &Created))
                .await;
            drop(w);
            let closed = tokio::time::timeout(WAIT, b.rx.recv()).await.unwrap();
            assert!(closed.is_none(), "channel still open after drop");
        });
    }

    #[test]
    fn add_errors() {
        rt().block_on(async {
            let fx = fixture(&["a"]);
            let (tx, _rx) = mpsc::channel(16);
            let w = Watcher::with_options(tx, notify_opts());
            w.add("a", &fx.wts[0]).await.unwrap();
            let err = w.add("b", &fx.wts[0]).await.unwrap_err();
            assert!(matches!(err, WatchError::RootInUse { ref other, .. } if other == "a"));
            let missing = fx.main.with_file_name("missing");
            let err = w.add("c", &missing).await.unwrap_err();
            assert!(matches!(err, WatchError::Resolve { .. }), "{err}");
            let err = w.add("d", &fx.wts[0].join("src")).await.unwrap_err();
            assert!(matches!(err, WatchError::RootInUse { .. }), "{err}");
            let plain = tempfile::tempdir().unwrap();
            let err = w.add("e", plain.path()).await.unwrap_err();
            assert!(matches!(err, WatchError::OpenRepo { .. }), "{err}");
            let bare = tempfile::tempdir().unwrap();
            Repository::init_bare(bare.path()).unwrap();
            let err = w.add("f", bare.path()).await.unwrap_err();
            assert!(err.to_string().contains("bare repository"), "{err}");
        });
    }

    #[test]
    fn watch_limit_falls_back_to_polling() {
        rt().block_on(async {
            let fx = fixture(&["a", "b"]);
            let (wa, wb) = (&fx.wts[0], &fx.wts[1]);
            let (tx, rx) = mpsc::channel(16);
            let opts = WatchOptions {
                watch_budget: Some(3),
                poll_interval: Duration::from_millis(100),
                ..notify_opts()
            };
            let w = Watcher::with_options(tx, opts);
            // `a` takes the whole budget (root, src, src/util); `b` would need three more.
            assert_eq!(w.add("a", wa).await.unwrap(), Mode::Notify);
            let mode = w.add("b", wb).await.unwrap();
            assert!(
                matches!(&mode, Mode::Poll { reason } if reason.contains("budget of 3")),
                "{mode:?}"
            );
            let mut b = Batches::new(rx);
            write(wb, "polled.rs", "x");
            b.until("b polled", |s| has(s, "b", "polled.rs", &Created))
                .await;
            // A new directory in `a` cannot be watched: `a` is polled from then on, and the
            // consumer is told to rescan it.
            fs::create_dir(wa.join("n")).unwrap();
            write(wa, "n/f.rs", "x");
            b.until("a overflow", |s| has(s, "a", "", &Overflow)).await;
            write(wa, "after.rs", "x");
            b.until("a polled", |s| has(s, "a", "after.rs", &Created))
                .await;
        });
    }

    #[test]
    fn limit_errors_are_recognised() {
        assert!(is_limit(&notify::Error::new(
            notify::ErrorKind::MaxFilesWatch
        )));
        let enospc = std::io::Error::from_raw_os_error(nix::errno::Errno::ENOSPC as i32);
        assert!(is_limit(&notify::Error::io(enospc)));
        assert!(!is_limit(&notify::Error::path_not_found()));
        if Path::new("/proc/sys/fs/inotify/max_user_watches").exists() {
            let r = limit_reason();
            assert!(
                r.starts_with("inotify watch limit reached (fs.inotify.max_user_watches="),
                "{r}"
            );
        }
    }

    #[test]
    fn full_channel_loses_nothing() {
        rt().block_on(async {
            let fx = fixture(&["a"]);
            let wt = &fx.wts[0];
            let (tx, rx) = mpsc::channel(1);
            let w = Watcher::with_options(tx.clone(), notify_opts());
            assert_eq!(w.add("a", wt).await.unwrap(), Mode::Notify);
            // The consumer is busy: the channel is full while these are written.
            tx.send(Vec::new()).await.unwrap();
            for i in 0..20 {
                write(wt, &format!("f{i}.rs"), "x");
            }
            let mut b = Batches::new(rx);
            assert_eq!(b.rx.recv().await.unwrap(), Vec::new());
            b.until("all files", |s| {
                (0..20).all(|i| has(s, "a", &format!("f{i}.rs"), &Created))
            })
            .await;
        });
    }

    #[test]
    fn too_many_pending_paths_become_one_overflow_marker() {
        rt().block_on(async {
            let fx = fixture(&["a"]);
            let wt = &fx.wts[0];
            let (tx, rx) = mpsc::channel(16);
            let opts = WatchOptions {
                max_pending: 5,
                debounce: Duration::from_millis(300),
                ..notify_opts()
            };
            let w = Watcher::with_options(tx, opts);
            assert_eq!(w.add("a", wt).await.unwrap(), Mode::Notify);
            let mut b = Batches::new(rx);
            for i in 0..20 {
                write(wt, &format!("f{i}.rs"), "x");
            }
            b.until("overflow", |s| has(s, "a", "", &Overflow)).await;
            let markers = b.seen.iter().filter(|c| c.kind == Overflow).count();
            assert_eq!(markers, 1, "{:#?}", b.seen);
        });
    }

    #[test]
    fn atomic_write_temporaries_are_recognised() {
        assert!(is_atomic_temp("src/lib.rs.tmp.4242.9f3a"));
        assert!(is_atomic_temp("README.tmp.1.abc"));
        assert!(!is_atomic_temp("src/lib.rs"));
        assert!(!is_atomic_temp("notes.tmp"));
        assert!(!is_atomic_temp("a.tmp.x.y"));
        assert!(!is_atomic_temp(".tmp.1.a"));
    }

    #[test]
    fn an_atomic_write_is_a_change_of_its_target_only() {
        // Claude Code writes FILE.tmp.<pid>.<hex> and renames it over FILE.
        let t = Instant::now();
        let mut p = Pending::new(DEBOUNCE, 100);
        let kind = |p: &Pending, f: &str| {
            p.entries
                .get(&("a".to_owned(), f.to_owned()))
                .map(|e| e.kind.clone())
        };
        let tmp = "src/lib.rs.tmp.4242.9f3a";
        p.push("a", tmp.into(), Created, false, 1, t);
        p.push("a", tmp.into(), Modified, false, 2, t);
        // Both orders of the rename's two halves.
        p.push("a", "src/lib.rs".into(), Created, false, 3, t);
        p.renamed("a", "src/lib.rs", tmp);
        p.push("a", tmp.into(), Removed, false, 3, t);
        assert_eq!(kind(&p, tmp), None);
        assert_eq!(kind(&p, "src/lib.rs"), Some(Modified));
        let tmp2 = "src/new.rs.tmp.4242.0b1c";
        p.push("a", tmp2.into(), Created, false, 4, t);
        p.push("a", tmp2.into(), Removed, false, 5, t);
        p.push("a", "src/new.rs".into(), Created, false, 5, t);
        p.renamed("a", "src/new.rs", tmp2);
        assert_eq!(kind(&p, tmp2), None);
        assert_eq!(
            kind(&p, "src/new.rs"),
            Some(Created),
            "a new file, not a rename"
        );
        // A file that existed before and is deleted is still a deletion.
        p.push("a", "src/old.rs".into(), Removed, false, 6, t);
        assert_eq!(kind(&p, "src/old.rs"), Some(Removed));
    }

    #[test]
    fn pending_merges_and_caps() {
        let t = Instant::now();
        let mut p = Pending::new(DEBOUNCE, 3);
        let kind = |p: &Pending, d: &str, f: &str| {
            p.entries
                .get(&(d.to_owned(), f.to_owned()))
                .map(|e| e.kind.clone())
        };
        p.push("a", "x".into(), Created, false, 1, t);
        p.push("a", "x".into(), Modified, false, 2, t + DEBOUNCE);
        assert_eq!(kind(&p, "a", "x"), Some(Created));
        assert_eq!(p.entries[&("a".to_owned(), "x".to_owned())].at_ms, 2);
        assert_eq!(
            p.deadline,
            Some(t + DEBOUNCE),
            "later changes do not extend the window"
        );
        p.push("a", "y".into(), Created, false, 3, t);
        p.renamed("a", "y", "old");
        p.push("a", "y".into(), Modified, false, 4, t);
        assert_eq!(kind(&p, "a", "y"), Some(renamed("old")));
        p.push("a", "y".into(), Removed, false, 5, t);
        assert_eq!(
            kind(&p, "a", "y"),
            None,
            "appeared and went in one window: no change"
        );
        p.push("a", "x".into(), Removed, false, 6, t);
        p.push("a", "x".into(), Created, false, 7, t);
        assert_eq!(kind(&p, "a", "x"), Some(Created));
        // Full at 3 paths (x, z, w; y came and went): the next distinct path turns every
        // pending domain into a marker.
        p.push("b", "z".into(), Modified, false, 8, t);
        p.push("b", "w".into(), Modified, false, 9, t);
        p.push("b", "v".into(), Modified, false, 9, t);
        assert!(p.entries.is_empty());
        assert_eq!(p.overflow.keys().collect::<Vec<_>>(), ["a", "b"]);
        p.push("a", "q".into(), Created, false, 10, t);
        assert!(
            p.entries.is_empty(),
            "an overflowed domain is rescanned anyway"
        );
        p.push("c", "q".into(), Created, false, 11, t);
        assert_eq!(kind(&p, "c", "q"), Some(Created));
        p.drop_domain("a");
        assert_eq!(p.overflow.keys().collect::<Vec<_>>(), ["b"]);
        p.clear();
        assert!(p.deadline.is_none() && p.overflow.is_empty() && p.entries.is_empty());
    }

    #[test]
    fn snapshot_differences() {
        let st = |size| Some(Stamp { mtime: None, size });
        let dirty = |new, stamp| Dirty { new, stamp };
        let old: Snapshot = [
            ("kept", dirty(false, st(1))),
            ("rewritten", dirty(false, st(1))),
            ("deleted_untracked", dirty(true, st(1))),
            ("committed", dirty(true, st(1))),
            ("reverted", dirty(false, st(1))),
            ("restored", dirty(false, None)),
            ("recreated", dirty(false, None)),
        ]
        .into_iter()
        .map(|(p, d)| (p.to_owned(), d))
        .collect();
        let new: Snapshot = [
            ("kept", dirty(false, st(1))),
            ("rewritten", dirty(false, st(2))),
            ("recreated", dirty(false, st(3))),
            ("untracked", dirty(true, st(1))),
            ("edited", dirty(false, st(1))),
            ("tracked_deleted", dirty(false, None)),
        ]
        .into_iter()
        .map(|(p, d)| (p.to_owned(), d))
        .collect();
        // Paths clean now: "committed" kept its stamp, "reverted" changed, "restored" is back.
        let now = |p: &str| match p {
            "committed" => st(1),
            "reverted" => st(5),
            "restored" => st(1),
            _ => None,
        };
        let got = diff_snapshots(&old, &new, now);
        let want: Vec<(String, ChangeKind)> = [
            ("deleted_untracked", Removed),
            ("edited", Modified),
            ("recreated", Created),
            ("restored", Created),
            ("reverted", Modified),
            ("rewritten", Modified),
            ("tracked_deleted", Removed),
            ("untracked", Created),
        ]
        .into_iter()
        .map(|(p, k)| (p.to_owned(), k))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn paths() {
        assert!(skip_rel(""));
        assert!(skip_rel(".git"));
        assert!(skip_rel(".git/index"));
        assert!(skip_rel("vendor/x/.git/HEAD"));
        assert!(!skip_rel(".gitignore"));
        assert!(!skip_rel("src/git/mod.rs"));
        let root = Path::new("/w/t");
        assert_eq!(
            rel_path(root, Path::new("/w/t/a/b.rs")).as_deref(),
            Some("a/b.rs")
        );
        assert_eq!(rel_path(root, Path::new("/w/t")).as_deref(), Some(""));
        assert_eq!(rel_path(root, Path::new("/w/other")), None);
    }

    /// Write to batch in notify mode with the default-like 100 ms window; prints the median.
    #[test]
    fn notify_latency() {
        rt().block_on(async {
            let fx = fixture(&["a"]);
            let wt = &fx.wts[0];
            let debounce = Duration::from_millis(100);
            let (tx, rx) = mpsc::channel(16);
            let opts = WatchOptions {
                debounce,
                ..notify_opts()
            };
            let w = Watcher::with_options(tx, opts);
            assert_eq!(w.add("a", wt).await.unwrap(), Mode::Notify);
            let mut b = Batches::new(rx);
            let mut lat = Vec::new();
            for i in 0..7 {
                let name = format!("lat{i}.rs");
                let t = Instant::now();
                write(wt, &name, "x");
                b.until("latency write", |s| has(s, "a", &name, &Created))
                    .await;
                lat.push(t.elapsed());
            }
            lat.sort();
            let median = lat[lat.len() / 2];
            eprintln!("notify latency with a {debounce:?} window: median {median:?}, all {lat:?}");
            assert!(median < debounce + Duration::from_millis(150), "{lat:?}");
        });
    }
}
