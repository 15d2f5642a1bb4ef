//! `agent-farm resume`: continue a run that was interrupted or whose process died.

use std::path::Path;

use crate::events::{DomainStatus, FarmEvent};
use crate::lock::RunLock;
use crate::record::Phase;
use crate::runner::Farm;
use crate::runner::finish::{recover_run, reset_blocked};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Run id or unique prefix (default: the most recent run).
    pub run: Option<String>,
    /// Also run again the domains that failed, timed out or were blocked.
    #[arg(long)]
    pub retry_failed: bool,
    /// Keep every worktree after the run.
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
    // Held by a live process means the run is not interrupted: it is running.
    let _lock = RunLock::acquire(&rec.paths().lock(), &rec.run_id)?;
    let failed = |s: DomainStatus| {
        matches!(
            s,
            DomainStatus::Failed | DomainStatus::TimedOut | DomainStatus::Blocked
        )
    };
    let unfinished = |s: DomainStatus| !s.is_terminal() || s == DomainStatus::Cancelled;
    let finished = rec.phase == Phase::Finished
        && rec.interrupted.is_none()
        && !rec
            .domains
            .values()
            .any(|d| unfinished(d.status) || (args.retry_failed && failed(d.status)));
    if finished {
        println!(
            "run {} already finished (exit code {}); nothing to resume",
            rec.run_id,
            rec.exit_code.unwrap_or(0)
        );
        return Ok(0);
    }
    crate::runner::finish::ensure_integration(&rec)?;
    let keep_worktrees = args.keep_worktrees || rec.options.keep_worktrees;
    let mut farm = Farm::new(rec, super::run::reporters(args.progress))?;
    farm.retries = farm.record.options.retries;
    farm.emit(FarmEvent::Resumed {
        pid: std::process::id(),
    });
    let snapshot = farm.record.clone();
    let rt = super::run::runtime()?;
    rt.block_on(async {
        farm.listen_for_signals();
        let events = tokio::task::spawn_blocking(move || recover_run(&snapshot))
            .await
            .unwrap_or_default();
        for ev in events {
            farm.emit(ev);
        }
        let reset: Vec<(String, String, bool)> = farm
            .record
            .plan
            .domains
            .iter()
            .filter_map(|d| {
                let dr = farm.record.domain(&d.name)?;
                let s = dr.status;
                let agent_succeeded = dr
                    .attempts
                    .last()
                    .and_then(|a| a.end.as_ref())
                    .is_some_and(|e| e.success());
                let why = if unfinished(s) {
                    format!("it was {s} when the run stopped")
                } else if s == DomainStatus::Skipped {
                    "it was skipped; its dependencies may succeed now".to_string()
                } else if args.retry_failed && failed(s) {
                    format!("--retry-failed: it {s}")
                } else {
                    return None;
                };
                Some((d.name.clone(), why, unfinished(s) && agent_succeeded))
            })
            .collect();
        for (domain, reason, after_agent) in reset {
            // A blocked domain's branch holds the changes that blocked it: set them aside,
            // or the audit would block the new attempt again.
            if farm.record.domain(&domain).map(|d| d.status) == Some(DomainStatus::Blocked) {
                let snapshot = farm.record.clone();
                let d = domain.clone();
                let events = tokio::task::spawn_blocking(move || reset_blocked(&snapshot, &d))
                    .await
                    .unwrap_or_default();
                for ev in events {
                    farm.emit(ev);
                }
            }
            farm.emit(FarmEvent::DomainReset {
                domain,
                reason,
                after_agent,
            });
        }
        farm.dispatch().await;
        if farm.check_interrupt() {
            farm.cleanup(true, false).await;
        } else if farm.record.options.no_merge {
            farm.cleanup(!keep_worktrees, false).await;
        } else {
            farm.merge_pending().await;
            farm.verify_and_land().await;
            farm.cleanup(!keep_worktrees, false).await;
        }
    });
    // Nothing may keep the process alive once the run is concluded (e.g. a blocking wait
    // for another run's landing lock after an interrupt).
    rt.shutdown_background();
    Ok(super::run::conclude(&mut farm, args.json))
}
