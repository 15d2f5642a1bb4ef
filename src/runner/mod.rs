//! The effectful shell around the plan. [`dispatcher::Dispatcher`] decides everything; the
//! driver here ([`Farm`]) turns whatever arrives (a domain's message, a batch of file changes, a
//! signal, a timer, an effect's result) into an input, hands it to the dispatcher, and executes
//! the actions it returns: it spawns each effect (git work on blocking threads, processes as
//! tasks) and publishes each event (to `events.jsonl`, `run.json` and the reporters). The loop
//! never waits on git, a process or an fsync: effects that depend on earlier events being on
//! disk wait for the writer thread themselves.

pub mod agent;
pub mod dispatcher;
pub mod domain;
pub mod effects;
pub mod finish;
pub mod pause;
pub mod persist;
pub mod process;
pub mod stream;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::events::{FarmEvent, Timed, now_ms};
use crate::git;
use crate::plan::schedule;
use crate::record::RunRecord;
use crate::reporter::Reporter;
use dispatcher::{Action, Dispatcher, DomainMsg, Input, Mode, RetryPolicy};
use process::Cancel;

/// How often, at most, the run record is rewritten for non-critical events.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(200);

/// How long file changes are collected before a batch is classified.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(100);

/// The `event` tag of a serialized event.
fn event_kind(line: &str) -> &str {
    line.split("\"event\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("")
}

/// Events a later step (or a resume after a crash) depends on: the record is rewritten for
/// them at once, and the next effect starts only once they are on disk.
fn is_critical(ev: &FarmEvent) -> bool {
    use FarmEvent::*;
    matches!(
        ev,
        AgentStarted { .. }
            | AgentFinished { .. }
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
/// power cut or an OOM kill would. Named points inside effects are in [`crate::fault`].
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

/// What the driver needs to start a run.
pub struct FarmOptions {
    pub mode: Mode,
    pub keep_worktrees: bool,
    /// Overrides `agent.retries` of the plan.
    pub retries: Option<u32>,
}

/// A run being driven by this process.
pub struct Farm {
    dispatcher: Dispatcher,
    reporters: Vec<Box<dyn Reporter>>,
    persist: persist::Persister,
    self_exe: PathBuf,
    /// One cancellation channel for the whole run; every process agent-farm starts listens to it
    /// (through its domain's channel, which can also stop just that domain).
    cancel_tx: watch::Sender<Option<Cancel>>,
    cancel_rx: watch::Receiver<Option<Cancel>>,
    domain_cancels: BTreeMap<String, watch::Sender<Option<Cancel>>>,
    fault: Fault,
    last_snapshot: std::time::Instant,
    dirty_domains: BTreeSet<String>,
    /// The run's intent journal: every effect on git is written here before it starts.
    pub journal: Arc<crate::journal::Journal>,
    pub names: crate::names::RunNames,
    tx: mpsc::Sender<(u64, Input)>,
    rx: mpsc::Receiver<(u64, Input)>,
    watcher: Option<Arc<crate::watch::Watcher>>,
    /// Where agents may not write (`None`: the plan turned the guard off).
    guard_zones: Option<Arc<Vec<crate::supervise::Zone>>>,
    land_lock: Arc<Mutex<Option<crate::lock::LandLock>>>,
}

impl Farm {
    pub fn new(
        record: RunRecord,
        reporters: Vec<Box<dyn Reporter>>,
        opts: FarmOptions,
    ) -> std::io::Result<Self> {
        let persist = persist::Persister::start(record.paths().events())?;
        let journal = Arc::new(crate::journal::Journal::new(&record.paths().dir));
        let names = crate::names::RunNames::new(record.run_id.clone());
        let (cancel_tx, cancel_rx) = watch::channel(None);
        let agent = &record.plan.agent;
        let retry = RetryPolicy {
            retries: opts.retries.unwrap_or(agent.retries),
            backoff: agent.retry_backoff,
            rate_limit_backoff: agent.rate_limit_backoff,
            max_delay: Duration::from_secs(3600),
        };
        let (tx, rx) = mpsc::channel(1024);
        let guard_zones = guard_zones(&record).map(Arc::new);
        Ok(Farm {
            guard_zones,
            dispatcher: Dispatcher::new(record, opts.mode, retry, opts.keep_worktrees),
            reporters,
            persist,
            self_exe: agent::self_exe(),
            cancel_tx,
            cancel_rx,
            domain_cancels: BTreeMap::new(),
            fault: Fault::from_env(),
            last_snapshot: std::time::Instant::now(),
            dirty_domains: BTreeSet::new(),
            journal,
            names,
            tx,
            rx,
            watcher: None,
            land_lock: Arc::new(Mutex::new(None)),
        })
    }

    /// The run's state, as folded from every event so far.
    pub fn record(&self) -> &RunRecord {
        self.dispatcher.record()
    }

    /// Publish an event from outside the dispatcher's decisions (the run's first events).
    pub fn emit(&mut self, event: FarmEvent) {
        let at = now_ms();
        for a in self.dispatcher.publish(at, event) {
            self.execute(at, a);
        }
    }

    /// Persist an event (on the writer thread) and show it to every reporter.
    fn publish(&mut self, at_ms: u64, event: FarmEvent) {
        let t = Timed { at_ms, event };
        let line = serde_json::to_string(&t).unwrap_or_default();
        let kind = event_kind(&line).to_string();
        self.fault.check("before", &kind, &self.persist);
        self.persist.line(line);
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
            r.on_event(&t, self.dispatcher.record());
        }
        self.fault.check("after", &kind, &self.persist);
    }

    /// Queue the run record and the result files of domains that changed since the last time.
    fn snapshot(&mut self) {
        let record = self.dispatcher.record();
        if let Ok(json) = serde_json::to_vec_pretty(record) {
            self.persist.snapshot(record.paths().record(), json);
        }
        for domain in std::mem::take(&mut self.dirty_domains) {
            if let Some(d) = record.domain(&domain)
                && let Ok(json) = serde_json::to_vec_pretty(d)
            {
                self.persist.snapshot(record.paths().result(&domain), json);
            }
        }
        self.last_snapshot = std::time::Instant::now();
    }

    /// Wait until every event so far is on disk, the record included. Not for the event loop.
    pub fn flush(&mut self) {
        self.snapshot();
        self.persist.flush();
    }

    /// Why the run's files could not all be written (e.g. a full disk), if they could not.
    pub fn persist_error(&self) -> Option<String> {
        self.persist.error()
    }

    pub fn finish_reporters(&mut self) {
        for r in &mut self.reporters {
            r.finish(self.dispatcher.record());
        }
    }

    /// Drive the run to its end: agents, merges, verify, landing, cleanup.
    pub async fn drive(&mut self) {
        self.listen_for_signals();
        let (watch_tx, mut watch_rx) = mpsc::channel::<Vec<crate::watch::Change>>(64);
        self.watcher = Some(Arc::new(crate::watch::Watcher::start(
            watch_tx,
            WATCH_DEBOUNCE,
        )));
        self.feed(now_ms(), Input::Begin);
        while !self.dispatcher.done() {
            let (at, input) = tokio::select! {
                // Domain messages first: a change batch is classified against up-to-date state.
                biased;
                Some(x) = self.rx.recv() => x,
                Some(batch) = watch_rx.recv() => (now_ms(), Input::Changes(batch)),
            };
            self.feed(at, input);
        }
        if let Ok(mut l) = self.land_lock.lock() {
            l.take();
        }
    }

    fn feed(&mut self, at: u64, input: Input) {
        for a in self.dispatcher.handle(at, input) {
            self.execute(at, a);
        }
    }

    /// Listen for SIGINT, SIGTERM and SIGHUP for the rest of the run; the dispatcher decides
    /// what each means (the first stops gracefully, the second at once).
    fn listen_for_signals(&self) {
        use tokio::signal::unix::{SignalKind, signal};
        let tx = self.tx.clone();
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
        // Job control: SIGTSTP (Ctrl-Z) pauses the farm, SIGCONT (`fg`, `bg`) continues it.
        match (
            signal(SignalKind::from_raw(libc::SIGTSTP)),
            signal(SignalKind::from_raw(libc::SIGCONT)),
        ) {
            (Ok(mut tstp), Ok(mut cont)) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            Some(()) = tstp.recv() => {
                                if tx.send((now_ms(), Input::Suspend)).await.is_err() {
                                    break;
                                }
                            }
                            Some(()) = cont.recv() => {
                                if pause::is_paused() {
                                    let took = pause::resume();
                                    let input = Input::Continue { paused_ms: took.as_millis() as u64 };
                                    if tx.send((now_ms(), input)).await.is_err() {
                                        break;
                                    }
                                }
                            }
                            else => break,
                        }
                    }
                });
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("cannot listen for SIGTSTP and SIGCONT: {e}")
            }
        }
        tokio::spawn(async move {
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
                let input = Input::Signal {
                    name: name.to_string(),
                };
                if tx.send((now_ms(), input)).await.is_err() {
                    break;
                }
            }
        });
    }

    /// A cancellation channel for one domain: it follows the run's, and can also stop just
    /// this domain (ownership `stop_on_violation`).
    fn domain_cancel(&mut self, name: &str) -> process::CancelRx {
        if let Some(tx) = self.domain_cancels.get(name) {
            return tx.subscribe();
        }
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

    /// A cancellation channel that follows only interrupts (signals): for verify, which
    /// fail-fast and the deadline must not stop.
    fn interrupt_rx(&self) -> process::CancelRx {
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

    /// Spawn an effect that starts once every event published so far is on disk. If the effect
    /// dies (a bug), `on_panic` says so as its result: the dispatcher always hears back.
    fn spawn_durable<F>(&self, f: F, on_panic: impl FnOnce(String) -> Input + Send + 'static)
    where
        F: std::future::Future<Output = Input> + Send + 'static,
    {
        let durable = self.persist.barrier();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let _ = durable.await;
            let input = match tokio::spawn(f).await {
                Ok(input) => input,
                Err(e) => on_panic(format!("internal error: the effect's task failed: {e}")),
            };
            let _ = tx.send((now_ms(), input)).await;
        });
    }

    /// [`Farm::spawn_durable`] for blocking work (git).
    fn spawn_blocking_durable<F>(
        &self,
        f: F,
        on_panic: impl FnOnce(String) -> Input + Send + 'static,
    ) where
        F: FnOnce() -> Input + Send + 'static,
    {
        self.spawn_blocking_durable_after(None, f, on_panic);
    }

    /// As [`Self::spawn_blocking_durable`], once the watcher has let go of what `unwatched` names.
    fn spawn_blocking_durable_after<F>(
        &self,
        unwatched: Option<crate::watch::Removed>,
        f: F,
        on_panic: impl FnOnce(String) -> Input + Send + 'static,
    ) where
        F: FnOnce() -> Input + Send + 'static,
    {
        let durable = self.persist.barrier();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let _ = durable.await;
            if let Some(u) = unwatched {
                u.await;
            }
            let input = match tokio::task::spawn_blocking(f).await {
                Ok(input) => input,
                Err(e) => on_panic(format!("internal error: the effect's task failed: {e}")),
            };
            let _ = tx.send((now_ms(), input)).await;
        });
    }

    fn emitter(&self, domain: &str) -> domain::Emitter {
        domain::Emitter {
            tx: self.tx.clone(),
            domain: domain.to_string(),
        }
    }

    /// Run a domain's effect; if its task dies (a bug), the dispatcher still hears of it.
    fn spawn_domain_effect<F>(&self, name: &str, f: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let durable = self.persist.barrier();
        let (tx, name) = (self.tx.clone(), name.to_string());
        tokio::spawn(async move {
            let _ = durable.await;
            if let Err(e) = tokio::spawn(f).await {
                let msg = DomainMsg::Died(e.to_string());
                let _ = tx
                    .send((now_ms(), Input::Domain { domain: name, msg }))
                    .await;
            }
        });
    }

    fn execute(&mut self, at: u64, action: Action) {
        match action {
            Action::Emit(ev) => self.publish(at, ev),
            Action::ComputeStart { domain } => {
                let plan = start_plan(self.dispatcher.record(), &domain);
                let d = domain.clone();
                self.spawn_blocking_durable(
                    move || Input::StartComputed {
                        result: start_commit(plan).map(|c| c.to_string()),
                        domain,
                    },
                    move |e| Input::StartComputed {
                        domain: d,
                        result: Err(e),
                    },
                );
            }
            Action::Prepare {
                domain,
                start,
                skip_setup,
                resume,
            } => match self.job_for(&domain, &start, resume) {
                Some(job) => {
                    let (em, cancel) = (self.emitter(&domain), self.domain_cancel(&domain));
                    self.spawn_domain_effect(&domain, domain::prepare(job, em, cancel, skip_setup));
                }
                None => self.internal_error(&domain, "its plan entry is gone"),
            },
            Action::Attempt { domain, attempt } => match self.job_for_started(&domain) {
                Some(job) => {
                    let (em, cancel) = (self.emitter(&domain), self.domain_cancel(&domain));
                    self.spawn_domain_effect(&domain, domain::attempt(job, em, cancel, attempt));
                }
                None => self.internal_error(&domain, "it has no start point"),
            },
            Action::Conclude {
                domain,
                last_end,
                refused,
            } => match self.job_for_started(&domain) {
                Some(job) => {
                    let (em, cancel) = (self.emitter(&domain), self.domain_cancel(&domain));
                    self.spawn_domain_effect(
                        &domain,
                        domain::conclude(job, em, cancel, last_end, refused),
                    );
                }
                None => self.internal_error(&domain, "it has no start point"),
            },
            Action::Cancel {
                domain: None,
                cancel,
            } => {
                let _ = self.cancel_tx.send(Some(cancel));
            }
            Action::Cancel {
                domain: Some(d),
                cancel,
            } => {
                if let Some(tx) = self.domain_cancels.get(&d) {
                    let _ = tx.send(Some(cancel));
                }
            }
            Action::Unwatch { domain } => {
                // Let the changes of the agent's last moments (still in the watcher's debounce
                // window) arrive before the worktree stops being watched.
                if let Some(w) = self.watcher.clone() {
                    tokio::spawn(async move {
                        tokio::time::sleep(WATCH_DEBOUNCE * 3).await;
                        w.remove(&domain);
                    });
                }
            }
            Action::Suspend => {
                // The pause begins before anything is stopped: a timer that fires meanwhile
                // waits for the end of the pause.
                pause::pause();
                let n = process::signal_all(nix::sys::signal::Signal::SIGTSTP);
                tracing::debug!(groups = n, "stopped for a pause");
                // What was said so far is on disk before the farm stops (it may stay stopped
                // for long, or be killed meanwhile).
                self.flush();
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
            }
            Action::Continue => {
                process::signal_all(nix::sys::signal::Signal::SIGCONT);
            }
            Action::SetTimer { timer, after } => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    pause::sleep(after).await;
                    let _ = tx.send((now_ms(), Input::Timer(timer))).await;
                });
            }
            Action::Recover { reset_blocked } => {
                let rec = self.dispatcher.record().clone();
                self.spawn_blocking_durable(
                    move || {
                        let mut events = finish::recover_run(&rec);
                        for d in reset_blocked {
                            events.extend(finish::reset_blocked(&rec, &d));
                        }
                        Input::Recovered(events)
                    },
                    |e| {
                        Input::Recovered(vec![FarmEvent::Warning {
                            domain: None,
                            message: e,
                        }])
                    },
                );
            }
            Action::PredictConflicts { candidates } => {
                let rec = self.dispatcher.record();
                let (repo, integration) = (rec.repo.clone(), rec.integration_branch.clone());
                self.spawn_blocking_durable(
                    move || {
                        Input::Predicted(
                            finish::predict_conflicts(&repo, &integration, &candidates)
                                .map_err(|e| e.to_string()),
                        )
                    },
                    |e| Input::Predicted(Err(e)),
                );
            }
            Action::Merge { domain, head } => {
                let rec = self.dispatcher.record();
                let (repo_dir, integration, run_id) = (
                    rec.repo.clone(),
                    rec.integration_branch.clone(),
                    rec.run_id.clone(),
                );
                let (journal, names) = (self.journal.clone(), self.names.clone());
                let d = domain.clone();
                self.spawn_blocking_durable(move || {
                    let msg = format!(
                        "farm: merge domain `{domain}` (run {run_id})\n\nFarm-Run: {run_id}\nFarm-Domain: {domain}\n"
                    );
                    let result = (|| {
                        let head: git2::Oid = head
                            .parse()
                            .map_err(|source| git::GitError::BadCommitId {
                                id: head.clone(),
                                source,
                            })?;
                        let repo = git::open(&repo_dir)?;
                        effects::merge_into_branch(&journal, &repo, &names, &integration, head, &msg)
                    })()
                    .map_err(|e| e.to_string());
                    Input::MergeDone { domain, result }
                }, move |e| Input::MergeDone { domain: d, result: Err(e) });
            }
            Action::TakeLandLock => {
                let common = self.dispatcher.record().common_dir.clone();
                let slot = self.land_lock.clone();
                // One run lands at a time in a repository: this may wait for another run.
                self.spawn_blocking_durable(
                    move || {
                        Input::LandLock(match crate::lock::LandLock::acquire(&common) {
                            Ok(l) => {
                                if let Ok(mut s) = slot.lock() {
                                    *s = Some(l);
                                }
                                Ok(())
                            }
                            Err(e) => Err(e.to_string()),
                        })
                    },
                    |e| Input::LandLock(Err(e)),
                );
            }
            Action::PlanLanding => {
                let rec = self.dispatcher.record();
                let req = finish::LandingRequest::of(rec);
                self.spawn_blocking_durable(
                    move || Input::LandingPlanned(req.plan().map_err(|e| e.to_string())),
                    |e| Input::LandingPlanned(Err(e)),
                );
            }
            Action::Verify { commit } => {
                let rec = self.dispatcher.record().clone();
                let (journal, names) = (self.journal.clone(), self.names.clone());
                let cancel = self.interrupt_rx();
                self.spawn_durable(
                    async move { finish::run_verify(&rec, journal, names, &commit, cancel).await },
                    |e| Input::Verified {
                        passed: false,
                        end: crate::events::AttemptEnd::SpawnFailed { message: e.clone() },
                        duration_ms: 0,
                        log: String::new(),
                        setup_error: Some(e),
                    },
                );
            }
            Action::Land { old, new, .. } => {
                let rec = self.dispatcher.record();
                let req = finish::LandingRequest::of(rec);
                let journal = self.journal.clone();
                self.spawn_blocking_durable(
                    move || {
                        Input::LandDone(req.land(&journal, old, &new).map_err(|e| e.to_string()))
                    },
                    |e| Input::LandDone(Err(e)),
                );
            }
            Action::Cleanup { remove_worktrees } => {
                let rec = self.dispatcher.record().clone();
                let journal = self.journal.clone();
                // No worktree is removed while it is watched: the watches of its directories
                // would vanish under notify, which logs a warning for each of them.
                let unwatched = self.watcher.as_ref().map(|w| w.remove_all());
                self.spawn_blocking_durable_after(
                    unwatched,
                    move || {
                        Input::Cleaned(finish::cleanup_run(&rec, &journal, remove_worktrees, false))
                    },
                    |e| {
                        Input::Cleaned(vec![FarmEvent::Warning {
                            domain: None,
                            message: format!("cleanup failed: {e}"),
                        }])
                    },
                );
            }
            Action::Finish => {}
        }
    }

    fn internal_error(&mut self, domain: &str, what: &str) {
        let input = Input::Domain {
            domain: domain.to_string(),
            msg: DomainMsg::Died(format!("internal error: {what}")),
        };
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let _ = tx.send((now_ms(), input)).await;
        });
    }

    fn job_for_started(&self, name: &str) -> Option<domain::DomainJob> {
        let start = self.record().domain(name)?.start_commit.clone()?;
        self.job_for(name, &start, true)
    }

    fn job_for(&self, name: &str, start: &str, resume: bool) -> Option<domain::DomainJob> {
        let rec = self.record();
        let start: git2::Oid = start.parse().ok()?;
        let d = rec.plan.domain(name)?.clone();
        let dr = rec.domain(name)?;
        let mut setup = rec.plan.setup.clone();
        setup.extend(d.setup.iter().cloned());
        // Compiled once for the run (a plan's globs), not for every effect of every domain.
        let ownership = self.dispatcher.ownership()?.clone();
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
            copy: rec.plan.copy.clone(),
            setup,
            self_exe: self.self_exe.clone(),
            watch: self.watcher.clone(),
            guard_zones: self.guard_zones.clone(),
            resume,
            journal: self.journal.clone(),
            names: self.names.clone(),
        })
    }
}

