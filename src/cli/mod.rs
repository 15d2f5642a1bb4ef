//! The command-line interface: one file per subcommand, each an `Args` struct and a function
//! returning the process exit code.

pub mod clean;
pub mod conventions;
pub mod demo;
pub mod draft;
pub mod init;
pub mod logs;
pub mod merge;
pub mod plan;
pub mod report;
pub mod resume;
pub mod run;
pub mod runs;
pub mod status;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::record::RunRecord;

/// Run a team of AI coding agents in parallel on one git repository, one worktree and branch
/// per domain, then merge their work back in a planned order.
#[derive(Debug, Parser)]
#[command(name = "agent-farm", version, about, long_about = None)]
pub struct Cli {
    /// Run as if started in DIR (like `git -C`).
    ///
    /// The repository, and relative paths given to the command (a plan file, `demo --dir`), are
    /// found from DIR.
    #[arg(
        short = 'C',
        global = true,
        value_name = "DIR",
        id = "chdir",
        help_heading = "Global options"
    )]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub output: conventions::OutputArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter farm.yaml.
    Init(init::Args),
    /// Validate a plan and show its execution plan; creates nothing.
    Plan(plan::Args),
    /// Draft a plan from a goal: measure, scout, plan, check with agent-farm's rules, write.
    Draft(draft::Args),
    /// Run the whole pipeline: worktrees, agents, merge, verify, land, clean up.
    Run(run::Args),
    /// Show a run's state and report (the last run by default).
    Status(status::Args),
    /// Show a domain agent's output.
    Logs(logs::Args),
    /// Write a run's report: html (with a timeline picture), md, json, junit or chrome-trace.
    Report(report::Args),
    /// (Re)do the merge step of a run: merge its finished domains, verify, land, clean up.
    Merge(merge::Args),
    /// Continue a run that was interrupted or whose process died.
    Resume(resume::Args),
    /// Remove a run's worktrees and merged branches; never unmerged work unless --force.
    Clean(clean::Args),
    /// Run a self-contained demo with the simulated agent in a temporary repository.
    Demo(demo::Args),
    /// List the recorded runs, or prune old ones (`runs prune`).
    Runs(runs::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(conventions::CompletionsArgs),
    /// Print the man page (roff), or write one page per command into a directory.
    Man(conventions::ManArgs),
    /// The built-in simulated agent (used by the `sim` preset).
    #[command(hide = true)]
    SimAgent {
        /// Instructions (see the sim module docs).
        prompt: String,
    },
}

pub fn main(cli: Cli) -> anyhow::Result<i32> {
    conventions::set_output(cli.output.clone());
    let cwd = match &cli.dir {
        Some(d) => std::env::current_dir()
            .map(|here| here.join(d))
            .unwrap_or_else(|_| d.clone()),
        None => std::env::current_dir()?,
    };
    if cli.dir.is_some() && !cwd.is_dir() {
        return Err(crate::error::PreflightError::NoSuchDir { path: cwd }.into());
    }
    match cli.command {
        Command::Init(a) => init::run(&cwd, a),
        Command::Plan(a) => plan::run(&cwd, a),
        Command::Draft(a) => draft::run(&cwd, a),
        Command::Run(a) => run::run(&cwd, a),
        Command::Status(a) => status::run(&cwd, a),
        Command::Logs(a) => logs::run(&cwd, a),
        Command::Report(a) => report::run(&cwd, a),
        Command::Merge(a) => merge::run(&cwd, a),
        Command::Clean(a) => clean::run(&cwd, a),
        Command::Resume(a) => resume::run(&cwd, a),
        Command::Demo(a) => demo::run(&cwd, a),
        Command::Runs(a) => runs::run(&cwd, a),
        Command::Completions(a) => conventions::completions(a),
        Command::Man(a) => conventions::man(a),
        Command::SimAgent { prompt } => Ok(crate::sim::run(&prompt)),
    }
}

/// Finish or undo what dead runs of this repository left half done (see
/// [`crate::session::recover_dead_runs`]), saying what was done on stderr.
pub fn recover_dead_runs(cwd: &Path) {
    for (run, message) in crate::session::recover_dead_runs(cwd) {
        if !conventions::quiet() {
            eprintln!("agent-farm: run {run}: {message}");
        }
    }
}

/// Find a run's record: `run` if given (an id or a unique prefix), else the most recent one.
pub fn find_run(cwd: &Path, run: Option<&str>) -> anyhow::Result<RunRecord> {
    crate::session::find_run(cwd, run)
}

/// Flags every command that drives a run shares (run, resume, merge).
#[derive(Debug, Clone, clap::Args)]
pub struct DriveArgs {
    /// Keep every worktree after the run (branches of kept worktrees are kept too).
    #[arg(long)]
    pub keep_worktrees: bool,
    /// Progress display: auto (live lines on a terminal), plain (one line per event), none.
    #[arg(long, default_value = "auto", value_name = "MODE")]
    pub progress: run::Progress,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// `json`: stdout carries the run's public event stream, one JSON object per line, the
    /// schema version first (as events.jsonl); progress and the report go to stderr.
    #[arg(long, default_value = "human", value_name = "FORMAT")]
    pub message_format: MessageFormat,
}

/// What stdout carries while a run is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MessageFormat {
    /// Progress on stderr, the report on stdout.
    Human,
    /// The event stream on stdout (JSON lines); the report on stderr.
    Json,
}

impl DriveArgs {
    /// The reporters the flags ask for.
    pub fn reporters(&self) -> Vec<Box<dyn crate::reporter::Reporter>> {
        let mut r = run::reporters(self.progress);
        if self.message_format == MessageFormat::Json {
            r.push(Box::new(crate::reporter::JsonReporter::stdout()));
        }
        r
    }

    /// Print the report as the flags ask; returns the exit code.
    pub fn render(&self, out: crate::session::Outcome) -> i32 {
        run::render_to(out, self.json, self.message_format == MessageFormat::Json)
    }
}
