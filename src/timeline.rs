//! What ran when: a run's timeline, computed from its public events (pure).
//!
//! One [`Lane`] per domain, in plan order, and one last lane for the merged result. A domain's
//! lane holds its spans in order: queued (waiting for a slot or its dependencies), preparing
//! (worktree, copies, setup), each agent attempt, the waits between attempts, commit and audit
//! (the domain's verify, the commit, the ownership audit), waiting to be merged, the merge. The
//! result's lane holds the run's own stages: merging, verify, land, cleanup.
//!
//! Merges are done one at a time, in order, and only their ends are events: a merge is taken to
//! start when both the domain had finished and the merge before it had ended.
//!
//! The spans come from event timestamps alone; a span still open when its invocation ended (the
//! process was killed) ends with the invocation, one still open at the end of a run in progress
//! ends at `now`.

use std::collections::{BTreeMap, BTreeSet};

use crate::events::{FarmEvent, Timed};
use crate::record::RunRecord;
use crate::vocab::{AttemptEnd, DomainStatus};

/// What a span of a lane is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum SpanKind {
    /// Waiting for a free slot or for its dependencies to merge.
    Queued,
    /// Worktree, copied files, setup commands.
    Preparing,
    /// One agent attempt.
    Agent,
    /// Between a failed attempt and the next one (back-off).
    RetryWait,
    /// After the agent: the domain's verify, the commit, the ownership audit.
    Commit,
    /// Finished, waiting for its turn to merge.
    MergeWait,
    /// Merged into the integration branch (or conflicted).
    Merge,
    /// The run's merge stage (result lane).
    Merging,
    /// Verify on the merged result (result lane).
    Verify,
    /// Landing the result on `into` (result lane).
    Land,
    /// Removing worktrees and branches (result lane).
    Clean,
}

impl SpanKind {
    /// The name, as CSS classes and the Chrome trace's categories spell it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// A few words for a legend or a label.
    pub fn describe(self) -> &'static str {
        match self {
            SpanKind::Queued => "queued",
            SpanKind::Preparing => "preparing",
            SpanKind::Agent => "agent",
            SpanKind::RetryWait => "retry wait",
            SpanKind::Commit => "commit/audit",
            SpanKind::MergeWait => "waiting to merge",
            SpanKind::Merge => "merge",
            SpanKind::Merging => "merging",
            SpanKind::Verify => "verify",
            SpanKind::Land => "land",
            SpanKind::Clean => "cleanup",
        }
    }
}

/// How a span turned out (its colour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Outcome {
    /// Nothing to judge (waiting, preparing).
    Neutral,
    Ok,
    Failed,
    TimedOut,
    Cancelled,
    Conflicted,
    Blocked,
    Skipped,
    /// Still going at the end of the events.
    Running,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    fn of_status(s: DomainStatus) -> Outcome {
        match s {
            DomainStatus::Succeeded | DomainStatus::Merged => Outcome::Ok,
            DomainStatus::Failed => Outcome::Failed,
            DomainStatus::TimedOut => Outcome::TimedOut,
            DomainStatus::Cancelled => Outcome::Cancelled,
            DomainStatus::Conflicted => Outcome::Conflicted,
            DomainStatus::Skipped => Outcome::Skipped,
            DomainStatus::Blocked => Outcome::Blocked,
            DomainStatus::Pending | DomainStatus::Preparing | DomainStatus::Running => {
                Outcome::Running
            }
        }
    }

    fn of_end(end: &AttemptEnd) -> Outcome {
        match end {
            e if e.success() => Outcome::Ok,
            AttemptEnd::TimedOut | AttemptEnd::Stalled { .. } => Outcome::TimedOut,
            AttemptEnd::Cancelled { .. } => Outcome::Cancelled,
            _ => Outcome::Failed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub kind: SpanKind,
    pub outcome: Outcome,
    pub start_ms: u64,
    pub end_ms: u64,
    /// The attempt, for agent spans.
    pub attempt: Option<u32>,
    /// A short label ("attempt 2", "exit 1").
    pub label: String,
    /// What happened, for a tooltip.
    pub detail: String,
}

impl Span {
    pub fn duration_ms(&self) -> u64 {
        self.end_ms.saturating_sub(self.start_ms)
    }
}

/// Something that happened at one moment of a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum MarkKind {
    /// An ownership violation (live, prevented, guard, audit).
    Violation,
    /// The supervisor ended processes the agent left running.
    ProcessesEnded,
    /// The domain was skipped (a dependency did not merge).
    Skipped,
    /// The run was interrupted.
    Interrupted,
}

impl MarkKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub kind: MarkKind,
    pub at_ms: u64,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneKind {
    Domain,
    /// The merged result: the run's merge, verify, land and cleanup stages.
    Result,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub name: String,
    pub kind: LaneKind,
    /// The domain's final status (domain lanes).
    pub status: Option<DomainStatus>,
    /// On the critical path.
    pub critical: bool,
    pub spans: Vec<Span>,
    pub marks: Vec<Mark>,
}

