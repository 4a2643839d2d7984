//! Helpers shared by the framework's PostgreSQL tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use sqlx::PgPool;
use tributary::testkit::{Harness, ScriptedService};
use tributary::{Activity, Member, NewStream, Registry, RetryBackoff, ServiceConfig};

pub const PLATFORM: &str = "scripted";

/// A service configuration for tests: quick retries, short timeouts.
pub fn fast_config() -> ServiceConfig {
    ServiceConfig {
        max_retries: 2,
        retry_backoff: RetryBackoff {
            base: Duration::from_millis(1),
            max: Duration::from_millis(4),
        },
        stream_timeout: Duration::from_secs(10),
        hook_timeout: Duration::from_secs(10),
        stream_concurrency: 2,
        ..ServiceConfig::default()
    }
}

pub fn harness(pool: PgPool, service: ScriptedService) -> Harness {
    let mut registry = Registry::new();
    registry.register(service).unwrap();
    Harness::new(pool, registry)
}

pub fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, minute, 0).unwrap()
}

/// A deterministic activity: id `act-{id}` by member `user-{member}`.
pub fn activity(id: &str, member: &str) -> Activity {
    Activity::new(
        format!("act-{id}"),
        "message",
        at(0),
        Member::new(format!("user-{member}"), format!("name-{member}")),
    )
    .title(format!("title {id}"))
}

pub fn roots(identifiers: &[&str]) -> Vec<NewStream> {
    identifiers
        .iter()
        .map(|id| NewStream::new(*id, json!({ "id": id })))
        .collect()
}

pub fn source_ids(activities: &[tributary::store::records::StoredActivity]) -> Vec<String> {
    let mut ids: Vec<String> = activities.iter().map(|a| a.source_id.clone()).collect();
    ids.sort();
    ids
}

/// A one-shot signal between a test and a hook: set once, seen by every waiter, never lost.
#[derive(Clone)]
pub struct Signal(std::sync::Arc<tokio::sync::watch::Sender<bool>>);

impl Signal {
    pub fn new() -> Self {
        Self(std::sync::Arc::new(tokio::sync::watch::channel(false).0))
    }

    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// Waits for the signal, failing the test after 30 s.
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|fired| *fired))
            .await
            .expect("signal never fired")
            .expect("signal dropped");
    }
}
