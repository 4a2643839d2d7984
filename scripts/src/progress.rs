//! The progress line of a run processed in the foreground.

use std::io::{IsTerminal, Write};

use chrono::{DateTime, Utc};
use tributary::store::runs::Run;
use tributary::store::streams::Progress;

/// `streams 12/40 (1 in error) · activities 3450 new, 120 updated · delayed until 10:42:07 (rate limited…)`
pub fn line(run: &Run, progress: &Progress) -> String {
    let mut text = format!(
        "run {} {}: streams {}/{}",
        short(run),
        run.state,
        progress.processed + progress.errored,
        progress.total()
    );
    if progress.errored > 0 {
        text.push_str(&format!(" ({} in error)", progress.errored));
    }
    text.push_str(&format!(
        " · activities {} new, {} updated · members {} new",
        progress.activities_created, progress.activities_updated, progress.members_created
    ));
    if let Some(until) = run.delayed_until {
        text.push_str(&format!(
            " · delayed until {} ({})",
            clock(until),
            run.delay_reason.as_deref().unwrap_or("")
        ));
    }
    text
}

fn short(run: &Run) -> String {
    run.id.to_string()[..8].to_owned()
}

pub fn clock(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Writes progress to stderr: rewritten in place on a terminal, one line per update otherwise.
pub struct ProgressWriter {
    terminal: bool,
    last: String,
}

impl Default for ProgressWriter {
    fn default() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            last: String::new(),
        }
    }
}

impl ProgressWriter {
    pub fn update(&mut self, text: String) {
        if text == self.last {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K{text}");
        } else {
            let _ = writeln!(err, "{text}");
        }
        let _ = err.flush();
        self.last = text;
    }

    pub fn finish(&mut self) {
        if self.terminal && !self.last.is_empty() {
            eprintln!();
        }
        self.last.clear();
    }
}
