//! `agent-farm draft`: a scripted planner (the sim agent printing a prepared answer, chosen by
//! `AGENT_FARM_DRAFT_ROLE`) proposes plans with overlapping globs, a cycle, a cut strong coupling
//! edge and an unowned file; each is found and fixed or reported, a tiny goal gets one domain,
//! and the written farm.yaml passes `agent-farm plan`. Then the real Claude Code CLI against the
//! mock Messages API: scouts and planner run read-only and their requests carry the
//! measurements and the findings.
#![allow(clippy::unwrap_used)]

mod common;

use common::mock_api::*;
use common::*;
use serde_json::{Value, json};

/// A small Rust crate: ui imports api, api imports db; docs and a site beside it.
fn repo() -> TestRepo {
    TestRepo::with_files(&[
        ("Cargo.toml", "[package]\nname = \"shop\"\n"),
        ("README.md", "# shop\n"),
        ("src/lib.rs", "pub mod api;\npub mod db;\npub mod ui;\n"),
        ("src/db/mod.rs", "pub mod pool;\n"),
        ("src/db/pool.rs", "pub struct Pool;\n"),
        (
            "src/api/mod.rs",
            "pub mod handlers;\npub mod routes;\nuse crate::db::pool::Pool;\n",
        ),
        ("src/api/handlers.rs", "pub fn list() {}\n"),
        ("src/api/routes.rs", "pub fn routes() {}\n"),
        ("src/ui/mod.rs", "pub mod view;\nuse crate::api::routes;\n"),
        ("src/ui/view.rs", "pub fn render() {}\n"),
        ("docs/guide.md", "# guide\n"),
        ("docs/api.md", "# api\n"),
        ("site/index.html", "<h1>shop</h1>\n"),
        ("site/style.css", "h1 {}\n"),
    ])
}

/// A goal whose sim block prints the scripted answer for the agent's role.
fn scripted_goal(repo: &TestRepo, goal: &str) -> String {
    format!(
        "{goal}\n```sim\nprint-file {}/${{AGENT_FARM_DRAFT_ROLE}}.json\n```",
        repo.scratch.display()
    )
}

fn answer(repo: &TestRepo, role: &str, v: Value) {
    std::fs::write(repo.scratch.join(format!("{role}.json")), v.to_string()).unwrap();
}

fn dom(name: &str, owns: &[&str], deps: &[&str]) -> Value {
    json!({"name": name, "prompt": format!("Do the {name} part."), "owns": owns, "depends_on": deps, "why": format!("{name} is its own part")})
}

fn plan_of(repo: &TestRepo) -> Value {
    let out = repo.farm(&["plan", "--json"]);
    out.expect(0);
    serde_json::from_str(&out.stdout).unwrap()
}

fn domain<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no domain {name} in {plan:#}"))
}

