//! The dispatcher: a synchronous state machine that owns all of a run's state and decides
//! everything — what starts next (DAG, priority, longest chain), retries and their delays,
//! fail-fast, the deadline, cancellation, merge order, verify, landing and cleanup.
//!
//! `handle(input) -> actions`. Inputs are what happened (a domain's message, a batch of file
//! changes, a signal, a timer, the result of an effect); actions are what to do (start an
//! effect, cancel, arm a timer, publish an event). The dispatcher never awaits anything and
//! never touches git, a process or the disk: the driver ([`super::Farm`]) runs each action
//! elsewhere and feeds its result back as another input. That is what makes every decision
//! testable without a process or a repository (see the tests at the end).
//!
//! Domain tasks talk to it with [`DomainMsg`], an internal type that is never serialized; the
//! dispatcher alone decides which public [`FarmEvent`]s follow.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::process::Cancel;
use crate::events::{AttemptEnd, Detected, DomainStatus, FarmEvent, Violation};
use crate::git::{LandPlan, MergeOutcome};
use crate::ownership::{OwnershipMap, PathClass};
use crate::plan::schedule;
use crate::record::{Phase, RunRecord};
use crate::txn::LandOutcome;
use crate::watch::{Change, ChangeKind};

/// When and how long to wait before an agent's next attempt (`agent.retries`,
/// `retry_backoff`, `rate_limit_backoff`): the n-th retry waits `backoff × 2^(n-1)`, capped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Extra attempts after the first one of this session.
    pub retries: u32,
    pub backoff: Duration,
    pub rate_limit_backoff: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The delay before the attempt after `attempt` (numbered from `first`), or `None`: no retry.
    pub fn next(&self, attempt: u32, first: u32, end: &AttemptEnd) -> Option<Duration> {
        let backoff = match end {
            AttemptEnd::Exited { code } if *code == 0 => return None,
            AttemptEnd::Exited { .. }
            | AttemptEnd::Signaled { .. }
            | AttemptEnd::TimedOut
            | AttemptEnd::Stalled { .. } => self.backoff,
            AttemptEnd::AgentFailed { failure, .. } if failure.retryable() => {
                if failure.backs_off() {
                    self.rate_limit_backoff
                } else {
                    self.backoff
                }
            }
            AttemptEnd::AgentFailed { .. }
            | AttemptEnd::Cancelled { .. }
            | AttemptEnd::SpawnFailed { .. } => return None,
        };
        if attempt >= first + self.retries {
            return None;
        }
        Some(
            backoff
                .checked_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
                .unwrap_or(Duration::MAX)
                .min(self.max_delay),
        )
    }
}

/// What a domain's task tells the dispatcher. Internal: never serialized.
#[derive(Debug, Clone, PartialEq)]
pub enum DomainMsg {
    /// Something observed that the public stream carries as is (a tool use, a commit…).
    Observed(FarmEvent),
    /// The worktree is ready and setup ran, or the domain ends here with this status.
    Prepared(Result<(), (DomainStatus, String)>),
    /// An agent attempt ended and its work was committed (or the commit failed).
    AttemptDone {
        attempt: u32,
        end: AttemptEnd,
        refused: usize,
        commit_error: Option<String>,
    },
    /// Audit, ownership policy, the domain's own verify and its change stats are done.
    Concluded {
        status: DomainStatus,
        reason: Option<String>,
        head: Option<String>,
        files: Vec<String>,
        insertions: usize,
        deletions: usize,
    },
    /// The task died (a bug); the domain ends failed.
    Died(String),
    /// Whether the write guard holds for the agent (sent once per attempt).
    Guard {
        active: bool,
        reason: Option<String>,
    },
    /// The write guard refused a write of the agent's outside its worktree.
    Blocked {
        attempt: u32,
        pid: u32,
        command: String,
        /// write, rename, delete, mkdir…
        op: String,
        /// Absolute.
        path: String,
        /// The domain whose worktree it is, if it is one.
        owner: Option<String>,
        /// Where it is: "the worktree of domain b", "the main checkout"…
        outside: String,
    },
}

/// Timers the dispatcher arms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    Deadline,
    Retry { domain: String, attempt: u32 },
}

/// Everything that can happen to a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Start driving the run (after the driver published the run's first events).
    Begin,
    Domain {
        domain: String,
        msg: DomainMsg,
    },
    Changes(Vec<Change>),
    WatchMode {
        domain: String,
        mode: Result<crate::watch::Mode, String>,
    },
    /// SIGINT, SIGTERM or SIGHUP.
    Signal {
        name: String,
    },
    Timer(Timer),
    /// Results of effects.
    StartComputed {
        domain: String,
        result: Result<String, String>,
    },
    Recovered(Vec<FarmEvent>),
    Predicted(Result<Vec<(String, String, Vec<String>)>, String>),
    MergeDone {
        domain: String,
        result: Result<MergeOutcome, String>,
    },
    LandLock(Result<(), String>),
    /// The integration tip and what landing it would do (`None`: nothing changed).
    LandingPlanned(Result<Option<(String, LandPlan)>, String>),
    Verified {
        passed: bool,
        end: AttemptEnd,
        duration_ms: u64,
        log: String,
        /// The verify worktree could not be made: verify did not run.
        setup_error: Option<String>,
    },
    LandDone(Result<LandOutcome, String>),
    Cleaned(Vec<FarmEvent>),
    /// SIGTSTP (Ctrl-Z): pause the whole farm.
    Suspend,
    /// SIGCONT after a pause (`fg`): go on; the pause lasted `paused_ms`.
    Continue {
        paused_ms: u64,
    },
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Publish an event (already folded into the dispatcher's record).
    Emit(FarmEvent),
    /// Stop every running command and then agent-farm itself (job control); timers freeze.
    Suspend,
    /// Continue every command stopped by [`Action::Suspend`].
    Continue,
    ComputeStart {
        domain: String,
    },
    /// Create the domain's branch and worktree at `start`, watch it, run setup (unless `skip_setup`).
    Prepare {
        domain: String,
        start: String,
        skip_setup: bool,
        /// The domain ran before (a resumed run): its branch, maybe its worktree, exist.
        resume: bool,
    },
    Attempt {
        domain: String,
        attempt: u32,
    },
    Conclude {
        domain: String,
        last_end: AttemptEnd,
        refused: usize,
    },
    /// Stop processes: the whole run's (`domain: None`) or one domain's.
    Cancel {
        domain: Option<String>,
        cancel: Cancel,
    },
    /// Stop watching a finished domain's worktree (after its last debounce window).
    Unwatch {
        domain: String,
    },
    SetTimer {
        timer: Timer,
        after: Duration,
    },
    /// Resume: stop a dead run's leftovers, recover its effects, commit what its worktrees hold;
    /// set the blocked attempts of `reset_blocked` aside.
    Recover {
        reset_blocked: Vec<String>,
    },
    PredictConflicts {
        candidates: Vec<(String, String)>,
    },
    Merge {
        domain: String,
        head: String,
    },
    TakeLandLock,
    PlanLanding,
    Verify {
        commit: String,
    },
    Land {
        old: Option<String>,
        new: String,
        fast_forward: bool,
    },
    Cleanup {
        remove_worktrees: bool,
    },
    /// Nothing is left to do: conclude the run.
    Finish,
}

/// How the run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    Resume {
        retry_failed: bool,
    },
    /// `agent-farm merge`: only the steps after the agents.
    Merge,
}

/// Where a started domain is in its pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Active {
    Starting,
    Preparing,
    Attempt {
        attempt: u32,
        refused: usize,
    },
    /// Waiting for the timer of the next attempt.
    Waiting {
        attempt: u32,
        refused: usize,
    },
    Concluding,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    Idle,
    Recovering,
    Running,
    Predicting,
    Merging,
    WaitingForLandLock,
    PlanningLanding,
    Verifying {
        old: Option<String>,
        new: String,
        fast_forward: bool,
    },
    Landing,
    Cleaning,
    Done,
}

/// What live watching has seen so far in this run.
#[derive(Debug, Default)]
struct LiveOwnership {
    /// path → domains that changed it.
    touched: BTreeMap<String, BTreeSet<String>>,
    /// Domains stopped for a violation.
    stopped: BTreeSet<String>,
    fallback_reported: bool,
    /// The guard's absence was reported.
    guard_reported: bool,
}

pub struct Dispatcher {
    record: RunRecord,
    /// Paused by job control (between `Suspend` and `Continue`).
    paused: bool,
    mode: Mode,
    retry: RetryPolicy,
    keep_worktrees: bool,
    /// The caller's clock for the next events (set by the driver before each input).
    now_ms: u64,
    stage: Stage,
    active: BTreeMap<String, Active>,
    merge_queue: VecDeque<String>,
    merging: Option<String>,
    /// Merges queued after the agents (`merge_pending`), in merge order.
    final_merges: bool,
    cancel: Option<Cancel>,
    signals: u32,
    ownership: Option<OwnershipMap>,
    live: LiveOwnership,
    /// The number of each domain's first attempt in this process (earlier ones were resumed).
    first_attempt_of: BTreeMap<String, u32>,
    /// The commit being landed, and whether it is a fast-forward.
    landing: Option<(String, bool)>,
    out: Vec<Action>,
}

