//! A hook that panics. The worker binary only knows the shipped integrations, none of which
//! panics on purpose, so this scenario runs the worker's own library (`run_with_registry`, what
//! `tributary-worker` runs) in the test's process, with the Example Forum wrapped so that one
//! stream's hook panics; a second, real worker binary competes for the other runs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tributary::{
    IntegrationError, IntegrationService, NewStream, Registry, RunContext, ServiceConfig, Stream,
    StreamOutcome,
};
use tributary_integrations::example_forum::{
    ExampleForumIntegration, ExampleForumSettings, PLATFORM,
};
use tributary_worker::{HealthEndpoint, WorkerConfig};

use crate::common::database_url;
use crate::harness::{Expect, Figures, Onboarding, Scale, seeded};
use crate::workers::Workers;

/// The Example Forum, except that `posts:channel-1` of the forum at `base_url` panics.
struct PanickingForum {
    inner: ExampleForumIntegration,
    base_url: String,
}

#[async_trait]
impl IntegrationService for PanickingForum {
    type Settings = ExampleForumSettings;

    fn platform(&self) -> &'static str {
        PLATFORM
    }

    fn config(&self) -> ServiceConfig {
        self.inner.config()
    }

    async fn get_streams(
        &self,
        ctx: &RunContext<ExampleForumSettings>,
    ) -> Result<Vec<NewStream>, IntegrationError> {
        self.inner.get_streams(ctx).await
    }

    async fn process_stream(
        &self,
        stream: &Stream,
        ctx: &RunContext<ExampleForumSettings>,
    ) -> Result<StreamOutcome, IntegrationError> {
        if ctx.settings().base_url.trim_end_matches('/') == self.base_url
            && stream.identifier == "posts:channel-1"
        {
            panic!("a hook that panics (fault injected by the test)");
        }
        self.inner.process_stream(stream, ctx).await
    }

    async fn is_processing_finished(
        &self,
        stream: &Stream,
        outcome: &StreamOutcome,
        ctx: &RunContext<ExampleForumSettings>,
    ) -> Result<bool, IntegrationError> {
        self.inner
            .is_processing_finished(stream, outcome, ctx)
            .await
    }
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_hook_that_panics_fails_only_its_stream_and_the_worker_goes_on(pool: PgPool) {
    let (seed, _) = seeded("panicking hook");
    let scale = Scale::standard(20);
    let url = database_url(&pool);
    let onboarding = Onboarding::direct(pool.clone(), &scale).await;
    let panicking = onboarding.forums[0].base_url();
    let excused: std::collections::BTreeSet<String> = onboarding.forums[0].edit(|d| {
        d.posts
            .iter()
            .filter(|p| p.channel_id == "channel-1")
            .map(|p| format!("post:{}", p.id))
            .collect()
    });

    let mut registry = Registry::new();
    registry
        .register(PanickingForum {
            inner: ExampleForumIntegration::new(),
            base_url: panicking.trim_end_matches('/').to_owned(),
        })
        .unwrap();
    let mut config = WorkerConfig::new(url.clone());
    config.health = HealthEndpoint::Off;
    config.processor.worker_id = "in-process".to_owned();
    config.processor.lease_duration = Duration::from_secs(3);
    config.processor.heartbeat_interval = Duration::from_millis(500);
    config.receive_wait = Duration::from_secs(1);
    config.rescuer.interval = Duration::from_secs(1);
    config.rescuer.resend_after = Duration::from_secs(2);
    let shutdown = CancellationToken::new();
    let in_process = tokio::spawn(tributary_worker::run_with_registry(
        config,
        Arc::new(registry),
        shutdown.clone(),
    ));
    // the panicking run must be taken by the in-process worker: the binary starts afterwards
    onboarding.enqueue_all(onboarding.pg_queue().as_ref()).await;
    onboarding.wait_progress(1, Duration::from_secs(60)).await;
    let mut workers = Workers::new(&pool, &url, "beside-panic");
    workers.spawn();
    onboarding.wait_settled(Duration::from_secs(180)).await;

    let stream_error: String = sqlx::query_scalar(
        "SELECT s.error::text FROM integration_streams s JOIN integration_runs r ON r.id = s.run_id
         WHERE r.id = $1 AND s.identifier = 'posts:channel-1'",
    )
    .bind(onboarding.integrations[0].run_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(stream_error.contains("panic"), "{stream_error}");
    let figures = Figures {
        scenario: "a hook that panics".into(),
        seed,
        faults: "process_stream panics on one stream of one integration".into(),
        ..Figures::default()
    };
    let expect = Expect {
        failing: [(0, excused)].into(),
        no_retries_for: (1..onboarding.integrations.len()).collect(),
        ..Expect::default()
    };
    onboarding.check(&expect, figures).await;
    shutdown.cancel();
    in_process.await.unwrap().unwrap();
    workers.stop_all().await;
}
