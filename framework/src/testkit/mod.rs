//! Helpers for tests of integrations and of the framework itself (feature `testkit`):
//! a scripted integration, a fake platform server, and a harness that drives runs through the
//! real processor and reports what they left behind.

pub mod conformance;
mod fake_server;
mod harness;
pub mod moto;
mod receiver;
mod scripted;

pub use conformance::{Conformance, Refused};
pub use fake_server::{Budget, BudgetState, Delayed, FakeServer, Fault, Reply, Request};
pub use harness::{Harness, RunReport, first_deferral};
pub use receiver::{Answer, Received, WebhookReceiver};
pub use scripted::{CallLog, ScriptedService, StreamCall};

use std::future::Future;
use std::time::Duration;

/// Polls `check` until it returns `Some`, failing the test with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
