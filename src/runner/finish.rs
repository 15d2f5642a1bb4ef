//! The end of a run: merge what is left, verify the merged result, land it on `into`, and clean
//! up worktrees and merged branches. `agent-farm merge` and `agent-farm clean` reuse these steps.

use std::path::Path;

use super::Farm;
use super::process::{self, ProcSpec};
use crate::events::{DomainStatus, FarmEvent};
use crate::git;
use crate::plan::schedule;
use crate::record::{Phase, RunRecord};

impl Farm {
    /// Merge every succeeded, unmerged domain into the integration branch, in plan order.
    pub async fn merge_pending(&mut self) {
        self.record.phase = Phase::Merging;
        for name in schedule::merge_order(&self.record.plan.domains) {
            let Some(d) = self.record.domain(&name) else {
                continue;
            };
            if d.status != DomainStatus::Succeeded {
                continue;
            }
            let blocked = self
                .record
                .plan
                .domain(&name)
                .into_iter()
                .flat_map(|d| d.depends_on.iter())
                .find(|p| self.record.domain(p).map(|d| d.status) != Some(DomainStatus::Merged))
                .cloned();
            match blocked {
                Some(p) => self.emit(FarmEvent::DomainSkipped {
                    domain: name.clone(),
                    reason: format!("not merged: dependency `{p}` is not merged"),
                }),
                None => self.merge_domain(&name).await,
            }
        }
    }

