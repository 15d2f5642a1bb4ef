//! The one stream of typed run events. The dispatcher emits them; the run record folds them
//! (see `record::RunRecord::apply`), and every reporter (progress, JSON log) consumes them.

use serde::{Deserialize, Serialize};

pub use crate::runner::stream::{AgentUsage, Denial, FailureKind};

/// Why a domain ended the way it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainStatus {
    /// Waiting for its dependencies or a free slot.
    Pending,
    /// Worktree being created, files copied, setup running.
    Preparing,
    /// The agent is running.
    Running,
    /// The agent succeeded and its work is committed; not merged yet.
    Succeeded,
    /// Merged into the integration branch (or had nothing to merge).
    Merged,
    /// The agent failed (exit code, crash, setup or domain verify failure).
    Failed,
    /// The agent exceeded its timeout on its last attempt.
    TimedOut,
    /// Stopped by fail-fast, the run deadline or an interrupt.
    Cancelled,
    /// Merging it into the integration branch conflicted.
    Conflicted,
    /// Not run because a dependency did not merge.
    Skipped,
    /// Finished, but changed paths outside its domain under `policy: block`; not merged.
    Blocked,
}

impl DomainStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            DomainStatus::Pending | DomainStatus::Preparing | DomainStatus::Running
        )
    }
    /// Finished without producing mergeable work.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            DomainStatus::Failed
                | DomainStatus::TimedOut
                | DomainStatus::Cancelled
                | DomainStatus::Skipped
                | DomainStatus::Blocked
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            DomainStatus::Pending => "pending",
            DomainStatus::Preparing => "preparing",
            DomainStatus::Running => "running",
            DomainStatus::Succeeded => "succeeded",
            DomainStatus::Merged => "merged",
            DomainStatus::Failed => "failed",
            DomainStatus::TimedOut => "timed-out",
            DomainStatus::Cancelled => "cancelled",
            DomainStatus::Conflicted => "conflicted",
            DomainStatus::Skipped => "skipped",
            DomainStatus::Blocked => "blocked",
        }
    }
}

impl std::fmt::Display for DomainStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an ownership violation was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detected {
    /// The agent CLI refused the edit (derived permission rules).
    Prevented,
    /// The agent announced a tool use on the path (before the file changed).
    ToolUse,
    /// The file watcher saw the path change while the agent ran.
    Live,
    /// The audit of the domain's full diff before merging (authoritative).
    Audit,
}

impl Detected {
    pub fn as_str(self) -> &'static str {
        match self {
            Detected::Prevented => "prevented",
            Detected::ToolUse => "tool use",
            Detected::Live => "seen live",
            Detected::Audit => "found at audit",
        }
    }
}

/// A change a domain made (or tried to make) outside the paths it owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub path: String,
    /// The domain(s) owning the path; `None` when nobody owns it.
    pub owner: Option<String>,
    /// What happened to the path: added, modified, deleted, renamed from X, symlink to X, write…
    pub change: String,
    pub detected: Detected,
    /// What agent-farm did about it: reported, blocked, reverted, stopped, refused.
    pub action: String,
}

/// How one agent attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttemptEnd {
    Exited {
        code: i32,
    },
    Signaled {
        signal: i32,
    },
    TimedOut,
    /// No output for `idle_ms` (agent.idle_timeout): stopped as stalled.
    Stalled {
        idle_ms: u64,
    },
    Cancelled {
        reason: String,
    },
    SpawnFailed {
        message: String,
    },
    /// The agent reported a failure in its own output (e.g. an API error), whatever its exit code.
    AgentFailed {
        failure: FailureKind,
        code: Option<i32>,
        message: String,
    },
}

impl AttemptEnd {
    pub fn success(&self) -> bool {
        matches!(self, AttemptEnd::Exited { code: 0 })
    }
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            AttemptEnd::Exited { code } => Some(*code),
            AttemptEnd::AgentFailed { code, .. } => *code,
            _ => None,
        }
    }
    pub fn describe(&self) -> String {
        match self {
            AttemptEnd::Exited { code } => format!("exit {code}"),
            AttemptEnd::Signaled { signal } => format!("killed by signal {signal}"),
            AttemptEnd::TimedOut => "timed out".into(),
            AttemptEnd::Stalled { idle_ms } => format!(
                "stalled: no output for {}",
                humantime::format_duration(std::time::Duration::from_millis(*idle_ms))
            ),
            AttemptEnd::Cancelled { reason } => format!("cancelled ({reason})"),
            AttemptEnd::SpawnFailed { message } => format!("could not start: {message}"),
            AttemptEnd::AgentFailed {
                failure,
                code,
                message,
            } => match code {
                Some(c) => format!("{} error: {message} (exit {c})", failure.as_str()),
                None => format!("{} error: {message}", failure.as_str()),
            },
        }
    }
}

