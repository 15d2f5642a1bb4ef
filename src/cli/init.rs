//! `agent-farm init`: write a commented starter plan.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "Examples:
  agent-farm init                         # farm.yaml in the repository root
  agent-farm init plans/refactor.yaml     # somewhere else
  agent-farm init --force                 # overwrite an existing plan
Then edit it, check it with `agent-farm plan` and start it with `agent-farm run`.")]
pub struct Args {
    /// Where to write the plan (default: farm.yaml in the repository root, or here).
    pub file: Option<PathBuf>,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

pub const STARTER: &str = r#"# agent-farm plan. Reference: README.md, "The plan".
version: 1

# Branch or commit the domains start from (default: the current branch).
# base: main
# Branch that receives the merged, verified result (default: base).
# into: main

# How many agents run at once.
max_parallel: 5

agent:
  # claude (claude -p <prompt>), codex, gemini, aider, sim (the built-in simulated agent)
  # or custom.
  preset: claude
  # For custom: the argv, with {prompt} {domain} {worktree} {run_id} {branch} placeholders.
  # command: ["my-agent", "--task", "{prompt}"]
  # Extra arguments for the preset, and extra environment.
  # args: ["--permission-mode", "acceptEdits"]
  # env: { EXAMPLE: "1" }
  timeout: 30m      # per attempt; a domain may override it
  grace: 10s        # between SIGTERM and SIGKILL
  retries: 0
  retry_backoff: 5s

prepare:
  # Untracked files copied from your checkout into every worktree.
  copy: []          # e.g. [".env"]
  # Commands run in every worktree before its agent (a failure fails that domain only).
  setup: []         # e.g. ["npm ci"]

# Run on the merged result before it lands (a string runs in sh -c; a list runs as argv).
# verify: cargo test

domains:
  - name: api
    prompt: |
      Add input validation to every handler in src/api.
    owns: ["src/api/**"]
    priority: 1
  - name: ui
    prompt: |
      Show the API's validation errors in the forms under src/ui.
    owns: ["src/ui/**"]
    depends_on: [api]   # starts from the integration branch once api is merged
    timeout: 20m
    # verify: npm test -- src/ui
"#;

pub fn run(cwd: &Path, args: Args) -> anyhow::Result<i32> {
    let path = match &args.file {
        Some(f) if f.is_absolute() => f.clone(),
        Some(f) => cwd.join(f),
        None => {
            let root = crate::git::discover(cwd)
                .map(|r| r.workdir)
                .unwrap_or_else(|_| cwd.to_owned());
            crate::plan::default_path(&root)
        }
    };
    if path.exists() && !args.force {
        anyhow::bail!(crate::error::PreflightError::PlanExists { path });
    }
    let written = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir),
        _ => Ok(()),
    }
    .and_then(|()| std::fs::write(&path, STARTER));
    written.map_err(|e| anyhow::anyhow!("cannot write the plan {}: {e}", path.display()))?;
    if !super::conventions::quiet() {
        println!("wrote {}", path.display());
        println!(
            "next: edit the domains, then `agent-farm plan` to check it and `agent-farm run` to run it"
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_starter_plan_is_valid() {
        let plan = crate::plan::parse(std::path::Path::new("farm.yaml"), super::STARTER, |_| {
            Err("no files".into())
        })
        .unwrap();
        assert_eq!(plan.domains.len(), 2);
    }
}
