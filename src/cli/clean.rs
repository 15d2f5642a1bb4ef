//! `agent-farm clean`: remove a run's worktrees and the branches whose work is merged.

use std::path::Path;

use crate::error::PreflightError;
use crate::lock::RunLock;
use crate::record::{RunPaths, RunRecord, list_runs};
use crate::reporter::describe;
use crate::runner::finish::cleanup_run;

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
    let records: Vec<RunRecord> = if args.all {
        let info = crate::git::discover(cwd)?;
        list_runs(&info.common_dir)
            .iter()
            .filter_map(|id| RunRecord::load(&RunPaths::new(&info.common_dir, id).record()).ok())
            .collect()
    } else {
        vec![super::find_run(cwd, args.run.as_deref())?]
    };
    if records.is_empty() {
        println!("nothing to clean");
        return Ok(0);
    }
    for rec in records {
        let _lock = RunLock::acquire(&rec.paths().lock(), &rec.run_id)?;
        if rec.phase == crate::record::Phase::Running
            && rec
                .domains
                .values()
                .any(|d| d.status == crate::events::DomainStatus::Running)
            && pid_alive(rec.pid)
        {
            return Err(PreflightError::Other(format!(
                "run {} is still running (pid {}); wait for it or stop it first",
                rec.run_id, rec.pid
            ))
            .into());
        }
        let events = cleanup_run(&rec, true, args.force);
        let mut rec = rec;
        let mut kept = 0;
        for ev in &events {
            if matches!(ev, crate::events::FarmEvent::BranchKept { .. }) {
                kept += 1;
            }
            if let Some(line) = describe(ev) {
                println!("{}: {line}", rec.run_id);
            }
            rec.apply(&crate::events::Timed {
                at_ms: crate::events::now_ms(),
                event: ev.clone(),
            });
        }
        rec.save()?;
        if events.is_empty() {
            println!("{}: nothing left to clean", rec.run_id);
        } else if kept > 0 && !args.force {
            println!(
                "{}: {kept} branch(es) kept because their commits are not merged; `agent-farm clean {} --force` deletes them",
                rec.run_id, rec.run_id
            );
        }
    }
    Ok(0)
}

fn pid_alive(pid: u32) -> bool {
    pid != std::process::id()
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}
