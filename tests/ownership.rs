//! File ownership: violations found live and at audit, each policy, shared and ignored paths, and
//! the real Claude Code CLI refusing edits into other domains through derived permission rules.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::mock_api::*;
use common::*;
use serde_json::Value;

/// `api` owns src/api/**, `ui` owns src/ui/** (src/ui/index.html exists at base).
fn two_domains(api_instructions: &str) -> String {
    [
        domain("api", "src/api/**", api_instructions, ""),
        domain("ui", "src/ui/**", "write src/ui/new.html ui work", ""),
    ]
    .concat()
}

fn violations(rec: &Value, domain: &str) -> Vec<Value> {
    rec["domains"][domain]["violations"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn warn_reports_and_merges() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "ownership:\n  policy: warn\n",
        &two_domains("write src/api/a.rs api\nwrite src/ui/index.html hijacked by api"),
    ));
    let run = repo.farm(&["run", "--jobs", "1", "--progress", "plain"]);
    run.expect(0);
    let rec = repo.record();
    assert_eq!(rec["domains"]["api"]["status"], "merged");
    // The audit always reports it; the live watcher may also have seen it while the agent ran
    // (a fast agent may end before its write's debounce window closes: then only the audit).
    let all = violations(&rec, "api");
    assert!(
        all.iter()
            .all(|v| v["path"] == "src/ui/index.html" && v["detected"] != "prevented"),
        "{all:?}"
    );
    let v: Vec<Value> = all
        .into_iter()
        .filter(|v| v["detected"] == "audit")
        .collect();
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["path"], "src/ui/index.html");
    assert_eq!(v[0]["owner"], "ui");
    assert_eq!(v[0]["detected"], "audit");
    assert_eq!(v[0]["action"], "reported");
    assert_eq!(repo.read("src/ui/index.html"), "hijacked by api\n");
    assert!(
        run.stdout.contains("ownership violations:"),
        "{}",
        run.stdout
    );
    repo.assert_matches_report();
}

#[test]
fn block_keeps_the_domain_from_merging() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "",
        &two_domains("write src/api/a.rs api\nwrite src/ui/index.html hijacked by api"),
    ));
    repo.farm(&["run", "--progress", "plain"]).expect(6);
    let rec = repo.record();
    assert_eq!(rec["domains"]["api"]["status"], "blocked");
    assert!(
        rec["domains"]["api"]["reason"]
            .as_str()
            .unwrap()
            .contains("src/ui/index.html")
    );
    // The audit blocks it; the watcher may have reported the write live before (or after).
    let found = violations(&rec, "api");
    assert!(found.iter().any(|v| v["action"] == "blocked"), "{found:#?}");
    assert!(
        found
            .iter()
            .all(|v| ["blocked", "reported"].contains(&v["action"].as_str().unwrap())),
        "{found:#?}"
    );
    assert_eq!(rec["domains"]["ui"]["status"], "merged");
    assert_eq!(repo.read("src/ui/index.html"), "<h1>ui</h1>\n");
    assert!(!repo.root.join("src/api/a.rs").exists());
    let branch = format!("farm/{}/api", repo.last_run());
    assert_eq!(repo.show(&format!("{branch}:src/api/a.rs")), "api");
    repo.assert_matches_report();
}

#[test]
fn revert_merges_the_rest_and_keeps_the_dropped_change() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "ownership:\n  policy: revert\n",
        &two_domains("write src/api/a.rs api\nwrite src/ui/index.html hijacked by api\nwrite NOTES.md nobody owns this"),
    ));
    repo.farm(&["run", "--jobs", "1", "--progress", "plain"])
        .expect(0);
    let rec = repo.record();
    assert_eq!(rec["domains"]["api"]["status"], "merged");
    assert_eq!(repo.read("src/api/a.rs"), "api\n");
    assert_eq!(
        repo.read("src/ui/index.html"),
        "<h1>ui</h1>\n",
        "the change to ui's file was dropped"
    );
    assert!(
        !repo.root.join("NOTES.md").exists(),
        "the unowned file was dropped"
    );
    let v = violations(&rec, "api");
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(
        v.iter()
            .all(|v| v["action"].as_str().unwrap().starts_with("reverted"))
    );
    // Nothing is lost: the dropped changes are under a ref and in a patch file.
    let dropped = format!("refs/farm/{}/api/dropped", repo.last_run());
    assert_eq!(
        repo.show(&format!("{dropped}:src/ui/index.html")),
        "hijacked by api"
    );
    let patch = std::fs::read_to_string(repo.run_dir().join("api/api-dropped.patch")).unwrap();
    assert!(
        patch.contains("+hijacked by api") && patch.contains("NOTES.md"),
        "{patch}"
    );
    // The report lists the dropped ref among what the run keeps, as git holds it.
    let kept = repo.kept_refs(&repo.report());
    assert!(kept.contains(&dropped), "{kept:?}");
    repo.assert_matches_report();
    let clean = repo.farm(&["clean"]);
    assert!(clean.stdout.contains(&dropped), "{}", clean.stdout);
}

