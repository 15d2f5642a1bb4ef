//! End-to-end tests of `agent-farm run` with the simulated agent on real temporary repositories.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn domain_rec<'a>(rec: &'a Value, name: &str) -> &'a Value {
    &rec["domains"][name]
}

fn attempt_window(rec: &Value, name: &str) -> (u64, u64) {
    let a = &domain_rec(rec, name)["attempts"][0];
    (
        a["started_ms"].as_u64().unwrap(),
        a["ended_ms"].as_u64().unwrap(),
    )
}

#[test]
fn four_independent_domains_run_concurrently_and_land() {
    let repo = TestRepo::new();
    let m = repo.scratch.display().to_string();
    // Each agent announces itself and waits for all four: a serial run could never finish.
    let barrier = |me: &str| {
        format!(
            "touch {m}/started-{me}\nwait-for {m}/started-a 20s\nwait-for {m}/started-b 20s\nwait-for {m}/started-c 20s\nwait-for {m}/started-d 20s\nwrite out/{me}/result.txt done by {me}"
        )
    };
    let domains: String = ["a", "b", "c", "d"]
        .iter()
        .map(|d| domain(d, &format!("out/{d}/**"), &barrier(d), ""))
        .collect();
    repo.write_plan(&sim_plan("max_parallel: 4\n", &domains));
    let run = repo.farm(&["run", "--progress", "plain"]);
    run.expect(0);
    // Only agent-farm's own lines: no dependency's log lines (notify's warnings about watches of
    // removed worktrees, once) and no colour codes into a pipe.
    assert_no_foreign_lines(&run.stderr);

    let rec = repo.record();
    let windows: Vec<(u64, u64)> = ["a", "b", "c", "d"]
        .iter()
        .map(|d| attempt_window(&rec, d))
        .collect();
    // Every pair of agent runs overlaps in time, as recorded by the farm.
    let latest_start = windows.iter().map(|w| w.0).max().unwrap();
    let earliest_end = windows.iter().map(|w| w.1).min().unwrap();
    assert!(
        latest_start <= earliest_end,
        "agents did not overlap: {windows:?}"
    );
    for d in ["a", "b", "c", "d"] {
        assert_eq!(domain_rec(&rec, d)["status"], "merged");
        assert_eq!(
            repo.read(&format!("out/{d}/result.txt")),
            format!("done by {d}\n")
        );
    }
    let report = repo.report();
    assert_eq!(report["landed"], true);
    assert!(report["metrics"]["speedup"].as_f64().unwrap() > 1.0);
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    repo.assert_matches_report();
    repo.assert_nothing_created();
}

#[test]
fn dependent_domain_sees_its_dependency_and_starts_after_it_merged() {
    let repo = TestRepo::new();
    let domains = [
        domain(
            "db",
            "src/db/**",
            "write src/db/schema.sql CREATE TABLE t;",
            "",
        ),
        // wait-for with a tiny limit fails (exit 3) unless the file is already in the worktree.
        domain(
            "api",
            "src/api/**",
            "wait-for src/db/schema.sql 1ms\nwrite src/api/users.rs uses schema",
            "depends_on: [db]",
        ),
        domain(
            "ui",
            "src/ui/**",
            "write src/ui/page.html hi",
            "depends_on: [api]",
        ),
    ]
    .concat();
    repo.write_plan(&sim_plan("", &domains));
    repo.farm(&["run", "--progress", "plain"]).expect(0);
    let rec = repo.record();
    assert_eq!(
        domain_rec(&rec, "api")["start_commit"],
        domain_rec(&rec, "db")["merge_commit"],
        "api must start from the integration branch right after db merged"
    );
    assert_eq!(
        domain_rec(&rec, "ui")["start_commit"],
        domain_rec(&rec, "api")["merge_commit"]
    );
    let (_, db_end) = attempt_window(&rec, "db");
    let (api_start, _) = attempt_window(&rec, "api");
    assert!(db_end <= api_start);
    for f in ["src/db/schema.sql", "src/api/users.rs", "src/ui/page.html"] {
        assert!(repo.root.join(f).is_file(), "{f} landed");
    }
    repo.assert_matches_report();
}

