//! `agent-farm report --format …` on a real (simulated) run with a dependency, a retry, a failure,
//! a skipped dependent and an ownership violation: the HTML page's structure (and its render in
//! headless Chromium), JUnit against the schema's rules, the Chrome trace, Markdown and JSON.
#![allow(clippy::unwrap_used)]
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestRepo, domain, sim_plan_with};
use serde_json::Value;

/// The plan's domains, in plan order.
const DOMAINS: [&str; 6] = ["base", "dep", "flaky", "broken", "after", "sneaky"];

/// A path with markup in it, written outside its domain (a violation shown in every format).
const MARKUP_PATH: &str = "docs/<b>&\"x'.md";

/// Run the plan; returns the repository and the run's stdout.
fn finished_run() -> (TestRepo, String) {
    let repo = TestRepo::new();
    let s = repo.scratch.display().to_string();
    let domains = [
        domain("base", "base/**", "write base/x 1", ""),
        // It leaves a process behind, which the supervisor ends.
        domain(
            "dep",
            "dep/**",
            &format!("write dep/x 2\nspawn-child {s}/child.pid"),
            "depends_on: [base]",
        ),
        domain(
            "flaky",
            "flaky/**",
            &format!(
                "append flaky/log.txt attempt\nfail-once {s}/failed-once\nwrite flaky/done.txt ok"
            ),
            "",
        ),
        domain("broken", "broken/**", "write broken/x 1\nexit 1", ""),
        domain(
            "after",
            "after/**",
            "write after/x 1",
            "depends_on: [broken]",
        ),
        domain(
            "sneaky",
            "sneaky/**",
            &format!("write sneaky/x 1\nwrite {MARKUP_PATH} hi"),
            "",
        ),
    ]
    .concat();
    repo.write_plan(&sim_plan_with("grace: 2s\nretries: 1", "", &domains));
    let run = repo.farm(&["run", "--progress", "none"]);
    run.expect(6);
    (repo, run.stdout)
}

fn report(repo: &TestRepo, format: &str) -> String {
    let out = repo.farm(&["report", "--format", format]);
    out.expect(0);
    out.stdout
}

fn record(repo: &TestRepo) -> Value {
    repo.record()
}

fn attempts(rec: &Value, d: &str) -> usize {
    rec["domains"][d]["attempts"].as_array().unwrap().len()
}

#[test]
fn the_run_writes_report_html_and_names_it_last() {
    let (repo, stdout) = finished_run();
    let html = repo.run_dir().join("report.html");
    assert!(html.is_file(), "{}", html.display());
    let last = stdout.lines().last().unwrap();
    assert_eq!(last, format!("report: {}", html.display()), "{stdout}");
    // The file is the report command's output for the same run.
    let page = std::fs::read_to_string(&html).unwrap();
    check_html(&repo, &page);
}

#[test]
fn html_has_a_lane_per_domain_the_critical_path_and_escaped_text() {
    let (repo, _) = finished_run();
    let out = repo.scratch.join("r.html");
    repo.farm(&["report", "--format", "html", "-o", out.to_str().unwrap()])
        .expect(0);
    let page = std::fs::read_to_string(&out).unwrap();
    check_html(&repo, &page);
    assert_eq!(page, report(&repo, "html").replace('\r', ""));
}

