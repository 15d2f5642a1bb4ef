//! Plans: parsing `farm.yaml`, validating it, and the pure scheduling rules over it.
//!
//! Nothing here touches git or spawns processes; the only I/O is reading the plan file and
//! the prompt files it names.

pub mod model;
pub mod schedule;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub use model::*;

use crate::error::{PlanError, Problem};

/// File name looked up in the repository root when no plan is given.
pub const DEFAULT_PLAN_FILE: &str = "farm.yaml";

/// Claude Code's `--permission-mode` values.
pub const PERMISSION_MODES: &[&str] = &[
    "default",
    "acceptEdits",
    "bypassPermissions",
    "dontAsk",
    "plan",
    "auto",
];

/// Placeholders accepted in agent argv templates.
pub const PLACEHOLDERS: &[&str] = &["prompt", "domain", "worktree", "run_id", "branch"];

impl crate::ownership::Claim for Domain {
    fn name(&self) -> &str {
        &self.name
    }
    fn owns(&self) -> &[String] {
        &self.owns
    }
}

impl crate::ownership::Rules for Plan {
    type Domain = Domain;
    fn domains(&self) -> &[Domain] {
        &self.domains
    }
    fn shared(&self) -> &[String] {
        &self.ownership.shared
    }
    fn ignore(&self) -> &[String] {
        &self.ownership.ignore
    }
}

/// Two domains own the same paths, provably from their patterns: reported at the later one.
fn overlap_problem(a: &Domain, b: &Domain, example: &str) -> Problem {
    Problem {
        line: b.line,
        column: None,
        domain: Some(b.name.clone()),
        message: format!(
            "ownership overlaps with domain `{}`: both own paths like `{example}` ({} vs {})",
            a.name,
            a.owns.join(", "),
            b.owns.join(", ")
        ),
    }
}

/// Read, parse and validate a plan file.
pub fn load(path: &Path) -> Result<Plan, PlanError> {
    let text = std::fs::read_to_string(path).map_err(|error| PlanError::Read {
        path: path.to_owned(),
        error,
    })?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(path, &text, |p| {
        let full = base_dir.join(p);
        std::fs::read_to_string(&full).map_err(|e| format!("cannot read {}: {e}", full.display()))
    })
}

/// Parse and validate plan text. `read_prompt` resolves `prompt_file` entries.
pub fn parse(
    path: &Path,
    text: &str,
    read_prompt: impl Fn(&Path) -> Result<String, String>,
) -> Result<Plan, PlanError> {
    let invalid = |problems| PlanError::Invalid {
        path: path.to_owned(),
        problems,
    };
    let raw: RawPlan = match serde_yaml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let loc = e.location();
            let (domain, message) = attribute_to_domain(text, yaml_message(&e));
            return Err(invalid(vec![Problem {
                line: loc.as_ref().map(|l| l.line()),
                column: loc.as_ref().map(|l| l.column()),
                domain,
                message,
            }]));
        }
    };
    let lines = domain_lines(text, raw.domains.len());
    validate(path, raw, &lines, read_prompt).map_err(invalid)
}

/// serde_yaml appends " at line L column C" to its messages; we print the location ourselves.
fn yaml_message(e: &serde_yaml::Error) -> String {
    let msg = e.to_string();
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}

/// Turn serde's `domains[3].timeout: …` into domain `name` and `timeout: …` when the name can be
/// read from the document.
fn attribute_to_domain(text: &str, message: String) -> (Option<String>, String) {
    let Some(rest) = message.strip_prefix("domains[") else {
        return (None, message);
    };
    let Some((index, tail)) = rest.split_once(']') else {
        return (None, message);
    };
    let Ok(index) = index.parse::<usize>() else {
        return (None, message);
    };
    let name = serde_yaml::from_str::<serde_yaml::Value>(text)
        .ok()
        .and_then(|v| {
            v.get("domains")?
                .get(index)?
                .get("name")?
                .as_str()
                .map(str::to_owned)
        });
    match name {
        Some(n) => (
            Some(n),
            tail.trim_start_matches(['.', ':']).trim_start().to_string(),
        ),
        None => (None, message),
    }
}