/// The zones no agent of the run may write into (see [`crate::supervise`]), in the order they
/// are checked: git's shared directory (its object store excepted), the farm's worktrees, and
/// every checkout of the repository (the main one and the user's linked worktrees). Each agent
/// may still write its own worktree and what its own commits need.
fn guard_zones(rec: &RunRecord) -> Option<Vec<crate::supervise::Zone>> {
    use crate::supervise::Zone;
    if !rec.plan.ownership.guard {
        return None;
    }
    let canon = crate::supervise::canonical;
    let common = canon(&rec.common_dir);
    let mut zones = vec![
        Zone {
            path: common.clone(),
            label: "git's shared directory".into(),
            except: vec![common.join("objects")],
        },
        Zone {
            path: canon(&rec.worktree_root),
            label: "the farm's worktrees".into(),
            except: vec![],
        },
    ];
    if common.file_name().is_some_and(|n| n == ".git")
        && let Some(main) = common.parent()
    {
        // A checkout that holds the home directory (a dotfiles repository) or the temporary
        // directory must not take the agents' own state with it: their CLI writes there.
        let mut except: Vec<std::path::PathBuf> = Vec::new();
        if let Some(home) = std::env::var_os("HOME").map(std::path::PathBuf::from) {
            for d in [
                ".claude",
                ".claude.json",
                ".cache",
                ".config",
                ".local",
                ".npm",
            ] {
                except.push(canon(&home.join(d)));
            }
        }
        except.push(canon(&std::env::temp_dir()));
        except.retain(|e| e.starts_with(main));
        zones.push(Zone {
            path: main.to_path_buf(),
            label: "the main checkout".into(),
            except,
        });
    }
    if let Ok(repo) = git2::Repository::open(&rec.repo)
        && let Ok(names) = repo.worktrees()
    {
        for name in names.iter() {
            if let Ok(Some(name)) = name
                && let Ok(wt) = repo.find_worktree(name)
            {
                let path = canon(wt.path());
                if !zones.iter().any(|z| path.starts_with(&z.path)) {
                    zones.push(Zone {
                        label: format!("the checkout {}", path.display()),
                        path,
                        except: vec![],
                    });
                }
            }
        }
    }
    Some(zones)
}

