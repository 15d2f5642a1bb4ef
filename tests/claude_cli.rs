#![allow(clippy::unwrap_used)]
//! The real Claude Code CLI (`claude -p`) against the scripted mock Messages API in
//! `common::mock_api`: tools that really touch files, API errors, retries, dropped connections,
//! concurrent agents. The CLI runs directly (not through agent-farm), hermetically, in temp dirs.
//! Without the CLI these tests are skipped (they panic under `CI=true`); the last test checks the
//! mock's HTTP handling without the CLI.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::mock_api::*;
use serde_json::{Value, json};

/// Generous bound for one CLI run (normal runs take about 1 s, failing ones about 3 s).
const LIMIT: Duration = Duration::from_secs(60);
const ACCEPT_EDITS: &[&str] = &["--permission-mode", "acceptEdits"];

/// A temp dir with `work/<key>` agent dirs (the dir name is the agent key) and `state/<key>`.
struct Sandbox {
    _tmp: tempfile::TempDir,
    base: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let tmp = tempfile::Builder::new()
            .prefix("agent-farm-claude-")
            .tempdir()
            .unwrap();
        let base = tmp.path().canonicalize().unwrap();
        Sandbox { _tmp: tmp, base }
    }

    fn work(&self, key: &str) -> PathBuf {
        let d = self.base.join("work").join(key);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn state(&self, key: &str) -> PathBuf {
        self.base.join("state").join(key)
    }

    fn run(&self, bin: &Path, api: &MockApi, key: &str, args: &[&str]) -> ClaudeRun {
        let run = run_claude(
            bin,
            &self.work(key),
            &api.url(),
            &self.state(key),
            &format!("task for {key}"),
            args,
            LIMIT,
        );
        eprintln!("{key}: exit {} after {:?}", run.code, run.elapsed);
        run
    }
}

fn api_retries(run: &ClaudeRun) -> Vec<&Value> {
    run.events_of("system", Some("api_retry"))
}

/// Every `tool_result` block the CLI fed back, in order.
fn tool_results(run: &ClaudeRun) -> Vec<&Value> {
    run.blocks("user", "tool_result")
}

#[test]
fn write_read_edit_then_text() {
    let Some(bin) = require_claude("write_read_edit_then_text") else {
        return;
    };
    let sb = Sandbox::new();
    let file = sb.work("editor").join("notes.txt");
    let api = MockApi::start(vec![script(
        "editor",
        vec![
            Turn::tool(Block::write(&file, "hello world\n")),
            Turn::tool(Block::read(&file)),
            Turn::tool(Block::edit(&file, "world", "mock")),
            Turn::text("all done"),
        ],
    )]);
    let run = sb.run(&bin, &api, "editor", ACCEPT_EDITS);
    run.expect(0);

    assert_eq!(std::fs::read_to_string(&file).unwrap(), "hello mock\n");

    let r = run.result();
    assert_eq!(r["subtype"], "success");
    assert_eq!(r["is_error"], false, "{r:#}");
    assert_eq!(r["api_error_status"], Value::Null);
    assert_eq!(r["result"], "all done");
    assert_eq!(r["stop_reason"], "end_turn");
    assert_eq!(r["num_turns"], 4);
    assert!(r["total_cost_usd"].as_f64().unwrap() > 0.0, "{r:#}");
    assert_eq!(r["permission_denials"], json!([]));

    let init = &run.events_of("system", Some("init"))[0];
    assert_eq!(init["cwd"], sb.work("editor").to_str().unwrap());
    assert_eq!(init["permissionMode"], "acceptEdits");

    // One assistant event per block; the tool input arrives whole (accumulated from the deltas).
    let uses = run.blocks("assistant", "tool_use");
    let names: Vec<&str> = uses.iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Write", "Read", "Edit"]);
    assert_eq!(uses[0]["input"]["content"], "hello world\n");
    assert_eq!(uses[2]["input"]["old_string"], "world");
    let results = tool_results(&run);
    assert_eq!(results.len(), 3);
    for (u, t) in uses.iter().zip(&results) {
        assert_eq!(t["tool_use_id"], u["id"]);
        assert_ne!(t["is_error"], true, "{t:#}");
    }

    // HEAD / once, then one streamed POST per turn, each answered from the "editor" script.
    let reqs = api.requests();
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("HEAD", "/")
    );
    assert_eq!(
        api.statuses_for("editor"),
        [(0, 200), (1, 200), (2, 200), (3, 200)]
    );
    for m in api.messages_for("editor") {
        assert!(m.stream);
        assert_eq!(m.query, "beta=true");
        assert_eq!(m.cwd_key.as_deref(), Some("editor"));
        assert_eq!(m.header("x-api-key"), Some("test-key"));
        assert_eq!(m.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(m.header("x-stainless-retry-count"), Some("0"));
    }
    // The request of turn 3 carries the Edit's tool_result in its last user message.
    let last = &api.messages_for("editor")[3].body["messages"];
    let last_user = last.as_array().unwrap().last().unwrap();
    assert_eq!(last_user["content"][0]["type"], "tool_result");
}

