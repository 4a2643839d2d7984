//! Helpers for tests of integrations and of the framework itself (feature `testkit`):
//! a scripted integration, a fake platform server, and a harness that drives runs through the
//! real processor and reports what they left behind.

pub mod cargo;
mod compression;
pub mod conformance;
mod fake_server;
mod harness;
pub mod moto;
pub mod pg_server;
mod receiver;
mod scripted;
mod token_issuer;

pub use conformance::{Conformance, Refused};
pub use fake_server::{Budget, BudgetState, Delayed, FakeServer, Fault, Reply, Request};
pub use harness::{Harness, RunReport, first_deferral};
pub use pg_server::PgServer;
pub use receiver::{Answer, Received, WebhookReceiver};
pub use scripted::{CallLog, ScriptedService, StreamCall};
pub use token_issuer::{TokenIssuer, basic_auth};

use std::future::Future;
use std::time::Duration;

/// The key that seals credentials in this test process: `TRIBUTARY_SECRET_KEY` if set, else one
/// generated for the process. Give it to the binaries a test starts.
pub fn test_key() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        std::env::var(crate::keyring::KEY_ENV)
            .ok()
            .filter(|k| !k.trim().is_empty())
            .unwrap_or_else(crate::keyring::Keyring::generate_key)
    })
}

/// Seals credentials in this test process with [`test_key`]: tests run as production does,
/// encrypted at rest. Returns the key's id.
pub fn install_test_key() -> Option<&'static str> {
    use crate::keyring::{self, Keyring};
    let ring =
        Keyring::new(test_key(), &[]).unwrap_or_else(|e| panic!("the test key is unusable: {e}"));
    keyring::install(ring);
    keyring::current().current_key_id()
}

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
