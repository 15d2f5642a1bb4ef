//! The report as JUnit XML (`--format junit`), for CI systems: one `<testsuite>` for the run and
//! one `<testcase>` per domain, valid against the common JUnit schema (Jenkins' junit-10.xsd).
//!
//! A merged (or, with `--no-merge`, succeeded) domain passes. A failed, timed-out, cancelled,
//! conflicted or blocked one has a `<failure>` (its `type` is the status), a skipped one (or one
//! not finished yet) a `<skipped>`. `time` is the domain's work time in seconds; `system-out`
//! says what happened.

use std::fmt::Write as _;

use super::{Data, escape_xml as esc};
use crate::vocab::DomainStatus;

fn secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

pub fn render(data: &Data) -> String {
    let r = &data.report;
    let rec = &data.rec;
    let failed = |s: DomainStatus| {
        matches!(
            s,
            DomainStatus::Failed
                | DomainStatus::TimedOut
                | DomainStatus::Cancelled
                | DomainStatus::Conflicted
                | DomainStatus::Blocked
        )
    };
    let skipped = |s: DomainStatus| s == DomainStatus::Skipped || !s.is_terminal();
    let tests = r.domains.len();
    let failures = r.domains.iter().filter(|d| failed(d.status)).count();
    let skips = r.domains.iter().filter(|d| skipped(d.status)).count();
    let time = secs(r.metrics.wall_ms);
    let suite = format!("agent-farm run {}", r.run_id);
    let classname = format!("agent-farm.{}", r.run_id);
    // The schema's timestamp has no zone; it is UTC.
    let stamp = super::rfc3339(rec.started_ms);
    let stamp = stamp.trim_end_matches('Z');
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"agent-farm\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{time}\">"
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skips}\" time=\"{time}\" timestamp=\"{}\" hostname=\"localhost\" id=\"0\" package=\"agent-farm\">",
        esc(&suite),
        esc(stamp)
    );
    out.push_str("    <properties>\n");
    let mut prop = |name: &str, value: &str| {
        let _ = writeln!(
            out,
            "      <property name=\"{}\" value=\"{}\"/>",
            esc(name),
            esc(value)
        );
    };
    prop("run_id", &r.run_id);
    prop("base", &r.base);
    prop("into", &r.into);
    prop("exit_code", &r.exit_code.to_string());
    prop("verify", r.verify.as_deref().unwrap_or("not run"));
    prop(
        "landed",
        match r.landed {
            Some(true) => "true",
            Some(false) => "false",
            None => "unknown",
        },
    );
    prop("critical_path", &r.metrics.critical_path.join(" -> "));
    prop("cost_usd", &format!("{:.4}", r.metrics.total_cost_usd));
    out.push_str("    </properties>\n");
    for d in &r.domains {
        let _ = write!(
            out,
            "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\">",
            esc(&d.domain),
            esc(&classname),
            secs(d.duration_ms)
        );
        let reason = d.reason.clone().unwrap_or_else(|| d.status.to_string());
        let mut lines = vec![format!("status: {}", d.status)];
        if let Some(reason) = &d.reason {
            lines.push(format!("reason: {reason}"));
        }
        if let Some(dr) = rec.domain(&d.domain) {
            for a in &dr.attempts {
                let end = a
                    .end
                    .as_ref()
                    .map_or("did not end".to_string(), |e| e.describe());
                lines.push(format!("attempt {}: {end}", a.number));
            }
        }
        lines.push(format!(
            "files: {} (+{}/-{})",
            d.files_changed, d.insertions, d.deletions
        ));
        for v in &d.violations {
            lines.push(format!(
                "ownership: {} {} ({}; {})",
                v.change,
                v.path,
                v.detected.describe(),
                v.action
            ));
        }
        lines.push(format!("branch: {}", d.branch));
        lines.push(format!("log: {}", d.log));
        let body = lines.join("\n");
        if failed(d.status) {
            let _ = write!(
                out,
                "\n      <failure message=\"{}\" type=\"{}\">{}</failure>",
                esc(&reason),
                d.status,
                esc(&body)
            );
        } else if skipped(d.status) {
            let message = if d.status.is_terminal() {
                reason
            } else {
                format!("not finished ({})", d.status)
            };
            let _ = write!(out, "\n      <skipped message=\"{}\"/>", esc(&message));
        }
        let _ = writeln!(
            out,
            "\n      <system-out>{}</system-out>\n    </testcase>",
            esc(&body)
        );
    }
    let mut summary = vec![format!(
        "{} ({} -> {}): exit {}",
        r.run_id, r.base, r.into, r.exit_code
    )];
    if let Some(v) = &r.verify {
        summary.push(format!("verify: {v}"));
    }
    if let Some(m) = &r.land_message {
        summary.push(format!("result: {m}"));
    }
    let _ = writeln!(
        out,
        "    <system-out>{}</system-out>\n    <system-err></system-err>\n  </testsuite>\n</testsuites>",
        esc(&summary.join("\n"))
    );
    out
}
