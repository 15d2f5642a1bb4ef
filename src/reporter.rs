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
        Paused { reason } => format!(
            "paused by {reason}: every agent is stopped and timeouts are frozen; `fg` continues"
        ),
        Continued { paused_ms } => format!(
            "continued after a pause of {}; timeouts and the deadline are extended by it",
            fmt_ms(*paused_ms)
        ),
        ProcessesEnded {
            domain,
            attempt,
            processes,
        } => format!(
            "{domain}: ended {} process(es) left running by attempt {attempt}: {}",
            processes.len(),
            crate::vocab::list_ended(processes)
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

/// The live view being drawn, if any: other output to stderr must go through it, or it would be
/// drawn over.
static DISPLAY: std::sync::Mutex<Option<MultiProgress>> = std::sync::Mutex::new(None);

fn display() -> std::sync::MutexGuard<'static, Option<MultiProgress>> {
    DISPLAY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where tracing writes: a line above the live view while one is drawn, else stderr.
#[derive(Clone, Copy, Debug, Default)]
pub struct DisplayWriter;

/// One tracing event's text, written out when the event is done.
pub struct DisplayLine(Vec<u8>);

impl Write for DisplayLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for DisplayLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.0);
        match display().as_ref() {
            Some(m) => {
                let _ = m.println(text.trim_end_matches('\n'));
            }
            None => {
                let _ = std::io::stderr().write_all(&self.0);
            }
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for DisplayWriter {
    type Writer = DisplayLine;
    fn make_writer(&'a self) -> DisplayLine {
        DisplayLine(Vec::new())
    }
}

/// Live progress for terminals: a header with the run's counts, elapsed time and the estimated
/// remaining critical path ([`crate::live`]), a line per active domain with its latest activity,
/// and finished domains and other news printed above, coloured by outcome.
pub struct TtyReporter {
    multi: MultiProgress,
    header: ProgressBar,
    bars: BTreeMap<String, ProgressBar>,
    style: ProgressStyle,
    /// Tokens counted so far in each running domain's current attempt.
    tokens: BTreeMap<String, u64>,
    color: bool,
}

impl TtyReporter {
    pub fn new(color: bool) -> Self {
        let style = ProgressStyle::with_template("{spinner} {prefix:<16} {wide_msg} {elapsed:>6}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let multi = MultiProgress::new();
        *display() = Some(multi.clone());
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(
            ProgressStyle::with_template("{wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        TtyReporter {
            multi,
            header,
            bars: BTreeMap::new(),
            style,
            tokens: BTreeMap::new(),
            color,
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

    fn paint(&self, text: String, status: Option<crate::vocab::DomainStatus>) -> String {
        use crate::vocab::DomainStatus::*;
        let style = console::Style::new().force_styling(self.color);
        let style = match status {
            Some(Merged | Succeeded) => style.green(),
            Some(Failed | TimedOut | Conflicted | Blocked) => style.red(),
            Some(Cancelled | Skipped) => style.yellow(),
            _ => style,
        };
        style.apply_to(text).to_string()
    }
}

impl Reporter for TtyReporter {
    fn on_event(&mut self, ev: &Timed, record: &RunRecord) {
        use FarmEvent::*;
        match &ev.event {
            AgentStarted { domain, .. } => {
                self.tokens.remove(domain);
            }
            AgentToolUse { domain, tokens, .. } => {
                self.tokens.insert(domain.clone(), *tokens);
            }
            _ => {}
        }
        match &ev.event {
            DomainPreparing { domain, .. }
            | WorktreeReady { domain, .. }
            | AgentStarted { domain, .. }
            | AgentRetrying { domain, .. }
            | AgentToolUse { domain, .. }
            | AgentUsageReported { domain, .. }
            | AgentFinished { domain, .. } => {
                if let Some(d) = record.domain(domain) {
                    let msg = crate::live::activity(d, self.tokens.get(domain).copied());
                    let msg = match &ev.event {
                        WorktreeReady { .. } => "running setup".to_string(),
                        AgentRetrying { next_attempt, .. } => {
                            format!("waiting to retry (attempt {next_attempt})")
                        }
                        AgentFinished { .. } => "committing".to_string(),
                        _ => msg,
                    };
                    self.bar(domain).set_message(msg);
                }
            }
            DomainFinished { domain, .. } | DomainSkipped { domain, .. } => {
                if let Some(b) = self.bars.remove(domain) {
                    b.finish_and_clear();
                    self.multi.remove(&b);
                }
            }
            _ => {}
        }
        self.header
            .set_message(crate::live::header(record, ev.at_ms));
        let important = !matches!(
            ev.event,
            DomainPreparing { .. }
                | WorktreeReady { .. }
                | AgentStarted { .. }
                | AgentToolUse { .. }
                | AgentSession { .. }
                | AgentUsageReported { .. }
                | Committed { .. }
                | WorktreeRemoved { .. }
                | BranchDeleted { .. }
        );
        if important && let Some(line) = describe(&ev.event) {
            let status = match &ev.event {
                DomainFinished { status, .. } => Some(*status),
                Merged { .. } | Landed { .. } => Some(crate::vocab::DomainStatus::Merged),
                DomainSkipped { .. } => Some(crate::vocab::DomainStatus::Skipped),
                Conflict { .. } | NotLanded { .. } | OwnershipViolation { .. } => {
                    Some(crate::vocab::DomainStatus::Failed)
                }
                VerifyFinished { passed, .. } => Some(if *passed {
                    crate::vocab::DomainStatus::Merged
                } else {
                    crate::vocab::DomainStatus::Failed
                }),
                _ => None,
            };
            let _ = self.multi.println(self.paint(line, status));
        }
    }

    fn finish(&mut self, record: &RunRecord) {
        for (_, b) in std::mem::take(&mut self.bars) {
            b.finish_and_clear();
        }
        let at = record.finished_ms.unwrap_or_else(crate::events::now_ms);
        let _ = self
            .multi
            .println(format!("agent-farm: {}", crate::live::header(record, at)));
        self.header.finish_and_clear();
        let _ = self.multi.clear();
        *display() = None;
    }
}
