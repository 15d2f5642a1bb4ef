//! Running one child process (agent, setup or verify command) in its own process group, with
//! its output appended to a log file, a timeout, cancellation, and a guarantee that nothing it
//! started outlives it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::events::AttemptEnd;

/// Why running work is being stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    pub reason: String,
    /// Skip the grace period: kill at once (second Ctrl-C).
    pub immediate: bool,
    /// A signal asked agent-farm itself to stop (as opposed to fail-fast or the deadline).
    pub interrupt: bool,
}

pub type CancelRx = watch::Receiver<Option<Cancel>>;

#[derive(Debug, Clone)]
pub struct ProcSpec {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    pub timeout: Duration,
    pub grace: Duration,
    /// Stop the process when its log has not grown for this long (it stalled without exiting).
    pub idle_timeout: Option<Duration>,
    /// When set, stdout is read line by line (each line also appended to the log) and sent here.
    pub stdout_lines: Option<tokio::sync::mpsc::Sender<String>>,
    /// Run it under agent-farm's supervisor (Linux), which ends every process it leaves behind
    /// and, with a guard policy, refuses its writes outside its worktree.
    pub supervise: Option<Supervision>,
}

/// How a process is supervised (see [`crate::supervise`]).
#[derive(Debug, Clone)]
pub struct Supervision {
    /// The agent-farm executable (the supervisor is a subcommand of it).
    pub exe: PathBuf,
    pub guard: Option<crate::supervise::GuardPolicy>,
    /// Where the supervisor's live reports (the guard's state, refused writes) go.
    pub reports: Option<tokio::sync::mpsc::UnboundedSender<crate::supervise::Report>>,
}

/// Longest stdout line passed on to the line reader; longer lines are only logged.
const MAX_LINE: usize = 4 * 1024 * 1024;

