//! Random kills: agent-farm SIGKILLed from outside (no `AGENT_FARM_FAULT`) at random moments,
//! then `resume` and `clean`, then the repository checked with git itself.
//!
//! One uninterrupted run in a separate repository gives the expected tree, exit code, duration
//! and event list. Each trial then builds the same repository, starts `agent-farm run` in its
//! own process group and kills it either at a random instant (uniform in [0, the uninterrupted
//! run's duration]) or the moment a chosen event line appears in `events.jsonl` (watched from
//! outside in a poll loop), in one of three ways: the farm process alone, its process group, or
//! the farm and every process of the run (found by `AGENT_FARM_RUN_ID` in `/proc/*/environ`).
//! One trial in five also kills the first `resume` at a random instant. Then `resume` (to the
//! end) and `clean`, and the invariants below, each failure naming the trial and its replay.
//!
//! `RANDOM_KILL_TRIALS` (default 24), `RANDOM_KILL_SEED` (decimal or 0x-hex),
//! `RANDOM_KILL_ONLY` (trial indices, comma-separated: replay those alone),
//! `RANDOM_KILL_BASE_MS` (use this instead of the measured duration of the uninterrupted run,
//! for exact replays of instant kills), `RANDOM_KILL_JOBS` (trials at once, default 1),
//! `RANDOM_KILL_KEEP=1` (keep the temp dirs of failing trials). `scripts/random-kill` runs
//! hundreds of trials and tabulates them; see TESTING.md, "Random kills".
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;

use common::*;

const DEFAULT_TRIALS: usize = 24;
const DEFAULT_SEED: u64 = 0x005e_ed0f_a6e7_fa4d;
/// How long one `resume`/`clean` may take before the trial calls it hung.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);
/// How long a watched run may take to reach its target event.
const WATCH_LIMIT: Duration = Duration::from_secs(60);
/// Event kills: half right at the event line, half up to this much later.
const MAX_JITTER_US: u64 = 4000;

/// The phases a kill can hit, in run order (from the last event line on disk at the kill).
const PHASES: [&str; 7] = [
    "startup", "worktree", "agents", "merge", "verify", "landing", "cleanup",
];
/// The phase of a trial whose run ended by itself before the kill.
const EXITED: &str = "exited";

// ---------------------------------------------------------------------------------------------
// A tiny seeded PRNG (splitmix64): every trial's choices follow from (base seed, trial index).

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant at these sizes).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn trial_seed(base: u64, trial: usize) -> u64 {
    Rng(base ^ (trial as u64 + 1).wrapping_mul(0xd1b5_4a32_d192_ed03)).next()
}

// ---------------------------------------------------------------------------------------------
// The scenario.

/// Three domains (api depends on db), a verify step, agents that take a moment, and one agent
/// leaving a child that hangs until the farm stops it (so a leftover process cannot go unseen).
fn scenario() -> TestRepo {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "verify: test -f db/schema.sql && test -f api/users.rs && sleep 0.2\n",
        &[
            domain(
                "db",
                "db/**",
                "write db/schema.sql create table users\nsleep 400ms\nwrite db/seed.sql insert",
                "",
            ),
            domain(
                "api",
                "api/**",
                "wait-for db/schema.sql 1ms\nsleep 300ms\nwrite api/users.rs list users",
                "depends_on: [db]",
            ),
            // The pid file lands beside the repository and its worktrees (<tmp>/docs-child.pid),
            // outside every zone the write guard protects; the path is the same in every
            // repository.
            domain(
                "docs",
                "docs/**",
                "spawn-child ../../../docs-child.pid\nsleep 250ms\nwrite docs/users.md users\nsleep 350ms\nappend docs/users.md more",
                "",
            ),
        ]
        .concat(),
    ));
    repo
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn runs_root(repo: &TestRepo) -> PathBuf {
    repo.common_dir().join("agent-farm/runs")
}

/// The run of this repository (a trial repository holds at most one), once its directory exists.
fn run_id_of(repo: &TestRepo) -> Option<String> {
    let mut ids: Vec<String> = std::fs::read_dir(runs_root(repo))
        .ok()?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids.pop()
}

