//! A scriptable mock of the Anthropic Messages API, for running the real Claude Code CLI
//! (`claude -p`) hermetically against 127.0.0.1. Only std + serde_json.
//!
//! # Scripts
//! Each agent has an [`AgentScript`]: a list of [`Turn`]s. The *turn index* of a request is the
//! number of `"role": "assistant"` entries already in its `messages`, so the first request of a
//! conversation is turn 0, the request carrying the first tool result is turn 1, and so on.
//!
//! Failures ([`Turn::Error`], [`Turn::Drop`]) are *attempts*, not conversation turns: they attach
//! to the next [`Turn::Reply`] in the list and share its turn index. For
//! `[Error(429), Drop, Reply(a), Reply(b)]` turn 0 answers the first request with 429, the second
//! (the CLI's retry) by closing the connection, every later attempt with `a`; turn 1 answers `b`.
//! A trailing group of failures with no reply after it repeats its last failure for every further
//! attempt (so `[Drop]` means "always drop"). A turn index past the end of the script, and any
//! request that matches no script, answers a text `"done"` with `end_turn`.
//!
//! # Choosing the script
//! The agent key is the last path component of the `Primary working directory: /abs/path` line
//! in the request's `system` text blocks (or in the message texts, where, per `claude --help`,
//! `--exclude-dynamic-system-prompt-sections` moves it). If no script has that key, the first
//! script whose key is a substring of the first user message's text is used; else the default
//! answer. That text includes the CLI's `<system-reminder>` preamble, so substring keys must be
//! distinctive. Retry counters are per (script key, turn index): two CLIs with the same key share
//! them.
//!
//! # Protocol
//! `HEAD /` → 200 empty; `POST /v1/messages[?query]` → the scripted answer, as SSE when the body
//! has `"stream": true` (message_start → content_block_start/delta/stop per block → message_delta →
//! message_stop), else one JSON message; `POST /v1/messages/count_tokens` → a token count;
//! anything else → 404 error JSON. Requests are parsed as HTTP/1.1 with `Content-Length` or
//! `Transfer-Encoding: chunked` bodies; every answer carries `Connection: close`.
//!
//! # CLI facts observed with Claude Code 2.1.197 against this mock (see `tests/claude_cli.rs`)
//! These complement `shared/reference/claude-cli.md`; where they differ, these were measured here.
//! - With `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1` the CLI sends `HEAD /` then exactly one
//!   `POST /v1/messages?beta=true` per attempt (no title side request, no count_tokens), body
//!   `"stream": true`, `Content-Length` (not chunked), `Connection: keep-alive` (we close anyway),
//!   headers `x-api-key`, `anthropic-version: 2023-06-01`, `anthropic-beta: …`,
//!   `X-Claude-Code-Session-Id`, and `X-Stainless-Retry-Count` always 0 (the CLI retries in its
//!   own loop, not the SDK's). `messages` holds a `"role": "system"` entry (agent/skill list)
//!   after the first user message; the first user message is a `<system-reminder>` text block
//!   followed by the prompt. The `system` line reads ` - Primary working directory: /abs/cwd`.
//!   Default model `claude-opus-4-8` (`claude-opus-4-8[1m]` in the init event).
//! - **401 is retried** like other errors when the answer has no `x-should-retry` header:
//!   `api_retry` events with `"error":"authentication_failed"`, `error_status` 401, then
//!   1 + `CLAUDE_CODE_MAX_RETRIES` requests in all. With `x-should-retry: false` exactly one
//!   request. Result: `"Invalid API key · Fix external API key"`, `api_error_status` 401.
//! - 429: `retry-after: 1` gives `retry_delay_ms` 1000 exactly, `3` gives 3000; `retry-after: 0`
//!   is not honoured as zero (the normal ~0.5 s first backoff). `x-should-retry: false` → no retry.
//! - **529: the result's `api_error_status` is null** (not 529) and `result` is "API Error:
//!   Repeated 529 Overloaded errors. …"; `x-should-retry: false` does not stop 529 retries.
//!   500 gives `api_error_status` 500, "API Error: 500 Internal server error. …".
//! - A dropped connection (request read, socket closed, no answer) is retried like a 5xx:
//!   `api_retry` with `"error":"unknown"`, `error_status` null; after the retries the result is
//!   "API Error: Unable to connect to API (ECONNRESET)", `api_error_status` null, exit 1. With
//!   `CLAUDE_CODE_MAX_RETRIES=2` a failing run takes about 2.3 s (backoff ≈ 0.5 s + 1.0–1.2 s).
//! - On an API failure the stream also holds a synthetic `assistant` event: `message.model`
//!   `"<synthetic>"`, `stop_reason` `"stop_sequence"`, the error text as its text block, and a
//!   top-level `"error"` (`"authentication_failed"`, …). Result `stop_reason` is `"stop_sequence"`,
//!   `num_turns` 1, `total_cost_usd` 0.
//! - `assistant` events carry `"stop_reason": null` and the `message_start` usage (they are sent
//!   per block, before `message_delta`), plus a top-level `request_id` (our `request-id` header).
//! - Cost is computed from the reported usage at the model's price (input tokens dominate here:
//!   the CLI's request bodies are ≈ 76 KB, so ≈ 19 000 input tokens per turn with our formula).
//! - Permission refusals: in `default` mode a Write is refused with tool_result `is_error: true`
//!   "Claude requested permissions to write to PATH, but you haven't granted it yet." and **is**
//!   listed in `result.permission_denials` (`tool_name`, `tool_use_id`, `tool_input`); so is a
//!   refused Bash redirect ("Output redirection to '…' was blocked. For security, Claude Code may
//!   only write to files in the allowed working directories …"). Under `acceptEdits` a Write
//!   outside the cwd and a Bash `touch` outside it are refused and listed the same way. Exit 0,
//!   `is_error: false` in all these cases.
//! - Edit of an existing file not Read (nor Written) earlier in the conversation: tool error
//!   "File has not been read yet. Read it first before writing to it."; an Edit right after this
//!   conversation's own Write of the file works without a Read.
//! - Edit of a file that does not exist: tool error "File does not exist. …"; an unknown tool
//!   name: tool error "No such tool available: NAME"; both as `<tool_use_error>` tool_results,
//!   the run goes on. Write's tool_result says "File created successfully at: PATH (file state is
//!   current in your context — no need to Read it back)".
//! - With `--no-session-persistence` and these env vars the CLI writes only
//!   `$CLAUDE_CONFIG_DIR/.claude.json` (and a backup of it); nothing under `$HOME` or the tmp dir.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Input tokens reported for every answer (plus one per 4 bytes of request body).
pub const INPUT_TOKENS: u64 = 100;
/// Output tokens reported for every answer.
pub const OUTPUT_TOKENS: u64 = 20;

