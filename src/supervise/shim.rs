//! The supervisor process itself (see the module docs of [`super`]).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{EndedProcess, Policy, REPORT_FD, Report, guard, reaper};

/// Where reports go: descriptor 3 when agent-farm passed one, nowhere otherwise.
#[derive(Clone)]
struct Out(Option<Arc<Mutex<std::fs::File>>>);

impl Out {
    fn open() -> Out {
        // SAFETY: fcntl on a descriptor number; F_GETFD fails if it is not open.
        let open = unsafe { libc::fcntl(REPORT_FD, libc::F_GETFD) } >= 0;
        if !open {
            return Out(None);
        }
        // SAFETY: descriptor 3 is open and handed to us; the command must not inherit it.
        unsafe {
            libc::fcntl(REPORT_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        let f = unsafe { std::fs::File::from_raw_fd(REPORT_FD) };
        Out(Some(Arc::new(Mutex::new(f))))
    }

    fn send(&self, r: Report) {
        if let Some(f) = &self.0
            && let Ok(line) = serde_json::to_string(&r)
            && let Ok(mut f) = f.lock()
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

const HANDLED: [i32; 8] = [
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGTSTP,
    libc::SIGCONT,
];

fn sigset(sigs: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in sigs {
            libc::sigaddset(&mut set, *s);
        }
        set
    }
}

pub fn main(args: &[OsString]) -> i32 {
    let Some((policy, rest)) = args.split_first() else {
        eprintln!("agent-farm supervisor: usage: __supervise POLICY -- PROGRAM [ARGS…]");
        return 125;
    };
    let argv = match rest.split_first() {
        Some((dash, argv)) if dash == "--" && !argv.is_empty() => argv,
        _ => {
            eprintln!("agent-farm supervisor: usage: __supervise POLICY -- PROGRAM [ARGS…]");
            return 125;
        }
    };
    let policy: Policy = match serde_json::from_str(&policy.to_string_lossy()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("agent-farm supervisor: bad policy: {e}");
            return 125;
        }
    };
    let out = Out::open();
    let me = std::process::id() as i32;
    // SAFETY: plain system calls.
    let farm = unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        libc::getppid()
    };
    let farm_fd = pidfd(farm);
    if unsafe { libc::getppid() } != farm || farm == 1 {
        // agent-farm died before we could watch it: start nothing.
        return 125;
    }
    let mask = sigset(&HANDLED);
    // SAFETY: blocks the handled signals in this (only) thread; the guard thread inherits it.
    let sfd = unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &mask, std::ptr::null_mut());
        libc::signalfd(-1, &mask, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
    };
    if sfd < 0 {
        eprintln!(
            "agent-farm supervisor: signalfd: {}",
            std::io::Error::last_os_error()
        );
        return 125;
    }
    // SAFETY: just created.
    let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };

    let channel = match policy.guard.as_ref().map(|_| {
        guard::kernel_supported().and_then(|()| {
            guard::channel().map_err(|e| format!("cannot make the guard's socket: {e}"))
        })
    }) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(reason)) => {
            out.send(Report::Guard {
                active: false,
                reason: Some(reason),
            });
            None
        }
    };
    let (installer, receiver, child_end) = match channel {
        Some((i, r, c)) => (Some(i), Some(r), Some(c)),
        None => (None, None, None),
    };
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    // SAFETY: only async-signal-safe calls happen in the child: sigprocmask, prctl, seccomp,
    // sendmsg, close (see `Installer::install_in_child`).
    unsafe {
        cmd.pre_exec(move || {
            let empty = sigset(&[]);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            if let Some(i) = &installer {
                i.install_in_child();
            }
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            out.send(Report::NotStarted {
                message: format!("{}: {e}", argv[0].to_string_lossy()),
            });
            return 127;
        }
    };
    drop(child_end);
    let child_pid = child.id() as i32;
    drop(child); // reaped below with waitpid, like every other descendant
    if let (Some(r), Some(g)) = (receiver, policy.guard.clone()) {
        match r.receive() {
            Ok(listener) => {
                out.send(Report::Guard {
                    active: true,
                    reason: None,
                });
                let out = out.clone();
                std::thread::spawn(move || guard::serve(listener, &g, &|r| out.send(r)));
            }
            Err(guard::Lost::Refused(reason)) => out.send(Report::Guard {
                active: false,
                reason: Some(reason),
            }),
            Err(guard::Lost::Ended) => {}
            Err(guard::Lost::Listener) => {
                reaper::signal(child_pid, libc::SIGKILL);
                let mut status = None;
                while status.is_none() {
                    // SAFETY: waitpid for our own child.
                    let mut st = 0;
                    if unsafe { libc::waitpid(child_pid, &mut st, 0) } == child_pid {
                        status = Some(st);
                    } else {
                        break;
                    }
                }
                out.send(Report::NotStarted {
                    message: "the write guard was installed but its listener was lost; the command could not have written anything".into(),
                });
                return 127;
            }
        }
    }

    let mut status: Option<i32> = None;
    let mut forwarded: Vec<i32> = Vec::new();
    let mut kill_now = false;
    loop {
        reap(child_pid, &mut status);
        if status.is_some() || kill_now {
            break;
        }
        let mut fds = vec![libc::pollfd {
            fd: sfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(f) = &farm_fd {
            fds.push(libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: valid pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as _, 1000) };
        if r < 0 {
            continue;
        }
        if fds.get(1).is_some_and(|f| f.revents != 0) || unsafe { libc::getppid() } != farm {
            // agent-farm is gone: nobody watches this command any more.
            kill_now = true;
        }
        for (sig, sender) in read_signals(&sfd) {
            match sig {
                libc::SIGCHLD => {}
                libc::SIGUSR1 => kill_now = true,
                // Job control: the whole tree stops and continues, what left the group too.
                libc::SIGTSTP => stop_tree(me),
                libc::SIGCONT => {
                    for (pid, _) in reaper::descendants(me) {
                        reaper::signal(pid, libc::SIGCONT);
                    }
                }
                s => {
                    // agent-farm signals the whole group, the command included; a signal from
                    // anyone else (sent to the supervisor alone) is passed on, once.
                    if sender != farm && !forwarded.contains(&s) {
                        forwarded.push(s);
                        reaper::signal(child_pid, s);
                    }
                }
            }
        }
    }
    let grace = if kill_now {
        Duration::ZERO
    } else {
        Duration::from_millis(policy.grace_ms)
    };
    let ended = end_tree(me, child_pid, grace, &sfd, farm_fd.as_ref(), &mut status);
    if !ended.is_empty() {
        out.send(Report::Ended { processes: ended });
    }
    exit_like(status.unwrap_or(libc::SIGKILL))
}

fn pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn read_signals(sfd: &OwnedFd) -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    loop {
        // SAFETY: reads whole signalfd_siginfo records into a zeroed one.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let n = unsafe {
            libc::read(
                sfd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                std::mem::size_of::<libc::signalfd_siginfo>(),
            )
        };
        if n != std::mem::size_of::<libc::signalfd_siginfo>() as isize {
            return out;
        }
        out.push((info.ssi_signo as i32, info.ssi_pid as i32));
    }
}