/// Start agent-farm in its own process group, output to files in the scratch dir.
fn spawn(repo: &TestRepo, args: &[&str], tag: &str) -> Child {
    let out = std::fs::File::create(repo.scratch.join(format!("{tag}.out"))).unwrap();
    let err = std::fs::File::create(repo.scratch.join(format!("{tag}.err"))).unwrap();
    repo.farm_cmd(&repo.root, args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .unwrap()
}

fn output_of(repo: &TestRepo, tag: &str) -> (String, String) {
    let read = |ext: &str| {
        std::fs::read_to_string(repo.scratch.join(format!("{tag}.{ext}"))).unwrap_or_default()
    };
    (read("out"), read("err"))
}

/// Exit code of a finished command, `None` if it was ended by a signal or hung.
struct Finished {
    code: Option<i32>,
    hung: bool,
}

/// Run agent-farm to its end (bounded: a command still running at `limit` is killed, with its
/// process group, and reported as hung).
fn run_bounded(repo: &TestRepo, args: &[&str], tag: &str, limit: Duration) -> Finished {
    let mut child = spawn(repo, args, tag);
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Finished {
                code: st.code(),
                hung: false,
            };
        }
        if start.elapsed() > limit {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
            return Finished {
                code: None,
                hung: true,
            };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------------
// Events.

/// The phase an event belongs to.
fn phase_of(ev: &Value) -> &'static str {
    match ev["event"].as_str().unwrap_or("") {
        "run_started" | "warning" | "resumed" | "domain_reset" | "merge_requested" => "startup",
        "domain_preparing" | "worktree_ready" => "worktree",
        "merged" | "conflict" | "conflict_predicted" => "merge",
        "verify_started" | "verify_finished" => "verify",
        "landed" | "not_landed" => "landing",
        "worktree_removed" | "branch_deleted" | "branch_kept" | "run_finished" | "interrupted" => {
            "cleanup"
        }
        "phase" => match ev["phase"].as_str().unwrap_or("") {
            "merging" => "merge",
            "verifying" => "verify",
            "landing" => "landing",
            "cleaning" | "finished" | "interrupted" => "cleanup",
            _ => "agents",
        },
        // agent_started, agent_finished, committed, domain_finished, domain_skipped, live
        // activity (tool uses, ownership, collisions) and anything new.
        _ => "agents",
    }
}

/// What identifies an event for targeting: its kind, and for `phase` events the phase.
fn label_of(ev: &Value) -> String {
    let kind = ev["event"].as_str().unwrap_or("?");
    match ev["phase"].as_str() {
        Some(p) if kind == "phase" => format!("phase={p}"),
        _ => kind.to_string(),
    }
}

/// A complete `events.jsonl`: its lines (parsed, or the raw text of a line that is not one JSON
/// object), and whether the file ends in the middle of a line.
struct EventLog {
    lines: Vec<Result<Value, String>>,
    partial_tail: bool,
}

fn read_event_log(path: &Path) -> EventLog {
    let bytes = std::fs::read(path).unwrap_or_default();
    let partial_tail = !bytes.is_empty() && !bytes.ends_with(b"\n");
    let complete = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(i) => &bytes[..=i],
        None => &bytes[..0],
    };
    let header = agent_farm::events::Header::line();
    let lines = complete
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        // The header line (the log's schema version) is no event.
        .skip_while(|l| *l == header.as_bytes())
        .map(|l| {
            serde_json::from_slice::<Value>(l)
                .ok()
                .filter(|v| v["event"].is_string())
                .ok_or_else(|| String::from_utf8_lossy(l).into_owned())
        })
        .collect();
    EventLog {
        lines,
        partial_tail,
    }
}

/// Follows a run's `events.jsonl` from outside: only complete lines count (a line is written
/// with more than one `write`, so a reader can see half of one).
#[derive(Default)]
struct EventTail {
    file: Option<std::fs::File>,
    pending: Vec<u8>,
    events: Vec<Value>,
}

impl EventTail {
    fn poll(&mut self, repo: &TestRepo) {
        if self.file.is_none() {
            let Some(id) = run_id_of(repo) else { return };
            self.file = std::fs::File::open(runs_root(repo).join(id).join("events.jsonl")).ok();
        }
        let Some(f) = self.file.as_mut() else { return };
        if f.read_to_end(&mut self.pending).is_err() {
            return;
        }
        while let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            if let Ok(v) = serde_json::from_slice::<Value>(&line)
                && v["event"].is_string()
            {
                self.events.push(v);
            }
        }
    }

    fn count(&self, label: &str) -> usize {
        self.events.iter().filter(|e| label_of(e) == label).count()
    }
}

// ---------------------------------------------------------------------------------------------
// The uninterrupted run.

#[derive(Clone, Debug)]
struct Target {
    /// An event label (see [`label_of`]), or one of [`STARTUP_MARKS`].
    label: String,
    nth: usize,
    /// When it came in the uninterrupted run, in ms after spawn.
    offset_ms: u64,
}

