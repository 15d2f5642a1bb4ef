//! The per-run lock: a file holding the pid of the process driving the run. A lock whose process
//! is gone is stale and is taken over.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::PreflightError;

#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

impl RunLock {
    pub fn acquire(path: &Path, run_id: &str) -> Result<RunLock, PreflightError> {
        let me = std::process::id();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                PreflightError::Other(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut f) => {
                    let _ = writeln!(f, "{me}");
                    return Ok(RunLock {
                        path: path.to_owned(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    match holder {
                        Some(pid) if pid != me && alive(pid) => {
                            return Err(PreflightError::Locked {
                                run_id: run_id.to_string(),
                                pid,
                                path: path.to_owned(),
                            });
                        }
                        // Stale (dead holder or unreadable): take it over.
                        _ => {
                            tracing::info!(?holder, "taking over a stale lock {}", path.display());
                            let _ = std::fs::remove_file(path);
                        }
                    }
                }
                Err(e) => {
                    return Err(PreflightError::Other(format!(
                        "cannot create lock {}: {e}",
                        path.display()
                    )));
                }
            }
        }
        Err(PreflightError::Other(format!(
            "cannot take the lock {}",
            path.display()
        )))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
