//! The end of a run: merge what is left, verify the merged result, land it on `into`, and clean
//! up worktrees and merged branches. `agent-farm merge` and `agent-farm clean` reuse these steps.

use std::path::Path;

use super::process::{self, ProcSpec};
use crate::events::{DomainStatus, FarmEvent};
use crate::git;
use crate::record::RunRecord;

/// Which of the finished branches would conflict with the integration branch or with each
/// other (in-memory merges, no checkout). Blocking.
pub fn predict_conflicts(
    repo_dir: &Path,
    integration: &str,
    candidates: &[(String, String)],
) -> Result<Vec<(String, String, Vec<String>)>, git::GitError> {
    let repo = git::open(repo_dir)?;
    let tip = git::branch_tip(&repo, integration);
    let heads: Vec<(String, git2::Oid)> = candidates
        .iter()
        .filter_map(|(n, h)| Some((n.clone(), h.parse().ok()?)))
        .collect();
    let mut out = Vec::new();
    for (i, (a, ha)) in heads.iter().enumerate() {
        if let Some(t) = tip {
            let p = git::conflicts_between(&repo, t, *ha)?;
            if !p.is_empty() {
                out.push((a.clone(), integration.to_string(), p));
            }
        }
        for (b, hb) in heads.iter().skip(i + 1) {
            let p = git::conflicts_between(&repo, *ha, *hb)?;
            if !p.is_empty() {
                out.push((a.clone(), b.clone(), p));
            }
        }
    }
    Ok(out)
}

/// What planning and performing the landing need, read from the record.
pub struct LandingRequest {
    repo_dir: std::path::PathBuf,
    common_dir: std::path::PathBuf,
    run_id: String,
    integration: String,
    recorded_tip: Option<git2::Oid>,
    base: String,
    into: String,
    message: String,
}

impl LandingRequest {
    pub fn of(rec: &RunRecord) -> LandingRequest {
        LandingRequest {
            repo_dir: rec.repo.clone(),
            common_dir: rec.common_dir.clone(),
            run_id: rec.run_id.clone(),
            integration: rec.integration_branch.clone(),
            recorded_tip: rec.integration_commit.as_ref().and_then(|c| c.parse().ok()),
            base: rec.base_commit.clone(),
            into: rec.into.clone(),
            message: format!(
                "farm: land run {run} into {into}\n\nFarm-Run: {run}\n",
                run = rec.run_id,
                into = rec.into
            ),
        }
    }

    /// The integration tip and what landing it on `into` would do; `None` when no domain
    /// changed anything. Blocking.
    pub fn plan(&self) -> Result<Option<(String, git::LandPlan)>, git::GitError> {
        let repo = git::open(&self.repo_dir)?;
        // After a crash during cleanup the integration branch may be gone already; the record
        // still knows its last commit.
        let recorded = self
            .recorded_tip
            .and_then(|c| repo.find_commit(c).ok().map(|c| c.id()));
        let Some(tip) = git::branch_tip(&repo, &self.integration).or(recorded) else {
            return Err(git::GitError::IntegrationBranchMissing {
                branch: self.integration.clone(),
            });
        };
        if tip.to_string() == self.base {
            return Ok(None);
        }
        let plan = git::plan_landing(&repo, &self.into, tip, &self.message)?;
        Ok(Some((tip.to_string(), plan)))
    }

    /// Land `new` on `into` (which must still be at `old`) as one journaled transaction. Blocking.
    pub fn land(
        &self,
        journal: &crate::journal::Journal,
        old: Option<String>,
        new: &str,
    ) -> Result<crate::txn::LandOutcome, git::GitError> {
        let parse = |s: &str| {
            s.parse::<git2::Oid>()
                .map_err(|source| git::GitError::BadCommitId {
                    id: s.to_string(),
                    source,
                })
        };
        let old = old.as_deref().map(parse).transpose()?;
        let new = parse(new)?;
        let repo = git::open(&self.repo_dir)?;
        let stages = crate::txn::Stages::new(&self.common_dir, &self.run_id);
        crate::txn::land(&repo, journal, &stages, &self.into, old, new, &self.message)
    }
}

