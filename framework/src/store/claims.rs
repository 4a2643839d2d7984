//! Claiming a run for processing: the run taken under a new lease, with its integration and its
//! sources' checkpoints, in one statement (the first round trip of every check).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;
use super::integrations::{Integration, IntegrationRow};
use super::runs::Run;

/// A run this worker now holds, and what processing it needs to read.
pub struct ClaimedRun {
    pub run: Run,
    /// Its integration, credentials opened with this process's keys.
    pub integration: Integration,
    /// Per source of the integration, when the last run that read all of it started
    /// ([`super::checkpoints`]).
    pub checkpoints: HashMap<String, DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    run: Run,
    i_tenant_id: Uuid,
    i_platform: String,
    i_status: String,
    i_settings: Value,
    i_credentials: Value,
    i_last_processed_at: Option<DateTime<Utc>>,
    i_created_at: DateTime<Utc>,
    i_updated_at: DateTime<Utc>,
    checkpoints: Value,
}

/// Takes the run for `owner` as [`super::runs::claim`] does (bumping the attempt, which fences off
/// every earlier holder) and reads its integration and checkpoints in the same statement. `None`
/// when the run is not claimable now; an error when its credentials cannot be opened (the run stays
/// leased until its lease expires, as when any read after the claim fails).
pub async fn claim(
    pool: &PgPool,
    run_id: Uuid,
    owner: &str,
    lease: Duration,
) -> Result<Option<ClaimedRun>, StoreError> {
    let row: Option<Row> = sqlx::query_as(concat!(
        "WITH claimed AS (",
        super::runs::claim_sql!(),
        " RETURNING *)
         SELECT c.*,
                i.tenant_id AS i_tenant_id, i.platform AS i_platform, i.status AS i_status,
                i.settings AS i_settings, i.credentials AS i_credentials,
                i.last_processed_at AS i_last_processed_at, i.created_at AS i_created_at,
                i.updated_at AS i_updated_at,
                coalesce((SELECT jsonb_object_agg(source, read_from) FROM source_checkpoints
                          WHERE integration_id = c.integration_id), '{}') AS checkpoints
         FROM claimed c JOIN integrations i ON i.id = c.integration_id",
    ))
    .bind(run_id)
    .bind(owner)
    .bind(lease.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let integration = IntegrationRow {
        id: row.run.integration_id,
        tenant_id: row.i_tenant_id,
        platform: row.i_platform,
        status: row.i_status,
        settings: row.i_settings,
        credentials: row.i_credentials,
        last_processed_at: row.i_last_processed_at,
        created_at: row.i_created_at,
        updated_at: row.i_updated_at,
    }
    .try_into()?;
    let checkpoints = serde_json::from_value(row.checkpoints)
        .map_err(|e| StoreError::Database(sqlx::Error::Decode(e.into())))?;
    Ok(Some(ClaimedRun {
        run: row.run,
        integration,
        checkpoints,
    }))
}
