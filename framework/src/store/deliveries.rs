//! The result of delivering a subscription's batch, written under the dispatcher's lease: every
//! statement names the subscription, the attempt and the owner, and a write whose lease was taken
//! over matches no row ([`StoreError::LeaseLost`]): the new holder delivers the batch again.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use super::subscriptions::SubscriptionLease;
use sqlx::AssertSqlSafe;
use sqlx::{PgConnection, PgPool};

const HELD: &str = "id = $1 AND attempt = $2 AND lease_owner = $3 AND state = 'active'";

fn held(rows: u64, lease: &SubscriptionLease) -> Result<(), StoreError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::LeaseLost {
            run_id: lease.subscription_id,
            attempt: lease.attempt,
        })
    }
}

/// What was delivered: the cursor moves to `cursor` (past the events delivered and those that did
/// not match), failures are cleared, the lease released.
pub async fn acknowledge(
    pool: &PgPool,
    lease: &SubscriptionLease,
    cursor: i64,
    delivered: i64,
) -> Result<(), StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "UPDATE subscriptions SET cursor_seq = greatest(cursor_seq, $4),
             delivered_count = delivered_count + $5,
             last_delivered_at = CASE WHEN $5 > 0 THEN now() ELSE last_delivered_at END,
             failures = 0, failing_since = NULL, next_attempt_at = NULL, last_error = NULL,
             lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
         WHERE {HELD}"
    )))
    .bind(lease.subscription_id)
    .bind(lease.attempt)
    .bind(&lease.owner)
    .bind(cursor)
    .bind(delivered)
    .execute(pool)
    .await?
    .rows_affected();
    held(rows, lease)
}

/// Redriven dead letters were delivered.
pub async fn acknowledge_redrive(
    pool: &PgPool,
    lease: &SubscriptionLease,
    event_ids: &[Uuid],
) -> Result<(), StoreError> {
    let mut tx = crate::db::begin(pool).await?;
    release_in(&mut tx, lease, None, event_ids.len() as i64).await?;
    sqlx::query(
        "UPDATE event_dead_letters SET state = 'redriven', redriven_at = now()
         WHERE subscription_id = $1 AND event_id = ANY($2) AND state = 'redrive'",
    )
    .bind(lease.subscription_id)
    .bind(event_ids)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Nothing to deliver yet (a batch lingering, a digest not due): released until `until`.
pub async fn release(
    pool: &PgPool,
    lease: &SubscriptionLease,
    until: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    release_in(&mut *pool.acquire().await?, lease, until, 0).await
}

async fn release_in(
    conn: &mut PgConnection,
    lease: &SubscriptionLease,
    until: Option<DateTime<Utc>>,
    delivered: i64,
) -> Result<(), StoreError> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "UPDATE subscriptions SET next_attempt_at = $4, lease_owner = NULL, lease_expires_at = NULL,
             delivered_count = delivered_count + $5,
             last_delivered_at = CASE WHEN $5 > 0 THEN now() ELSE last_delivered_at END,
             failures = CASE WHEN $5 > 0 THEN 0 ELSE failures END,
             failing_since = CASE WHEN $5 > 0 THEN NULL ELSE failing_since END,
             updated_at = now()
         WHERE {HELD}"
    )))
    .bind(lease.subscription_id)
    .bind(lease.attempt)
    .bind(&lease.owner)
    .bind(until)
    .bind(delivered)
    .execute(conn)
    .await?
    .rows_affected();
    held(rows, lease)
}

/// The last answer of a failed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedDelivery {
    /// The HTTP status, if one came back.
    pub status: Option<i32>,
    /// The start of the response body.
    pub response: Option<String>,
    /// What went wrong, in words.
    pub error: String,
}

/// What a failure leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    /// The batch is tried again at this time.
    RetryAt(DateTime<Utc>),
    /// Retries are exhausted: these events (id, seq) go to the dead letters and the cursor moves
    /// past `cursor` (for redriven dead letters: they are dead again).
    DeadLetter {
        events: Vec<(Uuid, i64)>,
        cursor: Option<i64>,
        attempts: i32,
    },
    /// The subscription is paused with this reason (the endpoint is gone, or failing too long).
    Pause(String),
}

/// Records a failed delivery: a retry, dead letters, or a pause. Returns whether the subscription
/// is now paused for having failed since longer than `pause_after_secs`.
pub async fn fail(
    pool: &PgPool,
    lease: &SubscriptionLease,
    failure: &FailedDelivery,
    after: &AfterFailure,
    pause_after_secs: f64,
) -> Result<bool, StoreError> {
    let mut tx = crate::db::begin(pool).await?;
    let (retry_at, pause) = match after {
        AfterFailure::RetryAt(at) => (Some(*at), None),
        AfterFailure::DeadLetter { .. } => (None, None),
        AfterFailure::Pause(reason) => (None, Some(reason.as_str())),
    };
    let failures = if retry_at.is_some() {
        "failures + 1"
    } else {
        "0"
    };
    let paused: Option<bool> = sqlx::query_scalar(AssertSqlSafe(format!(
        "UPDATE subscriptions SET failures = {failures}, next_attempt_at = $4,
             last_error = $5,
             failing_since = coalesce(failing_since, now()),
             state = CASE WHEN $6::text IS NOT NULL
                            OR coalesce(failing_since, now()) <= now() - make_interval(secs => $7)
                          THEN 'paused' ELSE 'active' END,
             paused_reason = CASE WHEN $6::text IS NOT NULL THEN $6
                                  WHEN coalesce(failing_since, now()) <= now() - make_interval(secs => $7)
                                  THEN 'failing since ' || coalesce(failing_since, now())::text
                                  ELSE NULL END,
             lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
         WHERE {HELD}
         RETURNING state = 'paused'"
    )))
    .bind(lease.subscription_id)
    .bind(lease.attempt)
    .bind(&lease.owner)
    .bind(retry_at)
    .bind(&failure.error)
    .bind(pause)
    .bind(pause_after_secs)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(paused) = paused else {
        return Err(StoreError::LeaseLost {
            run_id: lease.subscription_id,
            attempt: lease.attempt,
        });
    };
    if let AfterFailure::DeadLetter {
        events,
        cursor,
        attempts,
    } = after
    {
        let ids: Vec<Uuid> = events.iter().map(|(id, _)| *id).collect();
        let seqs: Vec<i64> = events.iter().map(|(_, seq)| *seq).collect();
        sqlx::query(
            "INSERT INTO event_dead_letters
                 (subscription_id, event_id, seq, attempts, last_status, last_response, last_error)
             SELECT $1, u.id, u.seq, $4, $5, $6, $7 FROM UNNEST($2::uuid[], $3::bigint[]) AS u(id, seq)
             ON CONFLICT (subscription_id, event_id) DO UPDATE SET state = 'dead',
                 attempts = event_dead_letters.attempts + EXCLUDED.attempts,
                 last_status = EXCLUDED.last_status, last_response = EXCLUDED.last_response,
                 last_error = EXCLUDED.last_error",
        )
        .bind(lease.subscription_id)
        .bind(&ids)
        .bind(&seqs)
        .bind(attempts)
        .bind(failure.status)
        .bind(&failure.response)
        .bind(&failure.error)
        .execute(&mut *tx)
        .await?;
        if let Some(cursor) = cursor {
            sqlx::query(
                "UPDATE subscriptions SET cursor_seq = greatest(cursor_seq, $2) WHERE id = $1",
            )
            .bind(lease.subscription_id)
            .bind(cursor)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(paused)
}
