//! `tick_slots`: the minute slots the tick generators have emitted. A slot is emitted once, by
//! whichever generator inserts its row first.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::StoreError;

/// Inserts the slot's row inside the caller's transaction. `true`: this transaction has it (emit
/// the tick, then commit); `false`: another generator already emitted it. A concurrent claim of
/// the same slot waits until this transaction ends, so a rolled-back claim lets the other one in.
pub async fn claim_slot(
    conn: &mut PgConnection,
    slot: DateTime<Utc>,
    generator: &str,
) -> Result<bool, StoreError> {
    let inserted: Option<DateTime<Utc>> = sqlx::query_scalar(
        "INSERT INTO tick_slots (slot, emitted_by) VALUES ($1, $2)
         ON CONFLICT (slot) DO NOTHING RETURNING slot",
    )
    .bind(slot)
    .bind(generator)
    .fetch_optional(conn)
    .await?;
    Ok(inserted.is_some())
}

/// The latest slot emitted, if any.
pub async fn latest_slot(pool: &PgPool) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(sqlx::query_scalar("SELECT max(slot) FROM tick_slots")
        .fetch_one(pool)
        .await?)
}

/// Every slot emitted, oldest first, with the generator that emitted it.
pub async fn list(pool: &PgPool) -> Result<Vec<(DateTime<Utc>, String)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT slot, emitted_by FROM tick_slots ORDER BY slot")
            .fetch_all(pool)
            .await?,
    )
}

/// Forgets slots before `before`; returns how many.
pub async fn prune(pool: &PgPool, before: DateTime<Utc>) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM tick_slots WHERE slot < $1")
        .bind(before)
        .execute(pool)
        .await?
        .rows_affected())
}
