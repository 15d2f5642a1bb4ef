//! The run report: per-domain rows and measured run metrics, computed from the run record alone
//! (pure), rendered as text or JSON.

use serde::{Deserialize, Serialize};

use crate::error::exit;
use crate::plan::schedule;
use crate::record::RunRecord;
use crate::vocab::{Denial, DomainStatus, Phase, Violation};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainRow {
    pub domain: String,
    pub status: DomainStatus,
    pub attempts: usize,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub agent_ms: u64,
    pub files_changed: usize,
    pub insertions: usize,
    pub deletions: usize,
    pub merged: bool,
    pub reason: Option<String>,
    pub branch: String,
    pub branch_kept: bool,
    pub conflict_paths: Vec<String>,
    pub log: String,
    /// Reported by agents with structured output (claude); 0 otherwise.
    pub cost_usd: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub turns: u32,
    pub session_id: Option<String>,
    pub denials: Vec<Denial>,
    pub violations: Vec<Violation>,
    /// Processes that outlived its agent, ended by the supervisor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ended_processes: Vec<crate::vocab::EndedProcess>,
    /// The domain's worktree, while the record knows it to exist (an agent's session can only be
    /// resumed from it: Claude Code keys sessions by directory).
    #[serde(default)]
    pub worktree: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// Always `agent_ms ≤ busy_ms`, and `busy_ms ≤ slots × wall_ms` (at most `slots` domains work at
/// once, and only while the farm runs).
pub struct Metrics {
    /// Wall time the farm was running: the sum of its invocations (`run`, then each `resume` or
    /// `merge`), each from its start to its end (or to now while running); the time between
    /// invocations is not counted.
    pub wall_ms: u64,
    /// Sum over domains of the time each spent working (worktree, setup, agent, commit), over
    /// every time it ran.
    pub busy_ms: u64,
    /// Sum of agent process run times over all attempts.
    pub agent_ms: u64,
    /// busy / wall: how many domains' worth of work was done per unit of wall time.
    pub speedup: f64,
    /// busy / (slots × wall), slots = min(jobs, domains).
    pub utilization: f64,
    /// lower bound / wall, lower bound = max(critical path, busy / slots).
    pub parallel_efficiency: f64,
    pub critical_path: Vec<String>,
    pub critical_path_ms: u64,
    /// The domain that contributed most to the critical path.
    pub bottleneck: Option<String>,
    pub jobs: usize,
    /// min(jobs, domains that ran): the parallelism utilization is measured against.
    pub slots: usize,
    pub total_cost_usd: f64,
    pub total_input_tokens: u64,
    pub total_output_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub run_id: String,
    pub phase: Phase,
    pub base: String,
    pub into: String,
    pub integration_branch: String,
    pub domains: Vec<DomainRow>,
    pub metrics: Metrics,
    pub verify: Option<String>,
    pub landed: Option<bool>,
    pub land_message: Option<String>,
    pub land_command: Option<String>,
    pub warnings: Vec<String>,
    pub collisions: Vec<crate::record::Collision>,
    pub exit_code: i32,
    /// The commit verify ran on (the merged result), if it ran.
    #[serde(default)]
    pub verify_commit: Option<String>,
    /// Every branch and ref of the run git still holds, with why and how to inspect it.
    #[serde(default)]
    pub kept: Vec<crate::record::KeptRef>,
}

/// What git holds of the run: as its last cleanup said, or, before any cleanup ran (or while one
/// runs), every branch the record knows was made and not deleted.
fn kept_refs(rec: &RunRecord) -> Vec<crate::record::KeptRef> {
    let cleaning = rec.phase == Phase::Cleaning && rec.finished_ms.is_none();
    if let Some(k) = rec.kept.as_ref().filter(|_| !cleaning) {
        return k.clone();
    }
    let log = |b: &str| Some(format!("git log --stat {}..{b}", rec.into));
    let mut out: Vec<crate::record::KeptRef> = rec
        .plan
        .domains
        .iter()
        .filter_map(|d| rec.domain(&d.name))
        .filter(|d| d.start_commit.is_some() && !d.branch_deleted)
        .map(|d| crate::record::KeptRef {
            name: d.branch.clone(),
            reason: format!("{} (not cleaned up yet)", d.status),
            inspect: log(&d.branch),
        })
        .collect();
    out.push(crate::record::KeptRef {
        name: rec.integration_branch.clone(),
        reason: "the merged result so far (not cleaned up yet)".into(),
        inspect: log(&rec.integration_branch),
    });
    out
}

/// The exit code a run's record calls for (highest applicable wins; see README "Exit codes").
pub fn exit_code(rec: &RunRecord) -> i32 {
    let mut code = exit::OK;
    if rec.land.as_ref().is_some_and(|l| !l.landed) {
        code = code.max(exit::NOT_LANDED);
    }
    let statuses = || rec.domains.values().map(|d| d.status);
    if statuses().any(|s| s.is_failure() || !s.is_terminal()) {
        code = code.max(exit::DOMAINS_FAILED);
    }
    if !rec.options.no_merge && statuses().any(|s| s == DomainStatus::Succeeded) {
        // Finished but not merged (a merge error): the work is not in the result.
        code = code.max(exit::DOMAINS_FAILED);
    }
    if statuses().any(|s| s == DomainStatus::Conflicted) {
        code = code.max(exit::CONFLICT);
    }
    if rec.verify.as_ref().and_then(|v| v.passed) == Some(false) {
        code = code.max(exit::VERIFY_FAILED);
    }
    if rec.interrupted.is_some() {
        code = exit::INTERRUPTED;
    }
    code
}

pub fn build(rec: &RunRecord, now_ms: u64) -> Report {
    let wall_ms = rec.active_ms(now_ms);
    let paths = rec.paths();
    let domains: Vec<DomainRow> = rec
        .plan
        .domains
        .iter()
        .filter_map(|d| rec.domain(&d.name))
        .map(|d| DomainRow {
            domain: d.name.clone(),
            status: d.status,
            attempts: d.attempts.len(),
            exit_code: d.last_exit_code(),
            duration_ms: d.busy_ms(),
            agent_ms: d.agent_ms(),
            files_changed: d.files.len(),
            insertions: d.insertions,
            deletions: d.deletions,
            merged: d.status == DomainStatus::Merged,
            reason: d.reason.clone(),
            branch: d.branch.clone(),
            branch_kept: !d.branch_deleted && d.start_commit.is_some(),
            conflict_paths: d.conflict_paths.clone(),
            log: paths.output_log(&d.name).display().to_string(),
            cost_usd: d.cost_usd(),
            input_tokens: d.tokens().0,
            output_tokens: d.tokens().1,
            turns: d.turns(),
            session_id: d.session_id().map(str::to_owned),
            denials: d.denials(),
            violations: d.violations.clone(),
            ended_processes: d.ended_processes.clone(),
            worktree: (d.worktree_created && !d.worktree_removed)
                .then(|| d.worktree.display().to_string()),
        })
        .collect();
    let busy_ms: u64 = domains.iter().map(|d| d.duration_ms).sum();
    let agent_ms: u64 = domains.iter().map(|d| d.agent_ms).sum();
    let started = domains.iter().filter(|d| d.duration_ms > 0).count().max(1);
    let slots = rec.options.jobs.clamp(1, started);
    let (critical_path, cp) = schedule::critical_path(&rec.plan.domains, |n| {
        rec.domain(n).map_or(0.0, |d| d.busy_ms() as f64)
    });
    let bottleneck = critical_path
        .iter()
        .max_by_key(|n| rec.domain(n).map_or(0, |d| d.busy_ms()))
        .cloned()
        .filter(|_| cp > 0.0);
    let wall = wall_ms.max(1) as f64;
    let lower = (cp).max(busy_ms as f64 / slots as f64);
    let metrics = Metrics {
        wall_ms,
        busy_ms,
        agent_ms,
        speedup: busy_ms as f64 / wall,
        utilization: busy_ms as f64 / (slots as f64 * wall),
        parallel_efficiency: lower / wall,
        critical_path,
        critical_path_ms: cp as u64,
        bottleneck,
        jobs: rec.options.jobs,
        slots,
        total_cost_usd: domains.iter().map(|d| d.cost_usd).fold(0.0, |a, b| a + b),
        total_input_tokens: domains.iter().map(|d| d.input_tokens).sum(),
        total_output_tokens: domains.iter().map(|d| d.output_tokens).sum(),
    };
    let verify = rec.verify.as_ref().map(|v| match (v.passed, &v.end) {
        (Some(true), _) => "passed".to_string(),
        (Some(false), Some(e)) => format!("failed ({})", e.describe()),
        (Some(false), None) => "failed".to_string(),
        (None, _) => "running".to_string(),
    });
    Report {
        run_id: rec.run_id.clone(),
        phase: rec.phase,
        base: rec.base.clone(),
        into: rec.into.clone(),
        integration_branch: rec.integration_branch.clone(),
        domains,
        metrics,
        verify,
        landed: rec.land.as_ref().map(|l| l.landed),
        land_message: rec.land.as_ref().map(|l| match (&l.commit, &l.reason) {
            (Some(c), _) => format!(
                "landed on `{}` at {} ({})",
                rec.into,
                &c[..c.len().min(12)],
                if l.fast_forward {
                    "fast-forward"
                } else {
                    "merge commit"
                }
            ),
            (None, Some(r)) => r.clone(),
            (None, None) => String::new(),
        }),
        land_command: rec.land.as_ref().and_then(|l| l.command.clone()),
        warnings: rec.warnings.clone(),
        collisions: rec.collisions.clone(),
        exit_code: rec.exit_code.unwrap_or_else(|| exit_code(rec)),
        verify_commit: rec.verify.as_ref().map(|v| v.commit.clone()),
        kept: kept_refs(rec),
    }
}

pub fn fmt_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        let s = ms / 1000;
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

impl Report {
    /// The commit verify failed on, shortened, if the result failed verify.
    fn verify_failed_on(&self) -> Option<&str> {
        let failed = self
            .verify
            .as_deref()
            .is_some_and(|v| v.starts_with("failed"));
        let c = self.verify_commit.as_deref().filter(|_| failed)?;
        Some(&c[..c.len().min(12)])
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "run {}  ({} → {}, {})\n\n",
            self.run_id,
            self.base,
            self.into,
            match self.phase {
                Phase::Finished => "finished",
                Phase::Interrupted => "interrupted",
                _ => "in progress",
            }
        ));
        let header = [
            "DOMAIN", "STATUS", "TRIES", "EXIT", "TIME", "FILES", "+/-", "TURNS", "COST", "RESULT",
        ];
        const LAST: usize = 9;
        let rows: Vec<[String; 10]> = self
            .domains
            .iter()
            .map(|d| {
                [
                    d.domain.clone(),
                    d.status.to_string(),
                    d.attempts.to_string(),
                    d.exit_code.map_or("-".into(), |c| c.to_string()),
                    fmt_ms(d.duration_ms),
                    d.files_changed.to_string(),
                    format!("+{}/-{}", d.insertions, d.deletions),
                    if d.turns > 0 {
                        d.turns.to_string()
                    } else {
                        "-".into()
                    },
                    if d.cost_usd > 0.0 {
                        format!("${:.4}", d.cost_usd)
                    } else {
                        "-".into()
                    },
                    match (&d.status, &d.reason) {
                        (DomainStatus::Merged, Some(r)) => format!("merged ({r})"),
                        (DomainStatus::Merged, None) => "merged".to_string(),
                        (_, Some(r)) => r.clone(),
                        (s, None) => s.to_string(),
                    },
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for r in &rows {
            for (i, c) in r.iter().enumerate().take(LAST) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i < LAST {
                    s.push_str(&format!("{c:<w$}  ", w = widths[i]));
                } else {
                    s.push_str(c);
                }
            }
            s.trim_end().to_string() + "\n"
        };
        out.push_str(&line(header.to_vec()));
        for r in &rows {
            out.push_str(&line(r.iter().map(String::as_str).collect()));
        }
        let m = &self.metrics;
        out.push_str(&format!(
            "\nwall {}  ·  work {} (agents {})  ·  speedup {:.2}×  ·  utilization {:.0}% of {} slot(s)  ·  efficiency {:.0}% of the bound\n",
            fmt_ms(m.wall_ms),
            fmt_ms(m.busy_ms),
            fmt_ms(m.agent_ms),
            m.speedup,
            m.utilization * 100.0,
            m.slots,
            m.parallel_efficiency * 100.0,
        ));
        if m.total_cost_usd > 0.0 || m.total_input_tokens > 0 {
            out.push_str(&format!(
                "agents reported ${:.4} in all, {} tokens in / {} out\n",
                m.total_cost_usd, m.total_input_tokens, m.total_output_tokens
            ));
        }
        if !m.critical_path.is_empty() {
            out.push_str(&format!(
                "critical path {} ({}){}\n",
                m.critical_path.join(" → "),
                fmt_ms(m.critical_path_ms),
                m.bottleneck
                    .as_ref()
                    .map(|b| format!("  ·  bottleneck: {b}"))
                    .unwrap_or_default()
            ));
        }
        if let Some(v) = &self.verify {
            out.push_str(&format!("verify: {v}\n"));
        }
        if let Some(msg) = &self.land_message {
            out.push_str(&format!("result: {msg}\n"));
        }
        if let Some(cmd) = &self.land_command {
            match self.verify_failed_on() {
                Some(c) => out.push_str(&format!(
                    "verify failed on {c}; fix it on the domain branches and run `agent-farm merge {}`, or, to land it anyway: {cmd}\n",
                    self.run_id
                )),
                None => out.push_str(&format!("to land it yourself: {cmd}\n")),
            }
        }
        if !self.kept.is_empty() {
            out.push_str("kept branches:\n");
            for k in &self.kept {
                out.push_str(&format!("  {}  ({})\n", k.name, k.reason));
                if let Some(cmd) = &k.inspect {
                    out.push_str(&format!("    inspect: {cmd}\n"));
                }
            }
        }
        let violating: Vec<&DomainRow> = self
            .domains
            .iter()
            .filter(|d| !d.violations.is_empty())
            .collect();
        if !violating.is_empty() {
            out.push_str("ownership violations:\n");
            for d in violating {
                for v in &d.violations {
                    match &v.outside {
                        Some(outside) => out.push_str(&format!(
                            "  {}: {} {} — outside its worktree, in {outside} ({}; {})\n",
                            d.domain,
                            v.change,
                            v.path,
                            v.detected.describe(),
                            v.action
                        )),
                        None => out.push_str(&format!(
                            "  {}: {} {} (owner: {}; {}; {})\n",
                            d.domain,
                            v.change,
                            v.path,
                            v.owner.as_deref().unwrap_or("nobody"),
                            v.detected.describe(),
                            v.action
                        )),
                    }
                }
            }
        }
        for d in self
            .domains
            .iter()
            .filter(|d| !d.ended_processes.is_empty())
        {
            out.push_str(&format!(
                "{}: ended {} process(es) its agent left running:\n",
                d.domain,
                d.ended_processes.len()
            ));
            for p in &d.ended_processes {
                out.push_str(&format!("  pid {p}\n"));
            }
        }
        for c in &self.collisions {
            out.push_str(&format!(
                "collision: {} was changed by {}\n",
                c.path,
                c.domains.join(" and ")
            ));
        }
        let refused: Vec<&DomainRow> = self
            .domains
            .iter()
            .filter(|d| !d.denials.is_empty())
            .collect();
        if !refused.is_empty() {
            out.push_str("refused tool calls:\n");
            for d in refused {
                for den in &d.denials {
                    // A file tool names a path; any other (Bash) names the command it refused.
                    let what = match (den.path.as_ref(), crate::vocab::is_file_tool(&den.tool)) {
                        (Some(p), true) => format!("{} {p}", den.tool),
                        (Some(c), false) => format!("{} command `{c}`", den.tool),
                        (None, _) => den.tool.clone(),
                    };
                    out.push_str(&format!("  {}: {what}: {}\n", d.domain, den.message));
                }
            }
        }
        // Claude Code finds a session by the directory it ran in: only a kept worktree has it.
        let mut gone = Vec::new();
        for d in &self.domains {
            let Some(s) = &d.session_id else { continue };
            match &d.worktree {
                Some(wt) => out.push_str(&format!(
                    "agent session of {}: resume it with `cd {wt} && claude --resume {s}`\n",
                    d.domain
                )),
                None => gone.push(format!("{}: {s}", d.domain)),
            }
        }
        if !gone.is_empty() {
            out.push_str(&format!(
                "agent sessions (gone with their worktrees, not resumable): {}\n",
                gone.join(", ")
            ));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{AttemptEnd, FarmEvent};
    use crate::record::{sample, sample_apply as apply, sample_work as work};

    #[test]
    fn metrics_count_the_invocations_not_the_time_between_them() {
        let t0 = 1_000_000;
        let mut rec = sample(&["a", "b"], t0);
        work(&mut rec, "a", t0, 1);
        work(&mut rec, "b", t0, 1);
        apply(
            &mut rec,
            t0 + 12_000,
            FarmEvent::RunFinished { exit_code: 8 },
        );
        // An hour later, `agent-farm merge` for 3 seconds.
        let t1 = t0 + 3_600_000;
        apply(&mut rec, t1, FarmEvent::MergeRequested);
        apply(
            &mut rec,
            t1 + 2000,
            FarmEvent::Phase {
                phase: Phase::Cleaning,
            },
        );
        apply(&mut rec, t1 + 3000, FarmEvent::RunFinished { exit_code: 0 });
        // `clean` afterwards is no invocation of the run.
        apply(
            &mut rec,
            t1 + 60_000,
            FarmEvent::BranchDeleted { branch: "x".into() },
        );
        assert_eq!(rec.spans.len(), 2, "{:?}", rec.spans);
        assert_eq!(rec.active_ms(t1 + 100_000), 15_000);
        let m = build(&rec, t1 + 100_000).metrics;
        assert_eq!(m.wall_ms, 15_000);
        assert_eq!((m.busy_ms, m.agent_ms, m.slots), (20_000, 16_000, 2));
        assert!((m.speedup - 20.0 / 15.0).abs() < 1e-9, "{}", m.speedup);
        assert!(m.utilization <= 1.0, "{}", m.utilization);
    }

    #[test]
    fn an_attempt_a_crash_cut_short_ends_with_its_invocation_and_work_covers_it() {
        let t0 = 5_000_000;
        let mut rec = sample(&["a"], t0);
        apply(
            &mut rec,
            t0,
            FarmEvent::DomainPreparing {
                domain: "a".into(),
                start_commit: "b".repeat(40),
            },
        );
        apply(
            &mut rec,
            t0 + 1000,
            FarmEvent::AgentStarted {
                domain: "a".into(),
                attempt: 1,
                pid: 1,
                spawned_ms: t0 + 1000,
            },
        );
        apply(
            &mut rec,
            t0 + 5000,
            FarmEvent::AgentToolUse {
                domain: "a".into(),
                attempt: 1,
                tool: "Edit".into(),
                path: None,
                turns: 1,
                tokens: 0,
            },
        );
        // Killed; resumed ten minutes later: recovery closes the attempt, the domain runs again.
        let t1 = t0 + 600_000;
        apply(&mut rec, t1, FarmEvent::Resumed { pid: 2 });
        apply(
            &mut rec,
            t1 + 10,
            FarmEvent::AgentFinished {
                domain: "a".into(),
                attempt: 1,
                end: AttemptEnd::Cancelled {
                    reason: "agent-farm stopped while it ran".into(),
                },
                duration_ms: 0,
            },
        );
        apply(
            &mut rec,
            t1 + 20,
            FarmEvent::DomainReset {
                domain: "a".into(),
                reason: "it was running".into(),
                after_agent: false,
            },
        );
        work(&mut rec, "a", t1 + 1000, 2);
        apply(
            &mut rec,
            t1 + 12_000,
            FarmEvent::RunFinished { exit_code: 0 },
        );
        let d = rec.domain("a").unwrap();
        assert_eq!(d.attempts[0].ended_ms, Some(t0 + 5000));
        assert_eq!(d.agent_ms(), 4000 + 8000);
        assert_eq!(d.busy_ms(), 5000 + 10_000);
        let m = build(&rec, t1 + 99_000).metrics;
        assert_eq!(m.wall_ms, 5000 + 12_000);
        assert!(m.agent_ms <= m.busy_ms, "{m:?}");
        assert!(m.busy_ms <= m.slots as u64 * m.wall_ms, "{m:?}");
    }

    #[test]
    fn a_session_is_offered_for_resume_only_while_its_worktree_exists() {
        let mut rec = crate::record::sample(&["a", "b"], 0);
        for d in ["a", "b"] {
            apply(
                &mut rec,
                1,
                FarmEvent::WorktreeReady {
                    domain: d.into(),
                    path: format!("/wt/r/{d}"),
                    branch: format!("farm/r/{d}"),
                },
            );
            apply(
                &mut rec,
                2,
                FarmEvent::AgentStarted {
                    domain: d.into(),
                    attempt: 1,
                    pid: 1,
                    spawned_ms: 2,
                },
            );
            apply(
                &mut rec,
                3,
                FarmEvent::AgentSession {
                    domain: d.into(),
                    attempt: 1,
                    session_id: format!("sess-{d}"),
                    model: None,
                },
            );
        }
        apply(
            &mut rec,
            4,
            FarmEvent::WorktreeRemoved { domain: "b".into() },
        );
        let text = build(&rec, 5).render();
        let wt = rec.domain("a").unwrap().worktree.display().to_string();
        assert!(
            text.contains(&format!("`cd {wt} && claude --resume sess-a`")),
            "{text}"
        );
        assert!(!text.contains("claude --resume sess-b"), "{text}");
        assert!(
            text.contains("gone with their worktrees, not resumable): b: sess-b"),
            "{text}"
        );
    }

    #[test]
    fn a_land_command_after_a_failed_verify_says_it_failed() {
        let mut rec = crate::record::sample(&["a"], 0);
        let commit = "f".repeat(40);
        apply(
            &mut rec,
            1,
            FarmEvent::VerifyStarted {
                commit: commit.clone(),
            },
        );
        apply(
            &mut rec,
            2,
            FarmEvent::VerifyFinished {
                passed: false,
                end: AttemptEnd::Exited { code: 1 },
                duration_ms: 1,
                log: "verify.log".into(),
            },
        );
        apply(
            &mut rec,
            3,
            FarmEvent::NotLanded {
                into: "main".into(),
                reason: "verify failed".into(),
                command: Some("git switch main && git merge farm/r/integration".into()),
            },
        );
        let text = build(&rec, 4).render();
        assert!(
            text.contains(&format!(
                "verify failed on {}; fix it on the domain branches and run `agent-farm merge r`, or, to land it anyway: git switch main",
                &commit[..12]
            )),
            "{text}"
        );
        assert!(!text.contains("to land it yourself"), "{text}");
    }

    #[test]
    fn kept_branches_are_what_cleanup_kept_with_how_to_inspect_them() {
        let mut rec = crate::record::sample(&["a", "b"], 0);
        // Before any cleanup: what the record knows was made.
        apply(
            &mut rec,
            1,
            FarmEvent::DomainPreparing {
                domain: "a".into(),
                start_commit: "b".repeat(40),
            },
        );
        let names = |r: &Report| r.kept.iter().map(|k| k.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&build(&rec, 2)),
            [
                rec.domain("a").unwrap().branch.clone(),
                rec.integration_branch.clone()
            ]
        );
        apply(
            &mut rec,
            3,
            FarmEvent::Phase {
                phase: Phase::Cleaning,
            },
        );
        apply(
            &mut rec,
            4,
            FarmEvent::BranchKept {
                branch: "refs/farm/r/a/dropped".into(),
                reason: "changes dropped".into(),
                inspect: Some("git log -p bbbb..refs/farm/r/a/dropped".into()),
            },
        );
        // While the cleanup runs, what it has said so far is not all git holds.
        assert_eq!(build(&rec, 5).kept.len(), 2);
        apply(&mut rec, 6, FarmEvent::RunFinished { exit_code: 0 });
        let report = build(&rec, 7);
        assert_eq!(names(&report), ["refs/farm/r/a/dropped"]);
        let text = report.render();
        assert!(
            text.contains("kept branches:\n  refs/farm/r/a/dropped  (changes dropped)\n    inspect: git log -p bbbb..refs/farm/r/a/dropped\n"),
            "{text}"
        );
    }
}