#[test]
fn every_broken_rule_is_found_and_fixed_or_reported() {
    let repo = repo();
    // Overlapping globs (docs/** and guide's docs/guide.md), a cycle (docs ↔ site), ui cut
    // from the api it imports, and README.md, which the goal touches, owned by nobody.
    answer(
        &repo,
        "planner",
        json!({
            "domains": [
                dom("db", &["src/db/**"], &[]),
                dom("api", &["src/api/**"], &["db"]),
                dom("ui", &["src/ui/**"], &[]),
                dom("docs", &["docs/**"], &["site"]),
                dom("site", &["site/**"], &["docs"]),
                dom("guide", &["docs/guide.md"], &[]),
            ],
            "expected_files": 14,
            "touches": ["README.md", "src/api/routes.rs"],
        }),
    );
    // No repair.json: the planner's second answer fails, agent-farm fixes the first itself.
    let goal = scripted_goal(&repo, "Add a cache to the shop.");
    let out = repo.farm(&["draft", &goal, "--agent", "sim"]);
    out.expect(0);
    let s = &out.stdout;
    // Found, and sent back to the planner once.
    assert!(s.contains("asking the planner once to fix them"), "{s}");
    for found in [
        "dependency cycle: docs → site → docs",
        "ownership overlaps with domain `docs`",
        "strong coupling cut between independent domains `api` and `ui`",
        "src/ui/mod.rs:2 imports src/api/routes.rs",
        "no domain owns 1 file(s) the goal probably changes: README.md",
    ] {
        assert!(s.contains(found), "not found: {found}\n{s}");
    }
    assert!(s.contains("the planner's revision is not usable"), "{s}");
    // Fixed, each said.
    for fixed in [
        "changed: merged the domains of the dependency cycle docs → site → docs into `docs`",
        "changed: domain `docs`: narrowed `docs/**` to `docs/api.md` so it no longer overlaps `guide`",
        "changed: domain `ui` now depends on `api` (src/ui/mod.rs:2 imports src/api/routes.rs",
        "now owns README.md",
    ] {
        assert!(s.contains(fixed), "not fixed: {fixed}\n{s}");
    }
    assert!(s.contains("waves:\n  1: "), "{s}");
    assert!(s.contains("expected parallelism: "), "{s}");
    let cut = &s[s.find("coupling cut by the split").unwrap()..];
    assert!(!cut.contains("`api` and `ui`"), "{cut}");

    // The plan agent-farm accepts, with the fixes in it and said in its comments.
    let text = repo.read("farm.yaml");
    assert!(
        text.starts_with("# Drafted by `agent-farm draft` for the goal:"),
        "{text}"
    );
    assert!(text.contains("# Changed by agent-farm's checks:"), "{text}");
    assert!(text.contains("  # why: ui is its own part"), "{text}");
    let plan = plan_of(&repo);
    assert_eq!(domain(&plan, "ui")["depends_on"], json!(["api"]));
    assert_eq!(domain(&plan, "guide")["owns"], json!(["docs/guide.md"]));
    let docs = domain(&plan, "docs")["owns"].as_array().unwrap();
    assert!(
        docs.contains(&json!("docs/api.md")) && docs.contains(&json!("site/**")),
        "{docs:?}"
    );
    assert!(plan.get("site").is_none());
    assert!(plan["warnings"].as_array().unwrap().is_empty(), "{plan:#}");
    let coupling = repo.farm(&["plan", "--coupling"]);
    coupling.expect(0);
    assert!(
        !coupling.stdout.contains("`api` and `ui` are independent"),
        "{}",
        coupling.stdout
    );
}

