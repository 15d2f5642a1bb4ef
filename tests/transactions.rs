//! Transactional effects: agent-farm SIGKILLed at every named point inside an effect
//! (`AGENT_FARM_FAULT=at:<point>`) — in the middle of landing, worktree creation, verify's
//! worktree, commits, merges, branch creation and deletion — then any agent-farm command
//! recovers from the journal. Checked with git itself: no lock file left, the user's checkout
//! exactly as before or exactly as landed (never a mix), `resume` lands the same tree as an
//! uninterrupted run, `git fsck --full` clean, nothing of the run left after it.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

/// Two domains that modify, add and delete files the user's checkout holds, one depending on
/// the other, and a verify step: landing touches every kind of checkout change.
fn setup() -> TestRepo {
    let repo = TestRepo::with_files(&[
        ("README.md", "# test repo\n"),
        ("src/api/mod.rs", "// api\n"),
        ("src/api/old.rs", "// to be deleted\n"),
        ("docs/index.md", "# docs\n"),
        ("docs/guide/intro.md", "intro\n"),
    ]);
    repo.write_plan(&sim_plan(
        "verify: test -f src/api/users.rs && test -f docs/users.md\n",
        &[
            domain(
                "api",
                "src/api/**",
                "write src/api/users.rs pub fn users() {}\nappend src/api/mod.rs pub mod users;\ndelete src/api/old.rs",
                "",
            ),
            domain(
                "docs",
                "docs/**",
                "write docs/users.md users\nreplace docs/index.md docs documentation\ndelete docs/guide/intro.md",
                "depends_on: [api]",
            ),
        ]
        .concat(),
    ));
    repo
}

fn expected_tree() -> String {
    let repo = setup();
    repo.farm(&["run", "--progress", "none"]).expect(0);
    repo.git(&["rev-parse", "main^{tree}"])
}

/// Lock files under the git dir, except agent-farm's own flock files (which are not git locks
/// and are never in the way).
fn git_locks(repo: &TestRepo) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![repo.common_dir()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "lock") {
                let rel = p.strip_prefix(repo.common_dir()).unwrap().to_path_buf();
                let rel = rel.to_string_lossy().into_owned();
                let flock = rel == "agent-farm/land.lock"
                    || (rel.starts_with("agent-farm/runs/") && rel.ends_with("/lock"));
                if !flock {
                    out.push(rel);
                }
            }
        }
    }
    out
}

/// The user's checkout is clean and at `main`, HEAD still on `main`.
fn assert_checkout_consistent(repo: &TestRepo, what: &str) {
    assert_eq!(
        repo.git(&["status", "--porcelain", "--untracked-files=all"]),
        "",
        "{what}: the user's checkout is not clean"
    );
    assert_eq!(
        repo.git(&["symbolic-ref", "HEAD"]),
        "refs/heads/main",
        "{what}"
    );
}

