//! The effects of one domain, each a task the dispatcher starts: prepare (branch, worktree,
//! copies, setup), one agent attempt and the commit after it, conclude (audit, policy, the
//! domain's own verify). This is the unit a remote worker would run on its own; it reports only
//! through messages to the dispatcher and never touches the run record or other domains.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use super::agent::{self, Vars};
use super::dispatcher::{DomainMsg, Input};
use super::process::{self, Cancel, CancelRx, ProcSpec};
use super::stream::{Observation, StreamState};
use crate::events::{AttemptEnd, DomainStatus, FarmEvent, now_ms};
use crate::events::{Detected, Violation};
use crate::git;
use crate::ownership::{AuditChange, AuditKind, Finding, OwnershipMap};
use crate::plan::{AgentConfig, CommandSpec, Domain, Policy};
use crate::record::RunPaths;

/// Everything needed to run one domain.
#[derive(Debug, Clone)]
pub struct DomainJob {
    pub run_id: String,
    pub domain: Domain,
    pub repo_dir: PathBuf,
    pub common_dir: PathBuf,
    pub paths: RunPaths,
    pub branch: String,
    pub worktree: PathBuf,
    pub worktree_admin: String,
    pub start_commit: git2::Oid,
    pub agent: AgentConfig,
    pub timeout: Duration,
    pub copy: Vec<String>,
    pub setup: Vec<CommandSpec>,
    pub self_exe: PathBuf,
    pub ownership: OwnershipMap,
    pub policy: Policy,
    /// Continue a domain of an interrupted run: its branch (and maybe worktree) exist already.
    pub resume: bool,
    /// The run's intent journal, for the branch and worktree this job creates.
    pub journal: std::sync::Arc<crate::journal::Journal>,
    pub names: crate::names::RunNames,
    /// Live watching: the run's watcher (how the worktree ended up watched is reported as an input).
    pub watch: Option<std::sync::Arc<crate::watch::Watcher>>,
    /// The run's protected zones for the write guard; `None`: no guard (`ownership.guard: false`).
    pub guard_zones: Option<std::sync::Arc<Vec<crate::supervise::Zone>>>,
}

/// Where a domain's effects report: the driver's input channel.
pub type Inputs = mpsc::Sender<(u64, Input)>;

/// Sends a domain's messages to the dispatcher, stamped with the time they happened.
#[derive(Clone)]
pub struct Emitter {
    pub tx: Inputs,
    pub domain: String,
}

impl Emitter {
    async fn msg(&self, msg: DomainMsg) {
        // The dispatcher outlives every domain task; a closed channel means it is shutting down.
        let _ = self
            .tx
            .send((
                now_ms(),
                Input::Domain {
                    domain: self.domain.clone(),
                    msg,
                },
            ))
            .await;
    }

    async fn send(&self, event: FarmEvent) {
        self.msg(DomainMsg::Observed(event)).await
    }
}

fn commit_message(job: &DomainJob, attempt: u32, end: &AttemptEnd) -> String {
    let first = job
        .domain
        .prompt
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let mut summary: String = first.trim().chars().take(60).collect();
    if first.trim().chars().count() > 60 {
        summary.push('…');
    }
    let outcome = if end.success() {
        "success".to_string()
    } else {
        end.describe()
    };
    format!(
        "farm({domain}): {summary}\n\nWork of agent-farm domain `{domain}`, attempt {attempt}, run {run}: {outcome}.\n\nFarm-Run: {run}\nFarm-Domain: {domain}\nFarm-Attempt: {attempt}\nFarm-Outcome: {outcome}\n",
        domain = job.domain.name,
        run = job.run_id,
    )
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, git::GitError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("internal error: {e}")),
    }
}

/// Written once the worktree's checkout is complete, before anything runs in it: unlike the
/// record (written by the dispatcher, a moment later), it is on disk before the agent starts, so
/// recovery can tell a finished checkout holding agent work from one a crash cut short.
pub fn checkout_marker(paths: &RunPaths, domain: &str) -> PathBuf {
    paths.domain_file(domain, "checkout.done")
}

