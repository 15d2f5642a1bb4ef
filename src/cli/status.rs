//! `agent-farm status`: a run's state and report.

use std::path::Path;

use crate::events::EventLog;
use crate::vocab::Phase;

#[derive(Debug, Clone, clap::Args)]
#[command(
    after_long_help = "Exits with the run's own exit code once it has ended (0 landed, 5 not landed, 6 domains failed, 7 conflict, 8 verify failed, 130 interrupted); 0 for a run still in progress."
)]
pub struct Args {
    /// Run id or unique prefix (default: the most recent run).
    pub run: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cwd: &Path, args: Args) -> anyhow::Result<i32> {
    let rec = super::find_run(cwd, args.run.as_deref())?;
    let now = crate::events::now_ms();
    // The event log is read (and its version checked) even when only the record is shown: a run
    // written by a newer agent-farm is refused rather than misread.
    let log = match crate::events::read(&rec.paths().events()) {
        Ok(log) => Some(log),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let report = crate::report::build(&rec, now);
    if args.json {
        println!("{}", super::conventions::versioned_json(&report)?);
    } else {
        print!("{}", report.render());
        let finished = matches!(rec.phase, Phase::Finished | Phase::Interrupted);
        if let Some(line) = log
            .as_ref()
            .and_then(|l| last_event(l, now))
            .filter(|_| !finished)
        {
            println!("{line}");
        }
    }
    // The run's own exit code once it has ended (README, "Exit codes"); 0 while it is still
    // in progress, or stopped before its end (`resume` continues it).
    Ok(match rec.phase {
        Phase::Finished | Phase::Interrupted => report.exit_code,
        _ => 0,
    })
}

/// For a run in progress (or whose process died): when it was last heard of, and what it said.
fn last_event(log: &EventLog, now_ms: u64) -> Option<String> {
    let last = log.events.last()?;
    let ago = crate::report::fmt_ms(now_ms.saturating_sub(last.at_ms));
    Some(match last.event.domain() {
        Some(d) => format!("last event {ago} ago: {} ({d})", last.event.name()),
        None => format!("last event {ago} ago: {}", last.event.name()),
    })
}