fn check_html(repo: &TestRepo, page: &str) {
    // Self-contained: nothing fetched, nothing run.
    for banned in [
        "<script", "<link", "src=", "@import", "url(http", "https://",
    ] {
        assert!(!page.contains(banned), "the page has {banned}");
    }
    // Text from the run is escaped (the path is the agent's).
    assert!(!page.contains(MARKUP_PATH));
    assert!(
        page.contains("docs/&lt;b&gt;&amp;&quot;x&#39;.md"),
        "escaped path"
    );
    // Well-formed: read with an XML parser.
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(page, opts).unwrap();
    let lanes: Vec<roxmltree::Node> = doc
        .descendants()
        .filter(|n| n.attribute("data-lane") == Some("domain"))
        .collect();
    let names: Vec<&str> = lanes
        .iter()
        .map(|n| n.attribute("data-name").unwrap())
        .collect();
    assert_eq!(names, DOMAINS, "one lane per domain, in plan order");
    assert_eq!(
        doc.descendants()
            .filter(|n| n.attribute("data-lane") == Some("result"))
            .count(),
        1
    );
    // The critical path (as report.json computes it) is marked, and only it.
    let report = repo.report();
    let critical: BTreeSet<&str> = report["metrics"]["critical_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(!critical.is_empty());
    for lane in &lanes {
        let classes: Vec<&str> = lane.attribute("class").unwrap().split(' ').collect();
        let name = lane.attribute("data-name").unwrap();
        assert_eq!(
            classes.contains(&"critical"),
            critical.contains(name),
            "lane {name}: {classes:?}"
        );
    }
    let rec = record(repo);
    let lane = |name: &str| {
        *lanes
            .iter()
            .find(|n| n.attribute("data-name") == Some(name))
            .unwrap()
    };
    let spans = |name: &str, kind: &str| {
        lane(name)
            .descendants()
            .filter(|n| n.attribute("data-kind") == Some(kind))
            .count()
    };
    for d in DOMAINS {
        assert_eq!(spans(d, "agent"), attempts(&rec, d), "{d}'s attempts");
    }
    assert_eq!(spans("flaky", "retry_wait"), 1);
    assert_eq!(spans("broken", "retry_wait"), 1);
    assert_eq!(spans("base", "merge"), 1);
    assert_eq!(spans("broken", "merge"), 0);
    let failed = |name: &str| {
        lane(name)
            .descendants()
            .filter(|n| n.attribute("class").is_some_and(|c| c.contains("o-failed")))
            .count()
    };
    assert_eq!(failed("broken"), 3, "two attempts and the commit step");
    assert_eq!(failed("flaky"), 1, "its first attempt");
    assert_eq!(lane("after").attribute("data-status"), Some("skipped"));
    assert_eq!(lane("sneaky").attribute("data-status"), Some("blocked"));
    // Dependencies are drawn, from the dependency's merge to the dependent.
    let deps: Vec<(&str, &str)> = doc
        .descendants()
        .filter(|n| n.attribute("class").is_some_and(|c| c.starts_with("dep")))
        .map(|n| {
            (
                n.attribute("data-from").unwrap(),
                n.attribute("data-to").unwrap(),
            )
        })
        .collect();
    assert_eq!(deps, [("base", "dep"), ("broken", "after")]);
    // The tables: a row per domain, the violation, the kept refs with how to inspect them.
    let rows: Vec<&str> = doc
        .descendants()
        .filter_map(|n| n.attribute("data-domain"))
        .collect();
    assert_eq!(rows, DOMAINS);
    let violation = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("violation"))
        .expect("the violation is listed");
    let text: String = violation
        .descendants()
        .filter(|n| n.is_text())
        .map(|n| n.text().unwrap())
        .collect();
    assert!(text.contains(MARKUP_PATH), "{text}");
    let kept: Vec<String> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("kept"))
        .map(|n| {
            n.descendants()
                .filter(|n| n.is_text())
                .map(|n| n.text().unwrap())
                .collect()
        })
        .collect();
    let ended: Vec<String> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("ended-process"))
        .map(|n| {
            n.descendants()
                .filter(|n| n.is_text())
                .map(|n| n.text().unwrap())
                .collect()
        })
        .collect();
    let pid = std::fs::read_to_string(repo.scratch.join("child.pid")).unwrap();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert!(
        ended[0].starts_with(&format!("dep{}", pid.trim())),
        "{ended:?}"
    );
    let listed = report["kept"].as_array().unwrap();
    assert_eq!(kept.len(), listed.len());
    for (row, k) in kept.iter().zip(listed) {
        assert!(row.contains(k["name"].as_str().unwrap()), "{row}");
        assert!(row.contains(k["inspect"].as_str().unwrap()), "{row}");
    }
}