#[test]
fn priority_decides_start_order_with_one_job() {
    let repo = TestRepo::new();
    let domains = [
        domain("low", "low/**", "write low/x 1", "priority: 1"),
        domain("high", "high/**", "write high/x 1", "priority: 9"),
        domain("mid", "mid/**", "write mid/x 1", "priority: 5"),
        domain("none", "none/**", "write none/x 1", ""),
    ]
    .concat();
    repo.write_plan(&sim_plan("", &domains));
    repo.farm(&["run", "--jobs", "1", "--progress", "none"])
        .expect(0);
    let started: Vec<String> = repo
        .events()
        .iter()
        .filter(|e| e["event"] == "agent_started")
        .map(|e| e["domain"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(started, vec!["high", "mid", "low", "none"]);
    // --jobs 1 means no two attempts overlap.
    let rec = repo.record();
    let mut w: Vec<(u64, u64)> = ["high", "mid", "low", "none"]
        .iter()
        .map(|d| attempt_window(&rec, d))
        .collect();
    w.sort();
    assert!(w.windows(2).all(|p| p[0].1 <= p[1].0), "{w:?}");
    repo.assert_matches_report();
}

#[test]
fn failing_agent_keeps_its_partial_commit_while_the_others_land() {
    let repo = TestRepo::new();
    let domains = [
        domain("good", "good/**", "write good/ok.txt fine", ""),
        domain(
            "bad",
            "bad/**",
            "write bad/partial.txt half done\nexit 3",
            "",
        ),
        domain("after", "after/**", "write after/x y", "depends_on: [bad]"),
    ]
    .concat();
    repo.write_plan(&sim_plan("", &domains));
    let run = repo.farm(&["run", "--progress", "plain"]);
    run.expect(6);
    let rec = repo.record();
    assert_eq!(domain_rec(&rec, "bad")["status"], "failed");
    assert_eq!(domain_rec(&rec, "after")["status"], "skipped");
    assert!(
        domain_rec(&rec, "after")["reason"]
            .as_str()
            .unwrap()
            .contains("`bad`")
    );
    assert_eq!(domain_rec(&rec, "good")["status"], "merged");
    assert!(repo.root.join("good/ok.txt").is_file());
    assert!(!repo.root.join("bad/partial.txt").exists());
    let branch = format!("farm/{}/bad", repo.last_run());
    assert_eq!(repo.show(&format!("{branch}:bad/partial.txt")), "half done");
    assert!(repo.farm_branches().contains(&branch));
    assert!(
        run.stdout.contains(&branch),
        "report lists the kept branch:\n{}",
        run.stdout
    );
    assert_eq!(repo.report()["domains"][1]["exit_code"], 3);
    repo.assert_matches_report();
}

#[test]
fn timeout_kills_the_agents_whole_process_group() {
    let repo = TestRepo::new();
    let s = repo.scratch.display().to_string();
    let domains = [
        domain(
            "stuck",
            "stuck/**",
            &format!("write stuck/begun.txt yes\npid-file {s}/agent.pid\nspawn-child {s}/child.pid\nignore-sigterm\nhang"),
            "timeout: 1s",
        ),
        domain("quick", "quick/**", "write quick/x 1", ""),
    ]
    .concat();
    repo.write_plan(&sim_plan_with("grace: 300ms", "", &domains));
    repo.farm(&["run", "--progress", "plain"]).expect(6);
    let rec = repo.record();
    assert_eq!(domain_rec(&rec, "stuck")["status"], "timed_out");
    let agent = read_pid(&repo.scratch.join("agent.pid"));
    let child = read_pid(&repo.scratch.join("child.pid"));
    assert!(!process_alive(agent), "agent {agent} survived its timeout");
    assert!(!process_alive(child), "child {child} of the agent survived");
    // Work written before the timeout is committed on the kept branch.
    let branch = format!("farm/{}/stuck", repo.last_run());
    assert_eq!(repo.show(&format!("{branch}:stuck/begun.txt")), "yes");
    assert!(repo.root.join("quick/x").is_file());
    repo.assert_matches_report();
}

#[test]
fn fail_fast_stops_running_and_unstarted_domains() {
    let repo = TestRepo::new();
    let s = repo.scratch.display().to_string();
    let domains = [
        domain(
            "slow",
            "slow/**",
            &format!("write slow/part.txt p\ntouch {s}/slow-started\nhang"),
            "",
        ),
        domain(
            "boom",
            "boom/**",
            &format!("wait-for {s}/slow-started 20s\nexit 2"),
            "",
        ),
        domain("later", "later/**", "write later/x 1", "priority: -1"),
    ]
    .concat();
    repo.write_plan(&sim_plan("", &domains));
    repo.farm(&["run", "--fail-fast", "--jobs", "2", "--progress", "plain"])
        .expect(6);
    let rec = repo.record();
    assert_eq!(domain_rec(&rec, "boom")["status"], "failed");
    assert_eq!(domain_rec(&rec, "slow")["status"], "cancelled");
    assert_eq!(domain_rec(&rec, "later")["status"], "cancelled");
    assert!(
        domain_rec(&rec, "later")["attempts"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // The cancelled agent's partial work is committed, not lost.
    let branch = format!("farm/{}/slow", repo.last_run());
    assert_eq!(repo.show(&format!("{branch}:slow/part.txt")), "p");
    repo.assert_matches_report();
}

#[test]
fn merge_conflict_leaves_integration_untouched_and_keeps_the_branch() {
    let repo = TestRepo::new();
    let s = repo.scratch.display().to_string();
    // Both agents start from base together and edit README.md (shared) on the same line.
    // Whichever finishes second conflicts.
    let agent = |me: &str, other: &str| {
        format!(
            "touch {s}/started-{me}\nwait-for {s}/started-{other} 20s\nwrite {me}/x 1\nwrite README.md # {me} version"
        )
    };
    let domains = [
        domain("one", "one/**", &agent("one", "two"), ""),
        domain("two", "two/**", &agent("two", "one"), ""),
    ]
    .concat();
    // README.md is shared, so the ownership audit lets both changes through to the merge.
    repo.write_plan(&sim_plan("ownership:\n  shared: [README.md]\n", &domains));
    let run = repo.farm(&["run", "--jobs", "2", "--progress", "plain"]);
    run.expect(7);
    let rec = repo.record();
    let (winner, loser) = if domain_rec(&rec, "one")["status"] == "merged" {
        ("one", "two")
    } else {
        ("two", "one")
    };
    assert_eq!(domain_rec(&rec, winner)["status"], "merged");
    assert_eq!(domain_rec(&rec, loser)["status"], "conflicted");
    assert_eq!(
        domain_rec(&rec, loser)["conflict_paths"],
        serde_json::json!(["README.md"])
    );
    assert!(run.stdout.contains("README.md"), "{}", run.stdout);
    // The winner landed; the integration result never saw any of the loser's work.
    assert_eq!(repo.read("README.md"), format!("# {winner} version\n"));
    assert!(!repo.root.join(format!("{loser}/x")).exists());
    assert_eq!(
        rec["integration_commit"],
        domain_rec(&rec, winner)["merge_commit"]
    );
    let branch = format!("farm/{}/{loser}", repo.last_run());
    assert_eq!(
        repo.show(&format!("{branch}:README.md")),
        format!("# {loser} version")
    );
    repo.assert_matches_report();
    // Resolved on the branch as its kept-branch entry says, `merge` merges it again and lands.
    let hint = format!("`git switch {branch} && git merge main`");
    assert!(run.stdout.contains(&hint), "{hint}\n{}", run.stdout);
    repo.git(&["switch", "-q", &branch]);
    assert!(!repo.git_output(&["merge", "-q", "main"]).status.success());
    repo.write("README.md", "# both versions\n");
    repo.git(&["add", "README.md"]);
    repo.git(&["commit", "-q", "--no-edit"]);
    repo.git(&["switch", "-q", "main"]);
    repo.farm(&["merge", "--progress", "plain"]).expect(0);
    assert_eq!(repo.read("README.md"), "# both versions\n");
    assert!(repo.root.join(format!("{loser}/x")).is_file());
    assert_eq!(domain_rec(&repo.record(), loser)["status"], "merged");
    repo.assert_matches_report();
    repo.assert_nothing_created();
}

#[test]
fn failing_verify_blocks_landing() {
    let repo = TestRepo::new();
    let before = repo.git(&["rev-parse", "main"]);
    let domains = domain("a", "a/**", "write a/x 1", "");
    repo.write_plan(&sim_plan("verify: test -f a/missing\n", &domains));
    let before_plan = repo.git(&["rev-parse", "main"]);
    assert_ne!(before, before_plan);
    let run = repo.farm(&["run", "--progress", "plain"]);
    run.expect(8);
    assert_eq!(
        repo.git(&["rev-parse", "main"]),
        before_plan,
        "main must not move"
    );
    assert!(!repo.root.join("a/x").exists());
    let integration = format!("farm/{}/integration", repo.last_run());
    assert_eq!(repo.show(&format!("{integration}:a/x")), "1");
    assert!(run.stdout.contains("verify: failed"), "{}", run.stdout);
    assert_eq!(repo.report()["landed"], false);
    assert!(repo.run_dir().join("verify.log").is_file());
    repo.assert_matches_report();
}

#[test]
fn after_a_failed_verify_the_report_lists_every_branch_git_holds_and_warns_before_landing() {
    let repo = TestRepo::new();
    let domains = [
        domain("a", "a/**", "write a/x 1", ""),
        domain("b", "b/**", "write b/y 2", ""),
        domain("bad", "bad/**", "write bad/p half done\nexit 3", ""),
    ]
    .concat();
    repo.write_plan(&sim_plan("verify: test -f a/fix\n", &domains));
    let run = repo.farm(&["run", "--progress", "plain"]);
    run.expect(8);
    let id = repo.last_run();
    let report = repo.report();
    let git_holds = repo.run_refs(&id);
    assert_eq!(
        git_holds,
        ["a", "b", "bad", "integration"]
            .map(|b| format!("refs/heads/farm/{id}/{b}"))
            .to_vec()
    );
    assert_eq!(repo.kept_refs(&report), git_holds);
    let integration = format!("farm/{id}/integration");
    let reason_of = |name: &str| {
        report["kept"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == name)
            .map(|k| k["reason"].as_str().unwrap().to_string())
            .unwrap()
    };
    let tip = repo.git(&["rev-parse", &integration]);
    let why = reason_of(&integration);
    assert!(
        why.contains(&format!("failed verify on {}", &tip[..12]))
            && why.contains(&format!("agent-farm merge {id}"))
            && why.contains(&format!(
                "to land it anyway: `git switch main && git merge {integration}`"
            )),
        "{why}"
    );
    assert!(reason_of(&format!("farm/{id}/a")).contains("merged into"));
    assert!(reason_of(&format!("farm/{id}/bad")).starts_with("failed"));
    // The printed report says the same, with a command to inspect each.
    for b in ["a", "b", "bad", "integration"] {
        let inspect = format!("inspect: git log --stat main..farm/{id}/{b}\n");
        assert!(run.stdout.contains(&inspect), "{inspect}\n{}", run.stdout);
    }
    assert!(
        !run.stdout.contains("land it with"),
        "no land hint without the warning:\n{}",
        run.stdout
    );
    repo.assert_matches_report();
}

#[test]
fn merge_picks_up_a_fix_committed_on_a_domain_branch_and_lands() {
    let repo = TestRepo::new();
    let domains = [
        domain("a", "a/**", "write a/x 1", ""),
        domain("b", "b/**", "write b/y 2", ""),
    ]
    .concat();
    repo.write_plan(&sim_plan("verify: test -f a/fix\n", &domains));
    let main_before = repo.git(&["rev-parse", "main"]);
    repo.farm(&["run", "--progress", "none"]).expect(8);
    let id = repo.last_run();
    let branch = format!("farm/{id}/a");
    // The user fixes the work on the domain's branch, as the kept-branch hint says.
    repo.git(&["switch", "-q", &branch]);
    repo.write("a/fix", "fixed\n");
    repo.commit_all("fix a");
    let fix = repo.git(&["rev-parse", "HEAD"]);
    repo.git(&["switch", "-q", "main"]);
    assert_eq!(repo.git(&["rev-parse", "main"]), main_before);
    let merge = repo.farm(&["merge", &id, "--progress", "plain"]);
    merge.expect(0);
    assert!(
        merge.stderr.contains("moved to") && merge.stderr.contains("merging it again"),
        "{}",
        merge.stderr
    );
    assert_eq!(repo.read("a/fix"), "fixed\n");
    assert!(repo.root.join("a/x").is_file() && repo.root.join("b/y").is_file());
    let rec = repo.record();
    assert_eq!(rec["verify"]["passed"], true);
    assert_eq!(domain_rec(&rec, "a")["status"], "merged");
    assert_eq!(domain_rec(&rec, "a")["head"], fix.as_str());
    let moved: Vec<Value> = repo
        .events()
        .into_iter()
        .filter(|e| e["event"] == "branch_moved")
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0]["domain"], "a");
    assert_eq!(moved[0]["to"], fix.as_str());
    // The time between the two commands is not the farm's.
    let m = &repo.report()["metrics"];
    let spans = rec["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2, "{spans:?}");
    let gap = spans[1]["start_ms"].as_u64().unwrap() - spans[0]["end_ms"].as_u64().unwrap();
    let whole = rec["finished_ms"].as_u64().unwrap() - rec["started_ms"].as_u64().unwrap();
    assert_eq!(m["wall_ms"].as_u64().unwrap(), whole - gap, "{m}");
    assert!(m["agent_ms"].as_u64() <= m["busy_ms"].as_u64(), "{m}");
    repo.assert_matches_report();
    repo.assert_nothing_created();
}

#[test]
fn passing_verify_runs_on_the_merged_result() {
    let repo = TestRepo::new();
    let domains = [
        domain("a", "a/**", "write a/x 1", ""),
        domain("b", "b/**", "write b/y 2", ""),
    ]
    .concat();
    // Verify sees both domains' work together.
    repo.write_plan(&sim_plan(
        "verify: [sh, -c, \"test -f a/x && test -f b/y\"]\n",
        &domains,
    ));
    repo.farm(&["run", "--progress", "plain"]).expect(0);
    assert_eq!(repo.record()["verify"]["passed"], true);
    repo.assert_matches_report();
}

#[test]
fn dirty_checkout_of_into_is_not_touched() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan("", &domain("a", "a/**", "write a/x 1", "")));
    repo.write("README.md", "# my uncommitted edit\n");
    let head = repo.git(&["rev-parse", "main"]);
    let run = repo.farm(&["run", "--progress", "plain"]);
    run.expect(5);
    assert_eq!(repo.read("README.md"), "# my uncommitted edit\n");
    assert_eq!(repo.git(&["rev-parse", "main"]), head);
    assert_eq!(repo.git(&["status", "--porcelain"]), "M README.md");
    let integration = format!("farm/{}/integration", repo.last_run());
    assert!(repo.farm_branches().contains(&integration));
    assert!(
        run.stdout.contains(&format!("git merge {integration}")),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("uncommitted changes"), "{}", run.stderr);
    repo.assert_matches_report();
}

#[test]
fn landing_updates_a_clean_checkout_and_merges_when_into_moved() {
    let repo = TestRepo::new();
    let s = repo.scratch.display().to_string();
    repo.write_plan(&sim_plan(
        "",
        &domain(
            "a",
            "a/**",
            &format!("touch {s}/started\nwait-for {s}/go 20s\nwrite a/x 1"),
            "",
        ),
    ));
    let mut child = repo.spawn_farm(&["run", "--progress", "none"]);
    wait_until("agent start", Duration::from_secs(20), || {
        repo.scratch.join("started").exists()
    });
    // The user commits on main while the agent works.
    repo.write("docs/new.md", "new\n");
    repo.commit_all("user work");
    std::fs::write(repo.scratch.join("go"), "").unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(repo.root.join("a/x").is_file(), "checkout updated");
    assert!(repo.root.join("docs/new.md").is_file());
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    let parents = repo.git(&["log", "-1", "--format=%P", "main"]);
    assert_eq!(
        parents.split(' ').count(),
        2,
        "a merge commit, not a rewrite"
    );
    repo.assert_matches_report();
}

#[test]
fn clean_twice_is_harmless_and_force_is_needed_for_unmerged_work() {
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
    assert_eq!(
        repo.worktrees().len(),
        3,
        "{:?} {}",
        repo.worktrees(),
        repo.git(&["worktree", "list"])
    );
    let first = repo.farm(&["clean"]);
    first.expect(0);
    assert_eq!(repo.worktrees().len(), 1);
    let bad = format!("farm/{}/bad", repo.last_run());
    assert_eq!(repo.farm_branches(), vec![bad.clone()], "{}", first.stdout);
    assert!(first.stdout.contains("--force"), "{}", first.stdout);
    let second = repo.farm(&["clean"]);
    second.expect(0);
    assert_eq!(repo.farm_branches(), vec![bad]);
    repo.farm(&["clean", "--force"]).expect(0);
    repo.assert_nothing_created();
}

#[test]
fn retries_rerun_a_failing_agent_and_keep_every_attempt() {
    let repo = TestRepo::new();
    let s = repo.scratch.display().to_string();
    repo.write_plan(&sim_plan(
        "",
        &domain(
            "flaky",
            "flaky/**",
            &format!(
                "append flaky/log.txt attempt\nfail-once {s}/failed-once\nwrite flaky/done.txt ok"
            ),
            "",
        ),
    ));
    repo.farm(&["run", "--retries", "2", "--progress", "plain"])
        .expect(0);
    let rec = repo.record();
    let attempts = domain_rec(&rec, "flaky")["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["end"]["code"], 1);
    assert_eq!(attempts[1]["end"]["code"], 0);
    // The second attempt built on the first one's committed work.
    assert_eq!(repo.read("flaky/log.txt"), "attempt\nattempt\n");
    let log = repo
        .git(&["log", "--format=%s%n%b", "main"])
        .matches("Farm-Attempt:")
        .count();
    assert_eq!(log, 2);
    repo.assert_matches_report();
}

#[test]
fn deadline_stops_what_still_runs_and_keeps_what_is_done() {
    let repo = TestRepo::new();
    // What is done is still verified and landed after the deadline.
    repo.write_plan(&sim_plan(
        "verify: test -f done/x\n",
        &[
            domain("done", "done/**", "write done/x 1", ""),
            domain("forever", "forever/**", "write forever/part 1\nhang", ""),
        ]
        .concat(),
    ));
    repo.farm(&["run", "--deadline", "2s", "--progress", "plain"])
        .expect(6);
    let rec = repo.record();
    assert_eq!(domain_rec(&rec, "done")["status"], "merged");
    assert_eq!(domain_rec(&rec, "forever")["status"], "cancelled");
    assert!(repo.root.join("done/x").is_file());
    let branch = format!("farm/{}/forever", repo.last_run());
    assert_eq!(repo.show(&format!("{branch}:forever/part")), "1");
    repo.assert_matches_report();
}

#[test]
fn no_merge_then_merge_command() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "",
        &[
            domain("db", "db/**", "write db/s 1", ""),
            domain(
                "api",
                "api/**",
                "wait-for db/s 1ms\nwrite api/a 1",
                "depends_on: [db]",
            ),
        ]
        .concat(),
    ));
    let head = repo.git(&["rev-parse", "main"]);
    let run = repo.farm(&["run", "--no-merge", "--progress", "plain"]);
    run.expect(0);
    assert_eq!(repo.git(&["rev-parse", "main"]), head, "nothing merged yet");
    let id = repo.last_run();
    assert!(repo.farm_branches().contains(&format!("farm/{id}/api")));
    assert!(run.stdout.contains("agent-farm merge"), "{}", run.stdout);
    repo.farm(&["merge", &id, "--progress", "plain"]).expect(0);
    assert!(repo.root.join("db/s").is_file() && repo.root.join("api/a").is_file());
    repo.assert_matches_report();
    repo.assert_nothing_created();
}