#[test]
fn bash_tool_runs_in_the_working_directory() {
    let Some(bin) = require_claude("bash_tool_runs_in_the_working_directory") else {
        return;
    };
    let sb = Sandbox::new();
    let api = MockApi::start(vec![script(
        "shell",
        vec![Turn::tool(Block::bash("echo hi > f.txt")), Turn::text("ok")],
    )]);
    let run = sb.run(&bin, &api, "shell", ACCEPT_EDITS);
    run.expect(0);
    assert_eq!(
        std::fs::read_to_string(sb.work("shell").join("f.txt")).unwrap(),
        "hi\n"
    );
    let results = tool_results(&run);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["is_error"], false);
    assert_eq!(run.result()["is_error"], false);
    assert_eq!(run.result()["permission_denials"], json!([]));
}

#[test]
fn auth_error_401_is_retried_unless_should_retry_is_false() {
    let Some(bin) = require_claude("auth_error_401_is_retried_unless_should_retry_is_false") else {
        return;
    };
    let sb = Sandbox::new();
    let api = MockApi::start(vec![
        script("plain", vec![Turn::auth_error()]),
        script("final", vec![Turn::auth_error().with_should_retry(false)]),
    ]);

    // Without `x-should-retry` the CLI retries a 401 like any error: CLAUDE_CODE_MAX_RETRIES=2.
    let run = sb.run(&bin, &api, "plain", ACCEPT_EDITS);
    run.expect(1);
    let r = run.result();
    assert_eq!(r["subtype"], "success");
    assert_eq!(r["is_error"], true);
    assert_eq!(r["api_error_status"], 401);
    assert!(
        r["result"].as_str().unwrap().contains("Invalid API key"),
        "{r:#}"
    );
    assert_eq!(r["total_cost_usd"].as_f64().unwrap(), 0.0);
    let retries = api_retries(&run);
    assert_eq!(retries.len(), 2, "{}", run.stdout);
    assert_eq!(retries[0]["error_status"], 401);
    assert_eq!(retries[0]["error"], "authentication_failed");
    assert_eq!(retries[0]["max_retries"], 2);
    assert_eq!(api.statuses_for("plain"), [(0, 401), (0, 401), (0, 401)]);
    // The error text also comes as a synthetic assistant message.
    let synthetic = &run.events_of("assistant", None)[0];
    assert_eq!(synthetic["message"]["model"], "<synthetic>");
    assert_eq!(synthetic["error"], "authentication_failed");

    // With `x-should-retry: false` the CLI gives up at once: exactly one request.
    let run = sb.run(&bin, &api, "final", ACCEPT_EDITS);
    run.expect(1);
    let r = run.result();
    assert_eq!(r["is_error"], true);
    assert_eq!(r["api_error_status"], 401);
    assert!(api_retries(&run).is_empty(), "{}", run.stdout);
    assert_eq!(api.statuses_for("final"), [(0, 401)]);
}

