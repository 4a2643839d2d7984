//! Operator commands as library functions: connect an integration, start a run, continue or
//! cancel one. The scripts only parse arguments and print what these return.

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::SettingsError;
use crate::registry::{Registry, RegistryError};
use crate::secret::Credentials;
use crate::store::StoreError;
use crate::store::integrations::{self, Integration, NewIntegration};
use crate::store::runs::{self, CreatedRun, Run};
use crate::store::streams::Revived;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    UnknownPlatform(#[from] RegistryError),
    #[error("settings for platform `{platform}` refused: {source}")]
    InvalidSettings {
        platform: String,
        #[source]
        source: SettingsError,
    },
    #[error("integration {0} does not exist")]
    UnknownIntegration(Uuid),
    #[error("run {0} does not exist")]
    UnknownRun(Uuid),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound {
                what: "integration",
                id,
            } => Self::UnknownIntegration(id),
            StoreError::NotFound { what: "run", id } => Self::UnknownRun(id),
            StoreError::Refused(message) => Self::Refused(message),
            other => Self::Store(other),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConnectRequest {
    pub tenant_id: Uuid,
    pub platform: String,
    pub settings: Value,
    pub credentials: Credentials,
}

/// The tenant used when none is given.
pub const DEFAULT_TENANT: Uuid = Uuid::nil();

/// Validates the settings through the platform's integration, then creates the integration and
/// its onboarding run. Nothing is written when anything is refused.
pub async fn connect(
    pool: &PgPool,
    registry: &Registry,
    request: ConnectRequest,
) -> Result<(Integration, Run), AdminError> {
    let service = registry.get(&request.platform)?;
    let settings = service
        .validate_settings(&request.settings, &request.credentials)
        .map_err(|source| AdminError::InvalidSettings {
            platform: request.platform.clone(),
            source,
        })?;
    Ok(integrations::connect(
        pool,
        NewIntegration {
            tenant_id: request.tenant_id,
            platform: request.platform,
            settings,
            credentials: request.credentials,
        },
    )
    .await?)
}

/// Starts a run of an integration: onboarding (its whole history) or a check. Refuses an unknown
/// id, an integration of another platform than `expected_platform`, a disconnected integration,
/// a platform this build does not know, and an integration that already has an active run.
pub async fn start_run(
    pool: &PgPool,
    registry: &Registry,
    integration_id: Uuid,
    onboarding: bool,
    expected_platform: Option<&str>,
) -> Result<Run, AdminError> {
    let integration = integrations::get(pool, integration_id).await?;
    if let Some(expected) = expected_platform
        && integration.platform != expected
    {
        return Err(AdminError::Refused(format!(
            "integration {integration_id} is a `{}` integration, not `{expected}`",
            integration.platform
        )));
    }
    registry.get(&integration.platform)?;
    // a disconnected integration is refused by `runs::create`, the one place that checks it
    match runs::create(pool, integration_id, onboarding, None).await? {
        CreatedRun::Created(run) => Ok(run),
        CreatedRun::AlreadyActive(run) | CreatedRun::Duplicate(run) => {
            Err(AdminError::Refused(format!(
                "integration {integration_id} already has an active run {} ({}); continue it with continue-run",
                run.id, run.state
            )))
        }
    }
}

/// Resumes a run: errored streams get a new chance with their retries reset, waiting ones are due
/// at once, and the run is pending for the next worker.
pub async fn continue_run(pool: &PgPool, run_id: Uuid) -> Result<(Run, Revived), AdminError> {
    Ok(runs::resume(pool, run_id).await?)
}

pub async fn cancel_run(pool: &PgPool, run_id: Uuid) -> Result<Run, AdminError> {
    Ok(runs::cancel(pool, run_id).await?)
}
