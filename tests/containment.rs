//! Containment beyond the worktree: agents that write into another domain's worktree, into the
//! user's main checkout or into git's shared refs are stopped at the system call by the write
//! guard and charged; processes that escape their group, session and environment are ended
//! with their agent. Linux only (the supervisor is).
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn violations(rec: &Value, domain: &str) -> Vec<Value> {
    rec["domains"][domain]["violations"]
        .as_array()
        .unwrap()
        .clone()
}

fn guarded(rec: &Value, domain: &str) -> Vec<Value> {
    violations(rec, domain)
        .into_iter()
        .filter(|v| v["detected"] == "guard")
        .collect()
}

/// `a` tries to write into `b`'s worktree (while `b` is running), into the main checkout, and
/// to commit straight onto `main`; each write is refused, charged to `a`, and nothing of it
/// reaches any commit. Both domains' own work lands.
#[test]
fn writes_outside_the_worktree_are_blocked_and_charged_to_the_writer() {
    let repo = TestRepo::new();
    let m = repo.scratch.display().to_string();
    let root = repo.root.display().to_string();
    let a = format!(
        "wait-for {m}/b-ready 30s\n\
         sh echo hijack > ../b/src/ui/hijack.html\n\
         sh echo oops > {root}/src/api/oops.rs\n\
         sh git -C {root} commit -q --allow-empty -m sneaky\n\
         sh git update-ref refs/heads/main HEAD\n\
         sh git checkout -q -b side\n\
         sh echo to the log | tee /dev/stderr > /proc/self/fd/1\n\
         sh mkdir -p {root}/src\n\
         write src/api/a.rs a's own work\n\
         touch {m}/a-done"
    );
    let b = format!("write src/ui/b.html b's own work\ntouch {m}/b-ready\nwait-for {m}/a-done 30s");
    repo.write_plan(&sim_plan(
        "",
        &[
            domain("a", "src/api/**", &a, ""),
            domain("b", "src/ui/**", &b, ""),
        ]
        .concat(),
    ));
    let main_before = repo.git(&["rev-parse", "main"]);
    let run = repo.farm(&["run", "--jobs", "2", "--progress", "plain"]);
    run.expect(0);
    let rec = repo.record();
    assert_eq!(rec["domains"]["a"]["status"], "merged");
    assert_eq!(rec["domains"]["b"]["status"], "merged");
    let v = guarded(&rec, "a");
    let outside: Vec<&str> = v.iter().map(|v| v["outside"].as_str().unwrap()).collect();
    assert!(
        outside.contains(&"the worktree of domain b"),
        "{v:#?}\n{}",
        run.stdout
    );
    assert!(outside.contains(&"the main checkout"), "{v:#?}");
    assert!(outside.contains(&"the main checkout's index"), "{v:#?}");
    assert!(outside.contains(&"ref refs/heads/main"), "{v:#?}");
    // Reopening its own output (/dev/stderr, /proc/self/fd/1) and `mkdir -p` of a directory
    // that exists write nothing anywhere new: not refused.
    assert!(
        !v.iter().any(|v| {
            let p = v["path"].as_str().unwrap();
            p.contains("agent-farm/runs") || p.ends_with("/repo/src")
        }),
        "{v:#?}"
    );
    assert_eq!(v.len(), 5, "{v:#?}");
    assert!(outside.contains(&"ref refs/heads/side"), "{v:#?}");
    assert!(!repo.branches().contains(&"side".to_string()));
    let sibling = v
        .iter()
        .find(|v| v["outside"] == "the worktree of domain b")
        .unwrap();
    assert!(
        sibling["path"]
            .as_str()
            .unwrap()
            .ends_with("/b/src/ui/hijack.html"),
        "{sibling}"
    );
    assert_eq!(sibling["owner"], "b");
    assert_eq!(sibling["action"], "blocked");
    assert!(
        sibling["change"].as_str().unwrap().contains("write by `"),
        "{sibling}"
    );
    // Nothing was charged to b, and nothing of the refused writes exists anywhere.
    assert!(
        violations(&rec, "b").is_empty(),
        "{:?}",
        violations(&rec, "b")
    );
    let landed = repo.files_at("main");
    assert!(landed.contains(&"src/api/a.rs".to_string()), "{landed:?}");
    assert!(landed.contains(&"src/ui/b.html".to_string()), "{landed:?}");
    assert!(
        !landed
            .iter()
            .any(|f| f.contains("hijack") || f.contains("oops"))
    );
    assert!(!repo.root.join("src/api/oops.rs").exists());
    let log = repo.git(&["log", "--format=%s", "main"]);
    assert!(!log.contains("sneaky"), "{log}");
    // main moved only by the landing, on top of where it was.
    assert!(
        repo.git_output(&["merge-base", "--is-ancestor", &main_before, "main"])
            .status
            .success()
    );
    // The report says what happened and who did it.
    assert!(
        run.stdout
            .contains("outside its worktree, in the worktree of domain b"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("a: "), "{}", run.stdout);
    repo.assert_matches_report();
}

/// With `stop_on_violation`, the first refused write stops the agent; its branch is kept.
#[test]
fn stop_on_violation_stops_an_agent_at_its_first_write_outside() {
    let repo = TestRepo::new();
    let root = repo.root.display().to_string();
    let m = repo.scratch.display().to_string();
    repo.write_plan(&sim_plan(
        "ownership:\n  stop_on_violation: true\n",
        &[
            domain(
                "a",
                "src/api/**",
                &format!(
                    "write src/api/a.rs a\nsh echo x > {root}/README.md\ntouch {m}/a-went-on\nhang"
                ),
                "",
            ),
            domain("b", "src/ui/**", "write src/ui/b.html b", ""),
        ]
        .concat(),
    ));
    let run = repo.farm(&["run", "--progress", "plain"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    let rec = repo.record();
    let a = &rec["domains"]["a"];
    assert_ne!(a["status"], "merged");
    assert!(
        a["reason"]
            .as_str()
            .unwrap()
            .contains("first write outside its worktree"),
        "{a}"
    );
    let v = guarded(&rec, "a");
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["action"], "blocked; stopped");
    assert_eq!(v[0]["outside"], "the main checkout");
    assert_eq!(rec["domains"]["b"]["status"], "merged");
    assert_eq!(repo.read("README.md"), "# test repo\n");
    // Its work is kept on its branch.
    let branch = a["branch"].as_str().unwrap();
    assert!(repo.files_at(branch).contains(&"src/api/a.rs".to_string()));
}

/// A grandchild that double-forks, calls setsid, ignores SIGTERM and clears its environment is
/// still ended with its agent, reported, and does not fail the domain.
#[test]
fn a_daemon_that_escapes_group_session_and_environment_is_ended_and_reported() {
    let repo = TestRepo::new();
    let m = repo.scratch.display().to_string();
    let daemon = format!(
        "sh (setsid env -i /bin/sh -c 'echo $$ > {m}/daemon.pid; trap \"\" TERM; while :; do echo tick >> src/api/daemon.log; sleep 0.05; done' >/dev/null 2>&1 &)"
    );
    repo.write_plan(&sim_plan_with(
        "grace: 300ms",
        "",
        &domain(
            "a",
            "src/api/**",
            &format!("{daemon}\nwait-for {m}/daemon.pid 30s\nwrite src/api/a.rs a"),
            "",
        ),
    ));
    let run = repo.farm(&["run", "--progress", "plain"]);
    run.expect(0);
    wait_until("the daemon's pid file", Duration::from_secs(5), || {
        std::fs::read_to_string(repo.scratch.join("daemon.pid")).is_ok_and(|s| s.ends_with('\n'))
    });
    let pid = read_pid(&repo.scratch.join("daemon.pid"));
    assert!(!process_alive(pid), "daemon {pid} outlived the run");
    let rec = repo.record();
    assert_eq!(rec["domains"]["a"]["status"], "merged");
    let ended = rec["domains"]["a"]["ended_processes"].as_array().unwrap();
    let it = ended
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("{pid} not in {ended:?}"));
    assert_eq!(it["signal"], "SIGKILL", "it ignored SIGTERM: {it}");
    assert!(it["command"].as_str().unwrap().contains("sh"), "{it}");
    let events = repo.events();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "processes_ended" && e["domain"] == "a"),
        "no processes_ended event"
    );
    assert!(run.stdout.contains("ended 1 process(es)"), "{}", run.stdout);
    assert!(processes_of_run(rec["run_id"].as_str().unwrap()).is_empty());
}