/// Everything that happens in a run, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FarmEvent {
    RunStarted {
        run_id: String,
        domains: usize,
        jobs: usize,
        base: String,
        base_commit: String,
        into: String,
    },
    DomainPreparing {
        domain: String,
        start_commit: String,
    },
    WorktreeReady {
        domain: String,
        path: String,
        branch: String,
    },
    AgentStarted {
        domain: String,
        attempt: u32,
        pid: u32,
        /// When the process was spawned (the event itself is sent a moment later).
        #[serde(default)]
        spawned_ms: u64,
    },
    AgentFinished {
        domain: String,
        attempt: u32,
        end: AttemptEnd,
        duration_ms: u64,
    },
    /// The agent reported its session (Claude Code: `claude --resume <session_id>`).
    AgentSession {
        domain: String,
        attempt: u32,
        session_id: String,
        model: Option<String>,
    },
    /// The agent used a tool (live activity).
    AgentToolUse {
        domain: String,
        attempt: u32,
        tool: String,
        path: Option<String>,
        turns: u32,
        /// Tokens used so far in this attempt.
        #[serde(default)]
        tokens: u64,
    },
    /// The agent CLI refused one of the agent's tool calls (permission rules).
    AgentRefused {
        domain: String,
        attempt: u32,
        denial: Denial,
    },
    /// The agent CLI is retrying a failed API request.
    AgentApiRetry {
        domain: String,
        attempt: u32,
        status: Option<u16>,
        error: String,
        delay_ms: u64,
    },
    /// What the agent reported about one attempt: turns, tokens, cost.
    AgentUsageReported {
        domain: String,
        attempt: u32,
        usage: AgentUsage,
    },
    AgentRetrying {
        domain: String,
        next_attempt: u32,
        delay_ms: u64,
    },
    Committed {
        domain: String,
        commit: String,
        note: String,
    },
    DomainFinished {
        domain: String,
        status: DomainStatus,
        reason: Option<String>,
        head: Option<String>,
        files: Vec<String>,
        insertions: usize,
        deletions: usize,
    },
    DomainSkipped {
        domain: String,
        reason: String,
    },
    Merged {
        domain: String,
        commit: Option<String>,
    },
    Conflict {
        domain: String,
        paths: Vec<String>,
        /// Per path: who owns it and which domains changed it.
        #[serde(default)]
        facts: Vec<String>,
    },
    /// Before merging: these two branches (or a branch and the integration branch) would
    /// conflict on `paths`.
    ConflictPredicted {
        domain: String,
        with: String,
        paths: Vec<String>,
        facts: Vec<String>,
    },
    /// A change outside the domain's paths (live, prevented, or found at audit).
    OwnershipViolation {
        domain: String,
        violation: Violation,
    },
    /// Two or more domains changed the same path (reported when the second one does).
    Collision {
        path: String,
        domains: Vec<String>,
    },
    VerifyStarted {
        commit: String,
    },
    VerifyFinished {
        passed: bool,
        end: AttemptEnd,
        duration_ms: u64,
        log: String,
    },
    Landed {
        into: String,
        commit: String,
        fast_forward: bool,
    },
    NotLanded {
        into: String,
        reason: String,
        command: Option<String>,
    },
    WorktreeRemoved {
        domain: String,
    },
    BranchDeleted {
        branch: String,
    },
    BranchKept {
        branch: String,
        reason: String,
    },
    Warning {
        domain: Option<String>,
        message: String,
    },
    Interrupted {
        reason: String,
    },
    /// The run moved on to another stage (merging, verifying, landing, cleaning).
    Phase {
        phase: crate::record::Phase,
    },
    /// `agent-farm merge` took the run over to (re)do its merge step.
    MergeRequested,
    /// `agent-farm resume` took the run over (process `pid`).
    Resumed {
        pid: u32,
    },
    /// A domain that had not finished goes back to pending, to run again on its branch.
    DomainReset {
        domain: String,
        reason: String,
        /// Its agent had already succeeded: continue after it (audit, verify, merge).
        #[serde(default)]
        after_agent: bool,
    },
    RunFinished {
        exit_code: i32,
    },
}

impl FarmEvent {
    pub fn domain(&self) -> Option<&str> {
        use FarmEvent::*;
        match self {
            DomainPreparing { domain, .. }
            | WorktreeReady { domain, .. }
            | AgentStarted { domain, .. }
            | AgentFinished { domain, .. }
            | AgentSession { domain, .. }
            | AgentToolUse { domain, .. }
            | AgentRefused { domain, .. }
            | AgentApiRetry { domain, .. }
            | AgentUsageReported { domain, .. }
            | AgentRetrying { domain, .. }
            | Committed { domain, .. }
            | DomainFinished { domain, .. }
            | DomainSkipped { domain, .. }
            | Merged { domain, .. }
            | Conflict { domain, .. }
            | ConflictPredicted { domain, .. }
            | OwnershipViolation { domain, .. }
            | DomainReset { domain, .. }
            | WorktreeRemoved { domain } => Some(domain),
            Warning { domain, .. } => domain.as_deref(),
            _ => None,
        }
    }
}

/// An event with the time it happened (milliseconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timed {
    pub at_ms: u64,
    #[serde(flatten)]
    pub event: FarmEvent,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
