//! The durable run record: everything known about a run, folded from its events and written
//! atomically to `<git-dir>/agent-farm/runs/<run-id>/run.json` after every change.
//!
//! Layout of a run directory:
//! ```text
//! <common-git-dir>/agent-farm/runs/<run-id>/
//!   run.json                  the record (this module)
//!   events.jsonl              every event, one JSON object per line
//!   report.json               the final report
//!   lock                      pid of the process driving the run
//!   verify.log                output of the verify command on the merged result
//!   <domain>/<domain>-output.log   agent stdout+stderr, all attempts
//!   <domain>/<domain>-setup.log    setup commands' output
//!   <domain>/<domain>-verify.log   the domain's own verify output
//!   <domain>/<domain>-result.json  the domain's final state
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::events::{FarmEvent, Timed};
use crate::plan::Plan;
pub use crate::vocab::Phase;
use crate::vocab::{AgentUsage, AttemptEnd, Denial, DomainStatus, Violation};

pub const RECORD_VERSION: u32 = 1;

/// Where a run keeps its files.
#[derive(Debug, Clone)]
pub struct RunPaths {
    pub dir: PathBuf,
}

impl RunPaths {
    pub fn runs_root(common_dir: &Path) -> PathBuf {
        common_dir.join("agent-farm").join("runs")
    }
    pub fn new(common_dir: &Path, run_id: &str) -> Self {
        RunPaths {
            dir: Self::runs_root(common_dir).join(run_id),
        }
    }
    pub fn record(&self) -> PathBuf {
        self.dir.join("run.json")
    }
    pub fn events(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }
    pub fn report(&self) -> PathBuf {
        self.dir.join("report.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }
    pub fn verify_log(&self) -> PathBuf {
        self.dir.join("verify.log")
    }
    pub fn domain_dir(&self, domain: &str) -> PathBuf {
        self.dir.join(domain)
    }
    pub fn domain_file(&self, domain: &str, what: &str) -> PathBuf {
        self.domain_dir(domain).join(format!("{domain}-{what}"))
    }
    pub fn output_log(&self, domain: &str) -> PathBuf {
        self.domain_file(domain, "output.log")
    }
    pub fn setup_log(&self, domain: &str) -> PathBuf {
        self.domain_file(domain, "setup.log")
    }
    pub fn domain_verify_log(&self, domain: &str) -> PathBuf {
        self.domain_file(domain, "verify.log")
    }
    pub fn result(&self, domain: &str) -> PathBuf {
        self.domain_file(domain, "result.json")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    pub pid: Option<u32>,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    pub end: Option<AttemptEnd>,
    /// What the agent itself reported (agents with structured output only).
    #[serde(default)]
    pub usage: Option<AgentUsage>,
    #[serde(default)]
    pub session_id: Option<String>,
    /// The latest tool use, for live display: "Edit src/auth/login.rs".
    #[serde(default)]
    pub last_activity: Option<String>,
    #[serde(default)]
    pub turns: u32,
    #[serde(default)]
    pub denials: Vec<Denial>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainRecord {
    pub name: String,
    pub status: DomainStatus,
    pub reason: Option<String>,
    pub branch: String,
    pub worktree: PathBuf,
    /// Name of git's administrative entry (`.git/worktrees/<admin>`).
    pub worktree_admin: String,
    pub worktree_created: bool,
    pub worktree_removed: bool,
    pub branch_deleted: bool,
    pub start_commit: Option<String>,
    pub head: Option<String>,
    pub merge_commit: Option<String>,
    pub attempts: Vec<Attempt>,
    pub files: Vec<String>,
    pub insertions: usize,
    pub deletions: usize,
    pub conflict_paths: Vec<String>,
    #[serde(default)]
    pub violations: Vec<Violation>,
    /// Processes that outlived its agent and were ended by the supervisor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ended_processes: Vec<crate::vocab::EndedProcess>,
    /// Set by resume: the agent already succeeded, only the steps after it remain.
    #[serde(default)]
    pub after_agent: bool,
    pub started_ms: Option<u64>,
    pub ended_ms: Option<u64>,
}

impl DomainRecord {
    /// Time spent running agent processes, over all attempts.
    pub fn agent_ms(&self) -> u64 {
        self.attempts
            .iter()
            .filter_map(|a| a.ended_ms.map(|e| e.saturating_sub(a.started_ms)))
            .sum()
    }
    /// Time from preparation start to the end of the domain's work (worktree, setup, agent, commit).
    pub fn busy_ms(&self) -> u64 {
        match (self.started_ms, self.ended_ms) {
            (Some(s), Some(e)) => e.saturating_sub(s),
            _ => 0,
        }
    }
    /// Cost reported by the agent over all attempts, in USD.
    pub fn cost_usd(&self) -> f64 {
        self.attempts
            .iter()
            .filter_map(|a| a.usage.as_ref())
            .map(|u| u.cost_usd)
            // An empty float sum is -0.0, which prints as "-0.0": start from +0.0.
            .fold(0.0, |a, b| a + b)
    }
    pub fn tokens(&self) -> (u64, u64) {
        self.attempts
            .iter()
            .filter_map(|a| a.usage.as_ref())
            .fold((0, 0), |(i, o), u| {
                (i + u.input_tokens, o + u.output_tokens)
            })
    }
    pub fn turns(&self) -> u32 {
        self.attempts.iter().map(|a| a.turns).sum()
    }
    pub fn denials(&self) -> Vec<Denial> {
        self.attempts
            .iter()
            .flat_map(|a| a.denials.iter().cloned())
            .collect()
    }
    pub fn session_id(&self) -> Option<&str> {
        self.attempts
            .iter()
            .rev()
            .find_map(|a| a.session_id.as_deref())
    }
    pub fn last_exit_code(&self) -> Option<i32> {
        self.attempts
            .last()
            .and_then(|a| a.end.as_ref())
            .and_then(AttemptEnd::exit_code)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRecord {
    pub commit: String,
    pub passed: Option<bool>,
    pub end: Option<AttemptEnd>,
    pub duration_ms: Option<u64>,
    pub log: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandRecord {
    pub landed: bool,
    pub commit: Option<String>,
    pub fast_forward: bool,
    pub reason: Option<String>,
    pub command: Option<String>,
}

/// Several domains changed the same path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collision {
    pub path: String,
    pub domains: Vec<String>,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOptions {
    pub jobs: usize,
    pub fail_fast: bool,
    pub keep_worktrees: bool,
    pub no_merge: bool,
    pub deadline_ms: Option<u64>,
    /// `--retries`, overriding the plan's `agent.retries` (kept so that resume honours it).
    #[serde(default)]
    pub retries: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub version: u32,
    pub run_id: String,
    pub pid: u32,
    pub repo: PathBuf,
    pub common_dir: PathBuf,
    pub plan: Plan,
    pub base: String,
    pub base_commit: String,
    pub into: String,
    /// Where `into` pointed when the run started (`None`: did not exist, or an older record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub into_commit: Option<String>,
    pub integration_branch: String,
    pub worktree_root: PathBuf,
    pub options: RunOptions,
    pub phase: Phase,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub domains: BTreeMap<String, DomainRecord>,
    pub integration_commit: Option<String>,
    pub verify: Option<VerifyRecord>,
    pub land: Option<LandRecord>,
    pub warnings: Vec<String>,
    #[serde(default)]
    pub collisions: Vec<Collision>,
    pub interrupted: Option<String>,
    pub exit_code: Option<i32>,
}

pub fn branch_name(run_id: &str, domain: &str) -> String {
    crate::names::RunNames::new(run_id).branch(domain)
}

pub fn integration_branch(run_id: &str) -> String {
    crate::names::RunNames::new(run_id).integration()
}

pub fn worktree_admin(run_id: &str, domain: &str) -> String {
    crate::names::RunNames::new(run_id).worktree_admin(domain)
}

impl RunRecord {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        run_id: String,
        repo: PathBuf,
        common_dir: PathBuf,
        plan: Plan,
        base: String,
        base_commit: String,
        into: String,
        worktree_root: PathBuf,
        options: RunOptions,
    ) -> Self {
        let domains = plan
            .domains
            .iter()
            .map(|d| {
                (
                    d.name.clone(),
                    DomainRecord {
                        name: d.name.clone(),
                        status: DomainStatus::Pending,
                        reason: None,
                        branch: branch_name(&run_id, &d.name),
                        worktree: crate::names::RunNames::new(run_id.as_str())
                            .worktree(&worktree_root, &d.name),
                        worktree_admin: worktree_admin(&run_id, &d.name),
                        worktree_created: false,
                        worktree_removed: false,
                        branch_deleted: false,
                        start_commit: None,
                        head: None,
                        merge_commit: None,
                        attempts: Vec::new(),
                        files: Vec::new(),
                        insertions: 0,
                        deletions: 0,
                        conflict_paths: Vec::new(),
                        violations: Vec::new(),
                        ended_processes: Vec::new(),
                        after_agent: false,
                        started_ms: None,
                        ended_ms: None,
                    },
                )
            })
            .collect();
        RunRecord {
            version: RECORD_VERSION,
            integration_branch: integration_branch(&run_id),
            run_id,
            pid: std::process::id(),
            repo,
            common_dir,
            plan,
            base,
            base_commit,
            into,
            into_commit: None,
            worktree_root,
            options,
            phase: Phase::Running,
            started_ms: crate::events::now_ms(),
            finished_ms: None,
            domains,
            integration_commit: None,
            verify: None,
            land: None,
            warnings: Vec::new(),
            collisions: Vec::new(),
            interrupted: None,
            exit_code: None,
        }
    }

    pub fn paths(&self) -> RunPaths {
        RunPaths::new(&self.common_dir, &self.run_id)
    }

    pub fn domain(&self, name: &str) -> Option<&DomainRecord> {
        self.domains.get(name)
    }

    /// Fold one event into the record. This is the only way run state changes.
    pub fn apply(&mut self, ev: &Timed) {
        use FarmEvent::*;
        let at = ev.at_ms;
        match &ev.event {
            RunStarted { into_commit, .. } => {
                if into_commit.is_some() {
                    self.into_commit = into_commit.clone();
                }
            }
            DomainPreparing {
                domain,
                start_commit,
            } => {
                if let Some(d) = self.domains.get_mut(domain) {
                    d.status = DomainStatus::Preparing;
                    d.start_commit = Some(start_commit.clone());
                    d.started_ms = Some(at);
                }
            }
            WorktreeReady { domain, .. } => {
                if let Some(d) = self.domains.get_mut(domain) {
                    d.worktree_created = true;
                }
            }
            AgentStarted {
                domain,
                attempt,
                pid,
                spawned_ms,
            } => {
                if let Some(d) = self.domains.get_mut(domain) {
                    d.status = DomainStatus::Running;
                    d.attempts.push(Attempt {
                        number: *attempt,
                        pid: Some(*pid),
                        started_ms: if *spawned_ms > 0 { *spawned_ms } else { at },
                        ended_ms: None,
                        end: None,
                        usage: None,
                        session_id: None,
                        last_activity: None,
                        turns: 0,
                        denials: Vec::new(),
                    });
                }
            }
            AgentFinished {
                domain,
                attempt,
                end,
                ..
            } => {
                if let Some(d) = self.domains.get_mut(domain) {
                    match d.attempts.iter_mut().find(|a| a.number == *attempt) {
                        Some(a) => {
                            a.ended_ms = Some(at);
                            a.end = Some(end.clone());
                        }
                        // A spawn failure has no AgentStarted.
                        None => d.attempts.push(Attempt {
                            number: *attempt,
                            pid: None,
                            started_ms: at,
                            ended_ms: Some(at),
                            end: Some(end.clone()),
                            usage: None,
                            session_id: None,
                            last_activity: None,
                            turns: 0,
                            denials: Vec::new(),
                        }),
                    }
                }
            }
            AgentSession {
                domain,
                attempt,
                session_id,
                ..
            } => {
                if let Some(a) = self.attempt_mut(domain, *attempt) {
                    a.session_id = Some(session_id.clone());
                }
            }
            AgentToolUse {
                domain,
                attempt,
                tool,
                path,
                turns,
                ..
            } => {
                if let Some(a) = self.attempt_mut(domain, *attempt) {
                    a.turns = *turns;
                    a.last_activity = Some(match path {
                        Some(p) => format!("{tool} {p}"),
                        None => tool.clone(),
                    });
                }
            }
            AgentRefused {
                domain,
                attempt,
                denial,
            } => {
                // One refusal is listed once, however many ways the agent reported it.
                if let Some(a) = self.attempt_mut(domain, *attempt)
                    && !a
                        .denials
                        .iter()
                        .any(|d| d.tool == denial.tool && d.path == denial.path)
                {
                    a.denials.push(denial.clone());
                }
            }
            AgentApiRetry { .. } => {}
            AgentUsageReported {
                domain,
                attempt,
                usage,
            } => {
                if let Some(a) = self.attempt_mut(domain, *attempt) {
                    a.turns = usage.turns;
                    if a.session_id.is_none() {
                        a.session_id = usage.session_id.clone();
                    }
                    a.usage = Some(usage.clone());
                }
            }
            AgentRetrying { .. } => {}
            Committed { domain, commit, .. } => {
                if let Some(d) = self.domains.get_mut(domain) {
                    d.head = Some(commit.clone());
                }
            }
            DomainFinished {
                domain,
                status,
                reason,
                head,
                files,
                insertions,
                deletions,
            } => {
                if let Some(d) = self.domains.get_mut(domain) {
                    d.status = *status;
                    d.reason = reason.clone();
                    if head.is_some() {
                        d.head = head.clone();
                    }
                    d.files = files.clone();
                    d.insertions = *insertions;
                    d.deletions = *deletions;
                    d.ended_ms = Some(at);
                }
            }
            DomainSkipped { domain, reason } => {
                if let Some(d) = self.domains.get_mut(domain) {
                    d.status = DomainStatus::Skipped;
                    d.reason = Some(reason.clone());
                }
            }
            Merged { domain, commit } => {
                if let Some(d) = self.domains.get_mut(domain) {
                    d.status = DomainStatus::Merged;
                    d.merge_commit = commit.clone();
                }
                if let Some(c) = commit {
                    self.integration_commit = Some(c.clone());
                }
            }
            ConflictPredicted { .. } => {}
            Conflict { domain, paths, .. } => {
                if let Some(d) = self.domains.get_mut(domain) {
                    d.status = DomainStatus::Conflicted;
                    d.conflict_paths = paths.clone();
                    d.reason = Some(format!("merge conflict in {}", paths.join(", ")));
                }
            }
            OwnershipViolation { domain, violation } => {
                if let Some(d) = self.domains.get_mut(domain)
                    && !d.violations.contains(violation)
                {
                    d.violations.push(violation.clone());
                }
            }
            Collision { path, domains } => {
                match self.collisions.iter_mut().find(|c| &c.path == path) {
                    Some(c) => c.domains = domains.clone(),
                    None => self.collisions.push(crate::record::Collision {
                        path: path.clone(),
                        domains: domains.clone(),
                        at_ms: at,
                    }),
                }
            }
            VerifyStarted { commit } => {
                self.phase = crate::vocab::Phase::Verifying;
                self.verify = Some(VerifyRecord {
                    commit: commit.clone(),
                    passed: None,
                    end: None,
                    duration_ms: None,
                    log: None,
                });
            }
            VerifyFinished {
                passed,
                end,
                duration_ms,
                log,
            } => {
                if let Some(v) = self.verify.as_mut() {
                    v.passed = Some(*passed);
                    v.end = Some(end.clone());
                    v.duration_ms = Some(*duration_ms);
                    v.log = Some(log.clone());
                }
            }
            Landed {
                commit,
                fast_forward,
                ..
            } => {
                self.land = Some(LandRecord {
                    landed: true,
                    commit: Some(commit.clone()),
                    fast_forward: *fast_forward,
                    reason: None,
                    command: None,
                });
            }
            NotLanded {
                reason, command, ..
            } => {
                self.land = Some(LandRecord {
                    landed: false,
                    commit: None,
                    fast_forward: false,
                    reason: Some(reason.clone()),
                    command: command.clone(),
                });
            }
            WorktreeRemoved { domain } => {
                if let Some(d) = self.domains.get_mut(domain) {
                    d.worktree_removed = true;
                }
            }
            BranchDeleted { branch } => {
                if let Some(d) = self.domains.values_mut().find(|d| &d.branch == branch) {
                    d.branch_deleted = true;
                }
            }
            BranchKept { .. } => {}
            ProcessesEnded {
                domain, processes, ..
            } => {
                if let Some(d) = self.domains.get_mut(domain) {
                    d.ended_processes.extend(processes.iter().cloned());
                }
            }
            Warning { domain, message } => self.warnings.push(match domain {
                Some(d) => format!("{d}: {message}"),
                None => message.clone(),
            }),
            Interrupted { reason } => {
                self.interrupted = Some(reason.clone());
                self.phase = crate::vocab::Phase::Interrupted;
            }
            Phase { phase } => {
                if self.phase != crate::vocab::Phase::Interrupted {
                    self.phase = *phase;
                }
            }
            Resumed { pid } => {
                self.pid = *pid;
                self.interrupted = None;
                self.exit_code = None;
                self.finished_ms = None;
                self.land = None;
                self.verify = None;
                self.phase = crate::vocab::Phase::Running;
            }
            DomainReset {
                domain,
                after_agent,
                ..
            } => {
                if let Some(d) = self.domains.get_mut(domain) {
                    d.after_agent = *after_agent;
                    d.status = DomainStatus::Pending;
                    d.reason = None;
                    d.ended_ms = None;
                    d.branch_deleted = false;
                    d.worktree_removed = false;
                }
            }
            MergeRequested => {
                self.options.no_merge = false;
                self.interrupted = None;
                self.exit_code = None;
                self.finished_ms = None;
                self.land = None;
                self.verify = None;
                self.phase = crate::vocab::Phase::Merging;
            }
            RunFinished { exit_code } => {
                self.exit_code = Some(*exit_code);
                self.finished_ms = Some(at);
                if self.phase != crate::vocab::Phase::Interrupted {
                    self.phase = crate::vocab::Phase::Finished;
                }
            }
        }
    }

    fn attempt_mut(&mut self, domain: &str, attempt: u32) -> Option<&mut Attempt> {
        self.domains
            .get_mut(domain)?
            .attempts
            .iter_mut()
            .find(|a| a.number == attempt)
    }

    /// Write the record atomically (temp file in the same directory, fsync, rename).
    pub fn save(&self) -> std::io::Result<()> {
        let path = self.paths().record();
        write_json_atomic(&path, self)
    }

    pub fn load(path: &Path) -> std::io::Result<RunRecord> {
        let text = std::fs::read(path)?;
        serde_json::from_slice(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }
}

pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer_pretty(&mut tmp, value).map_err(std::io::Error::other)?;
    tmp.write_all(b"\n")?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A fresh run id: sortable by time, unique enough for one repository.
pub fn new_run_id() -> String {
    let now = std::time::SystemTime::now();
    let stamp = humantime::format_rfc3339_seconds(now).to_string(); // 2026-11-25T11:30:31Z
    let digits: String = stamp.chars().filter(|c| c.is_ascii_digit()).collect();
    let nanos = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let salt = (nanos ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("{}-{}-{salt:04x}", &digits[..8], &digits[8..14])
}

/// Every recorded run id in the repository, oldest first.
pub fn list_runs(common_dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(RunPaths::runs_root(common_dir))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("run.json").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_cost_is_zero_not_minus_zero() {
        let plan = crate::plan::parse(
            Path::new("farm.yaml"),
            "version: 1\nagent:\n  preset: sim\ndomains:\n  - name: a\n    owns: [\"a/**\"]\n    prompt: x\n",
            |_| Ok(String::new()),
        )
        .unwrap();
        let opts = RunOptions {
            jobs: 1,
            fail_fast: false,
            keep_worktrees: false,
            no_merge: false,
            deadline_ms: None,
            retries: None,
        };
        let rec = RunRecord::new(
            "r".into(),
            "/r".into(),
            "/r/.git".into(),
            plan,
            "main".into(),
            "b".repeat(40),
            "main".into(),
            "/wt".into(),
            opts,
        );
        let cost = rec.domain("a").unwrap().cost_usd();
        assert!(cost == 0.0 && cost.is_sign_positive(), "{cost:?}");
        assert_eq!(format!("{cost:.2}"), "0.00");
    }

    #[test]
    fn run_ids_sort_by_time() {
        let id = new_run_id();
        assert_eq!(id.len(), "20261125-113031-abcd".len(), "{id}");
        assert!(crate::plan::check_name(&id).is_ok());
    }
}
