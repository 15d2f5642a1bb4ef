//! The supervisor: the process agent-farm starts in place of every agent, setup and verify
//! command (`agent-farm __supervise POLICY -- PROGRAM ARGS…`, the way nextest re-executes
//! itself to set a child up). It gives two guarantees that do not depend on the command's
//! process group, session or environment, all of which a process can change:
//!
//! - **Nothing outlives the command.** The supervisor is a child subreaper
//!   (`PR_SET_CHILD_SUBREAPER`): every process the command starts stays its descendant, even
//!   after a double fork, `setsid` and `env -i`. When the command ends (or is stopped), every
//!   descendant still alive gets SIGTERM, then SIGKILL after the grace period, and each one
//!   ended is reported. If agent-farm itself dies, the supervisor sees it (a pidfd) and ends
//!   the whole tree, so no agent runs on unwatched.
//! - **No write outside the worktree** (agents only, when the guard is on). A seccomp filter
//!   hands every system call that could write to a path (`open` for writing, `creat`,
//!   `rename`, `unlink`, `mkdir`, `link`, `symlink`, `truncate`, … and their `*at` forms) to
//!   the supervisor, which resolves the path the way the kernel will and refuses, with
//!   `EACCES`, writes into protected zones: the other domains' worktrees, the main checkout,
//!   and git's shared directory (refs, index, config) except what the domain's own commits
//!   need. Each refusal is reported with the process and path; agent-farm charges it to the
//!   domain. The filter is inherited by every descendant and cannot be removed.
//!
//! It is containment against mistakes, not a security boundary: a process can race a path
//! between the check and the kernel's own lookup, or write through `io_uring` or an already
//! open descriptor; such writes still show up in the worktree audits. Reports go to file
//! descriptor 3 as JSON lines ([`Report`]).

// The system interfaces this needs (seccomp, signalfd, pidfd, descriptor passing) have no
// safe wrapper in our dependencies; the unsafe code of the crate is here and only here.
#[cfg(target_os = "linux")]
mod bpf;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod guard;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod reaper;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod shim;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod spawn;
#[cfg(target_os = "linux")]
pub use spawn::{Supervised, supervised_command};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::vocab::EndedProcess;

/// The name of the hidden subcommand that runs the supervisor.
pub const SUBCOMMAND: &str = "__supervise";

/// The descriptor the supervisor writes its [`Report`]s to.
pub const REPORT_FD: i32 = 3;

/// What the supervisor is asked to do, passed as its first argument (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// How long descendants get between SIGTERM and SIGKILL.
    pub grace_ms: u64,
    /// Where writes are refused; `None`: no guard (setup and verify commands).
    pub guard: Option<GuardPolicy>,
}

/// Where a guarded command may not write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardPolicy {
    /// Always writable, even inside a zone: the domain's worktree, its own branch's ref files and
    /// git's entry for its worktree.
    pub own: Vec<PathBuf>,
    /// Protected zones, checked in order; the first that contains a path refuses it.
    pub zones: Vec<Zone>,
}

/// A protected directory tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    pub path: PathBuf,
    /// What it is, for the report: "the main checkout", "git's shared directory"…
    pub label: String,
    /// Subtrees of `path` that stay writable (git's object store).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<PathBuf>,
}

impl GuardPolicy {
    /// The zone that forbids writing `path` (absolute, symlinks resolved), if any.
    pub fn forbids(&self, path: &Path) -> Option<&Zone> {
        if self.own.iter().any(|o| path.starts_with(o)) {
            return None;
        }
        // The first zone holding the path decides, its exceptions included (git's object store
        // is inside git's directory, which is inside the main checkout).
        let zone = self.zones.iter().find(|z| path.starts_with(&z.path))?;
        (!zone.except.iter().any(|e| path.starts_with(e))).then_some(zone)
    }
}

/// One line the supervisor writes to [`REPORT_FD`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum Report {
    /// Whether the write guard is in force (sent once, before the command starts, when a guard
    /// was asked for).
    Guard {
        active: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A write the guard refused (`EACCES`).
    Blocked {
        pid: u32,
        command: String,
        /// The system call: open, rename, unlink, mkdir…
        op: String,
        path: PathBuf,
        zone: String,
    },
    /// Processes that outlived the command and were ended.
    Ended { processes: Vec<EndedProcess> },
    /// The command could not be started (the supervisor then exits with 127).
    NotStarted { message: String },
}