impl Dispatcher {
    pub fn new(record: RunRecord, mode: Mode, retry: RetryPolicy, keep_worktrees: bool) -> Self {
        let ownership = OwnershipMap::for_plan(&record.plan).ok();
        Dispatcher {
            record,
            mode,
            retry,
            keep_worktrees,
            now_ms: 0,
            stage: Stage::Idle,
            active: BTreeMap::new(),
            merge_queue: VecDeque::new(),
            merging: None,
            final_merges: false,
            cancel: None,
            signals: 0,
            paused: false,
            ownership,
            live: LiveOwnership::default(),
            first_attempt_of: BTreeMap::new(),
            landing: None,
            out: Vec::new(),
        }
    }

    /// The run's state, as folded from every event published so far.
    pub fn record(&self) -> &RunRecord {
        &self.record
    }

    /// The plan's ownership rules, compiled once for the run.
    pub fn ownership(&self) -> Option<&OwnershipMap> {
        self.ownership.as_ref()
    }

    /// Whether the run is over (`Finish` was decided).
    pub fn done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Publish an event that did not come through `handle` (the run's first events, warnings).
    pub fn publish(&mut self, at_ms: u64, event: FarmEvent) -> Vec<Action> {
        self.now_ms = at_ms;
        self.emit(event);
        std::mem::take(&mut self.out)
    }

    /// Decide what follows `input`, which happened at `at_ms`.
    pub fn handle(&mut self, at_ms: u64, input: Input) -> Vec<Action> {
        self.now_ms = at_ms;
        self.on(input);
        std::mem::take(&mut self.out)
    }

    fn emit(&mut self, event: FarmEvent) {
        self.record.apply(&crate::events::Timed {
            at_ms: self.now_ms,
            event: event.clone(),
        });
        self.out.push(Action::Emit(event));
    }

    fn act(&mut self, a: Action) {
        self.out.push(a);
    }

    fn status(&self, name: &str) -> DomainStatus {
        self.record
            .domain(name)
            .map_or(DomainStatus::Skipped, |d| d.status)
    }

    fn interrupted(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.interrupt)
    }

    fn on(&mut self, input: Input) {
        match input {
            Input::Begin => self.begin(),
            Input::Domain { domain, msg } => self.on_domain(domain, msg),
            Input::Changes(batch) => self.on_changes(batch),
            Input::WatchMode { domain, mode } => self.on_watch_mode(domain, mode),
            Input::Signal { name } => self.on_signal(name),
            Input::Suspend => {
                if !self.paused {
                    self.paused = true;
                    self.emit(FarmEvent::Paused {
                        reason: "SIGTSTP (Ctrl-Z)".into(),
                    });
                    self.act(Action::Suspend);
                }
            }
            Input::Continue { paused_ms } => {
                if std::mem::replace(&mut self.paused, false) {
                    self.emit(FarmEvent::Continued { paused_ms });
                    self.act(Action::Continue);
                }
            }
            Input::Timer(t) => self.on_timer(t),
            Input::StartComputed { domain, result } => self.on_start_computed(domain, result),
            Input::Recovered(events) => self.on_recovered(events),
            Input::Predicted(r) => self.on_predicted(r),
            Input::MergeDone { domain, result } => self.on_merged(domain, result),
            Input::LandLock(r) => self.on_land_lock(r),
            Input::LandingPlanned(r) => self.on_landing_planned(r),
            Input::Verified {
                passed,
                end,
                duration_ms,
                log,
                setup_error,
            } => self.on_verified(passed, end, duration_ms, log, setup_error),
            Input::LandDone(r) => self.on_landed(r),
            Input::Cleaned(events) => {
                for ev in events {
                    self.emit(ev);
                }
                self.stage = Stage::Done;
                self.act(Action::Finish);
            }
        }
    }

    // ---- starting ----------------------------------------------------------------------

    fn begin(&mut self) {
        if let Some(d) = self.record.options.deadline_ms
            && self.mode != Mode::Merge
        {
            self.act(Action::SetTimer {
                timer: Timer::Deadline,
                after: Duration::from_millis(d),
            });
        }
        match self.mode {
            Mode::Merge => self.after_agents(),
            Mode::Run => self.start_running(),
            Mode::Resume { retry_failed } => {
                let reset_blocked = self
                    .resets(retry_failed)
                    .into_iter()
                    .filter(|(d, _, _)| self.status(d) == DomainStatus::Blocked)
                    .map(|(d, _, _)| d)
                    .collect();
                self.stage = Stage::Recovering;
                self.act(Action::Recover { reset_blocked });
            }
        }
    }

    /// Which domains resume runs again, why, and whether only the steps after the agent remain.
    fn resets(&self, retry_failed: bool) -> Vec<(String, String, bool)> {
        let failed = |s: DomainStatus| {
            matches!(
                s,
                DomainStatus::Failed | DomainStatus::TimedOut | DomainStatus::Blocked
            )
        };
        let unfinished = |s: DomainStatus| !s.is_terminal() || s == DomainStatus::Cancelled;
        self.record
            .plan
            .domains
            .iter()
            .filter_map(|d| {
                let dr = self.record.domain(&d.name)?;
                let s = dr.status;
                let agent_succeeded = dr
                    .attempts
                    .last()
                    .and_then(|a| a.end.as_ref())
                    .is_some_and(|e| e.success());
                let why = if unfinished(s) {
                    format!("it was {s} when the run stopped")
                } else if s == DomainStatus::Skipped {
                    "it was skipped; its dependencies may succeed now".to_string()
                } else if retry_failed && failed(s) {
                    format!("--retry-failed: it {s}")
                } else {
                    return None;
                };
                Some((d.name.clone(), why, unfinished(s) && agent_succeeded))
            })
            .collect()
    }

    fn on_recovered(&mut self, events: Vec<FarmEvent>) {
        for ev in events {
            self.emit(ev);
        }
        let retry_failed = matches!(self.mode, Mode::Resume { retry_failed: true });
        for (domain, reason, after_agent) in self.resets(retry_failed) {
            self.emit(FarmEvent::DomainReset {
                domain,
                reason,
                after_agent,
            });
        }
        self.start_running();
    }

    fn start_running(&mut self) {
        self.stage = Stage::Running;
        // A resumed run may hold finished domains whose merge never happened (or was never
        // recorded): merge them first, so that their dependents can start.
        if !self.record.options.no_merge {
            for name in schedule::merge_order(&self.record.plan.domains) {
                if self.status(&name) == DomainStatus::Succeeded {
                    self.merge_queue.push_back(name);
                }
            }
        }
        self.pump();
    }

    /// Domains that may start now: pending, with every dependency done in the sense this run
    /// needs (merged into the integration branch, or merely succeeded with `--no-merge`).
    fn ready(&self) -> Vec<String> {
        let no_merge = self.record.options.no_merge;
        let plan = &self.record.plan;
        let candidates = plan.domains.iter().filter(|d| {
            self.status(&d.name) == DomainStatus::Pending
                && !self.active.contains_key(&d.name)
                && d.depends_on.iter().all(|p| {
                    let s = self.status(p);
                    s == DomainStatus::Merged || (no_merge && s == DomainStatus::Succeeded)
                })
        });
        schedule::start_order(&plan.domains, candidates.map(|d| d.name.as_str()))
    }

    /// Start what can start, merge what is queued; when nothing runs any more, go on.
    fn pump(&mut self) {
        if self.stage == Stage::Running {
            self.next_merge();
            // Domains start from the integration tip: after what finished is merged, so that
            // they see every change before them (a merge takes milliseconds).
            let merges_pending = self.merging.is_some() || !self.merge_queue.is_empty();
            if self.cancel.is_none() && !merges_pending {
                let jobs = self.record.options.jobs.max(1);
                for name in self.ready() {
                    if self.active.len() >= jobs {
                        break;
                    }
                    self.active.insert(name.clone(), Active::Starting);
                    self.act(Action::ComputeStart { domain: name });
                }
            }
            if self.active.is_empty() && self.merging.is_none() && self.merge_queue.is_empty() {
                self.agents_done();
            }
        } else if self.stage == Stage::Merging {
            self.next_merge();
            if self.merging.is_none() && self.merge_queue.is_empty() {
                self.land();
            }
        }
    }

    fn next_merge(&mut self) {
        if self.merging.is_some() {
            return;
        }
        while let Some(name) = self.merge_queue.pop_front() {
            if self.status(&name) != DomainStatus::Succeeded {
                continue;
            }
            if self.final_merges {
                let blocked = self
                    .record
                    .plan
                    .domain(&name)
                    .into_iter()
                    .flat_map(|d| d.depends_on.iter())
                    .find(|p| self.status(p) != DomainStatus::Merged)
                    .cloned();
                if let Some(p) = blocked {
                    self.emit(FarmEvent::DomainSkipped {
                        domain: name.clone(),
                        reason: format!("not merged: dependency `{p}` is not merged"),
                    });
                    continue;
                }
            }
            let head = self.record.domain(&name).and_then(|d| d.head.clone());
            match head {
                None => {
                    // Nothing was committed: merged trivially.
                    self.emit(FarmEvent::Merged {
                        domain: name.clone(),
                        commit: None,
                    });
                    self.after_merge(&name);
                }
                Some(head) => {
                    self.merging = Some(name.clone());
                    self.act(Action::Merge { domain: name, head });
                    return;
                }
            }
        }
    }

