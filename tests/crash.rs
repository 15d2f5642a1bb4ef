//! Fault injection: agent-farm SIGKILLed at each phase of a run (via `AGENT_FARM_FAULT`), then
//! `resume` (or `clean`). Every case checks: the same final tree as an uninterrupted run, no lost
//! agent file, no process of the run left, no stray worktree or branch, `git fsck` clean.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

/// Three domains (one depending on another), a verify step, agents that take a moment.
fn setup() -> TestRepo {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "verify: test -f db/schema.sql && test -f api/users.rs\n",
        &[
            domain(
                "db",
                "db/**",
                "write db/schema.sql create table users\nsleep 200ms\nwrite db/seed.sql insert",
                "",
            ),
            domain(
                "api",
                "api/**",
                "wait-for db/schema.sql 1ms\nsleep 100ms\nwrite api/users.rs list users",
                "depends_on: [db]",
            ),
            domain(
                "docs",
                "docs/**",
                "sleep 300ms\nwrite docs/users.md users",
                "",
            ),
        ]
        .concat(),
    ));
    repo
}

const EXPECTED_FILES: &[&str] = &[
    "db/schema.sql",
    "db/seed.sql",
    "api/users.rs",
    "docs/users.md",
];

/// The tree an uninterrupted run lands (fixed dates make it identical across repos).
fn expected_tree() -> String {
    let repo = setup();
    repo.farm(&["run", "--progress", "none"]).expect(0);
    repo.git(&["rev-parse", "main^{tree}"])
}

fn crash(repo: &TestRepo, fault: &str) -> String {
    let out = repo
        .farm_cmd(&repo.root, &["run", "--progress", "plain"])
        .env("AGENT_FARM_FAULT", fault)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        None,
        "agent-farm should have been killed at {fault}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    repo.last_run()
}

fn assert_clean_end(repo: &TestRepo, run_id: &str) {
    assert_eq!(
        processes_of_run(run_id),
        Vec::<u32>::new(),
        "orphan processes"
    );
    assert_eq!(
        repo.worktrees().len(),
        1,
        "stray worktrees: {:?}",
        repo.worktrees()
    );
    assert!(
        repo.git(&["worktree", "prune", "--dry-run", "-v"])
            .is_empty()
    );
    repo.git(&["fsck", "--no-progress"]);
}

fn crash_then_resume(fault: &str) {
    let expected = expected_tree();
    let repo = setup();
    let id = crash(&repo, fault);
    let resumed = repo.farm(&["resume", "--progress", "plain"]);
    resumed.expect(0);
    assert_eq!(
        repo.git(&["rev-parse", "main^{tree}"]),
        expected,
        "resume after {fault} lands what an uninterrupted run lands\n{}",
        resumed.stderr
    );
    for f in EXPECTED_FILES {
        assert!(repo.root.join(f).is_file(), "{f} lost after {fault}");
    }
    assert_clean_end(&repo, &id);
    assert!(
        repo.farm_branches().is_empty(),
        "{:?}",
        repo.farm_branches()
    );
    repo.assert_matches_report();
    let lost = EXPECTED_FILES
        .iter()
        .filter(|f| !repo.root.join(f).is_file())
        .count();
    println!(
        "crash at {fault:<24} resume: exit 0, same tree: yes, lost files: {lost}, orphan processes: {}, stray worktrees: {}, farm branches: {}, fsck: clean",
        processes_of_run(&id).len(),
        repo.worktrees().len() - 1,
        repo.farm_branches().len()
    );
    // Resuming a finished run says so and changes nothing.
    let head = repo.git(&["rev-parse", "main"]);
    let again = repo.farm(&["resume"]);
    again.expect(0);
    assert!(
        again.stdout.contains("already finished"),
        "{}",
        again.stdout
    );
    assert_eq!(repo.git(&["rev-parse", "main"]), head);
}

#[test]
fn killed_after_a_worktree_was_created() {
    crash_then_resume("after:worktree_ready");
}

#[test]
fn killed_while_agents_run() {
    crash_then_resume("after:agent_started:2");
}

#[test]
fn killed_after_a_commit() {
    crash_then_resume("after:committed");
}

#[test]
fn killed_in_the_middle_of_a_merge() {
    // The integration branch moved, the record does not know yet.
    crash_then_resume("before:merged");
}

#[test]
fn killed_after_a_merge() {
    crash_then_resume("after:merged:2");
}

#[test]
fn killed_during_verify() {
    crash_then_resume("after:verify_started");
}

#[test]
fn killed_while_landing() {
    // `main` moved, the record does not know yet.
    crash_then_resume("before:landed");
}

#[test]
fn killed_during_cleanup() {
    crash_then_resume("after:worktree_removed");
}