/// `ownership.guard: false` turns the guard off: nothing is blocked (and nothing reported by it).
#[test]
fn the_guard_can_be_turned_off() {
    let repo = TestRepo::new();
    let m = repo.scratch.display().to_string();
    repo.write_plan(&sim_plan(
        "ownership:\n  guard: false\n",
        &domain(
            "a",
            "src/api/**",
            &format!("sh echo free > {m}/outside-repo.txt\nsh echo x > ../sibling.txt\nwrite src/api/a.rs a"),
            "",
        ),
    ));
    repo.farm(&["run", "--progress", "plain"]).expect(0);
    let rec = repo.record();
    assert!(guarded(&rec, "a").is_empty());
    assert!(repo.scratch.join("outside-repo.txt").exists());
    let sibling = repo
        .root
        .parent()
        .unwrap()
        .join("repo.farm")
        .join(rec["run_id"].as_str().unwrap())
        .join("sibling.txt");
    assert!(sibling.exists(), "{}", sibling.display());
}

/// Without the guard an agent can commit straight onto `main`; the run then says that `main`
/// moved during the run and not by agent-farm, and lands on top of it (nothing is lost).
#[test]
fn a_move_of_into_during_the_run_is_reported() {
    let repo = TestRepo::new();
    let root = repo.root.display().to_string();
    repo.write_plan(&sim_plan(
        "ownership:\n  guard: false\n",
        &domain(
            "a",
            "src/api/**",
            &format!("sh git -C {root} commit -q --allow-empty -m sneaky\nwrite src/api/a.rs a"),
            "",
        ),
    ));
    let run = repo.farm(&["run", "--progress", "plain"]);
    run.expect(0);
    assert!(
        run.stdout.contains("`main` moved during the run"),
        "{}",
        run.stdout
    );
    let rec = repo.record();
    assert!(
        rec["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("moved during the run")),
        "{rec}"
    );
    let log = repo.git(&["log", "--format=%s", "main"]);
    assert!(log.contains("sneaky"), "{log}");
    assert!(repo.files_at("main").contains(&"src/api/a.rs".to_string()));
}

/// agent-farm SIGKILLed while its agent runs a daemon that left its group, session and
/// environment: the supervisor sees agent-farm die and ends the whole tree, so nothing runs on
/// unwatched (resume then carries the work on).
#[test]
fn when_agent_farm_is_killed_its_agents_and_their_daemons_end() {
    let repo = TestRepo::new();
    let m = repo.scratch.display().to_string();
    let daemon = format!(
        "sh (setsid env -i /bin/sh -c 'echo $$ > {m}/daemon.pid; trap \"\" TERM; while :; do sleep 0.05; done' >/dev/null 2>&1 &)"
    );
    repo.write_plan(&sim_plan_with(
        "grace: 300ms",
        "",
        &domain(
            "a",
            "src/api/**",
            &format!("write src/api/a.rs a\npid-file {m}/agent.pid\n{daemon}\nwait-for {m}/go 60s"),
            "",
        ),
    ));
    let mut farm = repo.spawn_farm(&["run", "--progress", "none"]);
    let pid_file = repo.scratch.join("daemon.pid");
    wait_until("the daemon", Duration::from_secs(30), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
    });
    let (daemon, agent) = (
        read_pid(&pid_file),
        read_pid(&repo.scratch.join("agent.pid")),
    );
    assert!(process_alive(daemon) && process_alive(agent));
    farm.kill().unwrap();
    farm.wait().unwrap();
    wait_until(
        "the agent and its daemon to end",
        Duration::from_secs(15),
        || !process_alive(daemon) && !process_alive(agent),
    );
    // The work is kept: resume commits and lands it (its agent, run again, goes on at once).
    std::fs::write(repo.scratch.join("go"), "").unwrap();
    repo.farm(&["resume", "--progress", "plain"]).expect(0);
    assert_eq!(repo.read("src/api/a.rs"), "a\n");
}
