//! The shared vocabulary of a run: domain statuses, run phases, how an attempt ended and why an
//! agent failed, how a violation was found, denials and usage.
//!
//! A leaf: it imports nothing of ours, so every other module can use it. Each name is written once,
//! in the `strum` attributes below; `Display`, `FromStr`, `as_str` and the serde forms all come
//! from it (see `named!` below), so JSON, text and command line spell a value the same way.

use serde::{Deserialize, Serialize};

/// Serde for an enum of unit variants through its strum name: the JSON string is the text name.
macro_rules! named {
    ($($ty:ty),* $(,)?) => {$(
        impl $ty {
            /// The name of this value, as JSON and text spell it.
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
                name.parse().map_err(|_| {
                    serde::de::Error::unknown_variant(
                        &name,
                        <Self as strum::VariantNames>::VARIANTS,
                    )
                })
            }
        }
    )*};
}

named!(DomainStatus, Phase, FailureKind, Detected);

/// Why a domain ended the way it did.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::AsRefStr,
    strum::VariantNames,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
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
}

/// The stage a run is in.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::AsRefStr,
    strum::VariantNames,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum Phase {
    Running,
    Merging,
    Verifying,
    Landing,
    Cleaning,
    Finished,
    Interrupted,
}

/// Why an agent attempt failed, as far as its own report tells.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::AsRefStr,
    strum::VariantNames,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum FailureKind {
    /// 401/403: bad or missing credentials. Never retried.
    Auth,
    /// 429: rate limited. Retried with backoff.
    RateLimit,
    /// 529: the API is overloaded. Retried with backoff.
    Overloaded,
    /// Another API error status.
    Api,
    /// The API could not be reached.
    Connection,
    /// The model's tool call could not be executed or parsed, or the run errored during execution.
    ToolCall,
    /// The agent hit its turn or budget limit.
    Limit,
    /// The process ended without a final result.
    Crash,
}

impl FailureKind {
    pub fn retryable(self) -> bool {
        !matches!(self, FailureKind::Auth | FailureKind::Limit)
    }
    /// Rate limits and overload deserve a longer backoff than ordinary failures.
    pub fn backs_off(self) -> bool {
        matches!(self, FailureKind::RateLimit | FailureKind::Overloaded)
    }
}

/// How an ownership violation was found.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::AsRefStr,
    strum::VariantNames,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum Detected {
    /// The agent CLI refused the edit (derived permission rules).
    Prevented,
    /// The agent announced a tool use on the path (before the file changed).
    ToolUse,
    /// The file watcher saw the path change while the agent ran.
    Live,
    /// The audit of the domain's full diff before merging (authoritative).
    Audit,
    /// agent-farm's write guard stopped the write at the system call: a process of the agent
    /// tried to write outside its worktree (another domain's worktree, the main checkout, git's
    /// shared refs). Nothing was written.
    Guard,
}

impl Detected {
    /// How it was found, as a phrase for sentences ("seen live"); the name is [`Detected::as_str`].
    pub fn describe(self) -> &'static str {
        match self {
            Detected::Prevented => "prevented",
            Detected::ToolUse => "tool use",
            Detected::Live => "seen live",
            Detected::Audit => "found at audit",
            Detected::Guard => "blocked by the write guard",
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
    /// Where the write went when it was outside the domain's worktree ("the worktree of domain
    /// b", "the main checkout", "ref refs/heads/main"); `path` is then absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside: Option<String>,
}

/// A process agent-farm ended because it outlived the command that started it (a daemon, a
/// background job), found by the supervisor whatever its process group, session or environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedProcess {
    pub pid: u32,
    /// Its command line (abbreviated).
    pub command: String,
    /// The signal that ended it: SIGTERM, or SIGKILL when it outlived the grace period.
    pub signal: String,
}

impl std::fmt::Display for EndedProcess {
    /// `4711 `sleep 100` (SIGKILL)`, as reports list them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} `{}` ({})", self.pid, self.command, self.signal)
    }
}

/// Ended processes as one phrase: `4711 `a` (SIGTERM), 4712 `b` (SIGKILL)`.
pub fn list_ended(processes: &[EndedProcess]) -> String {
    processes
        .iter()
        .map(EndedProcess::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a tool of the agent's writes files (its denial names a path, its refusal is a
/// prevented ownership violation); others (Bash) run commands.
pub fn is_file_tool(tool: &str) -> bool {
    matches!(tool, "Write" | "Edit" | "MultiEdit" | "NotebookEdit")
}

/// A tool call the CLI refused (permission rules), or a denial it listed in the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    pub tool: String,
    pub path: Option<String>,
    pub message: String,
}

/// Totals reported by the agent for one attempt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentUsage {
    pub session_id: Option<String>,
    pub model: Option<String>,
    pub turns: u32,
    pub tool_uses: u32,
    pub cost_usd: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_creation_tokens: u64,
    pub duration_ms: Option<u64>,
    /// Tokens counted from the messages seen so far (live; the result's totals are exact).
    #[serde(default)]
    pub live_tokens: u64,
    pub denials: Vec<Denial>,
    pub api_retries: u32,
    /// The final result event's verdict, when one arrived.
    pub result: Option<ResultInfo>,
}