#[test]
fn deletes_renames_and_outward_symlinks_are_caught_at_audit() {
    let repo = TestRepo::with_files(&[
        ("src/ui/index.html", "<h1>ui</h1>\n"),
        (
            "src/ui/old.ts",
            "export const x = 1; // a file with enough content to be seen as renamed\n",
        ),
        ("src/api/mod.rs", "// api\n"),
        ("docs/index.md", "# docs\n"),
    ]);
    repo.write_plan(&sim_plan(
        "",
        &[
            domain(
                "api",
                "src/api/**",
                "delete src/ui/index.html\nrename src/ui/old.ts src/api/old.ts\nsymlink ../../../../etc/passwd src/api/passwd\nsymlink ../../docs/index.md src/api/docs-link",
                "",
            ),
            domain("ui", "src/ui/**", "write src/ui/x 1", ""),
            domain("docs", "docs/**", "write docs/y 1", ""),
        ]
        .concat(),
    ));
    repo.farm(&["run", "--progress", "plain"]).expect(6);
    let rec = repo.record();
    let v: Vec<(String, String)> = violations(&rec, "api")
        .iter()
        .map(|v| {
            (
                v["path"].as_str().unwrap().to_string(),
                v["change"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        v.contains(&("src/ui/index.html".into(), "deleted".into())),
        "{v:?}"
    );
    assert!(
        v.contains(&("src/ui/old.ts".into(), "renamed to src/api/old.ts".into())),
        "{v:?}"
    );
    assert!(
        v.contains(&(
            "src/api/passwd".into(),
            "symlink to ../../../../etc/passwd (outside the repository)".into()
        )),
        "{v:?}"
    );
    assert!(
        v.contains(&(
            "src/api/docs-link".into(),
            "symlink to docs/index.md".into()
        )),
        "{v:?}"
    );
    assert_eq!(rec["domains"]["api"]["status"], "blocked");
    repo.assert_matches_report();
}

#[test]
fn shared_ignored_and_gitignored_paths_are_not_violations() {
    let repo = TestRepo::with_files(&[
        (".gitignore", "target/\n"),
        ("src/api/mod.rs", "// api\n"),
        ("CHANGELOG.md", "# changes\n"),
    ]);
    repo.write_plan(&sim_plan(
        "ownership:\n  shared: [CHANGELOG.md]\n  ignore: [\"build/**\"]\n",
        &[
            domain(
                "api",
                "src/api/**",
                "write src/api/a.rs 1\nappend CHANGELOG.md - api change\nwrite build/out.txt generated\nwrite target/debug/x binary",
                "",
            ),
            domain("ui", "src/ui/**", "append CHANGELOG.md - ui change\nwrite src/ui/a 1", ""),
        ]
        .concat(),
    ));
    repo.farm(&["run", "--jobs", "1", "--progress", "plain"])
        .expect(0);
    let rec = repo.record();
    assert!(
        violations(&rec, "api").is_empty(),
        "{:?}",
        violations(&rec, "api")
    );
    assert!(violations(&rec, "ui").is_empty());
    assert!(repo.read("CHANGELOG.md").contains("- api change"));
    assert!(repo.read("CHANGELOG.md").contains("- ui change"));
    assert!(
        !repo
            .files_at("main")
            .iter()
            .any(|f| f.starts_with("target/"))
    );
    repo.assert_matches_report();
}

#[test]
fn real_claude_is_refused_edits_into_another_domain() {
    let Some(bin) = require_claude("real_claude_is_refused_edits_into_another_domain") else {
        return;
    };
    let repo = TestRepo::new();
    let api = MockApi::start(vec![script(
        "api",
        vec![
            Turn::tool(Block::write("src/api/a.rs", "// mine\n")),
            // Into ui's domain: a new file and an edit of an existing one.
            Turn::tool(Block::write("src/ui/evil.html", "<p>api was here</p>\n")),
            Turn::tool(Block::read("src/ui/index.html")),
            Turn::tool(Block::edit("src/ui/index.html", "ui", "api")),
            Turn::text("done"),
        ],
    )]);
    let state = repo.scratch.join("claude-state");
    let env: String = claude_env(&api.url(), &state)
        .into_iter()
        .map(|(k, v)| format!("    {k}: {v:?}\n"))
        .collect();
    repo.write_plan(&format!(
        "version: 1\nagent:\n  preset: claude\n  program: {:?}\n  args: [--no-session-persistence]\n  timeout: 120s\n  env:\n{env}domains:\n  - name: api\n    owns: [\"src/api/**\"]\n    prompt: api work\n  - name: ui\n    owns: [\"src/ui/**\"]\n    prompt: ui work\n",
        bin.display().to_string()
    ));
    let run = repo.farm(&["run", "--progress", "plain"]);
    run.expect(0);
    assert_eq!(repo.read("src/api/a.rs"), "// mine\n");
    assert_eq!(repo.read("src/ui/index.html"), "<h1>ui</h1>\n");
    assert!(!repo.root.join("src/ui/evil.html").exists());
    let rec = repo.record();
    let prevented: Vec<String> = violations(&rec, "api")
        .iter()
        .filter(|v| v["detected"] == "prevented")
        .map(|v| v["path"].as_str().unwrap().to_string())
        .collect();
    assert!(
        prevented.contains(&"src/ui/evil.html".to_string()),
        "{prevented:?}\n{}",
        run.stderr
    );
    assert!(
        prevented.contains(&"src/ui/index.html".to_string()),
        "{prevented:?}"
    );
    assert!(run.stdout.contains("prevented"), "{}", run.stdout);
    // The derived rules were passed to the CLI.
    let log = std::fs::read_to_string(repo.run_dir().join("api/api-output.log")).unwrap();
    assert!(
        log.contains("Edit(./src/ui/**)"),
        "argv is logged: {}",
        &log[..log.len().min(400)]
    );
    let _ = Duration::ZERO;
}

#[test]
fn conflicts_are_predicted_before_merging_with_ownership_facts() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "ownership:\n  shared: [README.md]\n",
        &[
            domain("one", "one/**", "write one/x 1\nwrite README.md # one", ""),
            domain("two", "two/**", "write two/x 1\nwrite README.md # two", ""),
            domain("three", "three/**", "write three/x 1", ""),
        ]
        .concat(),
    ));
    repo.farm(&["run", "--no-merge", "--progress", "none"])
        .expect(0);
    let merge = repo.farm(&["merge", "--progress", "plain"]);
    merge.expect(7);
    let predicted: Vec<Value> = repo
        .events()
        .into_iter()
        .filter(|e| e["event"] == "conflict_predicted")
        .collect();
    assert_eq!(predicted.len(), 1, "{predicted:?}");
    assert_eq!(predicted[0]["domain"], "one");
    assert_eq!(predicted[0]["with"], "two");
    assert_eq!(predicted[0]["paths"], serde_json::json!(["README.md"]));
    assert_eq!(
        predicted[0]["facts"],
        serde_json::json!(["README.md: shared; changed by one and two"])
    );
    assert!(
        merge
            .stderr
            .contains("would conflict with two on README.md"),
        "{}",
        merge.stderr
    );
    let rec = repo.record();
    assert_eq!(rec["domains"]["one"]["status"], "merged");
    assert_eq!(rec["domains"]["two"]["status"], "conflicted");
    assert_eq!(rec["domains"]["three"]["status"], "merged");
    repo.assert_matches_report();
}