/// Reap every child that ended; the command's wait status goes to `status`.
fn reap(child: i32, status: &mut Option<i32>) {
    loop {
        let mut st = 0;
        // SAFETY: waitpid on any child, not blocking.
        let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        if pid == child {
            *status = Some(st);
        }
    }
}

/// End every descendant of the supervisor: SIGTERM, then SIGKILL for what is left after
/// `grace`. Returns the processes ended that were alive when it began and whose parent was not
/// (a daemon, not each short-lived child it forks meanwhile), the command itself excepted.
fn end_tree(
    me: i32,
    child: i32,
    mut grace: Duration,
    sfd: &OwnedFd,
    farm: Option<&OwnedFd>,
    status: &mut Option<i32>,
) -> Vec<EndedProcess> {
    let start = Instant::now();
    let mut seen: BTreeMap<i32, EndedProcess> = BTreeMap::new();
    // A process that ignores even SIGKILL for long (uninterruptible sleep) is given up on.
    let give_up = grace + Duration::from_secs(10);
    let mut roots: Option<Vec<i32>> = None;
    loop {
        reap(child, status);
        let live = reaper::descendants(me);
        if roots.is_none() {
            let pids: Vec<i32> = live.iter().map(|(p, _)| *p).collect();
            roots = Some(
                live.iter()
                    .filter(|(_, parent)| !pids.contains(parent))
                    .map(|(p, _)| *p)
                    .collect(),
            );
        }
        if live.is_empty() || start.elapsed() > give_up {
            break;
        }
        let late = start.elapsed() >= grace;
        for (pid, _) in live {
            let e = seen.entry(pid).or_insert_with(|| EndedProcess {
                pid: pid as u32,
                command: reaper::command_of(pid),
                signal: String::new(),
            });
            if late && e.signal != "SIGKILL" {
                e.signal = "SIGKILL".into();
                reaper::signal(pid, libc::SIGKILL);
            } else if e.signal.is_empty() {
                e.signal = "SIGTERM".into();
                reaper::signal(pid, libc::SIGTERM);
                // A stopped process acts on SIGTERM only once continued.
                reaper::signal(pid, libc::SIGCONT);
            }
        }
        // Children's ends arrive as SIGCHLD; deeper descendants' are only seen in /proc.
        let mut pfd = libc::pollfd {
            fd: sfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 10) };
        // "Now" from agent-farm (SIGUSR1), or agent-farm gone: the grace is over.
        let farm_gone = farm.is_some_and(|f| {
            let mut p = libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, no wait.
            unsafe { libc::poll(&mut p, 1, 0) > 0 }
        });
        if farm_gone || read_signals(sfd).iter().any(|(s, _)| *s == libc::SIGUSR1) {
            grace = Duration::ZERO;
        }
    }
    reap(child, status);
    let roots = roots.unwrap_or_default();
    seen.into_values()
        .filter(|p| p.pid as i32 != child && roots.contains(&(p.pid as i32)))
        .collect()
}

/// Stop every descendant (job control), rescanning until all are stopped: one that forked
/// between the scan and its parent's stop is caught on the next pass.
fn stop_tree(me: i32) {
    for _ in 0..50 {
        let live = reaper::descendants(me);
        let running: Vec<i32> = live
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| !reaper::stopped(*p))
            .collect();
        if running.is_empty() {
            return;
        }
        for pid in running {
            reaper::signal(pid, libc::SIGSTOP);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Exit the way the command did: its exit code, or its signal.
fn exit_like(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        return libc::WEXITSTATUS(status);
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // SAFETY: restore the default action, unblock and raise: we end as the command did
        // (without a core dump of our own for a command that crashed).
        unsafe {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            libc::signal(sig, libc::SIG_DFL);
            let set = sigset(&[sig]);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(sig);
        }
        return 128 + sig;
    }
    1
}
