//! What the live view shows, computed from the run record alone (pure): the header's counts,
//! elapsed time and estimated remaining critical path, and a line per running domain. The TTY
//! reporter ([`crate::reporter::TtyReporter`]) draws it.

use crate::record::{DomainRecord, RunRecord};
use crate::report::fmt_ms;
use crate::vocab::DomainStatus;

/// How many domains are in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Preparing or running an agent (or waiting to retry).
    pub running: usize,
    /// Ready to start, waiting for a free slot.
    pub queued: usize,
    /// Waiting for a dependency to merge.
    pub waiting: usize,
    /// Finished, waiting to be merged.
    pub succeeded: usize,
    pub merged: usize,
    /// Failed, timed out, blocked or conflicted.
    pub failed: usize,
    /// Cancelled or skipped.
    pub cancelled: usize,
}

pub fn counts(rec: &RunRecord) -> Counts {
    let mut c = Counts::default();
    for d in rec.domains.values() {
        match d.status {
            DomainStatus::Pending => {
                let deps_merged = rec.plan.domain(&d.name).is_none_or(|p| {
                    p.depends_on.iter().all(|dep| {
                        rec.domain(dep)
                            .is_some_and(|r| r.status == DomainStatus::Merged)
                    })
                });
                if deps_merged {
                    c.queued += 1
                } else {
                    c.waiting += 1
                }
            }
            DomainStatus::Preparing | DomainStatus::Running => c.running += 1,
            DomainStatus::Succeeded => c.succeeded += 1,
            DomainStatus::Merged => c.merged += 1,
            DomainStatus::Failed
            | DomainStatus::TimedOut
            | DomainStatus::Blocked
            | DomainStatus::Conflicted => c.failed += 1,
            DomainStatus::Cancelled | DomainStatus::Skipped => c.cancelled += 1,
        }
    }
    c
}

fn finished(d: &DomainRecord) -> bool {
    !matches!(
        d.status,
        DomainStatus::Pending | DomainStatus::Preparing | DomainStatus::Running
    )
}

/// The estimated time left on the critical path at `now_ms`: unfinished domains weigh the mean
/// time finished ones took, less what a running one has already spent. `None` until a domain
/// has finished (nothing to estimate from) or once every domain has.
pub fn remaining_ms(rec: &RunRecord, now_ms: u64) -> Option<u64> {
    let done: Vec<u64> = rec
        .domains
        .values()
        .filter(|d| finished(d) && d.busy_ms() > 0)
        .map(|d| d.busy_ms())
        .collect();
    if done.is_empty() || rec.domains.values().all(finished) {
        return None;
    }
    let mean = done.iter().sum::<u64>() as f64 / done.len() as f64;
    let (_, ms) =
        crate::plan::schedule::critical_path(&rec.plan.domains, |n| match rec.domain(n) {
            Some(d) if finished(d) => 0.0,
            Some(d) => match d.started_ms {
                Some(s) => (mean - now_ms.saturating_sub(s) as f64).max(0.0),
                None => mean,
            },
            None => 0.0,
        });
    Some(ms as u64)
}