/// Copy the child's stdout to the log, passing complete lines on. Memory stays bounded by
/// [`MAX_LINE`] whatever the child prints.
async fn pump(
    mut stdout: tokio::process::ChildStdout,
    log: std::fs::File,
    tx: tokio::sync::mpsc::Sender<String>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut log = tokio::fs::File::from_std(log);
    let mut buf = vec![0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let mut overlong = false;
    loop {
        let n = match stdout.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Err(e) = log.write_all(&buf[..n]).await {
            tracing::warn!("cannot write agent log: {e}");
        }
        let mut chunk = &buf[..n];
        while let Some(i) = chunk.iter().position(|b| *b == b'\n') {
            if !overlong && line.len() + i <= MAX_LINE {
                line.extend_from_slice(&chunk[..i]);
                let _ = tx.send(String::from_utf8_lossy(&line).into_owned()).await;
            }
            line.clear();
            overlong = false;
            chunk = &chunk[i + 1..];
        }
        if line.len() + chunk.len() <= MAX_LINE {
            line.extend_from_slice(chunk);
        } else {
            overlong = true;
            line.clear();
        }
    }
    if !line.is_empty() && !overlong {
        let _ = tx.send(String::from_utf8_lossy(&line).into_owned()).await;
    }
    let _ = log.flush().await;
}

/// The outcome of [`run`], with how long the process ran and whether it left processes behind.
#[derive(Debug, Clone)]
pub struct ProcResult {
    pub end: AttemptEnd,
    pub duration: Duration,
    /// Processes of its group still alive after the leader ended (killed by us).
    pub leftovers: Vec<u32>,
    /// Processes the supervisor ended because they outlived the command (any group or session).
    pub ended: Vec<crate::supervise::EndedProcess>,
}

/// Wait until a cancellation is requested.
pub async fn cancelled(rx: &mut CancelRx) -> Cancel {
    loop {
        if let Some(c) = rx.borrow_and_update().clone() {
            return c;
        }
        if rx.changed().await.is_err() {
            // The sender is gone: nobody can cancel any more.
            std::future::pending::<()>().await;
        }
    }
}

/// Wait until a signal interrupts the run (fail-fast and the deadline do not count: they stop
/// agents, not the merge, verify and landing of what finished).
pub async fn interrupted(rx: &mut CancelRx) {
    loop {
        if rx.borrow_and_update().as_ref().is_some_and(|c| c.interrupt) {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn immediate(rx: &mut CancelRx) {
    loop {
        if rx.borrow_and_update().as_ref().is_some_and(|c| c.immediate) {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The process groups of every command running now (agents, setup, verify), for job control.
static GROUPS: std::sync::Mutex<std::collections::BTreeSet<u32>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn groups() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<u32>> {
    GROUPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Send `sig` to the process group of every command running now (SIGTSTP to stop them for a
/// pause, SIGCONT to continue them: their supervisors pass it on to whatever left the group).
/// Returns how many groups were signalled.
pub fn signal_all(sig: Signal) -> usize {
    let g = groups();
    for pgid in g.iter() {
        signal_group(*pgid, sig);
    }
    g.len()
}

/// Asks a supervisor to end its whole tree (SIGUSR1) if `run` is dropped before it ended (its
/// task aborted): the supervisor itself then exits.
struct EndTreeOnDrop {
    pid: u32,
    armed: bool,
}

impl Drop for EndTreeOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let _ = nix::sys::signal::kill(Pid::from_raw(self.pid as i32), Signal::SIGUSR1);
        }
    }
}

/// Removes a group from the registry when the command is done, whatever way `run` returns.
struct Registered(u32);

impl Drop for Registered {
    fn drop(&mut self) {
        groups().remove(&self.0);
    }
}

/// Live, non-zombie members of process group `pgid` (Linux: from /proc).
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((state, _, pgrp)) = crate::supervise::stat_fields(&stat) else {
            continue;
        };
        if pgrp as u32 == pgid && state != "Z" && state != "X" {
            out.push(pid);
        }
    }
    out
}

/// Whether process `pid` runs with `AGENT_FARM_RUN_ID=<run_id>` in its environment, i.e. was
/// started by agent-farm for that run (a recycled pid would not carry it).
pub fn started_for_run(pid: u32, run_id: &str) -> bool {
    let needle = format!("AGENT_FARM_RUN_ID={run_id}");
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
        .unwrap_or(false)
}

/// Kill every process agent-farm started for `run_id` that is still alive (after a crash):
/// agents, their children, setup and verify commands, found by `AGENT_FARM_RUN_ID` in their
/// environment, so that no recycled pid is ever hit. Returns the pids killed.
pub fn kill_run_processes(run_id: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let ours: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me && started_for_run(*pid, run_id))
        .collect();
    let own_group = nix::unistd::getpgrp().as_raw();
    let mut groups: Vec<i32> = ours
        .iter()
        .filter_map(|pid| nix::unistd::getpgid(Some(Pid::from_raw(*pid as i32))).ok())
        .map(|g| g.as_raw())
        .filter(|g| *g > 1 && *g != own_group)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    for g in &groups {
        let _ = killpg(Pid::from_raw(*g), Signal::SIGKILL);
    }
    for pid in &ours {
        let _ = nix::sys::signal::kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
    }
    ours
}

/// Resolves once `log` has not grown for `idle` (never when `idle` is `None`). A process's
/// output has no event to wait on once it goes to a file, so its size is sampled.
async fn stalled(log: &Path, idle: Option<Duration>) -> Duration {
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    let every = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let size = || std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    let mut last = size();
    // Idle time is active time: a farm paused with Ctrl-Z does not make its agents stall.
    let mut since = (tokio::time::Instant::now(), super::pause::total());
    loop {
        super::pause::sleep(every).await;
        let now = size();
        let idle_for = super::pause::active_since(since.0, since.1);
        if now != last {
            last = now;
            since = (tokio::time::Instant::now(), super::pause::total());
        } else if idle_for >= idle {
            return idle_for;
        }
    }
}

/// [`group_members`] off the event loop (it reads all of /proc).
async fn members_async(pgid: u32) -> Vec<u32> {
    tokio::task::spawn_blocking(move || group_members(pgid))
        .await
        .unwrap_or_default()
}

fn signal_group(pgid: u32, sig: Signal) {
    let _ = killpg(Pid::from_raw(pgid as i32), sig);
}

fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Append a line to a log file (used for attempt headers).
pub fn log_line(path: &Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = open_log(path)?;
    writeln!(f, "{line}")
}

/// Run `spec` to completion, timeout or cancellation. `on_start` receives the pid (which is
/// also the process group id) as soon as the process exists.
pub async fn run(spec: &ProcSpec, on_start: impl FnOnce(u32), cancel: &mut CancelRx) -> ProcResult {
    let started = Instant::now();
    let fail = |message: String| ProcResult {
        end: AttemptEnd::SpawnFailed { message },
        duration: started.elapsed(),
        leftovers: Vec::new(),
        ended: Vec::new(),
    };
    let Some((program, args)) = spec.argv.split_first() else {
        return fail("empty command".into());
    };
    if let Some(c) = cancel.borrow().clone() {
        return ProcResult {
            end: AttemptEnd::Cancelled { reason: c.reason },
            duration: Duration::ZERO,
            leftovers: Vec::new(),
            ended: Vec::new(),
        };
    }
    let (out, err) = match open_log(&spec.log).and_then(|f| Ok((f.try_clone()?, f))) {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot open log {}: {e}", spec.log.display())),
    };
    let supervision = spec
        .supervise
        .as_ref()
        .filter(|_| crate::supervise::available());
    let mut supervised = None;
    let mut cmd = match supervision {
        #[cfg(target_os = "linux")]
        Some(sv) => {
            let policy = crate::supervise::Policy {
                grace_ms: spec.grace.as_millis() as u64,
                guard: sv.guard.clone(),
            };
            match crate::supervise::supervised_command(&sv.exe, &policy, &spec.argv) {
                Ok((command, s)) => {
                    supervised = Some(s);
                    command
                }
                Err(e) => return fail(format!("cannot start the supervisor: {e}")),
            }
        }
        _ => {
            let mut c = tokio::process::Command::new(program);
            c.args(args);
            c
        }
    };
    let (stdout, tap) = match spec.stdout_lines.clone() {
        Some(tx) => (Stdio::piped(), Some((tx, out))),
        None => (Stdio::from(out), None),
    };
    cmd.current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::from(err))
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .process_group(0)
        // A supervisor killed outright could not end what left its group; one dropped is told
        // to end its tree instead (`EndTreeOnDrop`).
        .kill_on_drop(supervised.is_none());
    let spawned = cmd.spawn();
    // The supervisor's reports: collected here, the live ones passed on.
    let reports = supervised.as_mut().map(|s| {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        s.started(tx);
        let forward = supervision.and_then(|sv| sv.reports.clone());
        tokio::spawn(async move {
            let (mut ended, mut not_started) = (Vec::new(), None);
            while let Some(r) = rx.recv().await {
                match r {
                    crate::supervise::Report::Ended { processes } => ended.extend(processes),
                    crate::supervise::Report::NotStarted { message } => not_started = Some(message),
                    other => {
                        if let Some(f) = &forward {
                            let _ = f.send(other);
                        }
                    }
                }
            }
            (ended, not_started)
        })
    });
    drop(supervised);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return fail(format!("{program}: {e}")),
    };
    let pgid = child.id().unwrap_or(0);
    {
        let mut g = groups();
        g.insert(pgid);
        // Started while the farm is paused (a task that was already on its way): stop it too.
        // Under the registry's lock, so that a continue cannot slip in between.
        if super::pause::is_paused() {
            signal_group(pgid, Signal::SIGTSTP);
        }
    }
    let _registered = Registered(pgid);
    let mut end_tree = EndTreeOnDrop {
        pid: pgid,
        armed: reports.is_some(),
    };
    let reader = match (tap, child.stdout.take()) {
        (Some((tx, log)), Some(stdout)) => Some(tokio::spawn(pump(stdout, log, tx))),
        _ => None,
    };
    on_start(pgid);
    tracing::debug!(pgid, ?spec.argv, "spawned");

    let mut stop_reason = None;
    let sup = reports.is_some();
    let status = tokio::select! {
        s = child.wait() => s.ok(),
        _ = super::pause::sleep(spec.timeout) => {
            stop_reason = Some(AttemptEnd::TimedOut);
            terminate(&mut child, pgid, spec.grace, cancel, sup).await
        }
        c = cancelled(cancel) => {
            stop_reason = Some(AttemptEnd::Cancelled { reason: c.reason.clone() });
            terminate(&mut child, pgid, if c.immediate { Duration::ZERO } else { spec.grace }, cancel, sup).await
        }
        idle = stalled(&spec.log, spec.idle_timeout) => {
            stop_reason = Some(AttemptEnd::Stalled { idle_ms: idle.as_millis() as u64 });
            terminate(&mut child, pgid, spec.grace, cancel, sup).await
        }
    };
    // Whatever happened, nothing of this group may outlive it.
    // The supervisor has exited (or was killed): nothing left to ask of it.
    end_tree.armed = false;
    let leftovers = members_async(pgid).await;
    if !leftovers.is_empty() {
        tracing::debug!(pgid, ?leftovers, "killing leftover processes");
        signal_group(pgid, Signal::SIGKILL);
    }
    if let Some(r) = reader {
        // The pipe closes once every process holding it is gone; one that left the group
        // could keep it open forever, so give up on the rest of its output after a while.
        let abort = r.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), r)
            .await
            .is_err()
        {
            tracing::warn!(
                pgid,
                "stdout still open after the agent ended; stopped reading it"
            );
            abort.abort();
        }
    }
    let (ended, not_started) = match reports {
        // The reports end with the supervisor, which has ended by now.
        Some(r) => tokio::time::timeout(Duration::from_secs(5), r)
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default(),
        None => Default::default(),
    };
    if let Some(message) = not_started {
        return ProcResult {
            end: AttemptEnd::SpawnFailed { message },
            duration: started.elapsed(),
            leftovers,
            ended,
        };
    }
    let end = stop_reason.unwrap_or_else(|| match status {
        Some(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
            (Some(code), _) => AttemptEnd::Exited { code },
            (None, Some(sig)) => AttemptEnd::Signaled { signal: sig },
            (None, None) => AttemptEnd::Exited { code: -1 },
        },
        None => AttemptEnd::SpawnFailed {
            message: "lost track of the process".into(),
        },
    });
    ProcResult {
        end,
        duration: started.elapsed(),
        leftovers,
        ended,
    }
}