/// Run the plan's `verify` on `commit` in a temporary detached worktree, removed afterwards.
pub async fn run_verify(
    rec: &RunRecord,
    journal: std::sync::Arc<crate::journal::Journal>,
    names: crate::names::RunNames,
    commit: &str,
    mut cancel: process::CancelRx,
) -> super::dispatcher::Input {
    let Some(verify) = rec.plan.verify.clone() else {
        return super::dispatcher::Input::Verified {
            passed: true,
            end: crate::events::AttemptEnd::Exited { code: 0 },
            duration_ms: 0,
            log: String::new(),
            setup_error: None,
        };
    };
    let wt = names.verify_worktree(&rec.worktree_root);
    let admin = names.verify_admin();
    let (rd, w, a, c) = (
        rec.repo.clone(),
        wt.clone(),
        admin.clone(),
        commit.to_string(),
    );
    let (j, n) = (journal.clone(), names.clone());
    let created = tokio::task::spawn_blocking(move || {
        let commit: git2::Oid = c.parse().map_err(|source| git::GitError::BadCommitId {
            id: c.clone(),
            source,
        })?;
        let repo = git::open(&rd)?;
        super::effects::remove_worktree(&j, &repo, &n, &a, &w)?;
        super::effects::add_verify_worktree(&j, &repo, &n, &w, commit)
    })
    .await
    .map_err(git::GitError::Task)
    .and_then(|r| r);
    let log = rec.paths().verify_log();
    let (end, duration_ms, setup_error) = match created {
        Ok(()) => {
            let _ = process::log_line(&log, &format!("$ {}", verify.display()));
            let spec = ProcSpec {
                argv: verify.argv(),
                cwd: wt.clone(),
                env: vec![
                    ("AGENT_FARM_RUN_ID".into(), rec.run_id.clone()),
                    ("AGENT_FARM_WORKTREE".into(), wt.display().to_string()),
                ],
                log: log.clone(),
                timeout: rec.plan.agent.timeout,
                grace: rec.plan.agent.grace,
                idle_timeout: None,
                stdout_lines: None,
                supervise: Some(process::Supervision {
                    exe: super::agent::self_exe(),
                    guard: None,
                    reports: None,
                }),
            };
            let r = process::run(&spec, |_| {}, &mut cancel).await;
            if !r.ended.is_empty() {
                let _ = process::log_line(
                    &log,
                    &format!(
                        "agent-farm: ended {} process(es) verify left running: {}",
                        r.ended.len(),
                        crate::vocab::list_ended(&r.ended)
                    ),
                );
            }
            (r.end, r.duration.as_millis() as u64, None)
        }
        Err(e) => (
            crate::events::AttemptEnd::SpawnFailed {
                message: format!("cannot create the verify worktree: {e}"),
            },
            0,
            Some(e.to_string()),
        ),
    };
    let (rd, w, a) = (rec.repo.clone(), wt, admin);
    let _ = tokio::task::spawn_blocking(move || {
        let repo = git::open(&rd)?;
        super::effects::remove_worktree(&journal, &repo, &names, &a, &w)
    })
    .await;
    super::dispatcher::Input::Verified {
        passed: end.success(),
        end,
        duration_ms,
        log: log.display().to_string(),
        setup_error,
    }
}

/// `a, b, c, d, e and N more`: the first few of many.
pub(super) fn summarize(paths: &[String]) -> String {
    let mut s = paths.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if paths.len() > 5 {
        s.push_str(&format!(" and {} more", paths.len() - 5));
    }
    s
}

