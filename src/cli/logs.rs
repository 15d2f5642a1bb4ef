//! `agent-farm logs`: a domain agent's output as a readable transcript (or raw), optionally
//! following it.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use crate::error::PreflightError;
use crate::record::RunRecord;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The domain.
    pub domain: String,
    /// Run id or unique prefix (default: the most recent run).
    #[arg(value_name = "RUN")]
    pub run: Option<String>,
    /// The run, as an option (kept for older scripts; give RUN after the domain instead).
    #[arg(long = "run", value_name = "RUN", hide = true, conflicts_with = "run")]
    pub run_flag: Option<String>,
    /// Keep printing new output until the domain's agent is done.
    #[arg(short, long)]
    pub follow: bool,
    /// Which log: output (agent stdout+stderr), setup or verify.
    #[arg(long, value_enum, default_value_t = Kind::Output)]
    pub kind: Kind,
    /// The log as written (the agent's raw stream), not a transcript.
    #[arg(long)]
    pub raw: bool,
    /// Only this attempt of the agent.
    #[arg(long, value_name = "N")]
    pub attempt: Option<u32>,
}

/// Where the bytes read so far go: as they are, or through the transcript, line by line.
struct Sink {
    transcript: Option<crate::transcript::Transcript>,
    partial: Vec<u8>,
}

impl Sink {
    fn write(&mut self, out: &mut impl Write, buf: &[u8]) -> std::io::Result<()> {
        let Some(t) = self.transcript.as_mut() else {
            return out.write_all(buf);
        };
        self.partial.extend_from_slice(buf);
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            for l in t.line(&line) {
                writeln!(out, "{l}")?;
            }
        }
        Ok(())
    }

    fn end(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.write(out, &rest)?;
            self.write(out, b"\n")?;
        }
        out.flush()
    }
}

/// The logs a domain keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, strum::Display)]
#[strum(serialize_all = "snake_case")]
pub enum Kind {
    Output,
    Setup,
    Verify,
}

pub fn run(cwd: &Path, args: Args) -> anyhow::Result<i32> {
    let run = args.run.as_deref().or(args.run_flag.as_deref());
    let rec = super::find_run(cwd, run)?;
    if rec.domain(&args.domain).is_none() {
        return Err(PreflightError::NoSuchDomain {
            run_id: rec.run_id.clone(),
            domain: args.domain,
            domains: rec.domains.keys().cloned().collect(),
        }
        .into());
    }
    let paths = rec.paths();
    let file = match args.kind {
        Kind::Output => paths.output_log(&args.domain),
        Kind::Setup => paths.setup_log(&args.domain),
        Kind::Verify => paths.domain_verify_log(&args.domain),
    };
    let mut out = std::io::stdout().lock();
    let transcript = (!args.raw && args.kind == Kind::Output).then(|| {
        let d = rec.domain(&args.domain);
        crate::transcript::Transcript::new(
            d.map(|d| d.worktree.display().to_string()),
            args.attempt,
        )
    });
    let mut sink = Sink {
        transcript,
        partial: Vec::new(),
    };
    let mut pos = 0u64;
    loop {
        if let Ok(mut f) = std::fs::File::open(&file) {
            f.seek(SeekFrom::Start(pos))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            pos += buf.len() as u64;
            sink.write(&mut out, &buf)?;
            out.flush()?;
        } else if !args.follow {
            eprintln!(
                "no {} log yet for `{}` ({})",
                args.kind,
                args.domain,
                file.display()
            );
            return Ok(0);
        }
        if !args.follow {
            sink.end(&mut out)?;
            return Ok(0);
        }
        let done = RunRecord::load(&paths.record())
            .ok()
            .and_then(|r| r.domain(&args.domain).map(|d| d.status.is_terminal()))
            .unwrap_or(true);
        if done {
            // One last read happened above after the domain ended; print anything still pending.
            if let Ok(mut f) = std::fs::File::open(&file) {
                f.seek(SeekFrom::Start(pos))?;
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)?;
                sink.write(&mut out, &buf)?;
            }
            sink.end(&mut out)?;
            return Ok(0);
        }
        // Following a file is polling by nature (as `tail -f` does without inotify).
        std::thread::sleep(Duration::from_millis(250));
    }
}
