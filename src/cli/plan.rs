//! `agent-farm plan`: validate a plan and print how it would run. Creates nothing.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::coupling;
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
    /// Also analyse the repository's coupling at base (imports and co-change history) and warn
    /// about coupled files the plan splits between domains that run at the same time.
    #[arg(long)]
    pub coupling: bool,
}

/// Cut edges printed as warnings; `--json` lists them all.
const SHOWN_CUT_EDGES: usize = 10;
/// Pairs of domains summed in the text output.
const SHOWN_PAIRS: usize = 5;

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
    #[serde(skip_serializing_if = "Option::is_none")]
    coupling: Option<CouplingView>,
}

/// One piece of evidence, structured and as the sentence the text output prints.
#[derive(Debug, Serialize)]
struct EvidenceView {
    #[serde(flatten)]
    evidence: coupling::Evidence,
    text: String,
}

#[derive(Debug, Serialize)]
struct CutEdgeView {
    a: coupling::End,
    b: coupling::End,
    weight: f64,
    evidence: Vec<EvidenceView>,
}

/// `plan --coupling`: the analysis at base and what the plan cuts, or why there is none.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum CouplingView {
    Analysed {
        commit: String,
        files: usize,
        languages: std::collections::BTreeMap<String, usize>,
        history: coupling::HistoryStats,
        graph: coupling::GraphStats,
        /// Where the analysis spent its time (seconds).
        seconds: coupling::Timings,
        /// Every edge cut between independent domains, heaviest first.
        cut: Vec<CutEdgeView>,
        /// The cut summed per pair of domains, heaviest first.
        pairs: Vec<coupling::PairCut>,
    },
    Unavailable {
        error: String,
    },
}

fn coupling_view(
    plan: &plan::Plan,
    repo: &git2::Repository,
    commit: git2::Oid,
) -> Result<CouplingView, coupling::CouplingError> {
    // Reading ~10^4 blobs, libgit2's re-hash of every object read (which git itself does not do
    // on reads) is an eighth of the analysis; this process only reads from here on.
    git2::opts::strict_hash_verification(false);
    let analysis = coupling::analyze(repo, commit, &coupling::Options::default())?;
    let cut = analysis.cut(plan)?;
    Ok(CouplingView::Analysed {
        commit: commit.to_string(),
        files: analysis.measurements.files,
        languages: analysis.measurements.languages.clone(),
        history: analysis.history.clone(),
        graph: analysis.stats.clone(),
        seconds: analysis.timings.clone(),
        cut: cut
            .edges
            .into_iter()
            .map(|e| CutEdgeView {
                a: e.a,
                b: e.b,
                weight: e.weight,
                evidence: e
                    .evidence
                    .into_iter()
                    .map(|ev| EvidenceView {
                        text: ev.to_string(),
                        evidence: ev,
                    })
                    .collect(),
            })
            .collect(),
        pairs: cut.pairs,
    })
}

fn coupling_view_or_error(
    plan: &plan::Plan,
    repo: &git2::Repository,
    commit: git2::Oid,
) -> CouplingView {
    coupling_view(plan, repo, commit).unwrap_or_else(|e| CouplingView::Unavailable {
        error: e.to_string(),
    })
}

fn print_coupling(view: &CouplingView, base: Option<&str>) {
    let (commit, files, languages, history, graph, seconds, cut, pairs) = match view {
        CouplingView::Unavailable { error } => {
            println!("warning: no coupling analysis: {error}");
            return;
        }
        CouplingView::Analysed {
            commit,
            files,
            languages,
            history,
            graph,
            seconds,
            cut,
            pairs,
        } => (
            commit, files, languages, history, graph, seconds, cut, pairs,
        ),
    };
    let mut langs: Vec<(&String, &usize)> = languages.iter().collect();
    langs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let langs: Vec<String> = langs.iter().map(|(l, n)| format!("{l} {n}")).collect();
    println!(
        "\ncoupling at {} ({}): {files} file(s) ({}); {} import(s), {} co-changed pair(s) in the last {} commit(s) ({} merge(s) and {} of more than {} files skipped); {:.2} s",
        base.unwrap_or("base"),
        &commit[..commit.len().min(7)],
        langs.join(", "),
        graph.imports,
        graph.cochanges,
        history.walked,
        history.merges,
        history.large,
        history.max_commit_files,
        seconds.total,
    );
    if cut.is_empty() {
        println!("the plan cuts no coupling between independent domains");
        return;
    }
    let mut per_pair: Vec<String> = pairs
        .iter()
        .take(SHOWN_PAIRS)
        .map(|p| {
            format!(
                "{} | {}: {} edge(s), weight {:.2}",
                p.a, p.b, p.edges, p.weight
            )
        })
        .collect();
    if pairs.len() > SHOWN_PAIRS {
        per_pair.push(format!(
            "{} more pair(s) of domains",
            pairs.len() - SHOWN_PAIRS
        ));
    }
    println!(
        "the plan cuts {} coupled pair(s) of files between independent domains: {}",
        cut.len(),
        per_pair.join("; ")
    );
    for e in cut.iter().take(SHOWN_CUT_EDGES) {
        let text: Vec<&str> = e.evidence.iter().map(|ev| ev.text.as_str()).collect();
        println!(
            "warning: coupling: `{}` and `{}` are independent, but {} and {} are coupled (weight {:.2}): {}",
            e.a.domain,
            e.b.domain,
            e.a.path,
            e.b.path,
            e.weight,
            text.join("; ")
        );
    }
    if cut.len() > SHOWN_CUT_EDGES {
        println!(
            "warning: coupling: … and {} more cut edge(s) (`agent-farm plan --coupling --json` lists them all)",
            cut.len() - SHOWN_CUT_EDGES
        );
    }
}

pub fn run(cwd: &Path, args: Args) -> anyhow::Result<i32> {
    let repo = crate::git::discover(cwd).ok();
    let path = crate::session::plan_path(repo.as_ref(), cwd, args.file.as_deref());
    let plan = plan::load(&path)?;
    let mut warnings = Vec::new();
    let mut counts: Option<(Vec<usize>, usize)> = None;
    let mut coupling_view: Option<CouplingView> = None;
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
            // Advice only: a failed analysis is reported, never a failed plan.
            if args.coupling {
                coupling_view = Some(coupling_view_or_error(&plan, &r, commit));
            }
        } else {
            warnings.push(format!("base `{base}` not found in this repository"));
        }
    }
    if args.coupling && coupling_view.is_none() {
        coupling_view = Some(CouplingView::Unavailable {
            error: "it needs the plan's base commit in a git repository".into(),
        });
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
        coupling: coupling_view,
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
    if let Some(c) = &view.coupling {
        print_coupling(c, view.base.as_deref());
    }
    Ok(0)
}
