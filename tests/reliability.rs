//! Misbehaving agents and hostile conditions: stalls, signals twice, agents that break their own
//! worktree, concurrent runs, half-broken leftovers, work landed by squash.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

#[test]
fn an_agent_that_stops_printing_is_stopped_as_stalled() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan_with(
        "idle_timeout: 400ms\ngrace: 200ms",
        "",
        &[
            domain("quiet", "q/**", "print working\nwrite q/half 1\nhang", ""),
            domain("chatty", "c/**", "print a\nwrite c/x 1", ""),
        ]
        .concat(),
    ));
    repo.farm(&["run", "--progress", "plain"]).expect(6);
    let rec = repo.record();
    assert_eq!(rec["domains"]["quiet"]["status"], "timed_out");
    assert!(
        rec["domains"]["quiet"]["reason"]
            .as_str()
            .unwrap()
            .contains("stalled"),
        "{}",
        rec["domains"]["quiet"]
    );
    assert_eq!(
        rec["domains"]["quiet"]["attempts"][0]["end"]["kind"],
        "stalled"
    );
    let branch = format!("farm/{}/quiet", repo.last_run());
    assert_eq!(repo.show(&format!("{branch}:q/half")), "1");
    assert_eq!(rec["domains"]["chatty"]["status"], "merged");
}

/// An agent that ignores SIGTERM and has a grandchild; `grace` long enough that only a second
/// signal can end it quickly.
fn stubborn_plan(repo: &TestRepo, grace: &str) {
    let s = repo.scratch.display().to_string();
    repo.write_plan(&sim_plan_with(
        &format!("grace: {grace}"),
        "",
        &domain(
            "stubborn",
            "s/**",
            &format!("write s/part partial\nignore-sigterm\nspawn-child {s}/child.pid\npid-file {s}/agent.pid\nhang"),
            "",
        ),
    ));
}

#[test]
fn one_sigint_waits_the_grace_period_then_kills_the_whole_group() {
    let repo = TestRepo::new();
    stubborn_plan(&repo, "500ms");
    let child = repo
        .farm_cmd(&repo.root, &["run", "--progress", "plain"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pidfile = repo.scratch.join("agent.pid");
    wait_until("agent start", Duration::from_secs(20), || pidfile.exists());
    signal(child.id(), nix::sys::signal::Signal::SIGINT);
    let out = Run::from(child.wait_with_output().unwrap());
    out.expect(130);
    assert!(!process_alive(read_pid(&pidfile)));
    assert!(!process_alive(read_pid(&repo.scratch.join("child.pid"))));
    let branch = format!("farm/{}/stubborn", repo.last_run());
    assert_eq!(repo.show(&format!("{branch}:s/part")), "partial");
    assert!(out.stdout.contains("agent-farm resume"), "{}", out.stdout);
    repo.assert_matches_report();
}

#[test]
fn a_second_sigint_kills_at_once() {
    let repo = TestRepo::new();
    // A grace period the test could never wait out: only the second signal ends the agent.
    stubborn_plan(&repo, "1h");
    let mut child = repo.spawn_farm(&["run", "--progress", "plain"]);
    let pidfile = repo.scratch.join("agent.pid");
    wait_until("agent start", Duration::from_secs(20), || pidfile.exists());
    signal(child.id(), nix::sys::signal::Signal::SIGINT);
    wait_until(
        "the interrupt to be recorded",
        Duration::from_secs(20),
        || {
            repo.live_events()
                .iter()
                .any(|e| e["event"] == "interrupted")
        },
    );
    assert!(
        process_alive(read_pid(&pidfile)),
        "the agent ignores SIGTERM"
    );
    signal(child.id(), nix::sys::signal::Signal::SIGINT);
    let mut code = None;
    wait_until(
        "agent-farm to exit after the second SIGINT",
        Duration::from_secs(20),
        || {
            code = child.try_wait().unwrap().map(|s| s.code());
            code.is_some()
        },
    );
    assert_eq!(code.unwrap(), Some(130));
    assert!(!process_alive(read_pid(&pidfile)));
    assert!(!process_alive(read_pid(&repo.scratch.join("child.pid"))));
    let branch = format!("farm/{}/stubborn", repo.last_run());
    assert_eq!(repo.show(&format!("{branch}:s/part")), "partial");
}

#[test]
fn an_agent_that_deletes_its_worktrees_git_file_loses_nothing() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "",
        &domain("vandal", "v/**", "write v/work.txt kept\ndelete .git", ""),
    ));
    repo.farm(&["run", "--progress", "plain"]).expect(0);
    assert_eq!(repo.read("v/work.txt"), "kept\n");
    repo.assert_matches_report();
    repo.assert_nothing_created();
}

