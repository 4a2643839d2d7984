//! Drives runs through the real processor and PostgreSQL, and reads back what they produced.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::admin::{self, AdminError, ConnectRequest};
use crate::processor::{IntegrationProcessor, ProcessorConfig, RunOutcome};
use crate::registry::Registry;
use crate::secret::Credentials;
use crate::store::integrations::{self, Integration};
use crate::store::records::{self, StoredActivity, StoredMember};
use crate::store::runs::{self, Run};
use crate::store::streams::{self, StreamRow};

/// A test's view of Tributary: a registry, a pool on the test's own database, processors.
#[derive(Clone)]
pub struct Harness {
    pub pool: PgPool,
    pub registry: Arc<Registry>,
    pub config: ProcessorConfig,
}

impl Harness {
    /// Processor settings suited to tests: short leases and waits.
    pub fn new(pool: PgPool, registry: Registry) -> Self {
        Self {
            pool,
            registry: Arc::new(registry),
            config: ProcessorConfig {
                worker_id: "test-worker".into(),
                lease_duration: Duration::from_secs(30),
                heartbeat_interval: Duration::from_secs(1),
                max_inline_wait: Duration::from_secs(2),
                shutdown_grace: Duration::from_secs(10),
                max_deferral: Duration::from_secs(24 * 3600),
            },
        }
    }

    /// A processor of its own, named `worker_id`.
    pub fn processor(&self, worker_id: &str) -> IntegrationProcessor {
        let mut config = self.config.clone();
        config.worker_id = worker_id.to_owned();
        IntegrationProcessor::new(self.pool.clone(), self.registry.clone(), config)
    }

    /// Connects an integration of the default tenant.
    pub async fn connect(
        &self,
        platform: &str,
        settings: Value,
        credentials: Value,
    ) -> Result<(Integration, Run), AdminError> {
        admin::connect(
            &self.pool,
            &self.registry,
            ConnectRequest {
                tenant_id: admin::DEFAULT_TENANT,
                platform: platform.to_owned(),
                settings,
                credentials: Credentials::new(credentials),
            },
        )
        .await
    }

    /// Starts a check run.
    pub async fn check(&self, integration_id: Uuid) -> Result<Run, AdminError> {
        admin::start_run(&self.pool, &self.registry, integration_id, false, None).await
    }

    /// One `process_run` by a processor named `test-worker`.
    pub async fn process(&self, run_id: Uuid) -> RunOutcome {
        self.processor("test-worker")
            .process_run(run_id, &CancellationToken::new())
            .await
            .unwrap_or_else(|e| panic!("processing run {run_id} failed: {e:?}"))
    }

    /// Processes the run until it ends; each deferral is cut short (as if its time had come).
    /// Returns every outcome on the way and the final run.
    pub async fn run_to_end(&self, run_id: Uuid) -> (Vec<RunOutcome>, Run) {
        let mut outcomes = Vec::new();
        for _ in 0..1000 {
            self.make_due(run_id).await;
            let outcome = self.process(run_id).await;
            let again = matches!(outcome, RunOutcome::Delayed { .. } | RunOutcome::Released);
            outcomes.push(outcome);
            if !again {
                return (outcomes, self.run(run_id).await);
            }
        }
        panic!("run {run_id} did not end after 1000 deferrals: {outcomes:?}");
    }

    /// Moves a delayed run's time to now.
    pub async fn make_due(&self, run_id: Uuid) {
        sqlx::query(
            "UPDATE integration_runs SET delayed_until = now() WHERE id = $1 AND state = 'delayed'",
        )
        .bind(run_id)
        .execute(&self.pool)
        .await
        .unwrap_or_else(|e| panic!("make_due {run_id}: {e}"));
    }

    /// Moves a processing run's lease expiry to the past, as if its worker had died.
    pub async fn expire_lease(&self, run_id: Uuid) {
        sqlx::query(
            "UPDATE integration_runs SET lease_expires_at = now() - interval '1 second'
             WHERE id = $1 AND state = 'processing'",
        )
        .bind(run_id)
        .execute(&self.pool)
        .await
        .unwrap_or_else(|e| panic!("expire_lease {run_id}: {e}"));
    }

    pub async fn run(&self, run_id: Uuid) -> Run {
        runs::get(&self.pool, run_id)
            .await
            .unwrap_or_else(|e| panic!("run {run_id}: {e}"))
    }

    pub async fn integration(&self, id: Uuid) -> Integration {
        integrations::get(&self.pool, id)
            .await
            .unwrap_or_else(|e| panic!("integration {id}: {e}"))
    }

    pub async fn streams(&self, run_id: Uuid) -> Vec<StreamRow> {
        streams::list(&self.pool, run_id)
            .await
            .unwrap_or_else(|e| panic!("streams of {run_id}: {e}"))
    }

    pub async fn activities(&self, integration_id: Uuid) -> Vec<StoredActivity> {
        records::list_activities(&self.pool, integration_id)
            .await
            .unwrap_or_else(|e| panic!("activities of {integration_id}: {e}"))
    }

    pub async fn members(&self, platform: &str) -> Vec<StoredMember> {
        records::list_members(&self.pool, admin::DEFAULT_TENANT, platform)
            .await
            .unwrap_or_else(|e| panic!("members of {platform}: {e}"))
    }
}
