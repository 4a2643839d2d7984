//! `subscriptions` and `event_dead_letters`: who receives which events, where each subscription's
//! delivery stands (its cursor), and the events that exhausted their retries.
//!
//! A dispatcher claims a subscription with a lease (`attempt` is the fencing token); every write
//! of a delivery's result names that attempt and the lease owner, so a dispatcher whose lease was
//! taken over writes nothing and its batch is delivered again by the new holder.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::StoreError;
use super::events::Event;
use sqlx::AssertSqlSafe;

/// A subscription as stored. Its signing secrets are read only by the dispatcher
/// ([`signing_secrets`]); this row never carries them.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Subscription {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub state: String,
    pub paused_reason: Option<String>,
    pub platforms: Vec<String>,
    pub event_types: Vec<String>,
    pub integration_ids: Vec<Uuid>,
    pub channels: Vec<String>,
    pub target_kind: String,
    pub target_url: String,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub batch_size: i32,
    pub linger_ms: i32,
    pub delay_secs: i32,
    pub digest_secs: Option<i32>,
    pub cursor_seq: i64,
    pub failures: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub failing_since: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_delivered_at: Option<DateTime<Utc>>,
    pub delivered_count: i64,
    pub attempt: i64,
    pub lease_owner: Option<String>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, tenant_id, name, state, paused_reason, platforms, event_types, \
     integration_ids, channels, target_kind, target_url, previous_secret_expires_at, batch_size, \
     linger_ms, delay_secs, digest_secs, cursor_seq, failures, next_attempt_at, failing_since, \
     last_error, last_delivered_at, delivered_count, attempt, lease_owner, created_at";

/// A new subscription, validated by [`crate::subscriptions`].
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub platforms: Vec<String>,
    pub event_types: Vec<String>,
    pub integration_ids: Vec<Uuid>,
    pub channels: Vec<String>,
    pub target_kind: &'static str,
    pub target_url: String,
    /// The signing secret in its stored (sealed) form.
    pub secret: Option<String>,
    pub batch_size: i32,
    pub linger_ms: i32,
    pub delay_secs: i32,
    pub digest_secs: Option<i32>,
}

/// A dispatcher's hold on a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionLease {
    pub subscription_id: Uuid,
    pub attempt: i64,
    pub owner: String,
}

impl Subscription {
    pub fn lease(&self) -> SubscriptionLease {
        SubscriptionLease {
            subscription_id: self.id,
            attempt: self.attempt,
            owner: self.lease_owner.clone().unwrap_or_default(),
        }
    }
}

/// Creates a subscription whose cursor starts at the tenant's latest event: it receives what
/// happens from now on (replay reaches further back).
pub async fn create(pool: &PgPool, new: &NewSubscription) -> Result<Subscription, StoreError> {
    let mut tx = crate::db::begin(pool).await?;
    let cursor = super::events::last_seq(&mut tx, new.tenant_id).await?;
    let sub = sqlx::query_as(AssertSqlSafe(format!(
        "INSERT INTO subscriptions (id, tenant_id, name, platforms, event_types, integration_ids,
             channels, target_kind, target_url, secret, batch_size, linger_ms, delay_secs,
             digest_secs, cursor_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         RETURNING {COLUMNS}"
    )))
    .bind(new.id)
    .bind(new.tenant_id)
    .bind(&new.name)
    .bind(&new.platforms)
    .bind(&new.event_types)
    .bind(&new.integration_ids)
    .bind(&new.channels)
    .bind(new.target_kind)
    .bind(&new.target_url)
    .bind(&new.secret)
    .bind(new.batch_size)
    .bind(new.linger_ms)
    .bind(new.delay_secs)
    .bind(new.digest_secs)
    .bind(cursor)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(sub)
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Subscription, StoreError> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(StoreError::NotFound {
        what: "subscription",
        id,
    })
}

/// Subscriptions, of one tenant or all, oldest first.
pub async fn list(pool: &PgPool, tenant_id: Option<Uuid>) -> Result<Vec<Subscription>, StoreError> {
    Ok(sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE $1::uuid IS NULL OR tenant_id = $1
         ORDER BY created_at, id"
    )))
    .bind(tenant_id)
    .fetch_all(pool)
    .await?)
}

fn found(rows: u64, id: Uuid) -> Result<(), StoreError> {
    if rows == 0 {
        Err(StoreError::NotFound {
            what: "subscription",
            id,
        })
    } else {
        Ok(())
    }
}

