//! Helpers shared by the framework's PostgreSQL tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use sqlx::PgPool;
use tributary::store::records::RecordScope;
use tributary::testkit::{Harness, ScriptedService, eventually};
use tributary::{
    Activity, ErrorKind, ErrorRecord, Member, NewStream, Registry, RetryBackoff, ServiceConfig,
};

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

/// A fatal failure of `hook`, its first.
pub fn fatal(hook: &str, message: &str) -> ErrorRecord {
    ErrorRecord {
        kind: ErrorKind::Fatal,
        hook: hook.to_owned(),
        message: message.to_owned(),
        chain: vec![message.to_owned()],
        failures: 1,
        at: Utc::now(),
    }
}

/// Another stream's transaction, which inserted member `source_id` (username `username`) in
/// `scope` and has not committed yet.
pub async fn insert_member_uncommitted(
    pool: &PgPool,
    scope: &RecordScope,
    source_id: &str,
    username: &str,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut other = tributary::db::begin(pool).await.unwrap();
    sqlx::query(
        "INSERT INTO members (tenant_id, platform, integration_id, source_id, username)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(scope.tenant_id)
    .bind(&scope.platform)
    .bind(scope.integration_id)
    .bind(source_id)
    .bind(username)
    .execute(&mut *other)
    .await
    .unwrap();
    other
}

/// Waits until some statement waits on a lock to insert members (on another's uncommitted insert).
pub async fn member_insert_waiting(pool: &PgPool) {
    eventually(
        Duration::from_secs(10),
        "a members insert waiting",
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO members%'",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            (waiting > 0).then_some(())
        },
    )
    .await;
}

pub async fn username(pool: &PgPool, source_id: &str) -> String {
    sqlx::query_scalar("SELECT username FROM members WHERE source_id = $1")
        .bind(source_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// `member.updated` events of member `source_id`.
pub async fn member_updates(pool: &PgPool, source_id: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events
         WHERE event_type = 'member.updated' AND data->>'source_id' = $1",
    )
    .bind(source_id)
    .fetch_one(pool)
    .await
    .unwrap()
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
