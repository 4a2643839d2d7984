//! The database's clock: one clock for every worker and tick generator, whatever their own
//! clocks say.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::StoreError;

/// The database server's current time.
pub async fn now(pool: &PgPool) -> Result<DateTime<Utc>, StoreError> {
    Ok(sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await?)
}
