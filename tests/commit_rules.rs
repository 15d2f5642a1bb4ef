//! What the farm commits and what it cannot: the repository's commit hooks run for every domain
//! commit as `git commit` would run them (a refusing hook fails that domain, its work kept on disk
//! and under a hidden ref), and no path an agent writes vanishes without a report (gitignored
//! paths inside the domain, nested repositories, `.git` files, submodule paths).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::Value;

/// Install an executable hook script `name` under `dir` (relative to the repository root).
fn hook(repo: &TestRepo, dir: &str, name: &str, script: &str) {
    let rel = format!("{dir}/{name}");
    repo.write(&rel, &format!("#!/bin/sh\n{script}\n"));
    use std::os::unix::fs::PermissionsExt;
    let p = repo.root.join(&rel);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn domain_rec(repo: &TestRepo, name: &str) -> Value {
    repo.record()["domains"][name].clone()
}

fn worktree_of(repo: &TestRepo, name: &str) -> std::path::PathBuf {
    domain_rec(repo, name)["worktree"].as_str().unwrap().into()
}

/// A `core.hooksPath` pre-commit hook that refuses every commit: the domain fails with the
/// hook's output as its reason (in the record, the report and `status`), is not merged, and its
/// work stays both in its worktree and in `refs/farm/<run>/<domain>/rejected`.
#[test]
fn a_refusing_pre_commit_hook_fails_the_domain_and_keeps_its_work() {
    let repo = TestRepo::new();
    hook(
        &repo,
        ".githooks",
        "pre-commit",
        "echo 'pre-commit: the tree is frozen' >&2\necho \"index $GIT_INDEX_FILE\"\nexit 1",
    );
    repo.write_plan(&sim_plan(
        "",
        &domain("api", "src/api/**", "write src/api/new.rs fn new() {}", ""),
    ));
    repo.git(&["config", "core.hooksPath", ".githooks"]);
    let run = repo.farm(&["run", "--progress", "plain"]);
    run.expect(6);
    let run_id = repo.last_run();
    let d = domain_rec(&repo, "api");
    assert_eq!(d["status"], "failed", "{d}");
    let reason = d["reason"].as_str().unwrap();
    assert!(reason.contains("pre-commit hook"), "{reason}");
    assert!(reason.contains(".githooks/pre-commit"), "{reason}");
    assert!(reason.contains("the tree is frozen"), "{reason}");
    assert!(reason.contains("exit code 1"), "{reason}");
    let kept = format!("refs/farm/{run_id}/api/rejected");
    assert!(reason.contains(&kept), "{reason}");
    // Ran with the worktree's own index, as git gives it.
    assert!(
        reason.contains(&format!("worktrees/farm-{run_id}-api/index")),
        "{reason}"
    );
    // Not merged, nothing landed.
    assert!(
        !repo
            .files_at("main")
            .contains(&"src/api/new.rs".to_string())
    );
    // The work: in the kept ref, and still on disk in the kept worktree.
    assert_eq!(repo.show(&format!("{kept}:src/api/new.rs")), "fn new() {}");
    let wt = worktree_of(&repo, "api");
    assert_eq!(
        std::fs::read_to_string(wt.join("src/api/new.rs")).unwrap(),
        "fn new() {}\n"
    );
    // The branch itself holds nothing the hook refused.
    let branch = format!("farm/{run_id}/api");
    assert_eq!(
        repo.git(&["rev-parse", &branch]),
        repo.git(&["rev-parse", "main"])
    );
    // The report and `status` say why, naming the hook.
    let report = repo.report();
    let r = report["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == "api")
        .unwrap()
        .clone();
    assert!(r.to_string().contains("the tree is frozen"), "{r}");
    let status = repo.farm(&["status"]);
    assert!(
        status.stdout.contains("pre-commit hook"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains(&kept), "{}", status.stdout);
    // Cleanup tried once more and was refused the same way: the commit named is still the one kept.
    assert!(
        reason.contains(&repo.git(&["rev-parse", &kept])),
        "{reason}"
    );
    repo.git(&["fsck", "--no-progress"]);
    // With the rule lifted, the domain is retried in its kept worktree and lands.
    repo.git(&["config", "--unset", "core.hooksPath"]);
    repo.farm(&["resume", &run_id, "--retry-failed", "--progress", "plain"])
        .expect(0);
    assert_eq!(repo.read("src/api/new.rs"), "fn new() {}\n");
    assert_eq!(domain_rec(&repo, "api")["status"], "merged");
}

/// Hooks that pass run for the farm's domain commit, from git's default hooks directory, in the
/// domain's worktree with git's environment; a commit-msg hook's edit is what the commit says.
/// Merges and the landing run no commit hooks (README, "Hooks").
#[test]
fn passing_hooks_run_and_a_commit_msg_edit_is_kept() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "",
        &domain("api", "src/api/**", "write src/api/new.rs fn new() {}", ""),
    ));
    let marker = repo.scratch.join("hooks.log");
    let m = marker.display();
    for (name, extra) in [
        ("pre-commit", ""),
        ("prepare-commit-msg", ""),
        (
            "commit-msg",
            "printf '\\nReviewed-by: the commit-msg hook\\n' >> \"$1\"",
        ),
        ("post-commit", ""),
    ] {
        hook(
            &repo,
            ".git/hooks",
            name,
            &format!(
                "echo \"{name} args=$* pwd=$(pwd) index=$GIT_INDEX_FILE dir=$GIT_DIR editor=$GIT_EDITOR author=$GIT_AUTHOR_NAME\" >> {m}\n{extra}"
            ),
        );
    }
    repo.farm(&["run", "--progress", "plain"]).expect(0);
    let run_id = repo.last_run();
    let log = std::fs::read_to_string(&marker).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    // Exactly one commit ran hooks: the domain's (never the merge or the landing).
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "pre-commit",
            "prepare-commit-msg",
            "commit-msg",
            "post-commit"
        ],
        "{log}"
    );
    let admin = format!("worktrees/farm-{run_id}-api");
    for l in &lines {
        assert!(
            l.contains(&format!("/{run_id}/api")),
            "not in the worktree: {l}"
        );
        assert!(
            l.contains(&format!(
                "index={}",
                repo.common_dir().join(&admin).join("index").display()
            )),
            "{l}"
        );
        assert!(
            l.contains(&format!("dir={}", repo.common_dir().join(&admin).display())),
            "{l}"
        );
        assert!(l.contains("editor=:"), "{l}");
        assert!(l.contains("author=Farm Tester"), "{l}");
    }
    assert!(lines[1].contains("COMMIT_EDITMSG message"), "{}", lines[1]);
    // The landed domain commit carries the hook's edit; git's own tools agree.
    let bodies = repo.git(&["log", "main", "--format=%H %s"]);
    let domain_commit = bodies
        .lines()
        .find(|l| l.contains("farm(api)"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let msg = repo.git(&["log", "-1", "--format=%B", &domain_commit]);
    assert!(msg.contains("Reviewed-by: the commit-msg hook"), "{msg}");
    assert!(msg.contains("Farm-Domain: api"), "{msg}");
    assert_eq!(repo.read("src/api/new.rs"), "fn new() {}\n");
    repo.assert_matches_report();
}

/// A commit-msg hook that refuses: the same as a refusing pre-commit hook, named as commit-msg.
#[test]
fn a_refusing_commit_msg_hook_names_itself() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "",
        &domain("api", "src/api/**", "write src/api/new.rs fn new() {}", ""),
    ));
    hook(
        &repo,
        ".git/hooks",
        "commit-msg",
        "grep -q '^Ticket: ' \"$1\" || { echo 'commit-msg: no Ticket: trailer'; exit 3; }",
    );
    repo.farm(&["run", "--progress", "plain"]).expect(6);
    let run_id = repo.last_run();
    let d = domain_rec(&repo, "api");
    let reason = d["reason"].as_str().unwrap();
    assert!(reason.contains("commit-msg hook"), "{reason}");
    assert!(reason.contains("exit code 3"), "{reason}");
    assert!(reason.contains("no Ticket: trailer"), "{reason}");
    assert_eq!(
        repo.show(&format!("refs/farm/{run_id}/api/rejected:src/api/new.rs")),
        "fn new() {}"
    );
    assert!(worktree_of(&repo, "api").join("src/api/new.rs").is_file());
}