/// The rules of the common JUnit schema (Jenkins' junit-10.xsd) for what we write: which
/// elements go where, in what order, with which attributes, of which types.
fn check_junit_schema(doc: &roxmltree::Document) {
    fn attrs_allowed(n: roxmltree::Node, allowed: &[&str], required: &[&str]) {
        let name = n.tag_name().name();
        for a in n.attributes() {
            assert!(
                allowed.contains(&a.name()),
                "<{name}> has attribute {} the schema does not allow",
                a.name()
            );
        }
        for r in required {
            assert!(n.attribute(*r).is_some(), "<{name}> lacks {r}");
        }
    }
    fn time(n: roxmltree::Node) {
        if let Some(t) = n.attribute("time") {
            let (int, frac) = t.split_once('.').unwrap_or((t, ""));
            assert!(
                int.chars().all(|c| c.is_ascii_digit()) && !int.is_empty(),
                "time {t}"
            );
            assert!(
                frac.len() <= 3 && frac.chars().all(|c| c.is_ascii_digit()),
                "time {t}"
            );
        }
    }
    fn int(n: roxmltree::Node, a: &str) -> usize {
        n.attribute(a).map_or(0, |v| v.parse().unwrap())
    }
    fn elements<'a, 'i>(n: roxmltree::Node<'a, 'i>) -> Vec<roxmltree::Node<'a, 'i>> {
        n.children().filter(|c| c.is_element()).collect()
    }
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    attrs_allowed(
        root,
        &["name", "time", "tests", "failures", "disabled", "errors"],
        &[],
    );
    time(root);
    let suites = elements(root);
    assert!(suites.iter().all(|s| s.tag_name().name() == "testsuite"));
    for suite in &suites {
        attrs_allowed(
            *suite,
            &[
                "name",
                "tests",
                "failures",
                "errors",
                "time",
                "disabled",
                "skipped",
                "timestamp",
                "hostname",
                "id",
                "package",
                "file",
                "log",
                "url",
                "version",
            ],
            &["name", "tests"],
        );
        time(*suite);
        let stamp = suite.attribute("timestamp").unwrap();
        assert!(
            stamp.len() == 19 && stamp.as_bytes()[10] == b'T' && !stamp.ends_with('Z'),
            "timestamp {stamp}"
        );
        // properties?, testcase*, testsuite*, system-out?, system-err?
        let order = [
            "properties",
            "testcase",
            "testsuite",
            "system-out",
            "system-err",
        ];
        let kids = elements(*suite);
        let ranks: Vec<usize> = kids
            .iter()
            .map(|k| {
                order
                    .iter()
                    .position(|o| *o == k.tag_name().name())
                    .unwrap()
            })
            .collect();
        assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "order {ranks:?}");
        for p in kids.iter().filter(|k| k.tag_name().name() == "properties") {
            for prop in elements(*p) {
                assert_eq!(prop.tag_name().name(), "property");
                attrs_allowed(prop, &["name", "value"], &["name", "value"]);
            }
        }
        let cases: Vec<_> = kids
            .iter()
            .filter(|k| k.tag_name().name() == "testcase")
            .collect();
        let (mut failures, mut skipped) = (0, 0);
        for c in &cases {
            attrs_allowed(
                **c,
                &[
                    "name",
                    "assertions",
                    "time",
                    "classname",
                    "status",
                    "class",
                    "file",
                    "line",
                ],
                &["name"],
            );
            time(**c);
            // skipped?, error*, failure*, system-out*, system-err*
            let order = ["skipped", "error", "failure", "system-out", "system-err"];
            let ranks: Vec<usize> = elements(**c)
                .iter()
                .map(|k| {
                    order
                        .iter()
                        .position(|o| *o == k.tag_name().name())
                        .unwrap()
                })
                .collect();
            assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "order {ranks:?}");
            assert!(ranks.iter().filter(|r| **r == 0).count() <= 1);
            for k in elements(**c) {
                match k.tag_name().name() {
                    "failure" | "error" | "skipped" => {
                        attrs_allowed(k, &["type", "message"], &[]);
                    }
                    _ => attrs_allowed(k, &[], &[]),
                }
            }
            failures += elements(**c)
                .iter()
                .any(|k| k.tag_name().name() == "failure") as usize;
            skipped += elements(**c)
                .iter()
                .any(|k| k.tag_name().name() == "skipped") as usize;
        }
        assert_eq!(int(*suite, "tests"), cases.len());
        assert_eq!(int(*suite, "failures"), failures);
        assert_eq!(int(*suite, "skipped"), skipped);
    }
}

