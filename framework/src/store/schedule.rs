//! What the tick scheduler and the run rescuer read and write in `integration_runs`: check runs
//! created in bulk for due integrations, runs that need a message again, and when a message for
//! a run was last sent (`enqueued_at`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

/// One batch of a check fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckBatch {
    /// Runs created by this batch, with their integration and its platform.
    pub runs: Vec<CreatedCheck>,
    /// Connected integrations of the due platforms looked at.
    pub scanned: u64,
    /// The last integration looked at: the next batch starts after it. `None`: no more.
    pub last_integration: Option<Uuid>,
}

/// A check run created by a fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedCheck {
    pub run_id: Uuid,
    pub integration_id: Uuid,
    pub platform: String,
}

/// Creates check runs for up to `limit` connected integrations of `platforms` whose id is above
/// `after` (in id order): one for each that has no active run, keyed by `trigger_key` so that the
/// same trigger never makes two runs of an integration. The integrations are locked in share mode
/// meanwhile, so a concurrent disconnect either comes first (the integration is skipped) or waits
/// and then cancels the new run. `enqueued_at` is set: the caller sends the messages at once.
pub async fn create_check_runs(
    pool: &PgPool,
    platforms: &[String],
    after: Option<Uuid>,
    limit: i64,
    trigger_key: &str,
) -> Result<CheckBatch, StoreError> {
    type Row = (i64, Option<Uuid>, Vec<Uuid>, Vec<Uuid>, Vec<String>);
    let (scanned, last, run_ids, integration_ids, platforms): Row = sqlx::query_as(
        "WITH due AS MATERIALIZED (
             SELECT i.id, i.platform FROM integrations i
             WHERE i.platform = ANY($1) AND i.status <> 'disconnected' AND i.id > $2
             ORDER BY i.id LIMIT $3
             FOR SHARE OF i),
         created AS (
             INSERT INTO integration_runs (id, integration_id, onboarding, trigger_key, enqueued_at)
             SELECT gen_random_uuid(), d.id, false, $4, now() FROM due d
             WHERE NOT EXISTS (
                 SELECT 1 FROM integration_runs r
                 WHERE r.integration_id = d.id AND r.state IN ('pending', 'processing', 'delayed'))
             ORDER BY d.id
             ON CONFLICT DO NOTHING
             RETURNING id, integration_id)
         SELECT (SELECT count(*) FROM due),
                (SELECT d.id FROM due d ORDER BY d.id DESC LIMIT 1),
                coalesce(array_agg(c.id), '{}'),
                coalesce(array_agg(c.integration_id), '{}'),
                coalesce(array_agg(d.platform), '{}')
         FROM created c JOIN due d ON d.id = c.integration_id",
    )
    .bind(platforms)
    .bind(after.unwrap_or_else(Uuid::nil))
    .bind(limit)
    .bind(trigger_key)
    .fetch_one(pool)
    .await?;
    let runs = run_ids
        .into_iter()
        .zip(integration_ids)
        .zip(platforms)
        .map(|((run_id, integration_id), platform)| CreatedCheck {
            run_id,
            integration_id,
            platform,
        })
        .collect();
    Ok(CheckBatch {
        runs,
        scanned: u64::try_from(scanned).unwrap_or(0),
        last_integration: last,
    })
}

/// Why a run needs a message again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// Processing, but its lease expired: its worker died.
    ExpiredLease,
    /// Delayed, and its time has come.
    DueDelayed,
    /// Pending, and no message was sent for it for a while (the sender crashed, say).
    StalePending,
}

impl Resend {
    pub const ALL: [Self; 3] = [Self::ExpiredLease, Self::DueDelayed, Self::StalePending];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExpiredLease => "expired lease",
            Self::DueDelayed => "due delayed run",
            Self::StalePending => "stale pending run",
        }
    }
}

/// Takes up to `limit` runs that need a message for `why` and notes that one is being sent now.
/// Concurrent rescuers take different runs.
///
/// A run is re-sent once no message was sent for it for `first_wait`, then with backoff: the
/// wait since the last message must also be half the time the run has needed one (since its
/// lease expired, its delay ended, or it became pending). A backlog in the queue (the message
/// is there, just not consumed yet) thus costs a run at most about log2(backlog / first_wait)
/// duplicate messages, each a no-op for the worker that gets it.
///
/// A lease counts as expired as [`super::runs::claim`] sees it: after a restart of the database
/// server, every lease is held for one more `lease` from the server's start.
pub async fn take_runs_to_resend(
    pool: &PgPool,
    why: Resend,
    first_wait: Duration,
    lease: Duration,
    limit: i64,
) -> Result<Vec<Uuid>, StoreError> {
    macro_rules! resend {
        ($condition:literal, $since:literal) => {
            concat!(
                "WITH started AS (SELECT ",
                server_started!(),
                " + make_interval(secs => $3) AS at)
                 UPDATE integration_runs SET enqueued_at = now()
                 WHERE id IN (
                     SELECT id FROM integration_runs
                     WHERE ",
                $condition,
                "
                       AND coalesce(enqueued_at, '-infinity') <= now() - greatest(
                           make_interval(secs => $1), (now() - ",
                $since,
                ") / 2)
                     LIMIT $2
                     FOR UPDATE SKIP LOCKED)
                   AND ",
                $condition,
                "
                 RETURNING id"
            )
        };
    }
    let sql = match why {
        Resend::ExpiredLease => resend!(
            "state = 'processing' AND greatest(lease_expires_at, (SELECT at FROM started))
                 < now()",
            "greatest(lease_expires_at, (SELECT at FROM started))"
        ),
        Resend::DueDelayed => resend!(
            "state = 'delayed' AND delayed_until <= now()",
            "delayed_until"
        ),
        // pending since `updated_at` (created, or resumed by continue-run)
        Resend::StalePending => resend!(
            "state = 'pending' AND updated_at <= now() - make_interval(secs => $1)",
            "updated_at"
        ),
    };
    Ok(sqlx::query_scalar(sql)
        .bind(first_wait.as_secs_f64())
        .bind(limit)
        .bind(lease.as_secs_f64())
        .fetch_all(pool)
        .await?)
}

/// Notes that a message for each run was sent, to be delivered at its time.
pub async fn mark_enqueued_each(
    pool: &PgPool,
    run_ids: &[Uuid],
    delivered_at: &[DateTime<Utc>],
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE integration_runs r SET enqueued_at = u.at
         FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at)
         WHERE r.id = u.id AND r.state = 'pending'",
    )
    .bind(run_ids)
    .bind(delivered_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Notes that a message for these runs was sent, to be delivered at `delivered_at`.
pub async fn mark_enqueued(
    pool: &PgPool,
    run_ids: &[Uuid],
    delivered_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE integration_runs SET enqueued_at = $2 WHERE id = ANY($1)")
        .bind(run_ids)
        .bind(delivered_at)
        .execute(pool)
        .await?;
    Ok(())
}

/// When the next lease of a processing run expires, as [`take_runs_to_resend`] sees it (leases
/// already expired are the rescuer's current pass's); `None` when none will. The rescuer wakes
/// up then.
pub async fn next_lease_expiry(
    pool: &PgPool,
    lease: Duration,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(sqlx::query_scalar(concat!(
        "SELECT min(e.at) FROM integration_runs r,
             LATERAL (SELECT greatest(r.lease_expires_at, ",
        server_started!(),
        " + make_interval(secs => $1)) AS at) e
         WHERE r.state = 'processing' AND e.at > now()",
    ))
    .bind(lease.as_secs_f64())
    .fetch_one(pool)
    .await?)
}
