//! `agent-farm status`: a run's state and report.

use std::path::Path;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Run id or unique prefix (default: the most recent run).
    pub run: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cwd: &Path, args: Args) -> anyhow::Result<i32> {
    let rec = super::find_run(cwd, args.run.as_deref())?;
    let report = crate::report::build(&rec, crate::events::now_ms());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(0)
}
