//! `agent-farm runs`: the recorded runs; `agent-farm runs prune`: remove old records, never
//! one whose work git still holds (see [`crate::history`]).

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::history::{self, Rule, RunSummary};

#[derive(Debug, Clone, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_long_help = "Examples:
  agent-farm runs                        # id, started, plan, status, landed, duration, cost
  agent-farm runs --json                 # the same as JSON, with a `version` field
  agent-farm runs prune --keep 10        # remove all but the 10 most recent run records
  agent-farm runs prune --older-than 30d --dry-run"
)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Action {
    /// Remove old run records, never one whose work is not merged.
    ///
    /// A run git still holds anything of (branches, refs or worktrees kept, a landing or
    /// effect half done), or that is still running, is kept, and why is said.
    Prune(PruneArgs),
}

#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("rule").required(true).args(["keep", "older_than"])))]
pub struct PruneArgs {
    /// Keep the N most recent runs; consider the others.
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    /// Consider the runs started longer ago than DURATION ("30d", "12h").
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub older_than: Option<Duration>,
    /// Say what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct RunsJson<'a> {
    version: u32,
    runs: &'a [RunSummary],
    /// Runs whose record could not be read: id and why.
    unreadable: Vec<(String, String)>,
}

#[derive(Serialize)]
struct PruneJson<'a> {
    version: u32,
    dry_run: bool,
    runs: &'a [history::Pruned],
}

pub fn run(cwd: &Path, args: Args) -> anyhow::Result<i32> {
    let info = crate::git::discover(cwd)?;
    match args.action {
        Some(Action::Prune(p)) => prune(&info, p),
        None => list(&info, args.json),
    }
}

fn list(info: &crate::git::RepoInfo, json: bool) -> anyhow::Result<i32> {
    let now = crate::events::now_ms();
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    for (id, rec) in history::runs(&info.common_dir) {
        match rec {
            Ok(rec) => rows.push(history::summarize(&rec, now, history::driver_alive(&rec))),
            Err(e) => unreadable.push((id, e)),
        }
    }
    // Oldest first; ids of runs started within one second sort by their random part.
    rows.sort_by(|a, b| (a.started_ms, &a.run_id).cmp(&(b.started_ms, &b.run_id)));
    if json {
        let out = RunsJson {
            version: history::RUNS_JSON_VERSION,
            runs: &rows,
            unreadable,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    if rows.is_empty() && unreadable.is_empty() {
        if !super::conventions::quiet() {
            eprintln!("no runs recorded in this repository yet; start one with `agent-farm run`");
        }
        return Ok(0);
    }
    print!("{}", table(&rows));
    for (id, e) in unreadable {
        println!("{id}  (record unreadable: {e})");
    }
    Ok(0)
}

/// The text table of `runs`. Pure.
pub fn table(rows: &[RunSummary]) -> String {
    let header = [
        "RUN", "STARTED", "PLAN", "STATUS", "LANDED", "DURATION", "COST",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.run_id.clone(),
                r.started.clone(),
                r.plan.clone(),
                r.status.clone(),
                match r.landed {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => "-".into(),
                },
                crate::report::fmt_ms(r.duration_ms),
                if r.cost_usd > 0.0 {
                    format!("${:.2}", r.cost_usd)
                } else {
                    "-".into()
                },
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cols.iter().zip(width).enumerate() {
            if i + 1 == cols.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn prune(info: &crate::git::RepoInfo, args: PruneArgs) -> anyhow::Result<i32> {
    super::recover_dead_runs(&info.workdir);
    let rule = match (args.keep, args.older_than) {
        (Some(n), _) => Rule::KeepNewest(n),
        (None, Some(d)) => Rule::OlderThan(d),
        // clap's group requires one of them.
        (None, None) => Rule::KeepNewest(usize::MAX),
    };
    let now = crate::events::now_ms();
    let out = history::prune(&info.workdir, &info.common_dir, rule, args.dry_run, now);
    if args.json {
        let j = PruneJson {
            version: history::RUNS_JSON_VERSION,
            dry_run: args.dry_run,
            runs: &out,
        };
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(0);
    }
    if super::conventions::quiet() && !args.dry_run {
        return Ok(0);
    }
    let (verb, done) = if args.dry_run {
        ("would remove", "would be removed")
    } else {
        ("removed", "removed")
    };
    let removed = out.iter().filter(|p| p.removed).count();
    for p in &out {
        if p.removed {
            println!("{verb} {}", p.run_id);
        } else {
            println!("kept {}: {}", p.run_id, p.reasons.join("; "));
        }
    }
    let kept = out.len() - removed;
    println!(
        "{removed} run record{} {done}, {kept} kept{}",
        if removed == 1 { "" } else { "s" },
        if kept > 0 {
            " (their work is not merged or not finished: see `agent-farm status RUN`, then `merge`, `resume` or `clean`)"
        } else {
            ""
        }
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_its_columns() {
        let row = |id: &str, landed: Option<bool>, cost: f64| RunSummary {
            run_id: id.into(),
            started_ms: 0,
            started: "2026-12-02T02:30:00Z".into(),
            plan: "farm.yaml".into(),
            status: "succeeded".into(),
            phase: crate::record::Phase::Finished,
            landed,
            exit_code: Some(0),
            duration_ms: 61_000,
            cost_usd: cost,
            domains: 1,
        };
        let t = table(&[row("r1", Some(true), 1.5), row("run-two", None, 0.0)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("RUN      STARTED"), "{t}");
        assert!(
            lines[1].contains("yes") && lines[1].ends_with("$1.50"),
            "{t}"
        );
        assert!(lines[2].contains(" - ") && lines[2].ends_with('-'), "{t}");
        let col = |l: &str| l.find("2026").unwrap();
        assert_eq!(col(lines[1]), col(lines[2]));
    }
}