#[test]
fn setup_failure_fails_only_that_domain_and_copied_files_are_not_committed() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "prepare:\n  copy: [.env]\n  setup: [\"test -f .env\"]\n",
        &[
            domain("ok", "ok/**", "wait-for .env 1ms\nwrite ok/x 1", ""),
            domain(
                "broken",
                "broken/**",
                "write broken/x 1",
                "setup: [\"exit 9\"]",
            ),
        ]
        .concat(),
    ));
    // Untracked, as secrets are.
    repo.write(".env", "SECRET=1\n");
    repo.farm(&["run", "--progress", "plain"]).expect(6);
    let rec = repo.record();
    assert_eq!(domain_rec(&rec, "ok")["status"], "merged");
    assert_eq!(domain_rec(&rec, "broken")["status"], "failed");
    assert!(
        domain_rec(&rec, "broken")["reason"]
            .as_str()
            .unwrap()
            .contains("setup")
    );
    assert!(
        !repo.files_at("main").contains(&".env".to_string()),
        "copied secrets are never committed"
    );
    repo.assert_matches_report();
}

#[test]
fn agents_get_their_environment_and_output_is_logged() {
    let repo = TestRepo::new();
    repo.write_plan(
        "version: 1\nagent:\n  preset: custom\n  command: [sh, -c, \"echo run=$AGENT_FARM_RUN_ID domain=$AGENT_FARM_DOMAIN arg=$0 extra=$EXTRA; echo to-stderr >&2; mkdir -p out && pwd > out/where.txt\", \"{domain}\"]\n  env: {EXTRA: \"yes\"}\ndomains:\n  - name: api\n    owns: [out/**]\n    prompt: hi\n",
    );
    repo.farm(&["run", "--progress", "none"]).expect(0);
    let id = repo.last_run();
    let logs = repo.farm(&["logs", "api"]);
    logs.expect(0);
    assert!(
        logs.stdout
            .contains(&format!("run={id} domain=api arg=api extra=yes")),
        "{}",
        logs.stdout
    );
    assert!(logs.stdout.contains("to-stderr"));
    let where_ = repo.read("out/where.txt");
    assert!(
        where_.trim().ends_with(&format!("{id}/api")),
        "agent ran in its worktree: {where_}"
    );
    let status = repo.farm(&["status"]);
    status.expect(0);
    assert!(status.stdout.contains("merged"), "{}", status.stdout);
    let json: Value = serde_json::from_str(&repo.farm(&["status", "--json"]).stdout).unwrap();
    assert_eq!(json["run_id"], id.as_str());
    repo.assert_matches_report();
}

