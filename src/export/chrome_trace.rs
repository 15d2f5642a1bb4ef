//! The timeline as a Chrome trace (`--format chrome-trace`): Trace Event JSON that Perfetto
//! (ui.perfetto.dev) and `chrome://tracing` load. One process, the run (`pid` 1); one thread per
//! lane (`tid`: a domain, in plan order, then the merged result); one complete (`"X"`) event per
//! span of the timeline; instant (`"i"`) events for its marks (violations, ended processes).
//! Times are microseconds since the run started.

use serde_json::{Value, json};

use super::Data;
use crate::timeline::Timeline;

/// The `tid` of lane `i`.
fn tid(i: usize) -> usize {
    i + 1
}

pub fn events(t: &Timeline, run_id: &str) -> Vec<Value> {
    let us = |ms: u64| ms.saturating_sub(t.start_ms) * 1000;
    let mut out = vec![json!({
        "name": "process_name", "ph": "M", "pid": 1, "tid": 0,
        "args": { "name": format!("agent-farm run {run_id}") },
    })];
    for (i, l) in t.lanes.iter().enumerate() {
        out.push(json!({
            "name": "thread_name", "ph": "M", "pid": 1, "tid": tid(i),
            "args": { "name": l.name },
        }));
        out.push(json!({
            "name": "thread_sort_index", "ph": "M", "pid": 1, "tid": tid(i),
            "args": { "sort_index": i },
        }));
    }
    for (i, s) in t.spans() {
        let mut args = json!({
            "lane": t.lanes[i].name,
            "kind": s.kind.as_str(),
            "outcome": s.outcome.as_str(),
            "critical": t.lanes[i].critical,
        });
        if let Some(a) = s.attempt {
            args["attempt"] = json!(a);
        }
        if !s.detail.is_empty() {
            args["detail"] = json!(s.detail);
        }
        out.push(json!({
            "name": s.label, "cat": s.kind.as_str(), "ph": "X",
            "ts": us(s.start_ms), "dur": s.duration_ms() * 1000,
            "pid": 1, "tid": tid(i), "args": args,
        }));
    }
    for (i, l) in t.lanes.iter().enumerate() {
        for m in &l.marks {
            out.push(json!({
                "name": m.kind.as_str(), "cat": "mark", "ph": "i", "s": "t",
                "ts": us(m.at_ms), "pid": 1, "tid": tid(i),
                "args": { "detail": m.detail },
            }));
        }
    }
    out
}

pub fn render(data: &Data) -> String {
    let doc = json!({
        "traceEvents": events(&data.timeline, &data.report.run_id),
        "displayTimeUnit": "ms",
        "otherData": {
            "run_id": data.report.run_id,
            "exit_code": data.report.exit_code,
            "critical_path": data.timeline.critical_path,
            "version": super::json::VERSION,
        },
    });
    serde_json::to_string(&doc).unwrap_or_default() + "\n"
}