fn prepare_worktree(job: &DomainJob) -> Result<(), git::GitError> {
    prepare_checkout(job)?;
    let marker = checkout_marker(&job.paths, &job.domain.name);
    if let Some(d) = marker.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    std::fs::write(&marker, "").map_err(|source| git::GitError::Io {
        context: format!("cannot write {}", marker.display()),
        source,
    })
}

fn prepare_checkout(job: &DomainJob) -> Result<(), git::GitError> {
    let repo = git::open(&job.repo_dir)?;
    if job.resume && git::branch_exists(&repo, &job.branch) {
        // Resuming: continue on the domain's branch, in its worktree when that survived.
        let usable = job.worktree.join(".git").exists()
            && git::open(&job.worktree).is_ok_and(|r| {
                r.head()
                    .ok()
                    .and_then(|h| h.shorthand().ok().map(str::to_owned))
                    .is_some_and(|b| b == job.branch)
            });
        if usable {
            return Ok(());
        }
        let (j, n) = (&job.journal, &job.names);
        // Never remove what a worktree holds without keeping it first (resume saved it already;
        // this is the last line of defence).
        let holds_files = std::fs::read_dir(&job.worktree).is_ok_and(|mut d| d.next().is_some());
        if holds_files && checkout_marker(&job.paths, &job.domain.name).exists() {
            let msg = format!(
                "farm({name}): files kept before its worktree is made again\n\nFarm-Run: {run}\nFarm-Domain: {name}\nFarm-Outcome: recovered\n",
                name = job.domain.name,
                run = job.run_id
            );
            if job.worktree.join(".git").exists() {
                super::effects::commit_work(
                    j,
                    &repo,
                    n,
                    &job.domain.name,
                    &job.worktree,
                    &msg,
                    &job.copy,
                    None,
                )?;
                // What no commit carries would go with the worktree: it stays, and so does the
                // domain, failed, until the user has taken it.
                let unsaved = super::finish::unsaved_work(
                    &job.ownership,
                    &job.domain.name,
                    &job.worktree,
                    &job.copy,
                )?;
                if !unsaved.is_empty() {
                    return Err(git::GitError::HoldsUnsaved {
                        path: job.worktree.clone(),
                        paths: unsaved.iter().map(|u| u.describe()).collect(),
                    });
                }
            } else {
                git::snapshot_dir_onto_branch(&repo, &job.worktree, &job.branch, &msg, &job.copy)?;
            }
        }
        super::effects::remove_worktree(j, &repo, n, &job.worktree_admin, &job.worktree)?;
        super::effects::add_worktree(j, &repo, n, &job.worktree_admin, &job.worktree, &job.branch)?;
    } else {
        if git::branch_exists(&repo, &job.branch) {
            return Err(git::GitError::BranchExists {
                branch: job.branch.clone(),
            });
        }
        let (j, n) = (&job.journal, &job.names);
        super::effects::create_branch(j, &repo, n, &job.branch, job.start_commit)?;
        super::effects::add_worktree(j, &repo, n, &job.worktree_admin, &job.worktree, &job.branch)?;
    }
    for rel in &job.copy {
        let from = job.repo_dir.join(rel);
        let to = job.worktree.join(rel);
        if let Some(p) = to.parent() {
            std::fs::create_dir_all(p).map_err(|source| git::GitError::Io {
                context: format!("cannot create {}", p.display()),
                source,
            })?;
        }
        std::fs::copy(&from, &to).map_err(|source| git::GitError::Io {
            context: format!("cannot copy {} into the worktree", from.display()),
            source,
        })?;
    }
    Ok(())
}

fn spec_for(job: &DomainJob, argv: Vec<String>, log: PathBuf) -> ProcSpec {
    let prompt = agent::full_prompt(&job.agent, &job.domain, &job.worktree);
    let vars = Vars {
        prompt: &prompt,
        domain: &job.domain.name,
        worktree: &job.worktree,
        run_id: &job.run_id,
        branch: &job.branch,
    };
    ProcSpec {
        argv,
        cwd: job.worktree.clone(),
        env: agent::env(&job.agent, &vars),
        log,
        timeout: job.timeout,
        grace: job.agent.grace,
        idle_timeout: None,
        stdout_lines: None,
        supervise: Some(process::Supervision {
            exe: job.self_exe.clone(),
            guard: None,
            reports: None,
        }),
    }
}