#[test]
fn killed_while_agents_run_then_clean() {
    let repo = setup();
    let id = crash(&repo, "after:agent_started:2");
    repo.farm(&["clean"]).expect(0);
    assert_clean_end(&repo, &id);
    // Whatever the killed agents had written was committed on their kept branches (the
    // deterministic version of this check is in tests/safety.rs).
    for b in repo.farm_branches() {
        assert!(b.starts_with(&format!("farm/{id}/")), "{b}");
    }
    // And resume still finishes the run from there.
    repo.farm(&["resume", "--progress", "none"]).expect(0);
    for f in EXPECTED_FILES {
        assert!(repo.root.join(f).is_file(), "{f}");
    }
    assert_clean_end(&repo, &id);
}

#[test]
fn a_run_in_progress_cannot_be_resumed_by_another_process() {
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
    wait_until("agent start", std::time::Duration::from_secs(20), || {
        repo.scratch.join("started").exists()
    });
    let out = repo.farm(&["resume"]);
    out.expect(4);
    assert!(out.stderr.contains("in use by process"), "{}", out.stderr);
    std::fs::write(repo.scratch.join("go"), "").unwrap();
    assert_eq!(driver.wait().unwrap().code(), Some(0));
}

#[test]
fn resume_does_not_run_a_finished_agent_again() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "",
        &domain(
            "log",
            "log/**",
            "append log/lines.txt one line per run of the agent",
            "",
        ),
    ));
    let id = crash(&repo, "after:committed");
    repo.farm(&["resume", "--progress", "plain"]).expect(0);
    assert_eq!(
        repo.read("log/lines.txt"),
        "one line per run of the agent\n"
    );
    assert_clean_end(&repo, &id);
}

#[test]
fn resume_stops_a_verify_left_running_by_the_crash() {
    let repo = TestRepo::new();
    let s = repo.scratch.display().to_string();
    repo.write_plan(&sim_plan(
        &format!("verify: \"echo $$ > {s}/verify.pid; test -f {s}/ok || exec sleep 600\"\n"),
        &domain("a", "a/**", "write a/x 1", ""),
    ));
    let mut driver = repo.spawn_farm(&["run", "--progress", "none"]);
    let pidfile = repo.scratch.join("verify.pid");
    wait_until("verify start", std::time::Duration::from_secs(20), || {
        std::fs::read_to_string(&pidfile).is_ok_and(|t| t.ends_with('\n'))
    });
    driver.kill().unwrap();
    driver.wait().unwrap();
    let first_verify = read_pid(&pidfile);
    assert!(
        process_alive(first_verify),
        "the verify outlives the killed driver"
    );
    std::fs::write(repo.scratch.join("ok"), "").unwrap();
    repo.farm(&["resume", "--progress", "plain"]).expect(0);
    assert!(
        !process_alive(first_verify),
        "resume stopped the old verify"
    );
    assert_clean_end(&repo, &repo.last_run());
    assert_eq!(repo.read("a/x"), "1\n");
}

#[test]
fn work_on_a_detached_head_survives_a_crash_and_clean() {
    let repo = TestRepo::new();
    let s = repo.scratch.display().to_string();
    repo.write_plan(&format!(
        "version: 1\nagent:\n  preset: custom\n  command: [sh, -c, \"git checkout -q --detach HEAD~1 && mkdir -p a && echo precious > a/new.txt && touch {s}/written && exec sleep 600\"]\ndomains:\n  - name: a\n    owns: [a/**]\n    prompt: p\n"
    ));
    let mut driver = repo.spawn_farm(&["run", "--progress", "none"]);
    wait_until(
        "the agent's write",
        std::time::Duration::from_secs(20),
        || repo.scratch.join("written").exists(),
    );
    driver.kill().unwrap();
    driver.wait().unwrap();
    let id = repo.last_run();
    repo.farm(&["clean"]).expect(0);
    assert_clean_end(&repo, &id);
    assert_eq!(
        repo.git(&["fsck", "--unreachable", "--no-reflogs", "--no-progress"]),
        ""
    );
    let stray = format!("refs/farm/{id}/a/off-branch");
    assert_eq!(repo.show(&format!("{stray}:a/new.txt")), "precious");
}

#[test]
fn resume_retry_failed_gives_a_blocked_domain_a_clean_start() {
    let repo = TestRepo::new();
    let s = repo.scratch.display().to_string();
    repo.write_plan(&format!(
        "version: 1\nagent:\n  preset: custom\n  command: [sh, -c, \"if [ -f {s}/second ]; then mkdir -p a && echo ok > a/x; else touch {s}/second; echo stray > NOTES.md; fi\"]\ndomains:\n  - name: a\n    owns: [a/**]\n    prompt: p\n"
    ));
    repo.farm(&["run", "--progress", "none"]).expect(6);
    assert_eq!(repo.record()["domains"]["a"]["status"], "blocked");
    repo.farm(&["resume", "--retry-failed", "--progress", "plain"])
        .expect(0);
    let rec = repo.record();
    assert_eq!(rec["domains"]["a"]["status"], "merged");
    assert_eq!(repo.read("a/x"), "ok\n");
    assert!(!repo.root.join("NOTES.md").exists());
    let blocked = format!("refs/farm/{}/a/blocked", repo.last_run());
    assert_eq!(repo.show(&format!("{blocked}:NOTES.md")), "stray");
}