    fn on_start_computed(&mut self, domain: String, result: Result<String, String>) {
        if self.active.get(&domain) != Some(&Active::Starting) {
            return;
        }
        match result {
            Ok(start) if self.cancel.is_none() => {
                let resume = self
                    .record
                    .domain(&domain)
                    .is_some_and(|d| d.start_commit.is_some());
                self.emit(FarmEvent::DomainPreparing {
                    domain: domain.clone(),
                    start_commit: start.clone(),
                });
                let skip_setup = self.record.domain(&domain).is_some_and(|d| d.after_agent);
                self.active.insert(domain.clone(), Active::Preparing);
                self.act(Action::Prepare {
                    domain,
                    start,
                    skip_setup,
                    resume,
                });
            }
            // Cancelled meanwhile: it never started; accounted for with the other pending ones.
            Ok(_) => {
                self.active.remove(&domain);
            }
            Err(reason) => {
                self.active.remove(&domain);
                self.emit(FarmEvent::DomainSkipped {
                    domain: domain.clone(),
                    reason,
                });
                self.skip_dependents(&domain);
            }
        }
        self.pump();
    }

    // ---- a domain's pipeline -----------------------------------------------------------

    fn on_domain(&mut self, domain: String, msg: DomainMsg) {
        match msg {
            DomainMsg::Observed(ev) => {
                let derived = self.ownership_signals(&ev);
                self.emit(ev);
                for ev in derived {
                    self.emit(ev);
                }
            }
            DomainMsg::Prepared(result) => {
                if self.active.get(&domain) != Some(&Active::Preparing) {
                    return;
                }
                match result {
                    Err((status, reason)) => self.finish_domain(&domain, status, Some(reason)),
                    Ok(()) => {
                        let agent_done = self.record.domain(&domain).is_some_and(|d| d.after_agent);
                        if agent_done {
                            self.conclude(&domain, AttemptEnd::Exited { code: 0 }, 0);
                        } else if let Some(c) = self.cancel.clone() {
                            self.conclude(
                                &domain,
                                AttemptEnd::Cancelled {
                                    reason: c.reason.clone(),
                                },
                                0,
                            );
                        } else {
                            let attempt = self.next_attempt_number(&domain);
                            self.start_attempt(&domain, attempt, 0);
                        }
                    }
                }
            }
            DomainMsg::AttemptDone {
                attempt,
                end,
                refused,
                commit_error,
            } => {
                let Some(Active::Attempt { refused: r0, .. }) = self.active.get(&domain).cloned()
                else {
                    return;
                };
                let refused = r0 + refused;
                if let Some(e) = commit_error {
                    // The worktree keeps the uncommitted work; cleanup will not remove a dirty one.
                    let wt = self
                        .record
                        .domain(&domain)
                        .map(|d| d.worktree.display().to_string())
                        .unwrap_or_default();
                    self.finish_domain(
                        &domain,
                        DomainStatus::Failed,
                        Some(format!(
                            "commit failed: {e}; the work is left uncommitted in {wt}"
                        )),
                    );
                    return;
                }
                let first = self
                    .first_attempt_of
                    .get(&domain)
                    .copied()
                    .unwrap_or(attempt);
                let cancelled = self.cancel.is_some() || self.live.stopped.contains(&domain);
                match self.retry.next(attempt, first, &end).filter(|_| !cancelled) {
                    Some(delay) => {
                        self.emit(FarmEvent::AgentRetrying {
                            domain: domain.clone(),
                            next_attempt: attempt + 1,
                            delay_ms: delay.as_millis() as u64,
                        });
                        self.active.insert(
                            domain.clone(),
                            Active::Waiting {
                                attempt: attempt + 1,
                                refused,
                            },
                        );
                        self.act(Action::SetTimer {
                            timer: Timer::Retry {
                                domain,
                                attempt: attempt + 1,
                            },
                            after: delay,
                        });
                    }
                    None => self.conclude(&domain, end, refused),
                }
            }
            DomainMsg::Concluded {
                status,
                reason,
                head,
                files,
                insertions,
                deletions,
            } => {
                if self.active.get(&domain) != Some(&Active::Concluding) {
                    return;
                }
                self.domain_finished(
                    &domain,
                    FarmEvent::DomainFinished {
                        domain: domain.clone(),
                        status,
                        reason,
                        head,
                        files,
                        insertions,
                        deletions,
                    },
                );
            }
            DomainMsg::Died(e) => {
                if self.active.contains_key(&domain) {
                    self.finish_domain(
                        &domain,
                        DomainStatus::Failed,
                        Some(format!("internal error: the domain's task failed: {e}")),
                    );
                }
            }
            DomainMsg::Guard { active, reason } => {
                if !active && !self.live.guard_reported {
                    self.live.guard_reported = true;
                    self.emit(FarmEvent::Warning {
                        domain: Some(domain),
                        message: format!(
                            "the write guard is not available ({}); writes outside the worktrees are not blocked, only the audits can find them (said once per run)",
                            reason.as_deref().unwrap_or("unknown reason")
                        ),
                    });
                }
            }
            DomainMsg::Blocked {
                attempt: _,
                pid,
                command,
                op,
                path,
                owner,
                outside,
            } => {
                let stop = self.record.plan.ownership.stop_on_violation;
                let stopping = stop && self.live.stopped.insert(domain.clone());
                self.emit(FarmEvent::OwnershipViolation {
                    domain: domain.clone(),
                    violation: Violation {
                        path: path.clone(),
                        owner,
                        change: format!("{op} by `{command}` (pid {pid})"),
                        detected: Detected::Guard,
                        action: if stopping {
                            "blocked; stopped"
                        } else {
                            "blocked"
                        }
                        .into(),
                        outside: Some(outside.clone()),
                    },
                });
                if stopping {
                    self.act(Action::Cancel {
                        domain: Some(domain),
                        cancel: Cancel {
                            reason: format!(
                                "stopped at its first write outside its worktree ({path}, in {outside})"
                            ),
                            immediate: false,
                            interrupt: false,
                        },
                    });
                }
            }
        }
    }

    fn next_attempt_number(&mut self, domain: &str) -> u32 {
        let n = self
            .record
            .domain(domain)
            .map(|d| d.attempts.iter().map(|a| a.number).max().unwrap_or(0) + 1)
            .unwrap_or(1);
        self.first_attempt_of.entry(domain.to_string()).or_insert(n);
        n
    }

    fn start_attempt(&mut self, domain: &str, attempt: u32, refused: usize) {
        self.active
            .insert(domain.to_string(), Active::Attempt { attempt, refused });
        self.act(Action::Attempt {
            domain: domain.to_string(),
            attempt,
        });
    }

    fn conclude(&mut self, domain: &str, last_end: AttemptEnd, refused: usize) {
        self.active.insert(domain.to_string(), Active::Concluding);
        self.act(Action::Conclude {
            domain: domain.to_string(),
            last_end,
            refused,
        });
    }

    /// The domain ends without its conclusion step (setup failed, commit failed, task died).
    fn finish_domain(&mut self, domain: &str, status: DomainStatus, reason: Option<String>) {
        self.domain_finished(
            domain,
            FarmEvent::DomainFinished {
                domain: domain.to_string(),
                status,
                reason,
                head: None,
                files: Vec::new(),
                insertions: 0,
                deletions: 0,
            },
        );
    }

    fn domain_finished(&mut self, domain: &str, ev: FarmEvent) {
        self.active.remove(domain);
        self.emit(ev);
        self.act(Action::Unwatch {
            domain: domain.to_string(),
        });
        let status = self.status(domain);
        if status == DomainStatus::Succeeded && !self.record.options.no_merge {
            self.merge_queue.push_back(domain.to_string());
        } else if status.is_failure() {
            self.failed(domain);
        }
        self.pump();
    }

    /// A domain failed or conflicted: its dependents cannot run; with fail-fast nothing else runs.
    fn failed(&mut self, name: &str) {
        self.skip_dependents(name);
        let status = self.status(name);
        if self.record.options.fail_fast && status != DomainStatus::Cancelled {
            self.cancel_run(format!("fail-fast: domain `{name}` {status}"), false);
        }
    }

    fn skip_dependents(&mut self, failed: &str) {
        let status = self.status(failed);
        for dep in schedule::dependents_of(&self.record.plan.domains, failed) {
            if self.status(&dep) == DomainStatus::Pending && !self.active.contains_key(&dep) {
                self.emit(FarmEvent::DomainSkipped {
                    domain: dep,
                    reason: format!("dependency `{failed}` {status}"),
                });
            }
        }
    }

    fn on_merged(&mut self, domain: String, result: Result<MergeOutcome, String>) {
        if self.merging.as_deref() != Some(domain.as_str()) {
            return;
        }
        self.merging = None;
        match result {
            Ok(MergeOutcome::Merged(c)) => self.emit(FarmEvent::Merged {
                domain: domain.clone(),
                commit: Some(c.to_string()),
            }),
            Ok(MergeOutcome::UpToDate) => self.emit(FarmEvent::Merged {
                domain: domain.clone(),
                commit: None,
            }),
            Ok(MergeOutcome::Conflict(paths)) => {
                let facts = self.conflict_facts(&paths);
                self.emit(FarmEvent::Conflict {
                    domain: domain.clone(),
                    paths,
                    facts,
                })
            }
            Err(e) => self.emit(FarmEvent::Warning {
                domain: Some(domain.clone()),
                message: format!("merge failed: {e}"),
            }),
        }
        self.after_merge(&domain);
        self.pump();
    }

    fn after_merge(&mut self, domain: &str) {
        if self.status(domain) == DomainStatus::Conflicted {
            self.failed(domain);
        }
    }

    // ---- cancellation, signals, timers ------------------------------------------------