/// Startup moments before the first event, watched as files: the run's directory appears (its
/// lock is taken), the run's integration branch appears (before `run.json` is written).
const STARTUP_MARKS: [&str; 2] = ["run-dir", "integration-ref"];

struct Baseline {
    tree: String,
    code: i32,
    duration_ms: u64,
    /// phase → the events of that phase (each occurrence a target).
    targets: BTreeMap<&'static str, Vec<Target>>,
    /// Every file the agents wrote, with its content on `main`.
    files: Vec<(String, String)>,
    events: Vec<String>,
}

fn baseline() -> Baseline {
    let repo = scenario();
    let before = repo.git(&["rev-parse", "main"]);
    let start = Instant::now();
    let spawned_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let run = run_bounded(&repo, &["run", "--progress", "plain"], "run", COMMAND_LIMIT);
    let measured = start.elapsed().as_millis() as u64;
    let (_, err) = output_of(&repo, "run");
    let code = run.code.unwrap_or(-1);
    assert_eq!(code, 0, "the uninterrupted run: {err}");
    let id = repo.last_run();
    assert!(
        processes_of_run(&id).is_empty(),
        "the uninterrupted run left processes: {:?}",
        processes_of_run(&id)
    );
    let log = read_event_log(&repo.run_dir().join("events.jsonl"));
    let events: Vec<Value> = log.lines.into_iter().flatten().collect();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut targets: BTreeMap<&'static str, Vec<Target>> = BTreeMap::new();
    for m in STARTUP_MARKS {
        targets.entry("startup").or_default().push(Target {
            label: m.to_string(),
            nth: 1,
            offset_ms: 0,
        });
    }
    for e in &events {
        let label = label_of(e);
        if label == "warning" {
            continue;
        }
        let n = seen.entry(label.clone()).or_default();
        *n += 1;
        let offset_ms = e["at_ms"].as_u64().unwrap_or(0).saturating_sub(spawned_ms);
        targets.entry(phase_of(e)).or_default().push(Target {
            label,
            nth: *n,
            offset_ms,
        });
    }
    for t in targets.values_mut() {
        t.sort_by(|a, b| (&a.label, a.nth).cmp(&(&b.label, b.nth)));
    }
    let files = repo
        .git(&["diff", "--name-only", &before, "main"])
        .lines()
        .filter(|f| *f != "farm.yaml")
        .map(|f| (f.to_string(), repo.show(&format!("main:{f}"))))
        .collect();
    let duration_ms = std::env::var("RANDOM_KILL_BASE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(measured);
    Baseline {
        tree: repo.git(&["rev-parse", "main^{tree}"]),
        code,
        duration_ms,
        targets,
        files,
        events: events.iter().map(label_of).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Trials.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The farm process alone.
    Pid,
    /// The farm's process group.
    Group,
    /// The farm, then every process of the run.
    Run,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Pid, Mode::Group, Mode::Run];

    fn name(self) -> &'static str {
        match self {
            Mode::Pid => "pid",
            Mode::Group => "group",
            Mode::Run => "run",
        }
    }
}

#[derive(Clone, Debug)]
enum Timing {
    /// This many milliseconds after spawn.
    At(u64),
    /// Right after this event line (or startup mark) appears, plus a jitter (µs) that samples
    /// the operation the farm starts next.
    After(Target, u64),
}

impl Timing {
    fn label(&self) -> String {
        match self {
            Timing::At(ms) => format!("at:{ms}ms"),
            Timing::After(t, 0) => format!("after:{}#{}", t.label, t.nth),
            Timing::After(t, us) => format!("after:{}#{}+{us}us", t.label, t.nth),
        }
    }

    /// About when it comes in an uninterrupted run, in ms after spawn.
    fn offset_ms(&self) -> u64 {
        match self {
            Timing::At(ms) => *ms,
            Timing::After(t, us) => t.offset_ms + us / 1000,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Timing::At(_) => "instant",
            Timing::After(..) => "event",
        }
    }
}

#[derive(Clone, Debug)]
struct TrialPlan {
    index: usize,
    seed: u64,
    mode: Mode,
    timing: Timing,
    /// Kill the first `resume` too: how, and when (ms after its spawn).
    resume_kill: Option<(Mode, u64)>,
}