/// A dependency: `to` could start only once `from` had merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// When `from` merged (or its last span ended).
    pub from_ms: u64,
    /// When `to` started (or was skipped).
    pub to_ms: u64,
    /// Both ends on the critical path, one after the other.
    pub critical: bool,
}

/// One invocation of agent-farm that drove the run (`run`, then each `resume` or `merge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invocation {
    pub start_ms: u64,
    pub end_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub start_ms: u64,
    pub end_ms: u64,
    pub lanes: Vec<Lane>,
    pub edges: Vec<Edge>,
    pub critical_path: Vec<String>,
    pub invocations: Vec<Invocation>,
}

/// The name of the result lane.
pub const RESULT_LANE: &str = "merged result";

impl Timeline {
    /// Every span, with the index of its lane.
    pub fn spans(&self) -> impl Iterator<Item = (usize, &Span)> {
        self.lanes
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.spans.iter().map(move |s| (i, s)))
    }

    pub fn lane(&self, name: &str) -> Option<&Lane> {
        self.lanes.iter().find(|l| l.name == name)
    }

    /// Time on the timeline's own axis: the invocations laid end to end, each gap between them
    /// shrunk to `gap_ms` (an hour between `run` and `resume` is not drawn as an hour).
    pub fn axis_ms(&self, t: u64, gap_ms: u64) -> u64 {
        let mut offset = 0u64;
        let mut prev_end: Option<u64> = None;
        for inv in &self.invocations {
            if let Some(pe) = prev_end {
                let gap = inv.start_ms.saturating_sub(pe);
                if t < inv.start_ms {
                    // In the gap: squeeze it proportionally into gap_ms.
                    let into = t.saturating_sub(pe);
                    let shrunk = gap.min(gap_ms);
                    return offset + into.min(gap) * shrunk / gap.max(1);
                }
                offset += gap.min(gap_ms);
            }
            if t <= inv.end_ms || prev_end.is_none() && t < inv.start_ms {
                return offset + t.saturating_sub(inv.start_ms);
            }
            offset += inv.end_ms.saturating_sub(inv.start_ms);
            prev_end = Some(inv.end_ms);
        }
        match prev_end {
            Some(pe) => offset + t.saturating_sub(pe),
            None => t.saturating_sub(self.start_ms),
        }
    }

    /// The gaps between invocations, as `(end of one, start of the next)`.
    pub fn gaps(&self) -> Vec<(u64, u64)> {
        self.invocations
            .windows(2)
            .filter(|w| w[1].start_ms > w[0].end_ms)
            .map(|w| (w[0].end_ms, w[1].start_ms))
            .collect()
    }
}

/// A span being timed.
#[derive(Debug, Clone)]
struct Open {
    kind: SpanKind,
    start_ms: u64,
    attempt: Option<u32>,
    label: String,
}

#[derive(Debug, Default)]
struct DomainState {
    spans: Vec<Span>,
    marks: Vec<Mark>,
    open: Option<Open>,
    /// The end of its last agent attempt, while the next step has not begun.
    agent_end: Option<u64>,
    /// The delay announced for the next attempt.
    retry_delay: Option<u64>,
    /// When it finished its work (domain_finished), until it merged.
    finished_ms: Option<u64>,
    /// Attempts a restart closed; their late `agent_finished` is not drawn again.
    closed_attempts: BTreeSet<u32>,
    status: Option<DomainStatus>,
}

impl DomainState {
    fn close(&mut self, at: u64, outcome: Outcome, detail: String) {
        if let Some(o) = self.open.take() {
            if o.kind == SpanKind::Queued && at <= o.start_ms && outcome == Outcome::Neutral {
                return; // It did not wait.
            }
            self.spans.push(Span {
                kind: o.kind,
                outcome,
                start_ms: o.start_ms,
                end_ms: at.max(o.start_ms),
                attempt: o.attempt,
                label: o.label,
                detail,
            });
        }
    }

    fn open(&mut self, kind: SpanKind, at: u64, attempt: Option<u32>, label: String) {
        self.open = Some(Open {
            kind,
            start_ms: at,
            attempt,
            label,
        });
    }

    fn push(&mut self, kind: SpanKind, outcome: Outcome, start: u64, end: u64, label: &str) {
        self.spans.push(Span {
            kind,
            outcome,
            start_ms: start,
            end_ms: end.max(start),
            attempt: None,
            label: label.to_string(),
            detail: String::new(),
        });
    }
}

