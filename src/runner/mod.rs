//! The effectful shell around the plan: the dispatcher that owns a run's state, launches domains
//! under the concurrency limit, merges them as they finish, then verifies, lands and cleans up.
//!
//! Only [`Farm`] mutates the run record, and only by folding events into it; domain tasks talk to
//! it through a channel. git2 work runs on blocking threads.

pub mod agent;
pub mod domain;
pub mod effects;
pub mod finish;
pub mod persist;
pub mod process;
pub mod stream;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::events::{Detected, DomainStatus, FarmEvent, Timed, Violation, now_ms};
use crate::git;
use crate::plan::schedule;
use crate::record::RunRecord;
use crate::reporter::Reporter;
use process::Cancel;

/// A run being driven by this process: its record, its event log and its reporters.
pub struct Farm {
    pub record: RunRecord,
    reporters: Vec<Box<dyn Reporter>>,
    persist: persist::Persister,
    pub self_exe: PathBuf,
    /// Overrides `agent.retries` of the plan.
    pub retries: Option<u32>,
    /// One cancellation channel for the whole run: signals, fail-fast and the deadline send on
    /// it; every process agent-farm starts listens to it.
    cancel_tx: watch::Sender<Option<Cancel>>,
    cancel_rx: watch::Receiver<Option<Cancel>>,
    ownership: Option<crate::ownership::OwnershipMap>,
    domain_cancels: std::collections::BTreeMap<String, watch::Sender<Option<Cancel>>>,
    fault: Fault,
    last_snapshot: std::time::Instant,
    dirty_domains: BTreeSet<String>,
    /// The run's intent journal: every effect on git is written here before it starts.
    pub journal: std::sync::Arc<crate::journal::Journal>,
    pub names: crate::names::RunNames,
}

/// How often, at most, the run record is rewritten for non-critical events.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(200);