fn plan_trial(base: &Baseline, base_seed: u64, index: usize) -> TrialPlan {
    let seed = trial_seed(base_seed, index);
    let mut rng = Rng(seed);
    let mode = Mode::ALL[rng.below(3) as usize];
    let timing = if rng.below(2) == 0 {
        Timing::At(rng.below(base.duration_ms + 1))
    } else {
        // Every phase alike, then any event occurrence of that phase.
        let phases: Vec<&&str> = base.targets.keys().collect();
        let phase = phases[rng.below(phases.len() as u64) as usize];
        let ts = &base.targets[*phase];
        let t = ts[rng.below(ts.len() as u64) as usize].clone();
        // Half of them the moment the line appears, half up to MAX_JITTER_US later.
        let jitter = match rng.below(2) {
            0 => 0,
            _ => rng.below(MAX_JITTER_US + 1),
        };
        Timing::After(t, jitter)
    };
    // The first resume is killed within about the time the rest of the run needs.
    let left_ms = base.duration_ms.saturating_sub(timing.offset_ms()) + 200;
    let resume_kill =
        (rng.below(5) == 0).then(|| (Mode::ALL[rng.below(3) as usize], rng.below(left_ms + 1)));
    TrialPlan {
        index,
        seed,
        mode,
        timing,
        resume_kill,
    }
}

enum Moment {
    /// Kill now.
    Now,
    /// The process ended by itself first.
    Exited,
    /// The target never came within the limit (kill anyway; a harness note).
    TimedOut,
}

