//! The durable run record: everything known about a run, folded from its events and written
//! atomically to `<git-dir>/agent-farm/runs/<run-id>/run.json` after every change.
//!
//! Layout of a run directory:
//! ```text
//! <common-git-dir>/agent-farm/runs/<run-id>/
//!   run.json                  the record (this module)
//!   events.jsonl              every event, one JSON object per line
//!   report.json               the final report
//!   report.html               the final report as one self-contained page (`export::html`)
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
    pub fn report_html(&self) -> PathBuf {
        self.dir.join("report.html")
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
    /// Time the farm was paused (job control) while this attempt ran.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub paused_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
    /// Work time of the domain's earlier runs, before a resume ran it again (within the
    /// invocations that ran it, never the time between them).
    #[serde(default)]
    pub prior_busy_ms: u64,
    /// Time the farm was paused (job control) during the domain's current run.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub paused_ms: u64,
}

impl DomainRecord {
    /// Time spent running agent processes, over all attempts.
    pub fn agent_ms(&self) -> u64 {
        self.attempts
            .iter()
            .filter_map(|a| {
                a.ended_ms
                    .map(|e| e.saturating_sub(a.started_ms).saturating_sub(a.paused_ms))
            })
            .sum()
    }
    /// Time from preparation start to the end of the domain's work (worktree, setup, agent,
    /// commit), over every time it ran. Never less than [`Self::agent_ms`]: its agents ran
    /// within it.
    pub fn busy_ms(&self) -> u64 {
        let current = match (self.started_ms, self.ended_ms) {
            (Some(s), Some(e)) => e.saturating_sub(s).saturating_sub(self.paused_ms),
            _ => 0,
        };
        (self.prior_busy_ms + current).max(self.agent_ms())
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

/// One invocation of agent-farm driving the run (`run`, then each `resume` or `merge`): from its
/// start to its last event. The time between invocations is not the farm's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start_ms: u64,
    pub end_ms: u64,
    /// Still being driven (no `run_finished` yet).
    #[serde(default)]
    pub open: bool,
}

/// The end of the span that `t` falls in (the latest that began by `t`).
fn span_end_at(spans: &[Span], t: u64) -> Option<u64> {
    spans
        .iter()
        .rev()
        .find(|s| s.start_ms <= t)
        .map(|s| s.end_ms.max(t))
}

/// A branch or ref of the run that git still holds after cleanup, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptRef {
    /// As cleanup named it: a branch name (`farm/<run>/api`) or a full ref (`refs/farm/…`).
    pub name: String,
    pub reason: String,
    /// A command that shows what it holds.
    #[serde(default)]
    pub inspect: Option<String>,
}