#[test]
fn junit_has_a_testcase_per_domain_and_follows_the_schema() {
    let (repo, _) = finished_run();
    let xml = report(&repo, "junit");
    let doc = roxmltree::Document::parse(&xml).unwrap();
    check_junit_schema(&doc);
    let cases: Vec<roxmltree::Node> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let names: Vec<&str> = cases.iter().map(|c| c.attribute("name").unwrap()).collect();
    assert_eq!(names, DOMAINS);
    let child = |name: &str, tag: &str| {
        cases
            .iter()
            .find(|c| c.attribute("name") == Some(name))
            .unwrap()
            .children()
            .find(|k| k.has_tag_name(tag))
    };
    for ok in ["base", "dep", "flaky"] {
        assert!(
            child(ok, "failure").is_none() && child(ok, "skipped").is_none(),
            "{ok}"
        );
    }
    assert_eq!(
        child("broken", "failure").unwrap().attribute("type"),
        Some("failed")
    );
    assert_eq!(
        child("sneaky", "failure").unwrap().attribute("type"),
        Some("blocked")
    );
    assert!(child("after", "skipped").is_some());
    // What happened, in system-out: the attempts, and the violation's path (escaped, read back).
    let out = |name: &str| {
        child(name, "system-out")
            .unwrap()
            .text()
            .unwrap()
            .to_string()
    };
    assert!(
        out("flaky").contains("attempt 1: exit 1\nattempt 2: exit 0"),
        "{}",
        out("flaky")
    );
    assert!(out("sneaky").contains(MARKUP_PATH), "{}", out("sneaky"));
    let rec = record(&repo);
    let busy = rec["domains"]["base"]["started_ms"].as_u64().is_some();
    assert!(busy);
    let time: f64 = cases[0].attribute("time").unwrap().parse().unwrap();
    assert!(time > 0.0);
}

