//! `agent-farm plan --coupling` on a hermetic repository with a few commits: the import and
//! co-change edges between two independent domains are reported, the coupling between a domain
//! and its dependency is not, the analysis reads the commit (not the checkout), and the plan's
//! exit code and output without the flag are unchanged.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::Value;

const PLAN: &str = "version: 1
agent:
  preset: sim
domains:
  - name: db
    prompt: x
    owns: [\"src/db/**\"]
  - name: api
    prompt: x
    owns: [\"src/api/**\"]
    depends_on: [db]
  - name: ui
    prompt: x
    owns: [\"src/ui/**\"]
";

fn repo() -> TestRepo {
    let repo = TestRepo::with_files(&[
        ("Cargo.toml", "[package]\nname = \"shop\"\n"),
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
    ]);
    // ui's view and api's handlers change together twice; api's handlers and db's pool too.
    for i in 0..2 {
        repo.write(
            "src/ui/view.rs",
            &format!("pub fn render() {{ /* {i} */ }}\n"),
        );
        repo.write(
            "src/api/handlers.rs",
            &format!("pub fn list() {{ /* {i} */ }}\n"),
        );
        repo.commit_all(&format!("list and render {i}"));
        repo.write("src/db/pool.rs", &format!("pub struct Pool; // {i}\n"));
        repo.write(
            "src/api/handlers.rs",
            &format!("pub fn list() {{ /* db {i} */ }}\n"),
        );
        repo.commit_all(&format!("pool and list {i}"));
    }
    repo.write_plan(PLAN);
    repo
}

fn cut_edges(json: &Value) -> &Vec<Value> {
    json["coupling"]["cut"].as_array().expect("coupling.cut")
}

fn has_kind(edge: &Value, kind: &str) -> bool {
    edge["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == kind)
}

#[test]
fn plan_coupling_reports_the_edges_cut_between_independent_domains_only() {
    let repo = repo();
    // Uncommitted: an import of ui from db in the checkout is not at base and not analysed.
    repo.write("src/db/mod.rs", "pub mod pool;\nuse crate::ui::view;\n");

    let out = repo.farm(&["plan", "--coupling", "--json"]);
    out.expect(0);
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    let c = &json["coupling"];
    assert_eq!(c["files"], 10, "{c}");
    assert_eq!(c["languages"]["rust"], 8, "{c}");
    assert_eq!(c["history"]["walked"], 6, "{c}");
    let cut = cut_edges(&json);

    // The import edge: src/ui/mod.rs imports src/api/routes.rs; ui and api are independent.
    let import = cut
        .iter()
        .find(|e| e["a"]["path"] == "src/api/routes.rs" && e["b"]["path"] == "src/ui/mod.rs")
        .unwrap_or_else(|| panic!("no import edge in {cut:#?}"));
    assert_eq!(
        (&import["a"]["domain"], &import["b"]["domain"]),
        (&"api".into(), &"ui".into())
    );
    assert!(has_kind(import, "import"));
    let ev = &import["evidence"][0];
    assert_eq!(
        ev["text"],
        "src/ui/mod.rs:2 imports src/api/routes.rs (`use crate::api::routes`)"
    );

    // The co-change edge: view and handlers changed together in two commits (and the first).
    let co = cut
        .iter()
        .find(|e| e["a"]["path"] == "src/api/handlers.rs" && e["b"]["path"] == "src/ui/view.rs")
        .unwrap_or_else(|| panic!("no co-change edge in {cut:#?}"));
    let ev = co["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "co_change")
        .unwrap();
    assert_eq!(
        (ev["together"].as_u64(), ev["of"].as_u64()),
        (Some(3), Some(6)),
        "{ev}"
    );
    let text = ev["text"].as_str().unwrap();
    assert!(
        text.starts_with("changed together in 3 of the last 6 commits, last in "),
        "{text}"
    );

    // api depends on db: their import (api/mod.rs → db/pool.rs) and co-change (handlers and
    // pool) are no cut; and db's uncommitted import of ui was not read.
    assert!(
        cut.iter()
            .all(|e| e["a"]["domain"] != "db" && e["b"]["domain"] != "db"),
        "{cut:#?}"
    );
    let pairs = c["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 1, "{pairs:#?}");
    assert_eq!(
        (&pairs[0]["a"], &pairs[0]["b"]),
        (&"api".into(), &"ui".into())
    );

    // The text output: the same edges as warnings, exit code unchanged.
    let out = repo.farm(&["plan", "--coupling"]);
    out.expect(0);
    assert!(
        out.stdout.contains(
            "warning: coupling: `api` and `ui` are independent, but src/api/routes.rs and src/ui/mod.rs are coupled"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("src/ui/mod.rs:2 imports src/api/routes.rs"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "`api` and `ui` are independent, but src/api/handlers.rs and src/ui/view.rs are coupled"
        ),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("`db`"), "{}", out.stdout);

    // Without the flag: no analysis, no coupling field, no coupling lines.
    let out = repo.farm(&["plan", "--json"]);
    out.expect(0);
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(json.get("coupling").is_none(), "{json}");
    let out = repo.farm(&["plan"]);
    out.expect(0);
    assert!(!out.stdout.contains("coupling"), "{}", out.stdout);
}

#[test]
fn a_dependency_added_removes_the_cut() {
    let repo = repo();
    repo.write_plan(&PLAN.replace(
        "    owns: [\"src/ui/**\"]\n",
        "    owns: [\"src/ui/**\"]\n    depends_on: [api]\n",
    ));
    let out = repo.farm(&["plan", "--coupling", "--json"]);
    out.expect(0);
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(cut_edges(&json).is_empty(), "{json:#}");
    let out = repo.farm(&["plan", "--coupling"]);
    out.expect(0);
    assert!(
        out.stdout
            .contains("the plan cuts no coupling between independent domains"),
        "{}",
        out.stdout
    );
}

#[test]
fn outside_a_repository_the_plan_still_passes_with_a_warning() {
    let repo = TestRepo::new();
    let dir = repo.scratch.join("plain");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("farm.yaml"), PLAN).unwrap();
    let out = repo.farm_in(&dir, &["plan", "farm.yaml", "--coupling"]);
    out.expect(0);
    assert!(
        out.stdout.contains("warning: no coupling analysis:"),
        "{}",
        out.stdout
    );
}
