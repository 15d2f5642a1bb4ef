//! Turning a plan's agent configuration into the argv and environment of one agent process.

use std::path::{Path, PathBuf};

use crate::plan::{AgentConfig, Domain, Preset};

/// Values substituted for placeholders in an agent argv.
#[derive(Debug, Clone)]
pub struct Vars<'a> {
    pub prompt: &'a str,
    pub domain: &'a str,
    pub worktree: &'a Path,
    pub run_id: &'a str,
    pub branch: &'a str,
}

fn substitute(template: &str, v: &Vars) -> String {
    // One pass, so a prompt containing `{domain}` is not substituted again.
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after.find('}').and_then(|close| {
            let val = match &after[..close] {
                "prompt" => v.prompt.to_string(),
                "domain" => v.domain.to_string(),
                "worktree" => v.worktree.display().to_string(),
                "run_id" => v.run_id.to_string(),
                "branch" => v.branch.to_string(),
                _ => return None,
            };
            Some((val, close))
        });
        match value {
            Some((val, close)) => {
                out.push_str(&val);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The program a preset runs, before PATH resolution.
pub fn program(cfg: &AgentConfig, self_exe: &Path) -> String {
    match (cfg.preset, &cfg.program, &cfg.command) {
        (_, Some(p), _) => p.clone(),
        (Preset::Claude, None, _) => "claude".into(),
        (Preset::Codex, None, _) => "codex".into(),
        (Preset::Gemini, None, _) => "gemini".into(),
        (Preset::Aider, None, _) => "aider".into(),
        (Preset::Sim, None, _) => self_exe.display().to_string(),
        (Preset::Custom, None, Some(c)) => c.first().cloned().unwrap_or_default(),
        (Preset::Custom, None, None) => String::new(),
    }
}

/// Whether the agent prints Claude Code's stream-json events on stdout.
pub fn streams_json(cfg: &AgentConfig) -> bool {
    cfg.preset == Preset::Claude
}

/// The full argv for one agent. The prompt is always exactly one element.
pub fn argv(cfg: &AgentConfig, self_exe: &Path, v: &Vars) -> Vec<String> {
    let prog = program(cfg, self_exe);
    let p = "{prompt}".to_string();
    let model = |flag: &str| {
        cfg.model
            .iter()
            .flat_map(|m| [flag.to_string(), m.clone()])
            .collect::<Vec<_>>()
    };
    let mut template: Vec<String> = match cfg.preset {
        Preset::Claude => {
            let mut a = vec![
                prog,
                "-p".into(),
                p,
                "--output-format".into(),
                "stream-json".into(),
                "--verbose".into(),
                "--permission-mode".into(),
                cfg.permission_mode.clone(),
            ];
            a.extend(model("--model"));
            if !cfg.allowed_tools.is_empty() {
                a.push("--allowedTools".into());
                a.push(cfg.allowed_tools.join(","));
            }
            if !cfg.disallowed_tools.is_empty() {
                a.push("--disallowedTools".into());
                a.push(cfg.disallowed_tools.join(","));
            }
            if let Some(b) = cfg.max_budget_usd {
                a.push("--max-budget-usd".into());
                a.push(b.to_string());
            }
            a
        }
        Preset::Codex => {
            let mut a = vec![prog, "exec".into(), "--full-auto".into()];
            a.extend(model("--model"));
            a.push(p);
            a
        }
        Preset::Gemini => {
            let mut a = vec![prog, "--yolo".into()];
            a.extend(model("--model"));
            a.extend(["-p".into(), p]);
            a
        }
        Preset::Aider => {
            let mut a = vec![prog, "--yes-always".into()];
            a.extend(model("--model"));
            a.extend(["--message".into(), p]);
            a
        }
        Preset::Sim => vec![prog, "sim-agent".into(), p],
        Preset::Custom => {
            let mut c = cfg.command.clone().unwrap_or_default();
            if let (Some(p), Some(first)) = (&cfg.program, c.first_mut()) {
                *first = p.clone();
            }
            c
        }
    };
    template.extend(cfg.args.iter().cloned());
    template.iter().map(|t| substitute(t, v)).collect()
}

/// The prompt an agent receives: the domain's prompt, after the farm's preamble when enabled.
pub fn full_prompt(cfg: &AgentConfig, domain: &Domain, worktree: &Path) -> String {
    if !cfg.preamble() {
        return domain.prompt.clone();
    }
    let mut s = format!(
        "You are one of several coding agents working in parallel on this repository, coordinated by agent-farm. \
Your domain is `{}`: change only files matching {}. Other agents are changing other parts of the \
repository at the same time; do not edit files outside your domain, even to fix something there \
(describe it in your final message instead). Work in the current directory ({}); everything you \
change is committed for you when you finish.",
        domain.name,
        domain
            .owns
            .iter()
            .map(|o| format!("`{o}`"))
            .collect::<Vec<_>>()
            .join(", "),
        worktree.display()
    );
    if !domain.depends_on.is_empty() {
        s.push_str(&format!(
            " The work of {} is already merged into your starting point.",
            domain
                .depends_on
                .iter()
                .map(|d| format!("`{d}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    s.push_str("\n\n");
    s.push_str(&domain.prompt);
    s
}

/// Environment added to every agent (and setup/verify command) of a domain.
pub fn env(cfg: &AgentConfig, v: &Vars) -> Vec<(String, String)> {
    let mut e = vec![
        ("AGENT_FARM_RUN_ID".to_string(), v.run_id.to_string()),
        ("AGENT_FARM_DOMAIN".to_string(), v.domain.to_string()),
        (
            "AGENT_FARM_WORKTREE".to_string(),
            v.worktree.display().to_string(),
        ),
        ("AGENT_FARM_BRANCH".to_string(), v.branch.to_string()),
    ];
    e.extend(
        cfg.env
            .iter()
            .map(|(k, val)| (k.clone(), substitute(val, v))),
    );
    e
}

/// The agent-farm binary itself, for the `sim` preset.
pub fn self_exe() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("agent-farm"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn cfg(preset: Preset, command: Option<Vec<&str>>) -> AgentConfig {
        AgentConfig {
            preset,
            program: None,
            command: command.map(|c| c.into_iter().map(String::from).collect()),
            args: vec!["--x={domain}".into()],
            env: BTreeMap::new(),
            timeout: Duration::from_secs(1),
            grace: Duration::from_secs(1),
            idle_timeout: None,
            retries: 0,
            retry_backoff: Duration::from_secs(1),
            rate_limit_backoff: Duration::from_secs(1),
            model: None,
            preamble: Some(false),
            permission_mode: "acceptEdits".into(),
            allowed_tools: vec![],
            disallowed_tools: vec![],
            max_budget_usd: None,
        }
    }

    fn vars() -> Vars<'static> {
        Vars {
            prompt: "do {domain} things",
            domain: "api",
            worktree: Path::new("/w/api"),
            run_id: "r1",
            branch: "farm/r1/api",
        }
    }

    #[test]
    fn claude_preset_passes_prompt_as_one_argument() {
        let mut c = cfg(Preset::Claude, None);
        c.model = Some("opus".into());
        c.disallowed_tools = vec!["Edit(src/ui/**)".into(), "Edit(docs/**)".into()];
        c.max_budget_usd = Some(1.5);
        let a = argv(&c, Path::new("/bin/af"), &vars());
        assert_eq!(
            a,
            vec![
                "claude",
                "-p",
                "do {domain} things",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-mode",
                "acceptEdits",
                "--model",
                "opus",
                "--disallowedTools",
                "Edit(src/ui/**),Edit(docs/**)",
                "--max-budget-usd",
                "1.5",
                "--x=api"
            ]
        );
    }

    #[test]
    fn custom_preset_substitutes_placeholders() {
        let c = cfg(
            Preset::Custom,
            Some(vec![
                "my-agent",
                "--in",
                "{worktree}",
                "--run={run_id}",
                "{prompt}",
                "{json}",
            ]),
        );
        let a = argv(&c, Path::new("/bin/af"), &vars());
        assert_eq!(
            a,
            vec![
                "my-agent",
                "--in",
                "/w/api",
                "--run=r1",
                "do {domain} things",
                "{json}",
                "--x=api"
            ]
        );
    }

    #[test]
    fn other_presets() {
        let a = argv(&cfg(Preset::Codex, None), Path::new("/x"), &vars());
        assert_eq!(
            a,
            vec![
                "codex",
                "exec",
                "--full-auto",
                "do {domain} things",
                "--x=api"
            ]
        );
        let a = argv(&cfg(Preset::Gemini, None), Path::new("/x"), &vars());
        assert_eq!(
            a,
            vec!["gemini", "--yolo", "-p", "do {domain} things", "--x=api"]
        );
        let a = argv(&cfg(Preset::Aider, None), Path::new("/x"), &vars());
        assert_eq!(
            a,
            vec![
                "aider",
                "--yes-always",
                "--message",
                "do {domain} things",
                "--x=api"
            ]
        );
    }

    #[test]
    fn sim_preset_runs_this_binary() {
        let a = argv(&cfg(Preset::Sim, None), Path::new("/bin/af"), &vars());
        assert_eq!(&a[..2], &["/bin/af", "sim-agent"]);
    }
}
