//! The live view on a terminal: agent-farm run inside a pseudo-terminal, its header's counts
//! checked against the run, colour only when allowed.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::Stdio;

use common::*;

/// Run `agent-farm run` with stdin, stdout and stderr on a pseudo-terminal; everything it drew.
fn run_on_a_terminal(repo: &TestRepo, env: &[(&str, &str)]) -> (i32, String) {
    let size = nix::pty::Winsize {
        ws_row: 40,
        ws_col: 160,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
    let mut cmd = repo.farm_cmd(&repo.root, &["run"]);
    cmd.env("TERM", "xterm-256color")
        .stdin(slave(&pty.slave))
        .stdout(slave(&pty.slave))
        .stderr(slave(&pty.slave));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    // Only the run may hold the terminal now, or reading it never ends.
    drop(cmd);
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let mut out = Vec::new();
    // Reading ends with EIO once the last holder of the terminal (the run) is gone.
    let mut buf = [0u8; 8192];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&out).into_owned())
}

/// The text without terminal escape sequences, each of which (a cursor move, a line erased)
/// starts a new line: what was drawn, one drawing per line.
fn plain(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            out.push('\n');
            continue;
        }
        out.push(if c == '\r' { '\n' } else { c });
    }
    out
}

fn plan(repo: &TestRepo) -> String {
    let m = repo.scratch.display().to_string();
    sim_plan(
        "",
        &[
            domain(
                "api",
                "src/api/**",
                // A watched directory made and deleted: notify must not warn about it.
                &format!(
                    "mkdir src/api/tmp/deep\nwrite src/api/tmp/deep/x x\nsh rm -rf src/api/tmp\nwrite src/api/a.rs a\nwait-for {m}/go 30s"
                ),
                "",
            ),
            domain(
                "ui",
                "src/ui/**",
                &format!("touch {m}/go\nwrite src/ui/b.html b"),
                "",
            ),
            domain("docs", "docs/**", "write docs/x.md x", "depends_on: [api]"),
            domain("bad", "bad/**", "exit 3", ""),
        ]
        .concat(),
    )
}

#[test]
fn the_header_counts_match_the_run_and_outcomes_are_coloured() {
    let repo = TestRepo::new();
    repo.write_plan(&plan(&repo));
    let (code, raw) = run_on_a_terminal(&repo, &[]);
    assert_eq!(code, 6, "{raw}");
    let text = plain(&raw);
    let rec = repo.record();
    let id = rec["run_id"].as_str().unwrap();
    // The final header, as the run ended: 3 merged, 1 failed, nothing running.
    let last = text
        .lines()
        .rev()
        .find(|l| l.starts_with("agent-farm: "))
        .unwrap_or_else(|| panic!("no final header in\n{text}"));
    assert!(
        last.starts_with(&format!(
            "agent-farm: {id} · 0 running · 3 merged · 1 failed · elapsed "
        )),
        "{last}"
    );
    // While it ran, the header showed work in progress and the domains waiting on another.
    assert!(text.contains(&format!("{id} · ")), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains(" running") && !l.contains("0 running")),
        "{text}"
    );
    assert!(text.contains(" · 1 waiting on dependencies"), "{text}");
    // A line per running domain with its latest activity.
    assert!(
        text.lines()
            .any(|l| l.contains(" api ") && l.contains("agent running")),
        "{text}"
    );
    assert!(!text.contains("WARN"), "{text}");
    // Outcomes are coloured (green merged, red failed) on a terminal without NO_COLOR.
    assert!(raw.contains("\x1b[32m"), "no green in {raw:?}");
    assert!(raw.contains("\x1b[31m"), "no red in {raw:?}");
}

#[test]
fn no_color_is_honoured() {
    let repo = TestRepo::new();
    repo.write_plan(&plan(&repo));
    let (code, raw) = run_on_a_terminal(&repo, &[("NO_COLOR", "1")]);
    assert_eq!(code, 6, "{raw}");
    for sgr in ["\x1b[31m", "\x1b[32m", "\x1b[33m"] {
        assert!(
            !raw.contains(sgr),
            "colour {sgr:?} despite NO_COLOR: {raw:?}"
        );
    }
    assert!(plain(&raw).contains("agent-farm: "), "{raw}");
}