#[test]
fn two_runs_side_by_side_in_one_repository_both_land() {
    let repo = TestRepo::new();
    let s = repo.scratch.display().to_string();
    let plan = |name: &str| {
        sim_plan(
            "",
            &domain(
                name,
                &format!("{name}/**"),
                &format!(
                    "touch {s}/started-{name}\nwait-for {s}/started-one 20s\nwait-for {s}/started-two 20s\nwrite {name}/x {name}"
                ),
                "",
            ),
        )
    };
    repo.write("one.yaml", &plan("one"));
    repo.write("two.yaml", &plan("two"));
    repo.commit_all("two plans");
    let spawn = |f: &str| {
        repo.farm_cmd(&repo.root, &["run", f, "--progress", "plain"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("one.yaml"), spawn("two.yaml"));
    let (a, b) = (
        Run::from(a.wait_with_output().unwrap()),
        Run::from(b.wait_with_output().unwrap()),
    );
    a.expect(0);
    b.expect(0);
    assert_eq!(repo.read("one/x"), "one\n");
    assert_eq!(repo.read("two/x"), "two\n");
    assert_eq!(repo.run_ids().len(), 2);
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    repo.assert_nothing_created();
}

#[test]
fn clean_repairs_half_broken_leftovers() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "",
        &[
            domain("a", "a/**", "write a/x 1", ""),
            domain("b", "b/**", "write b/x 1", ""),
            domain("c", "c/**", "write c/x 1", ""),
        ]
        .concat(),
    ));
    repo.farm(&["run", "--keep-worktrees", "--progress", "none"])
        .expect(0);
    let id = repo.last_run();
    let rec = repo.record();
    let wt = |d: &str| std::path::PathBuf::from(rec["domains"][d]["worktree"].as_str().unwrap());
    // a: directory gone, git's entry left; b: entry gone, directory left; c: entry locked.
    std::fs::remove_dir_all(wt("a")).unwrap();
    std::fs::write(
        wt("b").join("b/late.txt"),
        "written after the last commit\n",
    )
    .unwrap();
    std::fs::remove_dir_all(
        repo.common_dir()
            .join("worktrees")
            .join(format!("farm-{id}-b")),
    )
    .unwrap();
    repo.git(&["worktree", "lock", wt("c").to_str().unwrap()]);
    repo.farm(&["clean"]).expect(0);
    assert!(!wt("b").exists() && !wt("c").exists());
    // b's orphaned directory held a file no commit had: it is on b's branch now.
    let b = format!("farm/{id}/b");
    assert_eq!(
        repo.show(&format!("{b}:b/late.txt")),
        "written after the last commit"
    );
    assert_eq!(repo.farm_branches(), vec![b]);
    repo.farm(&["clean"]).expect(0);
    repo.farm(&["clean", "--force"]).expect(0);
    repo.assert_nothing_created();
}

#[test]
fn clean_works_without_a_run_record() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "",
        &[
            domain("ok", "ok/**", "write ok/x 1", ""),
            domain("bad", "bad/**", "write bad/x 1\nexit 1", ""),
        ]
        .concat(),
    ));
    repo.farm(&["run", "--keep-worktrees", "--progress", "none"])
        .expect(6);
    let id = repo.last_run();
    std::fs::remove_file(repo.run_dir().join("run.json")).unwrap();
    let out = repo.farm(&["clean", &id]);
    out.expect(0);
    assert!(out.stdout.contains("no run record"), "{}", out.stdout);
    assert_eq!(repo.worktrees().len(), 1);
    // The failed domain's unmerged work is kept; the merged one is gone.
    assert_eq!(repo.farm_branches(), vec![format!("farm/{id}/bad")]);
    repo.farm(&["clean", &id, "--force"]).expect(0);
    repo.assert_nothing_created();
}

#[test]
fn work_landed_by_squash_counts_as_merged_only_when_its_content_is_in() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "",
        &[
            domain("squashed", "sq/**", "write sq/a 1\nwrite sq/b 2", ""),
            domain("partial", "pa/**", "write pa/a 1\nwrite pa/b 2", ""),
        ]
        .concat(),
    ));
    repo.farm(&["run", "--no-merge", "--progress", "none"])
        .expect(0);
    let id = repo.last_run();
    // The user lands one branch by squash, and only half of the other by hand.
    repo.git(&["merge", "--squash", &format!("farm/{id}/squashed")]);
    repo.git(&["commit", "-qm", "squash"]);
    repo.write("pa/a", "1\n");
    repo.commit_all("half of partial");
    repo.farm(&["clean"]).expect(0);
    assert_eq!(repo.farm_branches(), vec![format!("farm/{id}/partial")]);
}

/// A small tmpfs mounted over a directory for the length of a test (needs root; CI runs as root).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_log_disk_is_a_clear_error_not_a_hang() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "",
        &domain("loud", "l/**", "flood 3000000\nwrite l/x done", ""),
    ));
    let Some(_fs) = Tmpfs::mount(&repo.common_dir().join("agent-farm"), "1m") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI runs as root and must be able to mount a tmpfs"
        );
        eprintln!(
            "skipped: a_full_log_disk_is_a_clear_error_not_a_hang: cannot mount a tmpfs (not root)"
        );
        return;
    };
    let out = repo.farm(&["run", "--progress", "plain"]);
    out.expect(1);
    assert!(
        out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
    // The work itself is safe in git.
    assert_eq!(repo.read("l/x"), "done\n");
}
