//! The plan as written in `farm.yaml` (raw, straight from serde) and as validated.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration written as a human string in YAML (`"30m"`, `"1h 30m"`, `"500ms"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Parse inside the visitor so the YAML error points at the value itself.
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"20m\" or \"1h 30m\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HumanDuration, E> {
                humantime::parse_duration(s)
                    .map(HumanDuration)
                    .map_err(|e| {
                        E::custom(format!(
                            "invalid duration `{s}`: {e} (write e.g. \"30s\", \"20m\", \"1h 30m\")"
                        ))
                    })
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// A command: a string run through `sh -c`, or an argv list run directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandSpec {
    Shell(String),
    Argv(Vec<String>),
}

impl CommandSpec {
    pub fn argv(&self) -> Vec<String> {
        match self {
            CommandSpec::Shell(s) => vec!["sh".into(), "-c".into(), s.clone()],
            CommandSpec::Argv(v) => v.clone(),
        }
    }
    pub fn display(&self) -> String {
        match self {
            CommandSpec::Shell(s) => s.clone(),
            CommandSpec::Argv(v) => v.join(" "),
        }
    }
    pub fn is_empty(&self) -> bool {
        match self {
            CommandSpec::Shell(s) => s.trim().is_empty(),
            CommandSpec::Argv(v) => v.is_empty(),
        }
    }
}

impl<'de> Deserialize<'de> for CommandSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CommandSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a shell command string or a list of arguments")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CommandSpec, E> {
                Ok(CommandSpec::Shell(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CommandSpec, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(CommandSpec::Argv(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for CommandSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CommandSpec::Shell(v) => s.serialize_str(v),
            CommandSpec::Argv(v) => v.serialize(s),
        }
    }
}

/// Which agent CLI to run. The names (plan, `--agent`, text and JSON) come from strum.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Deserialize,
    Serialize,
    strum::Display,
    strum::EnumString,
    strum::VariantNames,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum Preset {
    /// `claude -p {prompt} --output-format stream-json --verbose --permission-mode acceptEdits`
    #[default]
    Claude,
    /// `codex exec --full-auto {prompt}`
    Codex,
    /// `gemini --yolo -p {prompt}`
    Gemini,
    /// `aider --yes --message {prompt}`
    Aider,
    /// agent-farm's built-in simulated agent (`agent-farm sim-agent {prompt}`).
    Sim,
    /// `agent.command`, an argv with placeholders.
    Custom,
}

pub const DEFAULT_MAX_PARALLEL: usize = 5;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(5);
pub const DEFAULT_RATE_LIMIT_BACKOFF: Duration = Duration::from_secs(60);
pub const DEFAULT_PERMISSION_MODE: &str = "acceptEdits";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    #[serde(default)]
    pub preset: Preset,
    /// Program to run for a preset instead of its default name (e.g. an absolute path to `claude`).
    pub program: Option<String>,
    /// Full argv for the `custom` preset, with placeholders.
    pub command: Option<Vec<String>>,
    /// Extra arguments appended to the preset's argv.
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub timeout: Option<HumanDuration>,
    pub grace: Option<HumanDuration>,
    /// Stop an agent whose output has not grown for this long (stalled without exiting).
    pub idle_timeout: Option<HumanDuration>,
    pub retries: Option<u32>,
    pub retry_backoff: Option<HumanDuration>,
    /// Backoff after a rate-limit or overload failure (longer than `retry_backoff`).
    pub rate_limit_backoff: Option<HumanDuration>,
    /// Model name passed to presets that take one.
    pub model: Option<String>,
    /// Prepend the farm's preamble (domain, owned paths, parallel work) to every prompt.
    pub preamble: Option<bool>,
    /// claude: `--permission-mode` (default `acceptEdits`).
    pub permission_mode: Option<String>,
    /// claude: `--allowedTools` entries.
    #[serde(default)]
    pub allowed_tools: Vec<String>,
    /// claude: `--disallowedTools` entries.
    #[serde(default)]
    pub disallowed_tools: Vec<String>,
    /// claude: `--max-budget-usd` per agent attempt.
    pub max_budget_usd: Option<f64>,
}