/// Where the domain's agent may not write: every protected zone of the run (see
/// [`crate::supervise`]), except its own worktree, git's entry for it and its branch's ref.
fn guard_policy(job: &DomainJob) -> Option<crate::supervise::GuardPolicy> {
    let zones = job.guard_zones.as_ref()?;
    let canon = crate::supervise::canonical;
    let common = canon(&job.common_dir);
    let ref_file = common.join("refs/heads").join(&job.branch);
    let mut lock = ref_file.clone().into_os_string();
    lock.push(".lock");
    Some(crate::supervise::GuardPolicy {
        own: vec![
            canon(&job.worktree),
            common.join("worktrees").join(&job.worktree_admin),
            ref_file,
            PathBuf::from(lock),
            common.join("logs/refs/heads").join(&job.branch),
        ],
        zones: zones.to_vec(),
    })
}

/// What a refused write reached, for the report: another domain's worktree is named.
fn outside_label(
    run_dir: &Path,
    common: &Path,
    path: &Path,
    zone: &str,
) -> (Option<String>, String) {
    if let Some(rest) = path.strip_prefix(run_dir).ok()
        && let Some(first) = rest.components().next()
    {
        let other = first.as_os_str().to_string_lossy().into_owned();
        if other == ".verify" {
            return (None, "the verify worktree".into());
        }
        return (
            Some(other.clone()),
            format!("the worktree of domain {other}"),
        );
    }
    // In git's directory: name the ref or the index rather than the directory.
    if let Ok(rest) = path.strip_prefix(common) {
        let rest = rest.to_string_lossy();
        let rest = rest.strip_suffix(".lock").unwrap_or(&rest);
        if rest.starts_with("refs/") {
            return (None, format!("ref {rest}"));
        }
        if rest == "index" {
            return (None, "the main checkout's index".into());
        }
        if rest == "HEAD" || rest == "packed-refs" || rest == "config" {
            return (None, format!("git's {rest}"));
        }
    }
    (None, zone.to_string())
}

/// Create the domain's branch and worktree, watch it, run setup. Reports `Prepared`.
pub async fn prepare(job: DomainJob, em: Emitter, mut cancel: CancelRx, skip_setup: bool) {
    let result = prepare_inner(&job, &em, &mut cancel, skip_setup).await;
    em.msg(DomainMsg::Prepared(result)).await;
}

async fn prepare_inner(
    job: &DomainJob,
    em: &Emitter,
    cancel: &mut CancelRx,
    skip_setup: bool,
) -> Result<(), (DomainStatus, String)> {
    let name = job.domain.name.clone();
    let already = cancel.borrow().clone();
    if let Some(c) = already {
        return Err((
            DomainStatus::Cancelled,
            format!("not started: {}", c.reason),
        ));
    }
    let j = job.clone();
    if let Err(e) = blocking(move || prepare_worktree(&j)).await {
        return Err((DomainStatus::Failed, format!("worktree: {e}")));
    }
    // Watch the worktree before anything runs in it, so that no early write goes unseen.
    if let Some(watcher) = &job.watch {
        let mode = watcher
            .add(&name, &job.worktree)
            .await
            .map_err(|e| e.to_string());
        let _ = em
            .tx
            .send((
                now_ms(),
                Input::WatchMode {
                    domain: name.clone(),
                    mode,
                },
            ))
            .await;
    }
    em.send(FarmEvent::WorktreeReady {
        domain: name.clone(),
        path: job.worktree.display().to_string(),
        branch: job.branch.clone(),
    })
    .await;
    // Setup commands: a failure fails this domain only. A resumed domain whose agent had
    // already succeeded goes straight to its audit.
    for cmd in job.setup.iter().filter(|_| !skip_setup) {
        let log = job.paths.setup_log(&name);
        let _ = process::log_line(&log, &format!("$ {}", cmd.display()));
        let r = process::run(&spec_for(job, cmd.argv(), log.clone()), |_| {}, cancel).await;
        if !r.ended.is_empty() {
            let _ = process::log_line(
                &log,
                &format!(
                    "agent-farm: ended {} process(es) `{}` left running: {}",
                    r.ended.len(),
                    cmd.display(),
                    crate::vocab::list_ended(&r.ended)
                ),
            );
        }
        if !r.end.success() {
            let status = match r.end {
                AttemptEnd::Cancelled { .. } => DomainStatus::Cancelled,
                _ => DomainStatus::Failed,
            };
            return Err((
                status,
                format!("setup `{}` failed: {}", cmd.display(), r.end.describe()),
            ));
        }
    }
    Ok(())
}