/// One content block of a scripted assistant reply.
#[derive(Clone, Debug)]
pub enum Block {
    Text(String),
    ToolUse { name: String, input: Value },
}

impl Block {
    pub fn text(text: impl Into<String>) -> Block {
        Block::Text(text.into())
    }

    pub fn tool(name: impl Into<String>, input: Value) -> Block {
        Block::ToolUse {
            name: name.into(),
            input,
        }
    }

    /// `Write`: create or overwrite `path` (absolute) with `content`.
    pub fn write(path: impl AsRef<Path>, content: impl Into<String>) -> Block {
        Block::tool(
            "Write",
            json!({"file_path": path_str(path.as_ref()), "content": content.into()}),
        )
    }

    /// `Read`: needed before an `Edit` of the same file in the conversation.
    pub fn read(path: impl AsRef<Path>) -> Block {
        Block::tool("Read", json!({"file_path": path_str(path.as_ref())}))
    }

    /// `Edit`: replace the unique `old` by `new` in `path` (absolute; Read it first).
    pub fn edit(path: impl AsRef<Path>, old: impl Into<String>, new: impl Into<String>) -> Block {
        Block::tool(
            "Edit",
            json!({
                "file_path": path_str(path.as_ref()),
                "old_string": old.into(),
                "new_string": new.into(),
            }),
        )
    }

