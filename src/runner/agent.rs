//! Turning a plan's agent configuration into the argv and environment of one agent process.

use std::path::{Path, PathBuf};

use crate::plan::{AgentConfig, Preset};

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
        (Preset::Sim, None, _) => self_exe.display().to_string(),
        (Preset::Custom, None, Some(c)) => c.first().cloned().unwrap_or_default(),
        (Preset::Custom, None, None) => String::new(),
    }
}

/// The full argv for one agent.
pub fn argv(cfg: &AgentConfig, self_exe: &Path, v: &Vars) -> Vec<String> {
    let mut template: Vec<String> = match cfg.preset {
        Preset::Claude => vec![program(cfg, self_exe), "-p".into(), "{prompt}".into()],
        Preset::Sim => vec![
            program(cfg, self_exe),
            "sim-agent".into(),
            "{prompt}".into(),
        ],
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
    e.extend(cfg.env.iter().map(|(k, v)| (k.clone(), v.clone())));
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
            retries: 0,
            retry_backoff: Duration::from_secs(1),
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
        let a = argv(&cfg(Preset::Claude, None), Path::new("/bin/af"), &vars());
        assert_eq!(a, vec!["claude", "-p", "do {domain} things", "--x=api"]);
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
    fn sim_preset_runs_this_binary() {
        let a = argv(&cfg(Preset::Sim, None), Path::new("/bin/af"), &vars());
        assert_eq!(&a[..2], &["/bin/af", "sim-agent"]);
    }
}
