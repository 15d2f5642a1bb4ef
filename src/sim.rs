//! The simulated agent (`agent-farm sim-agent PROMPT`): runs instructions found in its prompt,
//! so the whole pipeline can be exercised without a model. Used by `demo` and the tests.
//!
//! If the prompt contains a fenced block opened with "```sim", only the lines inside such blocks
//! are instructions (the rest is prose for humans); otherwise every line is. Blank lines and
//! lines starting with `#` are ignored. Paths are relative to the working directory. In TEXT,
//! `\n` stands for a newline and `\t` for a tab.
//!
//! | instruction | effect |
//! |---|---|
//! | `write PATH TEXT` | create or overwrite PATH with TEXT and a newline (parents created) |
//! | `append PATH TEXT` | append TEXT and a newline to PATH |
//! | `replace PATH OLD NEW` | replace every OLD with NEW in PATH (OLD and NEW without spaces) |
//! | `delete PATH` | remove a file (or an empty directory) |
//! | `rename FROM TO` | rename a file |
//! | `mkdir PATH` | create a directory and its parents |
//! | `symlink TARGET PATH` | create a symbolic link PATH → TARGET |
//! | `print TEXT` / `eprint TEXT` | write a line to stdout / stderr |
//! | `print-file PATH` | write PATH's contents to stdout; `${NAME}` in PATH is the environment variable NAME (a scripted answer: `agent-farm draft` sets `AGENT_FARM_DRAFT_ROLE` to `scout`, `planner` or `repair` and `AGENT_FARM_DRAFT_AREA` to a scout's area, `/` as `_`) |
//! | `sh COMMAND` | run `sh -c COMMAND` (its failure is reported on stderr, the agent goes on) |
//! | `sleep DURATION` | sleep (`200ms`, `2s`) |
//! | `touch PATH` | create PATH empty if missing (a marker for tests) |
//! | `wait-for PATH [DURATION]` | block until PATH exists (default 60s), exit 3 if it never does |
//! | `pid-file PATH` | write this process's pid to PATH |
//! | `spawn-child PIDFILE` | start a child process that hangs forever, write its pid to PIDFILE |
//! | `ignore-sigterm` | ignore SIGTERM from now on |
//! | `flood BYTES` | write BYTES bytes of filler to stdout |
//! | `commit MESSAGE` | commit all changes itself (`git add -A && git commit`) |
//! | `git-init PATH` | make PATH a git repository of its own (`git init PATH`) |
//! | `hang` | sleep forever |
//! | `fail-once MARKER` | the first time (MARKER missing): create MARKER and exit 1; later: go on |
//! | `exit CODE` | exit with CODE at once |
//!
//! An unknown instruction ends the agent with exit code 64 and a message naming the line.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// The instructions of a prompt, with their 1-based line numbers.
pub fn instructions(prompt: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = prompt.lines().collect();
    let fenced = lines.iter().any(|l| l.trim_start().starts_with("```sim"));
    let mut out = Vec::new();
    let mut inside = false;
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim();
        if fenced {
            if t.starts_with("```sim") {
                inside = true;
                continue;
            }
            if t.starts_with("```") && inside {
                inside = false;
                continue;
            }
            if !inside {
                continue;
            }
        }
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        out.push((i + 1, t.to_string()));
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\t", "\t")
}

fn io(line: usize, what: &str, e: std::io::Error) -> (i32, String) {
    (1, format!("sim-agent: line {line}: {what}: {e}"))
}

fn ensure_parent(p: &Path) -> std::io::Result<()> {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => std::fs::create_dir_all(d),
        _ => Ok(()),
    }
}

fn parse_duration(line: usize, s: &str) -> Result<Duration, (i32, String)> {
    humantime::parse_duration(s).map_err(|e| {
        (
            64,
            format!("sim-agent: line {line}: bad duration `{s}`: {e}"),
        )
    })
}

#[allow(unsafe_code)]
fn ignore_sigterm() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: installing SIG_IGN runs no handler code; nothing else in this process uses signals.
    unsafe {
        let _ = signal(Signal::SIGTERM, SigHandler::SigIgn);
    }
}

