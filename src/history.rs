//! The run history: the recorded runs of a repository, summarized (`agent-farm runs`), and
//! pruning old records (`agent-farm runs prune`) without ever dropping work that is not merged.
//!
//! A run's record is only removed when git holds nothing of the run any more: no branch
//! `farm/<run>/…`, no hidden ref `refs/farm/<run>/…`, no worktree (entry or directory), no
//! effect half done (an open intent in its journal, landing stage files), and its driver is not
//! running. Anything else is kept, and the reason said: `agent-farm clean`, `merge` or `resume`
//! are the commands that deal with what is kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::record::{Phase, RunPaths, RunRecord};

/// The schema version of `runs --json`.
pub const RUNS_JSON_VERSION: u32 = 1;

/// One line of `agent-farm runs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    /// Start, milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// Start, RFC 3339 (UTC, seconds).
    pub started: String,
    /// The plan file the run was started from.
    pub plan: String,
    /// succeeded, not_landed, domains_failed, conflict, verify_failed, interrupted, running, or
    /// stopped (its driver died before it finished: `agent-farm resume` continues it).
    pub status: String,
    /// The phase the record is in.
    pub phase: Phase,
    /// Whether the result landed on `into` (`None`: no landing was tried).
    pub landed: Option<bool>,
    /// The run's exit code, once finished.
    pub exit_code: Option<i32>,
    /// Time the farm was running (every invocation that drove it).
    pub duration_ms: u64,
    pub cost_usd: f64,
    pub domains: usize,
}

/// The status word for a record: by its exit code once finished, else running or stopped.
pub fn status_word(rec: &RunRecord, driver_alive: bool) -> &'static str {
    match rec.phase {
        Phase::Interrupted => "interrupted",
        Phase::Finished => match rec.exit_code.unwrap_or(crate::report::exit_code(rec)) {
            0 => "succeeded",
            crate::error::exit::NOT_LANDED => "not_landed",
            crate::error::exit::DOMAINS_FAILED => "domains_failed",
            crate::error::exit::CONFLICT => "conflict",
            crate::error::exit::VERIFY_FAILED => "verify_failed",
            crate::error::exit::INTERRUPTED => "interrupted",
            _ => "failed",
        },
        _ if driver_alive => "running",
        _ => "stopped",
    }
}

pub fn summarize(rec: &RunRecord, now_ms: u64, driver_alive: bool) -> RunSummary {
    let report = crate::report::build(rec, now_ms);
    let started = std::time::UNIX_EPOCH + Duration::from_millis(rec.started_ms);
    let plan = rec
        .plan
        .source
        .strip_prefix(&rec.repo)
        .unwrap_or(&rec.plan.source)
        .display()
        .to_string();
    RunSummary {
        run_id: rec.run_id.clone(),
        started_ms: rec.started_ms,
        started: humantime::format_rfc3339_seconds(started).to_string(),
        plan,
        status: status_word(rec, driver_alive).to_string(),
        phase: rec.phase,
        landed: report.landed,
        exit_code: matches!(rec.phase, Phase::Finished | Phase::Interrupted)
            .then_some(report.exit_code),
        duration_ms: report.metrics.wall_ms,
        cost_usd: report.metrics.total_cost_usd,
        domains: rec.domains.len(),
    }
}

/// Whether the process that drove `rec` is still alive (and is not this one).
pub fn driver_alive(rec: &RunRecord) -> bool {
    !matches!(rec.phase, Phase::Finished | Phase::Interrupted)
        && rec.pid != std::process::id()
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(rec.pid as i32), None).is_ok()
}

/// Every recorded run, oldest first: its id and its record (or why it cannot be read).
pub fn runs(common_dir: &Path) -> Vec<(String, Result<RunRecord, String>)> {
    crate::record::list_runs(common_dir)
        .into_iter()
        .map(|id| {
            let rec = RunRecord::load(&RunPaths::new(common_dir, &id).record())
                .map_err(|e| e.to_string());
            (id, rec)
        })
        .collect()
}

