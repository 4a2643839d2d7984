//! `source_checkpoints`: per source of an integration, when the last run that read all of it
//! successfully started. A check reads each source from its own checkpoint, so one source that
//! keeps failing does not make the healthy ones re-read their whole history.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

/// Every checkpoint of an integration, by source.
pub async fn load(
    pool: &PgPool,
    integration_id: Uuid,
) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
    let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT source, read_from FROM source_checkpoints WHERE integration_id = $1",
    )
    .bind(integration_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Moves forward the checkpoint of every source of the run whose streams all ended `processed`,
/// to when the run started: the body of a data-modifying CTE of the statement that ends the run
/// ([`super::run_end::finish`]), which names the ended run `ended`. A source with any stream in
/// `error` keeps its checkpoint, so the next check reads it again from where it was.
///
/// `$processed` says when a stream `s` counts as processed: `s.state = 'processed'`, or more
/// when the statement marks a stream itself (its snapshot still sees that stream processing).
macro_rules! advance_sql {
    ($processed:literal) => {
        concat!(
            "INSERT INTO source_checkpoints AS c (integration_id, source, read_from, run_id)
             SELECT r.integration_id, s.source, r.started_at, r.id
             FROM integration_streams s JOIN ended r ON r.id = s.run_id
             WHERE r.started_at IS NOT NULL
             GROUP BY r.integration_id, s.source, r.started_at, r.id
             HAVING bool_and(",
            $processed,
            ")
             ON CONFLICT (integration_id, source) DO UPDATE
                 SET read_from = EXCLUDED.read_from, run_id = EXCLUDED.run_id, updated_at = now()
                 WHERE c.read_from < EXCLUDED.read_from"
        )
    };
}
pub(crate) use advance_sql;
