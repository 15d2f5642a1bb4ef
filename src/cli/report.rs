//! `agent-farm report`: a run's report as HTML, Markdown, JSON, JUnit XML or a Chrome trace.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::export::{self, Data};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Run id or unique prefix (default: the most recent run).
    pub run: Option<String>,
    /// html (one self-contained page with a timeline), md, json (report.json with its version),
    /// junit (one test case per domain) or chrome-trace (for Perfetto).
    #[arg(long, value_enum, default_value_t = Format::Html, value_name = "FORMAT")]
    pub format: Format,
    /// Write it to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Html,
    Md,
    Json,
    Junit,
    ChromeTrace,
}

pub fn run(cwd: &Path, args: Args) -> anyhow::Result<i32> {
    let rec = super::find_run(cwd, args.run.as_deref())?;
    let data = Data::load(rec, crate::events::now_ms())?;
    let text = match args.format {
        Format::Html => export::html::render(&data),
        Format::Md => export::markdown::render(&data),
        Format::Json => export::json::render(&data.report),
        Format::Junit => export::junit::render(&data),
        Format::ChromeTrace => export::chrome_trace::render(&data),
    };
    match &args.output {
        Some(path) => {
            let path = cwd.join(path);
            std::fs::write(&path, text).map_err(|error| export::ExportError::Write {
                path: path.clone(),
                error,
            })?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(0)
}