#[test]
fn demo_runs_end_to_end() {
    let repo = TestRepo::new();
    let dir = repo.scratch.join("demo");
    let run = repo.farm_in(
        &repo.scratch,
        &[
            "demo",
            "--dir",
            dir.to_str().unwrap(),
            "--progress",
            "plain",
        ],
    );
    run.expect(0);
    assert!(run.stdout.contains("landed on `main`"), "{}", run.stdout);
    assert!(dir.join("src/api/users.rs").is_file());
    assert_no_foreign_lines(&run.stderr);
}

/// Stderr of a run holds no warning logged by a dependency and no ANSI escape.
fn assert_no_foreign_lines(stderr: &str) {
    let foreign: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("WARN") || l.contains('\x1b'))
        .collect();
    assert!(foreign.is_empty(), "foreign lines on stderr:\n{stderr}");
}

#[test]
fn sigint_commits_partial_work_and_exits_130() {
    let repo = TestRepo::new();
    let s = repo.scratch.display().to_string();
    repo.write_plan(&sim_plan(
        "",
        &domain(
            "long",
            "long/**",
            &format!("write long/part.txt partial\npid-file {s}/agent.pid\nhang"),
            "",
        ),
    ));
    let child = repo
        .farm_cmd(&repo.root, &["run", "--progress", "plain"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pidfile = repo.scratch.join("agent.pid");
    wait_until("agent start", Duration::from_secs(20), || pidfile.exists());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = Run::from(child.wait_with_output().unwrap());
    out.expect(130);
    assert!(!process_alive(read_pid(&pidfile)));
    let branch = format!("farm/{}/long", repo.last_run());
    assert_eq!(repo.show(&format!("{branch}:long/part.txt")), "partial");
    assert!(out.stdout.contains("agent-farm merge"), "{}", out.stdout);
    repo.assert_matches_report();
}

#[test]
fn fifty_agents_at_once() {
    let repo = TestRepo::new();
    let s = repo.scratch.display().to_string();
    let domains: String = (0..50)
        .map(|i| {
            domain(
                &format!("d{i:02}"),
                &format!("gen/d{i:02}/**"),
                &format!(
                    "touch {s}/started-{i}\n{}write gen/d{i:02}/out.txt {i}",
                    // Every agent waits for all fifty: a barrier no serial run could pass.
                    (0..50)
                        .map(|j| format!("wait-for {s}/started-{j} 60s\n"))
                        .collect::<String>()
                ),
                "",
            )
        })
        .collect();
    repo.write_plan(&sim_plan("max_parallel: 50\n", &domains));
    repo.farm(&["run", "--progress", "none"]).expect(0);
    let rec = repo.record();
    let running_at_once = {
        let windows: Vec<(u64, u64)> = (0..50)
            .map(|i| attempt_window(&rec, &format!("d{i:02}")))
            .collect();
        let latest_start = windows.iter().map(|w| w.0).max().unwrap();
        windows.iter().filter(|w| w.1 >= latest_start).count()
    };
    assert_eq!(running_at_once, 50, "all 50 agents were alive together");
    assert_eq!(
        repo.files_at("main")
            .iter()
            .filter(|f| f.starts_with("gen/"))
            .count(),
        50
    );
    repo.assert_matches_report();
    repo.assert_nothing_created();
}

#[test]
fn commits_an_agent_made_itself_are_kept() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "",
        &domain(
            "selfie",
            "s/**",
            "write s/one 1\ncommit agent's own commit\nwrite s/two 2",
            "",
        ),
    ));
    repo.farm(&["run", "--progress", "none"]).expect(0);
    let subjects = repo.git(&["log", "--format=%s", "main"]);
    assert!(subjects.contains("agent's own commit"), "{subjects}");
    assert!(subjects.contains("farm(selfie)"), "{subjects}");
    assert!(repo.root.join("s/one").is_file() && repo.root.join("s/two").is_file());
    repo.assert_matches_report();
}