/// The `event` tag of a serialized event.
fn event_kind(line: &str) -> &str {
    line.split("\"event\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("")
}

/// Events a later step (or a resume after a crash) depends on: on disk before going on.
fn is_critical(ev: &FarmEvent) -> bool {
    use FarmEvent::*;
    matches!(
        ev,
        AgentStarted { .. }
            | DomainPreparing { .. }
            | WorktreeReady { .. }
            | Committed { .. }
            | DomainFinished { .. }
            | Merged { .. }
            | Conflict { .. }
            | VerifyFinished { .. }
            | Landed { .. }
            | NotLanded { .. }
            | Resumed { .. }
            | DomainReset { .. }
            | Interrupted { .. }
            | RunFinished { .. }
    )
}

/// Fault injection for the crash tests: `AGENT_FARM_FAULT=before:merged` (or `after:EVENT`,
/// optionally `:N` for the N-th such event) makes this process SIGKILL itself at that point, as a
/// power cut or an OOM kill would. Not for production use.
#[derive(Debug, Default)]
struct Fault {
    spec: Option<(String, String, u32)>,
    seen: u32,
}

impl Fault {
    fn from_env() -> Fault {
        let spec = std::env::var("AGENT_FARM_FAULT").ok().and_then(|v| {
            let mut p = v.split(':');
            let when = p.next()?.to_string();
            let event = p.next()?.to_string();
            let n = p.next().and_then(|n| n.parse().ok()).unwrap_or(1);
            Some((when, event, n))
        });
        Fault { spec, seen: 0 }
    }

    fn check(&mut self, when: &str, kind: &str, persist: &persist::Persister) {
        let Some((w, e, n)) = &self.spec else { return };
        if w != when || e != kind {
            return;
        }
        self.seen += 1;
        if self.seen >= *n {
            persist.flush();
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// How long file changes are collected before a batch is classified.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(100);

/// What live watching has seen so far in this run.
#[derive(Default)]
struct LiveOwnership {
    /// path → domains that changed it.
    touched: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    /// Domains stopped for a violation.
    stopped: BTreeSet<String>,
    fallback_reported: bool,
}

impl Farm {
    pub fn new(record: RunRecord, reporters: Vec<Box<dyn Reporter>>) -> std::io::Result<Self> {
        let persist = persist::Persister::start(record.paths().events())?;
        let journal = std::sync::Arc::new(crate::journal::Journal::new(&record.paths().dir));
        let names = crate::names::RunNames::new(record.run_id.clone());
        let (cancel_tx, cancel_rx) = watch::channel(None);
        Ok(Farm {
            record,
            reporters,
            persist,
            self_exe: agent::self_exe(),
            retries: None,
            cancel_tx,
            cancel_rx,
            ownership: None,
            domain_cancels: Default::default(),
            fault: Fault::from_env(),
            last_snapshot: std::time::Instant::now(),
            dirty_domains: BTreeSet::new(),
            journal,
            names,
        })
    }

    pub fn emit(&mut self, event: FarmEvent) {
        self.record_event(Timed {
            at_ms: now_ms(),
            event,
        });
    }

    /// Fold an event into the record, persist both (on the writer thread), and show it to
    /// every reporter. Events later steps depend on are on disk before this returns.
    pub fn record_event(&mut self, t: Timed) {
        let line = serde_json::to_string(&t).unwrap_or_default();
        let kind = event_kind(&line);
        self.fault.check("before", kind, &self.persist);
        self.record.apply(&t);
        self.persist.line(line.clone());
        if let Some(domain) = t.event.domain() {
            self.dirty_domains.insert(domain.to_string());
        }
        // Every event is in events.jsonl at once; the record files are rewritten for every
        // critical event, and otherwise at most every SNAPSHOT_EVERY (live activity is chatty).
        let critical = is_critical(&t.event);
        if critical || self.last_snapshot.elapsed() >= SNAPSHOT_EVERY {
            self.snapshot();
        }
        for r in &mut self.reporters {
            r.on_event(&t, &self.record);
        }
        if critical {
            self.persist.flush();
        }
        self.fault.check("after", kind, &self.persist);
    }

    /// Queue the run record and the result files of domains that changed since the last time.
    fn snapshot(&mut self) {
        if let Ok(json) = serde_json::to_vec_pretty(&self.record) {
            self.persist.snapshot(self.record.paths().record(), json);
        }
        for domain in std::mem::take(&mut self.dirty_domains) {
            if let Some(d) = self.record.domain(&domain)
                && let Ok(json) = serde_json::to_vec_pretty(d)
            {
                self.persist
                    .snapshot(self.record.paths().result(&domain), json);
            }
        }
        self.last_snapshot = std::time::Instant::now();
    }

    /// Wait until every event so far is on disk, the record included.
    pub fn flush(&mut self) {
        self.snapshot();
        self.persist.flush();
    }

    /// Why the run's files could not all be written (e.g. a full disk), if they could not.
    pub fn persist_error(&self) -> Option<String> {
        self.persist.error()
    }

    /// Listen for SIGINT, SIGTERM and SIGHUP for the rest of the run: the first asks everything
    /// to stop gracefully, the second to stop at once. Call from inside the runtime.
    pub fn listen_for_signals(&self) {
        use tokio::signal::unix::{SignalKind, signal};
        let tx = self.cancel_tx.clone();
        let kinds = [
            (SignalKind::interrupt(), "SIGINT"),
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::hangup(), "SIGHUP"),
        ];
        let mut streams = Vec::new();
        for (k, name) in kinds {
            match signal(k) {
                Ok(s) => streams.push((s, name)),
                Err(e) => tracing::warn!("cannot listen for {name}: {e}"),
            }
        }
        tokio::spawn(async move {
            let mut seen = 0u32;
            loop {
                let name = {
                    let futs = streams.iter_mut().map(|(s, name)| {
                        let name = *name;
                        Box::pin(async move {
                            s.recv().await;
                            name
                        })
                    });
                    futures_select_all(futs).await
                };
                seen += 1;
                let _ = tx.send(Some(Cancel {
                    reason: if seen == 1 {
                        format!("interrupted by {name}")
                    } else {
                        format!("interrupted by {name} (again)")
                    },
                    immediate: seen > 1,
                    interrupt: true,
                }));
            }
        });
    }

    /// A cancellation channel for one domain: it follows the run's, and can also stop just
    /// this domain (ownership `stop_on_violation`).
    fn domain_cancel(&mut self, name: &str) -> process::CancelRx {
        let (tx, rx) = watch::channel(self.cancel_rx.borrow().clone());
        let mut run_rx = self.cancel_rx.clone();
        let forward = tx.clone();
        tokio::spawn(async move {
            while run_rx.changed().await.is_ok() {
                let c = run_rx.borrow_and_update().clone();
                if c.is_some() && forward.send(c).is_err() {
                    break;
                }
            }
        });
        self.domain_cancels.insert(name.to_string(), tx);
        rx
    }

    /// A cancellation channel that follows only interrupts (signals): for merge, verify and
    /// landing, which fail-fast and the deadline must not stop.
    pub fn interrupt_rx(&self) -> process::CancelRx {
        let only = |c: &Option<Cancel>| c.clone().filter(|c| c.interrupt);
        let (tx, rx) = watch::channel(only(&self.cancel_rx.borrow()));
        let mut run_rx = self.cancel_rx.clone();
        tokio::spawn(async move {
            while run_rx.changed().await.is_ok() {
                let c = only(&run_rx.borrow_and_update());
                if c.is_some() && tx.send(c).is_err() {
                    break;
                }
            }
        });
        rx
    }

    /// Ask every running process to stop (fail-fast, deadline).
    pub fn cancel(&self, reason: String) {
        if self.cancel_rx.borrow().is_none() {
            let _ = self.cancel_tx.send(domain::cancel(reason, false));
        }
    }

    /// Whether an interrupt was requested; records it (once) when it was.
    pub fn check_interrupt(&mut self) -> bool {
        let c = self.cancel_rx.borrow().clone();
        match c {
            Some(c) if c.interrupt => {
                if self.record.interrupted.is_none() {
                    self.emit(FarmEvent::Interrupted { reason: c.reason });
                }
                true
            }
            _ => false,
        }
    }

    pub fn finish_reporters(&mut self) {
        for r in &mut self.reporters {
            r.finish(&self.record);
        }
    }

    fn status(&self, name: &str) -> DomainStatus {
        self.record
            .domain(name)
            .map_or(DomainStatus::Skipped, |d| d.status)
    }

    /// Domains that may start now: pending, with every dependency done in the sense this run
    /// needs (merged into the integration branch, or merely succeeded with `--no-merge`).
    fn ready(&self) -> Vec<String> {
        let no_merge = self.record.options.no_merge;
        let plan = &self.record.plan;
        let candidates = plan.domains.iter().filter(|d| {
            self.status(&d.name) == DomainStatus::Pending
                && d.depends_on.iter().all(|p| {
                    let s = self.status(p);
                    s == DomainStatus::Merged || (no_merge && s == DomainStatus::Succeeded)
                })
        });
        schedule::start_order(&plan.domains, candidates.map(|d| d.name.as_str()))
    }

    /// Where a domain's branch starts: the integration branch (which holds its merged
    /// dependencies), or with `--no-merge` the base with its dependencies merged in memory.
    async fn start_commit(&self, name: &str) -> Result<git2::Oid, String> {
        let rec = &self.record;
        // A domain resumed from an interrupted run keeps the start point it had.
        if let Some(s) = rec.domain(name).and_then(|d| d.start_commit.as_ref()) {
            return s.parse().map_err(|e| format!("{e}"));
        }
        let repo_dir = rec.repo.clone();
        let integration = rec.integration_branch.clone();
        let base: git2::Oid = rec.base_commit.parse().map_err(|e| format!("{e}"))?;
        let no_merge = rec.options.no_merge;
        let deps: Vec<(String, Option<String>)> = {
            let domains = &rec.plan.domains;
            let mut all: BTreeSet<String> = BTreeSet::new();
            let mut stack = vec![name.to_string()];
            while let Some(n) = stack.pop() {
                if let Some(d) = rec.plan.domain(&n) {
                    for p in &d.depends_on {
                        if all.insert(p.clone()) {
                            stack.push(p.clone());
                        }
                    }
                }
            }
            schedule::merge_order(domains)
                .into_iter()
                .filter(|n| all.contains(n))
                .map(|n| {
                    let head = rec.domain(&n).and_then(|d| d.head.clone());
                    (n, head)
                })
                .collect()
        };
        let run_id = rec.run_id.clone();
        tokio::task::spawn_blocking(move || -> Result<git2::Oid, String> {
            let repo = git::open(&repo_dir).map_err(|e| e.to_string())?;
            if !no_merge {
                return git::branch_tip(&repo, &integration)
                    .ok_or_else(|| format!("integration branch {integration} is missing"));
            }
            let mut at = base;
            for (dep, head) in deps {
                let Some(head) = head.and_then(|h| h.parse().ok()) else {
                    continue;
                };
                if git::is_merged(&repo, head, at) {
                    continue;
                }
                let msg = format!("farm: start point with `{dep}` (run {run_id})");
                match git::merge_commits(&repo, at, head, &msg).map_err(|e| e.to_string())? {
                    Ok(c) => at = c,
                    Err(paths) => {
                        return Err(format!(
                            "dependencies conflict with each other on {}",
                            paths.join(", ")
                        ));
                    }
                }
            }
            Ok(at)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    fn job_for(&self, name: &str, start: git2::Oid) -> Option<domain::DomainJob> {
        let rec = &self.record;
        let d = rec.plan.domain(name)?.clone();
        let dr = rec.domain(name)?;
        let mut setup = rec.plan.setup.clone();
        setup.extend(d.setup.iter().cloned());
        let ownership = crate::ownership::OwnershipMap::for_plan(&rec.plan).ok()?;
        let mut agent = rec.plan.agent.clone();
        if agent.preset == crate::plan::Preset::Claude {
            // Prevention: the CLI itself refuses edits into other domains' paths.
            agent
                .disallowed_tools
                .extend(ownership.deny_rules_for(name, &rec.plan.domains));
        }
        Some(domain::DomainJob {
            ownership,
            policy: rec.plan.ownership.policy,
            run_id: rec.run_id.clone(),
            timeout: rec.plan.timeout_for(&d),
            domain: d,
            repo_dir: rec.repo.clone(),
            common_dir: rec.common_dir.clone(),
            paths: rec.paths(),
            branch: dr.branch.clone(),
            worktree: dr.worktree.clone(),
            worktree_admin: dr.worktree_admin.clone(),
            start_commit: start,
            agent,
            retries: self.retries.unwrap_or(rec.plan.agent.retries),
            copy: rec.plan.copy.clone(),
            setup,
            self_exe: self.self_exe.clone(),
            watch: None,
            resume: dr.start_commit.is_some(),
            agent_done: dr.after_agent,
            first_attempt: dr.attempts.iter().map(|a| a.number).max().unwrap_or(0) + 1,
            journal: self.journal.clone(),
            names: self.names.clone(),
        })
    }

    /// Skip every pending domain that depends (transitively) on `failed`.
    fn skip_dependents(&mut self, failed: &str) {
        let status = self.status(failed);
        for dep in schedule::dependents_of(&self.record.plan.domains, failed) {
            if self.status(&dep) == DomainStatus::Pending {
                self.emit(FarmEvent::DomainSkipped {
                    domain: dep,
                    reason: format!("dependency `{failed}` {status}"),
                });
            }
        }
    }

    /// Merge a finished domain into the integration branch.
    pub async fn merge_domain(&mut self, name: &str) {
        let Some(d) = self.record.domain(name) else {
            return;
        };
        let (repo_dir, integration, head, run_id) = (
            self.record.repo.clone(),
            self.record.integration_branch.clone(),
            d.head.clone(),
            self.record.run_id.clone(),
        );
        let Some(head) = head.and_then(|h| h.parse::<git2::Oid>().ok()) else {
            self.emit(FarmEvent::Merged {
                domain: name.to_string(),
                commit: None,
            });
            return;
        };
        let msg = format!(
            "farm: merge domain `{name}` (run {run_id})\n\nFarm-Run: {run_id}\nFarm-Domain: {name}\n"
        );
        let (journal, names) = (self.journal.clone(), self.names.clone());
        let res = tokio::task::spawn_blocking(move || {
            let repo = git::open(&repo_dir)?;
            effects::merge_into_branch(&journal, &repo, &names, &integration, head, &msg)
        })
        .await;
        match res {
            Ok(Ok(git::MergeOutcome::Merged(c))) => self.emit(FarmEvent::Merged {
                domain: name.to_string(),
                commit: Some(c.to_string()),
            }),
            Ok(Ok(git::MergeOutcome::UpToDate)) => self.emit(FarmEvent::Merged {
                domain: name.to_string(),
                commit: None,
            }),
            Ok(Ok(git::MergeOutcome::Conflict(paths))) => {
                let facts = self.conflict_facts(&paths);
                self.emit(FarmEvent::Conflict {
                    domain: name.to_string(),
                    paths,
                    facts,
                })
            }
            Ok(Err(e)) => self.emit(FarmEvent::Warning {
                domain: Some(name.to_string()),
                message: format!("merge failed: {e}"),
            }),
            Err(e) => self.emit(FarmEvent::Warning {
                domain: Some(name.to_string()),
                message: format!("merge failed: {e}"),
            }),
        }
    }

    /// Run every domain of the plan. Returns when no domain is running and none can start.
    pub async fn dispatch(&mut self) {
        let (tx, mut rx) = mpsc::channel::<Timed>(1024);
        // Live ownership watching: batches of changed paths, debounced, on a bounded channel.
        let (watch_tx, mut watch_rx) = mpsc::channel::<Vec<crate::watch::Change>>(64);
        let (added_tx, mut added_rx) =
            mpsc::channel::<(String, Result<crate::watch::Mode, String>)>(64);
        let watcher = std::sync::Arc::new(crate::watch::Watcher::start(watch_tx, WATCH_DEBOUNCE));
        let mut live = LiveOwnership::default();
        // A resumed run may hold finished domains whose merge never happened (or was never
        // recorded): merge them first, so that their dependents can start.
        if !self.record.options.no_merge {
            for name in schedule::merge_order(&self.record.plan.domains) {
                if self.status(&name) == DomainStatus::Succeeded {
                    self.after_domain(&name).await;
                }
            }
        }
        let mut cancel_rx = self.cancel_rx.clone();
        let jobs = self.record.options.jobs.max(1);
        let mut running = 0usize;
        let deadline = self.record.options.deadline_ms.map(Duration::from_millis);
        let deadline_sleep =
            tokio::time::sleep(deadline.unwrap_or(Duration::from_secs(86400 * 365)));
        tokio::pin!(deadline_sleep);
        let mut deadline_armed = deadline.is_some();

        loop {
            self.check_interrupt();
            if self.cancel_rx.borrow().is_none() {
                for name in self.ready() {
                    if running >= jobs {
                        break;
                    }
                    match self.start_commit(&name).await {
                        Ok(start) => {
                            let Some(mut job) = self.job_for(&name, start) else {
                                continue;
                            };
                            job.watch = Some((watcher.clone(), added_tx.clone()));
                            // Mark it so `ready` does not offer it again before its first event.
                            self.emit(FarmEvent::DomainPreparing {
                                domain: name.clone(),
                                start_commit: start.to_string(),
                            });
                            running += 1;
                            let cancel = self.domain_cancel(&name);
                            spawn_domain(job, tx.clone(), cancel);
                        }
                        Err(reason) => {
                            self.emit(FarmEvent::DomainSkipped {
                                domain: name.clone(),
                                reason,
                            });
                            self.skip_dependents(&name);
                        }
                    }
                }
            }
            if running == 0 {
                break;
            }
            tokio::select! {
                // Domain events first: a change batch is classified against up-to-date state.
                biased;
                Some(t) = rx.recv() => {
                    let finished = match &t.event {
                        FarmEvent::DomainFinished { domain, .. } => Some(domain.clone()),
                        _ => None,
                    };
                    let derived = self.ownership_signals(&t.event);
                    self.record_event(t);
                    for ev in derived {
                        self.emit(ev);
                    }
                                        if let Some(name) = finished {
                        // Let the changes of the agent's last moments (still in the watcher's
                        // debounce window) arrive before the worktree stops being watched.
                        let (w, n) = (watcher.clone(), name.clone());
                        tokio::spawn(async move {
                            tokio::time::sleep(WATCH_DEBOUNCE * 3).await;
                            w.remove(&n);
                        });
                        running -= 1;
                        self.after_domain(&name).await;
                    }
                }
                _ = &mut deadline_sleep, if deadline_armed => {
                    deadline_armed = false;
                    let reason = format!(
                        "run deadline of {} reached",
                        humantime::format_duration(deadline.unwrap_or_default())
                    );
                    self.emit(FarmEvent::Warning { domain: None, message: reason.clone() });
                    self.cancel(reason);
                }
                // A cancellation (signal) arrived: loop to record it and stop launching.
                Ok(()) = cancel_rx.changed() => {}
                Some(batch) = watch_rx.recv() => self.on_changes(batch, &mut live),
                Some((domain, mode)) = added_rx.recv() => match mode {
                    Ok(crate::watch::Mode::Notify) => {}
                    Ok(crate::watch::Mode::Poll { reason }) => {
                        if !live.fallback_reported {
                            live.fallback_reported = true;
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
                        message: format!("not watched live ({e}); the audit before merge still checks every change"),
                    }),
                },
            }
        }

        // Whatever could not start is accounted for.
        let reason = self.cancel_rx.borrow().as_ref().map(|c| c.reason.clone());
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
    }

    /// Ownership facts an agent's own events reveal: a refused edit of another domain's path is
    /// a prevented violation; a tool use naming a path outside the domain is an early warning.
    fn ownership_signals(&mut self, ev: &FarmEvent) -> Vec<FarmEvent> {
        let (domain, path, detected, action) = match ev {
            FarmEvent::AgentRefused { domain, denial, .. } => {
                (domain, denial.path.clone(), Detected::Prevented, "refused")
            }
            FarmEvent::AgentToolUse {
                domain, tool, path, ..
            } if matches!(
                tool.as_str(),
                "Write" | "Edit" | "MultiEdit" | "NotebookEdit"
            ) =>
            {
                (domain, path.clone(), Detected::ToolUse, "reported")
            }
            _ => return Vec::new(),
        };
        let Some(path) = path else {
            return Vec::new();
        };
        let Some(map) = self.ownership_map() else {
            return Vec::new();
        };
        let class = if path.starts_with('/') {
            crate::ownership::PathClass::Unowned
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
            },
        }]
    }

    /// Classify a batch of live changes: out-of-domain writes and collisions are reported the
    /// moment they are seen; with `stop_on_violation` the offending agent is stopped.
    fn on_changes(&mut self, batch: Vec<crate::watch::Change>, live: &mut LiveOwnership) {
        use crate::watch::ChangeKind;
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
            if class == crate::ownership::PathClass::Ignored {
                continue;
            }
            let touched = live.touched.entry(c.path.clone()).or_default();
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
            let stopping = stop && live.stopped.insert(c.domain.clone());
            self.emit(FarmEvent::OwnershipViolation {
                domain: c.domain.clone(),
                violation: Violation {
                    path: c.path.clone(),
                    owner: class.owner(),
                    change,
                    detected: Detected::Live,
                    action: if stopping { "stopped" } else { "reported" }.into(),
                },
            });
            if stopping && let Some(tx) = self.domain_cancels.get(&c.domain) {
                let _ = tx.send(Some(Cancel {
                    reason: format!(
                        "stopped at its first ownership violation ({} {})",
                        c.path,
                        class
                            .owner()
                            .map(|o| format!("owned by {o}"))
                            .unwrap_or_else(|| "owned by no domain".into())
                    ),
                    immediate: false,
                    interrupt: false,
                }));
            }
        }
    }

    /// For each conflicting path: who owns it and which domains of this run changed it.
    pub fn conflict_facts(&mut self, paths: &[String]) -> Vec<String> {
        let changed_by = |p: &String| -> Vec<String> {
            self.record
                .domains
                .values()
                .filter(|d| d.files.contains(p))
                .map(|d| d.name.clone())
                .collect()
        };
        let by: Vec<Vec<String>> = paths.iter().map(changed_by).collect();
        let Some(map) = self.ownership_map() else {
            return Vec::new();
        };
        paths
            .iter()
            .zip(by)
            .map(|(p, by)| {
                let owner = match map.classify("", p) {
                    crate::ownership::PathClass::Other { owners } => {
                        format!("owned by {}", owners.join(", "))
                    }
                    crate::ownership::PathClass::Shared => "shared".to_string(),
                    crate::ownership::PathClass::Ignored => "ignored for ownership".to_string(),
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

    fn ownership_map(&mut self) -> Option<&crate::ownership::OwnershipMap> {
        if self.ownership.is_none() {
            self.ownership = crate::ownership::OwnershipMap::for_plan(&self.record.plan).ok();
        }
        self.ownership.as_ref()
    }

    async fn after_domain(&mut self, name: &str) {
        if self.status(name) == DomainStatus::Succeeded && !self.record.options.no_merge {
            self.merge_domain(name).await;
        }
        let status = self.status(name);
        if status.is_failure() || status == DomainStatus::Conflicted {
            self.skip_dependents(name);
            if self.record.options.fail_fast && status != DomainStatus::Cancelled {
                self.cancel(format!("fail-fast: domain `{name}` {status}"));
            }
        }
    }
}

/// Run a domain's task; if it dies (a bug), the dispatcher still hears that the domain ended.
fn spawn_domain(job: domain::DomainJob, tx: mpsc::Sender<Timed>, cancel: process::CancelRx) {
    let name = job.domain.name.clone();
    let task = tokio::spawn(domain::run(job, tx.clone(), cancel));
    tokio::spawn(async move {
        if let Err(e) = task.await {
            let _ = tx
                .send(Timed {
                    at_ms: now_ms(),
                    event: FarmEvent::DomainFinished {
                        domain: name,
                        status: DomainStatus::Failed,
                        reason: Some(format!("internal error: the domain's task failed: {e}")),
                        head: None,
                        files: Vec::new(),
                        insertions: 0,
                        deletions: 0,
                    },
                })
                .await;
        }
    });
}

/// Wait for the first of several futures (all of one type) to finish.
async fn futures_select_all<F: std::future::Future + Unpin>(
    futs: impl IntoIterator<Item = F>,
) -> F::Output {
    let mut futs: Vec<F> = futs.into_iter().collect();
    if futs.is_empty() {
        return std::future::pending().await;
    }
    std::future::poll_fn(move |cx| {
        for f in futs.iter_mut() {
            if let std::task::Poll::Ready(v) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready(v);
            }
        }
        std::task::Poll::Pending
    })
    .await
}
