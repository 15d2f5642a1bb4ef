//! The per-run lock: an exclusive `flock` on `<run-dir>/lock`, held for as long as the process
//! drives the run. The kernel releases it when the process dies, so a stale lock never blocks
//! anyone and two processes can never both take it. The file holds the holder's pid, for messages.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Why a run's lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("run `{run_id}` is in use by process {pid} (lock {path}); wait for it to finish")]
    Held {
        run_id: String,
        pid: u32,
        path: PathBuf,
    },
    #[error("cannot use lock {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
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
                Err(LockError::Held {
                    run_id: run_id.to_string(),
                    pid: text.trim().parse().unwrap_or(0),
                    path: path.to_owned(),
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
    pub fn acquire(common_dir: &Path) -> std::io::Result<LandLock> {
        let dir = common_dir.join("agent-farm");
        std::fs::create_dir_all(&dir)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("land.lock"))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map(|l| LandLock { _lock: l })
            .map_err(|(_, e)| std::io::Error::from(e))
    }

    /// Take the landing lock if nobody holds it; `Ok(None)` when a run is landing now.
    pub fn try_acquire(common_dir: &Path) -> std::io::Result<Option<LandLock>> {
        let dir = common_dir.join("agent-farm");
        std::fs::create_dir_all(&dir)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("land.lock"))?;
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
        drop(first);
        RunLock::acquire(&path, "r").unwrap();
    }
}
