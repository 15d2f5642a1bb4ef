//! What every command shares with its ecosystem: `-q`/`-v`, `--color` (and `NO_COLOR`), the
//! tracing filter, shell completions, the man page, and how an error is printed.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::OnceLock;

use clap::CommandFactory;

/// The schema version of the JSON that `plan --json`, `status --json`, `run --json` and
/// `runs --json` print: the first field of each document. Bumped when a field changes meaning
/// or goes away (new fields do not bump it).
pub const JSON_VERSION: u32 = 1;

/// A JSON document with the schema version first, then the fields of `T`.
#[derive(Debug, serde::Serialize)]
pub struct Versioned<'a, T: serde::Serialize> {
    pub version: u32,
    #[serde(flatten)]
    pub inner: &'a T,
}

/// `value` as pretty JSON carrying [`JSON_VERSION`].
pub fn versioned_json<T: serde::Serialize>(value: &T) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&Versioned {
        version: JSON_VERSION,
        inner: value,
    })
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, strum::Display)]
#[strum(serialize_all = "lowercase")]
pub enum ColorWhen {
    /// On a terminal, unless `NO_COLOR` is set (and not empty).
    #[default]
    Auto,
    Always,
    Never,
}

/// The global output flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutputArgs {
    /// Print only errors and what was asked for (no progress, no report).
    ///
    /// `run`, `resume`, `merge` and `demo` then print nothing: their exit code tells the
    /// outcome (`--json` still prints the report).
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        help_heading = "Global options"
    )]
    pub quiet: bool,
    /// More internal logging on stderr: -v info, -vv debug, -vvv trace.
    ///
    /// `AGENT_FARM_LOG` (an env-filter such as `agent_farm=debug`) overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Global options")]
    pub verbose: u8,
    /// When to colour output (auto: on a terminal, unless NO_COLOR is set).
    ///
    /// Nothing written into a file or pipe is coloured unless `always` is given.
    #[arg(
        long,
        global = true,
        value_name = "WHEN",
        default_value_t = ColorWhen::Auto,
        hide_possible_values = false,
        help_heading = "Global options"
    )]
    pub color: ColorWhen,
}

static OUTPUT: OnceLock<OutputArgs> = OnceLock::new();

/// Record the global flags (once, at start).
pub fn set_output(args: OutputArgs) {
    colorchoice_for(args.color).write_global();
    console::set_colors_enabled(colour_for(args.color, std::io::stdout().is_terminal()));
    console::set_colors_enabled_stderr(stderr_colour(args.color));
    let _ = OUTPUT.set(args);
}

fn output() -> OutputArgs {
    OUTPUT.get().cloned().unwrap_or_default()
}

/// `-q`: silence progress and everything that is not an error or the asked-for output.
pub fn quiet() -> bool {
    output().quiet
}

fn colorchoice_for(when: ColorWhen) -> anstream::ColorChoice {
    match when {
        ColorWhen::Auto => anstream::ColorChoice::Auto,
        ColorWhen::Always => anstream::ColorChoice::Always,
        ColorWhen::Never => anstream::ColorChoice::Never,
    }
}

/// Whether a stream gets colour: `always` and `never` as said; `auto` only on a terminal and
/// only when `NO_COLOR` is unset or empty (<https://no-color.org>). Pure, for the tests.
pub fn colour_decision(when: ColorWhen, is_terminal: bool, no_color: Option<&str>) -> bool {
    match when {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => is_terminal && no_color.is_none_or(str::is_empty),
    }
}

fn colour_for(when: ColorWhen, is_terminal: bool) -> bool {
    let no_color = std::env::var("NO_COLOR").ok();
    colour_decision(when, is_terminal, no_color.as_deref())
}

/// Whether stderr (progress, tracing, errors) gets colour under `when`.
pub fn stderr_colour(when: ColorWhen) -> bool {
    colour_for(when, std::io::stderr().is_terminal())
}

/// Whether stderr gets colour under the global `--color`.
pub fn stderr_colored() -> bool {
    stderr_colour(output().color)
}

/// The tracing filter: `AGENT_FARM_LOG` if set, else by `-q`/`-v` (default `warn`).
pub fn log_filter(quiet: bool, verbose: u8) -> String {
    if let Ok(f) = std::env::var("AGENT_FARM_LOG")
        && !f.is_empty()
    {
        return f;
    }
    filter_for(quiet, verbose).to_string()
}

/// The default filter for `-q` / `-v` counts. Pure. notify's inotify backend is held to errors
/// below `-vv`: when an agent deletes a watched directory, notify 8 queues that watch's removal
/// twice and warns about the second ("Unable to remove the path from the watches"), about
/// nothing agent-farm or the user can act on (the watcher has already dropped the directory).
pub fn filter_for(quiet: bool, verbose: u8) -> &'static str {
    match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,notify::inotify=error",
        (false, 1) => "info,notify::inotify=error",
        (false, 2) => "debug",
        (false, _) => "trace",
    }
}

/// Set up tracing on stderr by the global flags; colour only where [`stderr_colour`] allows.
pub fn init_tracing(args: &OutputArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(log_filter(args.quiet, args.verbose))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Through the live view while it is drawn (a line above it), else straight to stderr.
        .with_writer(crate::reporter::DisplayWriter)
        .with_ansi(stderr_colour(args.color))
        .init();
}

