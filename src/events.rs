//! The public run events: what the dispatcher publishes, the run record folds (see
//! `record::RunRecord::apply`) and every reporter shows, and what `events.jsonl` keeps.
//!
//! `events.jsonl` is a public, versioned format (README.md, "Event stream"): a [`Header`] line,
//! then one [`Timed`] event per line. [`read`] reads it back. The messages the runner's tasks send
//! each other are internal types of `runner` and never written.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::vocab::{
    AgentUsage, AttemptEnd, Denial, Detected, DomainStatus, FailureKind, Phase, Violation,
};

/// Everything that happens in a run, in order. The JSON tag `event` is [`FarmEvent::name`].
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
#[serde(tag = "event", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum FarmEvent {
    RunStarted {
        run_id: String,
        domains: usize,
        jobs: usize,
        base: String,
        base_commit: String,
        into: String,
        /// Where `into` pointed when the run started (null: it did not exist yet). A landing
        /// that finds it elsewhere says so: something other than agent-farm moved it.
        #[serde(default)]
        into_commit: Option<String>,
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
        /// A command that shows what it holds (null in logs from before it was given).
        #[serde(default)]
        inspect: Option<String>,
    },
    Warning {
        domain: Option<String>,
        message: String,
    },
    /// The whole farm was paused (Ctrl-Z): every running command stopped, timeouts frozen.
    Paused {
        reason: String,
    },
    /// The farm goes on after a pause of `paused_ms`; timeouts and the deadline are extended
    /// by it.
    Continued {
        paused_ms: u64,
    },
    /// Processes that outlived an agent attempt (daemons, background jobs, whatever their
    /// group, session or environment), ended by agent-farm's supervisor.
    ProcessesEnded {
        domain: String,
        attempt: u32,
        processes: Vec<crate::vocab::EndedProcess>,
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
    /// `agent-farm merge` found commits on a domain's branch that the integration branch does not
    /// hold (a fix committed by hand after the run): the domain is merged again, from `to`.
    BranchMoved {
        domain: String,
        branch: String,
        /// The head the run recorded (null: it had committed nothing).
        from: Option<String>,
        to: String,
        /// What the domain changes now, from its start commit to `to`.
        files: Vec<String>,
        insertions: usize,
        deletions: usize,
    },
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
    /// The event's kind, as its JSON `event` tag spells it.
    pub fn name(&self) -> &'static str {
        self.into()
    }

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
            | BranchMoved { domain, .. }
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

/// The version of the `events.jsonl` schema this build writes, and the newest it reads.
/// New event kinds and new fields keep it; removing or renaming a kind or a field, or changing a
/// field's type or meaning, bumps it.
pub const VERSION: u32 = 1;

/// What the header line says the file is.
pub const FORMAT: &str = "agent-farm-events";

/// The first line of `events.jsonl`: `{"version":1,"format":"agent-farm-events"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub version: u32,
    pub format: String,
}

impl Header {
    pub fn current() -> Header {
        Header {
            version: VERSION,
            format: FORMAT.to_string(),
        }
    }

    /// The header as its line of JSON (without the newline).
    pub fn line() -> String {
        serde_json::to_string(&Header::current()).unwrap_or_default()
    }
}

/// An event log, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct EventLog {
    /// The schema version the log was written with (1 for logs written before the header was).
    pub version: u32,
    pub events: Vec<Timed>,
    /// Lines cut short by a kill while they were written, left out.
    pub torn: usize,
    /// Events of kinds this build does not know (written by a newer build of the same version),
    /// left out.
    pub unknown: usize,
}

/// Why an event log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("cannot read the event log {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is not an agent-farm event log (its header says format `{format}`)")]
    NotAnEventLog { path: PathBuf, format: String },
    #[error(
        "the event log {path} has version {version}, newer than this agent-farm reads (up to {supported}); upgrade agent-farm to read it"
    )]
    UnsupportedVersion {
        path: PathBuf,
        version: u32,
        supported: u32,
    },
    #[error("{path}:{line}: not an event: {error}")]
    BadLine {
        path: PathBuf,
        line: usize,
        error: serde_json::Error,
    },
}

