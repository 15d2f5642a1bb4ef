//! The pipeline as a library: one [`Session`] per command that drives a run — `start` (a new
//! run, after preflight), `resume`, `merge` — then [`Session::drive`] and [`Session::conclude`].
//! The CLI is argument parsing, one call here, and rendering.
//!
//! Every session begins by finishing or undoing what dead runs of the repository left half done
//! ([`crate::runner::finish::recover_dead_runs`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{PlanError, PreflightError, Problem};
use crate::events::{DomainStatus, FarmEvent};
use crate::git::{self, RepoInfo};
use crate::lock::RunLock;
use crate::ownership::OwnershipMap;
use crate::plan::{self, Plan, Preset};
use crate::record::{self, Phase, RunOptions, RunPaths, RunRecord, list_runs};
use crate::reporter::{Reporter, describe};
use crate::runner::dispatcher::Mode;
use crate::runner::finish::cleanup_run;
use crate::runner::{Farm, FarmOptions, agent};

/// What `agent-farm run` asks for.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// The plan (default: farm.yaml in the repository root).
    pub file: Option<PathBuf>,
    pub jobs: Option<usize>,
    pub fail_fast: bool,
    pub retries: Option<u32>,
    pub deadline: Option<Duration>,
    pub keep_worktrees: bool,
    pub no_merge: bool,
    pub agent: Option<Preset>,
    pub agent_program: Option<String>,
    pub worktree_root: Option<PathBuf>,
}

/// Everything preflight established; nothing has been created yet.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub repo: RepoInfo,
    pub plan: Plan,
    pub base: String,
    pub base_commit: git2::Oid,
    pub into: String,
    pub worktree_root: PathBuf,
    pub warnings: Vec<String>,
}

pub fn plan_path(repo: Option<&RepoInfo>, cwd: &Path, file: Option<&Path>) -> PathBuf {
    match file {
        Some(f) if f.is_absolute() => f.to_owned(),
        Some(f) => cwd.join(f),
        None => plan::default_path(repo.map_or(cwd, |r| r.workdir.as_path())),
    }
}

/// Ownership overlaps between domains on files that exist at `commit`.
/// What the plan's ownership means for the files at base: overlaps (errors), files owned per
/// domain, files owned by nobody, and domains whose globs match nothing (warnings).
pub struct OwnershipAtBase {
    pub problems: Vec<Problem>,
    pub per_domain: Vec<usize>,
    pub unowned: usize,
    pub warnings: Vec<String>,
}

pub fn ownership_at_base(
    plan: &Plan,
    repo: &git2::Repository,
    commit: git2::Oid,
    base: &str,
) -> Result<OwnershipAtBase, git::GitError> {
    let files = git::tree_paths(repo, commit)?;
    let Ok(map) = OwnershipMap::new(&plan.domains) else {
        return Ok(OwnershipAtBase {
            problems: Vec::new(),
            per_domain: vec![0; plan.domains.len()],
            unowned: files.len(),
            warnings: Vec::new(),
        });
    };
    let mut problems: Vec<Problem> = map
        .overlaps_in(files.iter().map(String::as_str))
        .into_iter()
        .map(|(a, b, examples)| Problem {
            line: plan.domain(&b).and_then(|d| d.line),
            column: None,
            domain: Some(b.clone()),
            message: format!(
                "ownership overlaps with domain `{a}` on existing files: {}",
                examples.join(", ")
            ),
        })
        .collect();
    // Worktrees never check submodules out: what an agent wrote inside one would be in no
    // commit. A domain whose globs reach inside a submodule is refused before launch.
    for (sub, siblings) in git::submodules_at(repo, commit)? {
        for d in &plan.domains {
            let Some((glob, example)) = d
                .owns
                .iter()
                .find_map(|g| crate::ownership::owned_inside(g, &sub).map(|e| (g.clone(), e)))
            else {
                continue;
            };
            let beside = match siblings.len() {
                0 => String::new(),
                n if n <= 8 => format!(": {}", siblings.join(", ")),
                n => format!(": {} and {} more", siblings[..8].join(", "), n - 8),
            };
            problems.push(Problem {
                line: d.line,
                column: None,
                domain: Some(d.name.clone()),
                message: format!(
                    "owns `{glob}`, which reaches inside the submodule `{sub}` (e.g. `{example}`); agent-farm does not check submodules out in worktrees, so what an agent wrote there would be in no commit. Narrow `owns` so that no pattern covers `{sub}`: name the paths beside it instead{beside}"
                ),
            });
        }
    }
    let per_domain: Vec<usize> = plan
        .domains
        .iter()
        .map(|d| files.iter().filter(|f| map.owns(&d.name, f)).count())
        .collect();
    let unowned = files.iter().filter(|f| map.owners(f).is_empty()).count();
    let warnings = plan
        .domains
        .iter()
        .zip(&per_domain)
        .filter(|(_, n)| **n == 0)
        .map(|(d, _)| {
            format!(
                "domain `{}`: its globs match no file at {base} (fine if it only creates files)",
                d.name
            )
        })
        .collect();
    Ok(OwnershipAtBase {
        problems,
        per_domain,
        unowned,
        warnings,
    })
}

