//! Nothing an agent wrote is ever lost, and nothing the farm started outlives it: agents that
//! misuse git, commits that fail, a driver killed mid-run, signals during verify.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

fn custom_plan(script: &str, extra_domain: &str) -> String {
    format!(
        "version: 1\nagent:\n  preset: custom\n  command: [sh, -c, {script:?}]\n  timeout: 60s\n  grace: 1s\ndomains:\n  - name: a\n    owns: [a/**]\n    prompt: p\n{extra_domain}"
    )
}

#[test]
fn commits_on_a_detached_head_stay_on_the_branch() {
    let repo = TestRepo::new();
    repo.write_plan(&custom_plan(
        "git checkout -q --detach && mkdir -p a && echo own > a/own.txt && git add a && git commit -qm 'agent commit on detached HEAD' && exit 1",
        "",
    ));
    repo.farm(&["run", "--progress", "plain"]).expect(6);
    let branch = format!("farm/{}/a", repo.last_run());
    assert_eq!(repo.show(&format!("{branch}:a/own.txt")), "own");
    let log = repo.git(&["log", "--format=%s", &branch]);
    assert!(log.contains("agent commit on detached HEAD"), "{log}");
    assert_eq!(
        repo.git(&["fsck", "--unreachable", "--no-reflogs", "--no-progress"]),
        ""
    );
    repo.assert_matches_report();
}

/// Without the write guard (which refuses an agent's new branch: see tests/containment.rs),
/// commits an agent makes on a branch of its own are secured under a farm ref.
#[test]
fn commits_on_another_branch_are_kept_under_a_farm_ref() {
    let repo = TestRepo::new();
    repo.write_plan(
        &custom_plan(
            "git checkout -q -b side HEAD~1 && mkdir -p a && echo side > a/side.txt && git add a && git commit -qm 'agent went elsewhere'",
            "",
        )
        .replace("domains:\n", "ownership:\n  guard: false\ndomains:\n"),
    );
    let run = repo.farm(&["run", "--progress", "plain"]);
    let id = repo.last_run();
    let stray = format!("refs/farm/{id}/a/off-branch");
    assert!(run.stderr.contains(&stray), "{}", run.stderr);
    assert_eq!(repo.show(&format!("{stray}:a/side.txt")), "side");
    assert_eq!(
        repo.git(&["fsck", "--unreachable", "--no-reflogs", "--no-progress"]),
        ""
    );
    let clean = repo.farm(&["clean"]);
    assert!(clean.stdout.contains(&stray), "{}", clean.stdout);
    repo.farm(&["clean", "--force"]).expect(0);
    assert!(
        repo.git_output(&["rev-parse", "--verify", "-q", &stray])
            .stdout
            .is_empty()
    );
}

#[test]
fn a_commit_blocked_by_a_stale_lock_loses_nothing() {
    let repo = TestRepo::new();
    // The agent leaves git's index locked, as a `git add` killed mid-way would.
    repo.write_plan(&custom_plan(
        "mkdir -p a && echo precious > a/work.txt && touch \"$(git rev-parse --git-dir)/index.lock\"",
        "",
    ));
    let run = repo.farm(&["run", "--progress", "plain"]);
    run.expect(6);
    let rec = repo.record();
    // While the agent's group could still hold it, the lock is respected: the commit fails…
    assert!(
        rec["domains"]["a"]["reason"]
            .as_str()
            .unwrap()
            .contains("commit failed")
    );
    // …once nothing of the run is alive, cleanup removes the stale lock and saves the work.
    assert!(run.stderr.contains("stale lock"), "{}", run.stderr);
    let branch = format!("farm/{}/a", repo.last_run());
    assert_eq!(repo.show(&format!("{branch}:a/work.txt")), "precious");
    assert_eq!(repo.worktrees().len(), 1);
    repo.farm(&["clean"]).expect(0);
    assert_eq!(repo.farm_branches(), vec![branch]);
}

