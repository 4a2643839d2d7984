//! What a run's hooks see: the integration, its settings and credentials, the pipeline data from
//! `preprocess`, whether the run is onboarding.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::error::IntegrationError;
use crate::secret::Credentials;

/// The context of one run, shared by its hooks. `preprocess` and `postprocess` get it mutably:
/// the pipeline data and settings they set are committed with the hook's result.
#[derive(Debug, Clone)]
pub struct RunContext {
    integration_id: Uuid,
    tenant_id: Uuid,
    platform: String,
    run_id: Uuid,
    onboarding: bool,
    settings: Value,
    credentials: Credentials,
    last_processed_at: Option<DateTime<Utc>>,
    pipeline_data: Value,
    settings_changed: bool,
}

/// The parts of a run context that come from the store.
#[derive(Debug, Clone)]
pub struct RunContextParts {
    pub integration_id: Uuid,
    pub tenant_id: Uuid,
    pub platform: String,
    pub run_id: Uuid,
    pub onboarding: bool,
    pub settings: Value,
    pub credentials: Credentials,
    pub last_processed_at: Option<DateTime<Utc>>,
    pub pipeline_data: Value,
}

impl RunContext {
    pub fn new(parts: RunContextParts) -> Self {
        Self {
            integration_id: parts.integration_id,
            tenant_id: parts.tenant_id,
            platform: parts.platform,
            run_id: parts.run_id,
            onboarding: parts.onboarding,
            settings: parts.settings,
            credentials: parts.credentials,
            last_processed_at: parts.last_processed_at,
            pipeline_data: parts.pipeline_data,
            settings_changed: false,
        }
    }

    pub fn integration_id(&self) -> Uuid {
        self.integration_id
    }

    pub fn tenant_id(&self) -> Uuid {
        self.tenant_id
    }

    pub fn platform(&self) -> &str {
        &self.platform
    }

    pub fn run_id(&self) -> Uuid {
        self.run_id
    }

    /// Onboarding reads the platform's whole history; a check reads what is new since
    /// [`RunContext::last_processed_at`].
    pub fn is_onboarding(&self) -> bool {
        self.onboarding
    }

    /// When the last successful run of this integration started: a check reads from there.
    pub fn last_processed_at(&self) -> Option<DateTime<Utc>> {
        self.last_processed_at
    }

    /// Where this run reads from: `None` (the whole history) for onboarding, or for a check of an
    /// integration never processed; else the start of the last successful run minus `overlap`,
    /// so that records the platform indexed late or stamped with a skewed clock are not missed
    /// (reading one twice is harmless: upserts make it a no-op).
    pub fn read_since(&self, overlap: chrono::Duration) -> Option<DateTime<Utc>> {
        if self.onboarding {
            None
        } else {
            self.last_processed_at.map(|at| at - overlap)
        }
    }

    pub fn settings(&self) -> &Value {
        &self.settings
    }

    /// The settings as the integration's own type.
    pub fn settings_as<T: DeserializeOwned>(&self) -> Result<T, IntegrationError> {
        serde_json::from_value(self.settings.clone()).map_err(|e| {
            IntegrationError::fatal(format!(
                "the stored settings of integration {} do not match its settings type",
                self.integration_id
            ))
            .with_source(e)
        })
    }

    /// Replaces the integration's settings (a cursor, a discovered id). Committed with the
    /// hook that made the change: `preprocess` or `postprocess`.
    pub fn update_settings<T: Serialize>(&mut self, settings: &T) -> Result<(), IntegrationError> {
        self.settings = serde_json::to_value(settings)
            .map_err(|e| IntegrationError::fatal("settings do not serialize").with_source(e))?;
        self.settings_changed = true;
        Ok(())
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    pub fn pipeline_data(&self) -> &Value {
        &self.pipeline_data
    }

    pub fn pipeline_data_as<T: DeserializeOwned>(&self) -> Result<T, IntegrationError> {
        serde_json::from_value(self.pipeline_data.clone()).map_err(|e| {
            IntegrationError::fatal("the run's pipeline data does not match its type")
                .with_source(e)
        })
    }

    /// Sets the data `preprocess` hands to the rest of the run. It is persisted with the run, so a
    /// run resumed on another worker has it.
    pub fn set_pipeline_data<T: Serialize>(&mut self, data: &T) -> Result<(), IntegrationError> {
        self.pipeline_data = serde_json::to_value(data).map_err(|e| {
            IntegrationError::fatal("pipeline data does not serialize").with_source(e)
        })?;
        Ok(())
    }

    /// The settings to write back, if a hook changed them.
    pub fn changed_settings(&self) -> Option<&Value> {
        self.settings_changed.then_some(&self.settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(onboarding: bool, last: Option<DateTime<Utc>>) -> RunContext {
        RunContext::new(RunContextParts {
            integration_id: Uuid::nil(),
            tenant_id: Uuid::nil(),
            platform: "p".into(),
            run_id: Uuid::nil(),
            onboarding,
            settings: json!({}),
            credentials: Credentials::default(),
            last_processed_at: last,
            pipeline_data: json!({}),
        })
    }

    #[test]
    fn a_check_reads_since_the_last_run_with_an_overlap_and_onboarding_reads_everything() {
        let last = DateTime::from_timestamp(1_800_000_000, 0);
        let overlap = chrono::Duration::minutes(10);
        assert_eq!(
            ctx(false, last).read_since(overlap),
            last.map(|at| at - overlap)
        );
        assert_eq!(ctx(true, last).read_since(overlap), None);
        assert_eq!(
            ctx(false, None).read_since(overlap),
            None,
            "never processed"
        );
    }
}
