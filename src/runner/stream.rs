//! Reading Claude Code's `--output-format stream-json` events (one JSON object per line) into
//! what the farm cares about: session, tool uses, refusals, API retries and the final result.
//! Pure: lines in, observations out. Unknown event types and fields are ignored.

use serde_json::Value;

pub use crate::vocab::{AgentUsage, Denial, FailureKind, ResultInfo};

/// Something worth telling the rest of the farm about, as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    Session {
        session_id: String,
        model: Option<String>,
    },
    ToolUse {
        tool: String,
        path: Option<String>,
    },
    Refused(Denial),
    ApiRetry {
        attempt: u32,
        status: Option<u16>,
        error: String,
        delay_ms: u64,
    },
    Result,
}

#[derive(Debug, Default)]
pub struct StreamState {
    pub usage: AgentUsage,
    /// tool_use id → (tool, path), to attribute refusals reported in tool results.
    pending: Vec<(String, String, Option<String>)>,
}

fn tool_path(name: &str, input: &Value) -> Option<String> {
    let key = match name {
        "Write" | "Edit" | "Read" | "MultiEdit" | "NotebookEdit" => "file_path",
        "Glob" | "Grep" => "path",
        _ => "file_path",
    };
    input
        .get(key)
        .or_else(|| input.get("notebook_path"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            (name == "Bash")
                .then(|| input.get("command").and_then(Value::as_str))
                .flatten()
                .map(|c| c.chars().take(80).collect())
        })
}

fn is_refusal(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("denied by your permission settings")
        || t.contains("permission to use")
        || t.contains("haven't granted")
        || t.contains("requested permissions")
        || t.contains("was blocked")
}

/// The text of a message's or tool result's content: a string, or the text blocks of a list.
pub fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

