//! The report as Markdown (`--format md`): for a pull request, a CI summary, a chat message.

use std::fmt::Write as _;

use super::{Data, outcome_words};
use crate::report::fmt_ms;
use crate::vocab::Phase;

/// Text for a Markdown table cell or line: nothing in it is read as markup (pipes, emphasis,
/// links, HTML), and it stays on one line.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Text as inline code: a backtick fence longer than any run of backticks in it.
pub fn code(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    // A pipe would still end a table cell inside a code span.
    format!("{fence}{pad}{}{pad}{fence}", s.replace('|', "\\|"))
}

pub fn render(data: &Data) -> String {
    let r = &data.report;
    let m = &r.metrics;
    let mut out = String::new();
    let state = match r.phase {
        Phase::Finished | Phase::Interrupted => {
            format!("{} (exit {})", outcome_words(r.exit_code), r.exit_code)
        }
        p => format!("in progress ({p})"),
    };
    let _ = writeln!(out, "# agent-farm run {}\n", code(&r.run_id));
    let _ = writeln!(
        out,
        "**{}** · {} → {} · {} domain(s), {} job(s)\n",
        escape(&state),
        code(&r.base),
        code(&r.into),
        r.domains.len(),
        m.jobs
    );
    let _ = writeln!(
        out,
        "- wall {} · work {} (agents {}) · speedup {:.2}× · utilization {:.0}% of {} slot(s) · efficiency {:.0}% of the bound",
        fmt_ms(m.wall_ms),
        fmt_ms(m.busy_ms),
        fmt_ms(m.agent_ms),
        m.speedup,
        m.utilization * 100.0,
        m.slots,
        m.parallel_efficiency * 100.0
    );
    if !m.critical_path.is_empty() {
        let _ = writeln!(
            out,
            "- critical path: {} ({}){}",
            m.critical_path
                .iter()
                .map(|d| escape(d))
                .collect::<Vec<_>>()
                .join(" → "),
            fmt_ms(m.critical_path_ms),
            m.bottleneck
                .as_ref()
                .map(|b| format!(" · bottleneck: {}", escape(b)))
                .unwrap_or_default()
        );
    }
    if m.total_cost_usd > 0.0 || m.total_input_tokens > 0 {
        let _ = writeln!(
            out,
            "- cost: ${:.4} · tokens {} in / {} out",
            m.total_cost_usd, m.total_input_tokens, m.total_output_tokens
        );
    }
    if let Some(v) = &r.verify {
        let _ = writeln!(out, "- verify: {}", escape(v));
    }
    if let Some(msg) = &r.land_message {
        let _ = writeln!(out, "- result: {}", escape(msg));
    }
    if let Some(cmd) = &r.land_command {
        let _ = writeln!(out, "- to land it yourself: {}", code(cmd));
    }
    out.push_str(
        "\n| domain | status | tries | exit | time | files | +/- | turns | cost | result |\n\
         |---|---|--:|--:|--:|--:|--:|--:|--:|---|\n",
    );
    for d in &r.domains {
        let result = match (&d.status, &d.reason) {
            (_, Some(reason)) => reason.clone(),
            (s, None) => s.to_string(),
        };
        let star = if m.critical_path.contains(&d.domain) {
            " ★"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "| {}{star} | {} | {} | {} | {} | {} | +{}/-{} | {} | {} | {} |",
            escape(&d.domain),
            d.status,
            d.attempts,
            d.exit_code.map_or("–".into(), |c| c.to_string()),
            fmt_ms(d.duration_ms),
            d.files_changed,
            d.insertions,
            d.deletions,
            if d.turns > 0 {
                d.turns.to_string()
            } else {
                "–".into()
            },
            if d.cost_usd > 0.0 {
                format!("${:.4}", d.cost_usd)
            } else {
                "–".into()
            },
            escape(&result)
        );
    }
    if !m.critical_path.is_empty() {
        out.push_str("\n★ on the critical path\n");
    }
    let violations: Vec<_> = r
        .domains
        .iter()
        .flat_map(|d| d.violations.iter().map(move |v| (d, v)))
        .collect();
    if !violations.is_empty() {
        out.push_str("\n## Ownership violations\n\n");
        for (d, v) in violations {
            let whose = match &v.outside {
                Some(o) => format!("outside its worktree, in {}", escape(o)),
                None => format!("owner: {}", escape(v.owner.as_deref().unwrap_or("nobody"))),
            };
            let _ = writeln!(
                out,
                "- {}: {} {} ({whose}; {}; {})",
                escape(&d.domain),
                escape(&v.change),
                code(&v.path),
                escape(v.detected.describe()),
                escape(&v.action)
            );
        }
    }
    if !r.collisions.is_empty() {
        out.push_str("\n## Collisions\n\n");
        for c in &r.collisions {
            let _ = writeln!(
                out,
                "- {} was changed by {}",
                code(&c.path),
                escape(&c.domains.join(" and "))
            );
        }
    }
    if !r.kept.is_empty() {
        out.push_str("\n## Kept branches\n\n");
        for k in &r.kept {
            let _ = write!(out, "- {}: {}", code(&k.name), escape(&k.reason));
            if let Some(cmd) = &k.inspect {
                let _ = write!(out, " · inspect: {}", code(cmd));
            }
            out.push('\n');
        }
    }
    let ended: Vec<_> = r
        .domains
        .iter()
        .flat_map(|d| d.ended_processes.iter().map(move |p| (d, p)))
        .collect();
    if !ended.is_empty() {
        out.push_str("\n## Processes ended by the supervisor\n\n");
        for (d, p) in ended {
            let _ = writeln!(
                out,
                "- {}: pid {} {} ({})",
                escape(&d.domain),
                p.pid,
                code(&p.command),
                escape(&p.signal)
            );
        }
    }
    if !r.warnings.is_empty() {
        out.push_str("\n## Warnings\n\n");
        for w in &r.warnings {
            let _ = writeln!(out, "- {}", escape(w));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped_and_code_is_fenced() {
        assert_eq!(escape("a|b *c* <x>\nd"), "a\\|b \\*c\\* &lt;x&gt; d");
        assert_eq!(code("ls"), "`ls`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x"), "`` `x ``");
        assert_eq!(code("a|b"), "`a\\|b`");
    }
}