fn warnings(repo: &TestRepo) -> Vec<String> {
    repo.record()["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect()
}

#[track_caller]
fn warned(repo: &TestRepo, needle: &str) -> String {
    let all = warnings(repo);
    all.iter()
        .find(|w| w.contains(needle))
        .unwrap_or_else(|| panic!("no warning with {needle:?} in {all:#?}"))
        .clone()
}

/// A gitignored file inside the domain's globs is in no commit: the audit reports it with the
/// rule that ignores it, the domain merges as partial, and cleanup keeps the worktree holding it
/// (`clean` too, until `--force`). Gitignored build output outside the domain is not its work and
/// is not reported.
#[test]
fn an_owned_gitignored_write_is_reported_with_its_rule_and_kept() {
    let repo = TestRepo::with_files(&[
        (".gitignore", "target/\n# secrets\n*.env\n"),
        ("src/api/mod.rs", "// api\n"),
    ]);
    repo.write_plan(&sim_plan(
        "",
        &domain(
            "api",
            "src/api/**",
            "write src/api/ok.rs ok\nwrite src/api/local.env TOKEN=1\nwrite target/debug/out binary",
            "",
        ),
    ));
    let run = repo.farm(&["run", "--progress", "plain"]);
    run.expect(0);
    let w = warned(&repo, "src/api/local.env");
    assert!(
        w.contains("not committed: ignored by .gitignore:3 (*.env)"),
        "{w}"
    );
    assert!(!warnings(&repo).iter().any(|w| w.contains("target/")));
    let d = domain_rec(&repo, "api");
    assert_eq!(d["status"], "merged", "{d}");
    let reason = d["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("partial: 1 written path(s) in no commit"),
        "{reason}"
    );
    assert!(reason.contains("src/api/local.env"), "{reason}");
    assert_eq!(repo.read("src/api/ok.rs"), "ok\n");
    // Kept, with the file, and said so.
    let wt = worktree_of(&repo, "api");
    assert_eq!(
        std::fs::read_to_string(wt.join("src/api/local.env")).unwrap(),
        "TOKEN=1\n"
    );
    let kept = warned(&repo, "kept worktree");
    assert!(kept.contains("src/api/local.env"), "{kept}");
    assert!(kept.contains("--force"), "{kept}");
    assert!(run.stdout.contains("src/api/local.env"), "{}", run.stdout);
    // `clean` keeps it too; `--force` removes it.
    let id = repo.last_run();
    let c = repo.farm(&["clean", &id]);
    c.expect(0);
    assert!(wt.join("src/api/local.env").is_file(), "{}", c.stdout);
    assert!(c.stdout.contains("kept worktree"), "{}", c.stdout);
    repo.farm(&["clean", &id, "--force"]).expect(0);
    assert!(!wt.exists());
    repo.git(&["fsck", "--no-progress"]);
}

/// `ownership.ignore` says a path never counts: an owned gitignored file there (build output) is
/// neither reported nor kept.
#[test]
fn an_owned_gitignored_path_listed_in_ownership_ignore_is_not_kept() {
    let repo = TestRepo::with_files(&[
        (".gitignore", "dist/\n"),
        ("web/index.html", "<h1>web</h1>\n"),
    ]);
    repo.write_plan(&sim_plan(
        "ownership:\n  ignore: [\"web/dist/**\"]\n",
        &domain(
            "web",
            "web/**",
            "write web/app.js app\nwrite web/dist/app.min.js min",
            "",
        ),
    ));
    repo.farm(&["run", "--progress", "plain"]).expect(0);
    assert!(warnings(&repo).is_empty(), "{:?}", warnings(&repo));
    assert!(domain_rec(&repo, "web")["reason"].is_null());
    repo.assert_matches_report();
}

/// A repository the agent made inside its domain, a stray `.git` file, and `git init` in a
/// tracked directory: the rest of the work is committed and merged (the commit no longer fails
/// on them), each is reported as in no commit, and the worktree holding them is kept.
#[test]
fn nested_repositories_and_stray_git_files_are_reported_and_kept() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "",
        &domain(
            "api",
            "src/api/**",
            "write src/api/ok.rs ok\n\
             git-init src/api/inner\nwrite src/api/inner/lib.rs inner work\n\
             write src/api/odd/.git gitdir: nowhere\nwrite src/api/odd/x.rs odd work\n\
             git-init src/api",
            "",
        ),
    ));
    let run = repo.farm(&["run", "--progress", "plain"]);
    run.expect(0);
    let d = domain_rec(&repo, "api");
    assert_eq!(d["status"], "merged", "{d}");
    assert_eq!(repo.read("src/api/ok.rs"), "ok\n");
    for (path, why) in [
        ("src/api/inner/ (", "a nested git repository"),
        ("src/api/odd/ (", "a nested git repository"),
        ("src/api/.git (", "git never commits a .git"),
    ] {
        let w = warned(&repo, path);
        assert!(w.contains(&format!("not committed: {why}")), "{w}");
    }
    assert!(
        !repo
            .files_at("main")
            .iter()
            .any(|f| f.contains("inner") || f.contains("odd"))
    );
    let wt = worktree_of(&repo, "api");
    assert_eq!(
        std::fs::read_to_string(wt.join("src/api/inner/lib.rs")).unwrap(),
        "inner work\n"
    );
    assert!(wt.join("src/api/odd/x.rs").is_file());
    let kept = warned(&repo, "kept worktree");
    assert!(kept.contains("3 path(s)"), "{kept}");
    repo.git(&["fsck", "--no-progress"]);
}