/// The verdict of an agent's final result event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultInfo {
    pub subtype: String,
    pub is_error: bool,
    pub api_error_status: Option<u16>,
    /// The result text, cut to 500 characters.
    pub text: String,
}

/// How one agent attempt ended. Its `kind` (the JSON tag) is [`AttemptEnd::kind`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
    /// The name of the way it ended, as the JSON `kind` spells it.
    pub fn kind(&self) -> &'static str {
        self.into()
    }
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
                Some(c) => format!("{failure} error: {message} (exit {c})"),
                None => format!("{failure} error: {message}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::fmt::Debug;
    use std::str::FromStr;
    use strum::VariantArray;

    /// Every value spells the same in JSON, `Display`, `as_str` and `FromStr`, and reads back.
    fn one_spelling<T>()
    where
        T: VariantArray
            + Copy
            + Debug
            + PartialEq
            + std::fmt::Display
            + AsRef<str>
            + FromStr
            + Serialize
            + for<'de> Deserialize<'de>,
        <T as FromStr>::Err: Debug,
    {
        for v in T::VARIANTS {
            let text = v.to_string();
            assert_eq!(
                serde_json::to_value(v).unwrap(),
                Value::String(text.clone())
            );
            assert_eq!(v.as_ref(), text);
            assert_eq!(T::from_str(&text).unwrap(), *v);
            assert_eq!(serde_json::from_value::<T>(json!(text)).unwrap(), *v);
        }
    }

    #[test]
    fn each_value_has_one_spelling() {
        one_spelling::<DomainStatus>();
        one_spelling::<Phase>();
        one_spelling::<FailureKind>();
        one_spelling::<Detected>();
    }

    #[test]
    fn json_forms_are_those_of_earlier_records() {
        // Written by earlier versions: run records and event logs must keep loading.
        let statuses = json!([
            "pending",
            "preparing",
            "running",
            "succeeded",
            "merged",
            "failed",
            "timed_out",
            "cancelled",
            "conflicted",
            "skipped",
            "blocked"
        ]);
        assert_eq!(
            serde_json::to_value(DomainStatus::VARIANTS).unwrap(),
            statuses
        );
        let phases = json!([
            "running",
            "merging",
            "verifying",
            "landing",
            "cleaning",
            "finished",
            "interrupted"
        ]);
        assert_eq!(serde_json::to_value(Phase::VARIANTS).unwrap(), phases);
        let kinds = json!([
            "auth",
            "rate_limit",
            "overloaded",
            "api",
            "connection",
            "tool_call",
            "limit",
            "crash"
        ]);
        assert_eq!(serde_json::to_value(FailureKind::VARIANTS).unwrap(), kinds);
        let detected = json!(["prevented", "tool_use", "live", "audit", "guard"]);
        assert_eq!(serde_json::to_value(Detected::VARIANTS).unwrap(), detected);
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_known_ones() {
        let err = serde_json::from_value::<DomainStatus>(json!("timed-out")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown variant `timed-out`"), "{msg}");
        assert!(msg.contains("`timed_out`"), "{msg}");
    }

    #[test]
    fn attempt_end_kind_is_its_json_tag() {
        let ends = [
            AttemptEnd::Exited { code: 1 },
            AttemptEnd::Signaled { signal: 9 },
            AttemptEnd::TimedOut,
            AttemptEnd::Stalled { idle_ms: 5 },
            AttemptEnd::Cancelled { reason: "r".into() },
            AttemptEnd::SpawnFailed {
                message: "m".into(),
            },
            AttemptEnd::AgentFailed {
                failure: FailureKind::RateLimit,
                code: Some(1),
                message: "m".into(),
            },
        ];
        for e in ends {
            let v = serde_json::to_value(&e).unwrap();
            assert_eq!(v["kind"], json!(e.kind()), "{e:?}");
            assert_eq!(serde_json::from_value::<AttemptEnd>(v).unwrap(), e);
        }
        let failed = AttemptEnd::AgentFailed {
            failure: FailureKind::RateLimit,
            code: None,
            message: "slow down".into(),
        };
        assert_eq!(failed.describe(), "rate_limit error: slow down");
    }
}