/// Pauses a subscription (with the reason shown to operators); a dispatcher holding it loses its
/// lease.
pub async fn pause(pool: &PgPool, id: Uuid, reason: &str) -> Result<(), StoreError> {
    let rows = sqlx::query(
        "UPDATE subscriptions SET state = 'paused', paused_reason = $2, attempt = attempt + 1,
             lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .execute(pool)
    .await?
    .rows_affected();
    found(rows, id)
}

/// Resumes a paused subscription: its head batch is tried at once with a fresh retry count.
pub async fn resume(pool: &PgPool, id: Uuid) -> Result<(), StoreError> {
    let rows = sqlx::query(
        "UPDATE subscriptions SET state = 'active', paused_reason = NULL, failures = 0,
             next_attempt_at = NULL, failing_since = NULL, updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .execute(pool)
    .await?
    .rows_affected();
    found(rows, id)
}

pub async fn delete(pool: &PgPool, id: Uuid) -> Result<(), StoreError> {
    let rows = sqlx::query("DELETE FROM subscriptions WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected();
    found(rows, id)
}

/// Makes `secret` (in its stored form) the signing secret; the old one stays valid (deliveries carry both
/// signatures) for `overlap`.
pub async fn rotate_secret(
    pool: &PgPool,
    id: Uuid,
    secret: &str,
    overlap: Duration,
) -> Result<(), StoreError> {
    let rows = sqlx::query(
        "UPDATE subscriptions SET previous_secret = secret, secret = $2,
             previous_secret_expires_at = now() + make_interval(secs => $3), updated_at = now()
         WHERE id = $1 AND target_kind = 'webhook'",
    )
    .bind(id)
    .bind(secret)
    .bind(overlap.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected();
    found(rows, id)
}

/// The stored forms of the secrets a delivery is signed with: the current one, and the previous
/// one while it is valid.
pub async fn signing_secrets(pool: &PgPool, id: Uuid) -> Result<Vec<String>, StoreError> {
    let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT secret, CASE WHEN previous_secret_expires_at > now() THEN previous_secret END
         FROM subscriptions WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let (current, previous) = row.ok_or(StoreError::NotFound {
        what: "subscription",
        id,
    })?;
    Ok(current.into_iter().chain(previous).collect())
}

/// Where replay starts: after a sequence number, or from a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    Seq(i64),
    Time(DateTime<Utc>),
}

/// Moves the cursor back (or forward) so that delivery starts again at `from`. Returns the new
/// cursor.
pub async fn replay(pool: &PgPool, id: Uuid, from: ReplayFrom) -> Result<i64, StoreError> {
    let mut tx = crate::db::begin(pool).await?;
    let sub = get(pool, id).await?;
    let cursor = match from {
        ReplayFrom::Seq(seq) => (seq - 1).max(0),
        ReplayFrom::Time(at) => {
            super::events::cursor_before_time(&mut tx, sub.tenant_id, at).await?
        }
    };
    sqlx::query(
        "UPDATE subscriptions SET cursor_seq = $2, failures = 0, next_attempt_at = NULL,
             failing_since = NULL, attempt = attempt + 1, lease_owner = NULL,
             lease_expires_at = NULL, updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(cursor)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(cursor)
}

/// Queues a subscription's dead letters for delivery again. Returns how many.
pub async fn redrive(pool: &PgPool, id: Uuid) -> Result<u64, StoreError> {
    get(pool, id).await?;
    Ok(sqlx::query(
        "UPDATE event_dead_letters SET state = 'redrive' WHERE subscription_id = $1 AND state = 'dead'",
    )
    .bind(id)
    .execute(pool)
    .await?
    .rows_affected())
}

/// A dead letter: an event that exhausted its retries, with the last answer it got.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeadLetter {
    pub event_id: Uuid,
    pub seq: i64,
    pub state: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_response: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub async fn dead_letters(pool: &PgPool, id: Uuid) -> Result<Vec<DeadLetter>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT event_id, seq, state, attempts, last_status, last_response, last_error, created_at
         FROM event_dead_letters WHERE subscription_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(pool)
    .await?)
}

/// Claims up to `limit` active subscriptions that have work (events past their cursor or dead
/// letters to redrive) and are due, for `lease` each.
pub async fn claim(
    pool: &PgPool,
    owner: &str,
    lease: Duration,
    limit: i64,
) -> Result<Vec<Subscription>, StoreError> {
    Ok(sqlx::query_as(AssertSqlSafe(format!(
        "UPDATE subscriptions SET attempt = attempt + 1, lease_owner = $1,
             lease_expires_at = now() + make_interval(secs => $2), updated_at = now()
         WHERE id IN (
             SELECT s.id FROM subscriptions s
             WHERE s.state = 'active'
               AND (s.lease_expires_at IS NULL OR s.lease_expires_at < now())
               AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= now())
               AND (s.digest_secs IS NULL OR s.last_delivered_at IS NULL
                    OR s.last_delivered_at <= now() - make_interval(secs => s.digest_secs))
               AND (EXISTS (SELECT 1 FROM events e
                            WHERE e.tenant_id = s.tenant_id AND e.seq = s.cursor_seq + 1)
                    OR EXISTS (SELECT 1 FROM event_dead_letters d
                               WHERE d.subscription_id = s.id AND d.state = 'redrive'))
             ORDER BY s.next_attempt_at NULLS FIRST, s.last_delivered_at NULLS FIRST
             LIMIT $3
             FOR UPDATE SKIP LOCKED)
         RETURNING {COLUMNS}"
    )))
    .bind(owner)
    .bind(lease.as_secs_f64())
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

const EVENT_COLUMNS: &str = "e.id, e.seq, e.tenant_id, e.platform, e.integration_id, \
     e.event_type, e.channel, e.data, e.created_at, e.sequenced_at";

/// The subscription's next events past its cursor that match its filter and are due (numbered at
/// least `delay_secs` ago), among the next `scan` numbers; and the last seq scanned, which the
/// cursor may pass even if nothing in between matched.
pub async fn next_events(
    pool: &PgPool,
    sub: &Subscription,
    scan: i64,
) -> Result<(Vec<Event>, i64), StoreError> {
    let mut conn = pool.acquire().await?;
    let events: Vec<Event> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events e
         WHERE e.tenant_id = $1 AND e.seq > $2 AND e.seq <= $2 + $3
           AND e.sequenced_at <= now() - make_interval(secs => $4)
           AND (cardinality($5::text[]) = 0 OR e.platform = ANY($5))
           AND (cardinality($6::text[]) = 0 OR e.event_type = ANY($6))
           AND (cardinality($7::uuid[]) = 0 OR e.integration_id = ANY($7))
           AND (cardinality($8::text[]) = 0 OR e.channel = ANY($8))
         ORDER BY e.seq LIMIT $9"
    )))
    .bind(sub.tenant_id)
    .bind(sub.cursor_seq)
    .bind(scan)
    .bind(f64::from(sub.delay_secs))
    .bind(&sub.platforms)
    .bind(&sub.event_types)
    .bind(&sub.integration_ids)
    .bind(&sub.channels)
    .bind(i64::from(sub.batch_size))
    .fetch_all(&mut *conn)
    .await?;
    if events.len() == usize::try_from(sub.batch_size).unwrap_or(usize::MAX) {
        let last = events.last().map_or(sub.cursor_seq, |e| e.seq);
        return Ok((events, last));
    }
    let scanned = scanned_upto(&mut conn, sub, scan).await?;
    Ok((events, scanned))
}

async fn scanned_upto(
    conn: &mut PgConnection,
    sub: &Subscription,
    scan: i64,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(max(seq), $2) FROM events
         WHERE tenant_id = $1 AND seq > $2 AND seq <= $2 + $3
           AND sequenced_at <= now() - make_interval(secs => $4)",
    )
    .bind(sub.tenant_id)
    .bind(sub.cursor_seq)
    .bind(scan)
    .bind(f64::from(sub.delay_secs))
    .fetch_one(conn)
    .await?)
}

/// The dead letters queued for redrive, oldest first.
pub async fn redrive_batch(pool: &PgPool, sub: &Subscription) -> Result<Vec<Event>, StoreError> {
    Ok(sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM event_dead_letters d JOIN events e ON e.id = d.event_id
         WHERE d.subscription_id = $1 AND d.state = 'redrive' ORDER BY d.seq LIMIT $2"
    )))
    .bind(sub.id)
    .bind(i64::from(sub.batch_size))
    .fetch_all(pool)
    .await?)
}