    /// Run the plan's verify command on the integration branch, then land it on `into`.
    pub async fn verify_and_land(&mut self) {
        let rec = &self.record;
        let repo_dir = rec.repo.clone();
        let integration = rec.integration_branch.clone();
        let base = rec.base_commit.clone();
        let tip = {
            let (rd, ib) = (repo_dir.clone(), integration.clone());
            tokio::task::spawn_blocking(move || {
                git::open(&rd).ok().and_then(|r| git::branch_tip(&r, &ib))
            })
            .await
            .ok()
            .flatten()
        };
        let Some(tip) = tip else {
            self.emit(FarmEvent::NotLanded {
                into: rec.into.clone(),
                reason: format!("integration branch {integration} is missing"),
                command: None,
            });
            return;
        };
        if tip.to_string() == base {
            // No domain changed anything: there is nothing to verify or land.
            return;
        }
        if let Some(verify) = rec.plan.verify.clone() {
            self.emit(FarmEvent::VerifyStarted {
                commit: tip.to_string(),
            });
            let rec = &self.record;
            let wt = rec.worktree_root.join(&rec.run_id).join(".verify");
            let admin = format!("farm-{}--verify", rec.run_id);
            let (rd, w, a) = (repo_dir.clone(), wt.clone(), admin.clone());
            let created = tokio::task::spawn_blocking(move || {
                let repo = git::open(&rd)?;
                git::remove_worktree(&repo, &a, &w)?;
                git::add_detached_worktree(&repo, &a, &w, tip)
            })
            .await;
            let (end, duration_ms) = match created {
                Ok(Ok(())) => {
                    let log = rec.paths().verify_log();
                    let _ = process::log_line(&log, &format!("$ {}", verify.display()));
                    let spec = ProcSpec {
                        argv: verify.argv(),
                        cwd: wt.clone(),
                        env: vec![
                            ("AGENT_FARM_RUN_ID".into(), rec.run_id.clone()),
                            ("AGENT_FARM_WORKTREE".into(), wt.display().to_string()),
                        ],
                        log,
                        timeout: rec.plan.agent.timeout,
                        grace: rec.plan.agent.grace,
                        stdout_lines: None,
                    };
                    let (_tx, mut rx) = tokio::sync::watch::channel(None);
                    let r = process::run(&spec, |_| {}, &mut rx).await;
                    (r.end, r.duration.as_millis() as u64)
                }
                Ok(Err(e)) => (
                    crate::events::AttemptEnd::SpawnFailed {
                        message: format!("cannot create the verify worktree: {e}"),
                    },
                    0,
                ),
                Err(e) => (
                    crate::events::AttemptEnd::SpawnFailed {
                        message: e.to_string(),
                    },
                    0,
                ),
            };
            let (rd, w, a) = (repo_dir.clone(), wt, admin);
            let _ = tokio::task::spawn_blocking(move || {
                let repo = git::open(&rd)?;
                git::remove_worktree(&repo, &a, &w)
            })
            .await;
            let passed = end.success();
            let log = self.record.paths().verify_log().display().to_string();
            self.emit(FarmEvent::VerifyFinished {
                passed,
                end: end.clone(),
                duration_ms,
                log: log.clone(),
            });
            if !passed {
                self.emit(FarmEvent::NotLanded {
                    into: self.record.into.clone(),
                    reason: format!(
                        "verify `{}` failed ({}); see {log}",
                        verify.display(),
                        end.describe()
                    ),
                    command: None,
                });
                return;
            }
        }
        self.record.phase = Phase::Landing;
        let into = self.record.into.clone();
        let run_id = self.record.run_id.clone();
        let msg = format!("farm: land run {run_id} into {into}\n\nFarm-Run: {run_id}\n");
        let (rd, i) = (repo_dir.clone(), into.clone());
        let res = tokio::task::spawn_blocking(move || {
            let repo = git::open(&rd)?;
            git::land(&repo, &i, tip, &msg)
        })
        .await;
        let cmd = format!("git switch {into} && git merge {integration}");
        let ev = match res {
            Ok(Ok(git::LandOutcome::Landed {
                commit,
                fast_forward,
            })) => FarmEvent::Landed {
                into,
                commit: commit.to_string(),
                fast_forward,
            },
            Ok(Ok(git::LandOutcome::UpToDate)) => FarmEvent::Landed {
                into,
                commit: tip.to_string(),
                fast_forward: true,
            },
            Ok(Ok(git::LandOutcome::DirtyCheckout { worktree, paths })) => FarmEvent::NotLanded {
                reason: format!(
                    "`{into}` is checked out at {} with uncommitted changes ({}); left untouched",
                    worktree.display(),
                    summarize(&paths)
                ),
                into,
                command: Some(cmd),
            },
            Ok(Ok(git::LandOutcome::CheckoutBlocked { worktree, message })) => {
                FarmEvent::NotLanded {
                    reason: format!(
                        "the checkout of `{into}` at {} cannot be updated safely: {message}",
                        worktree.display()
                    ),
                    into,
                    command: Some(cmd),
                }
            }
            Ok(Ok(git::LandOutcome::Conflict(paths))) => FarmEvent::NotLanded {
                reason: format!(
                    "`{into}` moved since the run started and conflicts with the result on {}",
                    summarize(&paths)
                ),
                into,
                command: Some(cmd),
            },
            Ok(Err(e)) => FarmEvent::NotLanded {
                into,
                reason: format!("landing failed: {e}"),
                command: Some(cmd),
            },
            Err(e) => FarmEvent::NotLanded {
                into,
                reason: format!("landing failed: {e}"),
                command: Some(cmd),
            },
        };
        self.emit(ev);
    }

    /// Remove worktrees (unless kept) and delete branches whose work is in `into`.
    pub async fn cleanup(&mut self, remove_worktrees: bool, force: bool) {
        self.record.phase = Phase::Cleaning;
        let rec = self.record.clone();
        let events =
            tokio::task::spawn_blocking(move || cleanup_run(&rec, remove_worktrees, force))
                .await
                .unwrap_or_else(|e| {
                    vec![FarmEvent::Warning {
                        domain: None,
                        message: format!("cleanup failed: {e}"),
                    }]
                });
        for ev in events {
            self.emit(ev);
        }
    }
}

fn summarize(paths: &[String]) -> String {
    let mut s = paths.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if paths.len() > 5 {
        s.push_str(&format!(" and {} more", paths.len() - 5));
    }
    s
}