/// How an error that reached `main` is printed: `error: ` and the message, then each cause
/// not already said by the one before it (`: ` joined), then a hint where one is known.
pub fn render_error(err: &anyhow::Error) -> String {
    let mut out = String::from("error: ");
    let mut said: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || said.iter().any(|s| s.contains(&text)) {
            continue;
        }
        if !said.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        said.push(text);
    }
    if let Some(h) = hint(err) {
        out.push_str("\nhint: ");
        out.push_str(&h);
    }
    out
}

/// A hint for errors that need one and whose message does not already carry it.
fn hint(err: &anyhow::Error) -> Option<String> {
    use crate::error::PreflightError;
    for cause in err.chain() {
        if let Some(crate::error::PlanError::Read { error, .. }) = cause.downcast_ref()
            && error.kind() == std::io::ErrorKind::NotFound
        {
            return Some(
                "write one with `agent-farm init`, or give the plan's path (`agent-farm run FILE`)"
                    .into(),
            );
        }
        match cause.downcast_ref::<PreflightError>() {
            Some(PreflightError::NoRuns { .. }) => {
                return Some("start one with `agent-farm run` (or try `agent-farm demo`)".into());
            }
            Some(PreflightError::RunNotFound { .. } | PreflightError::AmbiguousRun { .. }) => {
                return Some("`agent-farm runs` lists the recorded runs".into());
            }
            _ => {}
        }
        if let Some(crate::git::DiscoverError::NotARepo { .. }) = cause.downcast_ref() {
            return Some(
                "run agent-farm inside a git repository, or point at one with `-C DIR`".into(),
            );
        }
    }
    None
}

/// `agent-farm completions SHELL`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "Examples:
  agent-farm completions bash > ~/.local/share/bash-completion/completions/agent-farm
  agent-farm completions zsh > ~/.zfunc/_agent-farm      # with fpath+=(~/.zfunc)
  agent-farm completions fish > ~/.config/fish/completions/agent-farm.fish")]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<i32> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "agent-farm", &mut std::io::stdout());
    Ok(0)
}

/// `agent-farm man`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "Examples:
  agent-farm man | man -l -
  agent-farm man --dir ~/.local/share/man/man1     # agent-farm.1, agent-farm-run.1, …")]
pub struct ManArgs {
    /// Write agent-farm.1 and one page per command (agent-farm-run.1, …) into DIR instead.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn man(args: ManArgs) -> anyhow::Result<i32> {
    let cmd = super::Cli::command();
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| {
                anyhow::anyhow!("cannot create the man directory {}: {e}", dir.display())
            })?;
            clap_mangen::generate_to(cmd, &dir).map_err(|e| {
                anyhow::anyhow!("cannot write the man pages into {}: {e}", dir.display())
            })?;
            if !quiet() {
                eprintln!("man pages written to {}", dir.display());
            }
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            use std::io::Write;
            std::io::stdout().write_all(&out)?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_follows_the_flag_the_terminal_and_no_color() {
        use ColorWhen::*;
        assert!(colour_decision(Auto, true, None));
        assert!(
            colour_decision(Auto, true, Some("")),
            "an empty NO_COLOR is unset"
        );
        assert!(!colour_decision(Auto, true, Some("1")));
        assert!(
            !colour_decision(Auto, false, None),
            "never into a file or pipe"
        );
        assert!(
            colour_decision(Always, false, Some("1")),
            "the flag beats NO_COLOR"
        );
        assert!(!colour_decision(Never, true, None));
    }

    #[test]
    fn quiet_and_verbose_set_the_filter() {
        assert_eq!(filter_for(false, 0), "warn,notify::inotify=error");
        assert_eq!(filter_for(false, 1), "info,notify::inotify=error");
        assert_eq!(filter_for(false, 2), "debug");
        assert_eq!(filter_for(false, 7), "trace");
        assert_eq!(filter_for(true, 0), "error");
    }

    #[test]
    fn an_error_says_each_cause_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let text = io.to_string();
        // A context that already names its cause, as `{e}` formatting does.
        let err = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::NotFound))
            .context(format!("cannot read x: {text}"));
        let printed = render_error(&err);
        assert_eq!(printed.matches(&text).count(), 1, "{printed}");
        assert!(printed.starts_with("error: cannot read x: "), "{printed}");
        // A bare io error repeated by its context is said once too.
        let err = anyhow::Error::new(io).context(text.clone());
        assert_eq!(render_error(&err), format!("error: {text}"));
        // Distinct causes are all kept.
        let err = anyhow::anyhow!("inner").context("outer");
        assert_eq!(render_error(&err), "error: outer: inner");
    }

    #[test]
    fn json_documents_carry_the_version_first() {
        #[derive(serde::Serialize)]
        struct Doc {
            a: u32,
        }
        let text = versioned_json(&Doc { a: 7 }).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["version"], JSON_VERSION);
        assert_eq!(v["a"], 7);
        assert!(text.find("version") < text.find("\"a\""), "{text}");
    }

    #[test]
    fn hints_for_errors_that_need_one() {
        let err = anyhow::Error::new(crate::error::PreflightError::NoRuns { dir: "x".into() });
        assert!(render_error(&err).contains("\nhint: start one with `agent-farm run`"));
        let err = anyhow::Error::new(crate::error::PlanError::Read {
            path: "farm.yaml".into(),
            error: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
        let printed = render_error(&err);
        assert!(
            printed.starts_with("error: cannot read plan farm.yaml: "),
            "{printed}"
        );
        assert!(
            printed.contains("\nhint: write one with `agent-farm init`"),
            "{printed}"
        );
        let denied = anyhow::Error::new(crate::error::PlanError::Read {
            path: "farm.yaml".into(),
            error: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        });
        assert!(!render_error(&denied).contains("hint"));
    }
}