/// A write into the directory of a submodule by a domain that does not own it (preflight refuses
/// owning it): reported as in no commit, naming the submodule, and kept with the worktree.
#[test]
fn a_write_inside_a_submodule_directory_is_reported_and_kept() {
    let repo = TestRepo::new();
    repo.write(
        ".gitmodules",
        "[submodule \"vendor/lib\"]\n\tpath = vendor/lib\n\turl = ../lib\n",
    );
    repo.write(
        "farm.yaml",
        &sim_plan(
            "ownership:\n  policy: warn\n",
            &domain(
                "api",
                "src/api/**",
                "write src/api/ok.rs ok\nwrite vendor/lib/patch.txt patched",
                "",
            ),
        ),
    );
    repo.git(&["add", ".gitmodules", "farm.yaml"]);
    repo.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        "160000,1111111111111111111111111111111111111111,vendor/lib",
    ]);
    repo.git(&["commit", "-q", "-m", "a submodule"]);
    std::fs::create_dir_all(repo.root.join("vendor/lib")).unwrap();
    repo.farm(&["run", "--progress", "plain"]);
    let w = warned(&repo, "vendor/lib/patch.txt (");
    assert!(
        w.contains("inside the submodule vendor/lib, which worktrees do not check out"),
        "{w}"
    );
    let wt = worktree_of(&repo, "api");
    assert_eq!(
        std::fs::read_to_string(wt.join("vendor/lib/patch.txt")).unwrap(),
        "patched\n"
    );
    assert!(warned(&repo, "kept worktree").contains("vendor/lib/patch.txt"));
    assert_eq!(repo.read("src/api/ok.rs"), "ok\n");
}
