//! agent-farm's side: starting a command under the supervisor and reading its reports.

use std::io::BufRead;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::{Policy, REPORT_FD, Report, SUBCOMMAND};

/// The report pipe of a command set up to run under the supervisor. Call
/// [`Supervised::started`] once the command is spawned (or failed to), so that the reports end
/// when the supervisor does.
pub struct Supervised {
    read: Option<OwnedFd>,
    write: Option<OwnedFd>,
}

/// `exe __supervise POLICY -- argv…`, with a pipe on the supervisor's descriptor 3.
pub fn supervised_command(
    exe: &Path,
    policy: &Policy,
    argv: &[String],
) -> std::io::Result<(tokio::process::Command, Supervised)> {
    let policy = serde_json::to_string(policy).map_err(std::io::Error::other)?;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just created, owned here.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let w = write.as_raw_fd();
    let mut command = tokio::process::Command::new(exe);
    command.arg(SUBCOMMAND).arg(policy).arg("--").args(argv);
    // SAFETY: dup2 and fcntl are async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            if w == REPORT_FD {
                libc::fcntl(w, libc::F_SETFD, 0);
            } else if libc::dup2(w, REPORT_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok((
        command,
        Supervised {
            read: Some(read),
            write: Some(write),
        },
    ))
}

impl Supervised {
    /// Close our copy of the write end and read the supervisor's reports on a thread of their
    /// own, each passed to `tx`; the thread ends when the supervisor does.
    pub fn started(&mut self, tx: tokio::sync::mpsc::UnboundedSender<Report>) {
        self.write = None;
        let Some(read) = self.read.take() else {
            return;
        };
        std::thread::spawn(move || {
            let f = std::io::BufReader::new(std::fs::File::from(read));
            for line in f.lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Report>(&line) {
                    Ok(r) => {
                        let _ = tx.send(r);
                    }
                    Err(e) => tracing::warn!("unreadable supervisor report {line:?}: {e}"),
                }
            }
        });
    }
}
