//! A domain's output log as a readable transcript (`agent-farm logs`): Claude Code's
//! stream-json becomes the assistant's text, each tool use with its path or command, results
//! abbreviated, refusals marked, API retries and the final result; lines that are not the
//! stream (stderr, agent-farm's attempt headers, other agents' plain output) pass through as
//! they are. Pure and incremental: one log line in, zero or more transcript lines out.

use std::collections::BTreeMap;

use serde_json::Value;

/// Longest tool result excerpt shown.
const RESULT_CHARS: usize = 160;

/// The renderer's state: tool names by id (to name a result), the attempt being read.
#[derive(Debug, Default)]
pub struct Transcript {
    tools: BTreeMap<String, String>,
    /// Paths are shown relative to this directory (the domain's worktree).
    worktree: Option<String>,
    /// Only this attempt's lines, when set.
    only: Option<u32>,
    attempt: Option<u32>,
}

/// The attempt number of an attempt header line ("=== agent-farm: domain a, attempt 2, …").
fn attempt_header(line: &str) -> Option<u32> {
    let rest = line.strip_prefix("=== agent-farm: domain ")?;
    let at = rest.find(", attempt ")? + ", attempt ".len();
    rest[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn abbreviate(text: &str, max: usize) -> String {
    let first = text.lines().next().unwrap_or("").trim();
    let more = text.lines().count().saturating_sub(1);
    let mut s: String = first.chars().take(max).collect();
    if first.chars().count() > max {
        s.push('…');
    }
    if more > 0 {
        s.push_str(&format!(
            " (+{more} line{})",
            if more == 1 { "" } else { "s" }
        ));
    }
    s
}

use crate::runner::stream::content_text as text_of;

impl Transcript {
    pub fn new(worktree: Option<String>, only: Option<u32>) -> Self {
        Transcript {
            worktree: worktree.map(|w| format!("{}/", w.trim_end_matches('/'))),
            only,
            ..Default::default()
        }
    }

    fn rel<'a>(&self, path: &'a str) -> &'a str {
        match &self.worktree {
            Some(w) => path.strip_prefix(w.as_str()).unwrap_or(path),
            None => path,
        }
    }

    fn tool_use(&self, name: &str, input: &Value) -> String {
        let s = |k: &str| input.get(k).and_then(Value::as_str);
        match name {
            "Bash" => format!("→ Bash `{}`", abbreviate(s("command").unwrap_or(""), 120)),
            "Write" | "Edit" | "MultiEdit" | "Read" | "NotebookEdit" => format!(
                "→ {name} {}",
                self.rel(s("file_path").or(s("notebook_path")).unwrap_or("?"))
            ),
            "Glob" | "Grep" => format!(
                "→ {name} {}{}",
                s("pattern").unwrap_or(""),
                s("path")
                    .map(|p| format!(" in {}", self.rel(p)))
                    .unwrap_or_default()
            ),
            _ => format!("→ {name}"),
        }
    }

    /// The transcript lines for one log line.
    pub fn line(&mut self, line: &str) -> Vec<String> {
        if let Some(n) = attempt_header(line) {
            self.attempt = Some(n);
            self.tools.clear();
        }
        if self.only.is_some() && self.attempt != self.only {
            return Vec::new();
        }
        let v = match serde_json::from_str::<Value>(line.trim()) {
            Ok(v @ Value::Object(_)) => v,
            _ => return vec![line.to_string()],
        };
        let str_at = |p: &str| v.pointer(p).and_then(Value::as_str);
        match str_at("/type") {
            Some("system") => match str_at("/subtype") {
                Some("init") => vec![format!(
                    "session {} · model {}",
                    str_at("/session_id").unwrap_or("?"),
                    str_at("/model").unwrap_or("?")
                )],
                Some("api_retry") => vec![format!(
                    "! API error {}{}, retry {} in {}ms",
                    v.get("error_status")
                        .and_then(Value::as_u64)
                        .map(|s| format!("{s} "))
                        .unwrap_or_default(),
                    str_at("/error").unwrap_or(""),
                    v.get("attempt").and_then(Value::as_u64).unwrap_or(0),
                    v.get("retry_delay_ms")
                        .and_then(Value::as_f64)
                        .unwrap_or(0.0)
                        .round()
                )],
                _ => Vec::new(),
            },
            Some("assistant") => {
                let mut out = Vec::new();
                for block in v
                    .pointer("/message/content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            let t = block.get("text").and_then(Value::as_str).unwrap_or("");
                            if !t.trim().is_empty() {
                                out.push(format!("assistant: {}", t.trim()));
                            }
                        }
                        Some("tool_use") => {
                            let name = block.get("name").and_then(Value::as_str).unwrap_or("?");
                            if let Some(id) = block.get("id").and_then(Value::as_str) {
                                self.tools.insert(id.to_string(), name.to_string());
                            }
                            out.push(
                                self.tool_use(name, block.get("input").unwrap_or(&Value::Null)),
                            );
                        }
                        _ => {}
                    }
                }
                out
            }
            Some("user") => {
                let mut out = Vec::new();
                for block in v
                    .pointer("/message/content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                {
                    let text = text_of(block.get("content").unwrap_or(&Value::Null));
                    let error = block.get("is_error").and_then(Value::as_bool) == Some(true);
                    let tool = block
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .and_then(|id| self.tools.get(id))
                        .map(String::as_str)
                        .unwrap_or("tool");
                    let lower = text.to_ascii_lowercase();
                    let refused =
                        error && (lower.contains("permission") || lower.contains("was blocked"));
                    let mark = if refused {
                        "✗ refused"
                    } else if error {
                        "← error"
                    } else {
                        "←"
                    };
                    out.push(format!(
                        "  {mark} {tool}: {}",
                        abbreviate(&text, RESULT_CHARS)
                    ));
                }
                out
            }
            Some("result") => {
                let cost = v.get("total_cost_usd").and_then(Value::as_f64);
                let turns = v.get("num_turns").and_then(Value::as_u64);
                let secs = v
                    .get("duration_ms")
                    .and_then(Value::as_f64)
                    .map(|ms| ms / 1000.0);
                let mut facts = vec![str_at("/subtype").unwrap_or("?").to_string()];
                if v.get("is_error").and_then(Value::as_bool) == Some(true) {
                    facts.push("error".into());
                }
                if let Some(t) = turns {
                    facts.push(format!("{t} turns"));
                }
                if let Some(c) = cost {
                    facts.push(format!("${c:.4}"));
                }
                if let Some(s) = secs {
                    facts.push(format!("{s:.1}s"));
                }
                let mut out = vec![format!("result: {}", facts.join(" · "))];
                if let Some(r) = str_at("/result").filter(|r| !r.trim().is_empty()) {
                    out.push(format!("  {}", abbreviate(r, 400)));
                }
                out
            }
            Some("rate_limit_event") => vec![format!(
                "! rate limit: {}",
                str_at("/rate_limit_info/status").unwrap_or("?")
            )],
            // Deltas, hooks and the like: not worth a line. An object that is not the stream
            // is someone's own output.
            Some(_) => Vec::new(),
            None => vec![line.to_string()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(lines: &[&str], only: Option<u32>) -> Vec<String> {
        let mut t = Transcript::new(Some("/w/api".into()), only);
        lines.iter().flat_map(|l| t.line(l)).collect()
    }

    #[test]
    fn a_stream_becomes_a_transcript() {
        let out = render(
            &[
                "=== agent-farm: domain api, attempt 1, argv [\"claude\"]",
                r#"{"type":"system","subtype":"init","session_id":"s-1","model":"claude-x","cwd":"/w/api"}"#,
                r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Writing the handler."}]}}"#,
                r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Write","input":{"file_path":"/w/api/src/h.rs","content":"x"}}]}}"#,
                r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":"File created successfully at: /w/api/src/h.rs\nmore\nand more"}]}}"#,
                r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t2","name":"Bash","input":{"command":"git push origin HEAD"}}]}}"#,
                r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t2","is_error":true,"content":"Permission to use Bash with command git push origin HEAD has been denied."}]}}"#,
                r#"{"type":"system","subtype":"api_retry","attempt":1,"error_status":429,"error":"rate_limit","retry_delay_ms":1230.6}"#,
                r#"{"type":"stream_event","event":{}}"#,
                "some stderr line",
                r#"{"type":"result","subtype":"success","is_error":false,"num_turns":3,"total_cost_usd":0.0123,"duration_ms":4200,"result":"Done."}"#,
            ],
            None,
        );
        assert_eq!(
            out,
            [
                "=== agent-farm: domain api, attempt 1, argv [\"claude\"]",
                "session s-1 · model claude-x",
                "assistant: Writing the handler.",
                "→ Write src/h.rs",
                "  ← Write: File created successfully at: /w/api/src/h.rs (+2 lines)",
                "→ Bash `git push origin HEAD`",
                "  ✗ refused Bash: Permission to use Bash with command git push origin HEAD has been denied.",
                "! API error 429 rate_limit, retry 1 in 1231ms",
                "some stderr line",
                "result: success · 3 turns · $0.0123 · 4.2s",
                "  Done.",
            ]
        );
    }

    #[test]
    fn one_attempt_only() {
        let out = render(
            &[
                "=== agent-farm: domain api, attempt 1, argv []",
                "first",
                "=== agent-farm: attempt 1 ended: exit 1",
                "=== agent-farm: domain api, attempt 2, argv []",
                "second",
            ],
            Some(2),
        );
        assert_eq!(
            out,
            ["=== agent-farm: domain api, attempt 2, argv []", "second"]
        );
    }

    #[test]
    fn long_results_are_cut() {
        let long = "x".repeat(500);
        let line = format!(
            r#"{{"type":"user","message":{{"content":[{{"type":"tool_result","tool_use_id":"z","content":"{long}"}}]}}}}"#
        );
        let out = render(&[&line], None);
        assert!(out[0].chars().count() < 200, "{}", out[0]);
        assert!(out[0].ends_with('…'));
    }
}
