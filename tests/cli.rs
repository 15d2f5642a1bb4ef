//! The CLI's conventions (issue 11): completions, man pages, `-q`/`-v`, `--color`, run history
//! (`runs`, `runs prune`), positional RUN everywhere, `status`'s exit code, versioned JSON, every
//! agent preset, git's date formats, `-C` with `demo`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::Value;

fn api() -> String {
    domain("api", "src/api/**", "write src/api/new.rs // new", "")
}

fn good_repo() -> TestRepo {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan("", &api()));
    repo
}

#[test]
fn completions_for_bash_zsh_and_fish_name_the_commands() {
    let repo = TestRepo::new();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef agent-farm"),
        ("fish", "complete -c agent-farm"),
    ] {
        let out = repo.farm(&["completions", shell]);
        out.expect(0);
        assert!(out.stdout.contains(marker), "{shell}: {}", out.stdout);
        for cmd in ["run", "status", "runs", "prune", "logs"] {
            assert!(out.stdout.contains(cmd), "{shell} lacks {cmd}");
        }
        // The presets are completed for --agent.
        assert!(out.stdout.contains("codex"), "{shell} lacks the presets");
    }
    repo.farm(&["completions", "tcsh"]).expect(2);
}

#[test]
fn man_prints_a_page_or_writes_one_per_command() {
    let repo = TestRepo::new();
    let out = repo.farm(&["man"]);
    out.expect(0);
    assert!(out.stdout.contains(".TH agent-farm 1"), "{}", out.stdout);
    assert!(out.stdout.contains("completions"), "{}", out.stdout);
    let dir = repo.scratch.join("man1");
    repo.farm(&["man", "--dir", dir.to_str().unwrap()])
        .expect(0);
    for page in ["agent-farm.1", "agent-farm-run.1", "agent-farm-runs.1"] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}: {text}");
    }
}

#[test]
fn long_help_of_run_plan_and_init_has_examples() {
    let repo = TestRepo::new();
    for cmd in ["run", "plan", "init"] {
        let out = repo.farm(&[cmd, "--help"]);
        out.expect(0);
        assert!(
            out.stdout.contains("Examples:") && out.stdout.contains(&format!("agent-farm {cmd}")),
            "{cmd}: {}",
            out.stdout
        );
    }
}

#[test]
fn quiet_prints_nothing_but_the_exit_code_says_the_outcome() {
    let repo = good_repo();
    let out = repo.farm(&["-q", "run"]);
    out.expect(0);
    assert_eq!(out.stdout, "", "{out:?}");
    assert_eq!(out.stderr, "", "{out:?}");
    assert!(repo.root.join("src/api/new.rs").is_file());
    // What was asked for is still printed.
    let json: Value = serde_json::from_str(&repo.farm(&["-q", "status", "--json"]).stdout).unwrap();
    assert_eq!(json["landed"], true);
    // -q and -v contradict each other.
    repo.farm(&["-q", "-v", "plan"]).expect(2);
}

#[test]
fn verbose_raises_the_log_level_and_colour_follows_the_rules() {
    let repo = good_repo();
    // -vv: debug lines from agent-farm's own modules; into a pipe, without colour codes.
    let out = repo.farm(&["-vv", "run", "--progress", "none"]);
    out.expect(0);
    assert!(out.stderr.contains("DEBUG"), "{}", out.stderr);
    assert!(!out.stderr.contains('\x1b'), "{}", out.stderr);
    // `--color always` colours even into a pipe; never and NO_COLOR do not.
    let log = |args: &[&str], no_color: Option<&str>| {
        let mut cmd = repo.farm_cmd(&repo.root, args);
        cmd.env("AGENT_FARM_LOG", "agent_farm=debug");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        Run::from(cmd.output().unwrap())
    };
    let coloured = log(
        &["--color", "always", "run", "--progress", "none"],
        Some("1"),
    );
    coloured.expect(0);
    assert!(coloured.stderr.contains('\x1b'), "{}", coloured.stderr);
    for args in [
        &["--color", "never", "run", "--progress", "none"][..],
        &["run", "--progress", "none"][..],
    ] {
        let plain = log(args, Some("1"));
        plain.expect(0);
        assert!(plain.stderr.contains("DEBUG"), "{}", plain.stderr);
        assert!(!plain.stderr.contains('\x1b'), "{args:?}: {}", plain.stderr);
    }
    repo.farm(&["--color", "sometimes", "plan"]).expect(2);
}