/// The run's events so far (the run is still going).
fn run_until_event(
    repo: &TestRepo,
    env: &[(&str, &str)],
    wanted: impl Fn(&Value) -> bool,
) -> (Value, Run) {
    let mut cmd = repo.farm_cmd(&repo.root, &["run", "--progress", "plain"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut found = None;
    wait_until("the live event", Duration::from_secs(30), || {
        found = repo.live_events().into_iter().find(|e| wanted(e));
        found.is_some()
    });
    // Only now may the agents finish: the event was reported while they were running.
    std::fs::write(repo.scratch.join("go"), "").unwrap();
    let out = Run::from(child.wait_with_output().unwrap());
    (found.unwrap(), out)
}

fn attempt_end(rec: &Value, domain: &str) -> u64 {
    rec["domains"][domain]["attempts"][0]["ended_ms"]
        .as_u64()
        .unwrap()
}

fn shell_write_outside(repo: &TestRepo, env: &[(&str, &str)]) {
    let s = repo.scratch.display().to_string();
    repo.write_plan(&sim_plan(
        "ownership:\n  policy: warn\n",
        &two_domains(&format!(
            "write src/api/a.rs 1\nwrite src/ui/index.html written by api's shell\nwait-for {s}/go 30s"
        )),
    ));
    let (ev, out) = run_until_event(repo, env, |e| {
        e["event"] == "ownership_violation" && e["violation"]["detected"] == "live"
    });
    out.expect(0);
    assert_eq!(ev["domain"], "api");
    assert_eq!(ev["violation"]["path"], "src/ui/index.html");
    assert_eq!(ev["violation"]["owner"], "ui");
    let rec = repo.record();
    assert!(
        ev["at_ms"].as_u64().unwrap() <= attempt_end(&rec, "api"),
        "reported before the agent ended"
    );
    // The audit finds it too, authoritatively.
    assert!(
        violations(&rec, "api")
            .iter()
            .any(|v| v["detected"] == "audit")
    );
    assert!(out.stderr.contains("OWNERSHIP"), "{}", out.stderr);
}

#[test]
fn a_shell_write_outside_the_domain_is_caught_live() {
    let repo = TestRepo::new();
    shell_write_outside(&repo, &[]);
}

#[test]
fn polling_fallback_still_catches_it_and_says_so_once() {
    let repo = TestRepo::new();
    shell_write_outside(&repo, &[("AGENT_FARM_WATCH", "poll")]);
    let warnings: Vec<Value> = repo
        .events()
        .into_iter()
        .filter(|e| e["event"] == "warning" && e["message"].as_str().unwrap().contains("polled"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

#[test]
fn two_agents_touching_one_file_are_reported_live() {
    let repo = TestRepo::with_files(&[("CHANGELOG.md", "# changes\n"), ("src/api/mod.rs", "")]);
    let s = repo.scratch.display().to_string();
    repo.write_plan(&sim_plan(
        "ownership:\n  shared: [CHANGELOG.md]\n",
        &[
            domain(
                "api",
                "src/api/**",
                &format!("append CHANGELOG.md - api\nwait-for {s}/go 30s"),
                "",
            ),
            domain(
                "ui",
                "src/ui/**",
                &format!("append CHANGELOG.md - ui\nwait-for {s}/go 30s"),
                "",
            ),
        ]
        .concat(),
    ));
    let (ev, _out) = run_until_event(&repo, &[], |e| e["event"] == "collision");
    assert_eq!(ev["path"], "CHANGELOG.md");
    assert_eq!(ev["domains"], serde_json::json!(["api", "ui"]));
    let rec = repo.record();
    let at = ev["at_ms"].as_u64().unwrap();
    assert!(
        at <= attempt_end(&rec, "api") && at <= attempt_end(&rec, "ui"),
        "before either finished"
    );
    assert_eq!(rec["collisions"][0]["path"], "CHANGELOG.md");
}

#[test]
fn stop_on_violation_terminates_the_agent() {
    let repo = TestRepo::new();
    let s = repo.scratch.display().to_string();
    repo.write_plan(&sim_plan(
        "ownership:\n  stop_on_violation: true\n",
        &two_domains(&format!(
            "pid-file {s}/api.pid\nwrite src/ui/index.html no\nhang"
        )),
    ));
    repo.farm(&["run", "--progress", "plain"]).expect(6);
    let rec = repo.record();
    assert_eq!(rec["domains"]["api"]["status"], "cancelled");
    assert!(
        rec["domains"]["api"]["reason"]
            .as_str()
            .unwrap()
            .contains("ownership violation")
    );
    assert!(
        violations(&rec, "api")
            .iter()
            .any(|v| v["action"] == "stopped")
    );
    assert!(!process_alive(read_pid(&repo.scratch.join("api.pid"))));
    assert_eq!(rec["domains"]["ui"]["status"], "merged");
}