/// The header line: counts, elapsed, the estimate.
pub fn header(rec: &RunRecord, now_ms: u64) -> String {
    let c = counts(rec);
    let mut parts = vec![format!("{} running", c.running)];
    for (n, what) in [
        (c.queued, "queued"),
        (c.waiting, "waiting on dependencies"),
        (c.succeeded, "to merge"),
        (c.merged, "merged"),
        (c.failed, "failed"),
        (c.cancelled, "cancelled"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    let mut s = format!(
        "{} · {} · elapsed {}",
        rec.run_id,
        parts.join(" · "),
        fmt_ms(now_ms.saturating_sub(rec.started_ms))
    );
    if let Some(left) = remaining_ms(rec, now_ms) {
        s.push_str(&format!(" · ~{} left on the critical path", fmt_ms(left)));
    }
    s
}

/// The running domain's latest activity: what it did last, its turns, tokens (`live_tokens`: as
/// counted from its stream so far) and cost so far.
pub fn activity(d: &DomainRecord, live_tokens: Option<u64>) -> String {
    let mut parts = Vec::new();
    let attempt = d
        .attempts
        .last()
        .filter(|_| d.status == DomainStatus::Running);
    parts.push(
        attempt
            .and_then(|a| a.last_activity.clone())
            .unwrap_or_else(|| match (d.status, attempt) {
                (DomainStatus::Preparing, _) => "preparing worktree".into(),
                (_, Some(a)) if a.ended_ms.is_some() => "committing".into(),
                (_, Some(_)) => "agent running".into(),
                _ => "starting".into(),
            }),
    );
    if let Some(a) = attempt {
        if a.number > 1 {
            parts.push(format!("attempt {}", a.number));
        }
        if a.turns > 0 {
            parts.push(format!("turn {}", a.turns));
        }
        let tokens = a
            .usage
            .as_ref()
            .map(|u| u.input_tokens + u.output_tokens)
            .filter(|t| *t > 0)
            .or(live_tokens)
            .unwrap_or(0);
        if tokens > 0 {
            parts.push(format!("{:.1}k tokens", tokens as f64 / 1000.0));
        }
    }
    let cost = d.cost_usd();
    if cost > 0.0 {
        parts.push(format!("${cost:.2}"));
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(yaml: &str) -> RunRecord {
        let plan = crate::plan::parse(std::path::Path::new("farm.yaml"), yaml, |_| {
            Err("no prompt files".to_string())
        })
        .unwrap();
        RunRecord::new(
            "r1".into(),
            "/r".into(),
            "/r/.git".into(),
            plan,
            "main".into(),
            "0".repeat(40),
            "main".into(),
            "/r.farm".into(),
            crate::record::RunOptions {
                jobs: 2,
                fail_fast: false,
                keep_worktrees: false,
                no_merge: false,
                deadline_ms: None,
                retries: None,
            },
        )
    }

    const PLAN: &str = "version: 1\nagent:\n  preset: sim\ndomains:\n  - name: a\n    owns: [a/**]\n    prompt: p\n  - name: b\n    owns: [b/**]\n    prompt: p\n    depends_on: [a]\n  - name: c\n    owns: [c/**]\n    prompt: p\n";

    #[test]
    fn counts_tell_queued_from_waiting_on_a_dependency() {
        let mut r = rec(PLAN);
        let c = counts(&r);
        assert_eq!((c.queued, c.waiting, c.running), (2, 1, 0));
        r.domains.get_mut("a").unwrap().status = DomainStatus::Running;
        r.domains.get_mut("c").unwrap().status = DomainStatus::Failed;
        let c = counts(&r);
        assert_eq!((c.running, c.waiting, c.failed, c.queued), (1, 1, 1, 0));
        r.domains.get_mut("a").unwrap().status = DomainStatus::Merged;
        let c = counts(&r);
        assert_eq!((c.merged, c.queued, c.waiting), (1, 1, 0));
    }

    #[test]
    fn the_estimate_comes_from_finished_domains() {
        let mut r = rec(PLAN);
        r.started_ms = 0;
        assert_eq!(remaining_ms(&r, 1000), None, "nothing finished yet");
        let c = r.domains.get_mut("c").unwrap();
        c.status = DomainStatus::Merged;
        (c.started_ms, c.ended_ms) = (Some(0), Some(10_000));
        let a = r.domains.get_mut("a").unwrap();
        a.status = DomainStatus::Running;
        a.started_ms = Some(2_000);
        // a has 10s - 4s = 6s left, then b (pending) takes 10s.
        assert_eq!(remaining_ms(&r, 6_000), Some(16_000));
        let h = header(&r, 6_000);
        assert!(
            h.contains("1 running · 1 waiting on dependencies · 1 merged"),
            "{h}"
        );
        assert!(h.contains("elapsed 6.0s"), "{h}");
        assert!(h.contains("~16.0s left"), "{h}");
    }
}