    /// `Bash`: run `command` in the agent's working directory.
    pub fn bash(command: impl Into<String>) -> Block {
        Block::tool("Bash", json!({"command": command.into()}))
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// One scripted answer: a reply, or a failed attempt (see the module docs).
#[derive(Clone, Debug)]
pub enum Turn {
    /// `stop_reason` is `tool_use` if any block is a tool use, else `end_turn`.
    Reply(Vec<Block>),
    /// HTTP `status` with `{"type":"error","error":{"type":error_type,"message":message}}`.
    Error {
        status: u16,
        error_type: String,
        message: String,
        /// `retry-after` header, seconds.
        retry_after: Option<u64>,
        /// `x-should-retry` header.
        should_retry: Option<bool>,
    },
    /// Read the request, then close the connection without answering.
    Drop,
}

impl Turn {
    pub fn text(text: impl Into<String>) -> Turn {
        Turn::Reply(vec![Block::text(text)])
    }

    pub fn reply(blocks: Vec<Block>) -> Turn {
        Turn::Reply(blocks)
    }

    /// A reply holding just one tool call.
    pub fn tool(block: Block) -> Turn {
        Turn::Reply(vec![block])
    }

    pub fn error(status: u16, error_type: impl Into<String>, message: impl Into<String>) -> Turn {
        Turn::Error {
            status,
            error_type: error_type.into(),
            message: message.into(),
            retry_after: None,
            should_retry: None,
        }
    }

    /// 401 `authentication_error`.
    pub fn auth_error() -> Turn {
        Turn::error(401, "authentication_error", "invalid x-api-key")
    }

    /// 429 `rate_limit_error` with a `retry-after` header.
    pub fn rate_limited(retry_after_secs: u64) -> Turn {
        Turn::error(
            429,
            "rate_limit_error",
            "Number of requests has exceeded your rate limit",
        )
        .with_retry_after(retry_after_secs)
    }

    /// 529 `overloaded_error`.
    pub fn overloaded() -> Turn {
        Turn::error(529, "overloaded_error", "Overloaded")
    }

    /// 500 `api_error`.
    pub fn server_error() -> Turn {
        Turn::error(500, "api_error", "Internal server error")
    }

    pub fn with_retry_after(mut self, secs: u64) -> Turn {
        if let Turn::Error { retry_after, .. } = &mut self {
            *retry_after = Some(secs);
        }
        self
    }

    pub fn with_should_retry(mut self, retry: bool) -> Turn {
        if let Turn::Error { should_retry, .. } = &mut self {
            *should_retry = Some(retry);
        }
        self
    }

    fn is_reply(&self) -> bool {
        matches!(self, Turn::Reply(_))
    }
}

/// The answers of one agent, in order (see the module docs for how failures count).
#[derive(Clone, Debug, Default)]
pub struct AgentScript {
    pub turns: Vec<Turn>,
}

impl AgentScript {
    pub fn new(turns: Vec<Turn>) -> AgentScript {
        AgentScript { turns }
    }

    /// Group into conversation turns: failures attach to the following reply.
    fn grouped(&self) -> Vec<Vec<Turn>> {
        let mut out = Vec::new();
        let mut cur = Vec::new();
        for t in &self.turns {
            let reply = t.is_reply();
            cur.push(t.clone());
            if reply {
                out.push(std::mem::take(&mut cur));
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }
}

/// `(key, script)` for [`MockApi::start`].
pub fn script(key: &str, turns: Vec<Turn>) -> (String, AgentScript) {
    (key.to_owned(), AgentScript::new(turns))
}

/// One request the mock received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub query: String,
    /// The key of the script that answered; `None` for the default answer and non-message paths.
    pub agent: Option<String>,
    /// The agent key derived from `Primary working directory`, matched or not.
    pub cwd_key: Option<String>,
    /// Turn index: assistant messages already in the request.
    pub turn: usize,
    /// 0 for the first request of this (agent, turn), 1 for the first retry, ...
    pub attempt: usize,
    /// HTTP status served; 0 when the connection was dropped without an answer.
    pub status: u16,
    pub stream: bool,
    /// Request headers as received (names in their original case).
    pub headers: Vec<(String, String)>,
    /// The parsed JSON body (`Null` when there was none or it did not parse).
    pub body: Value,
}

impl Recorded {
    /// A request header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct State {
    scripts: Vec<(String, Vec<Vec<Turn>>)>,
    served: HashMap<(Option<String>, usize), usize>,
    records: Vec<Recorded>,
}

/// The mock server. Serves on background threads until dropped.
pub struct MockApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

static IDS: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    IDS.fetch_add(1, Ordering::Relaxed)
}

impl MockApi {
    /// Bind 127.0.0.1 on an ephemeral port and serve `scripts` (key = agent key).
    pub fn start(scripts: Vec<(String, AgentScript)>) -> MockApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            scripts: scripts.into_iter().map(|(k, s)| (k, s.grouped())).collect(),
            served: HashMap::new(),
            records: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("mock-api-accept".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        let state = state.clone();
                        let _ = std::thread::Builder::new()
                            .name("mock-api-conn".into())
                            .spawn(move || serve_connection(conn, &state));
                    }
                })
                .unwrap()
        };
        MockApi {
            addr,
            state,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().records.clone()
    }

    /// The `POST /v1/messages` requests answered from the script `key`.
    pub fn messages_for(&self, key: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == "/v1/messages" && r.agent.as_deref() == Some(key))
            .collect()
    }

    /// `(turn, status)` of each `POST /v1/messages` answered from the script `key`.
    pub fn statuses_for(&self, key: &str) -> Vec<(usize, u16)> {
        self.messages_for(key)
            .iter()
            .map(|r| (r.turn, r.status))
            .collect()
    }
}

