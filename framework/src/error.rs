//! What an integration's hooks return when they fail, and what happens next.

use std::error::Error as StdError;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::http::BudgetKey;

/// Any error kept as the source of an [`IntegrationError`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A failed hook, classified by what the processor does next. Each kind keeps its source, so the
/// stored error shows the whole chain.
#[derive(Debug, thiserror::Error)]
pub enum IntegrationError {
    /// The platform refused for now. The run commits its progress and is deferred until `until`;
    /// no retry is consumed.
    #[error("rate limited until {until}: {message}")]
    RateLimited {
        until: DateTime<Utc>,
        message: String,
        #[source]
        source: Option<BoxError>,
        /// The credential's budget the wait is for, when the HTTP toolkit knows it: the run is
        /// deferred as waiting on it (shown with that quota).
        budget: Option<Box<BudgetKey>>,
    },
    /// A transient failure (5xx, timeout, connection reset): retried with exponential backoff up to
    /// the service's `max_retries`.
    #[error("{message}")]
    Retryable {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
    /// Retrying cannot help (bad credentials, a 404, a malformed body): the stream ends in `error`.
    #[error("{message}")]
    Fatal {
        message: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl IntegrationError {
    pub fn rate_limited(until: DateTime<Utc>, message: impl Into<String>) -> Self {
        Self::RateLimited {
            until,
            message: message.into(),
            source: None,
            budget: None,
        }
    }

    /// Names the budget a rate limit waits on (kept if one is named already; other kinds are
    /// returned unchanged).
    pub fn waiting_on(mut self, key: &BudgetKey) -> Self {
        if let Self::RateLimited { budget, .. } = &mut self
            && budget.is_none()
        {
            *budget = Some(Box::new(key.clone()));
        }
        self
    }

    /// The budget a rate limit waits on, when known.
    pub fn budget(&self) -> Option<&BudgetKey> {
        match self {
            Self::RateLimited { budget, .. } => budget.as_deref(),
            _ => None,
        }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable {
            message: message.into(),
            source: None,
        }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        Self::Fatal {
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, cause: impl Into<BoxError>) -> Self {
        let slot = match &mut self {
            Self::RateLimited { source, .. }
            | Self::Retryable { source, .. }
            | Self::Fatal { source, .. } => source,
        };
        *slot = Some(cause.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::Retryable { .. } => ErrorKind::Retryable,
            Self::Fatal { .. } => ErrorKind::Fatal,
        }
    }

    /// This error's message followed by the messages of its sources, outermost first.
    pub fn chain(&self) -> Vec<String> {
        chain(self)
    }
}

/// An error's message followed by the messages of its sources, outermost first. A source whose
/// message its error already ends with (`"database error: {source}"`) is not repeated. The one
/// formatter of error chains: stored errors, log lines and command output use it.
pub fn chain(error: &(dyn StdError + 'static)) -> Vec<String> {
    let mut chain: Vec<String> = vec![error.to_string()];
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !chain.last().is_some_and(|last| last.ends_with(&text)) {
            chain.push(text);
        }
        next = cause.source();
    }
    chain
}

/// Displays an error with its sources, `: `-separated, for log lines and messages (no secrets
/// travel in the errors this is used on).
pub struct ErrorChain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&chain(self.0).join(": "))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    RateLimited,
    Retryable,
    Fatal,
    /// The hook panicked.
    Panicked,
    /// The hook did not finish within the service's timeout.
    TimedOut,
    /// The worker processing it stopped (died, stalled) before committing; it runs again.
    Abandoned,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::RateLimited => "rate_limited",
            Self::Retryable => "retryable",
            Self::Fatal => "fatal",
            Self::Panicked => "panicked",
            Self::TimedOut => "timed_out",
            Self::Abandoned => "abandoned",
        };
        f.write_str(text)
    }
}

/// Settings refused by an integration's validation: every problem, each naming its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid settings: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct SettingsError {
    pub problems: Vec<SettingsProblem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsProblem {
    /// A JSON path such as `repositories[2]`, or empty for the whole document.
    pub field: String,
    pub message: String,
}

impl fmt::Display for SettingsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}` {}", self.field, self.message)
        }
    }
}

impl SettingsError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problems: vec![SettingsProblem {
                field: field.into(),
                message: message.into(),
            }],
        }
    }

    /// Collects problems one by one; [`SettingsError::into_result`] turns the collection into a
    /// verdict.
    pub fn collect() -> Self {
        Self {
            problems: Vec::new(),
        }
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(SettingsProblem {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn into_result<T>(self, ok: T) -> Result<T, SettingsError> {
        if self.problems.is_empty() {
            Ok(ok)
        } else {
            Err(self)
        }
    }

    /// Settings that do not deserialize into the integration's settings type.
    pub fn from_serde(err: &serde_json::Error) -> Self {
        Self::new("", format!("do not match the expected shape: {err}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connection reset")]
    struct Reset;

    #[test]
    fn a_cause_its_error_already_shows_is_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: {0}")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("connection refused"));
        assert_eq!(chain(&e), vec!["outer: connection refused".to_owned()]);
        assert_eq!(ErrorChain(&e).to_string(), "outer: connection refused");
        let wrapped = IntegrationError::retryable("page 2").with_source(e);
        assert_eq!(
            ErrorChain(&wrapped).to_string(),
            "page 2: outer: connection refused"
        );
    }

    #[test]
    fn chain_lists_every_source_outermost_first() {
        let err = IntegrationError::retryable("fetching page 3 failed").with_source(Reset);
        assert_eq!(err.kind(), ErrorKind::Retryable);
        assert_eq!(
            err.chain(),
            vec!["fetching page 3 failed", "connection reset"]
        );
    }

    #[test]
    fn settings_error_names_every_field() {
        let mut problems = SettingsError::collect();
        problems.push("channels", "must not be empty");
        problems.push("base_url", "is not a URL: `ftp:/x`");
        let err = problems.into_result(()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid settings: `channels` must not be empty; `base_url` is not a URL: `ftp:/x`"
        );
        assert!(SettingsError::collect().into_result(1).is_ok());
    }
}

/// A failure as it is stored on a stream or a run: what failed, how, and the whole chain of
/// causes (with any credential scrubbed out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    pub kind: ErrorKind,
    /// The hook that failed: `preprocess`, `get_streams`, `process_stream`, `postprocess`, or
    /// `processor` for the framework's own checks (pagination limits, …).
    pub hook: String,
    pub message: String,
    pub chain: Vec<String>,
    /// Failures so far, this one included.
    pub failures: u32,
    pub at: DateTime<Utc>,
}
