//! The real Claude Code CLI driven by agent-farm, against the project's mock Messages API:
//! every agent is a real `claude -p` process that edits its worktree through its tools.
//! Skipped (with a notice) when the CLI is not installed, except under CI=true where it fails.
#![allow(clippy::unwrap_used)]

mod common;

use common::mock_api::*;
use common::*;
use serde_json::Value;

/// A plan running the real CLI at `bin` against `api`, with per-domain CLI state.
fn claude_plan(
    repo: &TestRepo,
    bin: &std::path::Path,
    api: &MockApi,
    agent_extra: &str,
    domains: &str,
) -> String {
    let state = repo.scratch.join("claude-state");
    let mut env = String::new();
    for (k, v) in claude_env(&api.url(), &state) {
        // One config and temp dir per domain: the CLI keeps state in them.
        let v = match k.as_str() {
            "CLAUDE_CONFIG_DIR" | "CLAUDE_CODE_TMPDIR" | "TMPDIR" => format!("{v}/{{domain}}"),
            _ => v,
        };
        env.push_str(&format!("    {k}: {v:?}\n"));
    }
    format!(
        "version: 1\nagent:\n  preset: claude\n  program: {bin:?}\n  args: [--no-session-persistence]\n  timeout: 120s\n  retry_backoff: 10ms\n  env:\n{env}{agent_extra}domains:\n{domains}",
        bin = bin.display().to_string()
    )
}

fn claude_domain(name: &str, owns: &str) -> String {
    format!("  - name: {name}\n    owns: [\"{owns}\"]\n    prompt: Do the {name} work.\n")
}

fn write_then_edit(name: &str, path: &str) -> (String, AgentScript) {
    script(
        name,
        vec![
            Turn::tool(Block::write(path, format!("// {name} v1\n"))),
            Turn::tool(Block::edit(path, "v1", "v2")),
            Turn::text(format!("{name} is done")),
        ],
    )
}

fn row<'a>(report: &'a Value, domain: &str) -> &'a Value {
    report["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == domain)
        .unwrap()
}

#[test]
fn three_real_claude_agents_write_and_edit_their_own_files() {
    for bin in require_claudes("three_real_claude_agents_write_and_edit_their_own_files") {
        three_real_claude_agents_write_and_edit_their_own_files_with(&bin);
    }
}