impl Drop for MockApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

const MAX_HEADER_BYTES: usize = 64 * 1024;
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// A CRLF (or bare LF) terminated line, without the terminator.
fn read_line(r: &mut impl BufRead, budget: &mut usize) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    if n > *budget {
        return Err(bad("header section too large"));
    }
    *budget -= n;
    if buf.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "truncated line",
        ));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).map_err(|_| bad("non-UTF-8 header line"))
}

fn read_request(stream: &mut TcpStream, r: &mut impl BufRead) -> std::io::Result<Request> {
    let mut budget = MAX_HEADER_BYTES;
    let mut line = read_line(r, &mut budget)?;
    // Tolerate stray empty lines before the request line (RFC 9112 §2.2).
    while line.is_empty() {
        line = read_line(r, &mut budget)?;
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(bad(format!("bad request line {line:?}")));
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target.to_owned(), String::new()),
    };
    let mut headers = Vec::new();
    loop {
        let h = read_line(r, &mut budget)?;
        if h.is_empty() {
            break;
        }
        let Some((k, v)) = h.split_once(':') else {
            return Err(bad(format!("bad header line {h:?}")));
        };
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let mut req = Request {
        method: method.to_owned(),
        path,
        query,
        headers,
        body: Vec::new(),
    };
    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let mut budget = MAX_HEADER_BYTES;
            let size_line = read_line(r, &mut budget)?;
            let hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(hex, 16)
                .map_err(|_| bad(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !read_line(r, &mut budget)?.is_empty() {}
                break;
            }
            if req.body.len() + size > MAX_BODY_BYTES {
                return Err(bad("body too large"));
            }
            let start = req.body.len();
            req.body.resize(start + size, 0);
            r.read_exact(&mut req.body[start..])?;
            if !read_line(r, &mut budget)?.is_empty() {
                return Err(bad("chunk not followed by CRLF"));
            }
        }
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| bad(format!("bad content-length {len:?}")))?;
        if len > MAX_BODY_BYTES {
            return Err(bad("body too large"));
        }
        req.body.resize(len, 0);
        r.read_exact(&mut req.body)?;
    }
    Ok(req)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Status",
    }
}

fn write_response(
    w: &mut impl Write,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
    content_length: bool,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if content_length {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

fn error_body(error_type: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "error",
        "error": {"type": error_type, "message": message},
    }))
    .unwrap()
}

