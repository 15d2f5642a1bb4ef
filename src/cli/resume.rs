//! `agent-farm resume`: continue a run that was interrupted or whose process died.

use std::path::Path;

use crate::session::{Resumed, Session};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Run id or unique prefix (default: the most recent run).
    pub run: Option<String>,
    /// Also run again the domains that failed, timed out or were blocked.
    #[arg(long)]
    pub retry_failed: bool,
    #[command(flatten)]
    pub drive: super::DriveArgs,
}

pub fn run(cwd: &Path, args: Args) -> anyhow::Result<i32> {
    super::recover_dead_runs(cwd);
    let reporters = args.drive.reporters();
    let resumed = Session::resume(
        cwd,
        args.run.as_deref(),
        args.retry_failed,
        args.drive.keep_worktrees,
        reporters,
    )?;
    match resumed {
        Resumed::AlreadyFinished { run_id, exit_code } => {
            println!("run {run_id} already finished (exit code {exit_code}); nothing to resume");
            Ok(0)
        }
        Resumed::Session(mut session) => {
            session.drive();
            Ok(args.drive.render(session.conclude()))
        }
    }
}
