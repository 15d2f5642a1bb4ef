//! `agent-farm plan`: validate a plan and print how it would run. Creates nothing.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::PlanError;
use crate::plan::{self, schedule};
use crate::record;

#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "Examples:
  agent-farm plan                         # farm.yaml in the repository root
  agent-farm plan plans/refactor.yaml     # another plan
  agent-farm plan --json | jq .waves      # the execution plan as JSON (with a `version` field)

Exits 0 for a valid plan, 3 for an invalid one (every problem with its file, line and domain).")]
pub struct Args {
    /// The plan (default: farm.yaml in the repository root).
    pub file: Option<PathBuf>,
    /// Print the execution plan as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct DomainView {
    name: String,
    priority: i32,
    depends_on: Vec<String>,
    owns: Vec<String>,
    timeout: String,
    branch: String,
    worktree: String,
    files_at_base: Option<usize>,
}

#[derive(Debug, Serialize)]
struct PlanView {
    plan: String,
    base: Option<String>,
    into: Option<String>,
    max_parallel: usize,
    agent: String,
    waves: Vec<Vec<String>>,
    critical_path: Vec<String>,
    domains: Vec<DomainView>,
    unowned_files: Option<usize>,
    warnings: Vec<String>,
}

pub fn run(cwd: &Path, args: Args) -> anyhow::Result<i32> {
    let repo = crate::git::discover(cwd).ok();
    let path = crate::session::plan_path(repo.as_ref(), cwd, args.file.as_deref());
    let plan = plan::load(&path)?;
    let mut warnings = Vec::new();
    let mut counts: Option<(Vec<usize>, usize)> = None;
    let base = plan
        .base
        .clone()
        .or_else(|| repo.as_ref().and_then(|r| r.head_branch.clone()));
    if let (Some(info), Some(base)) = (&repo, &base) {
        let r = crate::git::open(&info.workdir)?;
        if let Some(commit) = crate::git::resolve_commit(&r, base) {
            let at_base = crate::session::ownership_at_base(&plan, &r, commit, base)?;
            if !at_base.problems.is_empty() {
                return Err(PlanError::Invalid {
                    path,
                    problems: at_base.problems,
                }
                .into());
            }
            warnings.extend(at_base.warnings);
            counts = Some((at_base.per_domain, at_base.unowned));
        } else {
            warnings.push(format!("base `{base}` not found in this repository"));
        }
    }
    let root = repo
        .as_ref()
        .map(|r| crate::git::default_worktree_root(&r.workdir))
        .unwrap_or_else(|| PathBuf::from("../<repo>.farm"));
    let root = plan.worktree_root.clone().unwrap_or(root);
    let (critical_path, _) = schedule::critical_path(&plan.domains, |_| 1.0);
    let view = PlanView {
        plan: path.display().to_string(),
        base: base.clone(),
        into: plan.into.clone().or(base),
        max_parallel: plan.max_parallel,
        agent: plan.agent.preset.to_string(),
        waves: schedule::waves(&plan.domains),
        critical_path,
        domains: plan
            .domains
            .iter()
            .enumerate()
            .map(|(i, d)| DomainView {
                name: d.name.clone(),
                priority: d.priority,
                depends_on: d.depends_on.clone(),
                owns: d.owns.clone(),
                timeout: humantime::format_duration(plan.timeout_for(d)).to_string(),
                branch: record::branch_name("<run-id>", &d.name),
                worktree: root.join("<run-id>").join(&d.name).display().to_string(),
                files_at_base: counts.as_ref().map(|(c, _)| c[i]),
            })
            .collect(),
        unowned_files: counts.as_ref().map(|(_, u)| *u),
        warnings,
    };
    if args.json {
        println!("{}", super::conventions::versioned_json(&view)?);
        return Ok(0);
    }
    println!(
        "plan {} is valid: {} domain(s), agent {}, up to {} at once",
        view.plan,
        view.domains.len(),
        view.agent,
        view.max_parallel
    );
    println!(
        "base {} → into {}",
        view.base.as_deref().unwrap_or("(current branch)"),
        view.into.as_deref().unwrap_or("(base)")
    );
    println!("\nwaves:");
    for (i, w) in view.waves.iter().enumerate() {
        println!("  {}: {}", i + 1, w.join(", "));
    }
    println!("critical path: {}", view.critical_path.join(" → "));
    println!("\ndomains:");
    for d in &view.domains {
        println!(
            "  {}  (priority {}, timeout {}{})",
            d.name,
            d.priority,
            d.timeout,
            if d.depends_on.is_empty() {
                String::new()
            } else {
                format!(", after {}", d.depends_on.join(", "))
            }
        );
        println!(
            "    owns      {}{}",
            d.owns.join(", "),
            d.files_at_base
                .map(|n| format!("  ({n} file(s) at base)"))
                .unwrap_or_default()
        );
        println!("    branch    {}", d.branch);
        println!("    worktree  {}", d.worktree);
    }
    if let Some(u) = view.unowned_files {
        println!("\n{u} file(s) at base are owned by no domain (no agent should change them)");
    }
    for w in &view.warnings {
        println!("warning: {w}");
    }
    Ok(0)
}