fn hang() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn commit_all(message: &str) -> Result<(), String> {
    let repo = git2::Repository::open(".").map_err(|e| e.to_string())?;
    let mut index = repo.index().map_err(|e| e.to_string())?;
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .and_then(|_| index.update_all(["*"], None))
        .and_then(|_| index.write())
        .map_err(|e| e.to_string())?;
    let tree = index
        .write_tree()
        .and_then(|t| repo.find_tree(t))
        .map_err(|e| e.to_string())?;
    let (author, committer) = crate::git::signatures(&repo).map_err(|e| e.to_string())?;
    let head = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = head.iter().collect();
    repo.commit(Some("HEAD"), &author, &committer, message, &tree, &parents)
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn step(line: usize, instr: &str) -> Result<(), (i32, String)> {
    let (verb, rest) = instr.split_once(char::is_whitespace).unwrap_or((instr, ""));
    let rest = rest.trim();
    let (arg1, arg_rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let need = |ok: bool| {
        if ok {
            Ok(())
        } else {
            Err((
                64,
                format!("sim-agent: line {line}: `{verb}` is missing an argument"),
            ))
        }
    };
    match verb {
        "write" | "append" => {
            need(!arg1.is_empty())?;
            let p = Path::new(arg1);
            ensure_parent(p).map_err(|e| io(line, arg1, e))?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(verb == "append")
                .truncate(verb == "write")
                .open(p)
                .map_err(|e| io(line, arg1, e))?;
            writeln!(f, "{}", unescape(arg_rest)).map_err(|e| io(line, arg1, e))?;
        }
        "replace" => {
            let mut parts = rest.split_whitespace();
            let (Some(p), Some(old), Some(new)) = (parts.next(), parts.next(), parts.next()) else {
                return Err((
                    64,
                    format!("sim-agent: line {line}: `replace PATH OLD NEW`"),
                ));
            };
            let text = std::fs::read_to_string(p).map_err(|e| io(line, p, e))?;
            std::fs::write(p, text.replace(&unescape(old), &unescape(new)))
                .map_err(|e| io(line, p, e))?;
        }
        "delete" => {
            need(!arg1.is_empty())?;
            let p = Path::new(arg1);
            if p.is_dir() {
                std::fs::remove_dir(p)
            } else {
                std::fs::remove_file(p)
            }
            .map_err(|e| io(line, arg1, e))?;
        }
        "rename" => {
            need(!arg1.is_empty() && !arg_rest.is_empty())?;
            ensure_parent(Path::new(arg_rest)).map_err(|e| io(line, arg_rest, e))?;
            std::fs::rename(arg1, arg_rest).map_err(|e| io(line, arg1, e))?;
        }
        "mkdir" => {
            need(!arg1.is_empty())?;
            std::fs::create_dir_all(arg1).map_err(|e| io(line, arg1, e))?;
        }
        "symlink" => {
            need(!arg1.is_empty() && !arg_rest.is_empty())?;
            ensure_parent(Path::new(arg_rest)).map_err(|e| io(line, arg_rest, e))?;
            std::os::unix::fs::symlink(arg1, arg_rest).map_err(|e| io(line, arg_rest, e))?;
        }
        "print" => {
            println!("{}", unescape(rest));
            let _ = std::io::stdout().flush();
        }
        "eprint" => eprintln!("{}", unescape(rest)),
        "print-file" => {
            need(!rest.is_empty())?;
            let path = expand_env(rest);
            let text = std::fs::read_to_string(&path).map_err(|e| io(line, &path, e))?;
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
        "sh" => {
            need(!rest.is_empty())?;
            // Like a model running a shell command: its failure is output, not the end.
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(rest)
                .stdin(std::process::Stdio::null())
                .status()
                .map_err(|e| io(line, "sh", e))?;
            if !status.success() {
                eprintln!("sim-agent: line {line}: `{rest}` failed: {status}");
            }
        }
        "sleep" => std::thread::sleep(parse_duration(line, rest)?),
        "touch" => {
            need(!arg1.is_empty())?;
            let p = Path::new(arg1);
            ensure_parent(p).map_err(|e| io(line, arg1, e))?;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| io(line, arg1, e))?;
        }
        "wait-for" => {
            need(!arg1.is_empty())?;
            let limit = if arg_rest.is_empty() {
                Duration::from_secs(60)
            } else {
                parse_duration(line, arg_rest)?
            };
            let start = Instant::now();
            // Polling a file is this fake agent's whole job here; the farm never polls like this.
            while !Path::new(arg1).exists() {
                if start.elapsed() > limit {
                    return Err((
                        3,
                        format!(
                            "sim-agent: line {line}: {arg1} did not appear within {}",
                            humantime::format_duration(limit)
                        ),
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        "pid-file" => {
            need(!arg1.is_empty())?;
            write_atomic(Path::new(arg1), &std::process::id().to_string())
                .map_err(|e| io(line, arg1, e))?;
        }
        "spawn-child" => {
            need(!arg1.is_empty())?;
            let exe = std::env::current_exe().map_err(|e| io(line, "current_exe", e))?;
            let child = std::process::Command::new(exe)
                .args(["sim-agent", "hang"])
                .spawn()
                .map_err(|e| io(line, "spawn-child", e))?;
            write_atomic(Path::new(arg1), &child.id().to_string())
                .map_err(|e| io(line, arg1, e))?;
            // The child is deliberately not waited for: it is meant to outlive this line.
            std::mem::forget(child);
        }
        "ignore-sigterm" => ignore_sigterm(),
        "flood" => {
            let n: u64 = rest.parse().map_err(|_| {
                (
                    64,
                    format!("sim-agent: line {line}: `flood BYTES` needs a number"),
                )
            })?;
            let chunk = [b'x'; 8191];
            let mut out = std::io::stdout().lock();
            let mut left = n;
            while left > 0 {
                let k = left.min(8192) as usize;
                let _ = out.write_all(&chunk[..k - 1]);
                let _ = out.write_all(b"\n");
                left -= k as u64;
            }
            let _ = out.flush();
        }
        "git-init" => {
            need(!arg1.is_empty())?;
            git2::Repository::init(arg1)
                .map_err(|e| (1, format!("sim-agent: line {line}: git-init {arg1}: {e}")))?;
        }
        "commit" => commit_all(if rest.is_empty() {
            "sim-agent commit"
        } else {
            rest
        })
        .map_err(|e| (1, format!("sim-agent: line {line}: commit failed: {e}")))?,
        "fail-once" => {
            need(!arg1.is_empty())?;
            let p = Path::new(arg1);
            if !p.exists() {
                write_atomic(p, "failed once").map_err(|e| io(line, arg1, e))?;
                return Err((
                    1,
                    format!("sim-agent: line {line}: failing once (marker {arg1})"),
                ));
            }
        }
        "hang" => hang(),
        "exit" => {
            let code: i32 = rest.parse().map_err(|_| {
                (
                    64,
                    format!("sim-agent: line {line}: `exit CODE` needs a number"),
                )
            })?;
            let _ = std::io::stdout().flush();
            std::process::exit(code);
        }
        other => {
            return Err((
                64,
                format!("sim-agent: line {line}: unknown instruction `{other}`"),
            ));
        }
    }
    Ok(())
}

/// `text` with every `${NAME}` replaced by the environment variable NAME (empty when unset).
fn expand_env(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        match rest[i + 2..].find('}') {
            Some(j) => {
                out.push_str(&std::env::var(&rest[i + 2..i + 2 + j]).unwrap_or_default());
                rest = &rest[i + 3 + j..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Write a file so that readers never see it half-written (tests wait for these files).
fn write_atomic(p: &Path, text: &str) -> std::io::Result<()> {
    ensure_parent(p)?;
    let tmp = p.with_extension("tmp-sim");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, p)
}

/// Run the instructions of `prompt`; returns the process exit code.
pub fn run(prompt: &str) -> i32 {
    for (line, instr) in instructions(prompt) {
        if let Err((code, msg)) = step(line, &instr) {
            eprintln!("{msg}");
            return code;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenced_blocks_select_instructions() {
        let p =
            "Build the API.\n\n```sim\nwrite a.txt hello\n# comment\nsleep 1ms\n```\nMore prose.\n";
        assert_eq!(
            instructions(p),
            vec![(4, "write a.txt hello".into()), (6, "sleep 1ms".into())]
        );
        assert_eq!(
            instructions("write a b\n\nexit 2"),
            vec![(1, "write a b".into()), (3, "exit 2".into())]
        );
    }

    #[test]
    fn env_is_expanded_in_paths() {
        assert_eq!(
            expand_env("/x/${AGENT_FARM_SIM_UNSET_VAR}.json"),
            "/x/.json"
        );
        assert_eq!(expand_env("/x/${open"), "/x/${open");
        assert_eq!(expand_env("plain"), "plain");
    }

    #[test]
    fn unknown_instruction_is_exit_64() {
        assert_eq!(step(7, "dance now").unwrap_err().0, 64);
        assert!(step(7, "dance now").unwrap_err().1.contains("line 7"));
    }
}