impl StreamState {
    /// Digest one line of the stream. Lines that are not JSON objects are ignored.
    pub fn feed(&mut self, line: &str) -> Vec<Observation> {
        let mut out = Vec::new();
        let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
            return out;
        };
        let u = &mut self.usage;
        match v.get("type").and_then(Value::as_str) {
            Some("system") => match v.get("subtype").and_then(Value::as_str) {
                Some("init") => {
                    let sid = v
                        .get("session_id")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    u.model = v.get("model").and_then(Value::as_str).map(str::to_owned);
                    if let Some(s) = sid {
                        u.session_id = Some(s.clone());
                        out.push(Observation::Session {
                            session_id: s,
                            model: u.model.clone(),
                        });
                    }
                }
                Some("api_retry") => {
                    u.api_retries += 1;
                    out.push(Observation::ApiRetry {
                        attempt: v.get("attempt").and_then(Value::as_u64).unwrap_or(0) as u32,
                        status: v
                            .get("error_status")
                            .and_then(Value::as_u64)
                            .map(|s| s as u16),
                        error: v
                            .get("error")
                            .and_then(Value::as_str)
                            .unwrap_or("unknown")
                            .to_string(),
                        // The CLI sends a float (1230.63) as often as an integer.
                        delay_ms: v
                            .get("retry_delay_ms")
                            .and_then(Value::as_f64)
                            .map_or(0, |ms| ms.max(0.0).round() as u64),
                    });
                }
                _ => {}
            },
            Some("assistant") => {
                let msg = &v["message"];
                let id = msg.get("id").and_then(Value::as_str).unwrap_or("");
                // One event per content block; count a turn once per message id.
                if !id.is_empty()
                    && self
                        .pending
                        .iter()
                        .all(|(m, _, _)| m != &format!("msg:{id}"))
                {
                    u.turns += 1;
                    // Tokens so far, from each message's usage (the cost comes with the result).
                    let mu = &msg["usage"];
                    let n = |k: &str| mu.get(k).and_then(Value::as_u64).unwrap_or(0);
                    u.live_tokens += n("input_tokens")
                        + n("cache_read_input_tokens")
                        + n("cache_creation_input_tokens")
                        + n("output_tokens");
                    self.pending
                        .push((format!("msg:{id}"), String::new(), None));
                }
                for block in msg["content"].as_array().into_iter().flatten() {
                    if block.get("type").and_then(Value::as_str) == Some("tool_use") {
                        let name = block["name"].as_str().unwrap_or("?").to_string();
                        let path = tool_path(&name, &block["input"]);
                        let tid = block["id"].as_str().unwrap_or("").to_string();
                        u.tool_uses += 1;
                        self.pending.push((tid, name.clone(), path.clone()));
                        out.push(Observation::ToolUse { tool: name, path });
                    }
                }
            }
            Some("user") => {
                for block in v["message"]["content"].as_array().into_iter().flatten() {
                    if block.get("type").and_then(Value::as_str) != Some("tool_result")
                        || block.get("is_error").and_then(Value::as_bool) != Some(true)
                    {
                        continue;
                    }
                    let text = content_text(&block["content"]);
                    if !is_refusal(&text) {
                        continue;
                    }
                    let tid = block["tool_use_id"].as_str().unwrap_or("");
                    let (tool, path) = self
                        .pending
                        .iter()
                        .find(|(id, _, _)| id == tid)
                        .map(|(_, t, p)| (t.clone(), p.clone()))
                        .unwrap_or_else(|| ("?".into(), None));
                    let d = Denial {
                        tool,
                        path,
                        message: text.chars().take(300).collect(),
                    };
                    if !u.denials.contains(&d) {
                        u.denials.push(d.clone());
                        out.push(Observation::Refused(d));
                    }
                }
            }
            Some("result") => {
                u.cost_usd = v
                    .get("total_cost_usd")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                u.duration_ms = v.get("duration_ms").and_then(Value::as_u64);
                if let Some(n) = v.get("num_turns").and_then(Value::as_u64) {
                    u.turns = n as u32;
                }
                let usage = &v["usage"];
                let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
                u.input_tokens = n("input_tokens");
                u.output_tokens = n("output_tokens");
                u.cache_read_tokens = n("cache_read_input_tokens");
                u.cache_creation_tokens = n("cache_creation_input_tokens");
                if u.session_id.is_none() {
                    u.session_id = v
                        .get("session_id")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                }
                for d in v["permission_denials"].as_array().into_iter().flatten() {
                    let tool = d["tool_name"].as_str().unwrap_or("?").to_string();
                    let path = tool_path(&tool, &d["tool_input"]);
                    let den = Denial {
                        tool,
                        path,
                        message: "listed in permission_denials".into(),
                    };
                    if !u
                        .denials
                        .iter()
                        .any(|x| x.tool == den.tool && x.path == den.path)
                    {
                        u.denials.push(den.clone());
                        out.push(Observation::Refused(den));
                    }
                }
                u.result = Some(ResultInfo {
                    subtype: v["subtype"].as_str().unwrap_or("").to_string(),
                    is_error: v["is_error"].as_bool().unwrap_or(false),
                    api_error_status: v
                        .get("api_error_status")
                        .and_then(Value::as_u64)
                        .map(|s| s as u16),
                    text: v["result"]
                        .as_str()
                        .unwrap_or("")
                        .chars()
                        .take(500)
                        .collect(),
                });
                out.push(Observation::Result);
            }
            _ => {}
        }
        out
    }

    /// The failure the agent reported, if its final result says it failed.
    /// `exit_code` is the process exit code (`None` if it was killed).
    pub fn failure(&self, exit_code: Option<i32>) -> Option<(FailureKind, String)> {
        let Some(r) = &self.usage.result else {
            return match exit_code {
                Some(0) | None => Some((
                    FailureKind::Crash,
                    "the agent ended without a final result".into(),
                )),
                Some(c) => Some((
                    FailureKind::Crash,
                    format!("the agent exited with {c} without a final result"),
                )),
            };
        };
        if !r.is_error && r.subtype == "success" {
            return None;
        }
        let text = r.text.clone();
        let kind = match (r.api_error_status, r.subtype.as_str()) {
            (Some(401) | Some(403), _) => FailureKind::Auth,
            (Some(429), _) => FailureKind::RateLimit,
            (Some(529), _) => FailureKind::Overloaded,
            (Some(_), _) => FailureKind::Api,
            (None, s) if s.starts_with("error_max") => FailureKind::Limit,
            // Claude Code 2.1 reports repeated 529s with a null status.
            (None, _) if text.contains("529") || text.contains("Overloaded") => {
                FailureKind::Overloaded
            }
            (None, _) if text.contains("429") || text.contains("rate limit") => {
                FailureKind::RateLimit
            }
            (None, _)
                if text.contains("Unable to connect") || text.contains("Connection error") =>
            {
                FailureKind::Connection
            }
            (None, _) if text.contains("Invalid API key") || text.contains("authentication") => {
                FailureKind::Auth
            }
            _ => FailureKind::ToolCall,
        };
        let msg = if text.is_empty() {
            format!("result subtype {}", r.subtype)
        } else {
            text
        };
        Some((kind, msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(lines: &[&str]) -> (StreamState, Vec<Observation>) {
        let mut s = StreamState::default();
        let mut obs = Vec::new();
        for l in lines {
            obs.extend(s.feed(l));
        }
        (s, obs)
    }

    const INIT: &str = r#"{"type":"system","subtype":"init","cwd":"/w","session_id":"s-1","tools":["Write"],"model":"claude-x","permissionMode":"acceptEdits","unknown":1}"#;

    #[test]
    fn success_with_tools_and_cost() {
        let (s, obs) = feed_all(&[
            INIT,
            "not json at all",
            r#"{"type":"assistant","message":{"id":"m1","content":[{"type":"tool_use","id":"t1","name":"Write","input":{"file_path":"/w/a.rs","content":"x"}}]}}"#,
            r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":"ok"}]}}"#,
            r#"{"type":"assistant","message":{"id":"m2","content":[{"type":"text","text":"done"}]}}"#,
            r#"{"type":"some_future_event","x":1}"#,
            r#"{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"duration_ms":369,"num_turns":2,"result":"done","session_id":"s-1","total_cost_usd":0.003,"usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":2},"permission_denials":[]}"#,
        ]);
        assert_eq!(
            obs[..2],
            [
                Observation::Session {
                    session_id: "s-1".into(),
                    model: Some("claude-x".into())
                },
                Observation::ToolUse {
                    tool: "Write".into(),
                    path: Some("/w/a.rs".into())
                }
            ]
        );
        assert_eq!(s.usage.turns, 2);
        assert_eq!(s.usage.cost_usd, 0.003);
        assert_eq!(s.usage.input_tokens, 10);
        assert_eq!(s.failure(Some(0)), None);
    }

    #[test]
    fn refusals_from_tool_results_and_denials() {
        let (s, obs) = feed_all(&[
            r#"{"type":"assistant","message":{"id":"m1","content":[{"type":"tool_use","id":"t9","name":"Edit","input":{"file_path":"/w/src/ui/x.ts","old_string":"a","new_string":"b"}}]}}"#,
            r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t9","is_error":true,"content":"File is in a directory that is denied by your permission settings."}]}}"#,
            r#"{"type":"result","subtype":"success","is_error":false,"num_turns":2,"result":"ok","total_cost_usd":0.01,"permission_denials":[{"tool_name":"Bash","tool_use_id":"t10","tool_input":{"command":"rm -rf x"}}]}"#,
        ]);
        assert_eq!(s.usage.denials.len(), 2);
        assert_eq!(s.usage.denials[0].path.as_deref(), Some("/w/src/ui/x.ts"));
        assert_eq!(s.usage.denials[1].tool, "Bash");
        assert!(obs.iter().any(|o| matches!(o, Observation::Refused(_))));
    }

    #[test]
    fn failures_are_classified() {
        let result = |status: &str, text: &str| {
            format!(
                r#"{{"type":"result","subtype":"success","is_error":true,"api_error_status":{status},"result":"{text}","total_cost_usd":0}}"#
            )
        };
        let kind = |line: String| {
            let (s, _) = feed_all(&[&line]);
            s.failure(Some(1)).map(|f| f.0)
        };
        assert_eq!(
            kind(result("401", "Invalid API key")),
            Some(FailureKind::Auth)
        );
        assert_eq!(
            kind(result("429", "API Error: Request rejected (429)")),
            Some(FailureKind::RateLimit)
        );
        assert_eq!(
            kind(result("529", "API Error: 529 Overloaded")),
            Some(FailureKind::Overloaded)
        );
        assert_eq!(
            kind(result("500", "API Error: 500")),
            Some(FailureKind::Api)
        );
        assert_eq!(
            kind(result("null", "API Error: Repeated 529 Overloaded errors.")),
            Some(FailureKind::Overloaded)
        );
        assert_eq!(
            kind(result(
                "null",
                "API Error: Unable to connect to API (ConnectionRefused)"
            )),
            Some(FailureKind::Connection)
        );
        assert_eq!(
            kind(result("null", "bad tool call")),
            Some(FailureKind::ToolCall)
        );
        let (empty, _) = feed_all(&[INIT]);
        assert_eq!(
            empty.failure(Some(0)).map(|f| f.0),
            Some(FailureKind::Crash)
        );
        let (retry, obs) = feed_all(&[
            r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":511,"error_status":429,"error":"rate_limit"}"#,
        ]);
        assert_eq!(retry.usage.api_retries, 1);
        assert!(matches!(
            obs[0],
            Observation::ApiRetry {
                status: Some(429),
                delay_ms: 511,
                ..
            }
        ));
        // A fractional delay is a delay, not zero.
        let (_, obs) = feed_all(&[
            r#"{"type":"system","subtype":"api_retry","attempt":2,"max_retries":10,"retry_delay_ms":1230.63,"error_status":529,"error":"overloaded"}"#,
        ]);
        assert!(
            matches!(obs[0], Observation::ApiRetry { delay_ms: 1231, .. }),
            "{obs:?}"
        );
    }
}
