//! `agent-farm merge`: (re)do the merge step of a run whose agents are done.

use std::path::Path;

use crate::error::PreflightError;
use crate::events::FarmEvent;
use crate::lock::RunLock;
use crate::runner::Farm;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Run id or unique prefix (default: the most recent run).
    pub run: Option<String>,
    /// Keep worktrees after merging.
    #[arg(long)]
    pub keep_worktrees: bool,
    /// Progress display: auto, plain or none.
    #[arg(long, default_value = "auto", value_name = "MODE")]
    pub progress: super::run::Progress,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cwd: &Path, args: Args) -> anyhow::Result<i32> {
    super::recover_dead_runs(cwd);
    let rec = super::find_run(cwd, args.run.as_deref())?;
    let _lock = RunLock::acquire(&rec.paths().lock(), &rec.run_id)?;
    if let Some(d) = rec.domains.values().find(|d| !d.status.is_terminal()) {
        return Err(PreflightError::Other(format!(
            "run {} is not finished: domain `{}` is {}; continue it with `agent-farm resume {}`",
            rec.run_id, d.name, d.status, rec.run_id
        ))
        .into());
    }
    crate::runner::finish::ensure_integration(&rec)?;
    let mut farm = Farm::new(rec, super::run::reporters(args.progress))?;
    farm.emit(FarmEvent::MergeRequested);
    let rt = super::run::runtime()?;
    rt.block_on(async {
        farm.listen_for_signals();
        farm.merge_pending().await;
        farm.verify_and_land().await;
        farm.cleanup(!args.keep_worktrees, false).await;
    });
    // Nothing may keep the process alive once the run is concluded (e.g. a blocking wait
    // for another run's landing lock after an interrupt).
    rt.shutdown_background();
    Ok(super::run::conclude(&mut farm, args.json))
}
