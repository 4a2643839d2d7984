//! `integrations`: a tenant's connection to a platform.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::StoreError;
use super::runs::{self, Run};
use crate::secret::Credentials;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrationStatus {
    Pending,
    InProgress,
    Done,
    Error,
    Disconnected,
}

impl IntegrationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InProgress => "in-progress",
            Self::Done => "done",
            Self::Error => "error",
            Self::Disconnected => "disconnected",
        }
    }
}

impl fmt::Display for IntegrationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IntegrationStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => Self::Pending,
            "in-progress" => Self::InProgress,
            "done" => Self::Done,
            "error" => Self::Error,
            "disconnected" => Self::Disconnected,
            other => return Err(format!("unknown integration status `{other}`")),
        })
    }
}

/// An integration as stored. Its credentials print as `[redacted]`.
#[derive(Debug, Clone)]
pub struct Integration {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub platform: String,
    pub status: IntegrationStatus,
    pub settings: Value,
    pub credentials: Credentials,
    pub last_processed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An integration as read, its credentials still sealed.
#[derive(sqlx::FromRow)]
pub(crate) struct IntegrationRow {
    pub(crate) id: Uuid,
    pub(crate) tenant_id: Uuid,
    pub(crate) platform: String,
    pub(crate) status: String,
    pub(crate) settings: Value,
    pub(crate) credentials: Value,
    pub(crate) last_processed_at: Option<DateTime<Utc>>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

impl TryFrom<IntegrationRow> for Integration {
    type Error = StoreError;
    fn try_from(row: IntegrationRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            tenant_id: row.tenant_id,
            platform: row.platform,
            status: row
                .status
                .parse()
                .map_err(|e: String| StoreError::Database(sqlx::Error::Decode(e.into())))?,
            settings: row.settings,
            credentials: Credentials::new(
                crate::keyring::current().open(row.id, &row.credentials)?,
            ),
            last_processed_at: row.last_processed_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// An integration to connect: settings already validated by its service.
#[derive(Debug, Clone)]
pub struct NewIntegration {
    pub tenant_id: Uuid,
    pub platform: String,
    pub settings: Value,
    pub credentials: Credentials,
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Integration, StoreError> {
    get_in(&mut *pool.acquire().await?, id).await
}

pub(crate) async fn get_in(conn: &mut PgConnection, id: Uuid) -> Result<Integration, StoreError> {
    let row: Option<IntegrationRow> = sqlx::query_as("SELECT * FROM integrations WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.ok_or(StoreError::NotFound {
        what: "integration",
        id,
    })?
    .try_into()
}

/// Creates the integration (`in-progress`) and its onboarding run in one transaction.
pub async fn connect(pool: &PgPool, new: NewIntegration) -> Result<(Integration, Run), StoreError> {
    let id = Uuid::new_v4();
    let sealed = crate::keyring::current().seal(id, &new.credentials.to_storage())?;
    let mut tx = crate::db::begin(pool).await?;
    let row: IntegrationRow = sqlx::query_as(
        "INSERT INTO integrations (id, tenant_id, platform, status, settings, credentials)
         VALUES ($1, $2, $3, 'in-progress', $4, $5) RETURNING *",
    )
    .bind(id)
    .bind(new.tenant_id)
    .bind(&new.platform)
    .bind(&new.settings)
    .bind(&sealed)
    .fetch_one(&mut *tx)
    .await?;
    let integration = Integration::try_from(row)?;
    let run = runs::insert(&mut tx, integration.id, true, None).await?;
    tx.commit().await?;
    Ok((integration, run))
}

/// Marks the integration disconnected and cancels its active run: no check will start again.
pub async fn disconnect(pool: &PgPool, id: Uuid) -> Result<(), StoreError> {
    let mut tx = crate::db::begin(pool).await?;
    let updated = sqlx::query(
        "UPDATE integrations SET status = 'disconnected', updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NotFound {
            what: "integration",
            id,
        });
    }
    let cancelled: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE integration_runs SET state = 'cancelled', finished_at = now(), updated_at = now(),
             delayed_until = NULL, lease_owner = NULL, lease_expires_at = NULL
         WHERE integration_id = $1 AND state IN ('pending', 'processing', 'delayed')
         RETURNING id",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    // streams in flight go back to pending, as a cancel leaves them: none stays `processing`
    for run_id in cancelled {
        super::streams::unclaim_all(&mut tx, run_id).await?;
    }
    super::events::insert_for_integration(
        &mut tx,
        id,
        super::events::types::INTEGRATION_DISCONNECTED,
        &serde_json::json!({ "integration_id": id }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// What a rotation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rotated {
    /// Credentials sealed again with the current key (they were in the clear or under another).
    pub resealed: u64,
    /// Already sealed with the current key, or empty.
    pub unchanged: u64,
}

/// Seals every integration's credentials with the keyring's current key: those in the clear and
/// those under an older key (which the keyring must still hold). Each row is rewritten in its
/// own short transaction, locked, so a rotation can run beside the workers.
pub async fn rotate_credentials(
    pool: &PgPool,
    keyring: &crate::keyring::Keyring,
) -> Result<Rotated, StoreError> {
    let Some(current) = keyring.current_key_id().map(str::to_owned) else {
        return Err(StoreError::Refused(format!(
            "no current key to seal with: set {}",
            crate::keyring::KEY_ENV
        )));
    };
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM integrations ORDER BY id")
        .fetch_all(pool)
        .await?;
    let mut done = Rotated::default();
    for id in ids {
        let mut tx = crate::db::begin(pool).await?;
        let stored: Option<Value> =
            sqlx::query_scalar("SELECT credentials FROM integrations WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(stored) = stored else { continue };
        let empty = stored.as_object().is_some_and(|m| m.is_empty());
        if empty || crate::keyring::Keyring::sealed_with(&stored) == Some(current.as_str()) {
            done.unchanged += 1;
            continue;
        }
        let plain = keyring.open(id, &stored)?;
        let sealed = keyring.seal(id, &plain)?;
        sqlx::query("UPDATE integrations SET credentials = $2, updated_at = now() WHERE id = $1")
            .bind(id)
            .bind(&sealed)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        done.resealed += 1;
    }
    Ok(done)
}