    fn cancel_run(&mut self, reason: String, interrupt: bool) {
        if self.cancel.is_some() && !interrupt {
            return;
        }
        // A second interrupt kills at once.
        let immediate = interrupt && self.interrupted();
        let cancel = Cancel {
            reason: reason.clone(),
            immediate,
            interrupt,
        };
        self.cancel = Some(cancel.clone());
        if interrupt && self.record.interrupted.is_none() {
            self.emit(FarmEvent::Interrupted { reason });
        }
        self.act(Action::Cancel {
            domain: None,
            cancel: cancel.clone(),
        });
        // Domains waiting for their next attempt end now, cancelled.
        let waiting: Vec<(String, usize)> = self
            .active
            .iter()
            .filter_map(|(d, a)| match a {
                Active::Waiting { refused, .. } => Some((d.clone(), *refused)),
                _ => None,
            })
            .collect();
        for (d, refused) in waiting {
            self.conclude(
                &d,
                AttemptEnd::Cancelled {
                    reason: cancel.reason.clone(),
                },
                refused,
            );
        }
    }

    fn on_signal(&mut self, name: String) {
        self.signals += 1;
        let reason = if self.signals == 1 {
            format!("interrupted by {name}")
        } else {
            format!("interrupted by {name} (again)")
        };
        self.cancel_run(reason, true);
        match self.stage {
            // Waiting for another run's landing lock: stop waiting.
            Stage::WaitingForLandLock => self.cleanup(),
            Stage::Running => self.pump(),
            _ => {}
        }
    }

    fn on_timer(&mut self, t: Timer) {
        match t {
            Timer::Deadline => {
                if !matches!(self.stage, Stage::Running | Stage::Recovering) {
                    return;
                }
                let reason = format!(
                    "run deadline of {} reached",
                    humantime::format_duration(Duration::from_millis(
                        self.record.options.deadline_ms.unwrap_or(0)
                    ))
                );
                self.emit(FarmEvent::Warning {
                    domain: None,
                    message: reason.clone(),
                });
                self.cancel_run(reason, false);
                self.pump();
            }
            Timer::Retry { domain, attempt } => {
                if let Some(Active::Waiting {
                    attempt: a,
                    refused,
                }) = self.active.get(&domain).cloned()
                    && a == attempt
                {
                    self.start_attempt(&domain, attempt, refused);
                }
            }
        }
    }

    // ---- after the agents: merge, verify, land, clean ---------------------------------

    fn agents_done(&mut self) {
        // Whatever could not start is accounted for.
        let reason = self.cancel.as_ref().map(|c| c.reason.clone());
        let pending: Vec<String> = self
            .record
            .plan
            .domains
            .iter()
            .filter(|d| self.status(&d.name) == DomainStatus::Pending)
            .map(|d| d.name.clone())
            .collect();
        for name in pending {
            match &reason {
                Some(r) => self.emit(FarmEvent::DomainFinished {
                    domain: name,
                    status: DomainStatus::Cancelled,
                    reason: Some(format!("not started: {r}")),
                    head: None,
                    files: Vec::new(),
                    insertions: 0,
                    deletions: 0,
                }),
                None => self.emit(FarmEvent::DomainSkipped {
                    domain: name,
                    reason: "a dependency was not merged".into(),
                }),
            }
        }
        if self.interrupted() {
            self.cleanup_with(true);
        } else if self.record.options.no_merge {
            self.cleanup();
        } else {
            self.after_agents();
        }
    }

    /// Merge every succeeded, unmerged domain, in merge order; then land.
    fn after_agents(&mut self) {
        if self.interrupted() {
            return self.cleanup();
        }
        self.emit(FarmEvent::Phase {
            phase: Phase::Merging,
        });
        let candidates: Vec<(String, String)> = schedule::merge_order(&self.record.plan.domains)
            .into_iter()
            .filter_map(|n| {
                let d = self.record.domain(&n)?;
                (d.status == DomainStatus::Succeeded)
                    .then(|| d.head.clone().map(|h| (n, h)))
                    .flatten()
            })
            .collect();
        if candidates.is_empty() {
            self.start_final_merges();
        } else {
            self.stage = Stage::Predicting;
            self.act(Action::PredictConflicts { candidates });
        }
    }

    fn on_predicted(&mut self, r: Result<Vec<(String, String, Vec<String>)>, String>) {
        if self.stage != Stage::Predicting {
            return;
        }
        match r {
            Ok(found) => {
                for (domain, with, paths) in found {
                    let facts = self.conflict_facts(&paths);
                    self.emit(FarmEvent::ConflictPredicted {
                        domain,
                        with,
                        paths,
                        facts,
                    });
                }
            }
            Err(e) => self.emit(FarmEvent::Warning {
                domain: None,
                message: format!("conflict prediction failed: {e}"),
            }),
        }
        self.start_final_merges();
    }

    fn start_final_merges(&mut self) {
        self.stage = Stage::Merging;
        self.final_merges = true;
        self.merge_queue = schedule::merge_order(&self.record.plan.domains)
            .into_iter()
            .filter(|n| self.status(n) == DomainStatus::Succeeded)
            .collect();
        self.pump();
    }

    fn land(&mut self) {
        if self.interrupted() {
            return self.cleanup();
        }
        self.stage = Stage::WaitingForLandLock;
        self.act(Action::TakeLandLock);
    }

    fn not_landed(&mut self, reason: String, with_command: bool) {
        let (into, integration) = (
            self.record.into.clone(),
            self.record.integration_branch.clone(),
        );
        self.emit(FarmEvent::NotLanded {
            into: into.clone(),
            reason,
            command: with_command.then(|| format!("git switch {into} && git merge {integration}")),
        });
    }

    fn on_land_lock(&mut self, r: Result<(), String>) {
        if self.stage != Stage::WaitingForLandLock {
            return;
        }
        match r {
            Ok(()) => {
                self.stage = Stage::PlanningLanding;
                self.act(Action::PlanLanding);
            }
            Err(e) => {
                self.not_landed(format!("cannot take the landing lock: {e}"), false);
                self.cleanup();
            }
        }
    }

    fn on_landing_planned(&mut self, r: Result<Option<(String, LandPlan)>, String>) {
        if self.stage != Stage::PlanningLanding {
            return;
        }
        let into = self.record.into.clone();
        match r {
            // No domain changed anything: there is nothing to verify or land.
            Ok(None) => self.cleanup(),
            Err(e) => {
                self.not_landed(format!("landing failed: {e}"), true);
                self.cleanup();
            }
            Ok(Some((tip, LandPlan::UpToDate))) => {
                self.emit(FarmEvent::Landed {
                    into,
                    commit: tip,
                    fast_forward: true,
                });
                self.cleanup();
            }
            Ok(Some((_, LandPlan::Conflict(paths)))) => {
                self.not_landed(
                    format!(
                        "`{into}` moved since the run started and conflicts with the result on {}",
                        summarize(&paths)
                    ),
                    true,
                );
                self.cleanup();
            }
            Ok(Some((
                _,
                LandPlan::Move {
                    old,
                    commit,
                    fast_forward,
                },
            ))) => {
                let (old, new) = (old.map(|o| o.to_string()), commit.to_string());
                if let (Some(was), Some(now)) = (&self.record.into_commit, &old)
                    && was != now
                {
                    self.emit(FarmEvent::Warning {
                        domain: None,
                        message: format!(
                            "`{into}` moved during the run, from {} to {}, and not by agent-farm (the user, or a process outside the write guard); the result is merged on top of it (see `git log {was}..{now}`)",
                            &was[..was.len().min(12)],
                            &now[..now.len().min(12)],
                        ),
                    });
                }
                if self.record.plan.verify.is_some() {
                    self.emit(FarmEvent::VerifyStarted {
                        commit: new.clone(),
                    });
                    self.stage = Stage::Verifying {
                        old,
                        new: new.clone(),
                        fast_forward,
                    };
                    self.act(Action::Verify { commit: new });
                } else {
                    self.land_now(old, new, fast_forward);
                }
            }
        }
    }

    fn on_verified(
        &mut self,
        passed: bool,
        end: AttemptEnd,
        duration_ms: u64,
        log: String,
        setup_error: Option<String>,
    ) {
        let Stage::Verifying {
            old,
            new,
            fast_forward,
        } = self.stage.clone()
        else {
            return;
        };
        self.emit(FarmEvent::VerifyFinished {
            passed,
            end: end.clone(),
            duration_ms,
            log: log.clone(),
        });
        if self.interrupted() {
            return self.cleanup();
        }
        if let Some(e) = setup_error {
            self.not_landed(
                format!("verify did not run: cannot create its worktree: {e}"),
                false,
            );
            return self.cleanup();
        }
        if !passed {
            let cmd = self
                .record
                .plan
                .verify
                .as_ref()
                .map(|v| v.display())
                .unwrap_or_default();
            self.not_landed(
                format!("verify `{cmd}` failed ({}); see {log}", end.describe()),
                false,
            );
            return self.cleanup();
        }
        self.land_now(old, new, fast_forward);
    }

    fn land_now(&mut self, old: Option<String>, new: String, fast_forward: bool) {
        if self.interrupted() {
            return self.cleanup();
        }
        self.emit(FarmEvent::Phase {
            phase: Phase::Landing,
        });
        self.stage = Stage::Landing;
        self.landing = Some((new.clone(), fast_forward));
        self.act(Action::Land {
            old,
            new,
            fast_forward,
        });
    }