/// Run one agent attempt and commit whatever it left. Reports `AttemptDone`.
pub async fn attempt(job: DomainJob, em: Emitter, cancel: CancelRx, attempt: u32) {
    let name = job.domain.name.clone();
    let prompt = agent::full_prompt(&job.agent, &job.domain, &job.worktree);
    let vars = Vars {
        prompt: &prompt,
        domain: &name,
        worktree: &job.worktree,
        run_id: &job.run_id,
        branch: &job.branch,
    };
    let argv = agent::argv(&job.agent, &job.self_exe, &vars);
    let log = job.paths.output_log(&name);
    let _ = process::log_line(
        &log,
        &format!("=== agent-farm: domain {name}, attempt {attempt}, argv {argv:?}"),
    );
    let (pid_tx, pid_rx) = tokio::sync::oneshot::channel();
    let mut spec = spec_for(&job, argv.clone(), log.clone());
    spec.idle_timeout = job.agent.idle_timeout;
    let (line_tx, mut line_rx) = mpsc::channel::<String>(256);
    let structured = agent::streams_json(&job.agent);
    if structured {
        spec.stdout_lines = Some(line_tx);
    } else {
        drop(line_tx);
    }
    // The write guard's reports go to the dispatcher as they happen.
    let (guard_tx, mut guard_rx) = tokio::sync::mpsc::unbounded_channel();
    if let Some(sv) = spec.supervise.as_mut() {
        sv.guard = guard_policy(&job);
        sv.reports = Some(guard_tx);
        if sv.guard.is_some() {
            // git's housekeeping after an agent's own commit (gc.pid, packed-refs) writes into
            // git's shared directory: not the agent's doing, so not done.
            for (k, v) in [
                ("GIT_CONFIG_COUNT", "2"),
                ("GIT_CONFIG_KEY_0", "gc.auto"),
                ("GIT_CONFIG_VALUE_0", "0"),
                ("GIT_CONFIG_KEY_1", "maintenance.auto"),
                ("GIT_CONFIG_VALUE_1", "false"),
            ] {
                spec.env.push((k.into(), v.into()));
            }
        }
    }
    // Where refused writes went is told apart by these two (resolved once, as the guard's paths).
    let run_dir = crate::supervise::canonical(job.worktree.parent().unwrap_or(&job.worktree));
    let common = crate::supervise::canonical(&job.common_dir);
    let gem = em.clone();
    let guard_task = tokio::spawn(async move {
        while let Some(r) = guard_rx.recv().await {
            let msg = match r {
                crate::supervise::Report::Guard { active, reason } => {
                    DomainMsg::Guard { active, reason }
                }
                crate::supervise::Report::Blocked {
                    pid,
                    command,
                    op,
                    path,
                    zone,
                } => {
                    let (owner, outside) = outside_label(&run_dir, &common, &path, &zone);
                    DomainMsg::Blocked {
                        attempt,
                        pid,
                        command,
                        op,
                        path: path.display().to_string(),
                        owner,
                        outside,
                    }
                }
                _ => continue,
            };
            gem.msg(msg).await;
        }
    });
    let mut c2 = cancel.clone();
    let spawned_ms = now_ms();
    let run = tokio::spawn(async move {
        process::run(
            &spec,
            |pid| {
                let _ = pid_tx.send(pid);
            },
            &mut c2,
        )
        .await
    });
    if let Ok(pid) = pid_rx.await {
        em.send(FarmEvent::AgentStarted {
            domain: name.clone(),
            attempt,
            pid,
            spawned_ms,
        })
        .await;
    }
    // Live activity from the agent's own event stream, until its stdout closes.
    let mut stream = StreamState::default();
    while let Some(line) = line_rx.recv().await {
        for obs in stream.feed(&line) {
            if let Some(ev) = observation_event(&name, attempt, &job.worktree, &stream, obs) {
                em.send(ev).await;
            }
        }
    }
    let mut r = match run.await {
        Ok(r) => r,
        Err(e) => process::ProcResult {
            end: AttemptEnd::SpawnFailed {
                message: format!("internal error: {e}"),
            },
            duration: Duration::ZERO,
            leftovers: Vec::new(),
            ended: Vec::new(),
        },
    };
    // Every refused write is reported before the attempt is.
    let _ = guard_task.await;
    let refused = stream.usage.denials.len();
    if structured && !matches!(r.end, AttemptEnd::SpawnFailed { .. }) {
        em.send(FarmEvent::AgentUsageReported {
            domain: name.clone(),
            attempt,
            usage: stream.usage.clone(),
        })
        .await;
        // The exit code alone is not the truth: the agent's result says whether it worked.
        if let AttemptEnd::Exited { code } = r.end
            && let Some((failure, message)) = stream.failure(Some(code))
        {
            r.end = AttemptEnd::AgentFailed {
                failure,
                code: Some(code),
                message,
            };
        }
    }
    if !r.leftovers.is_empty() {
        em.send(FarmEvent::Warning {
            domain: Some(name.clone()),
            message: format!(
                "agent left {} process(es) running in its group (pids {:?}); killed them",
                r.leftovers.len(),
                r.leftovers
            ),
        })
        .await;
    }
    if !r.ended.is_empty() {
        em.send(FarmEvent::ProcessesEnded {
            domain: name.clone(),
            attempt,
            processes: r.ended.clone(),
        })
        .await;
    }
    let _ = process::log_line(
        &log,
        &format!(
            "=== agent-farm: attempt {attempt} ended: {}",
            r.end.describe()
        ),
    );
    em.send(FarmEvent::AgentFinished {
        domain: name.clone(),
        attempt,
        end: r.end.clone(),
        duration_ms: r.duration.as_millis() as u64,
    })
    .await;
    // Commit whatever the attempt left, success or not: nothing an agent wrote is lost.
    // Commits the agent made on a detached HEAD or another branch are secured first.
    let msg = commit_message(&job, attempt, &r.end);
    let (wt, exclude, branch) = (job.worktree.clone(), job.copy.clone(), job.branch.clone());
    let (repo_dir, admin) = (job.repo_dir.clone(), job.worktree_admin.clone());
    let (journal, names, dname) = (job.journal.clone(), job.names.clone(), name.clone());
    let after = Some((attempt, r.end.success()));
    let committed = blocking(move || {
        let repo = git::open(&repo_dir)?;
        let repaired = git::repair_worktree_link(&repo, &admin, &wt)?;
        if repaired {
            tracing::warn!("restored the .git file of {}", wt.display());
        }
        debug_assert_eq!(branch, names.branch(&dname));
        super::effects::commit_work(&journal, &repo, &names, &dname, &wt, &msg, &exclude, after)
    })
    .await;
    let commit_error = match committed {
        Ok((before, commit, after)) => {
            for state in [before, after] {
                match state {
                    git::HeadState::OnBranch => {}
                    git::HeadState::FastForwarded { to } => {
                        em.send(FarmEvent::Warning {
                            domain: Some(name.clone()),
                            message: format!(
                                "the agent moved HEAD off its branch and committed; {} was fast-forwarded to {to}",
                                job.branch
                            ),
                        })
                        .await
                    }
                    git::HeadState::Stray { commit } => {
                        em.send(FarmEvent::Warning {
                            domain: Some(name.clone()),
                            message: format!(
                                "the agent left its branch: HEAD is at {commit}, kept as {}",
                                job.names.off_branch_ref(&name)
                            ),
                        })
                        .await
                    }
                }
            }
            if let Some(oid) = commit {
                em.send(FarmEvent::Committed {
                    domain: name.clone(),
                    commit: oid.to_string(),
                    note: format!("attempt {attempt}: {}", r.end.describe()),
                })
                .await;
            }
            None
        }
        Err(e) => {
            // The whole of it (a refusing hook's output) where `agent-farm logs` shows it.
            let _ = process::log_line(&log, &format!("=== agent-farm: commit failed: {e}"));
            Some(e)
        }
    };
    em.msg(DomainMsg::AttemptDone {
        attempt,
        end: r.end,
        refused,
        commit_error,
    })
    .await;
}