#[test]
fn clean_after_the_driver_was_killed_stops_its_agents_and_keeps_their_work() {
    let repo = TestRepo::new();
    let s = repo.scratch.display().to_string();
    repo.write_plan(&sim_plan(
        "",
        &domain(
            "a",
            "a/**",
            &format!("write a/half.txt half\npid-file {s}/agent.pid\nhang"),
            "",
        ),
    ));
    let mut driver = repo.spawn_farm(&["run", "--progress", "none"]);
    let pidfile = repo.scratch.join("agent.pid");
    wait_until("agent start", Duration::from_secs(20), || pidfile.exists());
    driver.kill().unwrap();
    driver.wait().unwrap();
    let agent = read_pid(&pidfile);
    assert!(
        process_alive(agent),
        "the agent outlives a SIGKILLed driver"
    );
    let clean = repo.farm(&["clean"]);
    clean.expect(0);
    assert!(
        !process_alive(agent),
        "clean stops the run's leftover agent"
    );
    let branch = format!("farm/{}/a", repo.last_run());
    assert_eq!(repo.show(&format!("{branch}:a/half.txt")), "half");
    assert_eq!(repo.worktrees().len(), 1);
    repo.git(&["fsck", "--no-progress"]);
}

#[test]
fn sigterm_during_verify_stops_it_and_lands_nothing() {
    let repo = TestRepo::new();
    let s = repo.scratch.display().to_string();
    repo.write_plan(&sim_plan(
        &format!("verify: \"echo $$ > {s}/verify.pid && exec sleep 600\"\n"),
        &domain("a", "a/**", "write a/x 1", ""),
    ));
    let head = repo.git(&["rev-parse", "main"]);
    let driver = repo
        .farm_cmd(&repo.root, &["run", "--progress", "plain"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pidfile = repo.scratch.join("verify.pid");
    wait_until("verify start", Duration::from_secs(20), || {
        std::fs::read_to_string(&pidfile).is_ok_and(|t| t.ends_with('\n'))
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(driver.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = Run::from(driver.wait_with_output().unwrap());
    out.expect(130);
    assert!(!process_alive(read_pid(&pidfile)), "verify was stopped");
    assert_eq!(repo.git(&["rev-parse", "main"]), head, "nothing landed");
    assert_eq!(repo.worktrees().len(), 1, "the verify worktree is gone");
    repo.assert_matches_report();
}

#[test]
fn worktree_root_outside_the_repository_is_accepted_and_inside_refused() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "worktree_root: ../wt\n",
        &domain("a", "a/**", "write a/x 1", ""),
    ));
    repo.farm(&["run", "--keep-worktrees", "--progress", "none"])
        .expect(0);
    let wt = repo.worktrees();
    assert!(
        wt.iter()
            .any(|w| w.starts_with(repo.root.parent().unwrap().join("wt").to_str().unwrap())),
        "{wt:?}"
    );
    repo.farm(&["clean"]).expect(0);
    let inside = repo.farm(&["run", "--worktree-root", "sub/wt", "--progress", "none"]);
    inside.expect(4);
    assert!(
        inside.stderr.contains("inside the working tree"),
        "{}",
        inside.stderr
    );
}

#[test]
fn a_run_in_use_cannot_be_merged_or_cleaned_by_another_process() {
    let repo = TestRepo::new();
    let s = repo.scratch.display().to_string();
    repo.write_plan(&sim_plan(
        "",
        &domain(
            "a",
            "a/**",
            &format!("touch {s}/started\nwait-for {s}/go 30s\nwrite a/x 1"),
            "",
        ),
    ));
    let mut driver = repo.spawn_farm(&["run", "--progress", "none"]);
    wait_until("agent start", Duration::from_secs(20), || {
        repo.scratch.join("started").exists()
    });
    for cmd in [&["merge"][..], &["clean"][..]] {
        let out = repo.farm(cmd);
        out.expect(4);
        assert!(out.stderr.contains("in use by process"), "{}", out.stderr);
    }
    std::fs::write(repo.scratch.join("go"), "").unwrap();
    assert_eq!(driver.wait().unwrap().code(), Some(0));
    repo.assert_matches_report();
}
