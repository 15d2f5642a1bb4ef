//! A run's report in other formats (`agent-farm report --format …`): a self-contained HTML page
//! with a timeline picture, Markdown, versioned JSON, JUnit XML and a Chrome trace (pure: text
//! from the record, the events and the report; [`write_html`] alone writes a file).

pub mod chrome_trace;
pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;

use std::path::PathBuf;

use crate::events::{EventsError, Timed};
use crate::record::RunRecord;
use crate::report::Report;
use crate::timeline::Timeline;

/// Everything a format is rendered from.
#[derive(Debug, Clone)]
pub struct Data {
    pub rec: RunRecord,
    pub report: Report,
    pub timeline: Timeline,
}

impl Data {
    /// From a record and its events (in order), as of `now_ms`.
    pub fn new(rec: RunRecord, events: &[Timed], now_ms: u64) -> Data {
        let report = crate::report::build(&rec, now_ms);
        let timeline = crate::timeline::build(&rec, events, &report.metrics.critical_path, now_ms);
        Data {
            rec,
            report,
            timeline,
        }
    }

    /// From a record, reading its `events.jsonl` (none yet, or a run from before it was kept:
    /// the record's own times are used).
    pub fn load(rec: RunRecord, now_ms: u64) -> Result<Data, EventsError> {
        let events = match crate::events::read(&rec.paths().events()) {
            Ok(log) => log.events,
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(Data::new(rec, &events, now_ms))
    }
}

/// Why the HTML report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Events(#[from] EventsError),
    #[error("cannot write {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Write `report.html` into the run's directory (beside `report.json`); returns its path.
pub fn write_html(rec: &RunRecord, now_ms: u64) -> Result<PathBuf, ExportError> {
    let data = Data::load(rec.clone(), now_ms)?;
    let path = rec.paths().report_html();
    let write = |path: &PathBuf| -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut tmp, html::render(&data).as_bytes())?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    write(&path).map_err(|error| ExportError::Write {
        path: path.clone(),
        error,
    })?;
    Ok(path)
}

/// Text for XML and HTML, attribute values included: markup characters escaped, and characters
/// XML 1.0 cannot hold at all (most control characters) replaced by U+FFFD.
pub fn escape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || matches!(c, '\u{FFFE}' | '\u{FFFF}') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// What a run's exit code means, in a few words (README "Exit codes").
pub fn outcome_words(code: i32) -> &'static str {
    use crate::error::exit;
    match code {
        exit::OK => "succeeded",
        exit::NOT_LANDED => "not landed",
        exit::DOMAINS_FAILED => "domains failed",
        exit::CONFLICT => "merge conflict",
        exit::VERIFY_FAILED => "verify failed",
        exit::INTERRUPTED => "interrupted",
        _ => "failed",
    }
}

/// A timestamp as RFC 3339 in UTC, to the second (`2026-12-02T02:31:04Z`).
pub fn rfc3339(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_control_characters() {
        assert_eq!(
            escape_xml("<a href=\"x\">'&'</a>\u{1b}[31m\n"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;\u{FFFD}[31m\n"
        );
    }
}