#[test]
fn rate_limit_429_honours_retry_after_then_succeeds() {
    let Some(bin) = require_claude("rate_limit_429_honours_retry_after_then_succeeds") else {
        return;
    };
    let sb = Sandbox::new();
    let api = MockApi::start(vec![script(
        "limited",
        vec![Turn::rate_limited(1), Turn::text("recovered")],
    )]);
    let run = sb.run(&bin, &api, "limited", ACCEPT_EDITS);
    run.expect(0);
    let retries = api_retries(&run);
    assert_eq!(retries.len(), 1, "{}", run.stdout);
    assert_eq!(retries[0]["attempt"], 1);
    assert_eq!(retries[0]["error_status"], 429);
    assert_eq!(retries[0]["error"], "rate_limit");
    // retry-after: 1 gives exactly 1000 ms (retry-after: 0 falls back to the ~0.5 s backoff).
    let delay = retries[0]["retry_delay_ms"].as_f64().unwrap();
    assert!((1000.0..1500.0).contains(&delay), "{delay}");
    let r = run.result();
    assert_eq!(r["is_error"], false);
    assert_eq!(r["result"], "recovered");
    assert!(r["total_cost_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(api.statuses_for("limited"), [(0, 429), (0, 200)]);
    // The CLI retries in its own loop: the SDK's retry-count header stays 0.
    let counts: Vec<_> = api
        .messages_for("limited")
        .iter()
        .map(|m| m.header("x-stainless-retry-count").map(str::to_owned))
        .collect();
    assert_eq!(counts, [Some("0".to_owned()), Some("0".to_owned())]);
}

#[test]
fn overloaded_529_exhausts_retries_with_null_status() {
    let Some(bin) = require_claude("overloaded_529_exhausts_retries_with_null_status") else {
        return;
    };
    let sb = Sandbox::new();
    // x-should-retry: false does not stop 529 retries.
    let api = MockApi::start(vec![script(
        "busy",
        vec![Turn::overloaded().with_should_retry(false)],
    )]);
    let run = sb.run(&bin, &api, "busy", ACCEPT_EDITS);
    run.expect(1);
    let retries = api_retries(&run);
    assert_eq!(retries.len(), 2, "{}", run.stdout);
    assert!(
        retries
            .iter()
            .all(|e| e["error_status"] == 529 && e["error"] == "overloaded")
    );
    let r = run.result();
    assert_eq!(r["is_error"], true);
    // Unlike 401/429/500, the result does not carry the 529 status.
    assert_eq!(r["api_error_status"], Value::Null, "{r:#}");
    assert!(
        r["result"]
            .as_str()
            .unwrap()
            .contains("Repeated 529 Overloaded"),
        "{r:#}"
    );
    assert_eq!(api.statuses_for("busy"), [(0, 529), (0, 529), (0, 529)]);
}

#[test]
fn dropped_connections_are_retried_then_fail() {
    let Some(bin) = require_claude("dropped_connections_are_retried_then_fail") else {
        return;
    };
    let sb = Sandbox::new();
    let api = MockApi::start(vec![
        script("gone", vec![Turn::Drop]),
        script("flaky", vec![Turn::Drop, Turn::text("back")]),
    ]);

    let run = sb.run(&bin, &api, "gone", ACCEPT_EDITS);
    run.expect(1);
    assert!(run.elapsed < Duration::from_secs(15), "{:?}", run.elapsed);
    let retries = api_retries(&run);
    assert_eq!(retries.len(), 2, "{}", run.stdout);
    for e in &retries {
        assert_eq!(e["error_status"], Value::Null);
        assert_eq!(e["error"], "unknown");
    }
    let r = run.result();
    assert_eq!(r["is_error"], true);
    assert_eq!(r["api_error_status"], Value::Null);
    assert!(
        r["result"]
            .as_str()
            .unwrap()
            .contains("Unable to connect to API"),
        "{r:#}"
    );
    // First try + CLAUDE_CODE_MAX_RETRIES, none answered.
    assert_eq!(api.statuses_for("gone"), [(0, 0), (0, 0), (0, 0)]);

    let run = sb.run(&bin, &api, "flaky", ACCEPT_EDITS);
    run.expect(0);
    assert_eq!(api_retries(&run).len(), 1);
    assert_eq!(run.result()["result"], "back");
    assert_eq!(api.statuses_for("flaky"), [(0, 0), (0, 200)]);
}

#[test]
fn permission_denials_in_default_mode() {
    let Some(bin) = require_claude("permission_denials_in_default_mode") else {
        return;
    };
    let sb = Sandbox::new();
    let file = sb.work("guarded").join("new.txt");
    let api = MockApi::start(vec![script(
        "guarded",
        vec![
            Turn::tool(Block::write(&file, "x")),
            Turn::tool(Block::bash("echo hi > f.txt")),
            Turn::text("gave up"),
        ],
    )]);
    let run = sb.run(&bin, &api, "guarded", &["--permission-mode", "default"]);
    // Refusals do not fail the run.
    run.expect(0);
    assert!(!file.exists());
    assert!(!sb.work("guarded").join("f.txt").exists());
    let results = tool_results(&run);
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|t| t["is_error"] == true));
    assert!(
        results[0]["content"]
            .as_str()
            .unwrap()
            .contains("haven't granted it yet"),
        "{:#}",
        results[0]
    );
    let r = run.result();
    assert_eq!(r["is_error"], false);
    let denials = r["permission_denials"].as_array().unwrap();
    let tools: Vec<&str> = denials
        .iter()
        .map(|d| d["tool_name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["Write", "Bash"]);
    assert_eq!(
        denials[0]["tool_input"]["file_path"],
        file.to_str().unwrap()
    );
    assert_eq!(denials[1]["tool_input"]["command"], "echo hi > f.txt");
}

#[test]
fn two_clis_at_once_get_their_own_scripts() {
    let Some(bin) = require_claude("two_clis_at_once_get_their_own_scripts") else {
        return;
    };
    let sb = Sandbox::new();
    let scripted = |key: &str| {
        let dir = sb.work(key);
        script(
            key,
            vec![
                Turn::tool(Block::write(dir.join("out.txt"), format!("from {key}\n"))),
                Turn::reply(vec![
                    Block::text(format!("{key} wrote it")),
                    Block::bash(format!("echo {key} > who.txt")),
                ]),
                Turn::text(format!("{key} done")),
            ],
        )
    };
    let api = MockApi::start(vec![scripted("alpha"), scripted("beta")]);
    let start = |key: &str| {
        Running::spawn(claude_command(
            &bin,
            &sb.work(key),
            &api.url(),
            &sb.state(key),
            "go",
            ACCEPT_EDITS,
        ))
    };
    let (a, b) = (start("alpha"), start("beta"));
    let (a, b) = (a.wait(LIMIT), b.wait(LIMIT));
    eprintln!("alpha {:?}, beta {:?}", a.elapsed, b.elapsed);
    for (key, run) in [("alpha", &a), ("beta", &b)] {
        run.expect(0);
        let dir = sb.work(key);
        assert_eq!(
            std::fs::read_to_string(dir.join("out.txt")).unwrap(),
            format!("from {key}\n")
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("who.txt")).unwrap(),
            format!("{key}\n")
        );
        assert_eq!(run.result()["result"], format!("{key} done"));
        assert_eq!(run.result()["num_turns"], 3);
        // A text block and a tool_use block in one reply come as two assistant events.
        assert!(
            run.blocks("assistant", "text")
                .iter()
                .any(|b| b["text"] == format!("{key} wrote it"))
        );
        assert_eq!(api.statuses_for(key), [(0, 200), (1, 200), (2, 200)]);
    }
    assert!(
        api.requests()
            .iter()
            .filter(|r| r.method == "POST")
            .all(|r| r.agent.is_some()),
        "every request matched a script"
    );
}

// ---------------------------------------------------------------------------------------------
// The mock alone, over raw HTTP (no CLI needed).

/// Send `raw` and read the whole answer (the mock closes the connection).
fn raw_http(api: &MockApi, raw: &[u8]) -> (u16, String, Vec<u8>) {
    let addr = api.url().trim_start_matches("http://").to_owned();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header section");
    let head = String::from_utf8(out[..split].to_vec()).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, out[split + 4..].to_vec())
}