/// Remove what a run created, keeping every commit that is not in `into` unless `force`.
/// Safe to call any number of times, from any state. Blocking.
pub fn cleanup_run(rec: &RunRecord, remove_worktrees: bool, force: bool) -> Vec<FarmEvent> {
    let mut out = Vec::new();
    let warn = |out: &mut Vec<FarmEvent>, domain: Option<&str>, message: String| {
        out.push(FarmEvent::Warning {
            domain: domain.map(str::to_owned),
            message,
        })
    };
    let repo = match git::open(&rec.repo) {
        Ok(r) => r,
        Err(e) => {
            warn(&mut out, None, format!("cleanup: {e}"));
            return out;
        }
    };
    if remove_worktrees {
        for d in rec.domains.values() {
            let admin_exists = repo.find_worktree(&d.worktree_admin).is_ok();
            if !admin_exists && !d.worktree.exists() {
                continue;
            }
            match git::remove_worktree(&repo, &d.worktree_admin, &d.worktree) {
                Ok(()) => out.push(FarmEvent::WorktreeRemoved {
                    domain: d.name.clone(),
                }),
                Err(e) => warn(
                    &mut out,
                    Some(&d.name),
                    format!("cannot remove worktree: {e}"),
                ),
            }
        }
        let verify = rec.worktree_root.join(&rec.run_id).join(".verify");
        let _ = git::remove_worktree(&repo, &format!("farm-{}--verify", rec.run_id), &verify);
        remove_empty_dir(&rec.worktree_root.join(&rec.run_id));
    }
    let into_tip = git::branch_tip(&repo, &rec.into);
    let merged_into = |tip: git2::Oid| into_tip.is_some_and(|i| git::is_merged(&repo, tip, i));
    let checked_out = |branch: &str| git::checked_out_at(&repo, branch).is_some();
    for d in rec.domains.values() {
        let Some(tip) = git::branch_tip(&repo, &d.branch) else {
            continue;
        };
        if checked_out(&d.branch) {
            out.push(FarmEvent::BranchKept {
                branch: d.branch.clone(),
                reason: "its worktree is kept".into(),
            });
            continue;
        }
        if merged_into(tip) || force {
            match git::delete_branch(&repo, &d.branch) {
                Ok(_) => out.push(FarmEvent::BranchDeleted {
                    branch: d.branch.clone(),
                }),
                Err(e) => warn(&mut out, Some(&d.name), e.to_string()),
            }
        } else {
            let reason = match d.status {
                DomainStatus::Conflicted => format!(
                    "conflicted on {}; resolve with `git merge {}`",
                    summarize(&d.conflict_paths),
                    d.branch
                ),
                DomainStatus::Merged | DomainStatus::Succeeded => format!(
                    "its work is not in `{}` yet (see {})",
                    rec.into, rec.integration_branch
                ),
                s => format!(
                    "{s}: its commits are not merged; inspect with `git log {}`",
                    d.branch
                ),
            };
            out.push(FarmEvent::BranchKept {
                branch: d.branch.clone(),
                reason,
            });
        }
    }
    if let Some(tip) = git::branch_tip(&repo, &rec.integration_branch) {
        if merged_into(tip) || force || tip.to_string() == rec.base_commit {
            match git::delete_branch(&repo, &rec.integration_branch) {
                Ok(_) => out.push(FarmEvent::BranchDeleted {
                    branch: rec.integration_branch.clone(),
                }),
                Err(e) => warn(&mut out, None, e.to_string()),
            }
        } else {
            out.push(FarmEvent::BranchKept {
                branch: rec.integration_branch.clone(),
                reason: format!(
                    "the merged result is not in `{}`; land it with `git switch {} && git merge {}`",
                    rec.into, rec.into, rec.integration_branch
                ),
            });
        }
    }
    out
}

fn remove_empty_dir(p: &Path) {
    let _ = std::fs::remove_dir(p);
    if let Some(parent) = p.parent() {
        let _ = std::fs::remove_dir(parent);
    }
}