fn kill_at(repo: &TestRepo, point: &str) {
    let out = repo
        .farm_cmd(&repo.root, &["run", "--progress", "plain"])
        .env("AGENT_FARM_FAULT", format!("at:{point}"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        None,
        "agent-farm should have been killed at {point}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn killed_at_then_recovered(point: &str) {
    let expected = expected_tree();
    let repo = setup();
    let before = repo.git(&["rev-parse", "main"]);
    kill_at(&repo, point);
    let id = repo.last_run();
    // Any command recovers the dead run's half-done effects; `status` only reads, `clean` acts.
    repo.farm(&["clean", &id]).expect(0);
    assert_eq!(
        git_locks(&repo),
        Vec::<String>::new(),
        "{point}: locks left"
    );
    assert_checkout_consistent(&repo, &format!("after a kill at {point}, then clean"));
    let main_after_clean = repo.git(&["rev-parse", "main"]);
    let landed = main_after_clean != before;
    if landed {
        // Rolled forward: exactly the landed result.
        assert_eq!(repo.git(&["rev-parse", "main^{tree}"]), expected, "{point}");
    }
    let resumed = repo.farm(&["resume", &id, "--progress", "plain"]);
    resumed.expect(0);
    assert_eq!(
        repo.git(&["rev-parse", "main^{tree}"]),
        expected,
        "{point}: resume lands what an uninterrupted run lands\n{}",
        resumed.stderr
    );
    assert_checkout_consistent(&repo, &format!("{point}, after resume"));
    assert_eq!(
        git_locks(&repo),
        Vec::<String>::new(),
        "{point}: locks left"
    );
    repo.farm(&["clean", &id]).expect(0);
    assert_eq!(repo.worktrees().len(), 1, "{point}: {:?}", repo.worktrees());
    let admin = repo.common_dir().join("worktrees");
    assert!(
        std::fs::read_dir(&admin).map_or(true, |mut d| d.next().is_none()),
        "{point}: git worktree entries left in {}",
        admin.display()
    );
    assert!(
        repo.farm_branches().is_empty(),
        "{point}: {:?}",
        repo.farm_branches()
    );
    let fsck = repo.git_output(&["fsck", "--full", "--no-progress"]);
    assert!(fsck.status.success(), "{point}: fsck failed");
    println!(
        "killed at {point:<20} clean: {}, resume: exit 0, same tree: yes, locks: 0, checkout: clean",
        if landed {
            "rolled forward"
        } else {
            "as before"
        }
    );
}

#[test]
fn killed_after_the_landing_was_journaled() {
    killed_at_then_recovered("land.journaled");
}

#[test]
fn killed_holding_the_lock_of_the_users_branch() {
    killed_at_then_recovered("land.ref-locked");
}

#[test]
fn killed_in_the_middle_of_the_checkout_update() {
    killed_at_then_recovered("land.checkout");
}

#[test]
fn killed_after_the_checkout_files_were_written() {
    killed_at_then_recovered("land.files-written");
}

#[test]
fn killed_with_the_new_index_staged() {
    killed_at_then_recovered("land.index-staged");
}

#[test]
fn killed_right_after_the_users_branch_moved() {
    killed_at_then_recovered("land.ref-moved");
}

#[test]
fn killed_while_adding_a_worktree() {
    killed_at_then_recovered("worktree.add");
}

#[test]
fn killed_right_after_a_worktree_was_added() {
    killed_at_then_recovered("worktree.added");
}

#[test]
fn killed_while_adding_the_verify_worktree() {
    killed_at_then_recovered("verify.add");
}

#[test]
fn killed_while_removing_a_worktree() {
    killed_at_then_recovered("worktree.remove");
}

#[test]
fn killed_while_creating_a_branch() {
    killed_at_then_recovered("branch.create");
}

#[test]
fn killed_while_committing() {
    killed_at_then_recovered("commit");
}

#[test]
fn killed_while_merging() {
    killed_at_then_recovered("merge");
}

#[test]
fn killed_while_deleting_a_ref() {
    killed_at_then_recovered("ref.delete");
}

/// A landing cut short leaves the user's branch locked until recovery; recovery removes only
/// the dead run's own lock. A lock another git process holds is never touched, and landing
/// says the branch is locked instead of failing or waiting.
#[test]
fn a_lock_held_by_another_git_process_is_never_removed() {
    let repo = setup();
    let lock = repo.common_dir().join("refs/heads/main.lock");
    // Someone else's lock, taken before the run lands (a concurrent `git commit`).
    repo.write_plan(&sim_plan(
        "",
        &domain("api", "src/api/**", "write src/api/users.rs users", ""),
    ));
    let before = repo.git(&["rev-parse", "main"]);
    std::fs::write(&lock, "").unwrap();
    let run = repo.farm(&["run", "--progress", "none"]);
    run.expect(5);
    assert!(
        run.stdout.contains("locked by another git process"),
        "{}",
        run.stdout
    );
    assert!(lock.exists(), "a foreign lock was removed");
    assert_eq!(repo.git(&["rev-parse", "main"]), before);
    // Recovery of other runs never touches it either.
    repo.farm(&["clean"]).expect(0);
    assert!(lock.exists(), "a foreign lock was removed by clean");
    std::fs::remove_file(&lock).unwrap();
    repo.farm(&["merge", "--progress", "none"]).expect(0);
    assert!(repo.root.join("src/api/users.rs").is_file());
    assert_checkout_consistent(&repo, "after merge");
}

/// A user who edits a file of the landing between the crash and the recovery keeps the edit.
#[test]
fn recovery_never_overwrites_what_the_user_changed_since() {
    let repo = setup();
    kill_at(&repo, "land.files-written");
    // The checkout is half updated now; the user edits one of the landing's files.
    repo.write("docs/index.md", "my own edit\n");
    repo.farm(&["clean"]).expect(0);
    assert_eq!(repo.read("docs/index.md"), "my own edit\n");
    assert_eq!(git_locks(&repo), Vec::<String>::new());
}

/// A run whose record is gone (deleted by hand) is still found by `clean --all` from what git
/// holds of it: its worktrees, branches and hidden refs.
#[test]
fn clean_all_finds_runs_without_a_record() {
    let repo = setup();
    kill_at(&repo, "worktree.added");
    let id = repo.last_run();
    std::fs::remove_dir_all(repo.common_dir().join("agent-farm/runs").join(&id)).unwrap();
    assert!(!repo.farm_branches().is_empty());
    let out = repo.farm(&["clean", "--all", "--force"]);
    out.expect(0);
    assert!(
        out.stdout.contains(&format!("{id}: no run record")),
        "{}",
        out.stdout
    );
    assert!(
        repo.farm_branches().is_empty(),
        "{:?}",
        repo.farm_branches()
    );
    assert_eq!(repo.worktrees().len(), 1, "{:?}", repo.worktrees());
    assert_eq!(git_locks(&repo), Vec::<String>::new());
}

/// A file the dead process was writing when it was killed holds the start of its content: it is
/// the landing's to undo (not a change of the user's), and the checkout ends exactly as before.
#[test]
fn a_file_cut_short_mid_write_is_undone_with_the_rest() {
    let repo = setup();
    let before = repo.git(&["rev-parse", "main"]);
    kill_at(&repo, "land.files-written");
    // As if the kill had hit in the middle of writing these: new and modified files.
    let new_file = repo.root.join("src/api/users.rs");
    let text = std::fs::read(&new_file).unwrap();
    std::fs::write(&new_file, &text[..text.len() / 2]).unwrap();
    std::fs::write(repo.root.join("docs/index.md"), "").unwrap();
    repo.farm(&["clean"]).expect(0);
    assert_eq!(repo.git(&["rev-parse", "main"]), before);
    assert_checkout_consistent(&repo, "after a write cut short, then clean");
    assert_eq!(git_locks(&repo), Vec::<String>::new());
}

/// A landing finished by recovery is in the reflog of `into`, as a finished one is.
#[test]
fn a_landing_rolled_forward_is_in_the_reflog() {
    let repo = setup();
    kill_at(&repo, "land.ref-moved");
    repo.farm(&["clean"]).expect(0);
    let main = repo.git(&["rev-parse", "main"]);
    let reflog = repo.git(&["reflog", "show", "--format=%H %gs", "refs/heads/main"]);
    assert!(
        reflog.lines().next().is_some_and(|l| l.starts_with(&main)),
        "{reflog}"
    );
}

/// The journal's intents of the last run that began and never ended.
fn open_intents(repo: &TestRepo) -> usize {
    let text = std::fs::read_to_string(repo.run_dir().join("journal.jsonl")).unwrap_or_default();
    let mut open = std::collections::BTreeSet::new();
    for l in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        let id = v["id"].as_str().unwrap_or_default().to_string();
        match v["kind"].as_str() {
            Some("begin") => {
                open.insert(id);
            }
            Some("end") => {
                open.remove(&id);
            }
            _ => {}
        }
    }
    open.len()
}

/// An index another git process holds (an editor's `git status`): landing touches nothing,
/// says `into` is locked, and leaves no intent open for a later recovery to act on.
#[test]
fn an_index_locked_by_someone_else_refuses_the_landing_cleanly() {
    let repo = setup();
    let before = repo.git(&["rev-parse", "main"]);
    let lock = repo.common_dir().join("index.lock");
    std::fs::write(&lock, "").unwrap();
    let run = repo.farm(&["run", "--progress", "none"]);
    run.expect(5);
    assert!(
        run.stdout.contains("locked by another git process"),
        "{}",
        run.stdout
    );
    assert!(lock.exists(), "someone else's index lock was removed");
    assert_eq!(repo.git(&["rev-parse", "main"]), before);
    assert_eq!(open_intents(&repo), 0, "an intent was left open");
    std::fs::remove_file(&lock).unwrap();
    assert_checkout_consistent(&repo, "after a refused landing");
    repo.farm(&["merge", "--progress", "none"]).expect(0);
    assert_checkout_consistent(&repo, "after merge");
}

/// After a crash, the user switched their checkout to another branch: recovery finishes the
/// landing of `into`'s ref but never writes `into`'s files into the other branch's checkout.
#[test]
fn recovery_leaves_a_checkout_switched_to_another_branch_alone() {
    let repo = setup();
    let before = repo.git(&["rev-parse", "main"]);
    kill_at(&repo, "land.index-written");
    repo.git(&["switch", "-q", "-c", "feature", &before]);
    let status = repo.git(&["status", "--porcelain", "--untracked-files=all"]);
    repo.farm(&["clean"]).expect(0);
    assert_eq!(repo.git(&["symbolic-ref", "HEAD"]), "refs/heads/feature");
    assert_eq!(
        repo.git(&["status", "--porcelain", "--untracked-files=all"]),
        status,
        "recovery changed a checkout that is not on `main` any more"
    );
    assert_eq!(git_locks(&repo), Vec::<String>::new());
}

/// Landing a file that became a directory (and back) updates files and index alike.
#[test]
fn a_file_that_becomes_a_directory_lands() {
    let repo = TestRepo::with_files(&[("cfg", "flat\n"), ("docs/x", "x\n")]);
    let plan = sim_plan(
        "",
        &domain(
            "cfg",
            "cfg/**",
            "delete cfg\nwrite cfg/main.toml nested",
            "",
        ),
    );
    // The domain owns the file `cfg` and everything under the directory it becomes.
    repo.write_plan(&plan.replace(r#"owns: ["cfg/**"]"#, r#"owns: ["cfg", "cfg/**"]"#));
    repo.farm(&["run", "--progress", "none"]).expect(0);
    assert_eq!(repo.read("cfg/main.toml"), "nested\n");
    assert_checkout_consistent(&repo, "after a file became a directory");
}

/// An effect that dies (a bug: a panic in its task) never hangs the run: the dispatcher hears
/// of it as the effect's failure, the run ends with the work kept and says why.
#[test]
fn an_effect_that_panics_is_a_failure_not_a_hang() {
    let repo = setup();
    let out = repo
        .farm_cmd(&repo.root, &["run", "--progress", "plain"])
        .env("AGENT_FARM_FAULT", "panic:merge")
        .output()
        .unwrap();
    let run = Run::from(out);
    run.expect(6);
    assert!(
        run.stderr.contains("the effect's task failed"),
        "{}",
        run.stderr
    );
    // The domain's work is kept on its branch.
    let branch = format!("farm/{}/api", repo.last_run());
    assert!(
        repo.farm_branches().contains(&branch),
        "{:?}",
        repo.farm_branches()
    );
    assert_checkout_consistent(&repo, "after a panicking merge");
}
