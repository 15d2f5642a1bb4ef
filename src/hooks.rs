//! The repository's commit hooks, run for the commits agent-farm makes in a domain's worktree the
//! way `git commit -F <file>` runs them: `pre-commit`, `prepare-commit-msg <file> message`,
//! `commit-msg <file>`, then `post-commit`. Blocking; called by [`crate::git::commit_all`].
//!
//! Where git looks, agent-farm looks: `core.hooksPath` (`~/` expanded, a relative path taken
//! from the root of the worktree the hook runs in), else `<common git dir>/hooks`. A hook that is
//! missing or not executable is skipped, as git skips it. A hook runs in the root of the domain's
//! worktree, stdin from `/dev/null`, with the environment `git commit` gives its hooks:
//! `GIT_DIR` (the worktree's git dir), `GIT_INDEX_FILE` (its index), `GIT_EDITOR=:`,
//! `GIT_PREFIX=` and the author (`GIT_AUTHOR_NAME`, `GIT_AUTHOR_EMAIL`, `GIT_AUTHOR_DATE`), on top
//! of agent-farm's own. Its stdout and stderr are kept together, in order, for the report.
//!
//! Merges and landings made by agent-farm run no hooks: they are made in memory, without a
//! checkout or an index for a `pre-merge-commit` hook to look at, as `git merge-tree` plus
//! `git commit-tree` and `git update-ref` would make them (README, "Hooks").

use std::ffi::OsString;
use std::io::{Read, Seek};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How much of a hook's output a report carries (its last lines; the rest is elided).
const OUTPUT_LINES: usize = 20;
const OUTPUT_BYTES: usize = 4000;

/// One hook that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRun {
    /// The hook's name (`pre-commit`).
    pub hook: &'static str,
    /// The file that ran.
    pub path: PathBuf,
    /// Whether it exited 0.
    pub success: bool,
    /// How it ended, in words (`exit code 1`, `killed by signal 9`, `could not be run: …`).
    pub status: String,
    /// Its stdout and stderr together, the last lines of it when long.
    pub output: String,
}

/// The commit hooks of one worktree, ready to run.
#[derive(Debug, Clone)]
pub struct CommitHooks {
    dir: PathBuf,
    workdir: PathBuf,
    env: Vec<(String, OsString)>,
}

/// Where git runs hooks from for the repository `repo` (a worktree at `workdir`).
pub fn hooks_dir(repo: &git2::Repository, workdir: &Path) -> PathBuf {
    let configured = repo
        .config()
        .ok()
        .and_then(|c| c.get_path("core.hooksPath").ok());
    match configured {
        Some(p) if p.is_absolute() => p,
        Some(p) => workdir.join(p),
        None => repo.commondir().join("hooks"),
    }
}

fn git_date(t: git2::Time) -> String {
    let off = t.offset_minutes();
    let sign = if off < 0 { '-' } else { '+' };
    let off = off.abs();
    format!("@{} {sign}{:02}{:02}", t.seconds(), off / 60, off % 60)
}

impl CommitHooks {
    /// The hooks of the worktree at `workdir` (whose repository is `repo`), for a commit by
    /// `author`.
    pub fn new(repo: &git2::Repository, workdir: &Path, author: &git2::Signature) -> CommitHooks {
        let git_dir = repo.path().to_path_buf();
        let git_dir = git_dir.components().collect::<PathBuf>();
        let index = git_dir.join("index");
        let lossy = |s: Result<&str, _>| OsString::from(s.unwrap_or_default());
        CommitHooks {
            dir: hooks_dir(repo, workdir),
            workdir: workdir.to_path_buf(),
            env: vec![
                ("GIT_DIR".into(), git_dir.into_os_string()),
                ("GIT_INDEX_FILE".into(), index.into_os_string()),
                ("GIT_EDITOR".into(), ":".into()),
                ("GIT_PREFIX".into(), "".into()),
                ("GIT_AUTHOR_NAME".into(), lossy(author.name())),
                ("GIT_AUTHOR_EMAIL".into(), lossy(author.email())),
                ("GIT_AUTHOR_DATE".into(), git_date(author.when()).into()),
            ],
        }
    }

    /// The file git would run for `hook`, if there is one it would run.
    pub fn find(&self, hook: &str) -> Option<PathBuf> {
        let path = self.dir.join(hook);
        let meta = std::fs::metadata(&path).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(path)
    }