/// Check everything that can be checked before anything is created.
pub fn preflight(cwd: &Path, args: &RunRequest) -> anyhow::Result<Prepared> {
    let repo_info = git::discover(cwd)?;
    let path = plan_path(Some(&repo_info), cwd, args.file.as_deref());
    let mut plan = plan::load(&path)?;
    if let Some(p) = args.agent
        && p != plan.agent.preset
    {
        // The plan's program and command belong to its own preset.
        plan.agent.preset = p;
        plan.agent.program = None;
        plan.agent.command = plan.agent.command.filter(|_| p == Preset::Custom);
        if p == Preset::Custom && plan.agent.command.is_none() {
            return Err(PreflightError::CustomAgentNeedsCommand.into());
        }
    }
    if let Some(p) = &args.agent_program {
        plan.agent.program = Some(p.clone());
    }
    let repo = git::open(&repo_info.workdir)?;
    // The user's commit rules: git would sign every commit, and agent-farm cannot (yet).
    if let Ok(cfg) = repo.config()
        && cfg.get_bool("commit.gpgsign").unwrap_or(false)
    {
        let origin = cfg
            .get_entry("commit.gpgsign")
            .ok()
            .map(|e| format!("{:?} configuration", e.level()).to_lowercase())
            .unwrap_or_else(|| "git configuration".into());
        return Err(PreflightError::SigningRequired { origin }.into());
    }
    // A date git would refuse is refused here, before any commit would be dated otherwise.
    if let Some((var, value)) = crate::git::bad_date_env() {
        return Err(PreflightError::BadDate { var, value }.into());
    }
    let base = match plan.base.clone().or_else(|| repo_info.head_branch.clone()) {
        Some(b) => b,
        None => return Err(PreflightError::NoBase.into()),
    };
    let base_commit = git::resolve_commit(&repo, &base)
        .ok_or_else(|| PreflightError::BaseNotFound { base: base.clone() })?;
    let into = match plan.into.clone() {
        Some(i) => i,
        None if git::branch_exists(&repo, &base) => base.clone(),
        None => {
            return Err(PreflightError::IntoInvalid {
                into: "(unset)".into(),
                base,
            }
            .into());
        }
    };
    if git2::Branch::name_is_valid(&into).ok() != Some(true) {
        return Err(PreflightError::IntoNotABranchName { into }.into());
    }
    let at_base = ownership_at_base(&plan, &repo, base_commit, &base)?;
    if !at_base.problems.is_empty() {
        return Err(PlanError::Invalid {
            path: plan.source.clone(),
            problems: at_base.problems,
        }
        .into());
    }
    let mut warnings = at_base.warnings;
    // The agent program must be resolvable before any worktree exists.
    let program = agent::program(&plan.agent, &agent::self_exe());
    if crate::runner::process::resolve_program(&program, &repo_info.workdir).is_none() {
        return Err(PreflightError::AgentNotFound { program }.into());
    }
    for c in &plan.copy {
        let p = repo_info.workdir.join(c);
        if !p.is_file() {
            return Err(PreflightError::CopyMissing { path: p }.into());
        }
    }
    let worktree_root =
        resolve_path(
            &match args.worktree_root.clone().or(plan.worktree_root.clone()) {
                Some(r) if r.is_absolute() => r,
                Some(r) => repo_info.workdir.join(r),
                None => git::default_worktree_root(&repo_info.workdir),
            },
        );
    check_writable(&worktree_root)?;
    if worktree_root.starts_with(&repo_info.workdir)
        && !worktree_root.starts_with(&repo_info.common_dir)
    {
        return Err(PreflightError::WorktreeRoot {
            path: worktree_root,
            message: "it is inside the working tree; choose a directory outside it (e.g. ../wt)"
                .into(),
        }
        .into());
    }
    if let Some(wt) = git::checked_out_at(&repo, &into) {
        let dirty = git::dirty_paths(&wt)?;
        if !dirty.is_empty() {
            warnings.push(format!(
                "`{into}` is checked out at {} with uncommitted changes ({} file(s)); the result will stay on the integration branch and will not be landed there",
                wt.display(),
                dirty.len()
            ));
        }
    }
    Ok(Prepared {
        repo: repo_info,
        plan,
        base,
        base_commit,
        into,
        worktree_root,
        warnings,
    })
}

