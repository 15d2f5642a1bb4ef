//! `report.json`'s content with the version of its format (`--format json`).

use serde::Serialize;

use crate::report::Report;

/// The version of the report's JSON format. New fields keep it; removing or renaming a field, or
/// changing its type or meaning, bumps it.
pub const VERSION: u32 = 1;

/// The report with `version` first: what `report.json` holds.
#[derive(Serialize)]
pub struct Versioned<'a> {
    version: u32,
    #[serde(flatten)]
    report: &'a Report,
}

/// The report as `report.json` writes it.
pub fn versioned(report: &Report) -> Versioned<'_> {
    Versioned {
        version: VERSION,
        report,
    }
}

/// The report as pretty JSON, `version` first (kept as it is if the report carries one already).
pub fn render(report: &Report) -> String {
    let has_version = serde_json::to_value(report)
        .ok()
        .is_some_and(|v| v.get("version").is_some());
    let text = if has_version {
        serde_json::to_string_pretty(report)
    } else {
        serde_json::to_string_pretty(&Versioned {
            version: VERSION,
            report,
        })
    };
    text.unwrap_or_default() + "\n"
}
