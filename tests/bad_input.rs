mod common;
use common::*;

// Bad input: every invalid plan, failed preflight and usage error ends with its documented exit
// code (3 = invalid plan, 4 = preflight, 2 = usage), says clearly on stderr what is wrong and
// where (file, line, domain), and leaves the repository exactly as it was: no worktree, no
// branch, no run directory, no change to the user's checkout.

const INVALID_PLAN: i32 = 3;
const PREFLIGHT: i32 = 4;
const USAGE: i32 = 2;

/// Everything about the repository that agent-farm could change.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    head: String,
    refs: String,
    worktrees: Vec<String>,
    status: String,
}

fn snapshot(repo: &TestRepo) -> Snapshot {
    Snapshot {
        head: repo.git(&["symbolic-ref", "HEAD"]),
        refs: repo.git(&["for-each-ref", "--format=%(refname) %(objectname)"]),
        worktrees: repo.worktrees(),
        status: repo.git(&["status", "--porcelain", "--untracked-files=all"]),
    }
}

/// Nothing was created and nothing in the user's checkout changed since `before`.
fn assert_untouched(repo: &TestRepo, before: &Snapshot) {
    repo.assert_nothing_created();
    assert!(
        repo.run_ids().is_empty(),
        "a run directory was created: {:?}",
        repo.run_ids()
    );
    let farm_dir = repo.common_dir().join("agent-farm");
    assert!(
        !farm_dir.exists(),
        "{} was created by a run that failed before starting",
        farm_dir.display()
    );
    let status = repo.git(&["status", "--porcelain", "--untracked-files=all"]);
    assert!(status.is_empty(), "the checkout was changed:\n{status}");
    assert_eq!(&snapshot(repo), before, "the repository changed");
}

/// Run agent-farm with `args` in the repository, expect exit `code` and an untouched repository.
fn fails(repo: &TestRepo, args: &[&str], code: i32) -> Run {
    let before = snapshot(repo);
    let run = repo.farm(args);
    run.expect(code);
    assert!(
        run.stderr.contains("error"),
        "no error message on stderr:\n{}",
        run.stderr
    );
    assert_untouched(repo, &before);
    run
}

/// `agent-farm run` on the committed plan.
fn run_fails(repo: &TestRepo, code: i32) -> Run {
    fails(repo, &["run", "--progress", "none"], code)
}

/// `agent-farm plan` on the committed plan.
fn plan_fails(repo: &TestRepo, code: i32) -> Run {
    fails(repo, &["plan"], code)
}

fn repo_with_plan(yaml: &str) -> TestRepo {
    let repo = TestRepo::new();
    repo.write_plan(yaml);
    repo
}

#[track_caller]
fn assert_stderr_has(run: &Run, needles: &[&str]) {
    for n in needles {
        assert!(
            run.stderr.contains(n),
            "stderr lacks {n:?}:\n{}",
            run.stderr
        );
    }
}