/// What computing a domain's start point needs (read from the record on the loop).
struct StartPlan {
    recorded: Option<String>,
    repo_dir: PathBuf,
    integration: String,
    base: String,
    no_merge: bool,
    run_id: String,
    deps: Vec<(String, Option<String>)>,
}

fn start_plan(rec: &RunRecord, name: &str) -> StartPlan {
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
    let deps = schedule::merge_order(&rec.plan.domains)
        .into_iter()
        .filter(|n| all.contains(n))
        .map(|n| {
            let head = rec.domain(&n).and_then(|d| d.head.clone());
            (n, head)
        })
        .collect();
    StartPlan {
        recorded: rec.domain(name).and_then(|d| d.start_commit.clone()),
        repo_dir: rec.repo.clone(),
        integration: rec.integration_branch.clone(),
        base: rec.base_commit.clone(),
        no_merge: rec.options.no_merge,
        run_id: rec.run_id.clone(),
        deps,
    }
}

/// Where a domain's branch starts: the integration branch (which holds its merged
/// dependencies), or with `--no-merge` the base with its dependencies merged in memory. A domain
/// resumed from an interrupted run keeps the start point it had. Blocking.
fn start_commit(p: StartPlan) -> Result<git2::Oid, String> {
    if let Some(s) = p.recorded {
        return s.parse().map_err(|e| format!("{e}"));
    }
    let base: git2::Oid = p.base.parse().map_err(|e| format!("{e}"))?;
    let repo = git::open(&p.repo_dir).map_err(|e| e.to_string())?;
    if !p.no_merge {
        return git::branch_tip(&repo, &p.integration)
            .ok_or_else(|| format!("integration branch {} is missing", p.integration));
    }
    let mut at = base;
    for (dep, head) in p.deps {
        let Some(head) = head.and_then(|h| h.parse().ok()) else {
            continue;
        };
        if git::is_merged(&repo, head, at) {
            continue;
        }
        let msg = format!("farm: start point with `{dep}` (run {})", p.run_id);
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
