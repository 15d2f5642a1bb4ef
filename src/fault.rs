//! Fault injection at named points inside effects, for the crash tests:
//! `AGENT_FARM_FAULT=at:<point>[:<n>]` makes this process SIGKILL itself the n-th time it
//! reaches `<point>` (e.g. `at:land.checkout`), as a power cut or an OOM kill would;
//! `panic:<point>` panics there instead (a bug in an effect). The points
//! are listed in TESTING.md. Event-based faults (`before:`/`after:` an event) live in the runner.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// (panic instead of SIGKILL, the point, the occurrence)
fn spec() -> &'static Option<(bool, String, u32)> {
    static SPEC: OnceLock<Option<(bool, String, u32)>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let v = std::env::var("AGENT_FARM_FAULT").ok()?;
        let (panic, rest) = match v.strip_prefix("at:") {
            Some(r) => (false, r),
            None => (true, v.strip_prefix("panic:")?),
        };
        let (point, n) = match rest.rsplit_once(':') {
            Some((p, n)) if n.chars().all(|c| c.is_ascii_digit()) => (p, n.parse().ok()?),
            _ => (rest, 1),
        };
        Some((panic, point.to_string(), n))
    })
}

/// Die here if the crash test asked for it (`at:`), or panic (`panic:`, a bug in an effect).
pub fn point(name: &str) {
    static SEEN: AtomicU32 = AtomicU32::new(0);
    let Some((panic, p, n)) = spec() else { return };
    if p == name && SEEN.fetch_add(1, Ordering::SeqCst) + 1 >= *n {
        if *panic {
            panic!("fault injected at {name}");
        }
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
