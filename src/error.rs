//! Exit codes and the typed errors that map onto them.
//!
//! Every way agent-farm can end has exactly one documented exit code (README.md, "Exit codes").
//! Library code returns typed errors of its own (`git::GitError`, `git::DiscoverError`,
//! `lock::LockError`, `events::EventsError`, …); `main` maps them to exit codes here and nowhere
//! else.
//!
//! One rule for every error type: its message says what failed, on what, and why, naming the
//! underlying cause (an I/O or git error) once, as part of the message. No error also returns that
//! cause from `source()`: `main` prints the whole chain joined by ": ", and a cause both shown and
//! returned would be printed twice. (Errors are put into event messages with `{e}` in many places;
//! with the cause in the message, none of them loses it.)

use std::path::PathBuf;

use crate::vocab::DomainStatus;

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
    /// `draft` made no plan: the planner agent failed or answered no readable proposal,
    /// or its proposal could not be made valid. Nothing was written.
    pub const DRAFT_FAILED: i32 = 9;
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
    #[error("cannot read plan {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
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

/// Errors found before anything is created (or, for commands on a recorded run, before the
/// run is touched). All map to [`exit::PREFLIGHT`], as do `git::DiscoverError`,
/// `lock::LockError` and an event log of a newer version.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("base `{base}` does not name a branch or commit in this repository")]
    BaseNotFound { base: String },
    #[error("cannot determine the base: HEAD is detached or unborn; set `base:` in the plan")]
    NoBase,
    #[error(
        "`into` branch `{into}` does not exist and base `{base}` is not a branch to create it from"
    )]
    IntoInvalid { into: String, base: String },
    #[error("`into` is not a valid branch name: {into}")]
    IntoNotABranchName { into: String },
    #[error(
        "agent program `{program}` not found on PATH (or not executable); install it, or set `agent.program` / `agent.command` in the plan, or pass --agent-program"
    )]
    AgentNotFound { program: String },
    #[error("--agent custom needs `agent.command` in the plan")]
    CustomAgentNeedsCommand,
    #[error(
        "`commit.gpgsign` is set ({origin}): git would sign every commit, and agent-farm cannot sign the commits it makes yet, so it makes none unsigned; turn signing off for this repository while the farm runs (`git config --local commit.gpgsign false`) and sign the landed result yourself"
    )]
    SigningRequired { origin: String },
    #[error(
        "{var}={value:?} is not a date git reads; write it as git does: `2005-04-07T22:13:13` (ISO 8601, optionally with an offset), `Thu, 07 Apr 2005 22:13:13 +0200` (RFC 2822) or `@1112911993 +0200`"
    )]
    BadDate { var: String, value: String },
    #[error("worktree root {path} cannot be used: {message}")]
    WorktreeRoot { path: PathBuf, message: String },
    #[error("file to copy into worktrees not found: {path} (listed in `prepare.copy`)")]
    CopyMissing { path: PathBuf },
    #[error("run `{run_id}` not found (looked in {dir})")]
    RunNotFound { run_id: String, dir: PathBuf },
    #[error("`{prefix}` matches several runs: {}; give more of the run id", runs.join(", "))]
    AmbiguousRun { prefix: String, runs: Vec<String> },
    #[error("no runs recorded in this repository yet (looked in {dir})")]
    NoRuns { dir: PathBuf },
    #[error(
        "run {run_id} is not finished: domain `{domain}` is {status}; continue it with `agent-farm resume {run_id}`"
    )]
    RunNotFinished {
        run_id: String,
        domain: String,
        status: DomainStatus,
    },
    #[error("run {run_id} is still running (pid {pid}); wait for it or stop it first")]
    RunStillRunning { run_id: String, pid: u32 },
    #[error("run {run_id} has no domain `{domain}` (domains: {})", domains.join(", "))]
    NoSuchDomain {
        run_id: String,
        domain: String,
        domains: Vec<String>,
    },
    #[error("{path} already exists; use --force to overwrite it")]
    PlanExists { path: PathBuf },
    #[error("cannot change to {path} (given with -C): no such directory")]
    NoSuchDir { path: PathBuf },
    #[error("{path} already holds a repository; choose an empty directory")]
    DirHoldsRepo { path: PathBuf },
}

