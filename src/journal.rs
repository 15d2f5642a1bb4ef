//! The intent journal: every effect that changes git or the user's files is written here, durably,
//! before it starts (`begin`) and again when it ends (`end`). After a SIGKILL at any instant,
//! recovery reads the journal and finds each effect that began and never ended; the effect's own
//! record says exactly what may be half done (which lock, which admin dir, which checkout paths),
//! and [`crate::recover`] finishes or undoes it.
//!
//! `<run-dir>/journal.jsonl`, one JSON object per line, appended by every process that drives the
//! run (run, resume, merge, clean); ids are unique across them (`<pid>.<n>`). A line cut short by
//! a crash is ignored: its effect had not started (the line is synced before the effect starts).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// One effect, described with everything recovery needs to finish or undo it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Create a branch of the run (`refs/heads/farm/<run>/…`).
    CreateBranch { branch: String, at: String },
    /// Add a linked worktree (a domain's, on `branch`; or verify's, detached at `commit`).
    AddWorktree {
        admin: String,
        path: PathBuf,
        branch: Option<String>,
        commit: Option<String>,
    },
    /// Remove a linked worktree: its directory and git's entry.
    RemoveWorktree { admin: String, path: PathBuf },
    /// Commit what a domain's worktree holds onto its branch; after an agent attempt, which
    /// attempt it was and how it ended (so that a crash right after a successful agent does
    /// not run it again).
    Commit {
        domain: String,
        path: PathBuf,
        #[serde(default)]
        attempt: Option<u32>,
        #[serde(default)]
        agent_succeeded: Option<bool>,
    },
    /// Move a branch of the run (a merge into the integration branch, a reset).
    MoveBranch {
        branch: String,
        old: Option<String>,
        new: String,
    },
    /// Delete refs of the run.
    DeleteRefs { refs: Vec<String> },
    /// Land the result: move the user's branch `into` from `old` to `new`, and update its
    /// checkout (if it has one) from `old`'s tree to `new`'s on exactly `paths`.
    Land {
        into: String,
        old: Option<String>,
        new: String,
        /// The checkout of `into`: its working directory and its git dir (for the index).
        checkout: Option<Checkout>,
        /// The files whose inodes prove which lock files are ours (see [`crate::txn`]).
        ref_stage: PathBuf,
        index_stage: PathBuf,
        paths: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    pub workdir: PathBuf,
    pub git_dir: PathBuf,
}

impl Effect {
    /// A short name, for messages.
    pub fn describe(&self) -> String {
        match self {
            Effect::CreateBranch { branch, .. } => format!("create branch {branch}"),
            Effect::AddWorktree { path, .. } => format!("add worktree {}", path.display()),
            Effect::RemoveWorktree { path, .. } => format!("remove worktree {}", path.display()),
            Effect::Commit { domain, .. } => format!("commit the work of `{domain}`"),
            Effect::MoveBranch { branch, .. } => format!("move branch {branch}"),
            Effect::DeleteRefs { refs } => format!("delete {}", refs.join(", ")),
            Effect::Land { into, .. } => format!("land on `{into}`"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Begin {
        id: String,
        at_ms: u64,
        #[serde(flatten)]
        effect: Effect,
    },
    End {
        id: String,
        at_ms: u64,
        outcome: String,
    },
}

/// An effect that began and did not end (as far as the journal knows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenIntent {
    pub id: String,
    pub at_ms: u64,
    pub effect: Effect,
}

/// Ids are `<token>.<n>`: a token drawn once per process (a pid is no identity: in a container
/// agent-farm is pid 1 every time) and a counter shared by every journal of the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// This process's token, unique across processes and boots (pid, start time, randomness).
pub fn process_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        format!("{}-{:016x}", std::process::id(), h.finish())
    })
}

/// Whether an intent was begun by this process.
pub fn is_mine(intent: &OpenIntent) -> bool {
    intent.id.rsplit_once('.').map(|(t, _)| t) == Some(process_token())
}

/// The journal of one run, shared by the threads of one process.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Journal {
    pub fn path_in(run_dir: &Path) -> PathBuf {
        run_dir.join("journal.jsonl")
    }

    /// The journal of the run whose directory is `run_dir` (created on first write).
    pub fn new(run_dir: &Path) -> Journal {
        Journal {
            path: Self::path_in(run_dir),
            file: Mutex::new(None),
        }
    }

    fn append(&self, line: &Line) -> std::io::Result<()> {
        let mut text = serde_json::to_string(line).map_err(std::io::Error::other)?;
        text.push('\n');
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let existed = self.path.exists();
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            // A line torn by a kill is ended first, so that it never glues onto the next one.
            if ends_mid_line(&self.path) {
                f.write_all(b"\n")?;
            }
            if !existed && let Some(dir) = self.path.parent() {
                // The new file's name must survive a power cut too, not only its lines.
                std::fs::File::open(dir)?.sync_all()?;
            }
            *guard = Some(f);
        }
        let f = guard
            .as_mut()
            .ok_or_else(|| std::io::Error::other("journal closed"))?;
        f.write_all(text.as_bytes())?;
        f.sync_data()
    }

    /// Write the intent durably; the effect may start once this returns `Ok`.
    pub fn begin(&self, effect: Effect) -> std::io::Result<Intent<'_>> {
        let id = format!(
            "{}.{}",
            process_token(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        self.append(&Line::Begin {
            id: id.clone(),
            at_ms: now_ms(),
            effect,
        })?;
        Ok(Intent { journal: self, id })
    }

    /// Close an intent found open by [`open_intents`] (recovery finished or undid it).
    pub fn end_recovered(&self, id: &str, outcome: &str) -> std::io::Result<()> {
        self.append(&Line::End {
            id: id.to_string(),
            at_ms: now_ms(),
            outcome: outcome.to_string(),
        })
    }
}