/// After the last attempt: the ownership audit and policy, the domain's own verify, its change
/// stats. Reports `Concluded`.
pub async fn conclude(
    job: DomainJob,
    em: Emitter,
    mut cancel: CancelRx,
    last_end: AttemptEnd,
    refused: usize,
) {
    let name = job.domain.name.clone();
    let mut head: Option<String> = None;
    let (mut status, mut reason) = match &last_end {
        e if e.success() && refused > 0 => (
            DomainStatus::Succeeded,
            Some(format!(
                "partial: {refused} tool call(s) refused by the agent's permission rules"
            )),
        ),
        e if e.success() => (DomainStatus::Succeeded, None),
        AttemptEnd::TimedOut => (
            DomainStatus::TimedOut,
            Some(format!(
                "agent timed out after {}",
                humantime::format_duration(job.timeout)
            )),
        ),
        AttemptEnd::Cancelled { reason } => (DomainStatus::Cancelled, Some(reason.clone())),
        e @ AttemptEnd::Stalled { .. } => (DomainStatus::TimedOut, Some(e.describe())),
        e => (
            DomainStatus::Failed,
            Some(format!("agent failed: {}", e.describe())),
        ),
    };

    // The authoritative audit: every path of the domain's diff, before anything merges.
    let (wt, start, branch) = (job.worktree.clone(), job.start_commit, job.branch.clone());
    let map = job.ownership.clone();
    let dname = name.clone();
    let findings = blocking(move || {
        let repo = git::open(&wt)?;
        let tip = git::branch_tip(&repo, &branch).unwrap_or(start);
        let changes: Vec<AuditChange> = git::diff_entries(&repo, start, tip)?
            .into_iter()
            .filter_map(|e| {
                let kind = match e.status {
                    git2::Delta::Added | git2::Delta::Copied => AuditKind::Added,
                    git2::Delta::Deleted => AuditKind::Deleted,
                    git2::Delta::Renamed => AuditKind::Renamed,
                    git2::Delta::Modified | git2::Delta::Typechange => AuditKind::Modified,
                    _ => return None,
                };
                Some(AuditChange {
                    kind,
                    old_path: e.old_path,
                    new_path: e.new_path,
                    symlink_target: e.symlink_target,
                })
            })
            .collect();
        Ok((tip, crate::ownership::audit(&map, &dname, &changes)))
    })
    .await;
    match findings {
        Ok((_, findings)) if findings.is_empty() => {}
        Ok((tip, findings)) => {
            let (s2, r2) = apply_policy(&job, &em, status, tip, findings).await;
            if let Some(s2) = s2 {
                status = s2;
                reason = r2;
            }
        }
        Err(e) => {
            em.send(FarmEvent::Warning {
                domain: Some(name.clone()),
                message: format!("ownership audit failed: {e}"),
            })
            .await;
            if status == DomainStatus::Succeeded {
                status = DomainStatus::Blocked;
                reason = Some(format!("the ownership audit failed: {e}"));
            }
        }
    }

    // What the agent wrote that no commit carries (a nested repository, an owned gitignored
    // file, a file in a submodule's directory): each reported; cleanup keeps the worktree.
    let (wt, map, dname, copy) = (
        job.worktree.clone(),
        job.ownership.clone(),
        name.clone(),
        job.copy.clone(),
    );
    match blocking(move || super::finish::unsaved_work(&map, &dname, &wt, &copy)).await {
        Ok(unsaved) if !unsaved.is_empty() => {
            for u in &unsaved {
                em.send(FarmEvent::Warning {
                    domain: Some(name.clone()),
                    message: format!("{}; kept in its worktree", u.describe()),
                })
                .await;
            }
            if status == DomainStatus::Succeeded {
                let paths: Vec<String> = unsaved.iter().map(|u| u.path().to_string()).collect();
                let note = format!(
                    "{} written path(s) in no commit, kept in its worktree {}: {}",
                    unsaved.len(),
                    job.worktree.display(),
                    super::finish::summarize(&paths)
                );
                reason = Some(match reason {
                    Some(r) => format!("{r}; {note}"),
                    None => format!("partial: {note}"),
                });
            }
        }
        Ok(_) => {}
        Err(e) => {
            em.send(FarmEvent::Warning {
                domain: Some(name.clone()),
                message: format!("cannot tell what its worktree holds outside any commit: {e}"),
            })
            .await
        }
    }

    if status == DomainStatus::Succeeded
        && let Some(v) = &job.domain.verify
    {
        let log = job.paths.domain_verify_log(&name);
        let _ = process::log_line(&log, &format!("$ {}", v.display()));
        let r = process::run(&spec_for(&job, v.argv(), log), |_| {}, &mut cancel).await;
        if let AttemptEnd::Cancelled { reason: why } = &r.end {
            status = DomainStatus::Cancelled;
            reason = Some(why.clone());
        } else if !r.end.success() {
            status = DomainStatus::Failed;
            reason = Some(format!(
                "domain verify `{}` failed: {}",
                v.display(),
                r.end.describe()
            ));
        }
    }

    let (wt, start, branch) = (job.worktree.clone(), job.start_commit, job.branch.clone());
    let stats = blocking(move || {
        let repo = git::open(&wt)?;
        let tip = git::branch_tip(&repo, &branch).unwrap_or(start);
        Ok((tip, git::change_stats(&repo, start, tip)?))
    })
    .await;
    let (files, insertions, deletions) = match stats {
        Ok((tip, s)) => {
            head = Some(tip.to_string());
            (s.files, s.insertions, s.deletions)
        }
        Err(e) => {
            em.send(FarmEvent::Warning {
                domain: Some(name.clone()),
                message: format!("cannot compute changes: {e}"),
            })
            .await;
            (Vec::new(), 0, 0)
        }
    };
    em.msg(DomainMsg::Concluded {
        status,
        reason,
        head,
        files,
        insertions,
        deletions,
    })
    .await;
}