/// The timeline of `rec`'s run from its events (`events.jsonl`, in order). `critical_path` is the
/// report's (see `report::Metrics::critical_path`). Without events (a record from before they
/// were kept), the record's own times are used.
pub fn build(rec: &RunRecord, events: &[Timed], critical_path: &[String], now_ms: u64) -> Timeline {
    let names: Vec<String> = rec.plan.domains.iter().map(|d| d.name.clone()).collect();
    let mut st: BTreeMap<String, DomainState> = names
        .iter()
        .map(|n| (n.clone(), DomainState::default()))
        .collect();
    let mut result = DomainState::default();
    let mut invocations: Vec<Invocation> = Vec::new();
    let mut last_at = events.first().map_or(rec.started_ms, |e| e.at_ms);
    let mut last_merge = 0u64;
    let mut invocation_open = false;

    // Close everything still open when an invocation ends (`at`), as `outcome`.
    fn close_all(
        st: &mut BTreeMap<String, DomainState>,
        result: &mut DomainState,
        at: u64,
        outcome: Outcome,
        why: &str,
    ) {
        for d in st.values_mut() {
            if let Some(a) = d.open.as_ref().and_then(|o| o.attempt) {
                d.closed_attempts.insert(a);
            }
            d.close(at, outcome, why.to_string());
        }
        result.close(at, outcome, why.to_string());
    }

    for ev in events {
        let at = ev.at_ms;
        use FarmEvent::*;
        match &ev.event {
            RunStarted { .. } | Resumed { .. } | MergeRequested => {
                if invocation_open {
                    close_all(
                        &mut st,
                        &mut result,
                        last_at,
                        Outcome::Cancelled,
                        "agent-farm stopped while it ran",
                    );
                    if let Some(inv) = invocations.last_mut() {
                        inv.end_ms = last_at;
                    }
                }
                invocations.push(Invocation {
                    start_ms: at,
                    end_ms: at,
                });
                invocation_open = true;
                if matches!(ev.event, RunStarted { .. }) {
                    for d in st.values_mut() {
                        d.open(SpanKind::Queued, at, None, "queued".into());
                    }
                }
                if matches!(ev.event, MergeRequested) {
                    result.open(SpanKind::Merging, at, None, "merging".into());
                }
            }
            _ => {}
        }
        if let Some(inv) = invocations.last_mut().filter(|_| invocation_open) {
            inv.end_ms = inv.end_ms.max(at);
        }
        last_at = at;
        let domain = ev.event.domain().map(str::to_owned);
        let d = domain.as_deref().and_then(|n| st.get_mut(n));
        match (&ev.event, d) {
            (DomainReset { reason, .. }, Some(d)) => {
                d.close(at, Outcome::Cancelled, reason.clone());
                d.agent_end = None;
                d.finished_ms = None;
                d.status = None;
                d.open(SpanKind::Queued, at, None, "queued".into());
            }
            (DomainPreparing { start_commit, .. }, Some(d)) => {
                d.close(at, Outcome::Neutral, String::new());
                d.open(
                    SpanKind::Preparing,
                    at,
                    None,
                    format!("preparing from {}", short(start_commit)),
                );
            }
            (
                AgentStarted {
                    attempt,
                    spawned_ms,
                    ..
                },
                Some(d),
            ) => {
                let start = if *spawned_ms > 0 { *spawned_ms } else { at };
                d.close(start, Outcome::Neutral, String::new());
                if let Some(end) = d.agent_end.take() {
                    let label = match d.retry_delay.take() {
                        Some(ms) => format!("retry after {}", crate::report::fmt_ms(ms)),
                        None => "retry".into(),
                    };
                    d.push(SpanKind::RetryWait, Outcome::Neutral, end, start, &label);
                }
                d.open(
                    SpanKind::Agent,
                    start,
                    Some(*attempt),
                    format!("attempt {attempt}"),
                );
            }
            (AgentRetrying { delay_ms, .. }, Some(d)) => d.retry_delay = Some(*delay_ms),
            (AgentFinished { attempt, end, .. }, Some(d)) => {
                let is_current = d
                    .open
                    .as_ref()
                    .is_some_and(|o| o.kind == SpanKind::Agent && o.attempt == Some(*attempt));
                if is_current {
                    d.close(at, Outcome::of_end(end), end.describe());
                    d.agent_end = Some(at);
                } else if !d.closed_attempts.contains(attempt) {
                    // It never started (the spawn failed): a moment, after what was open.
                    d.close(at, Outcome::Neutral, String::new());
                    d.spans.push(Span {
                        kind: SpanKind::Agent,
                        outcome: Outcome::of_end(end),
                        start_ms: at,
                        end_ms: at,
                        attempt: Some(*attempt),
                        label: format!("attempt {attempt}"),
                        detail: end.describe(),
                    });
                    d.agent_end = Some(at);
                }
            }
            (DomainFinished { status, reason, .. }, Some(d)) => {
                let outcome = Outcome::of_status(*status);
                let detail = reason.clone().unwrap_or_else(|| status.to_string());
                match d.agent_end.take() {
                    Some(end) => {
                        d.close(end, Outcome::Neutral, String::new());
                        d.spans.push(Span {
                            kind: SpanKind::Commit,
                            outcome,
                            start_ms: end,
                            end_ms: at.max(end),
                            attempt: None,
                            label: "commit/audit".into(),
                            detail,
                        });
                    }
                    None => d.close(at, outcome, detail),
                }
                d.status = Some(*status);
                d.finished_ms = Some(at);
            }
            (DomainSkipped { reason, .. }, Some(d)) => {
                d.close(at, Outcome::Skipped, format!("skipped: {reason}"));
                d.marks.push(Mark {
                    kind: MarkKind::Skipped,
                    at_ms: at,
                    detail: format!("skipped: {reason}"),
                });
                d.status = Some(DomainStatus::Skipped);
            }
            (Merged { .. } | Conflict { .. }, Some(d)) => {
                let inv_start = invocations.last().map_or(0, |i| i.start_ms);
                let finished = d.finished_ms.take();
                let start = finished.unwrap_or(inv_start).max(last_merge).min(at);
                if let Some(f) = finished.filter(|f| *f < start) {
                    d.push(SpanKind::MergeWait, Outcome::Neutral, f, start, "waiting");
                }
                let (outcome, detail) = match &ev.event {
                    Conflict { paths, .. } => (
                        Outcome::Conflicted,
                        format!("conflict in {}", paths.join(", ")),
                    ),
                    Merged {
                        commit: Some(c), ..
                    } => (Outcome::Ok, format!("merged as {}", short(c))),
                    _ => (Outcome::Ok, "nothing to merge".to_string()),
                };
                if matches!(ev.event, Conflict { .. }) {
                    d.status = Some(DomainStatus::Conflicted);
                } else {
                    d.status = Some(DomainStatus::Merged);
                }
                d.spans.push(Span {
                    kind: SpanKind::Merge,
                    outcome,
                    start_ms: start,
                    end_ms: at,
                    attempt: None,
                    label: "merge".into(),
                    detail,
                });
                last_merge = at;
            }
            (OwnershipViolation { violation: v, .. }, Some(d)) => d.marks.push(Mark {
                kind: MarkKind::Violation,
                at_ms: at,
                detail: format!(
                    "{} {} ({}; {})",
                    v.change,
                    v.path,
                    v.detected.describe(),
                    v.action
                ),
            }),
            (ProcessesEnded { processes, .. }, _) => {
                let name = ev_domain_of_processes(&ev.event);
                if let Some(d) = name.and_then(|n| st.get_mut(n)) {
                    d.marks.push(Mark {
                        kind: MarkKind::ProcessesEnded,
                        at_ms: at,
                        detail: format!(
                            "ended {}",
                            processes
                                .iter()
                                .map(|p| format!("pid {} `{}`", p.pid, p.command))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
            }
            (Phase { phase }, _) => {
                use crate::vocab::Phase as P;
                let kind = match phase {
                    P::Merging => Some(SpanKind::Merging),
                    P::Verifying => Some(SpanKind::Verify),
                    P::Landing => Some(SpanKind::Land),
                    P::Cleaning => Some(SpanKind::Clean),
                    _ => None,
                };
                if result.open.as_ref().map(|o| o.kind) != kind {
                    result.close(at, Outcome::Ok, String::new());
                    if let Some(k) = kind {
                        result.open(k, at, None, k.describe().into());
                    }
                }
            }
            (VerifyStarted { commit }, _)
                if result.open.as_ref().map(|o| o.kind) != Some(SpanKind::Verify) =>
            {
                result.close(at, Outcome::Ok, String::new());
                result.open(
                    SpanKind::Verify,
                    at,
                    None,
                    format!("verify {}", short(commit)),
                );
            }
            (VerifyFinished { passed, end, .. }, _) => {
                let outcome = if *passed {
                    Outcome::Ok
                } else {
                    Outcome::of_end(end).failed_if_ok()
                };
                let detail = if *passed {
                    "passed".to_string()
                } else {
                    format!("failed ({})", end.describe())
                };
                if result.open.as_ref().map(|o| o.kind) != Some(SpanKind::Verify) {
                    result.close(at, Outcome::Ok, String::new());
                    result.open(SpanKind::Verify, at, None, "verify".into());
                }
                result.close(at, outcome, detail);
            }
            (Landed { into, commit, .. }, _)
            | (
                NotLanded {
                    into,
                    reason: commit,
                    ..
                },
                _,
            ) => {
                let landed = matches!(ev.event, Landed { .. });
                if result.open.as_ref().map(|o| o.kind) != Some(SpanKind::Land) {
                    result.close(at, Outcome::Ok, String::new());
                    result.open(SpanKind::Land, at, None, "land".into());
                }
                let (outcome, detail) = if landed {
                    (
                        Outcome::Ok,
                        format!("landed on {into} at {}", short(commit)),
                    )
                } else {
                    (Outcome::Failed, format!("not landed on {into}: {commit}"))
                };
                result.close(at, outcome, detail);
            }
            (Interrupted { reason }, _) => {
                result.marks.push(Mark {
                    kind: MarkKind::Interrupted,
                    at_ms: at,
                    detail: format!("interrupted: {reason}"),
                });
            }
            (RunFinished { .. }, _) => {
                // The run's last stage (cleanup) ends with it; a domain's step does not.
                result.close(at, Outcome::Ok, String::new());
                close_all(
                    &mut st,
                    &mut result,
                    at,
                    Outcome::Cancelled,
                    "the run ended first",
                );
                invocation_open = false;
            }
            _ => {}
        }
    }
    // A run in progress: what is open goes on to now; a dead one's, to its last event.
    let live = rec.finished_ms.is_none() && rec.spans.last().is_some_and(|s| s.open);
    let end = if live { now_ms.max(last_at) } else { last_at };
    if invocation_open {
        close_all(&mut st, &mut result, end, Outcome::Running, "still running");
        if let Some(inv) = invocations.last_mut() {
            inv.end_ms = end;
        }
    }
    let mut timeline = if events.is_empty() {
        from_record(rec)
    } else {
        let mut lanes: Vec<Lane> = names
            .iter()
            .map(|n| {
                let d = st.remove(n).unwrap_or_default();
                Lane {
                    name: n.clone(),
                    kind: LaneKind::Domain,
                    status: rec.domain(n).map(|r| r.status).or(d.status),
                    critical: false,
                    spans: d.spans,
                    marks: d.marks,
                }
            })
            .collect();
        lanes.push(Lane {
            name: RESULT_LANE.into(),
            kind: LaneKind::Result,
            status: None,
            critical: false,
            spans: result.spans,
            marks: result.marks,
        });
        Timeline {
            start_ms: invocations.first().map_or(rec.started_ms, |i| i.start_ms),
            end_ms: end,
            lanes,
            edges: Vec::new(),
            critical_path: Vec::new(),
            invocations,
        }
    };
    timeline.critical_path = critical_path.to_vec();
    for l in &mut timeline.lanes {
        l.critical = l.kind == LaneKind::Domain && critical_path.contains(&l.name);
    }
    timeline.edges = edges(rec, &timeline);
    timeline
}

fn ev_domain_of_processes(ev: &FarmEvent) -> Option<&str> {
    match ev {
        FarmEvent::ProcessesEnded { domain, .. } => Some(domain),
        _ => None,
    }
}

impl Outcome {
    fn failed_if_ok(self) -> Outcome {
        if self == Outcome::Ok {
            Outcome::Failed
        } else {
            self
        }
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// The dependency edges, from each dependency's merge to its dependent's start.
fn edges(rec: &RunRecord, t: &Timeline) -> Vec<Edge> {
    let mut out = Vec::new();
    for d in &rec.plan.domains {
        let Some(lane) = t.lane(&d.name) else {
            continue;
        };
        let to_ms = lane
            .spans
            .iter()
            .find(|s| s.kind != SpanKind::Queued)
            .map(|s| s.start_ms)
            .or_else(|| lane.marks.first().map(|m| m.at_ms))
            .or_else(|| lane.spans.last().map(|s| s.end_ms));
        let Some(to_ms) = to_ms else { continue };
        for dep in &d.depends_on {
            let Some(from) = t.lane(dep) else { continue };
            // Its merge before `to` started; else its latest span that ended by then.
            let from_ms = from
                .spans
                .iter()
                .filter(|s| s.end_ms <= to_ms)
                .rev()
                .find(|s| s.kind == SpanKind::Merge)
                .or_else(|| from.spans.iter().rev().find(|s| s.kind == SpanKind::Merge))
                .or_else(|| from.spans.iter().rev().find(|s| s.kind != SpanKind::Queued))
                .map(|s| s.end_ms);
            let Some(from_ms) = from_ms else { continue };
            let critical = t
                .critical_path
                .windows(2)
                .any(|w| w[0] == *dep && w[1] == d.name);
            out.push(Edge {
                from: dep.clone(),
                to: d.name.clone(),
                from_ms,
                to_ms,
                critical,
            });
        }
    }
    out
}

/// A timeline from the record alone (no events): preparing, attempts, commit.
fn from_record(rec: &RunRecord) -> Timeline {
    let mut lanes = Vec::new();
    let mut end_ms = rec.finished_ms.unwrap_or(rec.started_ms);
    for d in rec.plan.domains.iter().filter_map(|d| rec.domain(&d.name)) {
        let mut s = DomainState::default();
        let mut cursor = d.started_ms;
        for a in &d.attempts {
            if let Some(c) = cursor.filter(|c| *c < a.started_ms) {
                let kind = if s.spans.is_empty() {
                    SpanKind::Preparing
                } else {
                    SpanKind::RetryWait
                };
                s.push(kind, Outcome::Neutral, c, a.started_ms, kind.describe());
            }
            let end = a.ended_ms.unwrap_or(a.started_ms);
            s.spans.push(Span {
                kind: SpanKind::Agent,
                outcome: a.end.as_ref().map_or(Outcome::Running, Outcome::of_end),
                start_ms: a.started_ms,
                end_ms: end,
                attempt: Some(a.number),
                label: format!("attempt {}", a.number),
                detail: a.end.as_ref().map(AttemptEnd::describe).unwrap_or_default(),
            });
            cursor = Some(end);
        }
        if let (Some(c), Some(e)) = (cursor, d.ended_ms) {
            s.push(
                SpanKind::Commit,
                Outcome::of_status(d.status),
                c,
                e,
                "commit/audit",
            );
        }
        end_ms = end_ms.max(s.spans.iter().map(|s| s.end_ms).max().unwrap_or(0));
        lanes.push(Lane {
            name: d.name.clone(),
            kind: LaneKind::Domain,
            status: Some(d.status),
            critical: false,
            spans: s.spans,
            marks: Vec::new(),
        });
    }
    lanes.push(Lane {
        name: RESULT_LANE.into(),
        kind: LaneKind::Result,
        status: None,
        critical: false,
        spans: Vec::new(),
        marks: Vec::new(),
    });
    Timeline {
        start_ms: rec.started_ms,
        end_ms,
        lanes,
        edges: Vec::new(),
        critical_path: Vec::new(),
        invocations: vec![Invocation {
            start_ms: rec.started_ms,
            end_ms,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::AttemptEnd;
    use crate::record::{sample, sample_apply};

    /// A record and the events folded into it, kept together.
    struct Run {
        rec: RunRecord,
        events: Vec<Timed>,
    }

    impl Run {
        fn new(domains: &[&str], deps: &[(&str, &str)]) -> Run {
            let mut rec = sample(domains, 0);
            for (d, dep) in deps {
                let dom = rec.plan.domains.iter_mut().find(|x| x.name == *d).unwrap();
                dom.depends_on.push(dep.to_string());
            }
            let mut run = Run {
                rec,
                events: Vec::new(),
            };
            run.ev(
                0,
                FarmEvent::RunStarted {
                    run_id: "r".into(),
                    domains: domains.len(),
                    jobs: 2,
                    base: "main".into(),
                    base_commit: "b".repeat(40),
                    into: "main".into(),
                    into_commit: None,
                },
            );
            run
        }
        fn ev(&mut self, at_ms: u64, event: FarmEvent) {
            sample_apply(&mut self.rec, at_ms, event.clone());
            self.events.push(Timed { at_ms, event });
        }
        fn prepare(&mut self, d: &str, at: u64) {
            self.ev(
                at,
                FarmEvent::DomainPreparing {
                    domain: d.into(),
                    start_commit: "b".repeat(40),
                },
            );
        }
        fn attempt(&mut self, d: &str, n: u32, from: u64, to: u64, code: i32) {
            self.ev(
                from,
                FarmEvent::AgentStarted {
                    domain: d.into(),
                    attempt: n,
                    pid: 1,
                    spawned_ms: from,
                },
            );
            self.ev(
                to,
                FarmEvent::AgentFinished {
                    domain: d.into(),
                    attempt: n,
                    end: AttemptEnd::Exited { code },
                    duration_ms: to - from,
                },
            );
        }
        fn finish(&mut self, d: &str, at: u64, status: DomainStatus) {
            self.ev(
                at,
                FarmEvent::DomainFinished {
                    domain: d.into(),
                    status,
                    reason: (status != DomainStatus::Succeeded).then(|| "agent failed".into()),
                    head: None,
                    files: vec![],
                    insertions: 0,
                    deletions: 0,
                },
            );
        }
        fn merged(&mut self, d: &str, at: u64) {
            self.ev(
                at,
                FarmEvent::Merged {
                    domain: d.into(),
                    commit: Some("m".repeat(40)),
                },
            );
        }
        fn timeline(&self, cp: &[&str], now: u64) -> Timeline {
            let cp: Vec<String> = cp.iter().map(|s| s.to_string()).collect();
            build(&self.rec, &self.events, &cp, now)
        }
    }

    fn kinds(l: &Lane) -> Vec<(SpanKind, Outcome, u64, u64)> {
        l.spans
            .iter()
            .map(|s| (s.kind, s.outcome, s.start_ms, s.end_ms))
            .collect()
    }

    use Outcome as O;
    use SpanKind as K;

    #[test]
    fn a_domain_lane_has_its_steps_in_order_with_retries() {
        let mut r = Run::new(&["a"], &[]);
        r.prepare("a", 10);
        r.attempt("a", 1, 100, 1000, 1);
        r.ev(
            1001,
            FarmEvent::AgentRetrying {
                domain: "a".into(),
                next_attempt: 2,
                delay_ms: 500,
            },
        );
        r.attempt("a", 2, 1500, 3000, 0);
        r.finish("a", 3200, DomainStatus::Succeeded);
        r.merged("a", 3300);
        r.ev(
            3300,
            FarmEvent::Phase {
                phase: crate::vocab::Phase::Cleaning,
            },
        );
        r.ev(3400, FarmEvent::RunFinished { exit_code: 0 });
        let t = r.timeline(&["a"], 9999);
        let a = t.lane("a").unwrap();
        assert_eq!(
            kinds(a),
            [
                (K::Queued, O::Neutral, 0, 10),
                (K::Preparing, O::Neutral, 10, 100),
                (K::Agent, O::Failed, 100, 1000),
                (K::RetryWait, O::Neutral, 1000, 1500),
                (K::Agent, O::Ok, 1500, 3000),
                (K::Commit, O::Ok, 3000, 3200),
                (K::Merge, O::Ok, 3200, 3300),
            ]
        );
        assert_eq!(a.spans[3].label, "retry after 500ms");
        assert_eq!(a.spans[2].detail, "exit 1");
        assert_eq!(a.spans[4].attempt, Some(2));
        assert!(a.critical);
        assert_eq!(t.lanes.last().unwrap().kind, LaneKind::Result);
        assert_eq!(
            kinds(t.lanes.last().unwrap()),
            [(K::Clean, O::Ok, 3300, 3400)],
            "the stage open when the run finished ended with it"
        );
        assert_eq!((t.start_ms, t.end_ms), (0, 3400));
    }

    #[test]
    fn merges_wait_for_the_one_before_and_dependencies_are_edges() {
        let mut r = Run::new(&["a", "b", "c"], &[("c", "a")]);
        r.prepare("a", 0);
        r.prepare("b", 0);
        r.attempt("a", 1, 10, 100, 0);
        r.attempt("b", 1, 10, 90, 0);
        r.finish("b", 95, DomainStatus::Succeeded);
        r.finish("a", 105, DomainStatus::Succeeded);
        // a merges first (planned order), b waits for it.
        r.merged("a", 120);
        r.merged("b", 130);
        r.prepare("c", 131);
        r.attempt("c", 1, 140, 200, 0);
        r.finish("c", 210, DomainStatus::Succeeded);
        r.merged("c", 220);
        r.ev(
            221,
            FarmEvent::Phase {
                phase: crate::vocab::Phase::Merging,
            },
        );
        r.ev(
            222,
            FarmEvent::VerifyStarted {
                commit: "m".repeat(40),
            },
        );
        r.ev(
            300,
            FarmEvent::VerifyFinished {
                passed: false,
                end: AttemptEnd::Exited { code: 1 },
                duration_ms: 78,
                log: "verify.log".into(),
            },
        );
        r.ev(
            301,
            FarmEvent::NotLanded {
                into: "main".into(),
                reason: "verify failed".into(),
                command: None,
            },
        );
        r.ev(310, FarmEvent::RunFinished { exit_code: 8 });
        let t = r.timeline(&["a", "c"], 9999);
        let b = t.lane("b").unwrap();
        assert_eq!(
            kinds(b)[3..],
            [
                (K::MergeWait, O::Neutral, 95, 120),
                (K::Merge, O::Ok, 120, 130)
            ]
        );
        assert_eq!(kinds(t.lane("a").unwrap())[3], (K::Merge, O::Ok, 105, 120));
        assert_eq!(
            t.edges,
            [Edge {
                from: "a".into(),
                to: "c".into(),
                from_ms: 120,
                to_ms: 131,
                critical: true
            }]
        );
        assert!(!t.lane("b").unwrap().critical);
        let res = t.lane(RESULT_LANE).unwrap();
        assert_eq!(
            kinds(res),
            [
                (K::Merging, O::Ok, 221, 222),
                (K::Verify, O::Failed, 222, 300),
                (K::Land, O::Failed, 301, 301),
            ]
        );
    }

    #[test]
    fn a_skipped_domain_and_a_spawn_failure_are_shown() {
        let mut r = Run::new(&["a", "b"], &[("b", "a")]);
        r.prepare("a", 5);
        r.ev(
            20,
            FarmEvent::AgentFinished {
                domain: "a".into(),
                attempt: 1,
                end: AttemptEnd::SpawnFailed {
                    message: "no such program".into(),
                },
                duration_ms: 0,
            },
        );
        r.finish("a", 21, DomainStatus::Failed);
        r.ev(
            22,
            FarmEvent::DomainSkipped {
                domain: "b".into(),
                reason: "dependency a failed".into(),
            },
        );
        r.ev(23, FarmEvent::RunFinished { exit_code: 6 });
        let t = r.timeline(&[], 0);
        assert_eq!(
            kinds(t.lane("a").unwrap()),
            [
                (K::Queued, O::Neutral, 0, 5),
                (K::Preparing, O::Neutral, 5, 20),
                (K::Agent, O::Failed, 20, 20),
                (K::Commit, O::Failed, 20, 21),
            ]
        );
        let b = t.lane("b").unwrap();
        assert_eq!(kinds(b), [(K::Queued, O::Skipped, 0, 22)]);
        assert_eq!(b.marks[0].kind, MarkKind::Skipped);
        assert_eq!(b.status, Some(DomainStatus::Skipped));
        assert_eq!(t.edges.len(), 1);
        assert_eq!((t.edges[0].from_ms, t.edges[0].to_ms), (21, 22));
    }

    #[test]
    fn a_killed_invocation_ends_its_spans_and_the_gap_is_shrunk() {
        let mut r = Run::new(&["a"], &[]);
        r.prepare("a", 0);
        r.ev(
            10,
            FarmEvent::AgentStarted {
                domain: "a".into(),
                attempt: 1,
                pid: 1,
                spawned_ms: 10,
            },
        );
        r.ev(
            50,
            FarmEvent::AgentToolUse {
                domain: "a".into(),
                attempt: 1,
                tool: "Edit".into(),
                path: None,
                turns: 1,
                tokens: 0,
            },
        );
        // Killed; resumed an hour later: the late agent_finished is not drawn again.
        let t1 = 3_600_000;
        r.ev(t1, FarmEvent::Resumed { pid: 2 });
        r.ev(
            t1 + 1,
            FarmEvent::AgentFinished {
                domain: "a".into(),
                attempt: 1,
                end: AttemptEnd::Cancelled {
                    reason: "agent-farm stopped".into(),
                },
                duration_ms: 0,
            },
        );
        r.ev(
            t1 + 2,
            FarmEvent::DomainReset {
                domain: "a".into(),
                reason: "it was running".into(),
                after_agent: false,
            },
        );
        r.prepare("a", t1 + 10);
        r.attempt("a", 2, t1 + 20, t1 + 100, 0);
        r.finish("a", t1 + 110, DomainStatus::Succeeded);
        r.merged("a", t1 + 120);
        r.ev(t1 + 130, FarmEvent::RunFinished { exit_code: 0 });
        let t = r.timeline(&["a"], t1 + 99_999);
        let a = t.lane("a").unwrap();
        assert_eq!(
            kinds(a)[..3],
            [
                (K::Preparing, O::Neutral, 0, 10),
                (K::Agent, O::Cancelled, 10, 50),
                (K::Queued, O::Neutral, t1 + 2, t1 + 10),
            ]
        );
        assert_eq!(a.spans.iter().filter(|s| s.kind == K::Agent).count(), 2);
        assert_eq!(
            t.invocations,
            [
                Invocation {
                    start_ms: 0,
                    end_ms: 50
                },
                Invocation {
                    start_ms: t1,
                    end_ms: t1 + 130
                }
            ]
        );
        assert_eq!(t.gaps(), [(50, t1)]);
        // The hour is drawn as one second.
        assert_eq!(t.axis_ms(50, 1000), 50);
        assert_eq!(t.axis_ms(t1, 1000), 1050);
        assert_eq!(t.axis_ms(t1 + 130, 1000), 1180);
        assert!(t.axis_ms(t1 / 2, 1000) > 50 && t.axis_ms(t1 / 2, 1000) < 1050);
    }

    #[test]
    fn a_run_in_progress_reaches_now() {
        let mut r = Run::new(&["a"], &[]);
        r.prepare("a", 0);
        r.ev(
            10,
            FarmEvent::AgentStarted {
                domain: "a".into(),
                attempt: 1,
                pid: 1,
                spawned_ms: 10,
            },
        );
        let t = r.timeline(&[], 500);
        assert_eq!(
            kinds(t.lane("a").unwrap())[1],
            (K::Agent, O::Running, 10, 500)
        );
        assert_eq!(t.end_ms, 500);
    }

    #[test]
    fn without_events_the_record_gives_the_attempts() {
        let mut rec = sample(&["a"], 0);
        crate::record::sample_work(&mut rec, "a", 0, 1);
        let t = build(&rec, &[], &[], 0);
        assert_eq!(
            kinds(t.lane("a").unwrap()),
            [
                (K::Preparing, O::Neutral, 0, 1000),
                (K::Agent, O::Ok, 1000, 9000),
                (K::Commit, O::Ok, 9000, 10_000),
            ]
        );
    }
}
