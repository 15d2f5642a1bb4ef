//! `--message-format json`: the public event stream on stdout, checked against events.jsonl and
//! against the schema README documents.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::Value;

/// README's event table: kind → the fields it documents.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("| `event` | fields | when |").unwrap();
    let mut out = BTreeMap::new();
    for line in readme[start..].lines().skip(2) {
        if !line.starts_with("| `") {
            break;
        }
        let cells: Vec<&str> = line.split(" | ").collect();
        let kind = cells[0]
            .trim_start_matches("| ")
            .trim_matches('`')
            .to_string();
        let fields: BTreeSet<String> = cells[1]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        out.insert(kind, fields);
    }
    out
}

#[test]
fn the_event_stream_on_stdout_is_events_jsonl_and_follows_the_documented_schema() {
    let repo = TestRepo::new();
    let m = repo.scratch.display().to_string();
    repo.write_plan(&sim_plan(
        "verify: [\"true\"]\n",
        &[
            domain("api", "src/api/**", "write src/api/a.rs a", ""),
            domain(
                "ui",
                "src/ui/**",
                &format!("write src/ui/b.html b\nfail-once {m}/ui-failed"),
                "",
            ),
            domain("docs", "docs/**", "write docs/x.md x", "depends_on: [api]"),
        ]
        .concat(),
    ));
    let run = repo.farm(&[
        "run",
        "--message-format",
        "json",
        "--progress",
        "none",
        "--retries",
        "1",
    ]);
    run.expect(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let header: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(header["format"], "agent-farm-events");
    assert_eq!(header["version"], 1);
    // Exactly what events.jsonl holds, line for line.
    let file = std::fs::read_to_string(repo.run_dir().join("events.jsonl")).unwrap();
    assert_eq!(run.stdout, file);
    // The report went to stderr; report.json carries its format's version.
    assert!(run.stderr.contains("DOMAIN"), "{}", run.stderr);
    assert_eq!(repo.report()["version"], 1);
    let schema = documented();
    let mut kinds = BTreeSet::new();
    for l in &lines[1..] {
        let ev: Value = serde_json::from_str(l).unwrap();
        let kind = ev["event"].as_str().unwrap().to_string();
        let fields = schema
            .get(&kind)
            .unwrap_or_else(|| panic!("event {kind} is not documented"));
        for key in ev.as_object().unwrap().keys() {
            if key == "at_ms" || key == "event" {
                continue;
            }
            assert!(
                fields.contains(key),
                "{kind}: field {key} is not documented (documented: {fields:?})"
            );
        }
        kinds.insert(kind);
    }
    for k in [
        "run_started",
        "agent_started",
        "agent_retrying",
        "merged",
        "verify_finished",
        "landed",
        "run_finished",
    ] {
        assert!(kinds.contains(k), "no {k} in {kinds:?}");
    }
}