#[test]
fn domain_verify_failure_fails_that_domain_before_merge() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "",
        &[
            domain(
                "checked",
                "c/**",
                "write c/x wrong",
                "verify: grep -q right c/x",
            ),
            domain("fine", "f/**", "write f/x 1", "verify: [test, -f, f/x]"),
        ]
        .concat(),
    ));
    repo.farm(&["run", "--progress", "none"]).expect(6);
    let rec = repo.record();
    assert_eq!(domain_rec(&rec, "checked")["status"], "failed");
    assert!(
        domain_rec(&rec, "checked")["reason"]
            .as_str()
            .unwrap()
            .contains("domain verify")
    );
    assert_eq!(domain_rec(&rec, "fine")["status"], "merged");
    assert!(!repo.root.join("c/x").exists());
    let log = repo.farm(&["logs", "checked", "--kind", "verify"]);
    assert!(log.stdout.contains("grep -q right c/x"), "{}", log.stdout);
    repo.assert_matches_report();
}

#[test]
fn flooding_agent_output_goes_to_its_log() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "",
        &domain("loud", "l/**", "flood 30000000\nwrite l/x 1", ""),
    ));
    repo.farm(&["run", "--progress", "none"]).expect(0);
    let log = repo.run_dir().join("loud/loud-output.log");
    assert!(std::fs::metadata(&log).unwrap().len() >= 30_000_000);
    repo.assert_matches_report();
}

