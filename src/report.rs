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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Wall time of the whole run, start to finish (or to now while running).
    pub wall_ms: u64,
    /// Sum over domains of the time each spent working (worktree, setup, agent, commit).
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
    let end = rec.finished_ms.unwrap_or(now_ms);
    let wall_ms = end.saturating_sub(rec.started_ms);
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
            out.push_str(&format!("to land it yourself: {cmd}\n"));
        }
        let kept: Vec<&DomainRow> = self
            .domains
            .iter()
            .filter(|d| d.branch_kept && d.status != DomainStatus::Merged)
            .collect();
        if !kept.is_empty() {
            out.push_str("kept branches:\n");
            for d in kept {
                out.push_str(&format!(
                    "  {}  ({}; `git log {}`, log: {})\n",
                    d.branch, d.status, d.branch, d.log
                ));
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
                out.push_str(&format!("  pid {} `{}` ({})\n", p.pid, p.command, p.signal));
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
        let sessions: Vec<String> = self
            .domains
            .iter()
            .filter_map(|d| d.session_id.as_ref().map(|s| format!("{}: {s}", d.domain)))
            .collect();
        if !sessions.is_empty() {
            out.push_str(&format!(
                "agent sessions (resume with `claude --resume <id>` in the domain's branch): {}\n",
                sessions.join(", ")
            ));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out
    }
}