/// A process's state, parent and process group from its `/proc/<pid>/stat` line
/// (`pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses).
pub fn stat_fields(stat: &str) -> Option<(&str, i32, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let state = f.next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// Whether this platform has the supervisor (Linux).
pub fn available() -> bool {
    cfg!(target_os = "linux")
}

/// Run the supervisor: `args` are its command-line arguments after the subcommand (the policy,
/// `--`, the program and its arguments). Returns the exit code to exit with.
pub fn main(args: &[std::ffi::OsString]) -> i32 {
    #[cfg(target_os = "linux")]
    {
        shim::main(args)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = args;
        eprintln!("agent-farm: the supervisor needs Linux");
        125
    }
}

/// `p` with symbolic links resolved as far as it exists, the rest appended (a zone or worktree
/// may not exist yet when the policy is made, yet the guard compares resolved paths).
pub fn canonical(p: &Path) -> PathBuf {
    let p = normalize(p);
    let mut existing = p.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(existing) {
            let mut out = c;
            for r in rest.iter().rev() {
                out.push(r);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return p,
        }
    }
}

/// The path `p` with `.` and `..` taken out lexically (for a path that does not exist yet).
pub fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> GuardPolicy {
        GuardPolicy {
            own: vec![
                "/r.farm/run/a".into(),
                "/r/.git/worktrees/farm-run-a".into(),
                "/r/.git/refs/heads/farm/run/a".into(),
                "/r/.git/refs/heads/farm/run/a.lock".into(),
            ],
            zones: vec![
                Zone {
                    path: "/r/.git".into(),
                    label: "git's shared directory".into(),
                    except: vec!["/r/.git/objects".into()],
                },
                Zone {
                    path: "/r.farm".into(),
                    label: "the farm's worktrees".into(),
                    except: vec![],
                },
                Zone {
                    path: "/r".into(),
                    label: "the main checkout".into(),
                    except: vec![],
                },
            ],
        }
    }

    #[test]
    fn own_paths_are_writable_inside_zones() {
        let p = policy();
        for ok in [
            "/r.farm/run/a/src/x.rs",
            "/r.farm/run/a",
            "/r/.git/objects/ab/cdef",
            "/r/.git/worktrees/farm-run-a/index.lock",
            "/r/.git/refs/heads/farm/run/a.lock",
            "/tmp/scratch",
            "/home/u/.claude/x.json",
            "/rr/x",
        ] {
            assert_eq!(p.forbids(Path::new(ok)), None, "{ok}");
        }
    }

    #[test]
    fn zones_forbid_in_order() {
        let p = policy();
        let z = |s: &str| p.forbids(Path::new(s)).map(|z| z.label.as_str());
        assert_eq!(z("/r.farm/run/b/x"), Some("the farm's worktrees"));
        assert_eq!(z("/r.farm/run/ab/x"), Some("the farm's worktrees"));
        assert_eq!(z("/r/src/main.rs"), Some("the main checkout"));
        assert_eq!(
            z("/r/.git/refs/heads/main.lock"),
            Some("git's shared directory")
        );
        assert_eq!(
            z("/r/.git/refs/heads/farm/run/b.lock"),
            Some("git's shared directory")
        );
        assert_eq!(z("/r/.git/index.lock"), Some("git's shared directory"));
        assert_eq!(
            z("/r/.git/worktrees/farm-run-b/HEAD"),
            Some("git's shared directory")
        );
    }

    #[test]
    fn canonical_resolves_what_exists() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, d.path().join("link")).unwrap();
        let got = canonical(&d.path().join("link/not/yet"));
        assert_eq!(got, real.canonicalize().unwrap().join("not/yet"));
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(
            normalize(Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
        assert_eq!(normalize(Path::new("/../a")), PathBuf::from("/a"));
    }

    #[test]
    fn reports_round_trip_as_json_lines() {
        let r = Report::Blocked {
            pid: 7,
            command: "bash -c echo".into(),
            op: "open".into(),
            path: "/r/x".into(),
            zone: "the main checkout".into(),
        };
        let line = serde_json::to_string(&r).unwrap();
        assert!(line.starts_with("{\"report\":\"blocked\""), "{line}");
        assert_eq!(serde_json::from_str::<Report>(&line).unwrap(), r);
    }
}