#[test]
fn the_planner_is_asked_once_to_fix_its_plan() {
    let repo = repo();
    answer(
        &repo,
        "planner",
        json!({
            "domains": [dom("api", &["src/**"], &[]), dom("ui", &["src/ui/**"], &[])],
            "expected_files": 12, "touches": [],
        }),
    );
    answer(
        &repo,
        "repair",
        json!({
            "domains": [
                dom("backend", &["src/api/**", "src/db/**", "src/lib.rs"], &[]),
                dom("ui", &["src/ui/**"], &["backend"]),
                dom("docs", &["docs/**"], &[]),
            ],
            "expected_files": 12, "touches": [],
        }),
    );
    let goal = scripted_goal(&repo, "Add a cache to the shop.");
    let out = repo.farm(&["draft", &goal, "--agent", "sim", "-o", "plans/cache.yaml"]);
    out.expect(0);
    assert!(!out.stdout.contains("changed:"), "{}", out.stdout);
    let text = repo.read("plans/cache.yaml");
    assert!(
        text.contains("# The planner revised its first proposal after"),
        "{text}"
    );
    let plan = repo.farm(&["plan", "plans/cache.yaml", "--json"]);
    plan.expect(0);
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(
        plan["waves"],
        json!([["backend", "docs"], ["ui"]]),
        "{plan:#}"
    );
    assert!(
        out.stdout.contains("  1: backend, docs\n  2: ui\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_tiny_goal_gets_one_agent_and_an_existing_plan_is_kept() {
    let repo = repo();
    answer(
        &repo,
        "planner",
        json!({
            "domains": [dom("api", &["src/api/**"], &[]), dom("docs", &["docs/**"], &[])],
            "expected_files": 3, "touches": ["src/api/routes.rs", "docs/api.md"],
        }),
    );
    let goal = scripted_goal(&repo, "Rename the routes function.");
    let out = repo.farm(&["draft", &goal, "--agent", "sim"]);
    out.expect(0);
    assert!(
        out.stdout.contains(
            "advice: one agent, not a farm: about 3 file(s) are expected to change: fewer than 10"
        ),
        "{}",
        out.stdout
    );
    let plan = plan_of(&repo);
    assert_eq!(plan["domains"].as_array().unwrap().len(), 1, "{plan:#}");
    let work = domain(&plan, "work");
    assert_eq!(work["owns"], json!(["src/api/**", "docs/**"]));
    let text = repo.read("farm.yaml");
    assert!(
        text.contains("# One domain, not a farm: about 3 file(s)"),
        "{text}"
    );
    assert!(text.contains("Rename the routes function."), "{text}");

    // The plan is there now: not overwritten without --force.
    let again = repo.farm(&["draft", &goal, "--agent", "sim"]);
    again.expect(4);
    assert!(again.stderr.contains("use --force"), "{}", again.stderr);
    assert_eq!(repo.read("farm.yaml"), text);
    repo.farm(&["draft", &goal, "--agent", "sim", "--force"])
        .expect(0);
}

#[test]
fn a_planner_without_a_plan_writes_nothing() {
    let repo = repo();
    std::fs::write(repo.scratch.join("planner.json"), "I could not decide.\n").unwrap();
    let goal = scripted_goal(&repo, "Add a cache.");
    let out = repo.farm(&["draft", &goal, "--agent", "sim"]);
    out.expect(9);
    assert!(
        out.stderr
            .contains("the planner agent failed: no plan in its answer"),
        "{}",
        out.stderr
    );
    assert!(!repo.root.join("farm.yaml").exists());
    // An agent that fails: its exit is said.
    let out = repo.farm(&["draft", "```sim\nexit 3\n```", "--agent", "sim"]);
    out.expect(9);
    assert!(out.stderr.contains("exited with code 3"), "{}", out.stderr);
}

#[test]
fn scouts_run_at_the_same_time_and_their_files_count_as_touched() {
    let repo = repo();
    let s = repo.scratch.display().to_string();
    // Each scout marks its start, then waits (bounded) until both have started: only scouts
    // running at the same time both see the other.
    let goal = format!(
        "Add a cache.\n```sim\nsh if [ \"$AGENT_FARM_DRAFT_ROLE\" = scout ]; then touch {s}/started-$AGENT_FARM_DRAFT_AREA; for i in $(seq 600); do [ $(ls {s} | grep -c '^started-') -ge 2 ] && touch {s}/saw-both-$AGENT_FARM_DRAFT_AREA && break; sleep 0.05; done; fi\nprint-file {s}/${{AGENT_FARM_DRAFT_ROLE}}.json\n```"
    );
    answer(
        &repo,
        "scout",
        json!({"summary": "the docs", "files": ["docs/api.md", "README.md"]}),
    );
    answer(
        &repo,
        "planner",
        json!({
            "domains": [
                dom("backend", &["src/**"], &[]),
                dom("docs", &["docs/**"], &[]),
                dom("site", &["site/**"], &[]),
            ],
            "expected_files": 12, "touches": [],
        }),
    );
    let out = repo.farm(&["draft", &goal, "--agent", "sim", "--scouts", "2"]);
    out.expect(0);
    assert!(
        out.stdout
            .contains("sending 2 scout(s): src/api (3), . (2)"),
        "{}",
        out.stdout
    );
    for (area, env) in [("src/api", "src_api"), (".", ".")] {
        assert!(
            repo.scratch.join(format!("saw-both-{env}")).exists(),
            "scout {area} never saw the other one running\n{}",
            out.stdout
        );
        assert!(
            out.stdout
                .contains(&format!("scout {area}: 2 file(s) named")),
            "{}",
            out.stdout
        );
    }
    // README.md, which the scouts named and no domain owns, was found and given a home.
    assert!(
        out.stdout
            .contains("no domain owns 1 file(s) the goal probably changes: README.md"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("now owns README.md"), "{}", out.stdout);
    plan_of(&repo);
}

#[test]
fn an_interrupted_draft_stops_its_agents_and_writes_nothing() {
    let repo = repo();
    let pid_file = repo.scratch.join("planner.pid");
    let goal = format!("```sim\npid-file {}\nhang\n```", pid_file.display());
    let child = repo
        .farm_cmd(&repo.root, &["draft", &goal, "--agent", "sim"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let limit = std::time::Duration::from_secs(30);
    wait_until("the planner to start", limit, || pid_file.exists());
    let planner = read_pid(&pid_file);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = Run::from(child.wait_with_output().unwrap());
    out.expect(130);
    assert!(
        out.stderr.contains("interrupted by SIGINT"),
        "{}",
        out.stderr
    );
    assert!(!process_alive(planner), "the planner outlived the draft");
    assert!(!repo.root.join("farm.yaml").exists());
}

// ---------------------------------------------------------------------------------------------
// The real Claude Code CLI

fn structured(v: Value) -> Turn {
    Turn::tool(Block::tool("StructuredOutput", v))
}

/// The text of every message of a request, system prompt included.
fn request_text(r: &Recorded) -> String {
    format!("{}\n{}", r.body["system"], r.body["messages"])
}

fn tool_names(r: &Recorded) -> Vec<String> {
    r.body["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn real_claude_scouts_and_planner_draft_a_plan_that_passes() {
    for bin in require_claudes("real_claude_scouts_and_planner_draft_a_plan_that_passes") {
        real_claude_scouts_and_planner_draft_a_plan_that_passes_with(&bin);
    }
}

fn real_claude_scouts_and_planner_draft_a_plan_that_passes_with(bin: &std::path::Path) {
    let repo = repo();
    const API_SCOUT: &str = "Your area: `src/api`";
    const ROOT_SCOUT: &str = "Your area: `.`";
    const PLANNER: &str = "You are the planner of agent-farm";
    let api = MockApi::start(vec![
        script(
            API_SCOUT,
            vec![structured(json!({
                "summary": "FINDING-API: the routes in src/api/routes.rs get the cache",
                "files": ["src/api/routes.rs", "src/api/handlers.rs"],
            }))],
        ),
        script(
            ROOT_SCOUT,
            vec![structured(json!({
                "summary": "FINDING-ROOT: README.md documents the routes",
                "files": ["README.md"],
            }))],
        ),
        script(
            PLANNER,
            vec![structured(json!({
                "domains": [
                    dom("api", &["src/api/**", "src/db/**", "src/lib.rs"], &[]),
                    dom("ui", &["src/ui/**"], &["api"]),
                    dom("docs", &["docs/**", "site/**", "README.md"], &[]),
                ],
                "expected_files": 12,
                "touches": ["src/api/routes.rs", "README.md"],
                "notes": "",
            }))],
        ),
    ]);
    let state = repo.scratch.join("claude-state");
    let bin_s = bin.display().to_string();
    let out: Run = repo
        .farm_cmd(
            &repo.root,
            &[
                "draft",
                "Cache the routes' answers.",
                "--scouts",
                "2",
                "--agent-program",
                &bin_s,
                "--timeout",
                "120s",
            ],
        )
        .envs(claude_env(&api.url(), &state))
        .output()
        .unwrap()
        .into();
    out.expect(0);
    assert!(
        out.stdout
            .contains("sending 2 scout(s): src/api (3), . (2)"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("changed:"), "{}", out.stdout);

    // Each scout ran read-only, with the goal and the measurements.
    for (key, area) in [(API_SCOUT, "src/api"), (ROOT_SCOUT, ".")] {
        let reqs = api.messages_for(key);
        assert!(!reqs.is_empty(), "no request of the {area} scout");
        let text = request_text(&reqs[0]);
        assert!(text.contains("Cache the routes' answers."), "{area}");
        assert!(
            text.contains("14 file(s); languages: rust 8"),
            "{area}: {text}"
        );
        let tools = tool_names(&reqs[0]);
        assert!(tools.iter().any(|t| t == "StructuredOutput"), "{tools:?}");
        for denied in ["Edit", "Write", "Bash", "NotebookEdit"] {
            assert!(
                !tools.iter().any(|t| t == denied),
                "{area}: {denied} in {tools:?}"
            );
        }
    }
    // The planner got the measurements, the strongest coupling and both findings.
    let reqs = api.messages_for(PLANNER);
    assert_eq!(reqs.len(), 1, "one planner request");
    let text = request_text(&reqs[0]);
    for needle in [
        "14 file(s); languages: rust 8",
        "src/api/routes.rs <-> src/ui/mod.rs",
        "src/ui/mod.rs:2 imports src/api/routes.rs",
        "FINDING-API: the routes in src/api/routes.rs get the cache",
        "FINDING-ROOT: README.md documents the routes",
        "files it expects to change: src/api/routes.rs, src/api/handlers.rs",
    ] {
        assert!(
            text.contains(needle),
            "the planner's request lacks {needle:?}:\n{text}"
        );
    }
    let tools = tool_names(&reqs[0]);
    assert!(
        tools.iter().any(|t| t == "StructuredOutput") && !tools.iter().any(|t| t == "Write"),
        "the planner reads only: {tools:?}"
    );
    let plan = plan_of(&repo);
    assert_eq!(plan["waves"], json!([["api", "docs"], ["ui"]]), "{plan:#}");
    assert_eq!(plan["agent"], "claude");
    assert!(
        repo.read("farm.yaml")
            .contains(&format!("program: {bin_s:?}"))
    );
}
