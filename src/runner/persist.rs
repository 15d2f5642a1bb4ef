//! Durable writes off the event loop: one writer thread appends events to `events.jsonl` and
//! rewrites `run.json` (and each domain's result file) atomically, in order. Consecutive record
//! snapshots are coalesced; [`Persister::flush`] waits until everything queued is on disk.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;

enum Msg {
    Line(String),
    Snapshot {
        path: PathBuf,
        json: Vec<u8>,
    },
    Flush(mpsc::Sender<()>),
    /// Like `Flush`, for an async waiter (an effect that must not start before this point).
    Barrier(tokio::sync::oneshot::Sender<()>),
}

pub struct Persister {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The first write that failed (a full disk, a removed directory), for the final report.
    error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

fn write_atomic(path: &std::path::Path, json: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(json)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

impl Persister {
    pub fn start(events_path: PathBuf) -> std::io::Result<Persister> {
        if let Some(p) = events_path.parent() {
            std::fs::create_dir_all(p)?;
        }
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&events_path)?;
        if log.metadata()?.len() == 0 {
            // A new log begins with its header (events.rs, `Header`).
            log.write_all(format!("{}\n", crate::events::Header::line()).as_bytes())?;
            log.sync_data()?;
        } else if crate::journal::ends_mid_line(&events_path) {
            // A process killed mid-line left a torn last line: end it, so that the next event
            // starts a line of its own (readers skip the torn one).
            log.write_all(b"\n")?;
        }
        let (tx, rx) = mpsc::channel::<Msg>();
        let error = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
        let failed = error.clone();
        let fail = move |what: String| {
            tracing::error!("{what}");
            if let Ok(mut e) = failed.lock()
                && e.is_none()
            {
                *e = Some(what);
            }
        };
        let thread = std::thread::Builder::new()
            .name("agent-farm-persist".into())
            .spawn(move || {
                let mut pending: Vec<(PathBuf, Vec<u8>)> = Vec::new();
                let mut acks: Vec<mpsc::Sender<()>> = Vec::new();
                let mut barriers: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
                while let Ok(first) = rx.recv() {
                    // Take everything queued: lines go out in order, snapshots of one file
                    // are coalesced to the newest.
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    for m in batch {
                        match m {
                            Msg::Line(l) => {
                                // One write per line: a kill never glues two events.
                                let mut buf = l.into_bytes();
                                buf.push(b'\n');
                                if let Err(e) = log.write_all(&buf) {
                                    fail(format!("cannot append to the event log: {e}"));
                                }
                            }
                            Msg::Snapshot { path, json } => {
                                pending.retain(|(p, _)| p != &path);
                                pending.push((path, json));
                            }
                            Msg::Flush(ack) => acks.push(ack),
                            Msg::Barrier(b) => barriers.push(b),
                        }
                    }
                    let _ = log.flush();
                    for (path, json) in pending.drain(..) {
                        if let Err(e) = write_atomic(&path, &json) {
                            fail(format!("cannot write {}: {e}", path.display()));
                        }
                    }
                    if !acks.is_empty() || !barriers.is_empty() {
                        let _ = log.sync_data();
                        for a in acks.drain(..) {
                            let _ = a.send(());
                        }
                        for b in barriers.drain(..) {
                            let _ = b.send(());
                        }
                    }
                }
                let _ = log.sync_data();
            })?;
        Ok(Persister {
            tx: Some(tx),
            thread: Some(thread),
            error,
        })
    }

    pub fn line(&self, line: String) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Line(line));
        }
    }

    pub fn snapshot(&self, path: PathBuf, json: Vec<u8>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Snapshot { path, json });
        }
    }

    /// The first write that failed, if any.
    pub fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }

    /// Resolves once everything sent so far is written and synced; never blocks the caller.
    pub fn barrier(&self) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Some(t) = &self.tx {
            let _ = t.send(Msg::Barrier(tx));
        }
        rx
    }

    /// Block until everything sent so far is written.
    pub fn flush(&self) {
        if let Some(tx) = &self.tx {
            let (ack, done) = mpsc::channel();
            if tx.send(Msg::Flush(ack)).is_ok() {
                let _ = done.recv();
            }
        }
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{FarmEvent, Header, Timed};

    #[test]
    fn a_torn_last_line_is_ended_before_the_next_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"event\":\"a\"}\n{\"event\":\"b\",\"tor").unwrap();
        let p = Persister::start(path.clone()).unwrap();
        p.line("{\"event\":\"c\"}".into());
        p.flush();
        drop(p);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[2], "{\"event\":\"c\"}");
        assert!(text.ends_with('\n'));
    }

    fn line(ev: FarmEvent) -> String {
        serde_json::to_string(&Timed {
            at_ms: 1,
            event: ev,
        })
        .unwrap()
    }

    #[test]
    fn a_new_log_gets_its_header_and_a_torn_one_a_new_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let p = Persister::start(path.clone()).unwrap();
        p.line(line(FarmEvent::MergeRequested));
        drop(p);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().next(), Some(Header::line().as_str()));
        // Killed in the middle of a line; the next process appends after it.
        let whole = line(FarmEvent::Resumed { pid: 2 });
        std::fs::write(&path, format!("{text}{}", &whole[..10])).unwrap();
        let p = Persister::start(path.clone()).unwrap();
        p.line(whole);
        drop(p);
        let log = crate::events::read(&path).unwrap();
        let kinds: Vec<&str> = log.events.iter().map(|e| e.event.name()).collect();
        assert_eq!(kinds, ["merge_requested", "resumed"]);
        assert_eq!(log.torn, 1);
    }
}