/// Which runs `prune` considers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// All but the N most recent.
    KeepNewest(usize),
    /// Those started longer ago than this.
    OlderThan(Duration),
}

/// The runs a rule selects for pruning, oldest first, from `(id, started_ms)` pairs. Pure.
pub fn select(runs: &[(String, u64)], rule: Rule, now_ms: u64) -> Vec<String> {
    let mut sorted: Vec<&(String, u64)> = runs.iter().collect();
    sorted.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    match rule {
        Rule::KeepNewest(n) => {
            let cut = sorted.len().saturating_sub(n);
            sorted[..cut].iter().map(|r| r.0.clone()).collect()
        }
        Rule::OlderThan(age) => {
            let limit = now_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
            sorted
                .iter()
                .filter(|r| r.1 < limit)
                .map(|r| r.0.clone())
                .collect()
        }
    }
}

/// What git (and the run's own files) still hold of a run that is not merged or not finished;
/// empty when its record can go. `worktree_root` is the record's, when it could be read.
pub fn still_held(
    repo_dir: &Path,
    common_dir: &Path,
    run_id: &str,
    worktree_root: Option<&Path>,
) -> Vec<String> {
    let names = crate::names::RunNames::new(run_id);
    let mut out = Vec::new();
    match crate::git::open(repo_dir) {
        Ok(repo) => {
            let prefix = names.branch_prefix();
            match crate::git::branches_with_prefix(&repo, &prefix) {
                Ok(bs) => out.extend(bs.into_iter().map(|b| format!("branch {b}"))),
                Err(e) => out.push(format!("cannot list its branches: {e}")),
            }
            match repo.references_glob(&format!("{}*", names.hidden_prefix())) {
                Ok(refs) => out.extend(
                    refs.flatten()
                        .filter_map(|r| r.name().ok().map(|n| format!("ref {n}"))),
                ),
                Err(e) => out.push(format!("cannot list its refs: {e}")),
            }
        }
        Err(e) => out.push(format!("cannot check what git holds of it: {e}")),
    }
    for e in std::fs::read_dir(common_dir.join("worktrees"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&names.admin_prefix()) {
            out.push(format!("worktree entry {name}"));
        }
    }
    if let Some(root) = worktree_root {
        let dir = names.worktrees_dir(root);
        if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
            out.push(format!("worktree directory {}", dir.display()));
        }
    }
    let paths = RunPaths::new(common_dir, run_id);
    if !crate::journal::open_intents(&paths.dir).is_empty() {
        out.push("effects half done (its journal has open intents; `agent-farm resume` or `clean` finishes them)".into());
    }
    let stages = crate::txn::Stages::dir(common_dir, run_id);
    if std::fs::read_dir(&stages).is_ok_and(|mut d| d.next().is_some()) {
        out.push(format!(
            "a landing half done (stage files in {})",
            stages.display()
        ));
    }
    out
}

/// One run `prune` looked at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pruned {
    pub run_id: String,
    /// Removed (or, with `dry_run`, would be).
    pub removed: bool,
    /// Why it was kept.
    pub reasons: Vec<String>,
}

