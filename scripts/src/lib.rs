//! Operator commands: `connect-integration`, `process-integration`, `continue-run`, the demo,
//! the benchmark and the integration scaffold. Each binary parses its arguments and calls into this library.

pub mod bench;
pub mod commands;
pub mod context;
pub mod demo;
pub mod inline;
pub mod progress;
pub mod scaffold;

use std::process::ExitCode;

/// How the commands exit: scripts can tell the cases apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for was done (or handed to the workers).
    Ok,
    /// A run ended in `error`.
    RunFailed,
    /// The request was refused: unknown ids or platform, malformed JSON, invalid settings.
    Refused,
    /// A run processed inline was deferred (rate limit, sleep, backoff); it resumes later.
    Delayed,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(match exit {
            Exit::Ok => 0,
            Exit::RunFailed => 1,
            Exit::Refused => 2,
            Exit::Delayed => 3,
        })
    }
}

/// Exit codes, for every command's `--help`.
pub const EXIT_CODES: &str = "Exit codes: 0 done (or handed to the workers), 1 a run ended in error, \
2 refused (unknown id or platform, malformed JSON, invalid settings), 3 a run processed with --inline was delayed.";

/// Logs to stderr, `RUST_LOG` or `warn` by default (the commands print their own progress).
pub fn init_tracing() {
    tributary::runtime::init_tracing("warn,sqlx::query=error");
}

/// A token cancelled by the first SIGTERM or Ctrl-C (an inline run is then released for the
/// workers).
pub fn shutdown_on_signal() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = token.clone();
    match tributary::runtime::ShutdownSignals::listen() {
        Ok(mut signals) => {
            tokio::spawn(async move {
                signals.next().await;
                cancel.cancel();
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot listen for SIGTERM/SIGINT"),
    }
    token
}
