//! Drafting a plan from a goal (`agent-farm draft`): the pure parts. What the scouts and the
//! planner are told ([`prompts`]), the planner's answer and reading it out of an agent's output
//! ([`proposal`]), checking it with agent-farm's own rules and fixing what is mechanical
//! ([`check`]), the advice against a farm, and the commented `farm.yaml` ([`yaml`]).
//!
//! Running the agents is the command's (`cli::draft`); nothing here spawns a process or reads
//! git: the repository comes in as its file list and its [`crate::coupling`] graph.

pub mod check;
pub mod prompts;
pub mod proposal;
pub mod yaml;

use std::collections::BTreeSet;

pub use check::{Checked, Problem, ProblemKind, Repo};
pub use prompts::{Facts, Scouted};
pub use proposal::{Proposal, ProposedDomain, ScoutReport};

use crate::coupling::{Cut, Independence};
use crate::error::DraftError;
use crate::ownership::OwnershipMap;
use crate::plan::{self, schedule};

/// A checked, fixed plan ready to be written.
#[derive(Debug, Clone)]
pub struct Draft {
    pub proposal: Proposal,
    /// What agent-farm changed in the planner's proposal, in order.
    pub changes: Vec<String>,
    /// Problems no fix resolved (reported, not fatal: the plan is still valid).
    pub remaining: Vec<Problem>,
    pub warnings: Vec<String>,
    /// Why one domain was written instead of a farm, when the rules of thumb said so.
    pub single: Option<String>,
    /// The coupling the written split cuts between independent domains.
    pub cut: Cut,
    pub plan: plan::Plan,
}

/// The existing files the goal probably changes: what the planner and the scouts named.
pub fn touched(p: &Proposal, scouts: &[Scouted], files: &[String]) -> BTreeSet<String> {
    let named = p.touches.iter().cloned().chain(
        scouts
            .iter()
            .filter_map(|s| s.report.as_ref())
            .flat_map(|r| r.files.iter().cloned()),
    );
    check::existing(named, files)
}

/// Fix `p` mechanically, apply the advice against a farm, and check the result: the plan to
/// write, or the problems that keep it from being a valid plan at all.
pub fn finish(
    p: Proposal,
    goal: &str,
    touched: &BTreeSet<String>,
    repo: Repo,
    max_domains: Option<usize>,
) -> Result<Draft, DraftError> {
    let proposed = p.domains.len();
    let original = p.clone();
    let (mut fixed, mut changes) = check::fix(p, goal, touched, repo, max_domains);
    let single = check::advise_single(&fixed, touched.len(), proposed);
    // One domain already: kept as the planner named it.
    if let Some(reason) = &single
        && fixed.domains.len() > 1
    {
        changes.push(format!(
            "wrote a single domain instead of {}: {reason}",
            fixed.domains.len()
        ));
        fixed = check::single_domain(&fixed, &original, goal, reason, repo.files);
    }
    let checked = check::check(&fixed, touched, repo, max_domains);
    // Files at base owned twice would make `agent-farm plan` refuse what was written.
    let overlapping = checked
        .problems
        .iter()
        .any(|p| matches!(p.kind, ProblemKind::Overlap | ProblemKind::Invalid));
    let (Some(plan), false) = (checked.plan, overlapping) else {
        return Err(DraftError::Unfixable {
            problems: checked.problems.into_iter().map(|p| p.message).collect(),
        });
    };
    Ok(Draft {
        proposal: fixed,
        changes,
        remaining: checked.problems,
        warnings: checked.warnings,
        single,
        cut: checked.cut,
        plan,
    })
}

/// How the plan would run: its waves, its critical path and the expected parallelism (the work
/// over the critical path's, each domain weighing the files it owns at base, at least one).
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub waves: Vec<Vec<String>>,
    pub critical_path: Vec<String>,
    pub parallelism: f64,
    /// Pairs of domains that may run at the same time.
    pub independent_pairs: usize,
}

pub fn schedule_of(plan: &plan::Plan, files: &[String]) -> Schedule {
    let weight = |name: &str| -> f64 {
        let n = OwnershipMap::new(&plan.domains)
            .map(|m| files.iter().filter(|f| m.owns(name, f)).count())
            .unwrap_or(0);
        n.max(1) as f64
    };
    let (critical_path, critical) = schedule::critical_path(&plan.domains, weight);
    let total: f64 = plan.domains.iter().map(|d| weight(&d.name)).sum();
    let indep = Independence::new(&plan.domains);
    let names: Vec<&str> = plan.domains.iter().map(|d| d.name.as_str()).collect();
    let independent_pairs = names
        .iter()
        .enumerate()
        .flat_map(|(i, a)| names[i + 1..].iter().map(move |b| (*a, *b)))
        .filter(|(a, b)| indep.independent(a, b))
        .count();
    Schedule {
        waves: schedule::waves(&plan.domains),
        critical_path,
        parallelism: if critical > 0.0 {
            total / critical
        } else {
            1.0
        },
        independent_pairs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coupling::CouplingGraph;

    #[test]
    fn a_finished_draft_is_a_valid_plan_with_its_schedule() {
        let files: Vec<String> = ["a/1.rs", "a/2.rs", "a/3.rs", "b/1.rs", "c/1.rs"]
            .map(String::from)
            .to_vec();
        let g = CouplingGraph::new();
        let repo = Repo {
            files: &files,
            graph: &g,
        };
        let d = |name: &str, owns: &str, deps: &[&str]| ProposedDomain {
            name: name.into(),
            prompt: format!("do {name}"),
            owns: vec![owns.into()],
            depends_on: deps.iter().map(|s| s.to_string()).collect(),
            why: String::new(),
        };
        let p = Proposal {
            domains: vec![
                d("a", "a/**", &[]),
                d("b", "b/**", &[]),
                d("c", "c/**", &["b"]),
            ],
            expected_files: Some(30),
            ..Default::default()
        };
        let draft = finish(p, "goal", &BTreeSet::new(), repo, None).unwrap();
        assert!(draft.single.is_none() && draft.changes.is_empty());
        let s = schedule_of(&draft.plan, &files);
        assert_eq!(
            s.waves,
            [vec!["b".to_string(), "a".into()], vec!["c".into()]]
        );
        assert_eq!(s.critical_path, ["a"]);
        assert!((s.parallelism - 5.0 / 3.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.independent_pairs, 2);
    }
}
