//! Finding and ending a process's descendants. The supervisor is a child subreaper, so every
//! process its command started is in its subtree of /proc's parent links, whatever happened to
//! its group, session or environment.

use std::collections::BTreeMap;

/// Parent links of every live process (zombies excluded), from /proc.
fn parents() -> BTreeMap<i32, i32> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((state, ppid, _)) = super::stat_fields(&stat) else {
            continue;
        };
        // A zombie leader whose other threads still run is alive (and so are its children).
        if (state != "Z" || threads(pid) > 1) && state != "X" {
            out.insert(pid, ppid);
        }
    }
    out
}

fn threads(pid: i32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(1)
}

/// Whether a process is stopped (job control) or gone.
pub fn stopped(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_owned))
            .is_none_or(|s| s == "T" || s == "t" || s == "Z" || s == "X"),
        Err(_) => true,
    }
}

/// The live descendants of `root`, parents before children, each with its parent.
pub fn descendants(root: i32) -> Vec<(i32, i32)> {
    let links = parents();
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (pid, ppid) in &links {
        children.entry(*ppid).or_default().push(*pid);
    }
    let mut out = Vec::new();
    let mut queue = std::collections::VecDeque::from([root]);
    while let Some(p) = queue.pop_front() {
        for c in children.get(&p).into_iter().flatten() {
            out.push((*c, p));
            queue.push_back(*c);
        }
    }
    out
}

/// A process's command line for a report, abbreviated.
pub fn command_of(pid: i32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut s: String = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    if s.is_empty() {
        s = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| format!("[{}]", c.trim()))
            .unwrap_or_else(|_| "?".into());
    }
    if s.chars().count() > 160 {
        s = s.chars().take(157).collect::<String>() + "...";
    }
    s
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory effects.
    unsafe {
        libc::kill(pid, sig);
    }
}