/// `path` with `.` and `..` resolved and its longest existing prefix canonicalized (symlinks
/// followed), so that "is it inside the working tree" can be answered by prefix.
fn resolve_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut lexical = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                lexical.pop();
            }
            Component::CurDir => {}
            c => lexical.push(c),
        }
    }
    let mut existing = lexical.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (
            existing.file_name().map(|n| n.to_owned()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return lexical,
        }
    }
    let mut out = existing.canonicalize().unwrap_or(existing);
    for name in rest.into_iter().rev() {
        out.push(name);
    }
    out
}

fn check_writable(dir: &Path) -> Result<(), PreflightError> {
    let mut p = dir.to_path_buf();
    while !p.exists() {
        match p.parent() {
            Some(parent) => p = parent.to_path_buf(),
            None => break,
        }
    }
    nix::unistd::access(&p, nix::unistd::AccessFlags::W_OK).map_err(|e| {
        PreflightError::WorktreeRoot {
            path: dir.to_owned(),
            message: format!("{} is not writable: {e}", p.display()),
        }
    })
}

/// A run being driven by this process, from its start to its report.
pub struct Session {
    farm: Farm,
    _lock: RunLock,
    rt: tokio::runtime::Runtime,
}

/// How a session ended.
#[derive(Debug)]
pub struct Outcome {
    pub exit_code: i32,
    pub record: RunRecord,
    pub report: crate::report::Report,
    /// Why the run's own files are incomplete (a full disk), if they are.
    pub persist_error: Option<String>,
    /// The HTML report written beside report.json (`report.html`), if it could be.
    pub html_report: Option<PathBuf>,
}

/// What `resume` found.
pub enum Resumed {
    /// The run finished and nothing is left to do.
    AlreadyFinished {
        run_id: String,
        exit_code: i32,
    },
    Session(Box<Session>),
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Finish or undo what dead runs of this repository left half done; returns what was done.
pub fn recover_dead_runs(cwd: &Path) -> Vec<(String, String)> {
    match git::discover(cwd) {
        Ok(info) => crate::runner::finish::recover_dead_runs(&info.common_dir),
        Err(_) => Vec::new(),
    }
}

impl Session {
    /// Preflight (nothing is created when it fails), then create the run: its record first,
    /// then its integration branch, then its first events.
    pub fn start(
        cwd: &Path,
        req: &RunRequest,
        reporters: Vec<Box<dyn Reporter>>,
    ) -> anyhow::Result<Session> {
        let prep = preflight(cwd, req)?;
        let run_id = record::new_run_id();
        let paths = RunPaths::new(&prep.repo.common_dir, &run_id);
        let lock = RunLock::acquire(&paths.lock(), &run_id)?;
        let options = RunOptions {
            jobs: req.jobs.unwrap_or(prep.plan.max_parallel).max(1),
            fail_fast: req.fail_fast,
            keep_worktrees: req.keep_worktrees,
            no_merge: req.no_merge,
            deadline_ms: req.deadline.map(|d| d.as_millis() as u64),
            retries: req.retries,
        };
        let rec = RunRecord::new(
            run_id.clone(),
            prep.repo.workdir.clone(),
            prep.repo.common_dir.clone(),
            prep.plan.clone(),
            prep.base.clone(),
            prep.base_commit.to_string(),
            prep.into.clone(),
            prep.worktree_root.clone(),
            options,
        );
        // The record first: from its very first ref on, `resume` and `clean` can see the run.
        rec.save()?;
        let opts = FarmOptions {
            mode: Mode::Run,
            keep_worktrees: req.keep_worktrees,
            retries: req.retries,
        };
        let rt = runtime()?;
        let mut farm = {
            let _guard = rt.enter();
            Farm::new(rec, reporters, opts)?
        };
        {
            let repo = git::open(&prep.repo.workdir)?;
            crate::runner::effects::create_branch(
                &farm.journal,
                &repo,
                &farm.names,
                &farm.names.integration(),
                prep.base_commit,
            )?;
        }
        let jobs = farm.record().options.jobs;
        let _guard = rt.enter();
        farm.emit(FarmEvent::RunStarted {
            run_id: run_id.clone(),
            domains: prep.plan.domains.len(),
            jobs,
            base: prep.base.clone(),
            base_commit: prep.base_commit.to_string(),
            into: prep.into.clone(),
            into_commit: git::open(&prep.repo.workdir)
                .ok()
                .and_then(|r| git::branch_tip(&r, &prep.into))
                .map(|c| c.to_string()),
        });
        for w in &prep.warnings {
            farm.emit(FarmEvent::Warning {
                domain: None,
                message: w.clone(),
            });
        }
        drop(_guard);
        Ok(Session {
            farm,
            _lock: lock,
            rt,
        })
    }

