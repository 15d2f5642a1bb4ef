//! The farm-wide pause: a clock of the time the farm was paused (Ctrl-Z today; a usage limit
//! that has not reset yet, later), so that timeouts, idle timeouts, retry delays and the
//! deadline count only the time the farm ran. One per process: the farm is paused as a whole.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

struct State {
    since: Option<Instant>,
    total: Duration,
}

static STATE: Mutex<State> = Mutex::new(State {
    since: None,
    total: Duration::ZERO,
});
static RESUMED: tokio::sync::Notify = tokio::sync::Notify::const_new();

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Start a pause (a second one while paused changes nothing).
pub fn pause() {
    let mut s = state();
    if s.since.is_none() {
        s.since = Some(Instant::now());
    }
}

/// End the pause; returns how long it lasted.
pub fn resume() -> Duration {
    let took = {
        let mut s = state();
        let took = s.since.take().map(|t| t.elapsed()).unwrap_or_default();
        s.total += took;
        took
    };
    RESUMED.notify_waiters();
    took
}

pub fn is_paused() -> bool {
    state().since.is_some()
}

/// All the time paused so far, the current pause included.
pub fn total() -> Duration {
    let s = state();
    s.total + s.since.map(|t| t.elapsed()).unwrap_or_default()
}

/// Sleep until `d` of unpaused time has passed.
pub async fn sleep(d: Duration) {
    let start = Instant::now();
    let paused_before = total();
    loop {
        let notified = RESUMED.notified();
        if is_paused() {
            notified.await;
            continue;
        }
        let end = start + d + (total() - paused_before);
        if Instant::now() >= end {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(end) => {}
            _ = notified => {}
        }
    }
}

/// Time elapsed since `t`, less the time paused meanwhile (`paused_at_t`: [`total`] at `t`).
pub fn active_since(t: Instant, paused_at_t: Duration) -> Duration {
    t.elapsed()
        .saturating_sub(total().saturating_sub(paused_at_t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_does_not_count() {
        let t0 = tokio::time::Instant::now();
        let sleeper = tokio::spawn(sleep(Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_secs(4)).await;
        pause();
        // Paused: tokio's clock moves on, the sleep must not end.
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(!sleeper.is_finished());
        let _ = resume();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!sleeper.is_finished(), "only 9 s of active time so far");
        sleeper.await.unwrap();
        assert_eq!(t0.elapsed().as_secs(), 30, "10 s active + 20 s paused");
    }
}
