//! Job control: SIGTSTP (Ctrl-Z) pauses the whole farm — every agent stopped, timeouts frozen —
//! and SIGCONT (`fg`) continues it.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

#[test]
fn ctrl_z_stops_every_agent_and_freezes_timeouts_until_fg() {
    let repo = TestRepo::new();
    let m = repo.scratch.display().to_string();
    // The agent waits for `go`, which comes only after a pause longer than its timeout.
    repo.write_plan(&sim_plan(
        "",
        &domain(
            "a",
            "src/api/**",
            &format!("pid-file {m}/agent.pid\nwait-for {m}/go 30s\nwrite src/api/a.rs a"),
            "timeout: 1500ms",
        ),
    ));
    let mut farm = repo.spawn_farm(&["run", "--progress", "none"]);
    let agent_pid = repo.scratch.join("agent.pid");
    wait_until("the agent", Duration::from_secs(30), || {
        std::fs::read_to_string(&agent_pid).is_ok_and(|s| s.trim().parse::<u32>().is_ok())
    });
    let agent = read_pid(&agent_pid);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(farm.id() as i32),
        nix::sys::signal::Signal::SIGTSTP,
    )
    .unwrap();
    wait_until(
        "the farm and its agent to stop",
        Duration::from_secs(10),
        || state(farm.id()) == Some('T') && state(agent) == Some('T'),
    );
    // Stay paused past the agent's timeout: time passing is the scenario, not a wait.
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(state(agent), Some('T'), "the agent stayed stopped");
    std::fs::write(repo.scratch.join("go"), "").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(farm.id() as i32),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    let status = farm.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the run landed, nothing timed out");
    let rec = repo.record();
    assert_eq!(rec["domains"]["a"]["status"], "merged", "{rec}");
    let events = repo.events();
    assert!(events.iter().any(|e| e["event"] == "paused"));
    let cont = events.iter().find(|e| e["event"] == "continued").unwrap();
    assert!(cont["paused_ms"].as_u64().unwrap() >= 2000, "{cont}");
    // The pause is not work: the agent's time and the run's wall time leave it out.
    let report = repo.report();
    let wall = report["metrics"]["wall_ms"].as_u64().unwrap();
    let total = rec["finished_ms"].as_u64().unwrap() - rec["started_ms"].as_u64().unwrap();
    assert!(wall + 2000 <= total, "wall {wall} total {total}");
    let agent_ms = report["metrics"]["agent_ms"].as_u64().unwrap();
    assert!(agent_ms < 1500, "agent time {agent_ms} includes the pause");
}
