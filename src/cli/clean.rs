//! `agent-farm clean`: remove a run's worktrees and the branches whose work is merged.

use std::path::Path;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Run id or unique prefix (default: the most recent run).
    pub run: Option<String>,
    /// Clean every recorded run.
    #[arg(long, conflicts_with = "run")]
    pub all: bool,
    /// Also delete branches holding commits that are merged nowhere (their work is lost).
    #[arg(long)]
    pub force: bool,
}

pub fn run(cwd: &Path, args: Args) -> anyhow::Result<i32> {
    super::recover_dead_runs(cwd);
    let req = crate::session::CleanRequest {
        run: args.run,
        all: args.all,
        force: args.force,
    };
    let lines = crate::session::clean(cwd, &req)?;
    if !super::conventions::quiet() {
        for line in lines {
            println!("{line}");
        }
    }
    Ok(0)
}
