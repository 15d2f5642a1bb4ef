//! The command-line interface: one file per subcommand, each an `Args` struct and a function
//! returning the process exit code.

pub mod clean;
pub mod demo;
pub mod init;
pub mod logs;
pub mod merge;
pub mod plan;
pub mod resume;
pub mod run;
pub mod status;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::error::PreflightError;
use crate::record::{RunPaths, RunRecord, list_runs};

/// Run a team of AI coding agents in parallel on one git repository, one worktree and branch
/// per domain, then merge their work back in a planned order.
#[derive(Debug, Parser)]
#[command(name = "agent-farm", version, about, long_about = None)]
pub struct Cli {
    /// Run as if started in DIR (like `git -C`).
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter farm.yaml.
    Init(init::Args),
    /// Validate a plan and show its execution plan; creates nothing.
    Plan(plan::Args),
    /// Run the whole pipeline: worktrees, agents, merge, verify, land, clean up.
    Run(run::Args),
    /// Show a run's state and report (the last run by default).
    Status(status::Args),
    /// Show a domain agent's output.
    Logs(logs::Args),
    /// (Re)do the merge step of a run: merge its finished domains, verify, land, clean up.
    Merge(merge::Args),
    /// Continue a run that was interrupted or whose process died.
    Resume(resume::Args),
    /// Remove a run's worktrees and merged branches; never unmerged work unless --force.
    Clean(clean::Args),
    /// Run a self-contained demo with the simulated agent in a temporary repository.
    Demo(demo::Args),
    /// The built-in simulated agent (used by the `sim` preset).
    #[command(hide = true)]
    SimAgent {
        /// Instructions (see the sim module docs).
        prompt: String,
    },
}

pub fn main(cli: Cli) -> anyhow::Result<i32> {
    let cwd = match &cli.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir()?,
    };
    match cli.command {
        Command::Init(a) => init::run(&cwd, a),
        Command::Plan(a) => plan::run(&cwd, a),
        Command::Run(a) => run::run(&cwd, a),
        Command::Status(a) => status::run(&cwd, a),
        Command::Logs(a) => logs::run(&cwd, a),
        Command::Merge(a) => merge::run(&cwd, a),
        Command::Clean(a) => clean::run(&cwd, a),
        Command::Resume(a) => resume::run(&cwd, a),
        Command::Demo(a) => demo::run(a),
        Command::SimAgent { prompt } => Ok(crate::sim::run(&prompt)),
    }
}

/// Finish or undo what dead runs of this repository left half done (see
/// [`crate::runner::finish::recover_dead_runs`]), saying what was done on stderr.
pub fn recover_dead_runs(cwd: &Path) {
    let Ok(info) = crate::git::discover(cwd) else {
        return;
    };
    for (run, message) in crate::runner::finish::recover_dead_runs(&info.common_dir) {
        eprintln!("agent-farm: run {run}: {message}");
    }
}

/// Find a run's record: `run` if given (an id or a unique prefix), else the most recent one.
pub fn find_run(cwd: &Path, run: Option<&str>) -> anyhow::Result<RunRecord> {
    let info = crate::git::discover(cwd)?;
    let runs = list_runs(&info.common_dir);
    let root = RunPaths::runs_root(&info.common_dir);
    let id = match run {
        Some(r) => {
            let matches: Vec<&String> = runs.iter().filter(|id| id.starts_with(r)).collect();
            match matches.as_slice() {
                [one] => (*one).clone(),
                [] => {
                    return Err(PreflightError::RunNotFound {
                        run_id: r.to_string(),
                        dir: root,
                    }
                    .into());
                }
                many => {
                    return Err(PreflightError::Other(format!(
                        "`{r}` matches several runs: {}",
                        many.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .into());
                }
            }
        }
        None => runs
            .last()
            .cloned()
            .ok_or(PreflightError::NoRuns { dir: root })?,
    };
    let path = RunPaths::new(&info.common_dir, &id).record();
    Ok(RunRecord::load(&path)?)
}