    /// Continue a run that was interrupted or whose process died.
    pub fn resume(
        cwd: &Path,
        run: Option<&str>,
        retry_failed: bool,
        keep_worktrees: bool,
        reporters: Vec<Box<dyn Reporter>>,
    ) -> anyhow::Result<Resumed> {
        let rec = find_run(cwd, run)?;
        // Held by a live process means the run is not interrupted: it is running.
        let lock = RunLock::acquire(&rec.paths().lock(), &rec.run_id)?;
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
                .any(|d| unfinished(d.status) || (retry_failed && failed(d.status)));
        if finished {
            return Ok(Resumed::AlreadyFinished {
                run_id: rec.run_id.clone(),
                exit_code: rec.exit_code.unwrap_or(0),
            });
        }
        crate::runner::finish::ensure_integration(&rec)?;
        let opts = FarmOptions {
            mode: Mode::Resume { retry_failed },
            keep_worktrees: keep_worktrees || rec.options.keep_worktrees,
            retries: rec.options.retries,
        };
        let rt = runtime()?;
        let _guard = rt.enter();
        let mut farm = Farm::new(rec, reporters, opts)?;
        farm.emit(FarmEvent::Resumed {
            pid: std::process::id(),
        });
        drop(_guard);
        Ok(Resumed::Session(Box::new(Session {
            farm,
            _lock: lock,
            rt,
        })))
    }

    /// (Re)do the steps after the agents of a run whose domains are all done.
    pub fn merge(
        cwd: &Path,
        run: Option<&str>,
        keep_worktrees: bool,
        reporters: Vec<Box<dyn Reporter>>,
    ) -> anyhow::Result<Session> {
        let rec = find_run(cwd, run)?;
        let lock = RunLock::acquire(&rec.paths().lock(), &rec.run_id)?;
        if let Some(d) = rec.domains.values().find(|d| !d.status.is_terminal()) {
            return Err(PreflightError::RunNotFinished {
                run_id: rec.run_id.clone(),
                domain: d.name.clone(),
                status: d.status,
            }
            .into());
        }
        crate::runner::finish::ensure_integration(&rec)?;
        // A fix committed on a domain branch since the run is merged, not the old result again.
        let moved = crate::runner::finish::moved_branches(&rec)?;
        let opts = FarmOptions {
            mode: Mode::Merge,
            keep_worktrees,
            retries: rec.options.retries,
        };
        let rt = runtime()?;
        let _guard = rt.enter();
        let mut farm = Farm::new(rec, reporters, opts)?;
        farm.emit(FarmEvent::MergeRequested);
        for ev in moved {
            farm.emit(ev);
        }
        drop(_guard);
        Ok(Session {
            farm,
            _lock: lock,
            rt,
        })
    }

    pub fn record(&self) -> &RunRecord {
        self.farm.record()
    }

