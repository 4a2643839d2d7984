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
    integration: Option<IntegrationRow>,
    checkpoints: Value,
}

impl ClaimedRun {
    /// The run's integration, its credentials opened with this process's keys.
    pub fn integration(&mut self) -> Result<Integration, StoreError> {
        self.integration
            .take()
            .ok_or(StoreError::NotFound {
                what: "integration",
                id: self.run.integration_id,
            })?
            .try_into()
    }

    /// Per source of the integration, when the last run that read all of it started
    /// ([`super::checkpoints`]).
    pub fn checkpoints(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        serde_json::from_value(self.checkpoints.clone())
            .map_err(|e| StoreError::Database(sqlx::Error::Decode(e.into())))
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    run: Run,
    i_tenant_id: Option<Uuid>,
    i_platform: Option<String>,
    i_status: Option<String>,
    i_settings: Option<Value>,
    i_credentials: Option<Value>,
    i_last_processed_at: Option<DateTime<Utc>>,
    i_created_at: Option<DateTime<Utc>>,
    i_updated_at: Option<DateTime<Utc>>,
    checkpoints: Value,
}

/// Takes the run for `owner` as [`super::runs::claim`] does (bumping the attempt, which fences off
/// every earlier holder) and reads its integration and checkpoints in the same statement. `None`
/// when the run is not claimable now.
pub async fn claim(
    pool: &PgPool,
    run_id: Uuid,
    owner: &str,
    lease: Duration,
) -> Result<Option<ClaimedRun>, StoreError> {
    let row: Option<Row> = sqlx::query_as(
        "WITH claimed AS (
             UPDATE integration_runs SET
                 state = 'processing', attempt = attempt + 1, lease_owner = $2,
                 lease_expires_at = now() + make_interval(secs => $3),
                 delayed_until = NULL, delay_reason = NULL,
                 started_at = coalesce(started_at, now()), updated_at = now()
             WHERE id = $1 AND (
                 state = 'pending'
                 OR (state = 'delayed' AND delayed_until <= now())
                 OR (state = 'processing' AND lease_expires_at < now()))
             RETURNING *)
         SELECT c.*,
                i.tenant_id AS i_tenant_id, i.platform AS i_platform, i.status AS i_status,
                i.settings AS i_settings, i.credentials AS i_credentials,
                i.last_processed_at AS i_last_processed_at, i.created_at AS i_created_at,
                i.updated_at AS i_updated_at,
                coalesce((SELECT jsonb_object_agg(source, read_from) FROM source_checkpoints
                          WHERE integration_id = c.integration_id), '{}') AS checkpoints
         FROM claimed c LEFT JOIN integrations i ON i.id = c.integration_id",
    )
    .bind(run_id)
    .bind(owner)
    .bind(lease.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| {
        let integration = match (
            row.i_tenant_id,
            row.i_platform,
            row.i_status,
            row.i_settings,
            row.i_credentials,
            row.i_created_at,
            row.i_updated_at,
        ) {
            (
                Some(tenant_id),
                Some(platform),
                Some(status),
                Some(settings),
                Some(credentials),
                Some(created_at),
                Some(updated_at),
            ) => Some(IntegrationRow {
                id: row.run.integration_id,
                tenant_id,
                platform,
                status,
                settings,
                credentials,
                last_processed_at: row.i_last_processed_at,
                created_at,
                updated_at,
            }),
            _ => None,
        };
        ClaimedRun {
            run: row.run,
            integration,
            checkpoints: row.checkpoints,
        }
    }))
}