/// Best-effort 1-based line of each domain's `name:` key, in declaration order.
fn domain_lines(text: &str, n: usize) -> Vec<Option<usize>> {
    let mut out = Vec::with_capacity(n);
    let mut in_domains = false;
    for (i, line) in text.lines().enumerate() {
        if !line.starts_with(' ') && !line.starts_with('-') && !line.trim().is_empty() {
            in_domains = line.trim_start().starts_with("domains:");
            continue;
        }
        if in_domains {
            let t = line.trim_start().trim_start_matches("- ").trim_start();
            if t.starts_with("name:") {
                out.push(Some(i + 1));
            }
        }
    }
    out.resize(n, None);
    out
}

/// `a/./b//c` → `a/b/c`; `None` for an absolute path, one with `..`, or an empty one.
pub fn normalize_relative(p: &str) -> Option<String> {
    if p.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Why a domain name is unsafe, if it is.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() {
        return Err("domain name is empty".into());
    }
    if name.len() > 64 {
        return Err("domain name is longer than 64 characters".into());
    }
    if let Some(c) = name.chars().find(|c| !ok_char(*c)) {
        return Err(format!(
            "unsafe domain name: character {c:?} is not allowed (use letters, digits, `-`, `_` and `.`)"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("unsafe domain name: it must start with a letter or digit".into());
    }
    if name.contains("..") || name.ends_with('.') || name.ends_with(".lock") {
        return Err(
            "unsafe domain name: `..`, a trailing `.` and a `.lock` suffix are not allowed in branch names"
                .into(),
        );
    }
    if name == "integration" {
        return Err("`integration` is reserved for the run's integration branch".into());
    }
    Ok(())
}

fn check_placeholders(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let key = &after[..close];
        if !key.is_empty()
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !PLACEHOLDERS.contains(&key)
        {
            return Err(format!(
                "unknown placeholder `{{{key}}}` in `{template}` (known: {})",
                PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

fn validate(
    path: &Path,
    raw: RawPlan,
    lines: &[Option<usize>],
    read_prompt: impl Fn(&Path) -> Result<String, String>,
) -> Result<Plan, Vec<Problem>> {
    let mut problems = Vec::new();
    let top = |message: String| Problem {
        line: None,
        column: None,
        domain: None,
        message,
    };
    if raw.version != 1 {
        problems.push(top(format!(
            "unsupported plan version {} (this agent-farm reads version 1)",
            raw.version
        )));
    }
    if raw.domains.is_empty() {
        problems.push(top(
            "`domains` is empty: a plan needs at least one domain".into()
        ));
    }
    if raw.max_parallel == Some(0) {
        problems.push(top("`max_parallel` must be at least 1".into()));
    }
    let agent = &raw.agent;
    match (agent.preset, &agent.command) {
        (Preset::Custom, None) => problems.push(top(
            "`agent.preset: custom` needs `agent.command` (an argv list, e.g. [\"my-agent\", \"{prompt}\"])"
                .into(),
        )),
        (Preset::Custom, Some(c)) if c.is_empty() => {
            problems.push(top("`agent.command` is empty".into()))
        }
        (p, Some(_)) if p != Preset::Custom => problems.push(top(format!(
            "`agent.command` is only used with `preset: custom` (preset is `{p}`; use `agent.program` or `agent.args` to adjust a preset)"
        ))),
        _ => {}
    }
    for t in agent
        .command
        .iter()
        .flatten()
        .chain(agent.args.iter())
        .chain(agent.env.values())
    {
        if let Err(m) = check_placeholders(t) {
            problems.push(top(format!("agent: {m}")));
        }
    }
    for (label, d) in [
        ("agent.timeout", agent.timeout),
        ("agent.grace", agent.grace),
    ] {
        if d.is_some_and(|d| d.0.is_zero()) {
            problems.push(top(format!("`{label}` must be greater than zero")));
        }
    }
    if raw.verify.as_ref().is_some_and(CommandSpec::is_empty) {
        problems.push(top("`verify` is empty".into()));
    }
    if agent.preset != Preset::Claude {
        for (key, set) in [
            ("permission_mode", agent.permission_mode.is_some()),
            ("allowed_tools", !agent.allowed_tools.is_empty()),
            ("disallowed_tools", !agent.disallowed_tools.is_empty()),
            ("max_budget_usd", agent.max_budget_usd.is_some()),
        ] {
            if set {
                problems.push(top(format!(
                    "`agent.{key}` is a claude preset option (preset is `{}`)",
                    agent.preset
                )));
            }
        }
    }
    if agent.model.is_some() && matches!(agent.preset, Preset::Sim | Preset::Custom) {
        problems.push(top(format!(
            "`agent.model` has no effect with preset `{}`; put the model in `agent.command`",
            agent.preset
        )));
    }
    if agent.max_budget_usd.is_some_and(|b| b.is_nan() || b <= 0.0) {
        problems.push(top(
            "`agent.max_budget_usd` must be greater than zero".into()
        ));
    }
    if let Some(m) = &agent.permission_mode
        && !PERMISSION_MODES.contains(&m.as_str())
    {
        problems.push(top(format!(
            "unknown `agent.permission_mode` `{m}` (known: {})",
            PERMISSION_MODES.join(", ")
        )));
    }

    let mut copy = Vec::new();
    for c in &raw.prepare.copy {
        match normalize_relative(c) {
            Some(n) => copy.push(n),
            None => problems.push(top(format!(
                "`prepare.copy` entry `{c}` must be a path inside the repository, relative to its root (no `..`, not absolute)"
            ))),
        }
    }
    for (key, globs) in [
        ("ownership.shared", &raw.ownership.shared),
        ("ownership.ignore", &raw.ownership.ignore),
    ] {
        for g in globs {
            if let Err(e) = crate::ownership::compile_glob(g) {
                problems.push(top(format!("invalid glob in `{key}`: {e}")));
            }
        }
    }
    let names: BTreeSet<&str> = raw.domains.iter().map(|d| d.name.as_str()).collect();
    let mut seen: BTreeMap<&str, Option<usize>> = BTreeMap::new();
    let mut domains = Vec::with_capacity(raw.domains.len());
    for (i, d) in raw.domains.iter().enumerate() {
        let line = lines.get(i).copied().flatten();
        let mut problem = |message: String| {
            problems.push(Problem {
                line,
                column: None,
                domain: Some(d.name.clone()),
                message,
            })
        };
        if let Err(m) = check_name(&d.name) {
            problem(m);
        }
        if let Some(first) = seen.insert(&d.name, line) {
            problem(match first {
                Some(l) => format!("duplicate domain name (first declared at line {l})"),
                None => "duplicate domain name".to_string(),
            });
        }
        let prompt = match (&d.prompt, &d.prompt_file) {
            (Some(_), Some(_)) => {
                problem("give either `prompt` or `prompt_file`, not both".into());
                String::new()
            }
            (None, None) => {
                problem("missing `prompt` (or `prompt_file`)".into());
                String::new()
            }
            (Some(p), None) => {
                if p.trim().is_empty() {
                    problem("`prompt` is empty".into());
                }
                p.clone()
            }
            (None, Some(f)) => match read_prompt(f) {
                Ok(p) if p.trim().is_empty() => {
                    problem(format!("prompt file {} is empty", f.display()));
                    p
                }
                Ok(p) => p,
                Err(e) => {
                    problem(format!("prompt file: {e}"));
                    String::new()
                }
            },
        };
        if d.owns.is_empty() {
            problem("`owns` is empty: list the path globs this domain may change".into());
        }
        for g in &d.owns {
            if let Err(e) = crate::ownership::compile_glob(g) {
                problem(format!("invalid glob in `owns`: {e}"));
            }
        }
        for dep in &d.depends_on {
            if dep == &d.name {
                problem("depends on itself".into());
            } else if !names.contains(dep.as_str()) {
                problem(format!("depends on unknown domain `{dep}`"));
            }
        }
        if d.timeout.is_some_and(|t| t.0.is_zero()) {
            problem("`timeout` must be greater than zero".into());
        }
        if d.verify.as_ref().is_some_and(CommandSpec::is_empty) {
            problem("`verify` is empty".into());
        }
        domains.push(Domain {
            name: d.name.clone(),
            prompt,
            prompt_file: d.prompt_file.clone(),
            owns: d.owns.clone(),
            depends_on: d.depends_on.clone(),
            priority: d.priority,
            timeout: d.timeout.map(|t| t.0),
            verify: d.verify.clone(),
            setup: d.setup.clone(),
            line,
        });
    }
    if let Some(cycle) = schedule::find_cycle(&domains) {
        let first = cycle[0].clone();
        let line = domains
            .iter()
            .find(|d| d.name == first)
            .and_then(|d| d.line);
        problems.push(Problem {
            line,
            column: None,
            domain: Some(first),
            message: format!("dependency cycle: {}", cycle.join(" → ")),
        });
    }
    problems.extend(
        crate::ownership::pattern_overlaps(&domains)
            .into_iter()
            .map(|o| overlap_problem(&domains[o.first], &domains[o.second], &o.example)),
    );
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Plan {
        source: path.to_owned(),
        base: raw.base,
        into: raw.into,
        max_parallel: raw.max_parallel.unwrap_or(DEFAULT_MAX_PARALLEL),
        worktree_root: raw.worktree_root,
        agent: AgentConfig {
            preset: raw.agent.preset,
            program: raw.agent.program,
            command: raw.agent.command,
            args: raw.agent.args,
            env: raw.agent.env,
            timeout: raw.agent.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0),
            grace: raw.agent.grace.map_or(DEFAULT_GRACE, |d| d.0),
            idle_timeout: raw.agent.idle_timeout.map(|d| d.0),
            retries: raw.agent.retries.unwrap_or(0),
            retry_backoff: raw
                .agent
                .retry_backoff
                .map_or(DEFAULT_RETRY_BACKOFF, |d| d.0),
            rate_limit_backoff: raw
                .agent
                .rate_limit_backoff
                .map_or(DEFAULT_RATE_LIMIT_BACKOFF, |d| d.0),
            model: raw.agent.model,
            preamble: raw.agent.preamble,
            permission_mode: raw
                .agent
                .permission_mode
                .unwrap_or_else(|| DEFAULT_PERMISSION_MODE.to_string()),
            allowed_tools: raw.agent.allowed_tools,
            disallowed_tools: raw.agent.disallowed_tools,
            max_budget_usd: raw.agent.max_budget_usd,
        },
        copy,
        setup: raw.prepare.setup,
        ownership: OwnershipConfig {
            shared: raw.ownership.shared,
            ignore: raw.ownership.ignore,
            policy: raw.ownership.policy.unwrap_or_default(),
            stop_on_violation: raw.ownership.stop_on_violation.unwrap_or(false),
            guard: raw.ownership.guard.unwrap_or(true),
        },
        verify: raw.verify,
        domains,
    })
}

/// Where to look for the plan when none is given.
pub fn default_path(repo_root: &Path) -> PathBuf {
    repo_root.join(DEFAULT_PLAN_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Plan, PlanError> {
        parse(Path::new("farm.yaml"), text, |p| {
            if p == Path::new("prompts/a.md") {
                Ok("from file".into())
            } else {
                Err(format!("cannot read {}: not found", p.display()))
            }
        })
    }

    fn problems(text: &str) -> Vec<Problem> {
        match parse_str(text) {
            Err(PlanError::Invalid { problems, .. }) => problems,
            other => panic!("expected invalid plan, got {other:?}"),
        }
    }

    const OK: &str = "version: 1
domains:
  - name: api
    prompt: do the api
    owns: [\"src/api/**\"]
  - name: ui
    prompt_file: prompts/a.md
    owns: [\"src/ui/**\"]
    depends_on: [api]
    priority: 3
    timeout: 20m
";

    #[test]
    fn parses_a_valid_plan_with_defaults() {
        let plan = parse_str(OK).unwrap();
        assert_eq!(plan.max_parallel, DEFAULT_MAX_PARALLEL);
        assert_eq!(plan.agent.preset, Preset::Claude);
        assert_eq!(plan.domains[1].prompt, "from file");
        assert_eq!(
            plan.domains[1].timeout,
            Some(std::time::Duration::from_secs(1200))
        );
        assert_eq!(plan.domains[0].line, Some(3));
        assert_eq!(plan.domains[1].line, Some(6));
    }

    #[test]
    fn unknown_key_is_located() {
        let p = problems(
            "version: 1\ndomains:\n  - name: a\n    prompt: x\n    owns: [a]\n    colour: red\n",
        );
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].line, Some(6));
        assert!(
            p[0].message.contains("unknown field `colour`"),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn malformed_yaml_is_located() {
        let p = problems("version: 1\ndomains:\n  - name: a\n   prompt: [x\n");
        assert!(p[0].line.is_some());
    }

    #[test]
    fn missing_field_is_reported() {
        let p = problems("version: 1\n");
        assert!(
            p[0].message.contains("missing field `domains`"),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn semantic_problems_name_the_domain_and_line() {
        let p = problems(
            "version: 1\ndomains:\n  - name: ../x\n    prompt: a\n    owns: [a/**]\n  - name: b\n    owns: [b/**]\n    depends_on: [zzz]\n  - name: b\n    prompt: q\n    owns: [c/**]\n",
        );
        let text: Vec<String> = p
            .iter()
            .map(|p| format!("{:?} {:?} {}", p.line, p.domain, p.message))
            .collect();
        assert!(
            text.iter()
                .any(|t| t.contains("Some(3) Some(\"../x\") unsafe domain name")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("Some(6) Some(\"b\") missing `prompt`")),
            "{text:#?}"
        );
        assert!(
            text.iter().any(|t| t.contains("unknown domain `zzz`")),
            "{text:#?}"
        );
        assert!(
            text.iter().any(|t| t
                .contains("Some(9) Some(\"b\") duplicate domain name (first declared at line 6)")),
            "{text:#?}"
        );
    }

    #[test]
    fn copy_paths_are_normalized_and_confined() {
        assert_eq!(normalize_relative("./.env"), Some(".env".into()));
        assert_eq!(normalize_relative("a//b/./c"), Some("a/b/c".into()));
        for bad in ["/etc/passwd", "../x", "a/../../x", "", "."] {
            assert_eq!(normalize_relative(bad), None, "{bad}");
        }
        let p = problems(
            "version: 1\nprepare:\n  copy: [/tmp/x, ../y]\ndomains:\n  - name: a\n    prompt: a\n    owns: [a/**]\n",
        );
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn names() {
        for bad in [
            "a b",
            "../x",
            "-x",
            "x.lock",
            "a..b",
            "",
            "integration",
            "a/b",
            "ü",
        ] {
            assert!(check_name(bad).is_err(), "{bad} should be unsafe");
        }
        for good in ["api", "ui-2", "db_migrations", "v1.2"] {
            assert!(check_name(good).is_ok(), "{good} should be safe");
        }
    }

    #[test]
    fn cycle_is_reported_with_its_path() {
        let p = problems(
            "version: 1\ndomains:\n  - name: a\n    prompt: a\n    owns: [a/**]\n    depends_on: [c]\n  - name: b\n    prompt: b\n    owns: [b/**]\n    depends_on: [a]\n  - name: c\n    prompt: c\n    owns: [c/**]\n    depends_on: [b]\n",
        );
        assert_eq!(p.len(), 1);
        assert!(
            p[0].message.starts_with("dependency cycle: a → "),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn placeholders_are_checked() {
        assert!(check_placeholders("{prompt} --x {domain}").is_ok());
        assert!(check_placeholders("{json: 1}").is_ok());
        assert!(check_placeholders("{promt}").is_err());
    }

    #[test]
    fn durations_and_commands() {
        let plan = parse_str(
            "version: 1\nverify: cargo test\nagent:\n  preset: custom\n  command: [my-agent, \"{prompt}\"]\n  timeout: 1h 30m\ndomains:\n  - name: a\n    prompt: a\n    owns: [a/**]\n    verify: [make, check]\n",
        )
        .unwrap();
        assert_eq!(plan.agent.timeout, std::time::Duration::from_secs(5400));
        assert_eq!(plan.verify, Some(CommandSpec::Shell("cargo test".into())));
        assert_eq!(
            plan.domains[0].verify,
            Some(CommandSpec::Argv(vec!["make".into(), "check".into()]))
        );
        let p = problems("version: 1\nagent:\n  timeout: soon\ndomains: []\n");
        assert!(
            p[0].message.contains("invalid duration `soon`"),
            "{}",
            p[0].message
        );
    }
}