/// Apply the ownership policy to audit findings; returns the domain's new status and reason
/// when the policy changes them.
async fn apply_policy(
    job: &DomainJob,
    em: &Emitter,
    status: DomainStatus,
    tip: git2::Oid,
    findings: Vec<Finding>,
) -> (Option<DomainStatus>, Option<String>) {
    let name = job.domain.name.clone();
    let succeeded = status == DomainStatus::Succeeded;
    let summary = findings
        .iter()
        .take(3)
        .map(|f| {
            format!(
                "{} ({})",
                f.path,
                f.owner.as_deref().unwrap_or("owned by nobody")
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let n = findings.len();
    let (action, outcome) = match job.policy {
        Policy::Warn => ("reported".to_string(), (None, None)),
        Policy::Block if succeeded => (
            "blocked".to_string(),
            (
                Some(DomainStatus::Blocked),
                Some(format!("{n} change(s) outside its domain: {summary}")),
            ),
        ),
        Policy::Revert if succeeded => {
            let keep = job.names.dropped_ref(&name);
            let patch = job.paths.domain_file(&name, "dropped.patch");
            let paths: Vec<String> = findings.iter().flat_map(|f| f.revert.clone()).collect();
            let (wt, branch, start, msg) = (
                job.worktree.clone(),
                job.branch.clone(),
                job.start_commit,
                format!(
                    "farm({name}): drop changes outside the domain\n\nReverted by agent-farm (ownership policy: revert). The dropped changes are kept in {keep}.\n\nFarm-Run: {}\nFarm-Domain: {name}\n",
                    job.run_id
                ),
            );
            let (keep2, patch2) = (keep.clone(), patch.clone());
            let res = blocking(move || {
                let repo = git::open(&wt)?;
                repo.reference(
                    &keep2,
                    tip,
                    true,
                    "agent-farm: changes dropped by the revert policy",
                )
                .map_err(|source| git::GitError::Git {
                    context: format!("cannot create {keep2}"),
                    source,
                })?;
                let text = git::patch_for(&repo, start, tip, &paths)?;
                if let Some(d) = patch2.parent() {
                    let _ = std::fs::create_dir_all(d);
                }
                std::fs::write(&patch2, text).map_err(|source| git::GitError::Io {
                    context: format!("cannot write {}", patch2.display()),
                    source,
                })?;
                git::revert_paths(&wt, &branch, start, &paths, &msg)
            })
            .await;
            match res {
                Ok(c) => {
                    em.send(FarmEvent::Committed {
                        domain: name.clone(),
                        commit: c.to_string(),
                        note: format!("dropped {n} change(s) outside the domain"),
                    })
                    .await;
                    (
                        format!("reverted (kept in {keep} and {})", patch.display()),
                        (
                            None,
                            Some(format!(
                                "{n} change(s) outside its domain dropped: {summary}"
                            )),
                        ),
                    )
                }
                Err(e) => (
                    format!("revert failed: {e}"),
                    (
                        Some(DomainStatus::Blocked),
                        Some(format!("could not drop changes outside its domain: {e}")),
                    ),
                ),
            }
        }
        _ => ("reported".to_string(), (None, None)),
    };
    for f in findings {
        em.send(FarmEvent::OwnershipViolation {
            domain: name.clone(),
            violation: Violation {
                path: f.path,
                owner: f.owner,
                change: f.change,
                detected: Detected::Audit,
                action: action.clone(),
                outside: None,
            },
        })
        .await;
    }
    outcome
}

/// Paths inside the worktree are shown relative to it.
fn relative(path: Option<String>, worktree: &std::path::Path) -> Option<String> {
    path.map(|p| match std::path::Path::new(&p).strip_prefix(worktree) {
        Ok(rel) => rel.display().to_string(),
        Err(_) => p,
    })
}

fn observation_event(
    domain: &str,
    attempt: u32,
    worktree: &std::path::Path,
    stream: &StreamState,
    obs: Observation,
) -> Option<FarmEvent> {
    let domain = domain.to_string();
    Some(match obs {
        Observation::Session { session_id, model } => FarmEvent::AgentSession {
            domain,
            attempt,
            session_id,
            model,
        },
        Observation::ToolUse { tool, path } => FarmEvent::AgentToolUse {
            domain,
            attempt,
            tool,
            path: relative(path, worktree),
            turns: stream.usage.turns,
            tokens: stream.usage.live_tokens,
        },
        Observation::Refused(mut denial) => {
            denial.path = relative(denial.path, worktree);
            FarmEvent::AgentRefused {
                domain,
                attempt,
                denial,
            }
        }
        Observation::ApiRetry {
            status,
            error,
            delay_ms,
            ..
        } => FarmEvent::AgentApiRetry {
            domain,
            attempt,
            status,
            error,
            delay_ms,
        },
        Observation::Result => return None,
    })
}

/// Cancel value used by the dispatcher.
pub fn cancel(reason: impl Into<String>, immediate: bool) -> Option<Cancel> {
    Some(Cancel {
        reason: reason.into(),
        immediate,
        interrupt: false,
    })
}
