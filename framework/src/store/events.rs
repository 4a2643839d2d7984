//! `events`: the transactional outbox. Record events are written by the upserts of
//! [`super::records`] in the outcome's own statement; run events by [`insert_for_integration`] in
//! the transaction that ends the run or disconnects the integration.
//!
//! A committed event is numbered afterwards by [`sequence`] (one sequencer at a time, under an
//! advisory lock): each tenant's sequence is gapless and grows in commit order, so a reader that
//! has seen seq N of a tenant has seen every lower one, and a subscription's cursor is one number.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::StoreError;

/// The advisory lock key of the sequencer ("tribseq").
pub const SEQUENCER_LOCK: i64 = 0x0074_7269_6273_6571;

/// Event types, as written to `events.event_type` and delivered.
pub mod types {
    pub const ACTIVITY_CREATED: &str = "activity.created";
    pub const ACTIVITY_UPDATED: &str = "activity.updated";
    pub const MEMBER_CREATED: &str = "member.created";
    pub const MEMBER_UPDATED: &str = "member.updated";
    pub const RUN_PROCESSED: &str = "run.processed";
    pub const RUN_FAILED: &str = "run.failed";
    pub const INTEGRATION_DISCONNECTED: &str = "integration.disconnected";
    pub const ALL: [&str; 7] = [
        ACTIVITY_CREATED,
        ACTIVITY_UPDATED,
        MEMBER_CREATED,
        MEMBER_UPDATED,
        RUN_PROCESSED,
        RUN_FAILED,
        INTEGRATION_DISCONNECTED,
    ];
}

/// An event as stored and numbered.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Event {
    pub id: Uuid,
    pub seq: i64,
    pub tenant_id: Uuid,
    pub platform: Option<String>,
    pub integration_id: Option<Uuid>,
    pub event_type: String,
    pub channel: Option<String>,
    pub data: Value,
    pub created_at: DateTime<Utc>,
    pub sequenced_at: DateTime<Utc>,
}

/// Writes an event about an integration (its tenant and platform are the integration's) in the
/// caller's transaction.
pub async fn insert_for_integration(
    conn: &mut PgConnection,
    integration_id: Uuid,
    event_type: &str,
    data: &Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (tenant_id, platform, integration_id, event_type, data)
         SELECT tenant_id, platform, id, $2, $3 FROM integrations WHERE id = $1",
    )
    .bind(integration_id)
    .bind(event_type)
    .bind(data)
    .execute(conn)
    .await?;
    Ok(())
}

/// Numbers up to `max` committed events in commit order, per tenant. Returns how many it numbered;
/// 0 too when another sequencer holds the lock (it is doing the same work).
pub async fn sequence(pool: &PgPool, max: i64) -> Result<u64, StoreError> {
    let mut tx = crate::db::begin(pool).await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(SEQUENCER_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(0);
    }
    let numbered = sqlx::query(
        "WITH batch AS (
             SELECT id, tenant_id, pos FROM events WHERE seq IS NULL ORDER BY pos LIMIT $1
         ),
         ranked AS (
             SELECT id, tenant_id, row_number() OVER (PARTITION BY tenant_id ORDER BY pos) AS rn
             FROM batch
         ),
         counts AS (SELECT tenant_id, count(*) AS n FROM ranked GROUP BY tenant_id),
         bumped AS (
             INSERT INTO event_sequences AS s (tenant_id, last_seq)
             SELECT tenant_id, n FROM counts ORDER BY tenant_id
             ON CONFLICT (tenant_id) DO UPDATE SET last_seq = s.last_seq + EXCLUDED.last_seq
             RETURNING s.tenant_id, s.last_seq
         )
         UPDATE events e SET seq = b.last_seq - c.n + r.rn, sequenced_at = clock_timestamp()
         FROM ranked r JOIN counts c USING (tenant_id) JOIN bumped b USING (tenant_id)
         WHERE e.id = r.id",
    )
    .bind(max)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(numbered)
}

/// The last seq numbered for a tenant (0 before its first event).
pub async fn last_seq(conn: &mut PgConnection, tenant_id: Uuid) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce((SELECT last_seq FROM event_sequences WHERE tenant_id = $1), 0)",
    )
    .bind(tenant_id)
    .fetch_one(conn)
    .await?)
}

/// The seq just before the tenant's first event created at or after `at` (the cursor that
/// replays from that time).
pub async fn cursor_before_time(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    at: DateTime<Utc>,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(
             (SELECT min(seq) - 1 FROM events
              WHERE tenant_id = $1 AND seq IS NOT NULL AND created_at >= $2),
             (SELECT last_seq FROM event_sequences WHERE tenant_id = $1), 0)",
    )
    .bind(tenant_id)
    .bind(at)
    .fetch_one(conn)
    .await?)
}

/// A tenant's numbered events, oldest first (for tests and operators).
pub async fn list(pool: &PgPool, tenant_id: Uuid) -> Result<Vec<Event>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, seq, tenant_id, platform, integration_id, event_type, channel, data,
                created_at, sequenced_at
         FROM events WHERE tenant_id = $1 AND seq IS NOT NULL ORDER BY seq",
    )
    .bind(tenant_id)
    .fetch_all(pool)
    .await?)
}

/// How many events exist for a tenant, numbered or not.
pub async fn count(pool: &PgPool, tenant_id: Uuid) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM events WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(pool)
            .await?,
    )
}

/// Deletes events older than `before` that every subscription of their tenant has passed.
pub async fn prune(pool: &PgPool, before: DateTime<Utc>) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "DELETE FROM events e WHERE e.created_at < $1 AND e.seq IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM subscriptions s
                           WHERE s.tenant_id = e.tenant_id AND s.cursor_seq < e.seq)
           AND NOT EXISTS (SELECT 1 FROM event_dead_letters d WHERE d.event_id = e.id)",
    )
    .bind(before)
    .execute(pool)
    .await?
    .rows_affected())
}