/// Wait for the moment to kill `child`: an instant after `spawned`, or the target event line.
fn wait_for_moment(
    repo: &TestRepo,
    child: &mut Child,
    spawned: Instant,
    timing: &Timing,
) -> Moment {
    let mut tail = EventTail::default();
    loop {
        match timing {
            Timing::At(ms) => {
                let due = spawned + Duration::from_millis(*ms);
                let now = Instant::now();
                if now >= due {
                    return Moment::Now;
                }
                // A kill timing delay, not a synchronisation: the exit check keeps it short.
                std::thread::sleep((due - now).min(Duration::from_millis(1)));
            }
            Timing::After(t, jitter_us) => {
                let reached = match t.label.as_str() {
                    "run-dir" => run_id_of(repo).is_some(),
                    "integration-ref" => run_id_of(repo).is_some_and(|id| {
                        repo.common_dir()
                            .join(format!("refs/heads/farm/{id}/integration"))
                            .exists()
                    }),
                    label => {
                        tail.poll(repo);
                        tail.count(label) >= t.nth
                    }
                };
                if reached {
                    let due = Instant::now() + Duration::from_micros(*jitter_us);
                    while Instant::now() < due {
                        std::hint::spin_loop();
                    }
                    return Moment::Now;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        if child.try_wait().unwrap().is_some() {
            return Moment::Exited;
        }
        if spawned.elapsed() > WATCH_LIMIT {
            return Moment::TimedOut;
        }
    }
}

/// SIGKILL per `mode`. `child` is not reaped yet, so its pid (and group) cannot be reused.
fn send_kill(mode: Mode, child: &Child, repo: &TestRepo) {
    let pid = Pid::from_raw(child.id() as i32);
    match mode {
        Mode::Pid => {
            let _ = kill(pid, Signal::SIGKILL);
        }
        Mode::Group => {
            let _ = killpg(pid, Signal::SIGKILL);
        }
        Mode::Run => {
            let _ = kill(pid, Signal::SIGKILL);
            if let Some(id) = run_id_of(repo) {
                for p in processes_of_run(&id) {
                    let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
                }
            }
        }
    }
}

/// After a `Run` kill: the run's processes may have spawned others meanwhile; sweep until none.
fn sweep_run(repo: &TestRepo) {
    let Some(id) = run_id_of(repo) else { return };
    let start = Instant::now();
    loop {
        let left = processes_of_run(&id);
        if left.is_empty() || start.elapsed() > Duration::from_secs(5) {
            return;
        }
        for p in left {
            let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Run `args` in the background and kill it per `mode` at `timing`; returns whether the kill
/// ended it (false: it had exited by itself) and a harness note if the target never came.
fn start_and_kill(
    repo: &TestRepo,
    args: &[&str],
    tag: &str,
    mode: Mode,
    timing: &Timing,
) -> (bool, ExitStatus, Option<String>) {
    let mut child = spawn(repo, args, tag);
    let spawned = Instant::now();
    let mut note = None;
    match wait_for_moment(repo, &mut child, spawned, timing) {
        Moment::Exited => {}
        Moment::Now => send_kill(mode, &child, repo),
        Moment::TimedOut => {
            note = Some(format!(
                "{} not seen within {WATCH_LIMIT:?}",
                timing.label()
            ));
            send_kill(mode, &child, repo);
        }
    }
    let status = child.wait().unwrap();
    let killed = status.signal() == Some(Signal::SIGKILL as i32);
    if killed && mode == Mode::Run {
        sweep_run(repo);
    }
    (killed, status, note)
}

struct Snapshot {
    refs: String,
    main: String,
}

fn snapshot(repo: &TestRepo) -> Snapshot {
    Snapshot {
        refs: git_all(repo, &["for-each-ref", "--format=%(refname) %(objectname)"]).1,
        main: git_all(repo, &["rev-parse", "main"]).1,
    }
}

#[derive(Default)]
struct Outcome {
    phase: String,
    killed: bool,
    record: bool,
    resume_killed: Option<bool>,
    resume_code: Option<i32>,
    clean_code: Option<i32>,
    /// Broken invariants, each starting with its number (I1…I11).
    broken: Vec<String>,
    /// Notes about the harness itself (a target that never came); not invariant breaks.
    notes: Vec<String>,
    /// The end of resume's stderr, for failing trials.
    resume_tail: String,
    kept: Option<PathBuf>,
    secs: f64,
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => all_files(&p, out),
            Ok(_) => out.push(p),
            Err(_) => {}
        }
    }
}

fn git_all(repo: &TestRepo, args: &[&str]) -> (bool, String) {
    let out = repo.git_output(args);
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text.trim().to_string())
}

fn run_trial(base: &Baseline, plan: &TrialPlan) -> Outcome {
    let started = Instant::now();
    let repo = scenario();
    let before = snapshot(&repo);
    let mut o = Outcome::default();

    // The kill.
    let (killed, status, note) = start_and_kill(
        &repo,
        &["run", "--progress", "plain"],
        "run",
        plan.mode,
        &plan.timing,
    );
    o.killed = killed;
    o.notes.extend(note);
    let run_id = run_id_of(&repo);
    let run_dir = run_id.as_ref().map(|id| runs_root(&repo).join(id));
    let events_path = run_dir.as_ref().map(|d| d.join("events.jsonl"));
    let log = events_path
        .as_deref()
        .map(read_event_log)
        .unwrap_or(EventLog {
            lines: Vec::new(),
            partial_tail: false,
        });
    o.phase = if !killed {
        if status.code() != Some(base.code) {
            o.notes
                .push(format!("the run exited by itself with {status}"));
        }
        EXITED.to_string()
    } else {
        match log.lines.last() {
            Some(Ok(e)) => phase_of(e).to_string(),
            Some(Err(_)) => "agents".to_string(),
            None => "startup".to_string(),
        }
    };
    o.record = run_dir
        .as_ref()
        .is_some_and(|d| d.join("run.json").is_file());

    // Resume (killed once, sometimes), to the end.
    if let Some((mode, ms)) = plan.resume_kill {
        let (k, _, _) = start_and_kill(
            &repo,
            &["resume", "--progress", "plain"],
            "resume-killed",
            mode,
            &Timing::At(ms),
        );
        o.resume_killed = Some(k);
    }
    let resume = run_bounded(
        &repo,
        &["resume", "--progress", "plain"],
        "resume",
        COMMAND_LIMIT,
    );
    o.resume_code = resume.code;
    let (_, resume_err) = output_of(&repo, "resume");
    let tail: Vec<&str> = resume_err.lines().rev().take(12).collect();
    o.resume_tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    if resume.hung {
        o.broken
            .push(format!("I2 resume hung for {COMMAND_LIMIT:?}"));
    }

    // Clean: by the last run; without a record `clean` has no run to name, so `--all`.
    let clean_args: &[&str] = if o.record {
        &["clean"]
    } else {
        &["clean", "--all"]
    };
    let clean = run_bounded(&repo, clean_args, "clean", COMMAND_LIMIT);
    o.clean_code = clean.code;
    if clean.code != Some(0) {
        let (out, err) = output_of(&repo, "clean");
        o.broken.push(format!(
            "I11 `agent-farm {}` exited {:?}{}: {}",
            clean_args.join(" "),
            clean.code,
            if clean.hung { " (hung)" } else { "" },
            format!("{out}{err}").trim()
        ));
    }

    check(&repo, base, &before, run_id.as_deref(), &mut o);

    // Event log: one JSON object per line.
    if let Some(p) = &events_path {
        let log = read_event_log(p);
        for (i, l) in log.lines.iter().enumerate() {
            if let Err(text) = l {
                o.broken.push(format!(
                    "I10 events.jsonl line {} is not one JSON event: {}",
                    i + 1,
                    text.chars().take(200).collect::<String>()
                ));
            }
        }
        if log.partial_tail {
            o.broken
                .push("I10 events.jsonl ends in the middle of a line".to_string());
        }
        // And the library's reader reads it back, whole.
        match agent_farm::events::read(p) {
            Ok(l) if l.torn == 0 && l.unknown == 0 => {}
            Ok(l) => o.broken.push(format!(
                "I10 events.jsonl read back with {} torn and {} unknown line(s)",
                l.torn, l.unknown
            )),
            // A run killed before its first event has no log.
            Err(e) if e.is_not_found() => {}
            Err(e) => o
                .broken
                .push(format!("I10 events.jsonl cannot be read back: {e}")),
        }
    }

    // Whatever is left of the run goes now (processes this trial started, by run id).
    if let Some(id) = &run_id {
        for p in processes_of_run(id) {
            let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
        }
    }
    let mut repo = repo;
    if !o.broken.is_empty() && std::env::var_os("RANDOM_KILL_KEEP").is_some() {
        o.kept = repo.tmp.take().map(|t| t.keep());
    }
    o.secs = started.elapsed().as_secs_f64();
    o
}

/// The invariants, checked with git itself after `resume` and `clean`.
fn check(
    repo: &TestRepo,
    base: &Baseline,
    before: &Snapshot,
    run_id: Option<&str>,
    o: &mut Outcome,
) {
    let b = &mut o.broken;
    let succeeded = o.resume_code == Some(base.code);
    if o.record {
        // 1. The user's branch exactly as an uninterrupted run lands it.
        let (_, tree) = git_all(repo, &["rev-parse", "main^{tree}"]);
        if tree != base.tree {
            let (_, main) = git_all(repo, &["log", "-1", "--format=%h %s", "main"]);
            b.push(format!(
                "I1 main^{{tree}} {tree} is not the uninterrupted run's {}; main is at {main}",
                base.tree
            ));
        }
        // 2. Resume's exit code.
        if !succeeded {
            b.push(format!(
                "I2 resume exited {:?}, the uninterrupted run {}",
                o.resume_code, base.code
            ));
        }
        // 8. No commit lost.
        for (f, text) in &base.files {
            let out = repo.git_output(&["show", &format!("main:{f}")]);
            let got = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                b.push(format!("I8 {f} missing on main"));
            } else if got.trim() != text {
                b.push(format!(
                    "I8 {f} on main is {:?}, expected {text:?}",
                    got.trim()
                ));
            }
        }
        // 9. No farm branch or ref after clean, when the run succeeded.
        if succeeded {
            let (_, refs) = git_all(
                repo,
                &[
                    "for-each-ref",
                    "--format=%(refname)",
                    "refs/heads/farm",
                    "refs/farm",
                ],
            );
            if !refs.is_empty() {
                b.push(format!(
                    "I9 farm refs left after clean: {}",
                    refs.lines().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    } else {
        // Killed before the run record existed: nothing started, so the repository is
        // exactly as before the run (every ref, `main` included).
        let now = snapshot(repo);
        if now.main != before.main {
            b.push(format!(
                "I1 no run record, yet main moved {} -> {}",
                before.main, now.main
            ));
        }
        if now.refs != before.refs {
            let was: Vec<&str> = before.refs.lines().collect();
            let extra: Vec<&str> = now.refs.lines().filter(|l| !was.contains(l)).collect();
            let gone: Vec<&str> = was
                .iter()
                .copied()
                .filter(|l| !now.refs.lines().any(|n| n == *l))
                .collect();
            b.push(format!(
                "I1/I9 no run record, yet refs differ from before the run: added {extra:?}, removed {gone:?}"
            ));
        }
    }

    // 3. No lock file left anywhere in the git dir (agent-farm's flock files excepted).
    let common = repo.common_dir();
    let mut files = Vec::new();
    all_files(&common, &mut files);
    for f in files {
        let rel = f.strip_prefix(&common).unwrap_or(&f);
        if rel.to_string_lossy().ends_with(".lock") && rel != Path::new("agent-farm/land.lock") {
            b.push(format!("I3 lock file left: .git/{}", rel.display()));
        }
    }

    // 4. fsck (dangling objects are fine).
    let (ok, text) = git_all(repo, &["fsck", "--full", "--no-progress"]);
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("dangling"))
        .filter(|l| {
            ["error", "missing", "broken", "points at nothing", "fatal"]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect();
    if !ok || !bad.is_empty() {
        b.push(format!("I4 git fsck (ok={ok}): {}", bad.join(" | ")));
    }

    // 5. The user's checkout: clean, HEAD on main.
    let (_, status) = git_all(repo, &["status", "--porcelain"]);
    if !status.is_empty() {
        b.push(format!(
            "I5 git status --porcelain: {}",
            status.lines().collect::<Vec<_>>().join(", ")
        ));
    }
    let (_, sym) = git_all(repo, &["symbolic-ref", "HEAD"]);
    if sym != "refs/heads/main" {
        b.push(format!("I5 HEAD is no longer refs/heads/main: {sym}"));
    }
    let (_, head) = git_all(repo, &["rev-parse", "HEAD"]);
    let (_, main) = git_all(repo, &["rev-parse", "main"]);
    if head != main {
        b.push(format!("I5 HEAD {head} != main {main}"));
    }

    // 6. Worktrees: only the main one, no admin dir, nothing to prune, no domain dirs.
    let (_, wts) = git_all(repo, &["worktree", "list", "--porcelain"]);
    let wts: Vec<&str> = wts
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .collect();
    if wts.len() != 1 {
        b.push(format!("I6 git worktree list: {wts:?}"));
    }
    let admin: Vec<String> = std::fs::read_dir(common.join("worktrees"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if !admin.is_empty() {
        b.push(format!("I6 .git/worktrees/ holds {admin:?}"));
    }
    let (_, prune) = git_all(repo, &["worktree", "prune", "--dry-run", "-v"]);
    if !prune.is_empty() {
        b.push(format!(
            "I6 git worktree prune --dry-run -v: {}",
            prune.lines().collect::<Vec<_>>().join(" | ")
        ));
    }
    if let Some(id) = run_id {
        let root = repo
            .root
            .parent()
            .unwrap()
            .join(format!(
                "{}.farm",
                repo.root.file_name().unwrap().to_string_lossy()
            ))
            .join(id);
        let left: Vec<String> = std::fs::read_dir(&root)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if !left.is_empty() {
            b.push(format!("I6 {} holds {left:?}", root.display()));
        }
    }

    // 7. No process of the run alive (a process SIGKILLed by clean may take a moment to go;
    // every process of this scenario that outlives resume is one that never ends by itself).
    if let Some(id) = run_id {
        let start = Instant::now();
        let mut left = processes_of_run(id);
        while !left.is_empty() && start.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(10));
            left = processes_of_run(id);
        }
        if !left.is_empty() {
            let what: Vec<String> = left
                .iter()
                .map(|p| format!("{p} `{}`", cmdline(*p)))
                .collect();
            b.push(format!(
                "I7 processes of the run alive: {}",
                what.join(", ")
            ));
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

fn summary_line(p: &TrialPlan, o: &Outcome) -> String {
    let code = |c: Option<i32>| c.map_or("-".to_string(), |c| c.to_string());
    format!(
        "random-kill trial={} seed={:#018x} mode={} timing={} phase={} killed={} record={} resume_kill={} resume={} clean={} secs={:.1} result={}",
        p.index,
        p.seed,
        p.mode.name(),
        p.timing.label(),
        o.phase,
        if o.killed { "yes" } else { "no" },
        if o.record { "yes" } else { "no" },
        match (p.resume_kill, o.resume_killed) {
            (Some((m, ms)), Some(k)) =>
                format!("{}@{ms}ms{}", m.name(), if k { "" } else { "(exited)" }),
            _ => "no".to_string(),
        },
        code(o.resume_code),
        code(o.clean_code),
        o.secs,
        if o.broken.is_empty() { "ok" } else { "FAIL" }
    )
}

fn table(title: &str, rows: &[(String, usize, usize)]) {
    println!("{title:<10} trials  passed  failed");
    for (name, n, ok) in rows {
        println!("{name:<10} {n:>6}  {ok:>6}  {:>6}", n - ok);
    }
}

#[test]
fn random_kills_then_resume_and_clean() {
    let trials = env_u64("RANDOM_KILL_TRIALS").unwrap_or(DEFAULT_TRIALS as u64) as usize;
    let seed = env_u64("RANDOM_KILL_SEED").unwrap_or(DEFAULT_SEED);
    let jobs = env_u64("RANDOM_KILL_JOBS").unwrap_or(1).max(1) as usize;
    let only: Option<Vec<usize>> = std::env::var("RANDOM_KILL_ONLY")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect());
    let started = Instant::now();
    let base = baseline();
    let indices: Vec<usize> = match &only {
        Some(v) => v.clone(),
        None => (0..trials).collect(),
    };
    println!(
        "random-kill: seed={seed:#018x} trials={} jobs={jobs} uninterrupted run: exit {}, {} ms, {} events, tree {}",
        indices.len(),
        base.code,
        base.duration_ms,
        base.events.len(),
        base.tree
    );
    let plans: Vec<TrialPlan> = indices
        .iter()
        .map(|i| plan_trial(&base, seed, *i))
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(TrialPlan, Outcome)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(plans.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(p) = plans.get(i) else { break };
                    let o = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_trial(&base, p)
                    })) {
                        Ok(o) => o,
                        Err(e) => {
                            let msg = e
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            Outcome {
                                phase: "harness".into(),
                                broken: vec![format!("H the harness panicked: {msg}")],
                                ..Default::default()
                            }
                        }
                    };
                    let mut block = summary_line(p, &o);
                    for n in &o.notes {
                        block.push_str(&format!("\n    note: {n}"));
                    }
                    for b in &o.broken {
                        block.push_str(&format!("\n    broke: {b}"));
                    }
                    if !o.broken.is_empty() {
                        for l in o.resume_tail.lines() {
                            block.push_str(&format!("\n    resume| {l}"));
                        }
                        if let Some(k) = &o.kept {
                            block.push_str(&format!("\n    kept: {}", k.display()));
                        }
                    }
                    println!("{block}");
                    results.lock().unwrap().push((p.clone(), o));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(p, _)| p.index);

    let count = |f: &dyn Fn(&TrialPlan, &Outcome) -> bool| {
        let n = results.iter().filter(|(p, o)| f(p, o)).count();
        let ok = results
            .iter()
            .filter(|(p, o)| f(p, o) && o.broken.is_empty())
            .count();
        (n, ok)
    };
    let mut rows = Vec::new();
    for ph in PHASES.iter().chain([&EXITED, &"harness"]) {
        let (n, ok) = count(&|_, o| o.phase == *ph);
        if n > 0 || PHASES.contains(ph) {
            rows.push((ph.to_string(), n, ok));
        }
    }
    println!();
    table("phase", &rows);
    let rows: Vec<_> = Mode::ALL
        .iter()
        .map(|m| {
            let (n, ok) = count(&|p, _| p.mode == *m);
            (m.name().to_string(), n, ok)
        })
        .collect();
    println!();
    table("mode", &rows);
    let rows: Vec<_> = ["instant", "event"]
        .iter()
        .map(|k| {
            let (n, ok) = count(&|p, _| p.timing.kind() == *k);
            (k.to_string(), n, ok)
        })
        .collect();
    println!();
    table("timing", &rows);
    let (n, ok) = count(&|p, _| p.resume_kill.is_some());
    println!();
    table("resume", &[("killed".to_string(), n, ok)]);
    let mut by_invariant: BTreeMap<String, usize> = BTreeMap::new();
    for (_, o) in &results {
        let mut seen: Vec<&str> = o
            .broken
            .iter()
            .map(|b| b.split_whitespace().next().unwrap_or(""))
            .collect();
        seen.sort();
        seen.dedup();
        for s in seen {
            *by_invariant.entry(s.to_string()).or_default() += 1;
        }
    }
    if !by_invariant.is_empty() {
        println!();
        println!("invariant  trials broken");
        for (k, v) in &by_invariant {
            println!("{k:<10} {v:>6}");
        }
    }
    let failed: Vec<&(TrialPlan, Outcome)> = results
        .iter()
        .filter(|(_, o)| !o.broken.is_empty())
        .collect();
    println!(
        "\nrandom-kill: {} trials, {} passed, {} failed, {:.1}s",
        results.len(),
        results.len() - failed.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    let replay: Vec<String> = failed
        .iter()
        .map(|(p, o)| {
            format!(
                "trial {} (mode {}, {}, phase {}): {}\n  replay: RANDOM_KILL_SEED={seed:#x} RANDOM_KILL_ONLY={} RANDOM_KILL_BASE_MS={} cargo test --test random_kill -- --nocapture",
                p.index,
                p.mode.name(),
                p.timing.label(),
                o.phase,
                o.broken.join("; "),
                p.index,
                base.duration_ms
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} random-kill trials broke an invariant:\n{}",
        failed.len(),
        results.len(),
        replay.join("\n")
    );
}