/// Remove the records of the runs `rule` selects whose work git no longer holds; the others
/// are kept with their reasons. With `dry_run` nothing is removed.
pub fn prune(
    repo_dir: &Path,
    common_dir: &Path,
    rule: Rule,
    dry_run: bool,
    now_ms: u64,
) -> Vec<Pruned> {
    let all = runs(common_dir);
    let started: Vec<(String, u64)> = all
        .iter()
        .map(|(id, rec)| {
            let t = rec
                .as_ref()
                .map(|r| r.started_ms)
                .unwrap_or_else(|_| started_from_id(id).unwrap_or(0));
            (id.clone(), t)
        })
        .collect();
    let mut out = Vec::new();
    for id in select(&started, rule, now_ms) {
        let rec = all
            .iter()
            .find(|(i, _)| *i == id)
            .and_then(|(_, r)| r.as_ref().ok());
        let paths = RunPaths::new(common_dir, &id);
        // Held while the record goes: no resume or merge of it can start meanwhile.
        let lock = match crate::lock::RunLock::acquire(&paths.lock(), &id) {
            Ok(l) => l,
            Err(e) => {
                out.push(Pruned {
                    run_id: id,
                    removed: false,
                    reasons: vec![format!("still running ({e})")],
                });
                continue;
            }
        };
        let root: Option<PathBuf> = rec.map(|r| r.worktree_root.clone());
        let mut reasons = still_held(repo_dir, common_dir, &id, root.as_deref());
        if rec.is_some_and(driver_alive) {
            reasons.push(format!(
                "its driver (pid {}) is alive",
                rec.map(|r| r.pid).unwrap_or_default()
            ));
        }
        if !reasons.is_empty() || dry_run {
            drop(lock);
            out.push(Pruned {
                run_id: id,
                removed: reasons.is_empty(),
                reasons,
            });
            continue;
        }
        let removed = std::fs::remove_dir_all(&paths.dir);
        drop(lock);
        crate::txn::Stages::remove_dir(common_dir, &id);
        match removed {
            Ok(()) => out.push(Pruned {
                run_id: id,
                removed: true,
                reasons: Vec::new(),
            }),
            Err(e) => out.push(Pruned {
                run_id: id,
                removed: false,
                reasons: vec![format!("cannot remove {}: {e}", paths.dir.display())],
            }),
        }
    }
    out
}

/// A run id is `YYYYMMDD-HHMMSS-xxxx` (UTC): its start, for a record that cannot be read.
fn started_from_id(id: &str) -> Option<u64> {
    let stamp = id.get(..15)?;
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}Z",
        stamp.get(0..4)?,
        stamp.get(4..6)?,
        stamp.get(6..8)?,
        stamp.get(9..11)?,
        stamp.get(11..13)?,
        stamp.get(13..15)?
    );
    let t = humantime::parse_rfc3339(&rfc).ok()?;
    u64::try_from(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        list.iter().map(|(i, t)| (i.to_string(), *t)).collect()
    }

    #[test]
    fn keep_newest_selects_all_but_the_last_n() {
        let r = runs(&[("c", 30), ("a", 10), ("b", 20)]);
        assert_eq!(select(&r, Rule::KeepNewest(1), 0), ["a", "b"]);
        assert_eq!(select(&r, Rule::KeepNewest(0), 0), ["a", "b", "c"]);
        assert!(select(&r, Rule::KeepNewest(5), 0).is_empty());
    }

    #[test]
    fn older_than_selects_by_start() {
        let r = runs(&[("a", 1_000), ("b", 5_000), ("c", 9_000)]);
        let sel = select(&r, Rule::OlderThan(Duration::from_secs(6)), 10_000);
        assert_eq!(sel, ["a"]);
        assert!(select(&r, Rule::OlderThan(Duration::from_secs(60)), 10_000).is_empty());
    }

    #[test]
    fn a_run_id_names_its_start() {
        let t = started_from_id("20261202-023000-ab12").unwrap();
        assert_eq!(
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(t))
                .to_string(),
            "2026-12-02T02:30:00Z"
        );
        assert_eq!(started_from_id("nope"), None);
    }

    #[test]
    fn status_words() {
        let mut rec = crate::record::sample(&["a"], 0);
        rec.phase = Phase::Running;
        assert_eq!(status_word(&rec, true), "running");
        assert_eq!(status_word(&rec, false), "stopped");
        rec.phase = Phase::Finished;
        rec.exit_code = Some(0);
        assert_eq!(status_word(&rec, false), "succeeded");
        rec.exit_code = Some(8);
        assert_eq!(status_word(&rec, false), "verify_failed");
        rec.phase = Phase::Interrupted;
        assert_eq!(status_word(&rec, false), "interrupted");
    }
}