/// Remove what a run created, keeping every commit that is not in `into` unless `force`.
/// Safe to call any number of times, from any state. Blocking.
pub fn cleanup_run(
    rec: &RunRecord,
    journal: &crate::journal::Journal,
    remove_worktrees: bool,
    force: bool,
) -> Vec<FarmEvent> {
    let names = crate::names::RunNames::new(rec.run_id.clone());
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
    kill_leftovers(rec, &mut out);
    if remove_worktrees {
        for d in rec.domains.values() {
            let admin_exists = repo.find_worktree(&d.worktree_admin).is_ok();
            if !admin_exists && !d.worktree.exists() {
                if d.worktree_created && !d.worktree_removed {
                    out.push(FarmEvent::WorktreeRemoved {
                        domain: d.name.clone(),
                    });
                }
                continue;
            }
            // Never remove uncommitted work: commit it on the domain's branch first.
            let _ = git::repair_worktree_link(&repo, &d.worktree_admin, &d.worktree);
            if d.worktree.exists() && !admin_exists && checkout_done(rec, d) {
                // git forgot this worktree: keep its files by committing them from outside.
                match save_orphaned_dir(&repo, rec, d, "cleanup") {
                    Ok(Some(c)) => warn(
                        &mut out,
                        Some(&d.name),
                        format!(
                            "committed the files of its orphaned worktree as {c} on {}",
                            d.branch
                        ),
                    ),
                    Ok(None) => {}
                    Err(e) if !force => {
                        warn(
                            &mut out,
                            Some(&d.name),
                            format!("kept {}: cannot save its files ({e})", d.worktree.display()),
                        );
                        continue;
                    }
                    Err(_) => {}
                }
            } else if d.worktree.exists() && checkout_done(rec, d) {
                match save_worktree(&d.worktree, &rec.run_id, &d.name, "cleanup", &rec.plan.copy) {
                    Ok(Some(c)) => warn(
                        &mut out,
                        Some(&d.name),
                        format!(
                            "committed what its worktree still held as {c} on {}",
                            d.branch
                        ),
                    ),
                    Ok(None) => {}
                    Err(e) if !force => {
                        warn(
                            &mut out,
                            Some(&d.name),
                            format!(
                                "kept worktree {}: its uncommitted changes could not be committed ({e})",
                                d.worktree.display()
                            ),
                        );
                        continue;
                    }
                    Err(_) => {}
                }
            }
            // Work no commit can carry (a nested repository, an owned gitignored file, a file in
            // a submodule's directory) is never deleted unasked.
            if admin_exists
                && !force
                && d.worktree.exists()
                && let Some(unsaved) = holds_unsaved(rec, d)
            {
                warn(
                    &mut out,
                    Some(&d.name),
                    format!(
                        "kept worktree {}: it holds {} path(s) that are in no commit: {}; take what you need from it, then `agent-farm clean {} --force` removes it",
                        d.worktree.display(),
                        unsaved.len(),
                        summarize(&unsaved),
                        rec.run_id
                    ),
                );
                continue;
            }
            match super::effects::remove_worktree(
                journal,
                &repo,
                &names,
                &d.worktree_admin,
                &d.worktree,
            ) {
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
        let verify = names.verify_worktree(&rec.worktree_root);
        let _ =
            super::effects::remove_worktree(journal, &repo, &names, &names.verify_admin(), &verify);
        let _ = super::effects::delete_ref(
            journal,
            &repo,
            &names,
            &format!("refs/heads/{}", names.verify_branch()),
        );
        for admin in crate::recover::prune_broken_admin_dirs(&repo, &names) {
            warn(
                &mut out,
                None,
                format!("removed git's half-made worktree entry {admin}"),
            );
        }
        remove_empty_dir(&rec.worktree_root.join(&rec.run_id));
    }
    crate::txn::Stages::remove_dir(&rec.common_dir, &rec.run_id);
    let into_tip = git::branch_tip(&repo, &rec.into);
    let merged_into = |tip: git2::Oid| into_tip.is_some_and(|i| git::is_merged(&repo, tip, i));
    // Landed another way (squash, cherry-pick): merged only when its content is in `into`.
    let content_in = |start: Option<&String>, tip: git2::Oid| {
        let start = start.and_then(|s| s.parse::<git2::Oid>().ok());
        match (start, into_tip) {
            (Some(s), Some(i)) => git::content_merged(&repo, s, tip, i).unwrap_or(false),
            _ => false,
        }
    };
    let checked_out = |branch: &str| git::checked_out_at(&repo, branch).is_some();
    // Whatever is kept is listed with why and how to look at it; a ref that cannot be deleted
    // is kept too, and says so.
    let into = rec.into.clone();
    let kept = |out: &mut Vec<FarmEvent>, branch: &str, reason: String, inspect: String| {
        out.push(FarmEvent::BranchKept {
            branch: branch.to_string(),
            reason,
            inspect: Some(inspect),
        })
    };
    let log_branch = |b: &str| format!("git log --stat {into}..{b}");
    let delete = |out: &mut Vec<FarmEvent>, refname: &str, shown: &str, inspect: String| {
        match super::effects::delete_ref(journal, &repo, &names, refname) {
            Ok(_) => out.push(FarmEvent::BranchDeleted {
                branch: shown.to_string(),
            }),
            Err(e) => kept(out, shown, format!("it could not be deleted: {e}"), inspect),
        }
    };
    // What a conflicted domain's branch is to be brought up to date with: the merged result if it
    // stays, else `into` (which holds it).
    let integration_tip = git::branch_tip(&repo, &rec.integration_branch);
    let integration_stays = integration_tip
        .is_some_and(|t| !(merged_into(t) || force || t.to_string() == rec.base_commit));
    let up_to_date_with = if integration_stays {
        rec.integration_branch.as_str()
    } else {
        rec.into.as_str()
    };
    for d in rec.domains.values() {
        let Some(tip) = git::branch_tip(&repo, &d.branch) else {
            // Gone already (a cleanup interrupted before it was recorded): record the fact.
            if d.start_commit.is_some() && !d.branch_deleted {
                out.push(FarmEvent::BranchDeleted {
                    branch: d.branch.clone(),
                });
            }
            continue;
        };
        if checked_out(&d.branch) {
            kept(
                &mut out,
                &d.branch,
                format!("its worktree {} is kept", d.worktree.display()),
                log_branch(&d.branch),
            );
            continue;
        }
        if merged_into(tip) || force || content_in(d.start_commit.as_ref(), tip) {
            delete(
                &mut out,
                &format!("refs/heads/{}", d.branch),
                &d.branch,
                log_branch(&d.branch),
            );
        } else {
            let reason = match d.status {
                DomainStatus::Conflicted => format!(
                    "conflicted on {}; resolve it on its branch (`git switch {} && git merge {up_to_date_with}`), then run `agent-farm merge {}`",
                    summarize(&d.conflict_paths),
                    d.branch,
                    rec.run_id
                ),
                DomainStatus::Merged => format!(
                    "merged into {}, which is not in `{}`",
                    rec.integration_branch, rec.into
                ),
                DomainStatus::Succeeded => format!(
                    "finished but not merged; merge it with `agent-farm merge {}`",
                    rec.run_id
                ),
                s => format!(
                    "{s}: its commits are not merged (agent log: {})",
                    rec.paths().output_log(&d.name).display()
                ),
            };
            kept(&mut out, &d.branch, reason, log_branch(&d.branch));
        }
    }
    // Refs agent-farm keeps under refs/farm/<run>/: commits an agent made off its branch,
    // changes dropped by the revert policy, a blocked attempt set aside, work a commit hook
    // refused.
    let prefix = crate::names::RunNames::new(rec.run_id.clone()).hidden_prefix();
    let kept_refs: Vec<(String, git2::Oid)> = repo
        .references_glob(&format!("{prefix}*"))
        .map(|refs| {
            refs.flatten()
                .filter_map(|r| Some((r.name().ok()?.to_owned(), r.target()?)))
                .collect()
        })
        .unwrap_or_default();
    let base = &rec.base_commit[..rec.base_commit.len().min(12)];
    for (refname, tip) in kept_refs {
        let inspect = format!("git log -p {base}..{refname}");
        // A dropped-changes ref is history the user may want even though it is reachable.
        if force || (merged_into(tip) && !refname.ends_with("/dropped")) {
            delete(&mut out, &refname, &refname, inspect);
        } else {
            let what = if refname.ends_with("/dropped") {
                "changes dropped from the domain by the revert policy"
            } else if refname.ends_with("/blocked") {
                "a blocked attempt, set aside when the domain ran again"
            } else if refname.ends_with("/rejected") {
                "work a commit hook of the repository refused"
            } else {
                "commits the agent made off its branch"
            };
            kept(&mut out, &refname, what.to_string(), inspect);
        }
    }
    if let Some(tip) = integration_tip {
        let integration = &rec.integration_branch;
        let inspect = log_branch(integration);
        if merged_into(tip) || force || tip.to_string() == rec.base_commit {
            delete(
                &mut out,
                &format!("refs/heads/{integration}"),
                integration,
                inspect,
            );
        } else {
            let land = format!("git switch {into} && git merge {integration}");
            // The result that just failed verify is no result to land without a word.
            let failed = rec
                .verify
                .as_ref()
                .filter(|v| v.passed == Some(false) && v.commit == tip.to_string());
            let reason = match failed {
                Some(v) => format!(
                    "the merged result failed verify on {}{}; fix it on the domain branches and run `agent-farm merge {}`, or, to land it anyway: `{land}`",
                    &v.commit[..v.commit.len().min(12)],
                    v.end
                        .as_ref()
                        .map(|e| format!(" ({})", e.describe()))
                        .unwrap_or_default(),
                    rec.run_id
                ),
                None => format!("the merged result is not in `{into}`; land it with `{land}`"),
            };
            kept(&mut out, integration, reason, inspect);
        }
    }
    out
}

/// What the worktree of `domain` holds that no commit carries and that is work to lose (see
/// [`crate::unsaved`]): a nested repository, a `.git` in a tracked directory, a file inside a
/// submodule's directory, wherever they are; a gitignored path only when the domain owns it (a
/// build directory it does not own is no work of its), unless `ownership.ignore` lists it or it
/// was copied in by `prepare.copy`. Blocking.
pub fn unsaved_work(
    map: &crate::ownership::OwnershipMap,
    domain: &str,
    worktree: &Path,
    copy: &[String],
) -> Result<Vec<crate::unsaved::Unsaved>, git::GitError> {
    use crate::unsaved::Unsaved;
    let all = crate::unsaved::find(worktree).map_err(|source| git::GitError::Git {
        context: format!("cannot read status of {}", worktree.display()),
        source,
    })?;
    let counts = |p: &str| map.owns(domain, p) && !map.ignores(p) && !copy.iter().any(|c| c == p);
    Ok(all
        .into_iter()
        .filter(|u| match u {
            // An ignored directory stands for the files in it: kept when one of them counts.
            Unsaved::Ignored { path, .. } if worktree.join(path).is_dir() => {
                match crate::unsaved::files_under(worktree, path, 20_000) {
                    Some(files) => files.iter().any(|f| counts(f)),
                    None => counts(path) || counts(&format!("{path}/_")),
                }
            }
            Unsaved::Ignored { path, .. } => counts(path),
            u => !map.ignores(u.path()),
        })
        .collect())
}

/// Why cleanup must keep a worktree: the work in it that no commit carries, if any. `None` when
/// it holds none (or is no worktree git knows).
fn holds_unsaved(rec: &RunRecord, d: &crate::record::DomainRecord) -> Option<Vec<String>> {
    let map = crate::ownership::OwnershipMap::for_plan(&rec.plan).ok()?;
    match unsaved_work(&map, &d.name, &d.worktree, &rec.plan.copy) {
        Ok(list) if list.is_empty() => None,
        Ok(list) => Some(list.iter().map(|u| u.describe()).collect()),
        // Not knowing is no licence to delete.
        Err(e) => Some(vec![format!("(cannot tell: {e})")]),
    }
}

/// Whether the domain's checkout was completed (so whatever its worktree holds is work to keep).
fn checkout_done(rec: &RunRecord, d: &crate::record::DomainRecord) -> bool {
    d.worktree_created || super::domain::checkout_marker(&rec.paths(), &d.name).exists()
}

/// Commit whatever the worktree of `domain` still holds onto its branch (commits made off the
/// branch kept under its off-branch ref), as work recovered by `by` (cleanup, resume).
/// Returns the new commit, if there was anything to commit. Blocking.
fn save_worktree(
    path: &Path,
    run_id: &str,
    domain: &str,
    by: &str,
    exclude: &[String],
) -> Result<Option<git2::Oid>, git::GitError> {
    if git::uncommitted(path)?.is_empty() {
        return Ok(None);
    }
    let msg = format!(
        "farm({domain}): work recovered by {by}\n\nLeft uncommitted in the worktree when run {run_id} stopped.\n\nFarm-Run: {run_id}\nFarm-Domain: {domain}\nFarm-Outcome: recovered\n"
    );
    let repo = git::open(path)?;
    let names = crate::names::RunNames::new(run_id);
    let journal =
        crate::journal::Journal::new(&crate::record::RunPaths::new(repo.commondir(), run_id).dir);
    super::effects::commit_work(&journal, &repo, &names, domain, path, &msg, exclude, None)
        .map(|(_, c, _)| c)
}

/// Commit the files of a domain's worktree directory that git no longer knows as a worktree
/// onto its branch, as recovered by `by`. Blocking.
fn save_orphaned_dir(
    repo: &git2::Repository,
    rec: &RunRecord,
    d: &crate::record::DomainRecord,
    by: &str,
) -> Result<Option<git2::Oid>, git::GitError> {
    let msg = format!(
        "farm({name}): files recovered by {by}\n\nFound in {path}, a worktree git no longer knew.\n\nFarm-Run: {run}\nFarm-Domain: {name}\nFarm-Outcome: recovered\n",
        name = d.name,
        run = rec.run_id,
        path = d.worktree.display()
    );
    git::snapshot_dir_onto_branch(repo, &d.worktree, &d.branch, &msg, &rec.plan.copy)
}

/// Before `agent-farm merge` merges again: the domains whose branch holds commits the
/// integration branch does not (a fix committed by hand on a domain branch since the run), each
/// to be merged again from its branch's tip. Blocking.
pub fn moved_branches(rec: &RunRecord) -> Result<Vec<FarmEvent>, git::GitError> {
    let repo = git::open(&rec.repo)?;
    let integration = git::branch_tip(&repo, &rec.integration_branch);
    let mut out = Vec::new();
    for d in rec.plan.domains.iter().filter_map(|p| rec.domain(&p.name)) {
        if !matches!(
            d.status,
            DomainStatus::Merged | DomainStatus::Succeeded | DomainStatus::Conflicted
        ) {
            continue;
        }
        let (Some(tip), Some(start)) = (
            git::branch_tip(&repo, &d.branch),
            d.start_commit
                .as_ref()
                .and_then(|s| s.parse::<git2::Oid>().ok()),
        ) else {
            continue;
        };
        let recorded = d.head.as_ref().and_then(|h| h.parse::<git2::Oid>().ok());
        if tip == recorded.unwrap_or(start)
            || integration.is_some_and(|i| git::is_merged(&repo, tip, i))
        {
            continue;
        }
        if let Some(h) = recorded.filter(|h| !git::is_merged(&repo, *h, tip)) {
            out.push(FarmEvent::Warning {
                domain: Some(d.name.clone()),
                message: format!(
                    "{} was rewritten since the run (it no longer holds {}); merging it again may conflict with its earlier version in {}",
                    d.branch,
                    &h.to_string()[..12],
                    rec.integration_branch
                ),
            });
        }
        let stats = git::change_stats(&repo, start, tip)?;
        out.push(FarmEvent::BranchMoved {
            domain: d.name.clone(),
            branch: d.branch.clone(),
            from: d.head.clone(),
            to: tip.to_string(),
            files: stats.files,
            insertions: stats.insertions,
            deletions: stats.deletions,
        });
    }
    Ok(out)
}

/// Make sure the run's integration branch exists (`clean` deletes it when it holds nothing):
/// recreate it at its last recorded commit, or at base.
pub fn ensure_integration(rec: &RunRecord) -> Result<(), git::GitError> {
    let repo = git::open(&rec.repo)?;
    if git::branch_exists(&repo, &rec.integration_branch) {
        return Ok(());
    }
    let at = rec
        .integration_commit
        .as_ref()
        .and_then(|c| c.parse::<git2::Oid>().ok())
        .filter(|c| repo.find_commit(*c).is_ok())
        .or_else(|| rec.base_commit.parse().ok())
        .ok_or(git::GitError::UnknownBaseCommit)?;
    let journal = crate::journal::Journal::new(&rec.paths().dir);
    let names = crate::names::RunNames::new(rec.run_id.clone());
    super::effects::create_branch(&journal, &repo, &names, &rec.integration_branch, at)
}

/// Agents of a run whose driver died may still be running: stop them (only process groups that
/// carry this run's id in their environment, so a recycled pid is never hit).
pub fn kill_leftovers(rec: &RunRecord, out: &mut Vec<FarmEvent>) {
    let killed = super::process::kill_run_processes(&rec.run_id);
    if !killed.is_empty() {
        out.push(FarmEvent::Warning {
            domain: None,
            message: format!(
                "stopped {} process(es) left from the run (agents, setup or verify; pids {killed:?})",
                killed.len()
            ),
        });
    }
    // Nothing of the run is alive now (and the run lock keeps every other agent-farm out):
    // effects its dead processes began and never ended are finished or undone first...
    for message in crate::recover::recover_journal(&rec.repo, &rec.paths().dir, &rec.run_id) {
        out.push(FarmEvent::Warning {
            domain: None,
            message,
        });
    }
    // ...then lock files on its refs and worktrees are leftovers of a process killed mid-write.
    if let Ok(repo) = git::open(&rec.repo) {
        let admins: Vec<String> = rec
            .domains
            .values()
            .map(|d| d.worktree_admin.clone())
            .collect();
        let removed = git::remove_stale_locks(&repo, &rec.run_id, &admins);
        if !removed.is_empty() {
            out.push(FarmEvent::Warning {
                domain: None,
                message: format!(
                    "removed {} stale lock file(s) left by a killed process: {}",
                    removed.len(),
                    removed
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
}

/// Before a blocked domain runs again: keep its branch's tip under
/// `refs/farm/<run>/<domain>/blocked` and move the branch back to its start, removing its
/// worktree (which holds nothing uncommitted after the run). Blocking.
pub fn reset_blocked(rec: &RunRecord, domain: &str) -> Vec<FarmEvent> {
    let mut out = Vec::new();
    let Some(d) = rec.domain(domain) else {
        return out;
    };
    let res = (|| -> Result<(), git::GitError> {
        let repo = git::open(&rec.repo)?;
        let start: git2::Oid = d
            .start_commit
            .as_ref()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| git::GitError::NoStartCommit {
                domain: d.name.clone(),
            })?;
        let Some(tip) = git::branch_tip(&repo, &d.branch) else {
            return Ok(());
        };
        if repo.find_worktree(&d.worktree_admin).is_ok()
            && let Some(unsaved) = holds_unsaved(rec, d)
        {
            // Removing the worktree would lose them: the domain runs again where it is.
            out.push(FarmEvent::Warning {
                domain: Some(domain.to_string()),
                message: format!(
                    "the blocked attempt is not set aside: its worktree {} holds {} path(s) that are in no commit: {}",
                    d.worktree.display(),
                    unsaved.len(),
                    summarize(&unsaved)
                ),
            });
            return Ok(());
        }
        let keep = crate::names::RunNames::new(rec.run_id.clone()).blocked_ref(&d.name);
        repo.reference(&keep, tip, true, "agent-farm: blocked attempt set aside")
            .map_err(|source| git::GitError::Git {
                context: format!("cannot create {keep}"),
                source,
            })?;
        let journal = crate::journal::Journal::new(&rec.paths().dir);
        let names = crate::names::RunNames::new(rec.run_id.clone());
        super::effects::remove_worktree(&journal, &repo, &names, &d.worktree_admin, &d.worktree)?;
        repo.reference_matching(
            &format!("refs/heads/{}", d.branch),
            start,
            true,
            tip,
            "agent-farm: retry a blocked domain from its start",
        )
        .map_err(|source| git::GitError::Git {
            context: format!("cannot reset {}", d.branch),
            source,
        })?;
        Ok(())
    })();
    if let Err(e) = res {
        out.push(FarmEvent::Warning {
            domain: Some(domain.to_string()),
            message: format!("cannot set the blocked attempt aside: {e}"),
        });
    }
    out
}

/// Bring an interrupted run back to a state it can continue from: stop its leftover agents,
/// commit whatever unfinished domains left in their worktrees. Blocking.
pub fn recover_run(rec: &RunRecord) -> Vec<FarmEvent> {
    let mut out = Vec::new();
    kill_leftovers(rec, &mut out);
    // Attempts the crash cut short are closed: their agents are gone now. An attempt whose
    // commit began had ended, and the journal says how (the record may not have heard).
    let commits: Vec<(String, u32, bool)> = crate::journal::entries(&rec.paths().dir)
        .into_iter()
        .filter_map(|(i, _)| match i.effect {
            crate::journal::Effect::Commit {
                domain,
                attempt: Some(n),
                agent_succeeded: Some(ok),
                ..
            } => Some((domain, n, ok)),
            _ => None,
        })
        .collect();
    for d in rec.domains.values() {
        for a in d.attempts.iter().filter(|a| a.ended_ms.is_none()) {
            let ended_ok = commits
                .iter()
                .any(|(dn, n, ok)| dn == &d.name && *n == a.number && *ok);
            out.push(FarmEvent::AgentFinished {
                domain: d.name.clone(),
                attempt: a.number,
                end: if ended_ok {
                    crate::events::AttemptEnd::Exited { code: 0 }
                } else {
                    crate::events::AttemptEnd::Cancelled {
                        reason: "agent-farm stopped while it ran".into(),
                    }
                },
                duration_ms: 0,
            });
        }
        // An attempt the record never heard of (killed before its events were written) whose
        // commit began after the agent succeeded: the agent is done, it must not run again.
        let last_ok = commits
            .iter()
            .filter(|(dn, _, ok)| dn == &d.name && *ok)
            .map(|(_, n, _)| *n)
            .max();
        if let Some(n) = last_ok
            && (!d.status.is_terminal() || d.status == DomainStatus::Cancelled)
            && !d.attempts.iter().any(|a| a.number >= n)
        {
            out.push(FarmEvent::AgentFinished {
                domain: d.name.clone(),
                attempt: n,
                end: crate::events::AttemptEnd::Exited { code: 0 },
                duration_ms: 0,
            });
        }
    }
    for d in rec.domains.values() {
        if d.status.is_terminal() && d.status != DomainStatus::Cancelled {
            continue;
        }
        if !checkout_done(rec, d) {
            // Its checkout may have been cut short, and no agent ran in it yet: start it over
            // rather than commit a half-written checkout (files missing would be deletions).
            let journal = crate::journal::Journal::new(&rec.paths().dir);
            let names = crate::names::RunNames::new(rec.run_id.clone());
            if let Ok(repo) = git::open(&rec.repo)
                && let Err(e) = super::effects::remove_worktree(
                    &journal,
                    &repo,
                    &names,
                    &d.worktree_admin,
                    &d.worktree,
                )
            {
                out.push(FarmEvent::Warning {
                    domain: Some(d.name.clone()),
                    message: format!("cannot remove its half-made worktree: {e}"),
                });
            }
            continue;
        }
        // An agent may have deleted the worktree's `.git` file: repair the link first, or its
        // work would look like no worktree at all.
        if let Ok(repo) = git::open(&rec.repo) {
            let _ = git::repair_worktree_link(&repo, &d.worktree_admin, &d.worktree);
        }
        if !d.worktree.join(".git").exists() {
            if d.worktree.is_dir()
                && let Ok(repo) = git::open(&rec.repo)
            {
                // git forgot it entirely: keep its files by committing them from outside.
                match save_orphaned_dir(&repo, rec, d, "resume") {
                    Ok(Some(c)) => out.push(FarmEvent::Committed {
                        domain: d.name.clone(),
                        commit: c.to_string(),
                        note: "files recovered by resume".into(),
                    }),
                    Ok(None) => {}
                    Err(e) => out.push(FarmEvent::Warning {
                        domain: Some(d.name.clone()),
                        message: format!("cannot save the files of its worktree: {e}"),
                    }),
                }
            }
            continue;
        }
        match save_worktree(&d.worktree, &rec.run_id, &d.name, "resume", &rec.plan.copy) {
            Ok(Some(c)) => out.push(FarmEvent::Committed {
                domain: d.name.clone(),
                commit: c.to_string(),
                note: "work recovered by resume".into(),
            }),
            Ok(None) => {}
            Err(e) => out.push(FarmEvent::Warning {
                domain: Some(d.name.clone()),
                message: format!("cannot commit what the worktree holds: {e}"),
            }),
        }
    }
    out
}

/// Clean what a run left when its record is gone: worktrees registered as `farm-<run>-*`,
/// branches `farm/<run>/*` and refs `refs/farm/<run>/*`. Uncommitted work is committed first;
/// branches are deleted only when merged into `into` (or with `force`). Blocking.
pub fn cleanup_without_record(
    repo_dir: &Path,
    run_id: &str,
    into: &str,
    force: bool,
) -> Vec<FarmEvent> {
    let mut out = Vec::new();
    // Files copied into worktrees (secrets) must never be committed; without the record, the
    // repository's plan is the best source for that list.
    let copy: &[String] = &crate::plan::load(&crate::plan::default_path(repo_dir))
        .map(|p| p.copy)
        .unwrap_or_default();
    let killed = super::process::kill_run_processes(run_id);
    if !killed.is_empty() {
        out.push(FarmEvent::Warning {
            domain: None,
            message: format!("stopped {} process(es) left from the run", killed.len()),
        });
    }
    let warn = |out: &mut Vec<FarmEvent>, message: String| {
        out.push(FarmEvent::Warning {
            domain: None,
            message,
        })
    };
    let repo = match git::open(repo_dir) {
        Ok(r) => r,
        Err(e) => {
            warn(&mut out, e.to_string());
            return out;
        }
    };
    let names = crate::names::RunNames::new(run_id);
    let prefix = names.admin_prefix();
    let admins: Vec<String> = repo
        .worktrees()
        .map(|w| w.iter().flatten().flatten().map(str::to_owned).collect())
        .unwrap_or_default();
    for admin in admins.iter().filter(|a| a.starts_with(&prefix)) {
        let Ok(wt) = repo.find_worktree(admin) else {
            continue;
        };
        let path = wt.path().to_path_buf();
        let domain = admin[prefix.len()..].to_string();
        if path.exists() {
            let _ = git::repair_worktree_link(&repo, admin, &path);
            let res = save_worktree(&path, run_id, &domain, "cleanup", copy);
            if let Err(e) = res
                && !force
            {
                warn(&mut out, format!("kept worktree {}: {e}", path.display()));
                continue;
            }
        }
        match git::remove_worktree(&repo, admin, &path) {
            Ok(()) => out.push(FarmEvent::WorktreeRemoved { domain }),
            Err(e) => warn(&mut out, e.to_string()),
        }
    }
    let into_tip = git::branch_tip(&repo, into);
    let merged = |tip: git2::Oid| into_tip.is_some_and(|i| git::is_merged(&repo, tip, i));
    let branches = git::branches_with_prefix(&repo, &names.branch_prefix()).unwrap_or_default();
    let mut refs: Vec<(String, git2::Oid)> = branches
        .iter()
        .filter_map(|b| Some((format!("refs/heads/{b}"), git::branch_tip(&repo, b)?)))
        .collect();
    refs.extend(
        repo.references_glob(&format!("{}*", names.hidden_prefix()))
            .map(|r| {
                r.flatten()
                    .filter_map(|r| Some((r.name().ok()?.to_owned(), r.target()?)))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
    );
    for (name, tip) in refs {
        let short = name
            .strip_prefix("refs/heads/")
            .unwrap_or(&name)
            .to_string();
        if force || merged(tip) {
            match repo.find_reference(&name).and_then(|mut r| r.delete()) {
                Ok(()) => out.push(FarmEvent::BranchDeleted { branch: short }),
                Err(e) => warn(&mut out, e.to_string()),
            }
        } else {
            out.push(FarmEvent::BranchKept {
                inspect: Some(format!("git log --stat {into}..{name}")),
                branch: short,
                reason: format!("holds commits not in `{into}`"),
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

/// At the start of a command: every run whose driver died with effects half done (a landing,
/// a worktree add…) gets them finished or undone now, so that nothing a dead run left blocks
/// the user or this command (a lock on their branch, a half-updated checkout). A run whose lock
/// is held is alive and left alone. Returns (run id, message) pairs to show. Blocking.
pub fn recover_dead_runs(common_dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for id in crate::record::list_runs(common_dir) {
        let paths = crate::record::RunPaths::new(common_dir, &id);
        let others_open = crate::journal::open_intents(&paths.dir)
            .iter()
            .any(|i| !crate::journal::is_mine(i));
        if !others_open {
            continue;
        }
        let Ok(_lock) = crate::lock::RunLock::acquire(&paths.lock(), &id) else {
            continue;
        };
        let Ok(rec) = RunRecord::load(&paths.record()) else {
            continue;
        };
        let mut events = Vec::new();
        kill_leftovers(&rec, &mut events);
        for ev in events {
            if let FarmEvent::Warning { message, .. } = ev {
                out.push((id.clone(), message));
            }
        }
    }
    out
}

/// Runs that left something in git (a branch `farm/<run>/…`, a ref `refs/farm/<run>/…`, a
/// worktree entry `farm-<run>-…`) but have no run record — a record deleted by hand, or a run
/// from before records were written first. Blocking.
pub fn orphan_runs(repo_dir: &Path, common_dir: &Path) -> Vec<String> {
    let recorded = crate::record::list_runs(common_dir);
    let mut found = std::collections::BTreeSet::new();
    if let Ok(repo) = git::open(repo_dir) {
        for b in git::branches_with_prefix(&repo, "farm/").unwrap_or_default() {
            if let Some(r) = crate::names::run_of_branch(&b) {
                found.insert(r.to_string());
            }
        }
        if let Ok(refs) = repo.references_glob("refs/farm/*") {
            for r in refs.flatten() {
                if let Some(id) = r
                    .name()
                    .ok()
                    .and_then(|n| n.strip_prefix("refs/farm/"))
                    .and_then(|n| n.split('/').next())
                {
                    found.insert(id.to_string());
                }
            }
        }
    }
    // Run ids are `YYYYMMDD-HHMMSS-xxxx`: a worktree entry `farm-<id>-<domain>` names its run.
    for e in std::fs::read_dir(common_dir.join("worktrees"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix("farm-")
            && rest.len() > 20
            && rest.as_bytes()[20] == b'-'
        {
            found.insert(rest[..20].to_string());
        }
    }
    found
        .into_iter()
        .filter(|id| !recorded.contains(id))
        .collect()
}
