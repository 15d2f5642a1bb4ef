//! The one stream of typed run events. The dispatcher emits them; the run record folds them
//! (see `record::RunRecord::apply`), and every reporter (progress, JSON log) consumes them.

use serde::{Deserialize, Serialize};

pub use crate::vocab::{
    AgentUsage, AttemptEnd, Denial, Detected, DomainStatus, FailureKind, Phase, Violation,
};

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
        phase: Phase,
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
