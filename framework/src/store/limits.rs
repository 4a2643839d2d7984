//! `rate_limit_windows`: global limits counted in PostgreSQL, so that every worker of a platform
//! shares one budget per window.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitDecision {
    /// One unit taken from the current window.
    Granted { used: i64 },
    /// The window's budget is spent; the next window starts at `reset_at`.
    Exhausted { reset_at: DateTime<Utc> },
}

/// Takes one unit of `key`'s budget of `limit` units for the current window (windows are aligned
/// to the epoch, so every worker agrees on them).
pub async fn try_acquire(
    pool: &PgPool,
    key: &str,
    limit: u64,
    window: Duration,
) -> Result<LimitDecision, StoreError> {
    let window_secs = window.as_secs_f64().max(1.0);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let (start, used, granted): (DateTime<Utc>, i64, bool) = sqlx::query_as(
        "WITH w AS (SELECT to_timestamp(floor(extract(epoch FROM now())::float8 / $2) * $2) AS start),
         taken AS (
             INSERT INTO rate_limit_windows AS r (key, window_start, used)
             SELECT $1, w.start, 1 FROM w
             ON CONFLICT (key, window_start) DO UPDATE SET used = r.used + 1 WHERE r.used < $3
             RETURNING r.used)
         SELECT w.start, coalesce((SELECT used FROM taken), $3), EXISTS (SELECT 1 FROM taken)
         FROM w",
    )
    .bind(key)
    .bind(window_secs)
    .bind(limit)
    .fetch_one(pool)
    .await?;
    Ok(if granted {
        LimitDecision::Granted { used }
    } else {
        let reset_at =
            start + chrono::Duration::from_std(window).unwrap_or(chrono::Duration::seconds(60));
        LimitDecision::Exhausted { reset_at }
    })
}

/// Removes windows that ended more than `keep` ago.
pub async fn prune(pool: &PgPool, keep: Duration) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "DELETE FROM rate_limit_windows WHERE window_start < now() - make_interval(secs => $1)",
    )
    .bind(keep.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected())
}
