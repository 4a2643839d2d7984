//! Calling an integration's hook so that a panic or a hang becomes an error of that hook, never a
//! dead worker or a stuck run.

use std::any::Any;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::{ErrorKind, ErrorRecord, IntegrationError};
use crate::http::BudgetKey;
use crate::secret::Credentials;

/// Why a hook did not return a value.
#[derive(Debug)]
pub(crate) enum HookFailure {
    Error(IntegrationError),
    Panicked(String),
    TimedOut(Duration),
}

impl HookFailure {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            Self::Error(e) => e.kind(),
            Self::Panicked(_) => ErrorKind::Panicked,
            Self::TimedOut(_) => ErrorKind::TimedOut,
        }
    }

    /// Whether another try may succeed (a timeout may be a slow platform; a panic is a bug).
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self.kind(), ErrorKind::Retryable | ErrorKind::TimedOut)
    }

    pub(crate) fn rate_limited_until(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Error(IntegrationError::RateLimited { until, .. }) => Some(*until),
            _ => None,
        }
    }

    /// The budget a rate limit waits on, when the HTTP toolkit named it.
    pub(crate) fn rate_limited_budget(&self) -> Option<&BudgetKey> {
        match self {
            Self::Error(e) => e.budget(),
            _ => None,
        }
    }

    fn chain(&self) -> Vec<String> {
        match self {
            Self::Error(e) => e.chain(),
            Self::Panicked(message) => vec![format!("panicked: {message}")],
            Self::TimedOut(after) => vec![format!("did not finish within {after:?}")],
        }
    }

    /// The error as stored, with every credential scrubbed out.
    pub(crate) fn record(
        &self,
        hook: &str,
        failures: u32,
        credentials: &Credentials,
    ) -> ErrorRecord {
        let chain: Vec<String> = self.chain().iter().map(|m| credentials.scrub(m)).collect();
        ErrorRecord {
            kind: self.kind(),
            hook: hook.to_owned(),
            message: chain.first().cloned().unwrap_or_default(),
            chain,
            failures,
            at: crate::clock::now(),
        }
    }
}

/// Runs a hook's future on its own task with a deadline.
pub(crate) async fn call<T, F>(timeout: Duration, hook: F) -> Result<T, HookFailure>
where
    F: Future<Output = Result<T, IntegrationError>> + Send + 'static,
    T: Send + 'static,
{
    // the hook's task stays in the caller's span (the run's, the stream's)
    let mut task = AbortOnDrop(tokio::spawn(tracing::Instrument::in_current_span(hook)));
    match tokio::time::timeout(timeout, &mut task.0).await {
        Err(_elapsed) => Err(HookFailure::TimedOut(timeout)),
        Ok(Err(join)) if join.is_panic() => {
            Err(HookFailure::Panicked(panic_message(join.into_panic())))
        }
        Ok(Err(_cancelled)) => Err(HookFailure::Panicked(
            "the hook's task was cancelled".into(),
        )),
        Ok(Ok(Err(error))) => Err(HookFailure::Error(error)),
        Ok(Ok(Ok(value))) => Ok(value),
    }
}

/// Aborts the hook's task when its caller stops waiting (a timeout, or the caller dropped).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "a panic with a non-text payload".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_a_failure_with_its_message() {
        let failure = call::<(), _>(Duration::from_secs(5), async { panic!("boom at page 3") })
            .await
            .unwrap_err();
        assert_eq!(failure.kind(), ErrorKind::Panicked);
        assert!(!failure.is_retryable());
        let record = failure.record("process_stream", 1, &Credentials::default());
        assert_eq!(record.message, "panicked: boom at page 3");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hang_times_out() {
        let failure = call::<(), _>(Duration::from_secs(2), std::future::pending())
            .await
            .unwrap_err();
        assert_eq!(failure.kind(), ErrorKind::TimedOut);
        assert!(failure.is_retryable());
    }

    #[tokio::test]
    async fn errors_keep_their_kind_and_scrub_secrets() {
        let creds = Credentials::new(serde_json::json!({"token": "tok_123456"}));
        let failure = call::<(), _>(Duration::from_secs(5), async {
            Err(IntegrationError::retryable(
                "GET /x?token=tok_123456 failed",
            ))
        })
        .await
        .unwrap_err();
        assert!(failure.is_retryable());
        let record = failure.record("process_stream", 2, &creds);
        assert_eq!(record.message, "GET /x?token=[redacted] failed");
        assert_eq!(record.failures, 2);
    }
}