fn three_real_claude_agents_write_and_edit_their_own_files_with(bin: &std::path::Path) {
    let repo = TestRepo::new();
    let api = MockApi::start(vec![
        write_then_edit("api", "src/api/handler.rs"),
        write_then_edit("ui", "src/ui/page.ts"),
        write_then_edit("docs", "docs/guide.md"),
    ]);
    let domains = [
        claude_domain("api", "src/api/**"),
        claude_domain("ui", "src/ui/**"),
        claude_domain("docs", "docs/**"),
    ]
    .concat();
    repo.write_plan(&claude_plan(&repo, bin, &api, "", &domains));
    let run = repo.farm(&["run", "--progress", "plain"]);
    run.expect(0);
    assert_eq!(repo.read("src/api/handler.rs"), "// api v2\n");
    assert_eq!(repo.read("src/ui/page.ts"), "// ui v2\n");
    assert_eq!(repo.read("docs/guide.md"), "// docs v2\n");
    let report = repo.report();
    for d in ["api", "ui", "docs"] {
        let r = row(&report, d);
        assert_eq!(r["status"], "merged", "{r}");
        assert!(r["turns"].as_u64().unwrap() >= 3, "{r}");
        assert!(r["cost_usd"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["input_tokens"].as_u64().unwrap() > 0, "{r}");
        assert!(
            r["session_id"].as_str().is_some_and(|s| !s.is_empty()),
            "{r}"
        );
    }
    assert!(report["metrics"]["total_cost_usd"].as_f64().unwrap() > 0.0);
    // Live activity reached the event stream, with paths relative to the worktree.
    let events = repo.events();
    assert!(
        events.iter().any(|e| e["event"] == "agent_tool_use"
            && e["domain"] == "api"
            && e["tool"] == "Edit"
            && e["path"] == "src/api/handler.rs"
            && e["turns"].as_u64().unwrap() >= 2
            && e["tokens"].as_u64().unwrap() > 0),
        "no Edit activity with turns and tokens so far for api"
    );
    assert!(run.stdout.contains("COST"), "{}", run.stdout);
    // Claude Code finds a session by its directory: once the worktrees are gone, no resume hint
    // that would fail with "No conversation found".
    assert!(!run.stdout.contains("claude --resume"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("gone with their worktrees, not resumable"),
        "{}",
        run.stdout
    );
    // The raw stream is kept in the domain's log.
    let log = std::fs::read_to_string(repo.run_dir().join("api/api-output.log")).unwrap();
    assert!(log.contains("\"type\":\"result\""));
    // `logs` renders it as a transcript; `--raw` gives the stream itself.
    let t = repo.farm(&["logs", "api"]);
    t.expect(0);
    for want in [
        "session ",
        "→ Write src/api/handler.rs",
        "→ Edit src/api/handler.rs",
        "  ← Edit: ",
        "assistant: api is done",
        "result: success · ",
    ] {
        assert!(t.stdout.contains(want), "no {want:?} in\n{}", t.stdout);
    }
    assert!(!t.stdout.contains("\"type\":"), "{}", t.stdout);
    let raw = repo.farm(&["logs", "api", "--raw"]);
    assert!(raw.stdout.contains("\"type\":\"result\""));
    let one = repo.farm(&["logs", "api", "--attempt", "2"]);
    assert_eq!(one.stdout, "", "there was one attempt");
    repo.assert_matches_report();
}

#[test]
fn auth_error_is_classified_and_not_retried_while_others_land() {
    let Some(bin) = require_claude("auth_error_is_classified_and_not_retried_while_others_land")
    else {
        return;
    };
    let repo = TestRepo::new();
    let api = MockApi::start(vec![
        write_then_edit("good", "good/ok.txt"),
        script("locked", vec![Turn::auth_error().with_should_retry(false)]),
    ]);
    let domains = [
        claude_domain("good", "good/**"),
        claude_domain("locked", "locked/**"),
    ]
    .concat();
    repo.write_plan(&claude_plan(&repo, &bin, &api, "  retries: 2\n", &domains));
    let run = repo.farm(&["run", "--progress", "plain"]);
    run.expect(6);
    let rec = repo.record();
    let locked = &rec["domains"]["locked"];
    assert_eq!(locked["status"], "failed");
    assert_eq!(
        locked["attempts"].as_array().unwrap().len(),
        1,
        "auth errors are not retried"
    );
    assert_eq!(locked["attempts"][0]["end"]["failure"], "auth");
    assert!(
        locked["reason"].as_str().unwrap().contains("auth"),
        "{locked}"
    );
    assert_eq!(api.messages_for("locked").len(), 1);
    assert_eq!(rec["domains"]["good"]["status"], "merged");
    assert_eq!(repo.read("good/ok.txt"), "// good v2\n");
    repo.assert_matches_report();
}

#[test]
fn rate_limited_agent_is_retried_by_the_farm() {
    let Some(bin) = require_claude("rate_limited_agent_is_retried_by_the_farm") else {
        return;
    };
    let repo = TestRepo::new();
    // The CLI itself retries twice (CLAUDE_CODE_MAX_RETRIES=2) then gives up; the farm's own
    // retry starts a second attempt, which the mock answers.
    let api = MockApi::start(vec![script(
        "busy",
        vec![
            Turn::rate_limited(1).with_should_retry(false),
            Turn::tool(Block::write("busy/x.txt", "made it\n")),
            Turn::text("done"),
        ],
    )]);
    repo.write_plan(&claude_plan(
        &repo,
        &bin,
        &api,
        "  retries: 1\n  rate_limit_backoff: 10ms\n",
        &claude_domain("busy", "busy/**"),
    ));
    repo.farm(&["run", "--progress", "plain"]).expect(0);
    let rec = repo.record();
    let attempts = rec["domains"]["busy"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["end"]["failure"], "rate_limit");
    assert_eq!(repo.read("busy/x.txt"), "made it\n");
}

#[test]
fn denied_tool_use_is_reported() {
    let Some(bin) = require_claude("denied_tool_use_is_reported") else {
        return;
    };
    let repo = TestRepo::new();
    let api = MockApi::start(vec![script(
        "api",
        vec![
            Turn::tool(Block::write("src/api/a.rs", "// mine\n")),
            Turn::tool(Block::write("docs/stolen.md", "not mine\n")),
            Turn::text("done"),
        ],
    )]);
    repo.write_plan(&claude_plan(
        &repo,
        &bin,
        &api,
        "  disallowed_tools: [\"Edit(docs/**)\"]\n",
        &claude_domain("api", "src/api/**"),
    ));
    let run = repo.farm(&["run", "--progress", "plain"]);
    run.expect(0);
    assert_eq!(repo.read("src/api/a.rs"), "// mine\n");
    assert!(
        !repo.root.join("docs/stolen.md").exists(),
        "the CLI refused the write"
    );
    let report = repo.report();
    let r = row(&report, "api");
    let denials = r["denials"].as_array().unwrap();
    assert_eq!(denials.len(), 1, "{r}");
    assert_eq!(denials[0]["tool"], "Write");
    assert_eq!(denials[0]["path"], "docs/stolen.md");
    assert!(r["reason"].as_str().unwrap().starts_with("partial"), "{r}");
    assert!(run.stdout.contains("refused tool calls"), "{}", run.stdout);
    assert!(
        run.stderr.contains("REFUSED Write docs/stolen.md"),
        "{}",
        run.stderr
    );
}

/// With `stop_on_violation: true`, real agents writing and editing only their own files (the CLI
/// writes each through a `FILE.tmp.<pid>.<hex>` temporary renamed into place) are never stopped:
/// every edit lands and no violation is reported — also for a domain owning a single file, where
/// the temporary itself is owned by nobody.
#[test]
fn real_agents_atomic_writes_are_no_violations_with_stop_on_violation() {
    for bin in require_claudes("real_agents_atomic_writes_are_no_violations_with_stop_on_violation")
    {
        real_agents_atomic_writes_are_no_violations_with_stop_on_violation_with(&bin);
    }
}

fn real_agents_atomic_writes_are_no_violations_with_stop_on_violation_with(bin: &std::path::Path) {
    let repo = TestRepo::new();
    let api = MockApi::start(vec![
        write_then_edit("api", "src/api/handler.rs"),
        script(
            "ui",
            vec![
                // The CLI edits only a file it has read.
                Turn::tool(Block::read("src/ui/index.html")),
                Turn::tool(Block::edit("src/ui/index.html", "ui", "the ui")),
                Turn::tool(Block::write("src/ui/page.ts", "// ui\n")),
                Turn::text("ui is done"),
            ],
        ),
        script(
            "readme",
            vec![
                Turn::tool(Block::read("README.md")),
                Turn::tool(Block::edit("README.md", "test repo", "farmed repo")),
                Turn::text("readme is done"),
            ],
        ),
    ]);
    let domains = [
        claude_domain("api", "src/api/**"),
        claude_domain("ui", "src/ui/**"),
        claude_domain("readme", "README.md"),
    ]
    .concat();
    let extra = "ownership:\n  stop_on_violation: true\n";
    repo.write_plan(
        &claude_plan(&repo, bin, &api, "", &domains)
            .replace("domains:\n", &format!("{extra}domains:\n")),
    );
    let run = repo.farm(&["run", "--progress", "plain"]);
    run.expect(0);
    assert_eq!(repo.read("src/api/handler.rs"), "// api v2\n");
    assert_eq!(repo.read("src/ui/index.html"), "<h1>the ui</h1>\n");
    assert_eq!(repo.read("README.md"), "# farmed repo\n");
    let report = repo.report();
    for d in ["api", "ui", "readme"] {
        let r = row(&report, d);
        assert_eq!(r["status"], "merged", "{r}");
        assert_eq!(
            r["violations"].as_array().map(Vec::len),
            Some(0),
            "{d}: {r}"
        );
    }
    let events = repo.events();
    assert!(
        !events.iter().any(|e| e["event"] == "ownership_violation"),
        "{:?}",
        events
            .iter()
            .filter(|e| e["event"] == "ownership_violation")
            .collect::<Vec<_>>()
    );
}

/// A shell write into another domain's path is caught and charged to the domain that wrote it;
/// a refused Bash command is reported as a command, not as a violation of a path.
#[test]
fn real_agents_bash_writes_are_charged_and_refused_commands_are_commands() {
    for bin in
        require_claudes("real_agents_bash_writes_are_charged_and_refused_commands_are_commands")
    {
        real_agents_bash_writes_are_charged_and_refused_commands_are_commands_with(&bin);
    }
}

fn real_agents_bash_writes_are_charged_and_refused_commands_are_commands_with(
    bin: &std::path::Path,
) {
    let repo = TestRepo::new();
    let api = MockApi::start(vec![
        script(
            "api",
            vec![
                // Through a shell the CLI cannot see into (a plain redirect into another domain's
                // path is refused by the derived Edit rules).
                Turn::tool(Block::bash("sh -c 'echo hijack > src/ui/stolen.html'")),
                Turn::tool(Block::bash("git push origin HEAD")),
                Turn::text("api is done"),
            ],
        ),
        script(
            "ui",
            vec![
                Turn::tool(Block::write("src/ui/page.ts", "// ui\n")),
                Turn::text("ui is done"),
            ],
        ),
    ]);
    let domains = [
        claude_domain("api", "src/api/**"),
        claude_domain("ui", "src/ui/**"),
    ]
    .concat();
    let agent = "  allowed_tools: [\"Bash\"]\n  disallowed_tools: [\"Bash(git push:*)\"]\n";
    repo.write_plan(&claude_plan(&repo, bin, &api, agent, &domains));
    let run = repo.farm(&["run", "--progress", "plain"]);
    let report = repo.report();
    let api_row = row(&report, "api");
    let violations = api_row["violations"].as_array().unwrap();
    assert!(
        violations
            .iter()
            .any(|v| v["path"] == "src/ui/stolen.html" && v["owner"] == "ui"),
        "the shell write is charged to api: {api_row}\n{}",
        run.stderr
    );
    assert!(
        !violations
            .iter()
            .any(|v| v["path"].as_str().unwrap_or("").contains("git push")),
        "a command is not a path: {api_row}"
    );
    assert_eq!(
        row(&report, "ui")["violations"].as_array().map(Vec::len),
        Some(0),
        "nothing is charged to the domain whose path was written"
    );
    let denials = api_row["denials"].as_array().unwrap();
    let push: Vec<&Value> = denials.iter().filter(|d| d["tool"] == "Bash").collect();
    assert_eq!(push.len(), 1, "the refusal is listed once: {api_row}");
    assert!(
        run.stdout.contains("Bash command `git push origin HEAD`"),
        "{}",
        run.stdout
    );
}

/// A real agent's shell writes outside its worktree — into another domain's running worktree
/// and into the user's main checkout — are refused by the write guard and charged to it, with
/// `stop_on_violation` on; the other domain's work lands untouched.
#[test]
fn real_agents_writes_outside_their_worktree_are_blocked_and_charged() {
    for bin in require_claudes("real_agents_writes_outside_their_worktree_are_blocked_and_charged")
    {
        real_agents_writes_outside_their_worktree_are_blocked_and_charged_with(&bin);
    }
}

fn real_agents_writes_outside_their_worktree_are_blocked_and_charged_with(bin: &std::path::Path) {
    let repo = TestRepo::new();
    let m = repo.scratch.display().to_string();
    let root = repo.root.display().to_string();
    // Bounded waits inside the scripted commands, so that both agents run at once.
    let wait = |p: &str| format!("for i in $(seq 400); do [ -e {p} ] && break; sleep 0.05; done");
    let api = MockApi::start(vec![
        script(
            "api",
            vec![
                Turn::tool(Block::write("src/api/own.rs", "// api\n")),
                Turn::tool(Block::bash(format!(
                    "{}; sh -c 'echo hijack > ../ui/src/ui/stolen.html; echo oops > {root}/README.md'; touch {m}/api-done",
                    wait(&format!("{m}/ui-ready"))
                ))),
                Turn::text("api is done"),
            ],
        ),
        script(
            "ui",
            vec![
                Turn::tool(Block::write("src/ui/page.ts", "// ui\n")),
                Turn::tool(Block::bash(format!(
                    "touch {m}/ui-ready; {}",
                    wait(&format!("{m}/api-done"))
                ))),
                Turn::text("ui is done"),
            ],
        ),
    ]);
    let domains = [
        claude_domain("api", "src/api/**"),
        claude_domain("ui", "src/ui/**"),
    ]
    .concat();
    let agent = "  allowed_tools: [\"Bash\"]\nownership:\n  stop_on_violation: true\n";
    repo.write_plan(&claude_plan(&repo, bin, &api, agent, &domains));
    let run = repo.farm(&["run", "--jobs", "2", "--progress", "plain"]);
    let rec = repo.record();
    let v: Vec<&Value> = rec["domains"]["api"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["detected"] == "guard")
        .collect();
    assert!(
        v.iter().any(|v| v["outside"] == "the worktree of domain ui"
            && v["owner"] == "ui"
            && v["path"]
                .as_str()
                .unwrap()
                .ends_with("ui/src/ui/stolen.html")),
        "{v:#?}\n{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        v[0]["action"].as_str().unwrap().contains("stopped"),
        "the first one stops it: {v:#?}"
    );
    assert_eq!(
        rec["domains"]["ui"]["violations"].as_array().map(Vec::len),
        Some(0),
        "nothing is charged to the domain whose worktree was written"
    );
    assert_eq!(rec["domains"]["ui"]["status"], "merged", "{}", run.stdout);
    assert_ne!(rec["domains"]["api"]["status"], "merged");
    assert!(!repo.files_at("main").iter().any(|f| f.contains("stolen")));
    assert_eq!(repo.read("README.md"), "# test repo\n");
    assert!(
        run.stdout
            .contains("outside its worktree, in the worktree of domain ui"),
        "{}",
        run.stdout
    );
}