/// What happens to changes a domain makes outside the paths it owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, strum::Display)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Policy {
    /// Report the violations and merge anyway.
    Warn,
    /// Report them; the domain does not merge (its branch is kept).
    #[default]
    Block,
    /// Drop the out-of-domain changes from the domain's branch (kept under a ref and in a patch
    /// file) and merge the rest.
    Revert,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOwnership {
    /// Paths any domain may change (lock files, changelogs).
    #[serde(default)]
    pub shared: Vec<String>,
    /// Paths whose changes never count (build outputs, caches); `.gitignore`d paths never do.
    #[serde(default)]
    pub ignore: Vec<String>,
    pub policy: Option<Policy>,
    /// Terminate an agent at its first violation seen while it runs.
    pub stop_on_violation: Option<bool>,
    /// Block agents' writes outside their worktrees at the system call (Linux; default true).
    pub guard: Option<bool>,
}

/// The plan's ownership rules, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OwnershipConfig {
    pub shared: Vec<String>,
    pub ignore: Vec<String>,
    pub policy: Policy,
    pub stop_on_violation: bool,
    /// The write guard (see [`crate::supervise`]); records written before it existed had it off.
    #[serde(default)]
    pub guard: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrepare {
    #[serde(default)]
    pub copy: Vec<String>,
    #[serde(default)]
    pub setup: Vec<CommandSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDomain {
    pub name: String,
    pub prompt: Option<String>,
    pub prompt_file: Option<PathBuf>,
    #[serde(default)]
    pub owns: Vec<String>,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub priority: i32,
    pub timeout: Option<HumanDuration>,
    pub verify: Option<CommandSpec>,
    #[serde(default)]
    pub setup: Vec<CommandSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlan {
    pub version: u32,
    pub base: Option<String>,
    pub into: Option<String>,
    pub max_parallel: Option<usize>,
    pub worktree_root: Option<PathBuf>,
    #[serde(default)]
    pub agent: RawAgent,
    #[serde(default)]
    pub prepare: RawPrepare,
    #[serde(default)]
    pub ownership: RawOwnership,
    pub verify: Option<CommandSpec>,
    pub domains: Vec<RawDomain>,
}

/// How agents are launched, with every default filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentConfig {
    pub preset: Preset,
    pub program: Option<String>,
    pub command: Option<Vec<String>>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    pub retries: u32,
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    // Fields added after the first record format default when an older run record is read.
    #[serde(with = "humantime_serde", default = "default_rate_limit_backoff")]
    pub rate_limit_backoff: Duration,
    #[serde(default)]
    pub model: Option<String>,
    /// Explicit `preamble:`; see [`AgentConfig::preamble`].
    #[serde(default)]
    pub preamble: Option<bool>,
    #[serde(default = "default_permission_mode")]
    pub permission_mode: String,
    #[serde(default)]
    pub allowed_tools: Vec<String>,
    #[serde(default)]
    pub disallowed_tools: Vec<String>,
    #[serde(default)]
    pub max_budget_usd: Option<f64>,
}

fn default_rate_limit_backoff() -> Duration {
    DEFAULT_RATE_LIMIT_BACKOFF
}

fn default_permission_mode() -> String {
    DEFAULT_PERMISSION_MODE.to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    pub name: String,
    /// The prompt text, read from `prompt_file` when that was given.
    pub prompt: String,
    pub prompt_file: Option<PathBuf>,
    pub owns: Vec<String>,
    pub depends_on: Vec<String>,
    pub priority: i32,
    #[serde(with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub verify: Option<CommandSpec>,
    pub setup: Vec<CommandSpec>,
    /// 1-based line in the plan file where this domain is declared, for error messages.
    pub line: Option<usize>,
}

/// A validated plan: every reference resolved, every default applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub source: PathBuf,
    pub base: Option<String>,
    pub into: Option<String>,
    pub max_parallel: usize,
    pub worktree_root: Option<PathBuf>,
    pub agent: AgentConfig,
    pub copy: Vec<String>,
    pub setup: Vec<CommandSpec>,
    #[serde(default)]
    pub ownership: OwnershipConfig,
    pub verify: Option<CommandSpec>,
    pub domains: Vec<Domain>,
}

impl AgentConfig {
    /// Whether prompts get the farm's preamble: as configured, else on for real agent CLIs and
    /// off for `sim` and `custom`.
    pub fn preamble(&self) -> bool {
        self.preamble
            .unwrap_or(!matches!(self.preset, Preset::Sim | Preset::Custom))
    }
}

impl Plan {
    pub fn domain(&self, name: &str) -> Option<&Domain> {
        self.domains.iter().find(|d| d.name == name)
    }
    /// The timeout for one attempt of `domain`.
    pub fn timeout_for(&self, domain: &Domain) -> Duration {
        domain.timeout.unwrap_or(self.agent.timeout)
    }
}