    fn on_landed(&mut self, r: Result<LandOutcome, String>) {
        if self.stage != Stage::Landing {
            return;
        }
        let (into, run_id) = (self.record.into.clone(), self.record.run_id.clone());
        let (commit, fast_forward) = self.landing.take().unwrap_or_default();
        match r {
            Ok(LandOutcome::Landed) => self.emit(FarmEvent::Landed {
                into,
                commit,
                fast_forward,
            }),
            Ok(LandOutcome::DirtyCheckout { worktree, paths }) => self.not_landed(
                format!(
                    "`{into}` is checked out at {} with uncommitted changes ({}); left untouched",
                    worktree.display(),
                    summarize(&paths)
                ),
                true,
            ),
            Ok(LandOutcome::CheckoutBlocked { worktree, message }) => self.not_landed(
                format!(
                    "the checkout of `{into}` at {} cannot be updated safely: {message}",
                    worktree.display()
                ),
                true,
            ),
            Ok(LandOutcome::Locked { what }) => self.not_landed(
                format!(
                    "`{into}` is locked by another git process ({what}); nothing was changed; land it with `agent-farm merge {run_id}` once it is done"
                ),
                true,
            ),
            Ok(LandOutcome::Moved) => self.not_landed(
                format!(
                    "`{into}` moved while the result was being verified; land it again with `agent-farm merge {run_id}`"
                ),
                true,
            ),
            Err(e) => self.not_landed(format!("landing failed: {e}"), true),
        }
        self.cleanup();
    }

    fn cleanup(&mut self) {
        let remove = self.interrupted() || !self.keep_worktrees;
        self.cleanup_with(remove);
    }

    fn cleanup_with(&mut self, remove_worktrees: bool) {
        if matches!(self.stage, Stage::Cleaning | Stage::Done) {
            return;
        }
        self.stage = Stage::Cleaning;
        self.emit(FarmEvent::Phase {
            phase: Phase::Cleaning,
        });
        self.act(Action::Cleanup { remove_worktrees });
    }

    // ---- ownership ---------------------------------------------------------------------

    fn ownership_map(&self) -> Option<&OwnershipMap> {
        self.ownership.as_ref()
    }

    /// Ownership facts an agent's own events reveal: a refused edit of another domain's path is
    /// a prevented violation; a tool use naming a path outside the domain is an early warning.
    fn ownership_signals(&self, ev: &FarmEvent) -> Vec<FarmEvent> {
        // Only file tools name paths: a refused Bash command is a refused command (in the
        // report's refusals), never a violation of a "path" that is a command line.
        let (domain, path, detected, action) = match ev {
            FarmEvent::AgentRefused { domain, denial, .. }
                if crate::vocab::is_file_tool(&denial.tool) =>
            {
                (domain, denial.path.clone(), Detected::Prevented, "refused")
            }
            FarmEvent::AgentToolUse {
                domain, tool, path, ..
            } if crate::vocab::is_file_tool(tool) => {
                (domain, path.clone(), Detected::ToolUse, "reported")
            }
            _ => return Vec::new(),
        };
        let (Some(path), Some(map)) = (path, self.ownership_map()) else {
            return Vec::new();
        };
        let class = if path.starts_with('/') {
            PathClass::Unowned
        } else {
            map.classify(domain, &path)
        };
        if !class.is_violation() {
            return Vec::new();
        }
        vec![FarmEvent::OwnershipViolation {
            domain: domain.clone(),
            violation: Violation {
                path,
                owner: class.owner(),
                change: "write".into(),
                detected,
                action: action.into(),
                outside: None,
            },
        }]
    }

    fn on_watch_mode(&mut self, domain: String, mode: Result<crate::watch::Mode, String>) {
        match mode {
            Ok(crate::watch::Mode::Notify) => {}
            Ok(crate::watch::Mode::Poll { reason }) => {
                if !self.live.fallback_reported {
                    self.live.fallback_reported = true;
                    self.emit(FarmEvent::Warning {
                        domain: Some(domain),
                        message: format!(
                            "file notifications unavailable ({reason}); worktrees are polled with git status instead (said once per run)"
                        ),
                    });
                }
            }
            Err(e) => self.emit(FarmEvent::Warning {
                domain: Some(domain),
                message: format!(
                    "not watched live ({e}); the audit before merge still checks every change"
                ),
            }),
        }
    }

    /// Classify a batch of live changes: out-of-domain writes and collisions are reported the
    /// moment they are seen; with `stop_on_violation` the offending agent is stopped.
    fn on_changes(&mut self, batch: Vec<Change>) {
        let stop = self.record.plan.ownership.stop_on_violation;
        for c in batch {
            if c.kind == ChangeKind::Overflow {
                self.emit(FarmEvent::Warning {
                    domain: Some(c.domain),
                    message: "too many changes at once to follow live; the audit before merge checks them all".into(),
                });
                continue;
            }
            // Only what happens while an agent runs is the agent's doing: not setup before it,
            // nor commits, reverts or verify after it.
            let during_agent = self
                .record
                .domain(&c.domain)
                .and_then(|d| d.attempts.last())
                .is_some_and(|a| {
                    a.started_ms <= c.at_ms && a.ended_ms.is_none_or(|e| c.at_ms <= e)
                });
            if !during_agent {
                continue;
            }
            let Some(map) = self.ownership_map() else {
                return;
            };
            let class = map.classify(&c.domain, &c.path);
            if class == PathClass::Ignored {
                continue;
            }
            let touched = self.live.touched.entry(c.path.clone()).or_default();
            if touched.insert(c.domain.clone()) && touched.len() > 1 {
                let domains: Vec<String> = touched.iter().cloned().collect();
                self.emit(FarmEvent::Collision {
                    path: c.path.clone(),
                    domains,
                });
            }
            if !class.is_violation() {
                continue;
            }
            let change = match &c.kind {
                ChangeKind::Created => "created".to_string(),
                ChangeKind::Modified => "modified".to_string(),
                ChangeKind::Removed => "deleted".to_string(),
                ChangeKind::Renamed { from } => format!("renamed from {from}"),
                ChangeKind::Overflow => continue,
            };
            let stopping = stop && self.live.stopped.insert(c.domain.clone());
            self.emit(FarmEvent::OwnershipViolation {
                domain: c.domain.clone(),
                violation: Violation {
                    path: c.path.clone(),
                    owner: class.owner(),
                    change,
                    detected: Detected::Live,
                    action: if stopping { "stopped" } else { "reported" }.into(),
                    outside: None,
                },
            });
            if stopping {
                let owner = class
                    .owner()
                    .map(|o| format!("owned by {o}"))
                    .unwrap_or_else(|| "owned by no domain".into());
                self.act(Action::Cancel {
                    domain: Some(c.domain.clone()),
                    cancel: Cancel {
                        reason: format!(
                            "stopped at its first ownership violation ({} {owner})",
                            c.path
                        ),
                        immediate: false,
                        interrupt: false,
                    },
                });
            }
        }
    }

    /// For each conflicting path: who owns it and which domains of this run changed it.
    fn conflict_facts(&self, paths: &[String]) -> Vec<String> {
        let Some(map) = self.ownership_map() else {
            return Vec::new();
        };
        paths
            .iter()
            .map(|p| {
                let by: Vec<String> = self
                    .record
                    .domains
                    .values()
                    .filter(|d| d.files.contains(p))
                    .map(|d| d.name.clone())
                    .collect();
                let owner = match map.classify("", p) {
                    PathClass::Other { owners } => format!("owned by {}", owners.join(", ")),
                    PathClass::Shared => "shared".to_string(),
                    PathClass::Ignored => "ignored for ownership".to_string(),
                    _ => "owned by no domain".to_string(),
                };
                let by = if by.is_empty() {
                    "changed on the integration branch".to_string()
                } else {
                    format!("changed by {}", by.join(" and "))
                };
                format!("{p}: {owner}; {by}")
            })
            .collect()
    }
}

fn summarize(paths: &[String]) -> String {
    let mut s = paths.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if paths.len() > 5 {
        s.push_str(&format!(" and {} more", paths.len() - 5));
    }
    s
}

#[cfg(test)]
mod tests {
    //! The dispatcher's decisions, with no process, no repository and no disk: feed inputs,
    //! look at the actions.
    use super::*;
    use crate::record::RunOptions;
    use crate::runner::stream::FailureKind as AgentFailure;

    fn plan(domains: &str, extra: &str) -> crate::plan::Plan {
        let text = format!(
            "version: 1\nagent:\n  preset: sim\n  retries: 2\n  retry_backoff: 1s\n  rate_limit_backoff: 1m\n{extra}domains:\n{domains}"
        );
        crate::plan::parse(std::path::Path::new("farm.yaml"), &text, |_| {
            Ok(String::new())
        })
        .unwrap()
    }

    fn dom(name: &str, extra: &str) -> String {
        let mut s = format!("  - name: {name}\n    owns: [\"{name}/**\"]\n    prompt: do {name}\n");
        for l in extra.lines() {
            s.push_str(&format!("    {l}\n"));
        }
        s
    }

    fn options(jobs: usize) -> RunOptions {
        RunOptions {
            jobs,
            fail_fast: false,
            keep_worktrees: false,
            no_merge: false,
            deadline_ms: None,
            retries: None,
        }
    }

