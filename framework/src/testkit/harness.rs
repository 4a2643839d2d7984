//! Drives runs through the real processor and PostgreSQL, and reads back what they produced.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::admin::{self, AdminError, ConnectRequest};
use crate::error::ErrorRecord;
use crate::processor::{IntegrationProcessor, ProcessorConfig, RunOutcome};
use crate::registry::Registry;
use crate::secret::Credentials;
use crate::service::IntegrationService;
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
    /// Processor settings suited to tests: short leases and waits. Credentials are sealed with
    /// a key generated for this test process (see [`super::install_test_key`]).
    pub fn new(pool: PgPool, registry: Registry) -> Self {
        super::install_test_key();
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

    /// A harness whose registry holds just `service`.
    pub fn with_service(pool: PgPool, service: impl IntegrationService) -> Self {
        let mut registry = Registry::new();
        registry
            .register(service)
            .unwrap_or_else(|e| panic!("registering the service: {e}"));
        Self::new(pool, registry)
    }

    /// Rate-limit waits and retry backoffs longer than this defer the run instead of being
    /// waited out inline.
    pub fn max_inline_wait(mut self, wait: Duration) -> Self {
        self.config.max_inline_wait = wait;
        self
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

    /// The message with which connecting is refused; panics if the connection is accepted.
    pub async fn refused(&self, platform: &str, settings: Value, credentials: Value) -> String {
        match self.connect(platform, settings, credentials).await {
            Ok((integration, _)) => panic!(
                "connecting {platform} was accepted (integration {})",
                integration.id
            ),
            Err(e) => e.to_string(),
        }
    }

    /// How many integrations the database holds, of any tenant.
    pub async fn integration_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM integrations")
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("counting integrations: {e}"))
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

    /// Connects an integration and runs its onboarding to the end ([`Harness::run_to_end`]);
    /// panics if the connection is refused.
    pub async fn onboard(&self, platform: &str, settings: Value, credentials: Value) -> RunReport {
        let (integration, run) = self
            .connect(platform, settings, credentials)
            .await
            .unwrap_or_else(|e| panic!("connecting {platform}: {e}"));
        let (outcomes, _) = self.run_to_end(run.id).await;
        self.report(integration.id, run.id, outcomes).await
    }

    /// Starts a check run and runs it to the end ([`Harness::run_to_end`]).
    pub async fn check_to_end(&self, integration_id: Uuid) -> RunReport {
        let run = self
            .check(integration_id)
            .await
            .unwrap_or_else(|e| panic!("starting a check of {integration_id}: {e}"));
        let (outcomes, _) = self.run_to_end(run.id).await;
        self.report(integration_id, run.id, outcomes).await
    }

    /// Processes the run until it ends, waiting out each deferral until the time it names (a
    /// platform's reset), for at most `deadline` in all.
    pub async fn run_honouring_deferrals(
        &self,
        run_id: Uuid,
        deadline: Duration,
    ) -> (Vec<RunOutcome>, Run) {
        let give_up = tokio::time::Instant::now() + deadline;
        let mut outcomes = Vec::new();
        loop {
            let outcome = self.process(run_id).await;
            let wait = match &outcome {
                RunOutcome::Delayed { until, .. } => {
                    Some((*until - Utc::now()).to_std().unwrap_or_default())
                }
                RunOutcome::NotClaimable {
                    delayed_until: Some(until),
                    ..
                } => Some((*until - Utc::now()).to_std().unwrap_or_default()),
                RunOutcome::Released => Some(Duration::ZERO),
                _ => None,
            };
            outcomes.push(outcome);
            let Some(wait) = wait else {
                return (outcomes, self.run(run_id).await);
            };
            let wake = tokio::time::Instant::now() + wait;
            assert!(
                wake <= give_up,
                "run {run_id} still deferred after {deadline:?}: {outcomes:?}"
            );
            tokio::time::sleep_until(wake).await;
        }
    }

    /// What a run left behind: the run, its streams, and the integration's members and
    /// activities.
    pub async fn report(
        &self,
        integration_id: Uuid,
        run_id: Uuid,
        outcomes: Vec<RunOutcome>,
    ) -> RunReport {
        let integration = self.integration(integration_id).await;
        RunReport {
            run: self.run(run_id).await,
            streams: self.streams(run_id).await,
            members: self.members(&integration.platform).await,
            activities: self.activities(integration_id).await,
            integration,
            outcomes,
        }
    }

    /// Every run of an integration, oldest first.
    pub async fn runs(&self, integration_id: Uuid) -> Vec<Run> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM integration_runs WHERE integration_id = $1 ORDER BY created_at, id",
        )
        .bind(integration_id)
        .fetch_all(&self.pool)
        .await
        .unwrap_or_else(|e| panic!("runs of {integration_id}: {e}"));
        let mut runs = Vec::with_capacity(ids.len());
        for id in ids {
            runs.push(self.run(id).await);
        }
        runs
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

/// The first of a run's outcomes, which must be a deferral: when it was deferred to, and why.
pub fn first_deferral(outcomes: &[RunOutcome]) -> (chrono::DateTime<Utc>, &str) {
    match outcomes.first() {
        Some(RunOutcome::Delayed { until, reason }) => (*until, reason.as_str()),
        _ => panic!("expected a deferral first: {outcomes:?}"),
    }
}

/// What a run left behind, for assertions.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub integration: Integration,
    pub run: Run,
    /// Each `process_run` on the way, in order.
    pub outcomes: Vec<RunOutcome>,
    pub streams: Vec<StreamRow>,
    /// Every member of the integration's platform (default tenant).
    pub members: Vec<StoredMember>,
    /// Every activity of the integration (from all its runs).
    pub activities: Vec<StoredActivity>,
}

impl RunReport {
    pub fn activity_ids(&self) -> BTreeSet<String> {
        self.activities
            .iter()
            .map(|a| a.source_id.clone())
            .collect()
    }

    pub fn member_ids(&self) -> BTreeSet<String> {
        self.members.iter().map(|m| m.source_id.clone()).collect()
    }

    /// The errors of the run's streams: `(identifier, error)`.
    pub fn stream_errors(&self) -> Vec<(String, ErrorRecord)> {
        self.streams
            .iter()
            .filter_map(|s| s.error_record().map(|e| (s.identifier.clone(), e)))
            .collect()
    }

    /// The stored activity with this source id; panics if there is none.
    #[track_caller]
    pub fn activity(&self, source_id: &str) -> &StoredActivity {
        self.activities
            .iter()
            .find(|a| a.source_id == source_id)
            .unwrap_or_else(|| panic!("no activity `{source_id}` was stored"))
    }

    /// The stored member with this source id; panics if there is none.
    #[track_caller]
    pub fn member(&self, source_id: &str) -> &StoredMember {
        self.members
            .iter()
            .find(|m| m.source_id == source_id)
            .unwrap_or_else(|| panic!("no member `{source_id}` was stored"))
    }

    /// Panics, with the outcomes and the streams' errors, unless the run ended `processed`.
    #[track_caller]
    pub fn assert_processed(&self) -> &Self {
        assert_eq!(
            self.run.state,
            crate::store::runs::RunState::Processed,
            "the run ends processed: {:?} {:?}",
            self.outcomes,
            self.stream_errors()
        );
        self
    }

    /// How many times streams failed and were retried, in all.
    pub fn retries(&self) -> i64 {
        self.streams.iter().map(|s| i64::from(s.retries)).sum()
    }
}
