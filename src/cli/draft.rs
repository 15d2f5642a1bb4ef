//! `agent-farm draft "GOAL"`: measure the repository, send scouts, ask a planner for a split,
//! check and fix it with agent-farm's own rules, write a commented `farm.yaml`.
//!
//! The agents run read-only (claude: Edit, Write, Bash and NotebookEdit disallowed) in the
//! repository's root, under the supervisor, their output logged under
//! `<git-dir>/agent-farm/drafts/<time>/`. Everything else is `crate::draft`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::coupling;
use crate::draft::{self, Facts, Proposal, Repo, ScoutReport, Scouted, prompts, proposal, yaml};
use crate::error::{DraftError, PreflightError};
use crate::plan::{AgentConfig, Preset};
use crate::runner::{agent, process};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// What the farm should achieve, in a sentence or a paragraph.
    pub goal: String,
    /// Where to write the plan (default: farm.yaml in the repository root).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// At most N domains.
    #[arg(long, value_name = "N")]
    pub domains: Option<usize>,
    /// Send K read-only scout agents first, in parallel, one per area of the repository.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub scouts: usize,
    /// Agent preset for the scouts, the planner and the written plan (claude or sim).
    #[arg(long, value_name = "PRESET", default_value = "claude")]
    pub agent: Preset,
    /// Program to run for the preset instead of its default (also written into the plan).
    #[arg(long, value_name = "PATH")]
    pub agent_program: Option<String>,
    /// Model for the claude preset (also written into the plan).
    #[arg(long)]
    pub model: Option<String>,
    /// Time limit for each scout and planner run.
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    pub timeout: humantime::Duration,
    /// Overwrite an existing plan file.
    #[arg(long)]
    pub force: bool,
}

/// What claude scouts and planners may not use: they read, they never change anything.
pub const READ_ONLY_DENY: &[&str] = &["Edit", "Write", "Bash", "NotebookEdit"];

fn agent_config(args: &Args) -> AgentConfig {
    AgentConfig {
        preset: args.agent,
        program: args.agent_program.clone(),
        command: None,
        args: Vec::new(),
        env: Default::default(),
        timeout: *args.timeout,
        grace: Duration::from_secs(5),
        idle_timeout: None,
        retries: 0,
        retry_backoff: Duration::from_secs(1),
        rate_limit_backoff: Duration::from_secs(1),
        model: args.model.clone().filter(|_| args.agent == Preset::Claude),
        preamble: Some(false),
        permission_mode: "default".into(),
        allowed_tools: Vec::new(),
        disallowed_tools: READ_ONLY_DENY.iter().map(|s| s.to_string()).collect(),
        max_budget_usd: None,
    }
}

/// Whether the claude CLI at `program` takes `--json-schema` (older releases do not): from its
/// `--help`, given 20 s.
async fn takes_json_schema(program: &str, cwd: &Path) -> bool {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg("--help")
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(20), cmd.output()).await {
        Ok(Ok(out)) => String::from_utf8_lossy(&out.stdout).contains("--json-schema"),
        _ => false,
    }
}

/// One scout's or planner's run.
struct Job {
    role: &'static str,
    area: Option<String>,
    prompt: String,
    /// The JSON Schema the answer must fit (claude `--json-schema`), when the CLI takes one.
    schema: Option<Value>,
    log: PathBuf,
}

/// The argv of a read-only run: the preset's, and for claude one JSON result (held to `schema`
/// by `--json-schema`) instead of the event stream.
fn argv(cfg: &AgentConfig, job: &Job, cwd: &Path) -> Vec<String> {
    let mut cfg = cfg.clone();
    if cfg.preset == Preset::Claude {
        cfg.args = vec!["--no-session-persistence".into()];
        if let Some(schema) = &job.schema {
            cfg.args
                .extend(["--json-schema".into(), schema.to_string()]);
        }
    }
    let vars = agent::Vars {
        prompt: &job.prompt,
        domain: job.role,
        worktree: cwd,
        run_id: "draft",
        branch: "",
    };
    let mut argv = agent::argv(&cfg, &agent::self_exe(), &vars);
    if cfg.preset == Preset::Claude {
        if let Some(i) = argv.iter().position(|a| a == "--output-format") {
            argv[i + 1] = "json".into();
        }
        argv.retain(|a| a != "--verbose");
    }
    argv
}

