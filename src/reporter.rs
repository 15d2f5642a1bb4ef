//! Reporters: consumers of the run's event stream. The plain reporter prints one line per event
//! (for logs and pipes); the TTY reporter keeps a live line per active domain.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::events::{FarmEvent, Timed};
use crate::record::RunRecord;
use crate::report::fmt_ms;

pub trait Reporter: Send {
    fn on_event(&mut self, ev: &Timed, record: &RunRecord);
    fn finish(&mut self, _record: &RunRecord) {}
}

/// One human sentence per event, or `None` for events not worth a line.
pub fn describe(ev: &FarmEvent) -> Option<String> {
    use FarmEvent::*;
    Some(match ev {
        RunStarted {
            run_id,
            domains,
            jobs,
            base,
            into,
            ..
        } => format!("run {run_id}: {domains} domain(s), up to {jobs} at once, {base} → {into}"),
        DomainPreparing {
            domain,
            start_commit,
        } => {
            format!(
                "{domain}: preparing worktree from {}",
                &start_commit[..start_commit.len().min(12)]
            )
        }
        WorktreeReady {
            domain,
            path,
            branch,
        } => format!("{domain}: worktree {path} on {branch}"),
        AgentStarted {
            domain,
            attempt,
            pid,
            ..
        } => {
            format!("{domain}: agent started (attempt {attempt}, pid {pid})")
        }
        AgentFinished {
            domain,
            attempt,
            end,
            duration_ms,
        } => format!(
            "{domain}: agent attempt {attempt} ended: {} after {}",
            end.describe(),
            fmt_ms(*duration_ms)
        ),
        AgentSession {
            domain,
            session_id,
            model,
            ..
        } => format!(
            "{domain}: session {session_id}{}",
            model
                .as_ref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ),
        AgentToolUse {
            domain,
            tool,
            path,
            turns,
            ..
        } => format!(
            "{domain}: {tool}{} (turn {turns})",
            path.as_ref().map(|p| format!(" {p}")).unwrap_or_default()
        ),
        AgentRefused { domain, denial, .. } => format!(
            "{domain}: REFUSED {}{}: {}",
            denial.tool,
            denial
                .path
                .as_ref()
                .map(|p| format!(" {p}"))
                .unwrap_or_default(),
            denial.message
        ),
        AgentApiRetry {
            domain,
            status,
            error,
            delay_ms,
            ..
        } => format!(
            "{domain}: API {error}{}, the agent retries in {}",
            status.map(|s| format!(" ({s})")).unwrap_or_default(),
            fmt_ms(*delay_ms)
        ),
        AgentUsageReported { domain, usage, .. } => format!(
            "{domain}: {} turn(s), {} tokens in / {} out, ${:.4}",
            usage.turns, usage.input_tokens, usage.output_tokens, usage.cost_usd
        ),
        AgentRetrying {
            domain,
            next_attempt,
            delay_ms,
        } => format!(
            "{domain}: retrying (attempt {next_attempt}) in {}",
            fmt_ms(*delay_ms)
        ),
        Committed {
            domain,
            commit,
            note,
        } => {
            format!(
                "{domain}: committed {} ({note})",
                &commit[..commit.len().min(12)]
            )
        }
        DomainFinished {
            domain,
            status,
            reason,
            files,
            ..
        } => match reason {
            Some(r) => format!("{domain}: {status}: {r}"),
            None => format!("{domain}: {status}, {} file(s) changed", files.len()),
        },
        DomainSkipped { domain, reason } => format!("{domain}: skipped: {reason}"),
        Merged { domain, commit } => match commit {
            Some(c) => format!(
                "{domain}: merged into integration ({})",
                &c[..c.len().min(12)]
            ),
            None => format!("{domain}: nothing to merge"),
        },
        Conflict {
            domain,
            paths,
            facts,
        } => {
            let mut s = format!("{domain}: MERGE CONFLICT in {}", paths.join(", "));
            for f in facts {
                s.push_str(&format!("\n    {f}"));
            }
            s
        }
        ConflictPredicted {
            domain,
            with,
            paths,
            facts,
        } => {
            let mut s = format!(
                "{domain}: would conflict with {with} on {}",
                paths.join(", ")
            );
            for f in facts {
                s.push_str(&format!("\n    {f}"));
            }
            s
        }
        OwnershipViolation {
            domain,
            violation: v,
        } => match &v.outside {
            Some(outside) => format!(
                "{domain}: OUTSIDE ITS WORKTREE {} {} in {outside} ({}, {})",
                v.change,
                v.path,
                v.detected.describe(),
                v.action
            ),
            None => format!(
                "{domain}: OWNERSHIP {} {} {} ({}, {})",
                v.change,
                v.path,
                match &v.owner {
                    Some(o) => format!("owned by {o}"),
                    None => "owned by no domain".to_string(),
                },
                v.detected.describe(),
                v.action
            ),
        },
        ProcessesEnded {
            domain,
            attempt,
            processes,
        } => format!(
            "{domain}: ended {} process(es) left running by attempt {attempt}: {}",
            processes.len(),
            processes
                .iter()
                .map(|p| format!("{} `{}` ({})", p.pid, p.command, p.signal))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Collision { path, domains } => {
            format!("COLLISION: {path} changed by {}", domains.join(" and "))
        }
        VerifyStarted { commit } => {
            format!("verify: running on {}", &commit[..commit.len().min(12)])
        }
        VerifyFinished {
            passed,
            end,
            duration_ms,
            log,
        } => format!(
            "verify: {} ({}, {}), log {log}",
            if *passed { "passed" } else { "FAILED" },
            end.describe(),
            fmt_ms(*duration_ms)
        ),
        Landed {
            into,
            commit,
            fast_forward,
        } => format!(
            "landed on {into} at {} ({})",
            &commit[..commit.len().min(12)],
            if *fast_forward {
                "fast-forward"
            } else {
                "merge commit"
            }
        ),
        NotLanded { into, reason, .. } => format!("not landed on {into}: {reason}"),
        WorktreeRemoved { domain } => format!("{domain}: worktree removed"),
        BranchDeleted { branch } => format!("deleted branch {branch}"),
        BranchKept {
            branch,
            reason,
            inspect,
        } => match inspect {
            Some(cmd) => format!("kept branch {branch}: {reason}; inspect with `{cmd}`"),
            None => format!("kept branch {branch}: {reason}"),
        },
        Warning { domain, message } => match domain {
            Some(d) => format!("{d}: warning: {message}"),
            None => format!("warning: {message}"),
        },
        Interrupted { reason } => {
            format!(
                "interrupted ({reason}): stopping agents and committing their work; press Ctrl-C again to kill at once"
            )
        }
        Resumed { pid } => format!("resuming the run in process {pid}"),
        BranchMoved {
            domain, branch, to, ..
        } => format!(
            "{domain}: {branch} moved to {} since the run, with commits the integration branch lacks; merging it again",
            &to[..to.len().min(12)]
        ),
        DomainReset {
            domain,
            reason,
            after_agent,
        } => {
            if *after_agent {
                format!("{domain}: continues after its agent ({reason})")
            } else {
                format!("{domain}: will run again ({reason})")
            }
        }
        Phase { .. } | MergeRequested | RunFinished { .. } => return None,
    })
}

/// One line per event on stderr, prefixed with the time since the run started.
pub struct PlainReporter {
    start_ms: Option<u64>,
    out: Box<dyn Write + Send>,
}

impl PlainReporter {
    pub fn stderr() -> Self {
        PlainReporter {
            start_ms: None,
            out: Box::new(std::io::stderr()),
        }
    }
}

impl Reporter for PlainReporter {
    fn on_event(&mut self, ev: &Timed, _record: &RunRecord) {
        let start = *self.start_ms.get_or_insert(ev.at_ms);
        if let Some(line) = describe(&ev.event) {
            let t = ev.at_ms.saturating_sub(start) as f64 / 1000.0;
            let _ = writeln!(self.out, "[{t:>7.1}s] {line}");
        }
    }
}

/// The public event stream as JSON lines (`--message-format json`): the header of
/// `events.jsonl` first (its schema version), then each event exactly as `events.jsonl` has it.
pub struct JsonReporter {
    started: bool,
    out: Box<dyn Write + Send>,
}

impl JsonReporter {
    pub fn stdout() -> Self {
        Self::to(Box::new(std::io::stdout()))
    }

    pub fn to(out: Box<dyn Write + Send>) -> Self {
        JsonReporter {
            started: false,
            out,
        }
    }
}

impl Reporter for JsonReporter {
    fn on_event(&mut self, ev: &Timed, _record: &RunRecord) {
        if !std::mem::replace(&mut self.started, true) {
            let _ = writeln!(self.out, "{}", crate::events::Header::line());
        }
        if let Ok(line) = serde_json::to_string(ev) {
            let _ = writeln!(self.out, "{line}");
        }
        // One line at a time for whoever reads the pipe.
        let _ = self.out.flush();
    }
}

/// Live progress for terminals: a spinner line per active domain, event lines above them.
pub struct TtyReporter {
    multi: MultiProgress,
    bars: BTreeMap<String, ProgressBar>,
    style: ProgressStyle,
}

impl TtyReporter {
    pub fn new() -> Self {
        let style = ProgressStyle::with_template("{spinner} {prefix:<16} {wide_msg} {elapsed:>6}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        TtyReporter {
            multi: MultiProgress::new(),
            bars: BTreeMap::new(),
            style,
        }
    }

    fn bar(&mut self, domain: &str) -> &ProgressBar {
        let (multi, style) = (&self.multi, &self.style);
        self.bars.entry(domain.to_string()).or_insert_with(|| {
            let b = multi.add(ProgressBar::new_spinner());
            b.set_style(style.clone());
            b.set_prefix(domain.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        })
    }
}

impl Default for TtyReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for TtyReporter {
    fn on_event(&mut self, ev: &Timed, _record: &RunRecord) {
        use FarmEvent::*;
        match &ev.event {
            DomainPreparing { domain, .. } => self.bar(domain).set_message("preparing worktree"),
            WorktreeReady { domain, .. } => self.bar(domain).set_message("running setup"),
            AgentStarted {
                domain, attempt, ..
            } => self
                .bar(domain)
                .set_message(format!("agent running (attempt {attempt})")),
            AgentRetrying {
                domain,
                next_attempt,
                ..
            } => self
                .bar(domain)
                .set_message(format!("waiting to retry (attempt {next_attempt})")),
            AgentToolUse {
                domain,
                attempt,
                tool,
                path,
                turns,
                tokens,
            } => self.bar(domain).set_message(format!(
                "{tool}{} · turn {turns} · {}k tokens{}",
                path.as_ref().map(|p| format!(" {p}")).unwrap_or_default(),
                tokens / 1000,
                if *attempt > 1 {
                    format!(" · attempt {attempt}")
                } else {
                    String::new()
                }
            )),
            AgentFinished { domain, .. } => self.bar(domain).set_message("committing"),
            DomainFinished { domain, .. } => {
                if let Some(b) = self.bars.remove(domain) {
                    b.finish_and_clear();
                    self.multi.remove(&b);
                }
            }
            _ => {}
        }
        let important = !matches!(
            ev.event,
            DomainPreparing { .. }
                | WorktreeReady { .. }
                | AgentStarted { .. }
                | AgentToolUse { .. }
                | AgentSession { .. }
                | Committed { .. }
                | WorktreeRemoved { .. }
                | BranchDeleted { .. }
        );
        if important && let Some(line) = describe(&ev.event) {
            let _ = self.multi.println(line);
        }
    }

    fn finish(&mut self, _record: &RunRecord) {
        for (_, b) in std::mem::take(&mut self.bars) {
            b.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}
