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
    super::recover_dead_runs(cwd);
    let records: Vec<RunRecord> = if args.all {
        let info = crate::git::discover(cwd)?;
        list_runs(&info.common_dir)
            .iter()
            .filter_map(|id| RunRecord::load(&RunPaths::new(&info.common_dir, id).record()).ok())
            .collect()
    } else {
        match super::find_run(cwd, args.run.as_deref()) {
            Ok(r) => vec![r],
            // The record is gone (deleted by hand, or never written): clean by name.
            Err(e) if args.run.is_some() && is_not_found(&e) => {
                let run_id = args.run.clone().unwrap_or_default();
                let info = crate::git::discover(cwd)?;
                let into = info.head_branch.clone().unwrap_or_else(|| "main".into());
                let events = crate::runner::finish::cleanup_without_record(
                    &info.workdir,
                    &run_id,
                    &into,
                    args.force,
                );
                if events.is_empty() {
                    return Err(e);
                }
                println!("{run_id}: no run record; cleaning what git still holds for this run");
                for ev in &events {
                    if let Some(line) = describe(ev) {
                        println!("{run_id}: {line}");
                    }
                }
                return Ok(0);
            }
            Err(e) => return Err(e),
        }
    };
    if args.all {
        // Runs git still holds something of but no record knows: cleaned by name.
        let info = crate::git::discover(cwd)?;
        let into = info.head_branch.clone().unwrap_or_else(|| "main".into());
        for run_id in crate::runner::finish::orphan_runs(&info.workdir, &info.common_dir) {
            let events = crate::runner::finish::cleanup_without_record(
                &info.workdir,
                &run_id,
                &into,
                args.force,
            );
            println!("{run_id}: no run record; cleaning what git still holds for this run");
            for ev in &events {
                if let Some(line) = describe(ev) {
                    println!("{run_id}: {line}");
                }
            }
        }
    }
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
        let journal = crate::journal::Journal::new(&rec.paths().dir);
        let events = cleanup_run(&rec, &journal, true, args.force);
        let run_id = rec.run_id.clone();
        // Through the run's event log, like every other change of its record.
        let opts = crate::runner::FarmOptions {
            mode: crate::runner::dispatcher::Mode::Merge,
            keep_worktrees: false,
            retries: None,
        };
        let mut farm = crate::runner::Farm::new(rec, Vec::new(), opts)?;
        let mut kept = 0;
        for ev in &events {
            if matches!(ev, crate::events::FarmEvent::BranchKept { .. }) {
                kept += 1;
            }
            if let Some(line) = describe(ev) {
                println!("{run_id}: {line}");
            }
            farm.emit(ev.clone());
        }
        farm.flush();
        let rec = farm.record();
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

fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<PreflightError>(),
            Some(PreflightError::RunNotFound { .. }) | Some(PreflightError::NoRuns { .. })
        ) || c
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    })
}

fn pid_alive(pid: u32) -> bool {
    pid != std::process::id()
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}