fn post(body: &Value) -> Vec<u8> {
    let b = body.to_string();
    format!(
        "POST /v1/messages?beta=true HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
        b.len()
    )
    .into_bytes()
}

fn post_chunked(body: &Value) -> Vec<u8> {
    let b = body.to_string();
    let (x, y) = b.split_at(b.len() / 3);
    format!(
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{:x};ext=1\r\n{x}\r\n{:X}\r\n{y}\r\n0\r\nx-trailer: t\r\n\r\n",
        x.len(),
        y.len()
    )
    .into_bytes()
}

fn conversation(cwd: &str, prompt: &str, assistant_turns: usize, stream: bool) -> Value {
    let mut messages = vec![json!({"role": "user", "content": prompt})];
    for _ in 0..assistant_turns {
        messages.push(json!({"role": "assistant", "content": [{"type": "text", "text": "…"}]}));
        messages.push(json!({"role": "user", "content": "next"}));
    }
    json!({
        "model": "claude-test",
        "stream": stream,
        "system": [{"type": "text", "text": format!("# Environment\n - Primary working directory: {cwd}\n - Platform: linux")}],
        "messages": messages,
    })
}

fn sse_events(body: &[u8]) -> Vec<(String, Value)> {
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut lines = e.lines();
            let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], name);
            (name.to_owned(), data)
        })
        .collect()
}