/// The line numbers printed as `farm.yaml:LINE` on stderr.
fn plan_lines(run: &Run) -> Vec<usize> {
    run.stderr
        .match_indices("farm.yaml:")
        .filter_map(|(i, m)| {
            let rest = &run.stderr[i + m.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// stderr names the plan file at `line`, optionally for `domain`.
#[track_caller]
fn assert_located(run: &Run, line: usize, domain: Option<&str>) {
    let at = format!("farm.yaml:{line}:");
    let problem = run
        .stderr
        .lines()
        .find(|l| l.contains(&at))
        .unwrap_or_else(|| panic!("stderr does not locate {at}:\n{}", run.stderr));
    if let Some(d) = domain {
        assert!(
            problem.contains(&format!("domain `{d}`")),
            "the problem at {at} does not name domain `{d}`:\n{}",
            run.stderr
        );
    }
}

fn api() -> String {
    domain("api", "src/api/**", "write src/api/new.rs // new", "")
}

fn ui() -> String {
    domain("ui", "src/ui/**", "write src/ui/new.html <p>new</p>", "")
}

// ---------------------------------------------------------------------------------------------
// Invalid plans: exit 3.

#[test]
fn malformed_yaml_unclosed_bracket() {
    let repo = repo_with_plan(
        "version: 1\nagent:\n  preset: sim\ndomains:\n  - name: api\n    owns: [\"src/api/**\"\n    prompt: write src/api/x.rs x\n",
    );
    let run = run_fails(&repo, INVALID_PLAN);
    let lines = plan_lines(&run);
    assert!(
        lines.iter().any(|l| (6..=8).contains(l)),
        "expected farm.yaml:LINE near the unclosed `[` (line 6), got {lines:?}:\n{}",
        run.stderr
    );
}

#[test]
fn malformed_yaml_bad_indentation() {
    let repo = repo_with_plan(
        "version: 1\nagent:\n  preset: sim\ndomains:\n  - name: api\n   prompt: write src/api/x.rs x\n    owns: [\"src/api/**\"]\n",
    );
    let run = run_fails(&repo, INVALID_PLAN);
    let lines = plan_lines(&run);
    assert!(
        lines.iter().any(|l| (5..=7).contains(l)),
        "expected farm.yaml:LINE near the bad indentation (line 6), got {lines:?}:\n{}",
        run.stderr
    );
}

#[test]
fn unknown_key_at_top_level() {
    // sim_plan: lines 1-6 are version and agent, line 7 is `extra_top`.
    let repo = repo_with_plan(&sim_plan("colour: red\n", &api()));
    let run = run_fails(&repo, INVALID_PLAN);
    assert_stderr_has(&run, &["unknown field `colour`"]);
    assert_located(&run, 7, None);
}

#[test]
fn unknown_key_inside_a_domain() {
    // Lines 1-7: header and `domains:`; api is lines 8-11; ui is lines 12-15, `colour` line 16.
    let ui = domain("ui", "src/ui/**", "write src/ui/new.html x", "colour: red");
    let repo = repo_with_plan(&sim_plan("", &format!("{}{ui}", api())));
    let run = run_fails(&repo, INVALID_PLAN);
    assert_stderr_has(&run, &["unknown field `colour`"]);
    assert_located(&run, 16, None);
}

#[test]
fn missing_domains_field() {
    let repo = repo_with_plan("version: 1\nagent:\n  preset: sim\n");
    let run = run_fails(&repo, INVALID_PLAN);
    assert_stderr_has(&run, &["missing field `domains`", "farm.yaml"]);
}

#[test]
fn domain_without_prompt() {
    // `b` is declared at line 12 (after `api`, lines 8-11).
    let b = "  - name: b\n    owns: [\"src/ui/**\"]\n";
    let repo = repo_with_plan(&sim_plan("", &format!("{}{b}", api())));
    let run = run_fails(&repo, INVALID_PLAN);
    assert_stderr_has(&run, &["missing `prompt`"]);
    assert_located(&run, 12, Some("b"));
}

#[test]
fn dependency_cycle() {
    let domains = [
        domain(
            "alpha",
            "src/api/**",
            "write src/api/a x",
            "depends_on: [beta]",
        ),
        domain(
            "beta",
            "src/ui/**",
            "write src/ui/b x",
            "depends_on: [gamma]",
        ),
        domain("gamma", "docs/**", "write docs/c x", "depends_on: [alpha]"),
    ]
    .concat();
    let repo = repo_with_plan(&sim_plan("", &domains));
    let run = run_fails(&repo, INVALID_PLAN);
    assert_stderr_has(&run, &["dependency cycle", "alpha", "beta", "gamma"]);
    let cycle = run
        .stderr
        .lines()
        .find(|l| l.contains("dependency cycle"))
        .unwrap_or_default();
    for n in ["alpha", "beta", "gamma"] {
        assert!(cycle.contains(n), "the cycle line lacks {n}: {cycle}");
    }
    assert!(
        !plan_lines(&run).is_empty(),
        "no line number:\n{}",
        run.stderr
    );
}

#[test]
fn unknown_dependency() {
    let ui = domain("ui", "src/ui/**", "write src/ui/x x", "depends_on: [ghost]");
    let repo = repo_with_plan(&sim_plan("", &format!("{}{ui}", api())));
    let run = run_fails(&repo, INVALID_PLAN);
    assert_stderr_has(&run, &["unknown domain `ghost`"]);
    assert_located(&run, 12, Some("ui"));
}

#[test]
fn duplicate_domain_name() {
    let again = domain("api", "src/ui/**", "write src/ui/x x", "");
    let repo = repo_with_plan(&sim_plan("", &format!("{}{again}", api())));
    let run = run_fails(&repo, INVALID_PLAN);
    assert_stderr_has(&run, &["duplicate", "line 8"]);
    assert_located(&run, 12, Some("api"));
}

#[test]
fn unsafe_domain_names() {
    for name in ["../x", "a b", "integration", "x.lock"] {
        let d = domain(
            &format!("\"{name}\""),
            "src/api/**",
            "write src/api/x x",
            "",
        );
        let repo = repo_with_plan(&sim_plan("", &d));
        let run = run_fails(&repo, INVALID_PLAN);
        assert!(
            run.stderr.contains("unsafe") || run.stderr.contains("reserved"),
            "name {name:?}: stderr says neither unsafe nor reserved:\n{}",
            run.stderr
        );
        assert_located(&run, 8, Some(name));
    }
}

#[test]
fn missing_prompt_file() {
    let d = "  - name: api\n    owns: [\"src/api/**\"]\n    prompt_file: prompts/nope.md\n";
    let repo = repo_with_plan(&sim_plan("", d));
    let run = run_fails(&repo, INVALID_PLAN);
    assert_stderr_has(&run, &["prompts/nope.md"]);
    assert_located(&run, 8, Some("api"));
}

#[test]
fn invalid_duration() {
    let repo = repo_with_plan(&format!(
        "version: 1\nagent:\n  preset: sim\n  timeout: soon\ndomains:\n{}",
        api()
    ));
    let run = run_fails(&repo, INVALID_PLAN);
    assert_stderr_has(&run, &["invalid duration `soon`"]);
    assert_located(&run, 4, None);
}

#[test]
fn invalid_duration_in_a_domain() {
    let d = domain("api", "src/api/**", "write src/api/x x", "timeout: soon");
    let repo = repo_with_plan(&sim_plan("", &d));
    let run = run_fails(&repo, INVALID_PLAN);
    assert_stderr_has(&run, &["invalid duration `soon`"]);
    assert_located(&run, 12, None);
}

#[test]
fn ownership_overlap_proven_from_patterns() {
    let core = domain("core", "src/**", "write src/x x", "");
    let api = domain("api", "src/api/**", "write src/api/x x", "");
    let repo = repo_with_plan(&sim_plan("", &format!("{core}{api}")));
    let run = run_fails(&repo, INVALID_PLAN);
    assert_stderr_has(&run, &["overlap", "`core`", "`api`"]);
    assert_located(&run, 12, Some("api"));
}

#[test]
fn ownership_overlap_on_a_file_at_base() {
    // The brief's example: `src/*.rs` vs `src/lib.rs`, with src/lib.rs in the repository.
    let repo = TestRepo::with_files(&[
        ("src/lib.rs", "// lib\n"),
        ("src/main.rs", "fn main() {}\n"),
    ]);
    let all = domain("all", "src/*.rs", "write src/x.rs x", "");
    let lib = domain("lib", "src/lib.rs", "write src/lib.rs x", "");
    repo.write_plan(&sim_plan("", &format!("{all}{lib}")));
    let run = run_fails(&repo, INVALID_PLAN);
    assert_stderr_has(&run, &["overlap", "`all`", "`lib`", "src/lib.rs"]);
    assert_located(&run, 12, Some("lib"));
}

#[test]
fn ownership_overlap_only_on_existing_files() {
    // The pattern check cannot construct a common path for these (the brace's first alternative
    // leads nowhere), so only the files at base reveal the overlap.
    let repo = TestRepo::with_files(&[
        ("src/lib.rs", "// lib\n"),
        ("src/main.rs", "fn main() {}\n"),
    ]);
    let rs = domain("rs", "src/{main,lib}.rs", "write src/main.rs x", "");
    let l = domain("l", "src/l*", "write src/lx x", "");
    repo.write_plan(&sim_plan("", &format!("{rs}{l}")));
    let run = run_fails(&repo, INVALID_PLAN);
    assert_stderr_has(&run, &["overlap", "`rs`", "existing files", "src/lib.rs"]);
    assert!(
        !run.stderr.contains("src/main.rs"),
        "src/main.rs is not owned twice:\n{}",
        run.stderr
    );
    assert_located(&run, 12, Some("l"));
}

#[test]
fn missing_plan_file() {
    let repo = TestRepo::new();
    let run = fails(
        &repo,
        &["run", "--progress", "none", "nope.yaml"],
        INVALID_PLAN,
    );
    assert_stderr_has(&run, &["nope.yaml"]);
    let run = fails(&repo, &["run", "--progress", "none"], INVALID_PLAN);
    assert_stderr_has(&run, &["farm.yaml"]);
}

#[test]
fn an_error_names_its_cause_once() {
    let repo = TestRepo::new();
    for args in [
        &["run", "--progress", "none", "nope.yaml"][..],
        &["plan", "nope.yaml"][..],
    ] {
        let run = fails(&repo, args, INVALID_PLAN);
        let cause = "No such file or directory";
        assert_eq!(
            run.stderr.matches(cause).count(),
            1,
            "the cause is not printed exactly once:\n{}",
            run.stderr
        );
        assert_eq!(run.stderr.matches("error:").count(), 1, "{}", run.stderr);
        assert_stderr_has(&run, &["cannot read plan", "nope.yaml", "agent-farm init"]);
    }
}

// ---------------------------------------------------------------------------------------------
// Preflight failures: exit 4.

#[test]
fn agent_binary_not_found() {
    let repo = repo_with_plan(&format!(
        "version: 1\nagent:\n  preset: custom\n  command: [\"definitely-not-an-agent-xyz\", \"{{prompt}}\"]\ndomains:\n{}",
        api()
    ));
    let run = run_fails(&repo, PREFLIGHT);
    assert_stderr_has(&run, &["definitely-not-an-agent-xyz", "not found"]);
}

#[test]
fn not_a_git_repository() {
    let repo = TestRepo::new();
    let dir = repo.scratch.join("plain");
    std::fs::create_dir_all(&dir).expect("create plain dir");
    std::fs::write(dir.join("farm.yaml"), sim_plan("", &api())).expect("write plan");
    let before = snapshot(&repo);
    let run = repo.farm_in(&dir, &["run", "--progress", "none"]);
    run.expect(PREFLIGHT);
    assert_stderr_has(&run, &["not inside a git repository", "plain"]);
    let left: Vec<_> = std::fs::read_dir(&dir)
        .expect("read plain dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["farm.yaml".to_string()], "files were created");
    assert_untouched(&repo, &before);
}

#[test]
fn base_does_not_exist() {
    let repo = repo_with_plan(&sim_plan("base: nope\n", &api()));
    let run = run_fails(&repo, PREFLIGHT);
    assert_stderr_has(&run, &["base `nope`"]);
}

#[test]
fn prepare_copy_names_a_missing_file() {
    let repo = repo_with_plan(&sim_plan("prepare:\n  copy: [\".env.local\"]\n", &api()));
    let run = run_fails(&repo, PREFLIGHT);
    assert_stderr_has(&run, &[".env.local", "prepare.copy"]);
}

// ---------------------------------------------------------------------------------------------
// `agent-farm plan`.

#[test]
fn plan_rejects_bad_plans_and_creates_nothing() {
    let cycle = [
        domain("a", "src/api/**", "write src/api/a x", "depends_on: [b]"),
        domain("b", "src/ui/**", "write src/ui/b x", "depends_on: [a]"),
    ]
    .concat();
    let overlap = format!(
        "{}{}",
        domain("core", "src/**", "write src/x x", ""),
        domain("api", "src/api/**", "write src/api/x x", "")
    );
    let cases = [
        (
            "malformed",
            "version: 1\ndomains:\n  - name: api\n    owns: [\"src/api/**\"\n".to_string(),
            "farm.yaml:",
        ),
        (
            "unknown key",
            sim_plan("colour: red\n", &api()),
            "unknown field `colour`",
        ),
        ("cycle", sim_plan("", &cycle), "dependency cycle"),
        (
            "unsafe name",
            sim_plan(
                "",
                &domain("\"../x\"", "src/api/**", "write src/api/x x", ""),
            ),
            "unsafe",
        ),
        ("pattern overlap", sim_plan("", &overlap), "overlap"),
        (
            "overlap at base",
            sim_plan(
                "",
                &format!(
                    "{}{}",
                    domain(
                        "docs",
                        "docs/{readme,index}.md",
                        "write docs/readme.md x",
                        ""
                    ),
                    domain("index", "docs/i*", "write docs/ix x", "")
                ),
            ),
            "docs/index.md",
        ),
    ];
    for (what, yaml, needle) in cases {
        let repo = repo_with_plan(&yaml);
        let run = plan_fails(&repo, INVALID_PLAN);
        assert!(
            run.stderr.contains(needle),
            "{what}: stderr lacks {needle:?}:\n{}",
            run.stderr
        );
        let run = fails(&repo, &["plan", "--json"], INVALID_PLAN);
        assert!(
            run.stdout.is_empty(),
            "{what}: --json printed:\n{}",
            run.stdout
        );
    }
}

fn good_plan() -> String {
    let docs = domain(
        "docs",
        "docs/**",
        "write docs/new.md x",
        "depends_on: [api, ui]",
    );
    sim_plan("", &format!("{}{}{docs}", api(), ui()))
}

#[test]
fn plan_on_a_good_plan_prints_the_waves() {
    let repo = repo_with_plan(&good_plan());
    let before = snapshot(&repo);
    let run = repo.farm(&["plan"]);
    run.expect(0);
    assert!(run.stdout.contains("waves:"), "{}", run.stdout);
    let wave = |n: usize| {
        run.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{n}: ")))
            .unwrap_or_else(|| panic!("no wave {n}:\n{}", run.stdout))
            .to_string()
    };
    let first = wave(1);
    assert!(first.contains("api") && first.contains("ui"), "{first}");
    assert!(!first.contains("docs"), "{first}");
    assert!(wave(2).contains("docs"));
    assert_untouched(&repo, &before);
}

#[test]
fn plan_json_has_waves() {
    let repo = repo_with_plan(&good_plan());
    let before = snapshot(&repo);
    let run = repo.farm(&["plan", "--json"]);
    run.expect(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("plan --json is not JSON ({e}):\n{}", run.stdout));
    let waves = v["waves"].as_array().expect("a `waves` array");
    assert_eq!(waves.len(), 2, "{waves:?}");
    let mut first: Vec<&str> = waves[0]
        .as_array()
        .expect("a wave is an array")
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    first.sort_unstable();
    assert_eq!(first, ["api", "ui"]);
    assert_eq!(waves[1], serde_json::json!(["docs"]));
    assert_untouched(&repo, &before);
}

// ---------------------------------------------------------------------------------------------
// Usage errors: exit 2.

#[test]
fn unknown_cli_flag() {
    let repo = repo_with_plan(&good_plan());
    for args in [
        &["run", "--definitely-not-a-flag"][..],
        &["plan", "--definitely-not-a-flag"],
        &["--definitely-not-a-flag", "run"],
        &["run", "--progress", "sometimes"],
        &["run", "--deadline", "soon"],
    ] {
        let run = fails(&repo, args, USAGE);
        assert!(run.stdout.is_empty(), "{args:?} printed:\n{}", run.stdout);
    }
}

/// `--jobs 0` is refused like `max_parallel: 0`, in the same words; neither creates anything.
#[test]
fn zero_jobs_is_refused_like_zero_max_parallel() {
    let repo = repo_with_plan(&good_plan());
    for args in [
        &["run", "--jobs", "0"][..],
        &["run", "-j", "0"],
        &["run", "-j", "x"],
    ] {
        let run = fails(&repo, args, USAGE);
        assert!(run.stdout.is_empty(), "{args:?} printed:\n{}", run.stdout);
    }
    let run = fails(&repo, &["run", "--jobs", "0"], USAGE);
    assert_stderr_has(&run, &["`--jobs` must be at least 1"]);
    let repo = repo_with_plan(&sim_plan("max_parallel: 0\n", &api()));
    let run = plan_fails(&repo, INVALID_PLAN);
    assert_stderr_has(&run, &["`max_parallel` must be at least 1"]);
}

/// Other usage errors of the CLI conventions: exit 2, nothing created.
#[test]
fn bad_global_flags_and_run_arguments() {
    let repo = repo_with_plan(&good_plan());
    for args in [
        &["--color", "sometimes", "plan"][..],
        &["-q", "-v", "plan"],
        &["run", "--agent", "gpt"],
        &["completions", "tcsh"],
        &["runs", "prune"],
        &["runs", "prune", "--keep", "1", "--older-than", "1d"],
        &["runs", "prune", "--older-than", "soon"],
        &["logs", "api", "r1", "--run", "r2"],
    ] {
        let run = fails(&repo, args, USAGE);
        assert!(run.stdout.is_empty(), "{args:?} printed:\n{}", run.stdout);
    }
}

/// A `GIT_AUTHOR_DATE` / `GIT_COMMITTER_DATE` git would refuse: exit 4, nothing created.
#[test]
fn a_date_git_cannot_read_is_refused_before_anything_is_created() {
    let repo = repo_with_plan(&good_plan());
    for var in ["GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"] {
        let before = snapshot(&repo);
        let mut cmd = repo.farm_cmd(&repo.root, &["run", "--progress", "none"]);
        cmd.env(var, "next tuesday-ish");
        let run = Run::from(cmd.output().expect("run agent-farm"));
        run.expect(PREFLIGHT);
        assert_stderr_has(&run, &[var, "next tuesday-ish", "2005-04-07T22:13:13"]);
        assert_untouched(&repo, &before);
    }
}

/// A directory given with `-C` that does not exist: exit 4, said once, nothing created.
#[test]
fn dash_c_names_a_missing_directory() {
    let repo = repo_with_plan(&good_plan());
    let missing = repo.scratch.join("nope");
    for cmd in ["run", "demo", "status"] {
        let run = fails(
            &repo,
            &["-C", missing.to_str().expect("utf-8 path"), cmd],
            PREFLIGHT,
        );
        assert_stderr_has(&run, &["cannot change to", "nope"]);
        assert_eq!(run.stderr.matches("error:").count(), 1, "{}", run.stderr);
    }
    assert!(!missing.exists());
}

/// git would sign every commit (`commit.gpgsign`), agent-farm cannot: refused before anything
/// is created, naming the setting.
#[test]
fn commit_signing_is_refused_before_anything_is_created() {
    let repo = repo_with_plan(&sim_plan("", &domain("a", "a/**", "write a/x x", "")));
    repo.git(&["config", "--local", "commit.gpgsign", "true"]);
    let run = run_fails(&repo, 4);
    assert!(run.stderr.contains("commit.gpgsign"), "{}", run.stderr);
    assert!(run.stderr.contains("local configuration"), "{}", run.stderr);
}

/// A domain whose globs reach inside a submodule (`vendor/lib`, a gitlink at base, never checked
/// out in worktrees) is refused before anything is created, naming the domain, the glob and the
/// submodule, and saying how to exclude it; globs that stop short of it are fine.
#[test]
fn owning_inside_a_submodule_is_refused_before_anything_is_created() {
    let repo = TestRepo::new();
    repo.write("vendor/README.md", "vendored\n");
    repo.write(
        ".gitmodules",
        "[submodule \"vendor/lib\"]\n\tpath = vendor/lib\n\turl = ../lib\n",
    );
    repo.write(
        "farm.yaml",
        &sim_plan(
            "",
            &[
                domain("api", "src/api/**", "write src/api/x x", ""),
                domain(
                    "vendor",
                    "vendor/**",
                    "write vendor/lib/patch.txt patched",
                    "",
                ),
            ]
            .concat(),
        ),
    );
    repo.git(&["add", "vendor", ".gitmodules", "farm.yaml"]);
    repo.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        "160000,1111111111111111111111111111111111111111,vendor/lib",
    ]);
    // Not `commit_all`: `git add -A` would stage the missing directory's deletion.
    repo.git(&["commit", "-q", "-m", "vendor a submodule"]);
    assert!(
        repo.git(&["ls-tree", "HEAD", "vendor/"])
            .contains("160000 commit")
    );
    // As a clone leaves an uninitialised submodule: an empty directory.
    std::fs::create_dir_all(repo.root.join("vendor/lib")).expect("mkdir vendor/lib");
    for run in [
        run_fails(&repo, INVALID_PLAN),
        plan_fails(&repo, INVALID_PLAN),
    ] {
        let e = &run.stderr;
        assert!(e.contains("domain `vendor`"), "{e}");
        assert!(e.contains("`vendor/**`"), "{e}");
        assert!(e.contains("submodule `vendor/lib`"), "{e}");
        assert!(e.contains("farm.yaml:"), "no line: {e}");
        assert!(e.contains("Narrow `owns`"), "{e}");
        assert!(e.contains("beside it instead: vendor/README.md"), "{e}");
        assert!(!e.contains("domain `api`"), "{e}");
    }
    // Stopping short of the submodule is accepted.
    repo.write(
        "farm.yaml",
        &sim_plan(
            "",
            &domain(
                "vendor",
                "vendor/README.md",
                "write vendor/README.md patched",
                "",
            ),
        ),
    );
    repo.git(&["commit", "-q", "-m", "narrow", "farm.yaml"]);
    repo.farm(&["plan"]).expect(0);
}