impl KeptRef {
    /// The full ref name (`refs/heads/…` for a branch).
    pub fn refname(&self) -> String {
        if self.name.starts_with("refs/") {
            self.name.clone()
        } else {
            format!("refs/heads/{}", self.name)
        }
    }
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
    /// The invocations that drove the run, in order (empty in records from before they were
    /// kept).
    #[serde(default)]
    pub spans: Vec<Span>,
    /// What git holds of the run after its last cleanup (`None`: no cleanup ran yet).
    #[serde(default)]
    pub kept: Option<Vec<KeptRef>>,
    /// Time the farm was paused (job control), over all its invocations.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub paused_ms: u64,
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
                        prior_busy_ms: 0,
                        paused_ms: 0,
                    },
                )
            })
            .collect();
        let started_ms = crate::events::now_ms();
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
            started_ms,
            finished_ms: None,
            domains,
            integration_commit: None,
            verify: None,
            land: None,
            warnings: Vec::new(),
            collisions: Vec::new(),
            interrupted: None,
            exit_code: None,
            spans: vec![Span {
                start_ms: started_ms,
                end_ms: started_ms,
                open: true,
            }],
            kept: None,
            paused_ms: 0,
        }
    }

    /// The time the farm was running: the sum of its invocations' spans (the last one to `now`
    /// while it is driven), without the time between `run` and a later `resume` or `merge`.
    pub fn active_ms(&self, now_ms: u64) -> u64 {
        if self.spans.is_empty() {
            let end = self.finished_ms.unwrap_or(now_ms);
            return end.saturating_sub(self.started_ms);
        }
        let last = self.spans.len() - 1;
        let spans: u64 = self
            .spans
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let end = if i == last && s.open {
                    s.end_ms.max(now_ms)
                } else {
                    s.end_ms
                };
                end.saturating_sub(s.start_ms)
            })
            .sum();
        // Pauses happen while an invocation drives the run: within its span.
        spans.saturating_sub(self.paused_ms)
    }

    /// Keep the invocations' spans: `resume` and `merge` open one, `run_finished` closes it,
    /// every event in between extends it.
    fn track_span(&mut self, ev: &Timed) {
        let at = ev.at_ms;
        match ev.event {
            FarmEvent::Resumed { .. } | FarmEvent::MergeRequested => {
                if self.spans.is_empty() {
                    // A record from before spans were kept: its first invocation, as known.
                    self.spans.push(Span {
                        start_ms: self.started_ms,
                        end_ms: self.finished_ms.unwrap_or(self.started_ms),
                        open: false,
                    });
                }
                if let Some(s) = self.spans.last_mut() {
                    s.open = false;
                }
                self.spans.push(Span {
                    start_ms: at,
                    end_ms: at,
                    open: true,
                });
            }
            _ => {
                if let Some(s) = self.spans.last_mut().filter(|s| s.open) {
                    s.end_ms = s.end_ms.max(at);
                    if matches!(ev.event, FarmEvent::RunFinished { .. }) {
                        s.open = false;
                    }
                }
            }
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
        self.track_span(ev);
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
                        paused_ms: 0,
                    });
                }
            }
            AgentFinished {
                domain,
                attempt,
                end,
                ..
            } => {
                let spans = &self.spans;
                if let Some(d) = self.domains.get_mut(domain) {
                    match d.attempts.iter_mut().find(|a| a.number == *attempt) {
                        Some(a) => {
                            // An attempt a crash cut short, closed by a later invocation, ended
                            // with the invocation it ran in, not when the next one noticed.
                            let current = spans.last().map_or(0, |s| s.start_ms);
                            let ended = match span_end_at(spans, a.started_ms) {
                                Some(e) if a.started_ms < current => e.min(at),
                                _ => at,
                            };
                            a.ended_ms = Some(ended);
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
                            paused_ms: 0,
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
                if let Some(kept) = self.kept.as_mut() {
                    kept.retain(|k| &k.name != branch);
                }
            }
            Paused { .. } => {}
            Continued { paused_ms } => {
                self.paused_ms += paused_ms;
                for d in self.domains.values_mut() {
                    if d.started_ms.is_some() && d.ended_ms.is_none() {
                        d.paused_ms += paused_ms;
                        if let Some(a) = d.attempts.last_mut().filter(|a| a.ended_ms.is_none()) {
                            a.paused_ms += paused_ms;
                        }
                    }
                }
            }
            BranchKept {
                branch,
                reason,
                inspect,
            } => {
                let kept = self.kept.get_or_insert_with(Vec::new);
                let k = KeptRef {
                    name: branch.clone(),
                    reason: reason.clone(),
                    inspect: inspect.clone(),
                };
                match kept.iter_mut().find(|k| &k.name == branch) {
                    Some(old) => *old = k,
                    None => kept.push(k),
                }
            }
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
                // A cleanup says anew what git keeps of the run.
                if *phase == crate::vocab::Phase::Cleaning {
                    self.kept = Some(Vec::new());
                }
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
                let spans = &self.spans;
                if let Some(d) = self.domains.get_mut(domain) {
                    // What it worked before counts, up to its end or that of its invocation.
                    if let Some(s) = d.started_ms.take() {
                        let end = d.ended_ms.or_else(|| span_end_at(spans, s)).unwrap_or(s);
                        d.prior_busy_ms += end
                            .saturating_sub(s)
                            .saturating_sub(std::mem::take(&mut d.paused_ms));
                    }
                    d.after_agent = *after_agent;
                    d.status = DomainStatus::Pending;
                    d.reason = None;
                    d.ended_ms = None;
                    d.branch_deleted = false;
                    d.worktree_removed = false;
                }
            }
            BranchMoved {
                domain,
                to,
                files,
                insertions,
                deletions,
                ..
            } => {
                if let Some(d) = self.domains.get_mut(domain) {
                    d.status = DomainStatus::Succeeded;
                    d.reason = None;
                    d.head = Some(to.clone());
                    d.merge_commit = None;
                    d.conflict_paths.clear();
                    d.files = files.clone();
                    d.insertions = *insertions;
                    d.deletions = *deletions;
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

/// The most recent of `ids` (as [`list_runs`] gives them, sorted): ids name their start to
/// the second, so among the runs started in the last second the record's start decides.
pub fn latest_run(common_dir: &Path, ids: &[String]) -> Option<String> {
    let last = ids.last()?;
    let second = last.get(..15).unwrap_or(last);
    let same: Vec<&String> = ids.iter().filter(|i| i.starts_with(second)).collect();
    if same.len() < 2 {
        return Some(last.clone());
    }
    let started = |id: &String| {
        RunRecord::load(&RunPaths::new(common_dir, id).record())
            .map(|r| r.started_ms)
            .unwrap_or(0)
    };
    same.into_iter()
        .max_by_key(|id| (started(id), (*id).clone()))
        .cloned()
}

/// A record of a run of `domains` (sim agent, one job per domain) started at `t0`.
#[cfg(test)]
pub(crate) fn sample(domains: &[&str], t0: u64) -> RunRecord {
    let mut yaml = String::from("version: 1\nagent:\n  preset: sim\ndomains:\n");
    for d in domains {
        yaml.push_str(&format!(
            "  - name: {d}\n    owns: [\"{d}/**\"]\n    prompt: x\n"
        ));
    }
    let plan = crate::plan::parse(Path::new("farm.yaml"), &yaml, |_| Ok(String::new())).unwrap();
    let opts = RunOptions {
        jobs: domains.len(),
        fail_fast: false,
        keep_worktrees: false,
        no_merge: false,
        deadline_ms: None,
        retries: None,
    };
    let mut rec = RunRecord::new(
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
    rec.started_ms = t0;
    rec.spans = vec![Span {
        start_ms: t0,
        end_ms: t0,
        open: true,
    }];
    rec
}

/// Fold `event`, happened at `at_ms`, into `rec`.
#[cfg(test)]
pub(crate) fn sample_apply(rec: &mut RunRecord, at_ms: u64, event: FarmEvent) {
    rec.apply(&Timed { at_ms, event });
}

/// Domain `d` prepares at `t`, runs its agent from `t+1s` to `t+9s`, finishes at `t+10s`.
#[cfg(test)]
pub(crate) fn sample_work(rec: &mut RunRecord, d: &str, t: u64, attempt: u32) {
    sample_apply(
        rec,
        t,
        FarmEvent::DomainPreparing {
            domain: d.into(),
            start_commit: "b".repeat(40),
        },
    );
    sample_apply(
        rec,
        t + 1000,
        FarmEvent::AgentStarted {
            domain: d.into(),
            attempt,
            pid: 1,
            spawned_ms: t + 1000,
        },
    );
    sample_apply(
        rec,
        t + 9000,
        FarmEvent::AgentFinished {
            domain: d.into(),
            attempt,
            end: AttemptEnd::Exited { code: 0 },
            duration_ms: 8000,
        },
    );
    sample_apply(
        rec,
        t + 10_000,
        FarmEvent::DomainFinished {
            domain: d.into(),
            status: DomainStatus::Succeeded,
            reason: None,
            head: Some("c".repeat(40)),
            files: vec![],
            insertions: 0,
            deletions: 0,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use sample_apply as apply;
    use sample_work as work;

    #[test]
    fn a_record_without_spans_still_measures_and_resumes() {
        let t0 = 7_000_000;
        let mut rec = sample(&["a"], t0);
        rec.spans.clear();
        rec.finished_ms = Some(t0 + 4000);
        assert_eq!(rec.active_ms(t0 + 50_000), 4000);
        apply(&mut rec, t0 + 60_000, FarmEvent::MergeRequested);
        apply(
            &mut rec,
            t0 + 61_000,
            FarmEvent::RunFinished { exit_code: 0 },
        );
        assert_eq!(rec.active_ms(t0 + 90_000), 5000);
    }

    #[test]
    fn cleanup_says_anew_what_is_kept() {
        let mut rec = sample(&["a"], 0);
        let kept = |branch: &str| FarmEvent::BranchKept {
            branch: branch.into(),
            reason: "why".into(),
            inspect: Some(format!("git log {branch}")),
        };
        assert_eq!(rec.kept, None);
        apply(
            &mut rec,
            1,
            FarmEvent::Phase {
                phase: Phase::Cleaning,
            },
        );
        apply(&mut rec, 2, kept("farm/r/a"));
        apply(&mut rec, 3, kept("farm/r/integration"));
        apply(&mut rec, 4, kept("farm/r/a"));
        let names = |rec: &RunRecord| -> Vec<String> {
            rec.kept.iter().flatten().map(|k| k.refname()).collect()
        };
        assert_eq!(
            names(&rec),
            ["refs/heads/farm/r/a", "refs/heads/farm/r/integration"]
        );
        // `clean` later deletes one; the next cleanup starts the list again.
        apply(
            &mut rec,
            5,
            FarmEvent::BranchDeleted {
                branch: "farm/r/a".into(),
            },
        );
        assert_eq!(names(&rec), ["refs/heads/farm/r/integration"]);
        apply(
            &mut rec,
            6,
            FarmEvent::Phase {
                phase: Phase::Cleaning,
            },
        );
        apply(&mut rec, 7, kept("refs/farm/r/a/dropped"));
        assert_eq!(names(&rec), ["refs/farm/r/a/dropped"]);
    }

    #[test]
    fn a_moved_branch_is_merged_again_from_its_new_tip() {
        let mut rec = sample(&["a"], 0);
        work(&mut rec, "a", 0, 1);
        apply(
            &mut rec,
            11_000,
            FarmEvent::Merged {
                domain: "a".into(),
                commit: Some("d".repeat(40)),
            },
        );
        apply(
            &mut rec,
            20_000,
            FarmEvent::BranchMoved {
                domain: "a".into(),
                branch: "farm/r/a".into(),
                from: Some("c".repeat(40)),
                to: "e".repeat(40),
                files: vec!["a/x".into(), "a/fix".into()],
                insertions: 2,
                deletions: 0,
            },
        );
        let d = rec.domain("a").unwrap();
        assert_eq!(d.status, DomainStatus::Succeeded);
        assert_eq!(d.head.as_deref(), Some("e".repeat(40).as_str()));
        assert_eq!(d.files.len(), 2);
        assert_eq!(
            d.busy_ms(),
            10_000,
            "moving a branch is no work of the domain"
        );
    }

    #[test]
    fn no_cost_is_zero_not_minus_zero() {
        let rec = sample(&["a"], 0);
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
