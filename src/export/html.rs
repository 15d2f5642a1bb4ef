//! The HTML report: one self-contained page (inline CSS and SVG, no script, nothing fetched) with
//! the summary and metrics, the timeline picture, the per-domain table, ownership findings, kept
//! refs with the commands to inspect them, processes the supervisor ended, and cost.
//!
//! The page is also well-formed XML (every element closed, no named entities but XML's own), so
//! that tools and tests can read it with an XML parser. Every piece of text from the run (names,
//! paths, reasons, commands) is escaped.

use std::fmt::Write as _;

use super::{Data, escape_xml as esc, outcome_words};
use crate::report::{DomainRow, fmt_ms};
use crate::timeline::{LaneKind, MarkKind, Outcome, SpanKind, Timeline};
use crate::vocab::{DomainStatus, Phase};

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto; max-width: 1240px; padding: 0 16px; color: #1f2328; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #d8dee4; padding-bottom: 4px; }
.sub { color: #59636e; margin: 0 0 16px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 12px; font-weight: 600; font-size: 13px; vertical-align: middle; margin-left: 8px; }
.b-ok { background: #dafbe1; color: #116329; }
.b-bad { background: #ffebe9; color: #a40e26; }
.b-warn { background: #fff8c5; color: #7d4e00; }
.b-run { background: #ddf4ff; color: #0a3069; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { border: 1px solid #d8dee4; border-radius: 8px; padding: 8px 12px; min-width: 120px; }
.card .v { font-size: 18px; font-weight: 600; }
.card .k { color: #59636e; font-size: 12px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.branch code { white-space: nowrap; word-break: normal; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f6f8fa; padding: 1px 4px; border-radius: 4px; word-break: break-all; }
.st { font-weight: 600; }
.st-merged, .st-succeeded { color: #116329; }
.st-failed, .st-timed_out, .st-conflicted, .st-blocked { color: #a40e26; }
.st-cancelled, .st-skipped, .st-pending { color: #59636e; }
.st-running, .st-preparing { color: #0a3069; }
.muted { color: #59636e; }
.critical-name { font-weight: 700; }
svg.timeline { width: 100%; height: auto; border: 1px solid #d8dee4; border-radius: 8px; background: #fff; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
.axis line { stroke: #eaeef2; }
.axis text { fill: #59636e; font-size: 11px; }
.lane-bg { fill: #fff; }
.lane-bg.alt { fill: #f6f8fa; }
.lane-bg.critical { fill: #fff4d6; }
.lane-name { font-size: 13px; fill: #1f2328; }
.lane-name.critical { font-weight: 700; fill: #7d4e00; }
.lane-status { font-size: 10px; fill: #59636e; }
.span { stroke: none; }
.span.critical { stroke: #bf8700; stroke-width: 1.5; }
.k-queued { fill: #fff; stroke: #afb8c1; stroke-dasharray: 3 2; }
.k-preparing { fill: #9fb3c8; }
.k-agent { fill: #2e9d5b; }
.k-retry_wait { fill: url(#hatch); stroke: #d4a72c; }
.k-commit { fill: #8e6cc9; }
.k-merge_wait { fill: #e6e9ef; }
.k-merge { fill: #1f8a96; }
.k-merging { fill: #7fa7c9; }
.k-verify { fill: #2e7d32; }
.k-land { fill: #1b5e20; }
.k-clean { fill: #d8d2ee; }
.o-failed { fill: #d64545; }
.o-timed_out { fill: #e8892b; }
.o-cancelled { fill: #9aa0a6; }
.o-conflicted { fill: #b03a8c; }
.o-blocked { fill: #8b4513; }
.o-skipped { fill: #f3f4f6; stroke: #9aa0a6; stroke-dasharray: 2 2; }
.o-running { fill: #4c8bf5; }
.bar-label { font-size: 10px; fill: #fff; pointer-events: none; }
.bar-label.dark { fill: #1f2328; }
.dep { fill: none; stroke: #8c959f; stroke-width: 1.2; }
.dep.critical { stroke: #bf8700; stroke-width: 2.2; }
.mark { stroke: #fff; stroke-width: 1; }
.m-violation { fill: #cf222e; }
.m-processes_ended { fill: #6e40c9; }
.m-skipped { fill: #59636e; }
.m-interrupted { fill: #1f2328; }
.gap { fill: url(#gap); }
.gap-label { font-size: 10px; fill: #59636e; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 14px; margin: 8px 0 0; font-size: 12px; color: #59636e; }
.legend span.sw { display: inline-block; width: 14px; height: 10px; border-radius: 2px; vertical-align: middle; margin-right: 4px; }
footer { margin: 32px 0 8px; color: #59636e; font-size: 12px; }
"#;

/// The page.
pub fn render(data: &Data) -> String {
    let r = &data.report;
    let mut out = String::new();
    let title = format!("agent-farm run {}", r.run_id);
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <meta name=\"generator\" content=\"agent-farm {}\"/>\n<title>{}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>",
        env!("CARGO_PKG_VERSION"),
        esc(&title)
    );
    header(&mut out, data);
    summary(&mut out, data);
    let _ = writeln!(
        out,
        "<section id=\"timeline\">\n<h2>Timeline</h2>\n{}\n{}</section>",
        svg(&data.timeline),
        legend()
    );
    domains_table(&mut out, data);
    findings(&mut out, data);
    kept(&mut out, data);
    processes(&mut out, data);
    denials(&mut out, data);
    warnings(&mut out, data);
    let _ = writeln!(
        out,
        "<footer>Written by agent-farm {} from the run record and its events \
         ({}).</footer>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION"),
        esc(&data.rec.paths().dir.display().to_string())
    );
    out
}

fn header(out: &mut String, data: &Data) {
    let r = &data.report;
    let finished = matches!(r.phase, Phase::Finished | Phase::Interrupted);
    let (class, words) = if !finished {
        ("b-run", format!("in progress ({})", r.phase))
    } else if r.exit_code == 0 {
        ("b-ok", outcome_words(0).to_string())
    } else if r.exit_code == crate::error::exit::NOT_LANDED {
        ("b-warn", outcome_words(r.exit_code).to_string())
    } else {
        (
            "b-bad",
            format!("{} (exit {})", outcome_words(r.exit_code), r.exit_code),
        )
    };
    let _ = writeln!(
        out,
        "<header>\n<h1>agent-farm run <code>{}</code><span class=\"badge {class}\" id=\"outcome\">{}</span></h1>\n\
         <p class=\"sub\">{} → {} · started {} · plan <code>{}</code> · {} domain(s), {} job(s)</p>\n</header>",
        esc(&r.run_id),
        esc(&words),
        esc(&r.base),
        esc(&r.into),
        esc(&super::rfc3339(data.rec.started_ms)),
        esc(&data.rec.plan.source.display().to_string()),
        r.domains.len(),
        r.metrics.jobs,
    );
}

fn card(out: &mut String, value: &str, key: &str) {
    let _ = writeln!(
        out,
        "<div class=\"card\"><div class=\"v\">{}</div><div class=\"k\">{}</div></div>",
        esc(value),
        esc(key)
    );
}

fn summary(out: &mut String, data: &Data) {
    let r = &data.report;
    let m = &r.metrics;
    out.push_str("<section id=\"summary\">\n<h2>Summary</h2>\n<div class=\"cards\">\n");
    let count = |f: &dyn Fn(&DomainRow) -> bool| r.domains.iter().filter(|d| f(d)).count();
    card(
        out,
        &format!(
            "{} / {}",
            count(&|d| d.status == DomainStatus::Merged),
            r.domains.len()
        ),
        "domains merged",
    );
    card(
        out,
        &count(&|d| d.status.is_failure() || d.status == DomainStatus::Conflicted).to_string(),
        "failed, skipped or conflicted",
    );
    card(out, &fmt_ms(m.wall_ms), "wall time");
    card(
        out,
        &format!("{} ({} agents)", fmt_ms(m.busy_ms), fmt_ms(m.agent_ms)),
        "work",
    );
    card(out, &format!("{:.2}×", m.speedup), "speedup");
    card(
        out,
        &format!("{:.0}% of {}", m.utilization * 100.0, m.slots),
        "utilization of slots",
    );
    card(
        out,
        &format!("{:.0}%", m.parallel_efficiency * 100.0),
        "efficiency of the bound",
    );
    card(out, &fmt_ms(m.critical_path_ms), "critical path");
    card(
        out,
        &if m.total_cost_usd > 0.0 {
            format!("${:.4}", m.total_cost_usd)
        } else {
            "–".into()
        },
        "cost reported",
    );
    card(
        out,
        &format!("{} / {}", m.total_input_tokens, m.total_output_tokens),
        "tokens in / out",
    );
    card(out, r.verify.as_deref().unwrap_or("not run"), "verify");
    card(
        out,
        match r.landed {
            Some(true) => "landed",
            Some(false) => "not landed",
            None => "–",
        },
        "result",
    );
    out.push_str("</div>\n<p>");
    if !m.critical_path.is_empty() {
        let _ = write!(
            out,
            "Critical path: <span class=\"critical-name\" id=\"critical-path\">{}</span> ({})",
            esc(&m.critical_path.join(" → ")),
            esc(&fmt_ms(m.critical_path_ms))
        );
        if let Some(b) = &m.bottleneck {
            let _ = write!(out, " · bottleneck: <code>{}</code>", esc(b));
        }
        out.push_str(". ");
    }
    if let Some(msg) = &r.land_message {
        let _ = write!(out, "Result: {}. ", esc(msg));
    }
    out.push_str("</p>\n");
    if let Some(cmd) = &r.land_command {
        let _ = writeln!(out, "<p>To land it yourself: <code>{}</code></p>", esc(cmd));
    }
    if let Some(v) = data.rec.verify.as_ref().and_then(|v| v.log.as_ref()) {
        let _ = writeln!(
            out,
            "<p class=\"muted\">Verify log: <code>{}</code></p>",
            esc(v)
        );
    }
    out.push_str("</section>\n");
}

// The picture's geometry, in SVG user units.
const WIDTH: f64 = 1200.0;
const LABEL_W: f64 = 170.0;
const RIGHT_PAD: f64 = 24.0;
const AXIS_H: f64 = 26.0;
const LANE_H: f64 = 30.0;
const BAR_H: f64 = 18.0;
const RESULT_GAP: f64 = 10.0;

/// How wide a gap between invocations is drawn: a small share of the picture.
fn gap_ms(t: &Timeline) -> u64 {
    let active: u64 = t
        .invocations
        .iter()
        .map(|i| i.end_ms.saturating_sub(i.start_ms))
        .sum();
    (active / 20).max(1)
}

fn nice_step(total_ms: u64) -> u64 {
    const STEPS: [u64; 19] = [
        10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000,
        300_000, 600_000, 900_000, 1_800_000, 3_600_000,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| total_ms / s <= 10)
        .unwrap_or_else(|| total_ms.div_ceil(10).max(1))
}

/// The timeline picture: one lane per domain (plan order) and one for the merged result.
pub fn svg(t: &Timeline) -> String {
    let gap = gap_ms(t);
    let total = t.axis_ms(t.end_ms, gap).max(1);
    let plot_w = WIDTH - LABEL_W - RIGHT_PAD;
    let x = |ms: u64| LABEL_W + t.axis_ms(ms, gap) as f64 / total as f64 * plot_w;
    let domain_lanes = t
        .lanes
        .iter()
        .filter(|l| l.kind == LaneKind::Domain)
        .count();
    let lane_y = |i: usize| {
        let extra = if i >= domain_lanes { RESULT_GAP } else { 0.0 };
        AXIS_H + i as f64 * LANE_H + extra
    };
    let height = lane_y(t.lanes.len()) + 8.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height:.0}\" \
         width=\"{WIDTH}\" height=\"{height:.0}\" role=\"img\" aria-label=\"timeline: one lane per domain\">\n\
         <defs>\n\
         <pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
         <rect width=\"6\" height=\"6\" fill=\"#fff8c5\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#d4a72c\" stroke-width=\"2\"/></pattern>\n\
         <pattern id=\"gap\" width=\"8\" height=\"8\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\
         <rect width=\"8\" height=\"8\" fill=\"#f6f8fa\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"8\" stroke=\"#d0d7de\" stroke-width=\"3\"/></pattern>\n\
         <marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">\
         <path d=\"M0,0 L10,5 L0,10 z\" fill=\"#8c959f\"/></marker>\n\
         <marker id=\"arrow-critical\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">\
         <path d=\"M0,0 L10,5 L0,10 z\" fill=\"#bf8700\"/></marker>\n\
         </defs>"
    );
    // Lane backgrounds and names.
    for (i, l) in t.lanes.iter().enumerate() {
        let y = lane_y(i);
        let mut class = String::from("lane-bg");
        if l.critical {
            class.push_str(" critical");
        } else if i % 2 == 1 {
            class.push_str(" alt");
        }
        let _ = writeln!(
            s,
            "<rect class=\"{class}\" x=\"0\" y=\"{y:.1}\" width=\"{WIDTH}\" height=\"{LANE_H}\"/>"
        );
    }
    // The axis: ticks over the plot, in time since the run started.
    let step = nice_step(total);
    s.push_str("<g class=\"axis\">\n");
    let mut tick = 0;
    while tick <= total {
        let tx = LABEL_W + tick as f64 / total as f64 * plot_w;
        let _ = writeln!(
            s,
            "<line x1=\"{tx:.1}\" y1=\"{:.1}\" x2=\"{tx:.1}\" y2=\"{:.1}\"/><text x=\"{tx:.1}\" y=\"16\" text-anchor=\"middle\">{}</text>",
            AXIS_H - 4.0,
            height - 8.0,
            esc(&fmt_ms(tick))
        );
        tick += step;
    }
    s.push_str("</g>\n");
    // Gaps between invocations, not to scale.
    for (from, to) in t.gaps() {
        let (x1, x2) = (x(from), x(to));
        let _ = writeln!(
            s,
            "<g class=\"gap-band\"><rect class=\"gap\" x=\"{x1:.1}\" y=\"{AXIS_H}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}</title></rect>\
             <text class=\"gap-label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text></g>",
            (x2 - x1).max(2.0),
            height - 8.0 - AXIS_H,
            esc(&format!(
                "agent-farm was not running for {} (not to scale)",
                fmt_ms(to - from)
            )),
            (x1 + x2) / 2.0,
            AXIS_H - 2.0,
            esc(&format!("+{}", fmt_ms(to - from)))
        );
    }
    // Lanes: name, spans, marks.
    for (i, l) in t.lanes.iter().enumerate() {
        let y = lane_y(i);
        let by = y + (LANE_H - BAR_H) / 2.0;
        let kind = match l.kind {
            LaneKind::Domain => "domain",
            LaneKind::Result => "result",
        };
        let crit = if l.critical { " critical" } else { "" };
        let _ = writeln!(
            s,
            "<g class=\"lane{crit}\" data-lane=\"{kind}\" data-name=\"{}\"{}>",
            esc(&l.name),
            l.status
                .map(|st| format!(" data-status=\"{st}\""))
                .unwrap_or_default()
        );
        let label = if l.critical {
            format!("★ {}", l.name)
        } else {
            l.name.clone()
        };
        let _ = writeln!(
            s,
            "<text class=\"lane-name{crit}\" x=\"8\" y=\"{:.1}\">{}<title>{}</title></text>",
            y + LANE_H / 2.0 + 4.5,
            esc(&truncate(&label, 20)),
            esc(&match (l.critical, l.status) {
                (true, Some(st)) => format!("{} ({st}; on the critical path)", l.name),
                (false, Some(st)) => format!("{} ({st})", l.name),
                (_, None) => l.name.clone(),
            })
        );
        if let Some(st) = l.status {
            let _ = writeln!(
                s,
                "<text class=\"lane-status\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{st}</text>",
                LABEL_W - 6.0,
                y + LANE_H / 2.0 + 4.0
            );
        }
        for sp in &l.spans {
            let (x1, x2) = (x(sp.start_ms), x(sp.end_ms));
            let w = (x2 - x1).max(2.0);
            let crit_bar = if l.critical && sp.kind != SpanKind::Queued {
                " critical"
            } else {
                ""
            };
            let mut tip = format!(
                "{}: {} · {} ({} → {})",
                l.name,
                sp.label,
                fmt_ms(sp.duration_ms()),
                fmt_ms(sp.start_ms.saturating_sub(t.start_ms)),
                fmt_ms(sp.end_ms.saturating_sub(t.start_ms))
            );
            if !sp.detail.is_empty() {
                tip.push_str(" · ");
                tip.push_str(&sp.detail);
            }
            let _ = writeln!(
                s,
                "<rect class=\"span k-{} o-{}{crit_bar}\" data-kind=\"{}\" x=\"{x1:.1}\" y=\"{by:.1}\" width=\"{w:.1}\" height=\"{BAR_H}\" rx=\"2\"><title>{}</title></rect>",
                sp.kind.as_str(),
                sp.outcome.as_str(),
                sp.kind.as_str(),
                esc(&tip)
            );
            // A label inside the bar when it fits.
            let text = match sp.kind {
                SpanKind::Agent => format!("#{}", sp.attempt.unwrap_or(0)),
                SpanKind::Queued | SpanKind::MergeWait => String::new(),
                k => k.describe().to_string(),
            };
            if !text.is_empty() && w > text.chars().count() as f64 * 6.0 + 6.0 {
                let dark = matches!(
                    (sp.kind, sp.outcome),
                    (SpanKind::RetryWait | SpanKind::Clean, _) | (_, Outcome::Skipped)
                );
                let _ = writeln!(
                    s,
                    "<text class=\"bar-label{}\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                    if dark { " dark" } else { "" },
                    x1 + 4.0,
                    by + BAR_H / 2.0 + 3.5,
                    esc(&text)
                );
            }
        }
        for m in &l.marks {
            let mx = x(m.at_ms);
            let my = by - 1.0;
            let shape = match m.kind {
                MarkKind::Violation | MarkKind::Interrupted => format!(
                    "M{mx:.1},{:.1} L{:.1},{my:.1} L{:.1},{my:.1} z",
                    my + 8.0,
                    mx - 5.0,
                    mx + 5.0
                ),
                _ => format!(
                    "M{mx:.1},{:.1} L{:.1},{:.1} L{mx:.1},{:.1} L{:.1},{:.1} z",
                    my - 1.0,
                    mx + 5.0,
                    my + 4.0,
                    my + 9.0,
                    mx - 5.0,
                    my + 4.0
                ),
            };
            let _ = writeln!(
                s,
                "<path class=\"mark m-{}\" d=\"{shape}\"><title>{}</title></path>",
                m.kind.as_str(),
                esc(&format!("{}: {}", l.name, m.detail))
            );
        }
        s.push_str("</g>\n");
    }
    // Dependencies: from a dependency's merge to its dependent's start.
    let lane_index = |name: &str| {
        t.lanes
            .iter()
            .position(|l| l.kind == LaneKind::Domain && l.name == name)
    };
    for e in &t.edges {
        let (Some(fi), Some(ti)) = (lane_index(&e.from), lane_index(&e.to)) else {
            continue;
        };
        let (x1, x2) = (x(e.from_ms), x(e.to_ms));
        let (y1, y2) = (lane_y(fi) + LANE_H / 2.0, lane_y(ti) + LANE_H / 2.0);
        let bend = ((x2 - x1).abs() / 2.0).max(18.0);
        let (class, marker) = if e.critical {
            ("dep critical", "arrow-critical")
        } else {
            ("dep", "arrow")
        };
        let _ = writeln!(
            s,
            "<path class=\"{class}\" data-from=\"{}\" data-to=\"{}\" d=\"M{x1:.1},{y1:.1} C{:.1},{y1:.1} {:.1},{y2:.1} {x2:.1},{y2:.1}\" marker-end=\"url(#{marker})\"><title>{}</title></path>",
            esc(&e.from),
            esc(&e.to),
            x1 + bend,
            x2 - bend,
            esc(&format!("{} waited for {} to merge", e.to, e.from))
        );
    }
    s.push_str("</svg>");
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn legend() -> String {
    let mut s = String::from("<div class=\"legend\">\n");
    let sw = |s: &mut String, style: &str, text: &str| {
        let _ = writeln!(
            s,
            "<span><span class=\"sw\" style=\"{style}\"></span>{}</span>",
            esc(text)
        );
    };
    sw(&mut s, "border: 1px dashed #afb8c1", "queued");
    sw(&mut s, "background: #9fb3c8", "preparing");
    sw(&mut s, "background: #2e9d5b", "agent attempt");
    sw(
        &mut s,
        "background: #fff8c5; border: 1px solid #d4a72c",
        "retry wait",
    );
    sw(&mut s, "background: #8e6cc9", "commit/audit");
    sw(&mut s, "background: #e6e9ef", "waiting to merge");
    sw(&mut s, "background: #1f8a96", "merge");
    sw(&mut s, "background: #2e7d32", "verify");
    sw(&mut s, "background: #1b5e20", "land");
    sw(&mut s, "background: #d8d2ee", "cleanup");
    sw(&mut s, "background: #d64545", "failed");
    sw(&mut s, "background: #e8892b", "timed out");
    sw(&mut s, "background: #b03a8c", "conflicted");
    sw(&mut s, "background: #9aa0a6", "cancelled");
    sw(&mut s, "background: #4c8bf5", "running");
    sw(
        &mut s,
        "background: #fff4d6; border: 1px solid #bf8700",
        "★ critical path",
    );
    sw(&mut s, "background: #cf222e", "ownership violation");
    sw(&mut s, "background: #6e40c9", "processes ended");
    s.push_str("<span>arrows: a dependency's merge → its dependent's start</span>\n</div>\n");
    s
}

fn domains_table(out: &mut String, data: &Data) {
    let r = &data.report;
    out.push_str(
        "<section id=\"domains\">\n<h2>Domains</h2>\n<table>\n<thead><tr><th>domain</th><th>status</th>\
         <th class=\"num\">tries</th><th class=\"num\">exit</th><th class=\"num\">time</th><th class=\"num\">agent</th>\
         <th class=\"num\">files</th><th class=\"num\">+/-</th><th class=\"num\">turns</th><th class=\"num\">tokens in/out</th>\
         <th class=\"num\">cost</th><th>result</th><th>branch</th></tr></thead>\n<tbody>\n",
    );
    for d in &r.domains {
        let critical = r.metrics.critical_path.contains(&d.domain);
        let result = match (&d.status, &d.reason) {
            (_, Some(reason)) => reason.clone(),
            (s, None) => s.to_string(),
        };
        let _ = writeln!(
            out,
            "<tr data-domain=\"{}\"><td{}>{}</td><td class=\"st st-{}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">+{}/-{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{} / {}</td><td class=\"num\">{}</td><td>{}</td><td class=\"branch\"><code>{}</code>{}</td></tr>",
            esc(&d.domain),
            if critical {
                " class=\"critical-name\""
            } else {
                ""
            },
            esc(&if critical {
                format!("★ {}", d.domain)
            } else {
                d.domain.clone()
            }),
            d.status,
            d.status,
            d.attempts,
            d.exit_code.map_or("–".into(), |c| c.to_string()),
            fmt_ms(d.duration_ms),
            fmt_ms(d.agent_ms),
            d.files_changed,
            d.insertions,
            d.deletions,
            if d.turns > 0 {
                d.turns.to_string()
            } else {
                "–".into()
            },
            d.input_tokens,
            d.output_tokens,
            if d.cost_usd > 0.0 {
                format!("${:.4}", d.cost_usd)
            } else {
                "–".into()
            },
            esc(&result),
            esc(&d.branch),
            if d.branch_kept {
                " <span class=\"muted\">(kept)</span>"
            } else {
                ""
            },
        );
    }
    out.push_str("</tbody>\n</table>\n");
    let logs: Vec<&DomainRow> = r.domains.iter().collect();
    if !logs.is_empty() {
        out.push_str("<p class=\"muted\">Agent output: <code>agent-farm logs DOMAIN</code>");
        let _ = write!(out, " (e.g. <code>{}</code>)", esc(&logs[0].log));
        out.push_str(".</p>\n");
    }
    out.push_str("</section>\n");
}

fn findings(out: &mut String, data: &Data) {
    let r = &data.report;
    out.push_str("<section id=\"ownership\">\n<h2>Ownership</h2>\n");
    let rows: Vec<_> = r
        .domains
        .iter()
        .flat_map(|d| d.violations.iter().map(move |v| (d, v)))
        .collect();
    if rows.is_empty() && r.collisions.is_empty() {
        out.push_str("<p class=\"muted\">No domain changed a path outside the ones it owns.</p>\n");
    }
    if !rows.is_empty() {
        out.push_str(
            "<table>\n<thead><tr><th>domain</th><th>change</th><th>path</th><th>owner / where</th>\
             <th>detected</th><th>action</th></tr></thead>\n<tbody>\n",
        );
        for (d, v) in rows {
            let owner = match &v.outside {
                Some(o) => format!("outside its worktree: {o}"),
                None => v.owner.clone().unwrap_or_else(|| "nobody".into()),
            };
            let _ = writeln!(
                out,
                "<tr class=\"violation\" data-detected=\"{}\"><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                v.detected.as_str(),
                esc(&d.domain),
                esc(&v.change),
                esc(&v.path),
                esc(&owner),
                esc(v.detected.describe()),
                esc(&v.action)
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    if !r.collisions.is_empty() {
        out.push_str("<ul>\n");
        for c in &r.collisions {
            let _ = writeln!(
                out,
                "<li class=\"collision\"><code>{}</code> was changed by {}</li>",
                esc(&c.path),
                esc(&c.domains.join(" and "))
            );
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");
}

fn kept(out: &mut String, data: &Data) {
    let r = &data.report;
    out.push_str("<section id=\"kept\">\n<h2>Kept branches and refs</h2>\n");
    if r.kept.is_empty() {
        out.push_str("<p class=\"muted\">Git holds nothing more of this run.</p>\n");
    } else {
        out.push_str(
            "<table>\n<thead><tr><th>ref</th><th>why</th><th>inspect with</th></tr></thead>\n<tbody>\n",
        );
        for k in &r.kept {
            let _ = writeln!(
                out,
                "<tr class=\"kept\"><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&k.name),
                esc(&k.reason),
                k.inspect
                    .as_ref()
                    .map(|c| format!("<code>{}</code>", esc(c)))
                    .unwrap_or_default()
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</section>\n");
}

fn processes(out: &mut String, data: &Data) {
    let rows: Vec<_> = data
        .report
        .domains
        .iter()
        .flat_map(|d| d.ended_processes.iter().map(move |p| (d, p)))
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str(
        "<section id=\"processes\">\n<h2>Processes ended by the supervisor</h2>\n<table>\n\
         <thead><tr><th>domain</th><th class=\"num\">pid</th><th>command</th><th>signal</th></tr></thead>\n<tbody>\n",
    );
    for (d, p) in rows {
        let _ = writeln!(
            out,
            "<tr class=\"ended-process\"><td>{}</td><td class=\"num\">{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&d.domain),
            p.pid,
            esc(&p.command),
            esc(&p.signal)
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn denials(out: &mut String, data: &Data) {
    let rows: Vec<_> = data
        .report
        .domains
        .iter()
        .flat_map(|d| d.denials.iter().map(move |x| (d, x)))
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str(
        "<section id=\"denials\">\n<h2>Refused tool calls</h2>\n<table>\n\
         <thead><tr><th>domain</th><th>tool</th><th>path or command</th><th>message</th></tr></thead>\n<tbody>\n",
    );
    for (d, x) in rows {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&d.domain),
            esc(&x.tool),
            esc(x.path.as_deref().unwrap_or("")),
            esc(&x.message)
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn warnings(out: &mut String, data: &Data) {
    let r = &data.report;
    if r.warnings.is_empty() {
        return;
    }
    out.push_str("<section id=\"warnings\">\n<h2>Warnings</h2>\n<ul>\n");
    for w in &r.warnings {
        let _ = writeln!(out, "<li>{}</li>", esc(w));
    }
    out.push_str("</ul>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{FarmEvent, Timed};
    use crate::record::{sample, sample_apply};

    #[test]
    fn a_resumed_run_shows_its_gap_and_escapes_what_the_run_said() {
        let mut rec = sample(&["a"], 0);
        let mut events = Vec::new();
        let mut ev = |rec: &mut crate::record::RunRecord, at_ms: u64, event: FarmEvent| {
            sample_apply(rec, at_ms, event.clone());
            events.push(Timed { at_ms, event });
        };
        ev(
            &mut rec,
            0,
            FarmEvent::RunStarted {
                run_id: "r".into(),
                domains: 1,
                jobs: 1,
                base: "main".into(),
                base_commit: "b".repeat(40),
                into: "main".into(),
                into_commit: None,
            },
        );
        ev(
            &mut rec,
            10,
            FarmEvent::DomainPreparing {
                domain: "a".into(),
                start_commit: "b".repeat(40),
            },
        );
        ev(&mut rec, 3_600_000, FarmEvent::Resumed { pid: 2 });
        ev(
            &mut rec,
            3_600_010,
            FarmEvent::DomainFinished {
                domain: "a".into(),
                status: crate::vocab::DomainStatus::Failed,
                reason: Some("setup failed: <script>alert(1)</script> & more".into()),
                head: None,
                files: vec![],
                insertions: 0,
                deletions: 0,
            },
        );
        ev(&mut rec, 3_600_020, FarmEvent::RunFinished { exit_code: 6 });
        let page = render(&Data::new(rec, &events, 3_700_000));
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("setup failed: &lt;script&gt;alert(1)&lt;/script&gt; &amp; more"));
        assert_eq!(page.matches("class=\"gap-band\"").count(), 1);
        assert!(page.contains("agent-farm was not running for 59m59s (not to scale)"));
        assert_eq!(page.matches("data-lane=\"domain\"").count(), 1);
        assert!(page.contains("domains failed (exit 6)"));
    }
}