fn serve_connection(mut stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let req = match read_request(&mut stream, &mut reader) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            let _ = write_response(
                &mut stream,
                400,
                &[("Content-Type", "application/json".into())],
                &error_body("invalid_request_error", &e.to_string()),
                true,
            );
            return;
        }
        // Closed or timed out before a full request: nothing to answer (the Drop wake-up too).
        Err(_) => return,
    };
    let _ = answer(&mut stream, &req, state);
    let _ = stream.shutdown(Shutdown::Both);
}

fn answer(stream: &mut TcpStream, req: &Request, state: &Mutex<State>) -> std::io::Result<()> {
    let record = |state: &Mutex<State>, rec: Recorded| state.lock().unwrap().records.push(rec);
    let plain = |method: &str, status: u16, body: Value| Recorded {
        method: method.to_owned(),
        path: req.path.clone(),
        query: req.query.clone(),
        agent: None,
        cwd_key: None,
        turn: 0,
        attempt: 0,
        status,
        stream: false,
        headers: req.headers.clone(),
        body,
    };
    let json_hdr = [("Content-Type", "application/json".to_owned())];
    match (req.method.as_str(), req.path.as_str()) {
        ("HEAD", _) => {
            record(state, plain("HEAD", 200, Value::Null));
            return write_response(stream, 200, &[], b"", true);
        }
        ("POST", "/v1/messages") => {}
        ("POST", "/v1/messages/count_tokens") => {
            let body = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            record(state, plain("POST", 200, body));
            let n = INPUT_TOKENS + req.body.len() as u64 / 4;
            let out = serde_json::to_vec(&json!({"input_tokens": n})).unwrap();
            return write_response(stream, 200, &json_hdr, &out, true);
        }
        (m, _) => {
            record(state, plain(m, 404, Value::Null));
            let out = error_body("not_found_error", &format!("no route {m} {}", req.path));
            return write_response(stream, 404, &json_hdr, &out, true);
        }
    }

    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        record(state, plain("POST", 400, Value::Null));
        let out = error_body("invalid_request_error", "body is not JSON");
        return write_response(stream, 400, &json_hdr, &out, true);
    };
    let is_stream = body["stream"].as_bool().unwrap_or(false);
    let model = body["model"].as_str().unwrap_or("claude-mock").to_owned();
    let turn = body["messages"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["role"] == "assistant").count())
        .unwrap_or(0);
    let cwd_key = cwd_key(&body);

    // Pick the script and the answer under one lock, so concurrent retries count correctly.
    let (agent, attempt, reply) = {
        let mut st = state.lock().unwrap();
        let idx = cwd_key
            .as_ref()
            .and_then(|k| st.scripts.iter().position(|(key, _)| key == k))
            .or_else(|| {
                let first = first_user_text(&body);
                st.scripts
                    .iter()
                    .position(|(key, _)| !key.is_empty() && first.contains(key.as_str()))
            });
        let agent = idx.map(|i| st.scripts[i].0.clone());
        let counter = st.served.entry((agent.clone(), turn)).or_insert(0);
        let attempt = *counter;
        *counter += 1;
        let reply = idx
            .and_then(|i| st.scripts[i].1.get(turn))
            .and_then(|group| group.get(attempt.min(group.len() - 1)).cloned())
            .unwrap_or_else(|| Turn::text("done"));
        (agent, attempt, reply)
    };
    let mut rec = Recorded {
        method: "POST".into(),
        path: req.path.clone(),
        query: req.query.clone(),
        agent,
        cwd_key,
        turn,
        attempt,
        status: 0,
        stream: is_stream,
        headers: req.headers.clone(),
        body,
    };
    match reply {
        Turn::Drop => {
            record(state, rec);
            Ok(())
        }
        Turn::Error {
            status,
            error_type,
            message,
            retry_after,
            should_retry,
        } => {
            rec.status = status;
            record(state, rec);
            let mut headers = json_hdr.to_vec();
            headers.push(("request-id", format!("req_mock{:06}", next_id())));
            if let Some(s) = retry_after {
                headers.push(("retry-after", s.to_string()));
            }
            if let Some(b) = should_retry {
                headers.push(("x-should-retry", b.to_string()));
            }
            write_response(
                stream,
                status,
                &headers,
                &error_body(&error_type, &message),
                true,
            )
        }
        Turn::Reply(blocks) => {
            rec.status = 200;
            record(state, rec);
            let input_tokens = INPUT_TOKENS + req.body.len() as u64 / 4;
            let msg = Message::new(&model, blocks, input_tokens);
            let req_id = ("request-id", format!("req_mock{:06}", next_id()));
            if is_stream {
                let headers = [
                    ("Content-Type", "text/event-stream".to_owned()),
                    ("Cache-Control", "no-cache".to_owned()),
                    req_id,
                ];
                write_response(stream, 200, &headers, msg.sse().as_bytes(), false)
            } else {
                let headers = [json_hdr[0].clone(), req_id];
                let out = serde_json::to_vec(&msg.json()).unwrap();
                write_response(stream, 200, &headers, &out, true)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request inspection

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Last path component of the `Primary working directory:` line (system first, then messages).
fn cwd_key(body: &Value) -> Option<String> {
    let mut texts = vec![text_of(&body["system"])];
    if let Some(msgs) = body["messages"].as_array() {
        texts.extend(msgs.iter().map(|m| text_of(&m["content"])));
    }
    texts.iter().find_map(|t| {
        t.lines().find_map(|l| {
            let dir = l.split_once("Primary working directory:")?.1.trim();
            let name = Path::new(dir).file_name()?;
            Some(name.to_string_lossy().into_owned())
        })
    })
}

fn first_user_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Answers

struct Message {
    id: String,
    model: String,
    blocks: Vec<(Block, String)>,
    input_tokens: u64,
}

impl Message {
    fn new(model: &str, blocks: Vec<Block>, input_tokens: u64) -> Message {
        let n = next_id();
        let blocks = blocks
            .into_iter()
            .enumerate()
            .map(|(i, b)| (b, format!("toolu_mock{n:06}x{i}")))
            .collect();
        Message {
            id: format!("msg_mock{n:06}"),
            model: model.to_owned(),
            blocks,
            input_tokens,
        }
    }

    fn stop_reason(&self) -> &'static str {
        if self
            .blocks
            .iter()
            .any(|(b, _)| matches!(b, Block::ToolUse { .. }))
        {
            "tool_use"
        } else {
            "end_turn"
        }
    }

    fn usage(&self, output_tokens: u64) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        })
    }

    fn json(&self) -> Value {
        let content: Vec<Value> = self
            .blocks
            .iter()
            .map(|(b, id)| match b {
                Block::Text(t) => json!({"type": "text", "text": t}),
                Block::ToolUse { name, input } => {
                    json!({"type": "tool_use", "id": id, "name": name, "input": input})
                }
            })
            .collect();
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason(),
            "stop_sequence": null,
            "usage": self.usage(OUTPUT_TOKENS),
        })
    }

    fn sse(&self) -> String {
        let mut out = String::new();
        let mut ev = |name: &str, data: Value| {
            out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
        };
        ev(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": self.usage(1),
            }}),
        );
        ev("ping", json!({"type": "ping"}));
        for (index, (b, id)) in self.blocks.iter().enumerate() {
            let (start, deltas) = match b {
                Block::Text(t) => (
                    json!({"type": "text", "text": ""}),
                    halves(t)
                        .into_iter()
                        .map(|p| json!({"type": "text_delta", "text": p}))
                        .collect::<Vec<_>>(),
                ),
                Block::ToolUse { name, input } => (
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    halves(&input.to_string())
                        .into_iter()
                        .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                        .collect(),
                ),
            };
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": index, "content_block": start}),
            );
            for delta in deltas {
                ev(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index, "delta": delta}),
                );
            }
            ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            );
        }
        ev(
            "message_delta",
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason(), "stop_sequence": null},
                "usage": {"output_tokens": OUTPUT_TOKENS},
            }),
        );
        ev("message_stop", json!({"type": "message_stop"}));
        out
    }
}

