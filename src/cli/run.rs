//! `agent-farm run`: arguments, one [`Session`], the report.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use std::time::Duration;

use crate::plan::Preset;
use crate::reporter::{PlainReporter, Reporter, TtyReporter};
use crate::session::{Outcome, RunRequest, Session};

#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "Examples:
  agent-farm run                          # farm.yaml in the repository root
  agent-farm run plans/refactor.yaml -j 3 # at most 3 agents at once
  agent-farm run --agent sim              # try the plan with the simulated agent
  agent-farm run --fail-fast --deadline 45m
  agent-farm run --no-merge               # commit the domains; `agent-farm merge` later
  agent-farm -q run --json > report.json  # no progress; the report as JSON

Exit codes: 0 landed, 3 invalid plan, 4 preflight, 5 not landed, 6 domains failed, 7 conflict,
8 verify failed, 130 interrupted (README, \"Exit codes\").")]
pub struct Args {
    /// The plan (default: farm.yaml in the repository root).
    pub file: Option<PathBuf>,
    /// Run at most N agents at once, N ≥ 1 (default: the plan's max_parallel).
    #[arg(short = 'j', long, value_name = "N", value_parser = parse_jobs)]
    pub jobs: Option<usize>,
    /// Stop launching and terminate running agents at the first failure.
    #[arg(long)]
    pub fail_fast: bool,
    /// Retry a failing agent N times (overrides agent.retries).
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Whole-run deadline: stop what still runs after this long and keep what is done ("45m").
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub deadline: Option<Duration>,
    /// Run and commit the domains but do not merge them; merge later with `agent-farm merge`.
    #[arg(long)]
    pub no_merge: bool,
    /// Agent preset to use instead of the plan's.
    #[arg(long, value_name = "PRESET", value_enum)]
    pub agent: Option<Preset>,
    /// Program to run for the agent preset instead of its default.
    #[arg(long, value_name = "PATH")]
    pub agent_program: Option<String>,
    /// Directory under which worktrees are created (default: <repo>.farm beside the repository).
    #[arg(long, value_name = "DIR")]
    pub worktree_root: Option<PathBuf>,
    #[command(flatten)]
    pub drive: super::DriveArgs,
}

/// `--jobs`: a count of at least 1, refused as `max_parallel: 0` is.
fn parse_jobs(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("`--jobs` must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a number: {e}")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Progress {
    Auto,
    Plain,
    None,
}

pub fn reporters(progress: Progress) -> Vec<Box<dyn Reporter>> {
    if super::conventions::quiet() {
        return vec![];
    }
    match progress {
        Progress::None => vec![],
        Progress::Plain => vec![Box::new(PlainReporter::stderr())],
        Progress::Auto if std::io::stderr().is_terminal() => {
            vec![Box::new(TtyReporter::new(color_on_stderr()))]
        }
        Progress::Auto => vec![Box::new(PlainReporter::stderr())],
    }
}

/// Whether stderr gets colour: by `--color`; for `auto`, a terminal and `NO_COLOR` unset
/// (<https://no-color.org>).
pub fn color_on_stderr() -> bool {
    super::conventions::stderr_colored()
}

impl Args {
    fn request(&self) -> RunRequest {
        RunRequest {
            file: self.file.clone(),
            jobs: self.jobs,
            fail_fast: self.fail_fast,
            retries: self.retries,
            deadline: self.deadline,
            keep_worktrees: self.drive.keep_worktrees,
            no_merge: self.no_merge,
            agent: self.agent,
            agent_program: self.agent_program.clone(),
            worktree_root: self.worktree_root.clone(),
        }
    }
}

pub fn run(cwd: &Path, args: Args) -> anyhow::Result<i32> {
    super::recover_dead_runs(cwd);
    let mut session = Session::start(cwd, &args.request(), args.drive.reporters())?;
    session.drive();
    Ok(args.drive.render(session.conclude()))
}

/// Print the report (or its JSON), what to do next and where the HTML report is, on stdout;
/// returns the exit code.
pub fn render(out: Outcome, json: bool) -> i32 {
    render_to(out, json, false)
}

/// [`render`], on stderr when stdout carries the event stream.
pub fn render_to(out: Outcome, json: bool, to_stderr: bool) -> i32 {
    let code = render_report(&out, json, to_stderr);
    if !json {
        print_html_report(&out, to_stderr);
    }
    code
}

/// The last line of a run's text output: `report: <path of report.html>`.
pub fn print_html_report(out: &Outcome, to_stderr: bool) {
    if super::conventions::quiet() {
        return;
    }
    if let Some(path) = &out.html_report {
        if to_stderr {
            eprintln!("report: {}", path.display());
        } else {
            println!("report: {}", path.display());
        }
    }
}

/// Print the report (or its JSON) and what to do next; returns the exit code.
pub fn render_report(out: &Outcome, json: bool, to_stderr: bool) -> i32 {
    macro_rules! say {
        ($($t:tt)*) => {
            if to_stderr { eprint!($($t)*) } else { print!($($t)*) }
        };
    }
    macro_rules! sayln {
        ($($t:tt)*) => {
            if to_stderr { eprintln!($($t)*) } else { println!($($t)*) }
        };
    }
    let rec = &out.record;
    if let Some(e) = &out.persist_error {
        // The work itself is in git; only the run's own files are incomplete.
        eprintln!(
            "error: the run's files under {} could not all be written: {e}; the domains' work is in git (see the branches below), but `status`, `resume` and `logs` may miss parts of this run",
            rec.paths().dir.display()
        );
    }
    if json {
        sayln!(
            "{}",
            super::conventions::versioned_json(&out.report).unwrap_or_default()
        );
    } else if !super::conventions::quiet() {
        say!("{}", out.report.render());
        if rec.interrupted.is_some() {
            sayln!(
                "partial work is committed on the kept branches; continue with `agent-farm resume {}`, merge only what finished with `agent-farm merge {}`, or remove everything with `agent-farm clean {} --force`",
                rec.run_id,
                rec.run_id,
                rec.run_id
            );
        } else if rec.options.no_merge {
            sayln!(
                "not merged (--no-merge); merge with `agent-farm merge {}`",
                rec.run_id
            );
        }
    }
    out.exit_code
}
