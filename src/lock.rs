//! The per-run lock: an exclusive `flock` on `<run-dir>/lock`, held for as long as the process
//! drives the run. The kernel releases it when the process dies, so a stale lock never blocks
//! anyone and two processes can never both take it. The file holds the holder's pid, for messages.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Why a run's lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "run `{run_id}` is in use by process {pid} (lock {path}{}); wait for it to finish",
        holders_note(holders, *pid)
    )]
    Held {
        run_id: String,
        /// The pid the lock file names (the process that took the lock).
        pid: u32,
        path: PathBuf,
        /// The processes that hold the lock file open now, with their command lines.
        holders: Vec<(u32, String)>,
    },
    #[error("cannot use lock {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Say who really holds the lock when that is not (only) the process the file names: a lock
/// is held by every process that has the file open, children included.
fn holders_note(holders: &[(u32, String)], pid: u32) -> String {
    let others: Vec<String> = holders
        .iter()
        .filter(|(p, _)| *p != pid)
        .map(|(p, cmd)| format!("{p} `{cmd}`"))
        .collect();
    if others.is_empty() {
        String::new()
    } else {
        format!(", held open by {}", others.join(", "))
    }
}

/// The processes (other than this one) that have `path` open, from `/proc/*/fd`.
fn holders_of(path: &Path) -> Vec<(u32, String)> {
    let target = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let fds = std::fs::read_dir(e.path().join("fd"));
        let holds = fds
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == target));
        if holds {
            let cmd = std::fs::read(e.path().join("cmdline"))
                .map(|b| {
                    b.split(|c| *c == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            out.push((pid, cmd));
        }
    }
    out
}

#[derive(Debug)]
pub struct RunLock {
    _lock: Flock<std::fs::File>,
}

impl RunLock {
    pub fn acquire(path: &Path, run_id: &str) -> Result<RunLock, LockError> {
        let other = |error: std::io::Error| LockError::Io {
            path: path.to_owned(),
            error,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(other)?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(other)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                lock.set_len(0).map_err(other)?;
                lock.rewind().map_err(other)?;
                writeln!(lock, "{}", std::process::id()).map_err(other)?;
                Ok(RunLock { _lock: lock })
            }
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                drop(file);
                Err(LockError::Held {
                    run_id: run_id.to_string(),
                    pid: text.trim().parse().unwrap_or(0),
                    path: path.to_owned(),
                    holders: holders_of(path),
                })
            }
            Err((_, e)) => Err(other(std::io::Error::from(e))),
        }
    }
}

/// The repository-wide landing lock: runs side by side land one after the other, each planning,
/// verifying and landing against an `into` nobody else moves meanwhile. Blocks until free.
#[derive(Debug)]
pub struct LandLock {
    _lock: Flock<std::fs::File>,
}

impl LandLock {
    fn open(common_dir: &Path) -> std::io::Result<std::fs::File> {
        let dir = common_dir.join("agent-farm");
        std::fs::create_dir_all(&dir)?;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("land.lock"))
    }

    pub fn acquire(common_dir: &Path) -> std::io::Result<LandLock> {
        let file = Self::open(common_dir)?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map(|l| LandLock { _lock: l })
            .map_err(|(_, e)| std::io::Error::from(e))
    }

    /// Take the landing lock if nobody holds it; `Ok(None)` when a run is landing now.
    pub fn try_acquire(common_dir: &Path) -> std::io::Result<Option<LandLock>> {
        let file = Self::open(common_dir)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(Some(LandLock { _lock: l })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(std::io::Error::from(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = RunLock::acquire(&path, "r").unwrap();
        match RunLock::acquire(&path, "r") {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, std::process::id()),
            other => panic!("expected Locked, got {other:?}"),
        }
        // Every process that has the lock file open is named (a lock is held by the children
        // that inherited its descriptor too).
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdin(std::fs::File::open(&path).unwrap())
            .spawn()
            .unwrap();
        match RunLock::acquire(&path, "r") {
            Err(e @ LockError::Held { .. }) => {
                let LockError::Held { holders, .. } = &e else {
                    unreachable!()
                };
                assert!(holders.iter().any(|(p, _)| *p == child.id()), "{holders:?}");
                assert!(
                    e.to_string()
                        .contains(&format!("held open by {}", child.id())),
                    "{e}"
                );
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        let _ = child.kill();
        let _ = child.wait();
        drop(first);
        RunLock::acquire(&path, "r").unwrap();
    }
}