/// `s` in two pieces (split on a char boundary), so clients must accumulate deltas.
fn halves(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return vec![s];
    }
    let mut mid = s.len() / 2;
    while !s.is_char_boundary(mid) {
        mid += 1;
    }
    [&s[..mid], &s[mid..]]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Running the real CLI

/// The Claude Code CLI: env `AGENT_FARM_TEST_CLAUDE`, else
/// `<CARGO_MANIFEST_DIR>/target/tools/claude/node_modules/.bin/claude`, else `claude` on PATH.
pub fn claude_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AGENT_FARM_TEST_CLAUDE").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            eprintln!("AGENT_FARM_TEST_CLAUDE={} is not a file", p.display());
            return None;
        }
        return Some(p);
    }
    let local =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/claude/node_modules/.bin/claude");
    if local.is_file() {
        return Some(local);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("claude"))
        .find(|p| p.is_file())
}

/// The newest published CLI, next to the pinned one: `$AGENT_FARM_TEST_CLAUDE_LATEST`, else
/// `target/tools/claude-latest/node_modules/.bin/claude` (what `.ci/run` installs).
pub fn claude_latest_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AGENT_FARM_TEST_CLAUDE_LATEST").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/tools/claude-latest/node_modules/.bin/claude");
    local.is_file().then_some(local)
}

