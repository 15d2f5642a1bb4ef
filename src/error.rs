//! Exit codes and the typed errors that map onto them.
//!
//! Every way agent-farm can end has exactly one documented exit code (README.md, "Exit codes").
//! Library code returns typed errors; `main` maps them here and nowhere else.

use std::path::PathBuf;

/// The documented exit codes. When several outcomes apply to one run, the highest code wins.
pub mod exit {
    /// Everything requested was done: all domains merged, verify passed, result landed.
    pub const OK: i32 = 0;
    /// An unexpected internal error (a bug, or an I/O error agent-farm could not attribute).
    pub const INTERNAL: i32 = 1;
    /// Bad command-line usage (clap's own code).
    pub const USAGE: i32 = 2;
    /// The plan is invalid: YAML syntax, unknown key, missing field, cycle, unsafe name, overlap…
    pub const INVALID_PLAN: i32 = 3;
    /// Preflight failed: not a git repository, base missing, agent not found, lock held, …
    /// Nothing was created.
    pub const PREFLIGHT: i32 = 4;
    /// The merged result is ready on the integration branch but was not landed on `into`
    /// (its checkout has uncommitted changes, or `into` moved and cannot be merged cleanly).
    pub const NOT_LANDED: i32 = 5;
    /// One or more domains failed, timed out, were cancelled or skipped; the others landed.
    pub const DOMAINS_FAILED: i32 = 6;
    /// One or more domains conflicted when merged into the integration branch.
    pub const CONFLICT: i32 = 7;
    /// The verify command failed on the merged result; nothing was landed.
    pub const VERIFY_FAILED: i32 = 8;
    /// The run was interrupted (SIGINT/SIGTERM/SIGHUP); partial work is committed on its branches.
    pub const INTERRUPTED: i32 = 130;
}

/// A problem found in a plan, located as precisely as we can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub domain: Option<String>,
    pub message: String,
}

/// Errors that make a plan unusable. All map to [`exit::INVALID_PLAN`].
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read plan {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn render_problems(path: &std::path::Path, problems: &[Problem]) -> String {
    let mut out = String::new();
    let n = problems.len();
    out.push_str(&format!(
        "invalid plan {} ({n} problem{}):",
        path.display(),
        if n == 1 { "" } else { "s" }
    ));
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&path.display().to_string());
        if let Some(l) = p.line {
            out.push_str(&format!(":{l}"));
            if let Some(c) = p.column {
                out.push_str(&format!(":{c}"));
            }
        }
        out.push_str(": ");
        if let Some(d) = &p.domain {
            out.push_str(&format!("domain `{d}`: "));
        }
        out.push_str(&p.message);
    }
    out
}

/// Errors found before anything is created. All map to [`exit::PREFLIGHT`].
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("not inside a git repository ({path}): {message}")]
    NotARepo { path: PathBuf, message: String },
    #[error("the repository is bare; agent-farm needs a working tree")]
    BareRepo,
    #[error("base `{base}` does not name a branch or commit in this repository")]
    BaseNotFound { base: String },
    #[error("cannot determine the base: HEAD is detached or unborn; set `base:` in the plan")]
    NoBase,
    #[error(
        "`into` branch `{into}` does not exist and base `{base}` is not a branch to create it from"
    )]
    IntoInvalid { into: String, base: String },
    #[error(
        "agent program `{program}` not found on PATH (or not executable); install it, or set `agent.program` / `agent.command` in the plan, or pass --agent-program"
    )]
    AgentNotFound { program: String },
    #[error("worktree root {path} cannot be used: {message}")]
    WorktreeRoot { path: PathBuf, message: String },
    #[error("file to copy into worktrees not found: {path} (listed in `prepare.copy`)")]
    CopyMissing { path: PathBuf },
    #[error("run `{run_id}` is in use by process {pid} (lock {path}); wait for it to finish")]
    Locked {
        run_id: String,
        pid: u32,
        path: PathBuf,
    },
    #[error("run `{run_id}` not found (looked in {dir})")]
    RunNotFound { run_id: String, dir: PathBuf },
    #[error("no runs recorded in this repository yet (looked in {dir})")]
    NoRuns { dir: PathBuf },
    #[error("`{prefix}` matches several runs: {}", runs.join(", "))]
    AmbiguousRun { prefix: String, runs: Vec<String> },
    #[error(
        "run {run_id} is not finished: domain `{domain}` is {status}; continue it with `agent-farm resume {run_id}`"
    )]
    RunNotFinished {
        run_id: String,
        domain: String,
        status: String,
    },
    #[error("{0}")]
    Other(String),
}

/// Map any error that reached `main` to its exit code.
pub fn exit_code_for(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.downcast_ref::<PlanError>().is_some() {
            return exit::INVALID_PLAN;
        }
        if cause.downcast_ref::<PreflightError>().is_some() {
            return exit::PREFLIGHT;
        }
    }
    exit::INTERNAL
}