/// An effect in progress. Ending it records the outcome; dropping it without [`Intent::end`]
/// (a panic, an early return) leaves it open, so recovery will look at it.
#[derive(Debug)]
pub struct Intent<'a> {
    journal: &'a Journal,
    id: String,
}

impl Intent<'_> {
    pub fn end(self, outcome: &str) {
        if let Err(e) = self.journal.append(&Line::End {
            id: self.id.clone(),
            at_ms: now_ms(),
            outcome: outcome.to_string(),
        }) {
            // Not fatal: recovery re-examines an intent it finds open, and every recovery is
            // idempotent.
            tracing::warn!("cannot record the end of an effect in the journal: {e}");
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Whether the file at `path` ends in the middle of a line (a line a kill tore), reading only
/// its last byte. For every append-only line file: the journal, `events.jsonl`, reflogs.
pub fn ends_mid_line(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut last = [0u8; 1];
    len > 0
        && f.seek(SeekFrom::Start(len - 1)).is_ok()
        && f.read_exact(&mut last).is_ok()
        && last[0] != b'\n'
}

/// Every effect the journal records as begun, oldest first, with its outcome if it ended.
pub fn entries(run_dir: &Path) -> Vec<(OpenIntent, Option<String>)> {
    let Ok(text) = std::fs::read_to_string(Journal::path_in(run_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<(OpenIntent, Option<String>)> = Vec::new();
    for line in text.lines() {
        match serde_json::from_str::<Line>(line) {
            Ok(Line::Begin { id, at_ms, effect }) => {
                out.push((OpenIntent { id, at_ms, effect }, None))
            }
            Ok(Line::End { id, outcome, .. }) => {
                if let Some(e) = out.iter_mut().find(|(o, _)| o.id == id) {
                    e.1 = Some(outcome);
                }
            }
            Err(_) => {}
        }
    }
    out
}

/// The intents in `run_dir`'s journal that began and never ended, oldest first.
pub fn open_intents(run_dir: &Path) -> Vec<OpenIntent> {
    let Ok(text) = std::fs::read_to_string(Journal::path_in(run_dir)) else {
        return Vec::new();
    };
    let mut open: Vec<OpenIntent> = Vec::new();
    for line in text.lines() {
        match serde_json::from_str::<Line>(line) {
            Ok(Line::Begin { id, at_ms, effect }) => open.push(OpenIntent { id, at_ms, effect }),
            Ok(Line::End { id, .. }) => open.retain(|o| o.id != id),
            // A line cut short by a crash: its effect never started.
            Err(_) => {}
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intent_stays_open_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path());
        let a = j
            .begin(Effect::CreateBranch {
                branch: "farm/r/x".into(),
                at: "abc".into(),
            })
            .unwrap();
        let b = j
            .begin(Effect::RemoveWorktree {
                admin: "farm-r-x".into(),
                path: "/tmp/x".into(),
            })
            .unwrap();
        a.end("ok");
        let open = open_intents(dir.path());
        assert_eq!(open.len(), 1);
        assert!(matches!(open[0].effect, Effect::RemoveWorktree { .. }));
        // A second process appending to the same journal gets its own ids.
        let j2 = Journal::new(dir.path());
        j2.end_recovered(&open[0].id, "finished").unwrap();
        drop(b);
        assert!(open_intents(dir.path()).is_empty());
    }

    #[test]
    fn ids_never_repeat_and_another_process_is_never_taken_for_this_one() {
        let dir = tempfile::tempdir().unwrap();
        // Two journals of one process (resume makes several): distinct ids.
        let a = Journal::new(dir.path())
            .begin(Effect::DeleteRefs { refs: vec![] })
            .map(|i| i.id().to_string())
            .unwrap();
        let b = Journal::new(dir.path())
            .begin(Effect::DeleteRefs { refs: vec![] })
            .map(|i| i.id().to_string())
            .unwrap();
        assert_ne!(a, b);
        // A dead process with the same pid (a container's pid 1) but another token.
        let pid = std::process::id();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(Journal::path_in(dir.path()))
            .unwrap();
        writeln!(
            f,
            r#"{{"kind":"begin","id":"{pid}-00000000deadbeef.1","at_ms":1,"effect":"delete_refs","refs":[]}}"#
        )
        .unwrap();
        let open = open_intents(dir.path());
        let theirs: Vec<_> = open.iter().filter(|i| !is_mine(i)).collect();
        assert_eq!(theirs.len(), 1, "{open:?}");
        assert_eq!(open.iter().filter(|i| is_mine(i)).count(), 2);
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path());
        j.begin(Effect::DeleteRefs {
            refs: vec!["refs/heads/farm/r/a".into()],
        })
        .unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(Journal::path_in(dir.path()))
            .unwrap();
        f.write_all(br#"{"kind":"begin","id":"9.9","at_ms":1,"effect":"cre"#)
            .unwrap();
        let open = open_intents(dir.path());
        assert_eq!(open.len(), 1);
        assert!(matches!(open[0].effect, Effect::DeleteRefs { .. }));
        // The next process's lines do not glue onto the torn one.
        let j2 = Journal::new(dir.path());
        j2.end_recovered(&open[0].id, "done").unwrap();
        assert!(open_intents(dir.path()).is_empty());
    }
}