#[test]
fn every_preset_is_accepted_by_agent() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan("", &api()));
    // A stand-in for codex: `codex exec --full-auto PROMPT`, run in the domain's worktree.
    let fake = repo.scratch.join("codex");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1 $2\" = \"exec --full-auto\" ] || exit 9\necho \"by codex\" > src/api/codex.rs\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = repo.farm(&[
        "run",
        "--progress",
        "none",
        "--agent",
        "codex",
        "--agent-program",
        fake.to_str().unwrap(),
    ]);
    out.expect(0);
    assert_eq!(repo.read("src/api/codex.rs"), "by codex\n");
    // Every preset parses (the ones whose program is missing stop at the preflight, exit 4).
    for preset in ["claude", "gemini", "aider", "custom"] {
        let out = repo.farm(&["run", "--progress", "none", "--agent", preset]);
        assert_eq!(out.code, 4, "{preset}: {out:?}");
    }
    let out = repo.farm(&["run", "--agent", "gpt"]);
    out.expect(2);
    assert!(out.stderr.contains("codex"), "{}", out.stderr);
}

#[test]
fn runs_lists_runs_and_prune_keeps_unmerged_work() {
    let repo = TestRepo::new();
    // A run that lands …
    repo.write_plan(&sim_plan("", &api()));
    repo.farm(&["run", "--progress", "none"]).expect(0);
    let landed = repo.last_run();
    // … and one whose domain fails, its partial work kept on its branch.
    repo.write_plan(&sim_plan(
        "",
        &domain("ui", "src/ui/**", "write src/ui/half.html half\nexit 1", ""),
    ));
    repo.farm(&["run", "--progress", "none"]).expect(6);
    // Two runs in one second: their ids sort by their random part, not by time.
    let ids = repo.run_ids();
    assert_eq!(ids.len(), 2, "{ids:?}");
    let failed = ids.iter().find(|i| **i != landed).unwrap().clone();
    // Without a RUN, the most recent run is meant, whatever its id's random part.
    let last: Value = serde_json::from_str(&repo.farm(&["status", "--json"]).stdout).unwrap();
    assert_eq!(last["run_id"], failed.as_str());

    let list = repo.farm(&["runs"]);
    list.expect(0);
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", list.stdout);
    for h in [
        "RUN", "STARTED", "PLAN", "STATUS", "LANDED", "DURATION", "COST",
    ] {
        assert!(lines[0].contains(h), "{}", list.stdout);
    }
    assert!(lines[1].starts_with(&landed) && lines[1].contains("succeeded"));
    assert!(lines[1].contains("farm.yaml") && lines[1].contains("yes"));
    assert!(lines[2].starts_with(&failed) && lines[2].contains("domains_failed"));

    let json: Value = serde_json::from_str(&repo.farm(&["runs", "--json"]).stdout).unwrap();
    assert_eq!(json["version"], 1);
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["run_id"], landed.as_str());
    assert_eq!(runs[0]["landed"], true);
    assert_eq!(runs[0]["exit_code"], 0);
    assert_eq!(runs[1]["status"], "domains_failed");
    assert_eq!(runs[1]["exit_code"], 6);

    // The shortest unique prefix names a run wherever a RUN is taken.
    let short = shortest_unique_prefix(&failed, &landed);
    let status = repo.farm(&["status", &short, "--json"]);
    assert_eq!(status.code, 6, "{status:?}");
    let report: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(report["run_id"], failed.as_str());
    repo.farm(&["logs", "ui", &short]).expect(0);
    repo.farm(&["logs", "ui", "--run", &short]).expect(0);

    // A dry run removes nothing; a prune removes the landed run's record only.
    let dry = repo.farm(&["runs", "prune", "--keep", "0", "--dry-run"]);
    dry.expect(0);
    assert!(
        dry.stdout.contains(&format!("would remove {landed}")),
        "{}",
        dry.stdout
    );
    assert_eq!(repo.run_ids().len(), 2);
    let pruned = repo.farm(&["runs", "prune", "--keep", "0"]);
    pruned.expect(0);
    assert!(
        pruned.stdout.contains(&format!("removed {landed}")),
        "{}",
        pruned.stdout
    );
    let kept_line = pruned
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("kept {failed}")))
        .unwrap_or_else(|| panic!("{}", pruned.stdout));
    assert!(
        kept_line.contains(&format!("branch farm/{failed}/ui")),
        "{kept_line}"
    );
    assert_eq!(repo.run_ids(), vec![failed.clone()]);
    assert!(!repo.run_refs(&failed).is_empty(), "prune touched git");

    // Once its work is cleaned away, it goes too; pruning again is harmless.
    repo.farm(&["clean", &failed, "--force"]).expect(0);
    let pruned = repo.farm(&["runs", "prune", "--older-than", "0s", "--json"]);
    pruned.expect(0);
    let j: Value = serde_json::from_str(&pruned.stdout).unwrap();
    assert_eq!(j["version"], 1);
    assert_eq!(j["runs"][0]["removed"], true, "{j}");
    assert!(repo.run_ids().is_empty());
    repo.farm(&["runs", "prune", "--keep", "0"]).expect(0);
    let none = repo.farm(&["status"]);
    none.expect(4);
    assert!(none.stderr.contains("hint: "), "{}", none.stderr);
}