impl EventsError {
    /// The log does not exist (yet): a run that died before its first event, or an old run.
    pub fn is_not_found(&self) -> bool {
        matches!(self, EventsError::Read { error, .. } if error.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Read `events.jsonl`: its version and its events, in order. A line cut short by a kill is left
/// out wherever it is (a resumed run appends after it), and so is an event of a kind this build
/// does not know; a version newer than [`VERSION`] is refused.
pub fn read(path: &Path) -> Result<EventLog, EventsError> {
    let text = std::fs::read_to_string(path).map_err(|error| EventsError::Read {
        path: path.to_owned(),
        error,
    })?;
    parse(path, &text)
}

/// [`read`] on text already read; `path` is for messages.
pub fn parse(path: &Path, text: &str) -> Result<EventLog, EventsError> {
    let mut log = EventLog {
        version: VERSION,
        events: Vec::new(),
        torn: 0,
        unknown: 0,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();
    if let Some((_, first)) = lines.peek()
        && let Ok(serde_json::Value::Object(o)) = serde_json::from_str(first)
        && !o.contains_key("event")
    {
        let format = o.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != FORMAT {
            return Err(EventsError::NotAnEventLog {
                path: path.to_owned(),
                format: format.to_string(),
            });
        }
        let version = o.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if version == 0 || version > u64::from(VERSION) {
            return Err(EventsError::UnsupportedVersion {
                path: path.to_owned(),
                version: u32::try_from(version).unwrap_or(u32::MAX),
                supported: VERSION,
            });
        }
        log.version = version as u32;
        lines.next();
    }
    for (i, line) in lines {
        match serde_json::from_str::<Timed>(line) {
            Ok(ev) => log.events.push(ev),
            Err(e) if e.is_eof() => log.torn += 1,
            Err(error) => {
                let kind = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.get("event")?.as_str().map(str::to_owned));
                match kind {
                    Some(k) if !<FarmEvent as strum::VariantNames>::VARIANTS.contains(&&*k) => {
                        log.unknown += 1
                    }
                    _ => {
                        return Err(EventsError::BadLine {
                            path: path.to_owned(),
                            line: i + 1,
                            error,
                        });
                    }
                }
            }
        }
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ev: FarmEvent) -> String {
        serde_json::to_string(&Timed {
            at_ms: 7,
            event: ev,
        })
        .unwrap()
    }

    fn parse_text(text: &str) -> Result<EventLog, EventsError> {
        parse(Path::new("events.jsonl"), text)
    }

    #[test]
    fn the_header_comes_first_and_events_follow() {
        assert_eq!(
            Header::line(),
            r#"{"version":1,"format":"agent-farm-events"}"#
        );
        let text = format!(
            "{}\n{}\n{}\n",
            Header::line(),
            line(FarmEvent::MergeRequested),
            line(FarmEvent::RunFinished { exit_code: 0 })
        );
        let log = parse_text(&text).unwrap();
        assert_eq!(log.version, 1);
        assert_eq!(
            log.events
                .iter()
                .map(|t| t.event.name())
                .collect::<Vec<_>>(),
            ["merge_requested", "run_finished"]
        );
        assert_eq!((log.torn, log.unknown), (0, 0));
    }

    #[test]
    fn a_log_without_header_is_version_1() {
        let log = parse_text(&format!("{}\n", line(FarmEvent::MergeRequested))).unwrap();
        assert_eq!((log.version, log.events.len()), (1, 1));
        assert_eq!(parse_text("").unwrap().events, vec![]);
    }

    #[test]
    fn a_torn_line_is_left_out_wherever_it_is() {
        let whole = line(FarmEvent::Resumed { pid: 3 });
        let torn = &whole[..whole.len() - 4];
        let text = format!("{}\n{whole}\n{torn}\n{whole}\n{torn}", Header::line());
        let log = parse_text(&text).unwrap();
        assert_eq!((log.events.len(), log.torn), (2, 2));
    }

    #[test]
    fn unknown_kinds_are_skipped_and_bad_lines_refused() {
        let text = format!(
            "{}\n{}\n{{\"at_ms\":1,\"event\":\"from_the_future\",\"x\":1}}\n",
            Header::line(),
            line(FarmEvent::MergeRequested)
        );
        let log = parse_text(&text).unwrap();
        assert_eq!((log.events.len(), log.unknown), (1, 1));
        let bad = format!(
            "{}\n{{\"at_ms\":1,\"event\":\"resumed\"}}\n",
            Header::line()
        );
        match parse_text(&bad) {
            Err(EventsError::BadLine { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected a bad line, got {other:?}"),
        }
    }

    #[test]
    fn newer_versions_and_other_files_are_refused() {
        let newer = r#"{"version":2,"format":"agent-farm-events"}"#;
        let err = parse_text(newer).unwrap_err();
        assert!(
            matches!(
                err,
                EventsError::UnsupportedVersion {
                    version: 2,
                    supported: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("upgrade agent-farm"), "{err}");
        let other = r#"{"version":1,"format":"something-else"}"#;
        assert!(matches!(
            parse_text(other),
            Err(EventsError::NotAnEventLog { .. })
        ));
    }

    #[test]
    fn every_event_kind_is_documented_in_the_readme() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("## Event stream (events.jsonl)")
            .nth(1)
            .expect("README has an \"Event stream (events.jsonl)\" section");
        let section = section.split("\n## ").next().unwrap_or(section);
        for kind in <FarmEvent as strum::VariantNames>::VARIANTS {
            assert!(
                section.contains(&format!("| `{kind}` |")),
                "README's event stream section does not document `{kind}`"
            );
        }
        assert!(section.contains(&Header::line()), "the header line");
    }
}
