//! The planner's answer: a proposal in a strict JSON shape, its JSON Schema (for CLIs that can be
//! held to one), and reading it out of whatever an agent printed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One domain as the planner proposes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposedDomain {
    pub name: String,
    #[serde(default)]
    pub prompt: String,
    #[serde(default)]
    pub owns: Vec<String>,
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Why this domain exists and why its boundaries are where they are.
    #[serde(default)]
    pub why: String,
}

/// A proposed split of the goal into domains.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Proposal {
    pub domains: Vec<ProposedDomain>,
    /// How many files the goal is expected to change, new files included.
    #[serde(default)]
    pub expected_files: Option<usize>,
    /// Existing files the goal probably changes.
    #[serde(default)]
    pub touches: Vec<String>,
    #[serde(default)]
    pub notes: String,
}

/// The JSON Schema of a [`Proposal`] (what `claude --json-schema` holds the planner to).
pub fn schema() -> Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "domains": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
                        "prompt": {"type": "string"},
                        "owns": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                        "depends_on": {"type": "array", "items": {"type": "string"}},
                        "why": {"type": "string"}
                    },
                    "required": ["name", "prompt", "owns", "depends_on", "why"],
                    "additionalProperties": false
                }
            },
            "expected_files": {"type": "integer", "minimum": 0},
            "touches": {"type": "array", "items": {"type": "string"}},
            "notes": {"type": "string"}
        },
        "required": ["domains", "expected_files", "touches"],
        "additionalProperties": false
    })
}

/// A scout's report on one area.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ScoutReport {
    #[serde(default)]
    pub summary: String,
    /// Files of the area the goal probably changes.
    #[serde(default)]
    pub files: Vec<String>,
}

/// The JSON Schema of a [`ScoutReport`].
pub fn scout_schema() -> Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "summary": {"type": "string"},
            "files": {"type": "array", "items": {"type": "string"}}
        },
        "required": ["summary", "files"],
        "additionalProperties": false
    })
}

/// Every JSON object in `text` (outermost ones, in order), found by matching braces outside
/// strings; objects that do not parse are skipped.
pub fn json_objects(text: &str) -> Vec<Value> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'{' {
            i += 1;
            continue;
        }
        let (mut depth, mut in_str, mut esc) = (0usize, false, false);
        let mut end = None;
        for (j, &c) in b.iter().enumerate().skip(i) {
            if in_str {
                match (esc, c) {
                    (true, _) => esc = false,
                    (false, b'\\') => esc = true,
                    (false, b'"') => in_str = false,
                    _ => {}
                }
                continue;
            }
            match c {
                b'"' => in_str = true,
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(j);
                        break;
                    }
                }
                _ => {}
            }
        }
        match end.and_then(|e| serde_json::from_str::<Value>(&text[i..=e]).ok()) {
            Some(v) => {
                out.push(v);
                i = end.unwrap_or(i) + 1;
            }
            None => i += 1,
        }
    }
    out
}

/// What an agent's stdout holds: a Claude Code result object (`--output-format json`), whose
/// `structured_output` or `result` text is the answer, or any text whose last JSON object that
/// reads as a `T` is the answer. `Err` says why there is none.
pub fn answer<T: serde::de::DeserializeOwned>(stdout: &str) -> Result<T, String> {
    let objects = json_objects(stdout);
    // The CLI's result object: unwrap it.
    if let Some(result) = objects
        .iter()
        .rev()
        .find(|o| o["type"] == "result" && o.get("result").is_some())
    {
        if result["is_error"] == true {
            return Err(format!(
                "the agent reported an error: {}",
                result["result"].as_str().unwrap_or("(no message)")
            ));
        }
        if let Some(s) = result.get("structured_output").filter(|s| !s.is_null()) {
            return serde_json::from_value(s.clone())
                .map_err(|e| format!("its structured output does not fit the shape: {e}"));
        }
        let text = result["result"].as_str().unwrap_or_default();
        return last_of(&json_objects(text))
            .ok_or_else(|| "its result holds no JSON object of the asked shape".to_string());
    }
    last_of(&objects).ok_or_else(|| "its output holds no JSON object of the asked shape".into())
}

fn last_of<T: serde::de::DeserializeOwned>(objects: &[Value]) -> Option<T> {
    objects
        .iter()
        .rev()
        .find_map(|o| serde_json::from_value(o.clone()).ok())
}

/// The text an agent answered (for a scout whose answer is not JSON): the result text of a
/// Claude Code result object, else all of stdout.
pub fn answer_text(stdout: &str) -> String {
    json_objects(stdout)
        .iter()
        .rev()
        .find(|o| o["type"] == "result")
        .and_then(|o| o["result"].as_str().map(str::to_owned))
        .unwrap_or_else(|| stdout.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_object_of_the_shape_wins() {
        let text = "thinking {not json} {\"domains\":[{\"name\":\"a\",\"owns\":[\"a/**\"]}]}\n\
                    and finally {\"domains\":[{\"name\":\"b\",\"prompt\":\"x { y\",\"owns\":[\"b/**\"]}],\"expected_files\":12} {\"other\":1}";
        let p: Proposal = answer(text).unwrap();
        assert_eq!(p.domains[0].name, "b");
        assert_eq!(p.domains[0].prompt, "x { y");
        assert_eq!(p.expected_files, Some(12));
        assert!(answer::<Proposal>("no json here").is_err());
    }

    #[test]
    fn a_claude_result_is_unwrapped() {
        let structured = serde_json::json!({
            "type": "result", "is_error": false, "result": "ignored",
            "structured_output": {"domains": [{"name": "s", "prompt": "p", "owns": ["s"]}]}
        });
        let p: Proposal = answer(&structured.to_string()).unwrap();
        assert_eq!(p.domains[0].name, "s");
        let text = serde_json::json!({
            "type": "result", "is_error": false,
            "result": "Here: {\"domains\": [{\"name\": \"t\", \"owns\": [\"t/**\"]}]}"
        });
        let p: Proposal = answer(&text.to_string()).unwrap();
        assert_eq!(p.domains[0].name, "t");
        let err =
            serde_json::json!({"type": "result", "is_error": true, "result": "API Error: 529"});
        assert!(
            answer::<Proposal>(&err.to_string())
                .unwrap_err()
                .contains("529")
        );
        assert_eq!(answer_text(&text.to_string())[..5].to_string(), "Here:");
    }

    #[test]
    fn the_schema_requires_the_fields_a_plan_needs() {
        let s = schema();
        let item = &s["properties"]["domains"]["items"];
        assert_eq!(item["required"].as_array().unwrap().len(), 5);
        assert_eq!(scout_schema()["required"][0], "summary");
    }
}