/// Run one job to its end; its stdout, or why it has none worth reading.
async fn run_job(
    cfg: &AgentConfig,
    job: &Job,
    cwd: &Path,
    mut cancel: process::CancelRx,
) -> Result<String, String> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(256);
    let collect = tokio::spawn(async move {
        let mut out = String::new();
        while let Some(l) = rx.recv().await {
            out.push_str(&l);
            out.push('\n');
        }
        out
    });
    let mut env = vec![("AGENT_FARM_DRAFT_ROLE".to_string(), job.role.to_string())];
    if let Some(a) = &job.area {
        env.push(("AGENT_FARM_DRAFT_AREA".into(), a.replace('/', "_")));
    }
    env.extend(cfg.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let spec = process::ProcSpec {
        argv: argv(cfg, job, cwd),
        cwd: cwd.to_owned(),
        env,
        log: job.log.clone(),
        timeout: cfg.timeout,
        grace: cfg.grace,
        idle_timeout: None,
        stdout_lines: Some(tx),
        supervise: Some(process::Supervision {
            exe: agent::self_exe(),
            guard: None,
            reports: None,
        }),
    };
    let result = process::run(&spec, |_| {}, &mut cancel).await;
    drop(spec);
    let stdout = collect.await.unwrap_or_default();
    match result.end {
        crate::vocab::AttemptEnd::Exited { code: 0 } => Ok(stdout),
        crate::vocab::AttemptEnd::Exited { code } => {
            let why = proposal::answer::<Value>(&stdout)
                .err()
                .filter(|e| e.starts_with("the agent reported"))
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            Err(format!("exited with code {code}{why}"))
        }
        crate::vocab::AttemptEnd::TimedOut => Err(format!(
            "timed out after {}",
            humantime::format_duration(cfg.timeout)
        )),
        crate::vocab::AttemptEnd::Cancelled { reason } => Err(format!("stopped: {reason}")),
        other => Err(format!("ended: {other:?}")),
    }
}

/// A scout's report from its output: the asked JSON, else its text as the summary and the
/// tracked files it names.
fn scout_report(stdout: &str, files: &[String]) -> ScoutReport {
    if let Ok(r) = proposal::answer::<ScoutReport>(stdout)
        && !r.summary.trim().is_empty()
    {
        return r;
    }
    let text = proposal::answer_text(stdout);
    let named = files
        .iter()
        .filter(|f| f.contains('/') && text.contains(f.as_str()))
        .cloned()
        .collect();
    ScoutReport {
        summary: text.chars().take(4000).collect(),
        files: named,
    }
}

/// How the agents are run: their configuration, where, whether claude takes a schema, and
/// the signal that stops them.
struct Agents {
    cfg: AgentConfig,
    root: PathBuf,
    schemas: bool,
    cancel: process::CancelRx,
}

async fn planner(
    agents: &Agents,
    role: &'static str,
    prompt: String,
    log: PathBuf,
) -> Result<Proposal, DraftError> {
    let (cfg, cwd, cancel) = (&agents.cfg, agents.root.as_path(), &agents.cancel);
    let job = Job {
        role,
        area: None,
        prompt,
        schema: agents.schemas.then(proposal::schema),
        log: log.clone(),
    };
    let fail = |message: String| DraftError::Agent {
        role: role.to_string(),
        message,
        log: log.clone(),
    };
    let stdout = run_job(cfg, &job, cwd, cancel.clone()).await;
    interrupted(cancel)?;
    let stdout = stdout.map_err(fail)?;
    proposal::answer::<Proposal>(&stdout).map_err(|e| fail(format!("no plan in its answer: {e}")))
}