/// Why `agent-farm draft` wrote no plan. All map to [`exit::DRAFT_FAILED`].
#[derive(Debug, thiserror::Error)]
pub enum DraftError {
    #[error("cannot measure the repository: {message}")]
    Measure { message: String },
    #[error("the {role} agent failed: {message} (its output: {log})")]
    Agent {
        role: String,
        message: String,
        log: PathBuf,
    },
    #[error("the planner's proposal cannot be made a valid plan: {}", problems.join("; "))]
    Unfixable { problems: Vec<String> },
    /// Maps to [`exit::INTERRUPTED`]: the agents were stopped, nothing was written.
    #[error("interrupted by {signal}: the agents were stopped and no plan was written")]
    Interrupted { signal: String },
}

/// Map any error that reached `main` to its exit code.
pub fn exit_code_for(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.is::<PlanError>() {
            return exit::INVALID_PLAN;
        }
        if let Some(d) = cause.downcast_ref::<DraftError>() {
            return match d {
                DraftError::Interrupted { .. } => exit::INTERRUPTED,
                _ => exit::DRAFT_FAILED,
            };
        }
        if cause.is::<PreflightError>()
            || cause.is::<crate::git::DiscoverError>()
            || cause.is::<crate::lock::LockError>()
        {
            return exit::PREFLIGHT;
        }
        // A run written by a newer agent-farm (or a file that is no event log) is refused before
        // anything is done with it; a log that cannot be read or parsed stays an internal error.
        if let Some(
            crate::events::EventsError::UnsupportedVersion { .. }
            | crate::events::EventsError::NotAnEventLog { .. },
        ) = cause.downcast_ref()
        {
            return exit::PREFLIGHT;
        }
    }
    exit::INTERNAL
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_found() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::NotFound)
    }

    #[test]
    fn library_errors_map_to_their_exit_codes() {
        let code = |e: anyhow::Error| exit_code_for(&e);
        let dir = tempfile::tempdir().unwrap();
        let not_a_repo = crate::git::discover(dir.path()).unwrap_err();
        assert!(matches!(
            not_a_repo,
            crate::git::DiscoverError::NotARepo { .. }
        ));
        assert_eq!(code(not_a_repo.into()), exit::PREFLIGHT);
        let held = crate::lock::LockError::Held {
            run_id: "r".into(),
            pid: 1,
            path: "lock".into(),
            holders: vec![],
        };
        assert_eq!(code(held.into()), exit::PREFLIGHT);
        assert_eq!(code(PreflightError::NoBase.into()), exit::PREFLIGHT);
        let read = PlanError::Read {
            path: "farm.yaml".into(),
            error: not_found(),
        };
        assert_eq!(code(read.into()), exit::INVALID_PLAN);
        let git = crate::git::GitError::BranchExists { branch: "b".into() };
        assert_eq!(code(git.into()), exit::INTERNAL);
        let draft = DraftError::Unfixable { problems: vec![] };
        assert_eq!(code(draft.into()), exit::DRAFT_FAILED);
        let stopped = DraftError::Interrupted {
            signal: "SIGINT".into(),
        };
        assert_eq!(code(stopped.into()), exit::INTERRUPTED);
    }

    #[test]
    fn a_cause_is_in_the_message_and_never_returned_again() {
        let cause = not_found().to_string();
        let errors: Vec<Box<dyn std::error::Error + Send + Sync>> = vec![
            Box::new(PlanError::Read {
                path: "farm.yaml".into(),
                error: not_found(),
            }),
            Box::new(crate::git::GitError::Io {
                context: "cannot read x".into(),
                source: not_found(),
            }),
            Box::new(crate::lock::LockError::Io {
                path: "lock".into(),
                error: not_found(),
            }),
            Box::new(crate::watch::WatchError::Resolve {
                domain: "d".into(),
                root: "w".into(),
                error: not_found(),
            }),
        ];
        for e in errors {
            assert!(e.source().is_none(), "{e} returns its cause again");
            let printed = format!("{:#}", anyhow::anyhow!(e));
            assert_eq!(printed.matches(&cause).count(), 1, "{printed}");
        }
    }
}