#[test]
fn mock_speaks_http_without_the_cli() {
    let api = MockApi::start(vec![
        script(
            "alpha",
            vec![
                Turn::rate_limited(7).with_should_retry(true),
                Turn::reply(vec![
                    Block::text("héllo"),
                    Block::write("/w/alpha/a.txt", "A"),
                ]),
            ],
        ),
        script("beta", vec![Turn::text("from beta")]),
    ]);

    let (status, head, body) = raw_http(&api, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 200);
    assert!(head.contains("Connection: close"));
    assert!(body.is_empty());

    // Turn 0 of alpha: first the scripted 429, with its headers...
    let req = conversation("/w/alpha", "hi", 0, true);
    let (status, head, body) = raw_http(&api, &post(&req));
    assert_eq!(status, 429);
    assert!(head.contains("retry-after: 7"), "{head}");
    assert!(head.contains("x-should-retry: true"), "{head}");
    let err: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["type"], "rate_limit_error");

    // ...then, for the same turn, the reply as SSE.
    let (status, head, body) = raw_http(&api, &post(&req));
    assert_eq!(status, 200);
    assert!(head.contains("Content-Type: text/event-stream"), "{head}");
    let events = sse_events(&body);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert_eq!(events[0].1["message"]["model"], "claude-test");
    let text: String = events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "text_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "héllo");
    let tool_start = events
        .iter()
        .find(|(_, d)| d["content_block"]["type"] == "tool_use")
        .unwrap();
    assert_eq!(tool_start.1["content_block"]["input"], json!({}));
    assert_eq!(tool_start.1["index"], 1);
    let partial: String = events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&partial).unwrap(),
        json!({"file_path": "/w/alpha/a.txt", "content": "A"})
    );
    assert_eq!(
        names.iter().filter(|n| **n == "content_block_stop").count(),
        2
    );
    let delta = &events.iter().find(|(n, _)| n == "message_delta").unwrap().1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);

    // Chunked body, stream false: one JSON message. Turn 1 is past alpha's script: "done".
    let (status, _, body) = raw_http(
        &api,
        &post_chunked(&conversation("/w/alpha", "hi", 1, false)),
    );
    assert_eq!(status, 200);
    let msg: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["content"], json!([{"type": "text", "text": "done"}]));
    assert_eq!(msg["stop_reason"], "end_turn");
    assert!(msg["usage"]["input_tokens"].as_u64().unwrap() > 0);

    // Unknown cwd: the key found in the first user message picks the script.
    let (_, _, body) = raw_http(
        &api,
        &post(&conversation("/w/elsewhere", "please, beta", 0, false)),
    );
    let msg: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(msg["content"][0]["text"], "from beta");

    // Nothing matches: "done".
    let (_, _, body) = raw_http(&api, &post(&conversation("/w/zeta", "hi", 0, false)));
    let msg: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(msg["content"][0]["text"], "done");

    let (status, _, _) = raw_http(&api, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 404);
    let (status, _, _) = raw_http(
        &api,
        b"POST /v1/messages HTTP/1.1\r\nContent-Length: 3\r\n\r\n{x}",
    );
    assert_eq!(status, 400);

    let rec: Vec<(String, Option<String>, usize, usize, u16)> = api
        .requests()
        .into_iter()
        .map(|r| (r.path, r.agent, r.turn, r.attempt, r.status))
        .collect();
    let a = || Some("alpha".to_owned());
    assert_eq!(
        rec,
        [
            ("/".into(), None, 0, 0, 200),
            ("/v1/messages".into(), a(), 0, 0, 429),
            ("/v1/messages".into(), a(), 0, 1, 200),
            ("/v1/messages".into(), a(), 1, 0, 200),
            ("/v1/messages".into(), Some("beta".into()), 0, 0, 200),
            ("/v1/messages".into(), None, 0, 0, 200),
            ("/v1/models".into(), None, 0, 0, 404),
            ("/v1/messages".into(), None, 0, 0, 400),
        ]
    );
    assert_eq!(api.requests()[5].cwd_key.as_deref(), Some("zeta"));
}