/// Every CLI to test against: the pinned one and the newest published one (when installed;
/// under `CI=true` both must be). Prints a skip notice for each one missing elsewhere.
pub fn require_claudes(test: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = require_claude(test).into_iter().collect();
    match claude_latest_bin() {
        Some(latest) if !out.contains(&latest) => out.push(latest),
        Some(_) => {}
        None if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "{test}: CI requires the newest Claude Code CLI too: .ci/run installs it \
             (or set AGENT_FARM_TEST_CLAUDE_LATEST)"
        ),
        None => eprintln!(
            "skipped for the newest CLI: {test}: not installed (target/tools/claude-latest, or \
             AGENT_FARM_TEST_CLAUDE_LATEST)"
        ),
    }
    out
}

/// [`claude_bin`], or: panic under `CI=true`, else print a skip notice and return `None`.
pub fn require_claude(test: &str) -> Option<PathBuf> {
    let bin = claude_bin();
    if bin.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "{test}: CI requires the Claude Code CLI: .ci/run installs it \
                 (or set AGENT_FARM_TEST_CLAUDE)"
            );
        }
        eprintln!(
            "skipped: {test}: Claude Code CLI not found \
             (set AGENT_FARM_TEST_CLAUDE or run .ci/run's install step)"
        );
    }
    bin
}