#[test]
fn logs_follow_streams_until_the_domain_ends() {
    let repo = TestRepo::new();
    let s = repo.scratch.display().to_string();
    repo.write_plan(&sim_plan(
        "",
        &domain(
            "talk",
            "t/**",
            &format!("print first line\ntouch {s}/printed\nwait-for {s}/go 20s\nprint second line"),
            "",
        ),
    ));
    let mut run = repo
        .farm_cmd(&repo.root, &["run", "--progress", "none"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("first output", Duration::from_secs(20), || {
        repo.scratch.join("printed").exists()
    });
    let follow = repo
        .farm_cmd(&repo.root, &["logs", "talk", "-f"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::fs::write(repo.scratch.join("go"), "").unwrap();
    let out = Run::from(follow.wait_with_output().unwrap());
    out.expect(0);
    assert!(
        out.stdout.contains("first line") && out.stdout.contains("second line"),
        "{}",
        out.stdout
    );
    assert_eq!(run.wait().unwrap().code(), Some(0));
}

#[test]
fn agent_flag_overrides_the_plans_preset() {
    let repo = TestRepo::new();
    // The plan asks for claude, which these tests never need: --agent sim replaces it.
    repo.write_plan(
        "version: 1\nagent:\n  preset: claude\n  program: /nonexistent/claude\ndomains:\n  - name: a\n    owns: [a/**]\n    prompt: write a/x 1\n",
    );
    repo.farm(&["run", "--progress", "none"]).expect(4);
    repo.assert_nothing_created();
    repo.farm(&["run", "--agent", "sim", "--progress", "none"])
        .expect(0);
    assert!(repo.root.join("a/x").is_file());
}

/// `events.jsonl` begins with its version; the library's reader gives back every event in
/// order; `status` reads it too and refuses a log of a newer version.
#[test]
fn the_event_log_is_versioned_and_read_back() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "",
        &domain("api", "src/api/**", "write src/api/x 1", ""),
    ));
    repo.farm(&["run", "--progress", "none"]).expect(0);
    let path = repo.run_dir().join("events.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let first = text.lines().next().unwrap();
    assert_eq!(first, r#"{"version":1,"format":"agent-farm-events"}"#);
    let log = agent_farm::events::read(&path).unwrap();
    assert_eq!(log.version, agent_farm::events::VERSION);
    assert_eq!((log.torn, log.unknown), (0, 0));
    assert_eq!(log.events.len(), text.lines().count() - 1);
    let kinds: Vec<&str> = log.events.iter().map(|e| e.event.name()).collect();
    assert_eq!(kinds.first(), Some(&"run_started"));
    assert_eq!(kinds.last(), Some(&"run_finished"));
    repo.farm(&["status"]).expect(0);

    // A run whose log a newer agent-farm wrote is refused, not misread.
    let newer = text.replacen(r#"{"version":1,"#, r#"{"version":2,"#, 1);
    std::fs::write(&path, newer).unwrap();
    let status = repo.farm(&["status"]);
    status.expect(4);
    assert!(
        status.stderr.contains("version 2") && status.stderr.contains("upgrade agent-farm"),
        "{}",
        status.stderr
    );
}
