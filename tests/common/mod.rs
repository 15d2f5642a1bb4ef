//! Test harness: hermetic temporary git repositories and a runner for the built binary.
//!
//! Git is hermetic: `HOME` points into the temp dir, `GIT_CONFIG_GLOBAL`/`GIT_CONFIG_SYSTEM` at
//! /dev/null, author, committer and dates are fixed. Set `KEEP_TEMP_DIR=1` to keep the temp dirs
//! of a failing test for inspection (their paths are printed).
#![allow(dead_code, clippy::unwrap_used)]
pub mod mock_api;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_agent-farm");

/// Events as the JSON objects `events.jsonl` holds (`at_ms`, `event` and the event's fields).
pub fn as_values(log: &agent_farm::events::EventLog) -> Vec<Value> {
    log.events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect()
}

pub struct TestRepo {
    pub tmp: Option<tempfile::TempDir>,
    /// The repository's working tree.
    pub root: PathBuf,
    /// A scratch directory outside the repository (markers, pid files).
    pub scratch: PathBuf,
    home: PathBuf,
}

impl Drop for TestRepo {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_TEMP_DIR").is_some()
            && let Some(t) = self.tmp.take()
        {
            eprintln!("kept temp dir {}", t.keep().display());
        }
    }
}

fn hermetic(cmd: &mut Command, home: &Path) {
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_SYSTEM", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Farm Tester")
        .env("GIT_AUTHOR_EMAIL", "tester@example.com")
        .env("GIT_AUTHOR_DATE", "@1700000000 +0000")
        .env("GIT_COMMITTER_NAME", "Farm Tester")
        .env("GIT_COMMITTER_EMAIL", "tester@example.com")
        .env("GIT_COMMITTER_DATE", "@1700000000 +0000")
        .env("LANG", "C");
}

impl TestRepo {
    /// A repository on branch `main` with one commit holding `files`.
    pub fn with_files(files: &[(&str, &str)]) -> TestRepo {
        let tmp = tempfile::Builder::new()
            .prefix("agent-farm-test-")
            .tempdir()
            .unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let root = base.join("repo");
        let scratch = base.join("scratch");
        let home = base.join("home");
        for d in [&root, &scratch, &home] {
            std::fs::create_dir_all(d).unwrap();
        }
        let repo = TestRepo {
            tmp: Some(tmp),
            root,
            scratch,
            home,
        };
        repo.git(&["init", "-q", "-b", "main"]);
        for (p, t) in files {
            repo.write(p, t);
        }
        repo.commit_all("initial commit");
        repo
    }

    pub fn new() -> TestRepo {
        Self::with_files(&[
            ("README.md", "# test repo\n"),
            ("src/api/mod.rs", "// api\n"),
            ("src/ui/index.html", "<h1>ui</h1>\n"),
            ("docs/index.md", "# docs\n"),
        ])
    }

    pub fn git_output(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("git");
        hermetic(&mut cmd, &self.home);
        cmd.args(args).current_dir(&self.root).output().unwrap()
    }

