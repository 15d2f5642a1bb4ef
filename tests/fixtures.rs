//! Every plan shipped in fixtures/ is valid, and the simulated one runs end to end.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[test]
fn fixture_plans_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/plans");
    let repo = TestRepo::new();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "yaml") {
            n += 1;
            let out = repo.farm(&["plan", path.to_str().unwrap()]);
            out.expect(0);
            assert!(out.stdout.contains("is valid"), "{}", out.stdout);
        }
    }
    assert!(n >= 2, "fixtures found: {n}");
}

#[test]
fn sim_fixture_runs() {
    let repo = TestRepo::new();
    let plan = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/plans/demo-sim.yaml"),
    )
    .unwrap();
    repo.write_plan(&plan);
    repo.farm(&["run", "--progress", "plain"]).expect(0);
    for f in ["db/schema.sql", "api/handlers.txt", "docs/items.md"] {
        assert!(repo.root.join(f).is_file(), "{f}");
    }
    repo.assert_matches_report();
    repo.assert_nothing_created();
}

#[test]
fn run_records_of_an_earlier_format_still_load() {
    // Written by the first version of the record (before the claude options, ownership and
    // resume fields existed); `status` must still read such runs.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/records/early-format-run.json");
    let rec = agent_farm::record::RunRecord::load(&path).unwrap();
    assert_eq!(rec.domains.len(), 4);
    assert_eq!(rec.plan.agent.permission_mode, "acceptEdits");
    let report = agent_farm::report::build(&rec, 0);
    assert_eq!(report.exit_code, 0);
}
