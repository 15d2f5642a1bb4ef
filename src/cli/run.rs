//! `agent-farm run`: preflight, then the whole pipeline.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{PlanError, PreflightError, Problem};
use crate::events::FarmEvent;
use crate::git::{self, RepoInfo};
use crate::lock::RunLock;
use crate::ownership::OwnershipMap;
use crate::plan::{self, Plan, Preset};
use crate::record::{self, RunOptions, RunPaths, RunRecord};
use crate::reporter::{PlainReporter, Reporter, TtyReporter};
use crate::runner::{Farm, agent};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The plan (default: farm.yaml in the repository root).
    pub file: Option<PathBuf>,
    /// Run at most N agents at once (default: the plan's max_parallel).
    #[arg(short = 'j', long, value_name = "N")]
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
    /// Keep every worktree after the run (branches of kept worktrees are kept too).
    #[arg(long)]
    pub keep_worktrees: bool,
    /// Run and commit the domains but do not merge them; merge later with `agent-farm merge`.
    #[arg(long)]
    pub no_merge: bool,
    /// Agent preset to use instead of the plan's (claude, sim, custom).
    #[arg(long, value_name = "PRESET")]
    pub agent: Option<Preset>,
    /// Program to run for the agent preset instead of its default.
    #[arg(long, value_name = "PATH")]
    pub agent_program: Option<String>,
    /// Directory under which worktrees are created (default: <repo>.farm beside the repository).
    #[arg(long, value_name = "DIR")]
    pub worktree_root: Option<PathBuf>,
    /// Progress display: auto (live lines on a terminal), plain (one line per event), none.
    #[arg(long, default_value = "auto", value_name = "MODE")]
    pub progress: Progress,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Progress {
    Auto,
    Plain,
    None,
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
    let problems = map
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
pub fn preflight(cwd: &Path, args: &Args) -> anyhow::Result<Prepared> {
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
            return Err(PreflightError::Other(
                "--agent custom needs `agent.command` in the plan".into(),
            )
            .into());
        }
    }
    if let Some(p) = &args.agent_program {
        plan.agent.program = Some(p.clone());
    }
    let repo = git::open(&repo_info.workdir)?;
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
        return Err(
            PreflightError::Other(format!("`into` is not a valid branch name: {into}")).into(),
        );
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

pub fn reporters(progress: Progress) -> Vec<Box<dyn Reporter>> {
    match progress {
        Progress::None => vec![],
        Progress::Plain => vec![Box::new(PlainReporter::stderr())],
        Progress::Auto if std::io::stderr().is_terminal() => vec![Box::new(TtyReporter::new())],
        Progress::Auto => vec![Box::new(PlainReporter::stderr())],
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub fn run(cwd: &Path, args: Args) -> anyhow::Result<i32> {
    super::recover_dead_runs(cwd);
    let prep = preflight(cwd, &args)?;
    let run_id = record::new_run_id();
    let paths = RunPaths::new(&prep.repo.common_dir, &run_id);
    let _lock = RunLock::acquire(&paths.lock(), &run_id)?;
    let options = RunOptions {
        jobs: args.jobs.unwrap_or(prep.plan.max_parallel).max(1),
        fail_fast: args.fail_fast,
        keep_worktrees: args.keep_worktrees,
        no_merge: args.no_merge,
        deadline_ms: args.deadline.map(|d| d.as_millis() as u64),
        retries: args.retries,
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
    let mut farm = Farm::new(rec, reporters(args.progress))?;
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
    farm.retries = args.retries;
    farm.emit(FarmEvent::RunStarted {
        run_id: run_id.clone(),
        domains: prep.plan.domains.len(),
        jobs: farm.record.options.jobs,
        base: prep.base.clone(),
        base_commit: prep.base_commit.to_string(),
        into: prep.into.clone(),
    });
    for w in &prep.warnings {
        farm.emit(FarmEvent::Warning {
            domain: None,
            message: w.clone(),
        });
    }
    let rt = runtime()?;
    rt.block_on(async {
        farm.listen_for_signals();
        farm.dispatch().await;
        if farm.check_interrupt() {
            // Partial work is committed on the branches; worktrees go, branches stay.
            farm.cleanup(true, false).await;
        } else if args.no_merge {
            farm.cleanup(!args.keep_worktrees, false).await;
        } else {
            farm.merge_pending().await;
            farm.verify_and_land().await;
            farm.cleanup(!args.keep_worktrees, false).await;
        }
    });
    // Nothing may keep the process alive once the run is concluded (e.g. a blocking wait
    // for another run's landing lock after an interrupt).
    rt.shutdown_background();
    Ok(conclude(&mut farm, args.json))
}

/// Compute the exit code, finish the record, write the report and print it.
pub fn conclude(farm: &mut Farm, json: bool) -> i32 {
    let mut code = crate::report::exit_code(&farm.record);
    farm.emit(FarmEvent::RunFinished { exit_code: code });
    farm.flush();
    farm.finish_reporters();
    if let Some(e) = farm.persist_error() {
        // The work itself is in git; only the run's own files are incomplete.
        eprintln!(
            "error: the run's files under {} could not all be written: {e}; the domains' work is in git (see the branches below), but `status`, `resume` and `logs` may miss parts of this run",
            farm.record.paths().dir.display()
        );
        code = code.max(crate::error::exit::INTERNAL);
    }
    let report = crate::report::build(&farm.record, crate::events::now_ms());
    if let Err(e) = record::write_json_atomic(&farm.record.paths().report(), &report) {
        tracing::error!("cannot write report.json: {e}");
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", report.render());
        if farm.record.interrupted.is_some() {
            println!(
                "partial work is committed on the kept branches; continue with `agent-farm resume {}`, merge only what finished with `agent-farm merge {}`, or remove everything with `agent-farm clean {} --force`",
                farm.record.run_id, farm.record.run_id, farm.record.run_id
            );
        } else if farm.record.options.no_merge {
            println!(
                "not merged (--no-merge); merge with `agent-farm merge {}`",
                farm.record.run_id
            );
        }
    }
    code
}