    /// Run `hook` with `args`, if the repository has it. Waits for it to end.
    pub fn run(&self, hook: &'static str, args: &[&Path]) -> Option<HookRun> {
        let path = self.find(hook)?;
        let ended = self.spawn(&path, args);
        let (success, status, output) = match ended {
            Ok((status, output)) => (status.success(), describe(status), output),
            Err(e) => (false, format!("could not be run: {e}"), String::new()),
        };
        Some(HookRun {
            hook,
            path,
            success,
            status,
            output,
        })
    }

    fn spawn(
        &self,
        path: &Path,
        args: &[&Path],
    ) -> std::io::Result<(std::process::ExitStatus, String)> {
        let mut out = tempfile::tempfile()?;
        let command = |program: &Path, first: Option<&Path>| -> std::io::Result<Command> {
            let mut c = Command::new(program);
            c.args(first)
                .args(args)
                .current_dir(&self.workdir)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(Stdio::from(out.try_clone()?))
                .stderr(Stdio::from(out.try_clone()?));
            Ok(c)
        };
        let child = match command(path, None)?.spawn() {
            // A script without a `#!` line: git hands it to the shell, so do we.
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOEXEC) => {
                command(Path::new("/bin/sh"), Some(path))?.spawn()
            }
            r => r,
        };
        let status = child?.wait()?;
        out.rewind()?;
        let mut bytes = Vec::new();
        out.read_to_end(&mut bytes)?;
        Ok((status, tail(&String::from_utf8_lossy(&bytes))))
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "ended".into(),
    }
}

/// The last lines of `text` (at most [`OUTPUT_LINES`] lines and about [`OUTPUT_BYTES`] bytes),
/// trimmed, with a note when some were left off.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let mut kept: Vec<&str> = Vec::new();
    let mut bytes = 0;
    for l in lines.iter().rev() {
        if kept.len() == OUTPUT_LINES || bytes + l.len() > OUTPUT_BYTES {
            break;
        }
        bytes += l.len() + 1;
        kept.push(l);
    }
    kept.reverse();
    let left_off = lines.len() - kept.len();
    let mut s = String::new();
    if left_off > 0 {
        s.push_str(&format!("[{left_off} earlier line(s) left off]\n"));
    }
    s.push_str(kept.join("\n").trim_start_matches('\n'));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_are_found_where_git_looks_and_run_as_git_runs_them() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        let wt = repo.workdir().unwrap().to_path_buf();
        let sig =
            git2::Signature::new("A U Thor", "a@example.com", &git2::Time::new(1, 0)).unwrap();
        let hooks_dir = repo.path().join("hooks");
        std::fs::create_dir_all(&hooks_dir).unwrap();
        let install = |name: &str, text: &str, mode: u32| {
            let p = hooks_dir.join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        // No `#!` line: git hands it to the shell.
        install(
            "pre-commit",
            "echo \"in $(pwd) as $GIT_AUTHOR_NAME\"; exit 0\n",
            0o755,
        );
        install("commit-msg", "#!/bin/sh\necho refused >&2\nexit 2\n", 0o755);
        // Not executable: skipped, as git skips it.
        install("post-commit", "#!/bin/sh\nexit 1\n", 0o644);
        let hooks = CommitHooks::new(&repo, &wt, &sig);
        let pre = hooks.run("pre-commit", &[]).unwrap();
        assert!(pre.success, "{pre:?}");
        assert_eq!(
            pre.output,
            format!("in {} as A U Thor", wt.canonicalize().unwrap().display())
        );
        let msg = hooks.run("commit-msg", &[Path::new("msg")]).unwrap();
        assert!(!msg.success);
        assert_eq!(
            (msg.status.as_str(), msg.output.as_str()),
            ("exit code 2", "refused")
        );
        assert!(hooks.run("post-commit", &[]).is_none());
        assert!(hooks.run("prepare-commit-msg", &[]).is_none());
        // core.hooksPath, relative: from the worktree's root.
        repo.config()
            .unwrap()
            .set_str("core.hooksPath", "my-hooks")
            .unwrap();
        assert_eq!(super::hooks_dir(&repo, &wt), wt.join("my-hooks"));
    }

    #[test]
    fn long_output_keeps_its_end() {
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let t = tail(&text);
        assert!(
            t.starts_with("[10 earlier line(s) left off]\nline 11\n"),
            "{t}"
        );
        assert!(t.ends_with("line 30"));
        assert_eq!(tail("  one\n\n"), "  one");
        assert_eq!(
            git_date(git2::Time::new(1700000000, -150)),
            "@1700000000 -0230"
        );
    }
}