    /// Run git in the repository; panics unless it succeeds. Returns trimmed stdout.
    pub fn git(&self, args: &[&str]) -> String {
        let out = self.git_output(args);
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root.join(rel)).unwrap()
    }

    pub fn commit_all(&self, msg: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", msg]);
    }

    pub fn write_plan(&self, yaml: &str) {
        self.write("farm.yaml", yaml);
        self.commit_all("add plan");
    }

    /// Run the agent-farm binary in the repository with a hermetic environment.
    pub fn farm(&self, args: &[&str]) -> Run {
        self.farm_in(&self.root, args)
    }

    pub fn farm_in(&self, dir: &Path, args: &[&str]) -> Run {
        let out = self.farm_cmd(dir, args).output().unwrap();
        Run::from(out)
    }

    /// Start agent-farm in the background (output discarded), for tests that act while it runs.
    pub fn spawn_farm(&self, args: &[&str]) -> std::process::Child {
        self.farm_cmd(&self.root, args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    pub fn farm_cmd(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        hermetic(&mut cmd, &self.home);
        cmd.args(args).current_dir(dir);
        cmd
    }

    pub fn common_dir(&self) -> PathBuf {
        self.root.join(".git")
    }

    pub fn run_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.common_dir().join("agent-farm/runs"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// The most recent run (ids sort by start only to the second: its record's start decides).
    pub fn last_run(&self) -> String {
        agent_farm::record::latest_run(&self.common_dir(), &self.run_ids())
            .expect("a run was recorded")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.common_dir()
            .join("agent-farm/runs")
            .join(self.last_run())
    }

    pub fn record(&self) -> Value {
        let text = std::fs::read_to_string(self.run_dir().join("run.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    pub fn report(&self) -> Value {
        let text = std::fs::read_to_string(self.run_dir().join("report.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// The latest run's events, read with the library's reader, as JSON values.
    pub fn events(&self) -> Vec<Value> {
        as_values(&agent_farm::events::read(&self.run_dir().join("events.jsonl")).unwrap())
    }

    /// The events of the latest run so far (none before its log exists): for runs in progress.
    pub fn live_events(&self) -> Vec<Value> {
        let Some(id) = self.run_ids().pop() else {
            return Vec::new();
        };
        let path = self
            .common_dir()
            .join("agent-farm/runs")
            .join(id)
            .join("events.jsonl");
        agent_farm::events::read(&path)
            .map(|log| as_values(&log))
            .unwrap_or_default()
    }

    pub fn branches(&self) -> Vec<String> {
        self.git(&["branch", "--format=%(refname:short)"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn farm_branches(&self) -> Vec<String> {
        self.branches()
            .into_iter()
            .filter(|b| b.starts_with("farm/"))
            .collect()
    }

    pub fn worktrees(&self) -> Vec<String> {
        self.git(&["worktree", "list", "--porcelain"])
            .lines()
            .filter_map(|l| l.strip_prefix("worktree "))
            .map(str::to_owned)
            .collect()
    }

    /// Files in the tree of `rev`.
    pub fn files_at(&self, rev: &str) -> Vec<String> {
        self.git(&["ls-tree", "-r", "--name-only", rev])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn show(&self, rev_path: &str) -> String {
        self.git(&["show", rev_path])
    }

    /// Nothing the farm created is left behind: one worktree, no farm branches, fsck clean.
    pub fn assert_nothing_created(&self) {
        assert_eq!(
            self.worktrees().len(),
            1,
            "stray worktrees: {:?}",
            self.worktrees()
        );
        assert!(
            self.farm_branches().is_empty(),
            "stray branches: {:?}",
            self.farm_branches()
        );
        self.git(&["fsck", "--no-progress"]);
    }

    /// Every ref git holds of a run (its branches and its hidden refs), per `git for-each-ref`.
    pub fn run_refs(&self, run_id: &str) -> Vec<String> {
        let mut refs: Vec<String> = self
            .git(&[
                "for-each-ref",
                "--format=%(refname)",
                &format!("refs/heads/farm/{run_id}/"),
                &format!("refs/farm/{run_id}/"),
            ])
            .lines()
            .map(str::to_owned)
            .collect();
        refs.sort();
        refs
    }

    /// The full names of the refs a report lists as kept; each must say why and how to inspect.
    pub fn kept_refs(&self, report: &Value) -> Vec<String> {
        let mut refs: Vec<String> = report["kept"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                let name = k["name"].as_str().unwrap();
                assert!(!k["reason"].as_str().unwrap().is_empty(), "{k}");
                let inspect = k["inspect"].as_str().unwrap_or_default();
                assert!(inspect.starts_with("git ") && inspect.contains(name), "{k}");
                if name.starts_with("refs/") {
                    name.to_string()
                } else {
                    format!("refs/heads/{name}")
                }
            })
            .collect();
        refs.sort();
        refs
    }

    /// `git worktree list`, `git branch` and `git fsck` agree with the run's report.
    pub fn assert_matches_report(&self) {
        let report = self.report();
        let branches = self.branches();
        for d in report["domains"].as_array().unwrap() {
            let branch = d["branch"].as_str().unwrap();
            let kept = d["branch_kept"].as_bool().unwrap();
            assert_eq!(
                branches.iter().any(|b| b == branch),
                kept,
                "branch {branch}: report says kept={kept}, git has {branches:?}"
            );
        }
        assert_eq!(
            self.kept_refs(&report),
            self.run_refs(report["run_id"].as_str().unwrap()),
            "the report's kept branches are what git holds of the run"
        );
        // Agents ran within their domains' work, which is counted only while the farm ran.
        let m = &report["metrics"];
        assert!(m["agent_ms"].as_u64() <= m["busy_ms"].as_u64(), "{m}");
        let integration = report["integration_branch"].as_str().unwrap();
        let landed = report["landed"].as_bool();
        if landed == Some(true) {
            assert!(
                !branches.iter().any(|b| b == integration),
                "landed, yet {integration} remains"
            );
        }
        let rec = self.record();
        let keep = rec["options"]["keep_worktrees"].as_bool().unwrap();
        if !keep {
            assert_eq!(
                self.worktrees().len(),
                1,
                "stray worktrees: {:?}",
                self.worktrees()
            );
        }
        self.git(&["fsck", "--no-progress"]);
        assert!(
            self.git(&["worktree", "prune", "--dry-run", "-v"])
                .is_empty()
        );
    }
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// Wait until `cond` holds, polling with a bounded deadline (never a fixed sleep).
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_owned));
            !matches!(state.as_deref(), Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

pub fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A plan with the sim agent and the given domains YAML (already indented as list items).
pub fn sim_plan(extra_top: &str, domains: &str) -> String {
    sim_plan_with("grace: 2s", extra_top, domains)
}

/// [`sim_plan`] with extra `agent:` settings (`key: value` lines).
pub fn sim_plan_with(agent: &str, extra_top: &str, domains: &str) -> String {
    let agent: String = agent.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "version: 1\nagent:\n  preset: sim\n  timeout: 60s\n  retry_backoff: 10ms\n{agent}{extra_top}domains:\n{domains}"
    )
}

/// One domain entry for [`sim_plan`]; `instructions` are sim lines separated by `\n`.
pub fn domain(name: &str, owns: &str, instructions: &str, extra: &str) -> String {
    let mut s = format!("  - name: {name}\n    owns: [\"{owns}\"]\n    prompt: |\n");
    for l in instructions.lines() {
        s.push_str(&format!("      {l}\n"));
    }
    for l in extra.lines().filter(|l| !l.is_empty()) {
        s.push_str(&format!("    {l}\n"));
    }
    s
}

/// Processes alive that agent-farm started for `run_id` (recognised by their environment).
pub fn processes_of_run(run_id: &str) -> Vec<u32> {
    let needle = format!("AGENT_FARM_RUN_ID={run_id}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| process_alive(*pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}