/// Stop the agents on SIGINT, SIGTERM or SIGHUP (at once on the second); call inside `rt`.
fn listen_for_signals(tx: tokio::sync::watch::Sender<Option<process::Cancel>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::warn!("cannot listen for signals");
        return;
    };
    tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP",
            };
            seen += 1;
            let _ = tx.send(Some(process::Cancel {
                reason: name.to_string(),
                immediate: seen > 1,
                interrupt: true,
            }));
        }
    });
}

/// [`DraftError::Interrupted`] once a signal asked to stop.
fn interrupted(cancel: &process::CancelRx) -> Result<(), DraftError> {
    match cancel.borrow().as_ref() {
        Some(c) => Err(DraftError::Interrupted {
            signal: c.reason.clone(),
        }),
        None => Ok(()),
    }
}

fn header(goal: &str, facts: &Facts, d: &draft::Draft, revised: Option<&str>) -> String {
    let mut h = format!(
        "Drafted by `agent-farm draft` for the goal:\n  {}\n\nMeasured at base: {} file(s); {} coupling edge(s) shown to the planner.\n",
        goal.trim().replace('\n', "\n  "),
        facts.files,
        facts.edges.len()
    );
    if let Some(r) = revised {
        h.push_str(&format!("{r}\n"));
    }
    if let Some(reason) = &d.single {
        h.push_str(&format!("\nOne domain, not a farm: {reason}.\n"));
    }
    if !d.changes.is_empty() {
        h.push_str("\nChanged by agent-farm's checks:\n");
        for c in &d.changes {
            h.push_str(&format!("- {c}\n"));
        }
    }
    if !d.remaining.is_empty() {
        h.push_str("\nStill to look at:\n");
        for p in &d.remaining {
            h.push_str(&format!("- {}\n", p.message));
        }
    }
    h
}