/// Environment for a hermetic CLI run against `mock_url`, with all CLI state under `state_dir`
/// (created here). Use with `env_clear()` (see [`claude_command`]).
pub fn claude_env(mock_url: &str, state_dir: &Path) -> Vec<(String, String)> {
    let home = state_dir.join("home");
    let config = state_dir.join("config");
    let tmp = state_dir.join("tmp");
    for d in [&home, &config, &tmp] {
        std::fs::create_dir_all(d).unwrap();
    }
    let p = |p: &Path| p.to_string_lossy().into_owned();
    let mut env: Vec<(String, String)> = [
        ("ANTHROPIC_BASE_URL", mock_url.to_owned()),
        ("ANTHROPIC_API_KEY", "test-key".to_owned()),
        ("CLAUDE_CONFIG_DIR", p(&config)),
        ("CLAUDE_CODE_TMPDIR", p(&tmp)),
        ("TMPDIR", p(&tmp)),
        ("HOME", p(&home)),
        ("XDG_CONFIG_HOME", p(&home.join(".config"))),
        ("XDG_CACHE_HOME", p(&home.join(".cache"))),
        ("XDG_DATA_HOME", p(&home.join(".local/share"))),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
        ("CLAUDE_CODE_MAX_RETRIES", "2".to_owned()),
        ("DISABLE_AUTOUPDATER", "1".to_owned()),
        ("DISABLE_TELEMETRY", "1".to_owned()),
        ("DISABLE_ERROR_REPORTING", "1".to_owned()),
        // Never route 127.0.0.1 through a proxy inherited from somewhere.
        ("NO_PROXY", "127.0.0.1,localhost".to_owned()),
        ("no_proxy", "127.0.0.1,localhost".to_owned()),
        ("LANG", "C.UTF-8".to_owned()),
        ("TERM", "dumb".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if Path::new("/bin/bash").exists() {
        env.push(("SHELL".into(), "/bin/bash".into()));
    }
    env
}

/// `claude -p PROMPT --output-format stream-json --verbose --no-session-persistence ARGS` in
/// `cwd`, with a cleared environment: `PATH` plus [`claude_env`].
pub fn claude_command(
    bin: &Path,
    cwd: &Path,
    mock_url: &str,
    state_dir: &Path,
    prompt: &str,
    args: &[&str],
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(claude_env(mock_url, state_dir))
        .current_dir(cwd)
        .arg("-p")
        .arg(prompt)
        .args([
            "--output-format",
            "stream-json",
            "--verbose",
            "--no-session-persistence",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A finished CLI run.
#[derive(Debug)]
pub struct ClaudeRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// stdout lines that parsed as JSON.
    pub events: Vec<Value>,
}

impl ClaudeRun {
    /// The last `{"type":"result"}` event; panics (with the output) if there is none.
    pub fn result(&self) -> &Value {
        self.events
            .iter()
            .rev()
            .find(|e| e["type"] == "result")
            .unwrap_or_else(|| panic!("no result event in {self:#?}"))
    }

    /// Events with this `type` (and `subtype`, when given).
    pub fn events_of(&self, ty: &str, subtype: Option<&str>) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["type"] == ty && subtype.is_none_or(|s| e["subtype"] == s))
            .collect()
    }

    /// Content blocks of `assistant` (or `user`) events of this block type (`tool_use`, ...).
    pub fn blocks(&self, role: &str, block_type: &str) -> Vec<&Value> {
        self.events_of(role, None)
            .into_iter()
            .filter_map(|e| e["message"]["content"].as_array())
            .flatten()
            .filter(|b| b["type"] == block_type)
            .collect()
    }

    /// Assert the exit code, showing the whole run when it differs.
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// A started CLI process; [`Running::wait`] collects it within a deadline. Dropping it unwaited
/// (a failed assertion elsewhere) kills the child it started, and only that.
pub struct Running {
    child: Option<std::process::Child>,
    started: Instant,
    out: std::sync::mpsc::Receiver<String>,
    err: std::sync::mpsc::Receiver<String>,
}

fn drain(mut r: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Running {
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn the Claude Code CLI");
        let out = drain(child.stdout.take().unwrap());
        let err = drain(child.stderr.take().unwrap());
        Running {
            child: Some(child),
            started,
            out,
            err,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Output collected within 5 s of the exit (a grandchild may hold the pipe open).
    fn output(&self) -> (String, String) {
        let limit = Duration::from_secs(5);
        (
            self.out.recv_timeout(limit).unwrap_or_default(),
            self.err.recv_timeout(limit).unwrap_or_default(),
        )
    }

    /// Wait at most `limit`; on timeout kill this child (only it) and panic with its output.
    pub fn wait(mut self, limit: Duration) -> ClaudeRun {
        let mut child = self.child.take().unwrap();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if self.started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                let (stdout, stderr) = self.output();
                panic!(
                    "the CLI did not finish within {limit:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let elapsed = self.started.elapsed();
        let (stdout, stderr) = self.output();
        let events = stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        ClaudeRun {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
            elapsed,
            events,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Run the CLI to completion (see [`claude_command`]), at most `limit`.
pub fn run_claude(
    bin: &Path,
    cwd: &Path,
    mock_url: &str,
    state_dir: &Path,
    prompt: &str,
    args: &[&str],
    limit: Duration,
) -> ClaudeRun {
    Running::spawn(claude_command(bin, cwd, mock_url, state_dir, prompt, args)).wait(limit)
}