/// The shortest prefix of `id` that is not a prefix of `other`.
fn shortest_unique_prefix(id: &str, other: &str) -> String {
    let common = id
        .chars()
        .zip(other.chars())
        .take_while(|(a, b)| a == b)
        .count();
    id[..=common].to_string()
}

#[test]
fn status_exits_with_the_runs_exit_code_and_json_is_versioned() {
    let repo = TestRepo::new();
    repo.write_plan(&sim_plan(
        "",
        &format!("{}{}", api(), domain("ui", "src/ui/**", "exit 2", "")),
    ));
    repo.farm(&["run", "--progress", "none"]).expect(6);
    let status = repo.farm(&["status"]);
    status.expect(6);
    assert!(status.stdout.contains("failed"), "{}", status.stdout);
    let json: Value = serde_json::from_str(&repo.farm(&["status", "--json"]).stdout).unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(json["exit_code"], 6);
    let plan: Value = serde_json::from_str(&repo.farm(&["plan", "--json"]).stdout).unwrap();
    assert_eq!(plan["version"], 1);
    assert!(plan["waves"].is_array());
}

#[test]
fn git_date_formats_are_honoured_for_the_farms_commits() {
    for (date, at) in [
        ("2005-04-07T22:13:13+0200", "1112904793 +0200"),
        ("Thu, 07 Apr 2005 22:13:13 +0200", "1112904793 +0200"),
        ("@1112904793 +0200", "1112904793 +0200"),
        ("2005-04-07T22:13:13", "1112904793 +0200"),
    ] {
        let repo = good_repo();
        let mut cmd = repo.farm_cmd(&repo.root, &["run", "--progress", "none"]);
        cmd.env("GIT_AUTHOR_DATE", date)
            .env("GIT_COMMITTER_DATE", date)
            .env("TZ", "XST-2");
        Run::from(cmd.output().unwrap()).expect(0);
        let dates = repo.git(&["log", "-1", "--format=%ad|%cd", "--date=raw", "main"]);
        assert_eq!(dates, format!("{at}|{at}"), "GIT_*_DATE={date}");
    }
}

#[test]
fn dash_c_with_demo_is_started_in_that_directory() {
    let repo = TestRepo::new();
    let out = repo.farm_in(
        &repo.root,
        &[
            "-C",
            repo.scratch.to_str().unwrap(),
            "demo",
            "--dir",
            "here",
            "--progress",
            "none",
        ],
    );
    out.expect(0);
    assert!(repo.scratch.join("here/src/api/users.rs").is_file());
    // -C alone never names the demo's directory: a repository there is left alone.
    let before = repo.git(&["rev-parse", "HEAD"]);
    let mut cmd = repo.farm_cmd(
        &repo.root,
        &["-C", repo.root.to_str().unwrap(), "demo", "-q"],
    );
    cmd.env("TMPDIR", &repo.scratch);
    let out = Run::from(cmd.output().unwrap());
    out.expect(0);
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""));
    assert_eq!(repo.git(&["rev-parse", "HEAD"]), before);
    assert!(repo.run_ids().is_empty());
    let missing = repo.farm(&["-C", "/nonexistent/agent-farm", "plan"]);
    missing.expect(4);
    assert!(
        missing.stderr.contains("cannot change to"),
        "{}",
        missing.stderr
    );
}

/// README's commands table names every command, and its exit-code table every code.
#[test]
fn readme_documents_every_command_and_exit_code() {
    use clap::CommandFactory;
    let readme = include_str!("../README.md");
    let cmd = agent_farm::cli::Cli::command();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let row = format!("| `agent-farm {}", sub.get_name());
        assert!(
            readme.contains(&row),
            "README lacks a row for {}",
            sub.get_name()
        );
    }
    for code in [0, 1, 2, 3, 4, 5, 6, 7, 8, 130] {
        assert!(
            readme.contains(&format!("\n| {code} |")),
            "README lacks exit code {code}"
        );
    }
}