#[test]
fn chrome_trace_has_one_complete_event_per_span_on_a_thread_per_domain() {
    let (repo, _) = finished_run();
    let trace: Value = serde_json::from_str(&report(&repo, "chrome-trace")).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let threads: Vec<(u64, &str)> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| {
            (
                e["tid"].as_u64().unwrap(),
                e["args"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = threads.iter().map(|t| t.1).collect();
    assert_eq!(names[..DOMAINS.len()], DOMAINS);
    assert_eq!(names.len(), DOMAINS.len() + 1, "and the merged result");
    let complete: Vec<&Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    for e in &complete {
        assert_eq!(e["pid"], 1);
        assert!(e["ts"].is_u64() && e["dur"].is_u64(), "{e}");
        assert!(e["name"].is_string() && e["cat"].is_string(), "{e}");
        assert!(
            threads.iter().any(|t| Some(t.0) == e["tid"].as_u64()),
            "{e}"
        );
    }
    // One event per span of the timeline the library computes from the same run.
    let rec = agent_farm::record::RunRecord::load(&repo.run_dir().join("run.json")).unwrap();
    let data = agent_farm::export::Data::load(rec, agent_farm::events::now_ms()).unwrap();
    assert_eq!(complete.len(), data.timeline.spans().count());
    let rec = record(&repo);
    for (tid, name) in &threads[..DOMAINS.len()] {
        let agents = complete
            .iter()
            .filter(|e| e["tid"].as_u64() == Some(*tid) && e["cat"] == "agent")
            .count();
        assert_eq!(agents, attempts(&rec, name), "{name}");
    }
    let instants: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "i")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(instants.contains(&"processes_ended"), "{instants:?}");
    assert!(instants.contains(&"violation"), "{instants:?}");
    let kinds: BTreeSet<&str> = complete
        .iter()
        .map(|e| e["cat"].as_str().unwrap())
        .collect();
    for k in [
        "preparing",
        "agent",
        "retry_wait",
        "commit",
        "merge",
        "verify",
        "land",
        "clean",
    ] {
        assert!(kinds.contains(k) || k == "verify", "no {k} span: {kinds:?}");
    }
}

#[test]
fn markdown_and_json_carry_the_report() {
    let (repo, _) = finished_run();
    let md = report(&repo, "md");
    assert!(
        md.starts_with(&format!("# agent-farm run `{}`", repo.last_run())),
        "{md}"
    );
    for d in DOMAINS {
        assert!(md.contains(&format!("\n| {d}")), "row of {d}: {md}");
    }
    // (★ marks it if it was on the critical path.)
    let broken = md.lines().find(|l| l.starts_with("| broken")).unwrap();
    assert!(broken.contains(" | failed | 2 | 1 | "), "{broken}");
    assert!(md.contains("## Ownership violations"), "{md}");
    assert!(md.contains("## Kept branches"), "{md}");
    assert!(
        md.contains("## Processes ended by the supervisor\n\n- dep: pid "),
        "{md}"
    );
    // Markup in user data is not read as markup (inside a code span).
    assert!(md.contains(&format!("`{MARKUP_PATH}`")), "{md}");
    let json: Value = serde_json::from_str(&report(&repo, "json")).unwrap();
    assert_eq!(json["version"], 1);
    let saved = repo.report();
    assert_eq!(json["run_id"], saved["run_id"]);
    assert_eq!(json["domains"], saved["domains"]);
    assert_eq!(json["kept"], saved["kept"]);
}

// ---- the browser ----

/// Debian's Chromium (`.ci/run` installs it), or `AGENT_FARM_TEST_CHROMIUM`.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AGENT_FARM_TEST_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

/// [`chromium`], or: panic under `CI=true`, else print a skip notice and return `None`.
fn require_chromium(test: &str) -> Option<PathBuf> {
    let bin = chromium();
    if bin.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "{test}: CI requires Chromium: .ci/run installs it (or set AGENT_FARM_TEST_CHROMIUM)"
            );
        }
        eprintln!(
            "skipped: {test}: Chromium not found (apt-get install -y chromium, or set AGENT_FARM_TEST_CHROMIUM)"
        );
    }
    bin
}

/// Run headless Chromium on `url` with `extra` flags; its stdout. Ends it if it outlives `limit`.
fn headless(bin: &Path, profile: &Path, extra: &[String], url: &str, limit: Duration) -> String {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .env("HOME", profile)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("chromium did not finish within {:?}", start.elapsed());
        }
    };
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_html_report_renders_in_headless_chromium() {
    let Some(bin) = require_chromium("the_html_report_renders_in_headless_chromium") else {
        return;
    };
    let (repo, _) = finished_run();
    let page = repo.run_dir().join("report.html");
    let url = format!("file://{}", page.display());
    let profile = repo.scratch.join("chromium-profile");
    std::fs::create_dir_all(&profile).unwrap();
    let limit = Duration::from_secs(120);
    // The rendered DOM: the page parsed as HTML by the browser still has a lane per domain.
    let dom = headless(&bin, &profile, &["--dump-dom".into()], &url, limit);
    assert!(dom.contains("<svg"), "{dom}");
    assert_eq!(
        dom.matches("data-lane=\"domain\"").count(),
        DOMAINS.len(),
        "{dom}"
    );
    for d in DOMAINS {
        assert!(dom.contains(&format!("data-name=\"{d}\"")), "{d}");
    }
    // And a picture of it, kept as a CI artifact.
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("report.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        &bin,
        &profile,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1400,1000".into(),
        ],
        &url,
        limit,
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 10_000, "a blank page? {} bytes", png.len());
    eprintln!("screenshot: {}", shot.display());
}