pub fn run(cwd: &Path, args: Args) -> anyhow::Result<i32> {
    let info = crate::git::discover(cwd)?;
    let out_path = match &args.output {
        Some(f) if f.is_absolute() => f.clone(),
        Some(f) => cwd.join(f),
        None => crate::plan::default_path(&info.workdir),
    };
    if out_path.exists() && !args.force {
        anyhow::bail!(PreflightError::PlanExists { path: out_path });
    }
    if args.agent == Preset::Custom {
        anyhow::bail!(PreflightError::CustomAgentNeedsCommand);
    }
    let cfg = agent_config(&args);
    let program = agent::program(&cfg, &agent::self_exe());
    if process::resolve_program(&program, &info.workdir).is_none() {
        anyhow::bail!(PreflightError::AgentNotFound { program });
    }
    let repo = crate::git::open(&info.workdir)?;
    let commit = crate::git::resolve_commit(&repo, "HEAD").ok_or(PreflightError::NoBase)?;
    // This process only reads git from here on (see `plan --coupling`).
    git2::opts::strict_hash_verification(false);
    let analysis =
        coupling::analyze(&repo, commit, &coupling::Options::default()).map_err(|e| {
            DraftError::Measure {
                message: e.to_string(),
            }
        })?;
    let files: Vec<String> = analysis.files.paths().to_vec();
    let facts = Facts::of(&analysis);
    println!(
        "measured {} file(s) at {} ({:.2} s): {} import(s), {} co-changed pair(s) in {} commit(s)",
        facts.files,
        &commit.to_string()[..7],
        analysis.timings.total,
        analysis.stats.imports,
        analysis.stats.cochanges,
        analysis.history.walked
    );
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let logs = info
        .common_dir
        .join("agent-farm/drafts")
        .join(stamp.to_string());
    std::fs::create_dir_all(&logs)?;
    let root = info.workdir.clone();
    let goal = args.goal.trim().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (cancel_tx, cancel) = tokio::sync::watch::channel(None);
    {
        let _in_runtime = rt.enter();
        listen_for_signals(cancel_tx);
    }

    let schemas = cfg.preset == Preset::Claude && rt.block_on(takes_json_schema(&program, &root));
    if cfg.preset == Preset::Claude && !schemas {
        println!(
            "note: {program} takes no --json-schema; reading the last JSON object of its answers"
        );
    }
    let agents = Agents {
        cfg: cfg.clone(),
        root: root.clone(),
        schemas,
        cancel: cancel.clone(),
    };
    let areas = prompts::areas(&facts, args.scouts);
    if !areas.is_empty() {
        println!(
            "sending {} scout(s): {}",
            areas.len(),
            areas
                .iter()
                .map(|(a, n)| format!("{a} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let scouts: Vec<Scouted> = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (i, (area, n)) in areas.iter().enumerate() {
            let job = Job {
                role: "scout",
                area: Some(area.clone()),
                prompt: prompts::scout_prompt(&goal, area, *n, &facts),
                schema: schemas.then(proposal::scout_schema),
                log: logs.join(format!("scout-{}.log", i + 1)),
            };
            let (cfg, root, files) = (cfg.clone(), root.clone(), files.clone());
            let cancel = cancel.clone();
            set.spawn(async move {
                let out = run_job(&cfg, &job, &root, cancel).await;
                let area = job.area.unwrap_or_default();
                match out {
                    Ok(stdout) => (
                        i,
                        Scouted {
                            area,
                            report: Some(scout_report(&stdout, &files)),
                            error: None,
                        },
                    ),
                    Err(e) => (
                        i,
                        Scouted {
                            area,
                            report: None,
                            error: Some(e),
                        },
                    ),
                }
            });
        }
        let mut done: Vec<(usize, Scouted)> = set.join_all().await;
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, s)| s).collect()
    });
    interrupted(&cancel)?;
    for s in &scouts {
        match (&s.report, &s.error) {
            (Some(r), _) => println!("scout {}: {} file(s) named", s.area, r.files.len()),
            (None, e) => println!(
                "warning: scout {} found nothing: {}",
                s.area,
                e.as_deref().unwrap_or("no answer")
            ),
        }
    }

    println!("asking the planner");
    let mut proposal = rt.block_on(planner(
        &agents,
        "planner",
        prompts::planner_prompt(&goal, &facts, &scouts, args.domains),
        logs.join("planner.log"),
    ))?;
    let proposed = proposal.domains.len();
    let repo_view = Repo {
        files: &files,
        graph: &analysis.graph,
    };
    let mut touched = draft::touched(&proposal, &scouts, &files);
    let checked = draft::check::check(&proposal, &touched, repo_view, args.domains);
    let mut revised = None;
    if !checked.ok() {
        println!(
            "the proposal ({proposed} domain(s)) failed {} check(s); asking the planner once to fix them:",
            checked.problems.len()
        );
        for p in &checked.problems {
            println!("  - {}", p.message);
        }
        match rt.block_on(planner(
            &agents,
            "repair",
            prompts::repair_prompt(&goal, &facts, &proposal, &checked.problems),
            logs.join("repair.log"),
        )) {
            Ok(p) => {
                proposal = p;
                touched = draft::touched(&proposal, &scouts, &files);
                revised = Some(format!(
                    "The planner revised its first proposal after {} failed check(s).",
                    checked.problems.len()
                ));
            }
            Err(e) => {
                println!(
                    "warning: the planner's revision is not usable ({e}); fixing its first proposal"
                );
                revised = Some(format!("The planner's revision was not usable: {e}"));
            }
        }
    }
    let d = draft::finish(proposal, &goal, &touched, repo_view, args.domains)?;
    let spec = yaml::AgentSpec {
        preset: args.agent,
        program: args.agent_program.clone(),
        model: cfg.model.clone(),
    };
    let text = yaml::render(
        &d.proposal,
        &spec,
        &header(&goal, &facts, &d, revised.as_deref()),
    );
    // What is written must be what `agent-farm plan` accepts.
    let base_dir = out_path.parent().map(Path::to_path_buf).unwrap_or_default();
    crate::plan::parse(&out_path, &text, |p| {
        std::fs::read_to_string(base_dir.join(p)).map_err(|e| e.to_string())
    })?;
    if let Some(dir) = out_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out_path, &text)?;

    for c in &d.changes {
        println!("changed: {c}");
    }
    for p in &d.remaining {
        println!("warning: {}", p.message);
    }
    for w in &d.warnings {
        println!("warning: {w}");
    }
    if let Some(reason) = &d.single {
        println!("advice: one agent, not a farm: {reason}");
    }
    let s = draft::schedule_of(&d.plan, &files);
    println!(
        "\nwrote {} ({} domain(s); agent-farm's output in {})",
        out_path.display(),
        d.plan.domains.len(),
        logs.display()
    );
    println!("waves:");
    for (i, w) in s.waves.iter().enumerate() {
        println!("  {}: {}", i + 1, w.join(", "));
    }
    println!("critical path: {}", s.critical_path.join(" → "));
    println!(
        "expected parallelism: {:.1}× (the files owned at base over the critical path's; {} pair(s) of domains can run at the same time)",
        s.parallelism, s.independent_pairs
    );
    if d.cut.edges.is_empty() {
        println!("coupling cut by the split: none between domains that run at the same time");
    } else {
        let total: f64 = d.cut.pairs.iter().map(|p| p.weight).sum();
        println!(
            "coupling cut by the split: {} edge(s), weight {total:.2}, between domains that run at the same time:",
            d.cut.edges.len()
        );
        for e in d.cut.edges.iter().take(5) {
            println!("  {}", e.describe());
        }
    }
    println!("next: read it, then `agent-farm plan --coupling` and `agent-farm run`");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(agent: Preset) -> Args {
        Args {
            goal: "g".into(),
            output: None,
            domains: None,
            scouts: 0,
            agent,
            agent_program: Some("/opt/claude".into()),
            model: Some("opus".into()),
            timeout: "1m".parse().unwrap(),
            force: false,
        }
    }

    #[test]
    fn claude_runs_read_only_with_one_json_result() {
        let cfg = agent_config(&args(Preset::Claude));
        let job = Job {
            role: "planner",
            area: None,
            prompt: "plan it".into(),
            schema: Some(serde_json::json!({"type": "object"})),
            log: PathBuf::from("x.log"),
        };
        let a = argv(&cfg, &job, Path::new("/repo"));
        assert_eq!(
            a,
            [
                "/opt/claude",
                "-p",
                "plan it",
                "--output-format",
                "json",
                "--permission-mode",
                "default",
                "--model",
                "opus",
                "--disallowedTools",
                "Edit,Write,Bash,NotebookEdit",
                "--no-session-persistence",
                "--json-schema",
                "{\"type\":\"object\"}"
            ]
        );
        let no_schema = Job {
            schema: None,
            ..job
        };
        assert!(!argv(&cfg, &no_schema, Path::new("/repo")).contains(&"--json-schema".to_string()));
        let sim = agent_config(&args(Preset::Sim));
        assert_eq!(sim.model, None);
        let a = argv(&sim, &no_schema, Path::new("/repo"));
        assert_eq!(&a[1..], ["sim-agent", "plan it"]);
    }

    #[test]
    fn a_scout_answering_prose_names_the_files_it_mentions() {
        let files = vec!["src/api/routes.rs".to_string(), "README.md".into()];
        let r = scout_report("The routes live in src/api/routes.rs.\n", &files);
        assert_eq!(r.files, ["src/api/routes.rs"]);
        assert!(r.summary.starts_with("The routes"));
    }
}