    fn dispatcher(domains: &[String], extra: &str, opts: RunOptions, mode: Mode) -> Dispatcher {
        let plan = plan(&domains.concat(), extra);
        let retry = RetryPolicy {
            retries: plan.agent.retries,
            backoff: plan.agent.retry_backoff,
            rate_limit_backoff: plan.agent.rate_limit_backoff,
            max_delay: Duration::from_secs(3600),
        };
        let rec = RunRecord::new(
            "r1".into(),
            "/nonexistent/repo".into(),
            "/nonexistent/repo/.git".into(),
            plan,
            "main".into(),
            "b".repeat(40),
            "main".into(),
            "/nonexistent/wt".into(),
            opts,
        );
        Dispatcher::new(rec, mode, retry, false)
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn starts(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::ComputeStart { domain } => Some(domain.clone()),
                _ => None,
            })
            .collect()
    }

    fn events(actions: &[Action]) -> Vec<&FarmEvent> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Emit(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn has<F: Fn(&Action) -> bool>(actions: &[Action], f: F) -> bool {
        actions.iter().any(f)
    }

    struct T {
        d: Dispatcher,
        now: u64,
    }

    impl T {
        fn new(d: Dispatcher) -> T {
            T { d, now: 1000 }
        }
        fn input(&mut self, i: Input) -> Vec<Action> {
            self.now += 10;
            self.d.handle(self.now, i)
        }
        fn msg(&mut self, domain: &str, msg: DomainMsg) -> Vec<Action> {
            self.input(Input::Domain {
                domain: domain.into(),
                msg,
            })
        }
        /// Start point computed, worktree prepared: the first attempt starts.
        fn launch(&mut self, domain: &str) -> Vec<Action> {
            let a = self.input(Input::StartComputed {
                domain: domain.into(),
                result: Ok(A.into()),
            });
            assert!(has(
                &a,
                |x| matches!(x, Action::Prepare { domain: d, .. } if d == domain)
            ));
            let a = self.msg(domain, DomainMsg::Prepared(Ok(())));
            assert!(
                has(
                    &a,
                    |x| matches!(x, Action::Attempt { domain: d, .. } if d == domain)
                ),
                "{a:?}"
            );
            a
        }
        fn attempt(&mut self, domain: &str, n: u32, end: AttemptEnd) -> Vec<Action> {
            self.msg(
                domain,
                DomainMsg::Observed(FarmEvent::AgentStarted {
                    domain: domain.into(),
                    attempt: n,
                    pid: 1,
                    spawned_ms: self.now,
                }),
            );
            self.msg(
                domain,
                DomainMsg::AttemptDone {
                    attempt: n,
                    end,
                    refused: 0,
                    commit_error: None,
                },
            )
        }
        fn concluded(&mut self, domain: &str, status: DomainStatus) -> Vec<Action> {
            self.msg(
                domain,
                DomainMsg::Concluded {
                    status,
                    reason: None,
                    head: Some(A.into()),
                    files: vec![format!("{domain}/x")],
                    insertions: 1,
                    deletions: 0,
                },
            )
        }
        /// One domain, start to merged.
        fn succeed(&mut self, domain: &str) -> Vec<Action> {
            self.launch(domain);
            let a = self.attempt(domain, 1, AttemptEnd::Exited { code: 0 });
            assert!(has(&a, |x| matches!(x, Action::Conclude { .. })), "{a:?}");
            let a = self.concluded(domain, DomainStatus::Succeeded);
            assert!(
                has(
                    &a,
                    |x| matches!(x, Action::Merge { domain: d, .. } if d == domain)
                ),
                "{a:?}"
            );
            self.input(Input::MergeDone {
                domain: domain.into(),
                result: Ok(MergeOutcome::Merged(A.parse().unwrap())),
            })
        }
        fn status(&self, d: &str) -> DomainStatus {
            self.d.record().domain(d).unwrap().status
        }
    }

    #[test]
    fn starts_follow_dependencies_priority_and_the_longest_chain() {
        let domains = [
            dom("docs", ""),
            dom("db", ""),
            dom("api", "depends_on: [db]"),
            dom("ui", "priority: 10"),
        ];
        let mut t = T::new(dispatcher(&domains, "", options(1), Mode::Run));
        let a = t.input(Input::Begin);
        // One slot: the highest priority first (then the head of the longest chain).
        assert_eq!(starts(&a), vec!["ui"]);
        let a = t.succeed("ui");
        assert_eq!(
            starts(&a),
            vec!["db"],
            "db heads the longest chain (db → api)"
        );
        let a = t.succeed("db");
        // api is ready once db is merged; it ties with docs (same priority, same chain), and
        // the plan's order breaks the tie.
        assert_eq!(starts(&a), vec!["docs"]);
        let a = t.succeed("docs");
        assert_eq!(starts(&a), vec!["api"]);
        let a = t.succeed("api");
        // Everything merged as it finished: straight to landing.
        assert!(has(&a, |x| matches!(x, Action::TakeLandLock)), "{a:?}");
    }

    #[test]
    fn the_concurrency_limit_is_kept_and_a_freed_slot_is_filled() {
        let domains: Vec<String> = (0..5).map(|i| dom(&format!("d{i}"), "")).collect();
        let mut t = T::new(dispatcher(&domains, "", options(2), Mode::Run));
        let a = t.input(Input::Begin);
        assert_eq!(starts(&a).len(), 2);
        let first = starts(&a)[0].clone();
        let a = t.succeed(&first);
        assert_eq!(starts(&a).len(), 1, "one slot freed, one domain started");
    }

    #[test]
    fn a_dependent_does_not_start_before_its_dependency_is_merged() {
        let domains = [dom("db", ""), dom("api", "depends_on: [db]")];
        let mut t = T::new(dispatcher(&domains, "", options(4), Mode::Run));
        assert_eq!(starts(&t.input(Input::Begin)), vec!["db"]);
        t.launch("db");
        t.attempt("db", 1, AttemptEnd::Exited { code: 0 });
        let a = t.concluded("db", DomainStatus::Succeeded);
        assert!(starts(&a).is_empty(), "api waits for the merge: {a:?}");
        let a = t.input(Input::MergeDone {
            domain: "db".into(),
            result: Ok(MergeOutcome::Merged(A.parse().unwrap())),
        });
        assert_eq!(starts(&a), vec!["api"]);
    }

    #[test]
    fn a_failed_attempt_is_retried_after_its_backoff() {
        let mut t = T::new(dispatcher(&[dom("a", "")], "", options(1), Mode::Run));
        t.input(Input::Begin);
        t.launch("a");
        let a = t.attempt("a", 1, AttemptEnd::Exited { code: 1 });
        assert!(
            has(
                &a,
                |x| matches!(x, Action::SetTimer { timer: Timer::Retry { attempt: 2, .. }, after } if *after == Duration::from_secs(1))
            ),
            "{a:?}"
        );
        assert!(events(&a).iter().any(|e| matches!(
            e,
            FarmEvent::AgentRetrying {
                next_attempt: 2,
                delay_ms: 1000,
                ..
            }
        )));
        let a = t.input(Input::Timer(Timer::Retry {
            domain: "a".into(),
            attempt: 2,
        }));
        assert_eq!(
            a,
            vec![Action::Attempt {
                domain: "a".into(),
                attempt: 2
            }]
        );
        // The second retry waits twice as long; after the last one the domain concludes.
        let a = t.attempt("a", 2, AttemptEnd::TimedOut);
        assert!(has(
            &a,
            |x| matches!(x, Action::SetTimer { after, .. } if *after == Duration::from_secs(2))
        ));
        t.input(Input::Timer(Timer::Retry {
            domain: "a".into(),
            attempt: 3,
        }));
        let a = t.attempt("a", 3, AttemptEnd::Exited { code: 1 });
        assert!(
            has(&a, |x| matches!(
                x,
                Action::Conclude {
                    last_end: AttemptEnd::Exited { code: 1 },
                    ..
                }
            )),
            "{a:?}"
        );
    }

    #[test]
    fn the_retry_policy_knows_which_failures_to_retry_and_how_long_to_wait() {
        let p = RetryPolicy {
            retries: 3,
            backoff: Duration::from_secs(5),
            rate_limit_backoff: Duration::from_secs(60),
            max_delay: Duration::from_secs(100),
        };
        let failed = |failure| AttemptEnd::AgentFailed {
            failure,
            code: Some(1),
            message: "x".into(),
        };
        assert_eq!(p.next(1, 1, &AttemptEnd::Exited { code: 0 }), None);
        assert_eq!(
            p.next(1, 1, &AttemptEnd::Exited { code: 2 }),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            p.next(2, 1, &failed(AgentFailure::RateLimit)),
            Some(Duration::from_secs(100)),
            "capped"
        );
        assert_eq!(p.next(1, 1, &failed(AgentFailure::Auth)), None);
        assert_eq!(
            p.next(1, 1, &AttemptEnd::Cancelled { reason: "x".into() }),
            None
        );
        assert_eq!(p.next(4, 1, &AttemptEnd::TimedOut), None, "out of retries");
        // Attempts of an earlier run (resume) do not count against this run's retries.
        assert!(p.next(4, 3, &AttemptEnd::TimedOut).is_some());
    }

    #[test]
    fn fail_fast_cancels_the_run_and_ends_a_domain_waiting_to_retry() {
        let mut opts = options(3);
        opts.fail_fast = true;
        let domains = [
            dom("a", ""),
            dom("b", ""),
            dom("c", ""),
            dom("d", "depends_on: [c]"),
        ];
        let mut t = T::new(dispatcher(&domains, "", opts, Mode::Run));
        t.input(Input::Begin);
        t.launch("a");
        t.launch("b");
        // b fails once and waits for its retry.
        t.attempt("b", 1, AttemptEnd::Exited { code: 1 });
        t.launch("c");
        t.attempt("a", 1, AttemptEnd::Exited { code: 1 });
        t.input(Input::Timer(Timer::Retry {
            domain: "a".into(),
            attempt: 2,
        }));
        let a = t.attempt("a", 2, AttemptEnd::Exited { code: 1 });
        t.input(Input::Timer(Timer::Retry {
            domain: "a".into(),
            attempt: 3,
        }));
        let a2 = t.attempt("a", 3, AttemptEnd::Exited { code: 1 });
        assert!(
            has(&a2, |x| matches!(x, Action::Conclude { .. })),
            "{a:?} {a2:?}"
        );
        let a = t.concluded("a", DomainStatus::Failed);
        assert!(
            has(
                &a,
                |x| matches!(x, Action::Cancel { domain: None, cancel } if cancel.reason.contains("fail-fast") && !cancel.interrupt)
            ),
            "{a:?}"
        );
        // b was waiting for its retry: it concludes as cancelled at once, no new attempt.
        assert!(
            has(
                &a,
                |x| matches!(x, Action::Conclude { domain, last_end: AttemptEnd::Cancelled { .. }, .. } if domain == "b")
            ),
            "{a:?}"
        );
        let a = t.input(Input::Timer(Timer::Retry {
            domain: "b".into(),
            attempt: 2,
        }));
        assert!(a.is_empty(), "a stale retry timer does nothing: {a:?}");
        assert!(starts(&a).is_empty());
    }

    #[test]
    fn the_deadline_cancels_and_what_never_started_is_accounted_for() {
        let mut opts = options(1);
        opts.deadline_ms = Some(60_000);
        let domains = [dom("a", ""), dom("b", "")];
        let mut t = T::new(dispatcher(&domains, "", opts, Mode::Run));
        let a = t.input(Input::Begin);
        assert!(has(
            &a,
            |x| matches!(x, Action::SetTimer { timer: Timer::Deadline, after } if *after == Duration::from_secs(60))
        ));
        t.launch("a");
        let a = t.input(Input::Timer(Timer::Deadline));
        assert!(has(
            &a,
            |x| matches!(x, Action::Cancel { domain: None, cancel } if cancel.reason.contains("deadline"))
        ));
        t.attempt(
            "a",
            1,
            AttemptEnd::Cancelled {
                reason: "deadline".into(),
            },
        );
        let a = t.concluded("a", DomainStatus::Cancelled);
        assert_eq!(
            t.status("b"),
            DomainStatus::Cancelled,
            "never started: {a:?}"
        );
        // What finished is still merged and landed: cancellation is not an interrupt.
        assert!(
            has(&a, |x| matches!(x, Action::PredictConflicts { .. })
                || matches!(x, Action::TakeLandLock)),
            "{a:?}"
        );
    }

    #[test]
    fn a_first_signal_stops_gracefully_a_second_at_once_and_nothing_lands() {
        let domains = [dom("a", ""), dom("b", "")];
        let mut t = T::new(dispatcher(&domains, "", options(1), Mode::Run));
        t.input(Input::Begin);
        t.launch("a");
        let a = t.input(Input::Signal {
            name: "SIGINT".into(),
        });
        assert!(has(
            &a,
            |x| matches!(x, Action::Cancel { domain: None, cancel } if cancel.interrupt && !cancel.immediate)
        ));
        assert!(
            events(&a)
                .iter()
                .any(|e| matches!(e, FarmEvent::Interrupted { .. }))
        );
        let a = t.input(Input::Signal {
            name: "SIGINT".into(),
        });
        assert!(
            has(
                &a,
                |x| matches!(x, Action::Cancel { cancel, .. } if cancel.immediate)
            ),
            "{a:?}"
        );
        t.attempt("a", 1, AttemptEnd::Cancelled { reason: "i".into() });
        let a = t.concluded("a", DomainStatus::Cancelled);
        assert!(
            has(&a, |x| matches!(
                x,
                Action::Cleanup {
                    remove_worktrees: true
                }
            )),
            "straight to cleanup, worktrees removed, nothing merged: {a:?}"
        );
        assert!(!has(&a, |x| matches!(
            x,
            Action::Merge { .. } | Action::TakeLandLock
        )));
        let a = t.input(Input::Cleaned(vec![]));
        assert_eq!(a, vec![Action::Finish]);
        assert!(t.d.done());
    }

    #[test]
    fn merges_happen_one_at_a_time_in_merge_order() {
        let mut opts = options(3);
        opts.no_merge = false;
        let domains = [dom("a", ""), dom("b", ""), dom("c", "")];
        let mut t = T::new(dispatcher(&domains, "", opts, Mode::Run));
        t.input(Input::Begin);
        for d in ["a", "b", "c"] {
            t.launch(d);
        }
        for d in ["c", "a"] {
            t.attempt(d, 1, AttemptEnd::Exited { code: 0 });
        }
        let a = t.concluded("c", DomainStatus::Succeeded);
        assert!(has(
            &a,
            |x| matches!(x, Action::Merge { domain, .. } if domain == "c")
        ));
        let a = t.concluded("a", DomainStatus::Succeeded);
        assert!(
            !has(&a, |x| matches!(x, Action::Merge { .. })),
            "c's merge is in flight: {a:?}"
        );
        let a = t.input(Input::MergeDone {
            domain: "c".into(),
            result: Ok(MergeOutcome::UpToDate),
        });
        assert!(
            has(
                &a,
                |x| matches!(x, Action::Merge { domain, .. } if domain == "a")
            ),
            "{a:?}"
        );
    }

    #[test]
    fn what_follows_each_kind_of_effect_failure() {
        // The start point cannot be computed: skipped, with its dependents.
        let domains = [dom("a", ""), dom("b", "depends_on: [a]")];
        let mut t = T::new(dispatcher(&domains, "", options(2), Mode::Run));
        t.input(Input::Begin);
        t.input(Input::StartComputed {
            domain: "a".into(),
            result: Err("integration branch is missing".into()),
        });
        assert_eq!(t.status("a"), DomainStatus::Skipped);
        assert_eq!(t.status("b"), DomainStatus::Skipped);

        // Preparing failed (worktree, setup): the domain fails, no attempt starts.
        let mut t = T::new(dispatcher(&[dom("a", "")], "", options(1), Mode::Run));
        t.input(Input::Begin);
        t.input(Input::StartComputed {
            domain: "a".into(),
            result: Ok(A.into()),
        });
        let a = t.msg(
            "a",
            DomainMsg::Prepared(Err((DomainStatus::Failed, "worktree: boom".into()))),
        );
        assert!(!has(&a, |x| matches!(x, Action::Attempt { .. })));
        assert_eq!(t.status("a"), DomainStatus::Failed);

        // The commit after an attempt failed: the domain fails, the work stays in the worktree.
        let mut t = T::new(dispatcher(&[dom("a", "")], "", options(1), Mode::Run));
        t.input(Input::Begin);
        t.launch("a");
        t.msg(
            "a",
            DomainMsg::AttemptDone {
                attempt: 1,
                end: AttemptEnd::Exited { code: 0 },
                refused: 0,
                commit_error: Some("index locked".into()),
            },
        );
        assert_eq!(t.status("a"), DomainStatus::Failed);
        let reason = t.d.record().domain("a").unwrap().reason.clone().unwrap();
        assert!(reason.contains("commit failed: index locked"), "{reason}");

        // A domain task that died: failed, and the run goes on.
        let mut t = T::new(dispatcher(&[dom("a", "")], "", options(1), Mode::Run));
        t.input(Input::Begin);
        t.launch("a");
        t.msg("a", DomainMsg::Died("panic".into()));
        assert_eq!(t.status("a"), DomainStatus::Failed);

        // A merge error: a warning, the domain stays succeeded (not merged), and the run lands
        // what was merged.
        let domains = [dom("a", ""), dom("b", "depends_on: [a]")];
        let mut t = T::new(dispatcher(&domains, "", options(2), Mode::Run));
        t.input(Input::Begin);
        t.launch("a");
        t.attempt("a", 1, AttemptEnd::Exited { code: 0 });
        t.concluded("a", DomainStatus::Succeeded);
        let a = t.input(Input::MergeDone {
            domain: "a".into(),
            result: Err("cannot lock ref".into()),
        });
        assert_eq!(t.status("a"), DomainStatus::Succeeded);
        assert!(events(&a).iter().any(
            |e| matches!(e, FarmEvent::Warning { message, .. } if message.contains("merge failed"))
        ));

        // A conflict: the domain is conflicted and its dependents are skipped.
        let domains = [dom("a", ""), dom("b", "depends_on: [a]")];
        let mut t = T::new(dispatcher(&domains, "", options(2), Mode::Run));
        t.input(Input::Begin);
        t.launch("a");
        t.attempt("a", 1, AttemptEnd::Exited { code: 0 });
        t.concluded("a", DomainStatus::Succeeded);
        t.input(Input::MergeDone {
            domain: "a".into(),
            result: Ok(MergeOutcome::Conflict(vec!["x".into()])),
        });
        assert_eq!(t.status("a"), DomainStatus::Conflicted);
        assert_eq!(t.status("b"), DomainStatus::Skipped);
    }

    /// Drive a one-domain run to the landing stage.
    fn to_landing(verify: bool) -> T {
        let extra = if verify { "verify: make test\n" } else { "" };
        let mut t = T::new(dispatcher(&[dom("a", "")], extra, options(1), Mode::Run));
        t.input(Input::Begin);
        let a = t.succeed("a");
        assert!(has(&a, |x| matches!(x, Action::TakeLandLock)), "{a:?}");
        let a = t.input(Input::LandLock(Ok(())));
        assert_eq!(a, vec![Action::PlanLanding]);
        t
    }

    fn planned_move(t: &mut T) -> Vec<Action> {
        t.input(Input::LandingPlanned(Ok(Some((
            A.into(),
            LandPlan::Move {
                old: Some("c".repeat(40).parse().unwrap()),
                commit: A.parse().unwrap(),
                fast_forward: true,
            },
        )))))
    }

    #[test]
    fn verify_runs_on_the_commit_that_lands_and_a_failure_lands_nothing() {
        let mut t = to_landing(true);
        let a = planned_move(&mut t);
        assert!(has(
            &a,
            |x| matches!(x, Action::Verify { commit } if commit == A)
        ));
        let a = t.input(Input::Verified {
            passed: false,
            end: AttemptEnd::Exited { code: 2 },
            duration_ms: 5,
            log: "/log".into(),
            setup_error: None,
        });
        assert!(!has(&a, |x| matches!(x, Action::Land { .. })));
        assert!(has(&a, |x| matches!(x, Action::Cleanup { .. })));
        let land = t.d.record().land.clone().unwrap();
        assert!(!land.landed && land.reason.unwrap().contains("verify `make test` failed"));
        assert_eq!(
            crate::report::exit_code(t.d.record()),
            crate::error::exit::VERIFY_FAILED
        );
    }

    #[test]
    fn a_verify_that_could_not_start_is_not_reported_as_failed() {
        let mut t = to_landing(true);
        planned_move(&mut t);
        t.input(Input::Verified {
            passed: false,
            end: AttemptEnd::SpawnFailed {
                message: "x".into(),
            },
            duration_ms: 0,
            log: "/log".into(),
            setup_error: Some("cannot lock ref".into()),
        });
        let reason = t.d.record().land.clone().unwrap().reason.unwrap();
        assert!(reason.contains("verify did not run"), "{reason}");
    }

    #[test]
    fn landing_outcomes_are_reported_and_always_cleaned_up() {
        let mut t = to_landing(false);
        let a = planned_move(&mut t);
        assert!(
            has(
                &a,
                |x| matches!(x, Action::Land { new, fast_forward: true, .. } if new == A)
            ),
            "{a:?}"
        );
        let a = t.input(Input::LandDone(Ok(LandOutcome::Locked {
            what: ".git/refs/heads/main.lock".into(),
        })));
        assert!(has(&a, |x| matches!(
            x,
            Action::Cleanup {
                remove_worktrees: true
            }
        )));
        let land = t.d.record().land.clone().unwrap();
        assert!(
            !land.landed
                && land
                    .reason
                    .unwrap()
                    .contains("locked by another git process")
        );
        assert!(land.command.is_some());

        let mut t = to_landing(false);
        planned_move(&mut t);
        t.input(Input::LandDone(Ok(LandOutcome::Landed)));
        let land = t.d.record().land.clone().unwrap();
        assert!(land.landed && land.commit.as_deref() == Some(A));
        assert_eq!(crate::report::exit_code(t.d.record()), 0);

        // Another run holds the landing lock and it cannot be taken: not landed, cleaned up.
        let mut t = T::new(dispatcher(&[dom("a", "")], "", options(1), Mode::Run));
        t.input(Input::Begin);
        t.succeed("a");
        let a = t.input(Input::LandLock(Err("permission denied".into())));
        assert!(has(&a, |x| matches!(x, Action::Cleanup { .. })));
        assert_eq!(
            crate::report::exit_code(t.d.record()),
            crate::error::exit::NOT_LANDED
        );
    }

    #[test]
    fn an_interrupt_while_waiting_for_the_landing_lock_stops_waiting() {
        let mut t = T::new(dispatcher(&[dom("a", "")], "", options(1), Mode::Run));
        t.input(Input::Begin);
        t.succeed("a");
        let a = t.input(Input::Signal {
            name: "SIGTERM".into(),
        });
        assert!(
            has(&a, |x| matches!(
                x,
                Action::Cleanup {
                    remove_worktrees: true
                }
            )),
            "{a:?}"
        );
        // The lock arriving afterwards changes nothing.
        assert!(t.input(Input::LandLock(Ok(()))).is_empty());
    }

    #[test]
    fn resume_recovers_first_then_runs_what_is_unfinished() {
        let domains = [dom("a", ""), dom("b", "")];
        let mut d = dispatcher(
            &domains,
            "",
            options(2),
            Mode::Resume {
                retry_failed: false,
            },
        );
        // a succeeded and was merged before the crash; b was running.
        d.publish(
            1,
            FarmEvent::DomainPreparing {
                domain: "a".into(),
                start_commit: A.into(),
            },
        );
        d.publish(
            2,
            FarmEvent::Merged {
                domain: "a".into(),
                commit: None,
            },
        );
        d.publish(
            3,
            FarmEvent::DomainPreparing {
                domain: "b".into(),
                start_commit: A.into(),
            },
        );
        let mut t = T::new(d);
        let a = t.input(Input::Begin);
        assert_eq!(
            a,
            vec![Action::Recover {
                reset_blocked: vec![]
            }]
        );
        let a = t.input(Input::Recovered(vec![]));
        assert!(
            events(&a)
                .iter()
                .any(|e| matches!(e, FarmEvent::DomainReset { domain, .. } if domain == "b"))
        );
        assert_eq!(starts(&a), vec!["b"]);
        // It keeps its start point and its branch: the prepare step reuses them.
        let a = t.input(Input::StartComputed {
            domain: "b".into(),
            result: Ok(A.into()),
        });
        assert!(
            has(&a, |x| matches!(x, Action::Prepare { resume: true, .. })),
            "{a:?}"
        );
    }

    #[test]
    fn merge_mode_goes_straight_to_merging() {
        let mut d = dispatcher(&[dom("a", "")], "", options(1), Mode::Merge);
        d.publish(
            1,
            FarmEvent::DomainFinished {
                domain: "a".into(),
                status: DomainStatus::Succeeded,
                reason: None,
                head: Some(A.into()),
                files: vec![],
                insertions: 0,
                deletions: 0,
            },
        );
        let mut t = T::new(d);
        let a = t.input(Input::Begin);
        assert!(
            has(
                &a,
                |x| matches!(x, Action::PredictConflicts { candidates } if candidates.len() == 1)
            ),
            "{a:?}"
        );
        let a = t.input(Input::Predicted(Ok(vec![])));
        assert!(has(
            &a,
            |x| matches!(x, Action::Merge { domain, .. } if domain == "a")
        ));
    }

    #[test]
    fn a_refused_command_is_no_violation_and_a_refused_edit_is_prevented() {
        let domains = [dom("a", ""), dom("b", "")];
        let mut t = T::new(dispatcher(&domains, "", options(2), Mode::Run));
        t.input(Input::Begin);
        t.launch("a");
        let refused = |tool: &str, path: &str| {
            DomainMsg::Observed(FarmEvent::AgentRefused {
                domain: "a".into(),
                attempt: 1,
                denial: crate::vocab::Denial {
                    tool: tool.into(),
                    path: Some(path.into()),
                    message: "denied".into(),
                },
            })
        };
        let a = t.msg("a", refused("Bash", "git push origin HEAD"));
        assert!(
            !events(&a)
                .iter()
                .any(|e| matches!(e, FarmEvent::OwnershipViolation { .. })),
            "{a:?}"
        );
        let a = t.msg("a", refused("Edit", "b/x.rs"));
        assert!(events(&a).iter().any(|e| matches!(
            e,
            FarmEvent::OwnershipViolation { violation, .. }
                if violation.path == "b/x.rs" && violation.detected == Detected::Prevented
                    && violation.owner.as_deref() == Some("b")
        )));
    }

    #[test]
    fn a_pause_stops_everything_once_and_continues_once() {
        let domains = [dom("a", "")];
        let mut t = T::new(dispatcher(&domains, "", options(2), Mode::Run));
        t.input(Input::Begin);
        t.launch("a");
        let paused = |e: &Action| matches!(e, Action::Emit(FarmEvent::Paused { .. }));
        let a = t.input(Input::Suspend);
        assert!(
            a.iter().any(paused) && a.contains(&Action::Suspend),
            "{a:?}"
        );
        assert!(t.input(Input::Suspend).is_empty(), "already paused");
        let a = t.input(Input::Continue { paused_ms: 1500 });
        assert!(a.contains(&Action::Continue), "{a:?}");
        assert!(a.contains(&Action::Emit(FarmEvent::Continued { paused_ms: 1500 })));
        assert!(
            t.input(Input::Continue { paused_ms: 1 }).is_empty(),
            "not paused"
        );
        assert_eq!(t.d.record().paused_ms, 1500);
    }

    #[test]
    fn a_live_violation_with_stop_on_violation_stops_only_that_domain() {
        let extra = "ownership:\n  stop_on_violation: true\n";
        let domains = [dom("a", ""), dom("b", "")];
        let mut t = T::new(dispatcher(&domains, extra, options(2), Mode::Run));
        t.input(Input::Begin);
        t.launch("a");
        t.launch("b");
        t.msg(
            "a",
            DomainMsg::Observed(FarmEvent::AgentStarted {
                domain: "a".into(),
                attempt: 1,
                pid: 7,
                spawned_ms: t.now,
            }),
        );
        let at = t.now + 1;
        let a = t.input(Input::Changes(vec![Change {
            domain: "a".into(),
            path: "b/intrusion.txt".into(),
            kind: ChangeKind::Created,
            at_ms: at,
        }]));
        assert!(
            has(
                &a,
                |x| matches!(x, Action::Cancel { domain: Some(d), .. } if d == "a")
            ),
            "{a:?}"
        );
        assert!(!has(&a, |x| matches!(
            x,
            Action::Cancel { domain: None, .. }
        )));
        // A stopped domain is not retried.
        let a = t.msg(
            "a",
            DomainMsg::AttemptDone {
                attempt: 1,
                end: AttemptEnd::Cancelled {
                    reason: "stopped".into(),
                },
                refused: 0,
                commit_error: None,
            },
        );
        assert!(has(&a, |x| matches!(x, Action::Conclude { .. })));
    }
}
