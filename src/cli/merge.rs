//! `agent-farm merge`: (re)do the merge step of a run whose agents are done.

use std::path::Path;

use crate::session::Session;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Run id or unique prefix (default: the most recent run).
    pub run: Option<String>,
    #[command(flatten)]
    pub drive: super::DriveArgs,
}

pub fn run(cwd: &Path, args: Args) -> anyhow::Result<i32> {
    super::recover_dead_runs(cwd);
    let reporters = args.drive.reporters();
    let mut session = Session::merge(
        cwd,
        args.run.as_deref(),
        args.drive.keep_worktrees,
        reporters,
    )?;
    session.drive();
    Ok(args.drive.render(session.conclude()))
}