/// SIGTERM the group, wait up to `grace` (or until an immediate cancel), then SIGKILL it. A
/// supervisor (the group's leader) is first asked to end its whole tree at once (SIGUSR1), so
/// that what left the group is ended too; SIGKILL is for a supervisor that does not.
async fn terminate(
    child: &mut tokio::process::Child,
    pgid: u32,
    grace: Duration,
    cancel: &mut CancelRx,
    supervised: bool,
) -> Option<std::process::ExitStatus> {
    let deadline = tokio::time::Instant::now() + grace;
    signal_group(pgid, Signal::SIGTERM);
    // A stopped process only acts on SIGTERM once continued.
    signal_group(pgid, Signal::SIGCONT);
    let mut exited = tokio::select! {
        s = child.wait() => s.ok(),
        // Grace is active time: a pause (Ctrl-Z) meanwhile does not use it up.
        _ = super::pause::sleep(grace) => None,
        _ = immediate(cancel) => None,
    };
    if exited.is_none() && supervised {
        let _ = nix::sys::signal::kill(Pid::from_raw(pgid as i32), Signal::SIGUSR1);
        exited = tokio::time::timeout(Duration::from_secs(3), child.wait())
            .await
            .ok()
            .and_then(|s| s.ok());
    }
    if exited.is_some() {
        // The leader is gone; the rest of its group gets what is left of the grace period.
        // They are not our children, so there is nothing to wait on but their absence.
        while tokio::time::Instant::now() < deadline
            && cancel.borrow().as_ref().is_none_or(|c| !c.immediate)
            && !members_async(pgid).await.is_empty()
        {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if members_async(pgid).await.is_empty() {
            return exited;
        }
    }
    signal_group(pgid, Signal::SIGKILL);
    match exited {
        Some(s) => Some(s),
        None => child.wait().await.ok(),
    }
}

/// Find `program` the way the OS would: a path with a `/` as is (relative to `cwd`), otherwise
/// the first executable file of that name on `PATH`.
pub fn resolve_program(program: &str, cwd: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let p = cwd.join(program);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| executable(p))
}