    /// Drive the run to its end (agents, merges, verify, landing, cleanup).
    pub fn drive(&mut self) {
        let farm = &mut self.farm;
        self.rt.block_on(farm.drive());
    }

    /// Compute the exit code, finish the record, write the report.
    pub fn conclude(self) -> Outcome {
        let Session {
            mut farm,
            rt,
            _lock,
        } = self;
        let _guard = rt.enter();
        let mut code = crate::report::exit_code(farm.record());
        farm.emit(FarmEvent::RunFinished { exit_code: code });
        farm.flush();
        farm.finish_reporters();
        let persist_error = farm.persist_error();
        if persist_error.is_some() {
            code = code.max(crate::error::exit::INTERNAL);
        }
        let record = farm.record().clone();
        let report = crate::report::build(&record, crate::events::now_ms());
        let versioned = crate::export::json::versioned(&report);
        if let Err(e) = record::write_json_atomic(&record.paths().report(), &versioned) {
            tracing::error!("cannot write report.json: {e}");
        }
        let html_report = match crate::export::write_html(&record, crate::events::now_ms()) {
            Ok(path) => Some(path),
            Err(e) => {
                tracing::error!("cannot write the HTML report: {e}");
                None
            }
        };
        drop(_guard);
        drop(farm);
        // Nothing may keep the process alive once the run is concluded (e.g. a blocking wait
        // for another run's landing lock after an interrupt).
        rt.shutdown_background();
        Outcome {
            exit_code: code,
            record,
            report,
            persist_error,
            html_report,
        }
    }
}

/// Find a run's record: `run` if given (an id or a unique prefix), else the most recent one.
pub fn find_run(cwd: &Path, run: Option<&str>) -> anyhow::Result<RunRecord> {
    let info = crate::git::discover(cwd)?;
    let runs = record::list_runs(&info.common_dir);
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
                    return Err(PreflightError::AmbiguousRun {
                        prefix: r.to_string(),
                        runs: many.iter().map(|s| s.to_string()).collect(),
                    }
                    .into());
                }
            }
        }
        None => record::latest_run(&info.common_dir, &runs)
            .ok_or(PreflightError::NoRuns { dir: root })?,
    };
    let path = RunPaths::new(&info.common_dir, &id).record();
    Ok(RunRecord::load(&path)?)
}

/// What `agent-farm clean` asks for.
#[derive(Debug, Clone, Default)]
pub struct CleanRequest {
    pub run: Option<String>,
    pub all: bool,
    pub force: bool,
}

/// Remove what runs left (see `agent-farm clean`); returns the lines to show. Never deletes a
/// branch holding commits that are not merged unless `force`.
pub fn clean(cwd: &Path, args: &CleanRequest) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let records: Vec<RunRecord> = if args.all {
        let info = crate::git::discover(cwd)?;
        list_runs(&info.common_dir)
            .iter()
            .filter_map(|id| RunRecord::load(&RunPaths::new(&info.common_dir, id).record()).ok())
            .collect()
    } else {
        match find_run(cwd, args.run.as_deref()) {
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
                out.push(format!(
                    "{run_id}: no run record; cleaning what git still holds for this run"
                ));
                for ev in &events {
                    if let Some(line) = describe(ev) {
                        out.push(format!("{run_id}: {line}"));
                    }
                }
                return Ok(out);
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
            out.push(format!(
                "{run_id}: no run record; cleaning what git still holds for this run"
            ));
            for ev in &events {
                if let Some(line) = describe(ev) {
                    out.push(format!("{run_id}: {line}"));
                }
            }
        }
    }
    if records.is_empty() {
        out.push("nothing to clean".to_string());
        return Ok(out);
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
            return Err(PreflightError::RunStillRunning {
                run_id: rec.run_id.clone(),
                pid: rec.pid,
            }
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
                out.push(format!("{run_id}: {line}"));
            }
            farm.emit(ev.clone());
        }
        farm.flush();
        let rec = farm.record();
        if events.is_empty() {
            out.push(format!("{}: nothing left to clean", rec.run_id));
        } else if kept > 0 && !args.force {
            out.push(format!(
                "{}: {kept} branch(es) kept because their commits are not merged; `agent-farm clean {} --force` deletes them",
                rec.run_id, rec.run_id
            ));
        }
    }
    Ok(out)
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
