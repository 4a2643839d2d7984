//! Edges an operator meets: a page cycle (A → B → A), `continue-run` and `disconnect` on a
//! disconnected integration, an integration in `error` checked on its next due tick, a run with
//! no stream.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use chrono::Utc;
use common::*;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tributary::maintenance::{TickScheduler, TickSchedulerConfig};
use tributary::messages::TickSlot;
use tributary::queue::{PgQueue, PgQueueConfig};
use tributary::store::integrations::{self, IntegrationStatus};
use tributary::store::runs::RunState;
use tributary::store::streams::StreamState;
use tributary::testkit::ScriptedService;
use tributary::{CheckSchedule, IntegrationError, RunOutcome, ServiceConfig, StreamOutcome};

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_page_cycle_ends_the_stream_in_error_with_its_records_kept(pool: PgPool) {
    // page 1 → "A" → "B" → "A" again
    let service = ScriptedService::new(PLATFORM, roots(&["feed"]), |call| async move {
        let (next, id) = match call.stream.page.as_ref().and_then(|p| p.as_str()) {
            None => ("A", "1"),
            Some("A") => ("B", "2"),
            Some(_) => ("A", "3"),
        };
        Ok(StreamOutcome::new()
            .activity(activity(id, "ada"))
            .next_page(json!(next)))
    })
    .config(fast_config());
    let h = harness(pool, service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let (_, run) = h.run_to_end(run.id).await;
    assert_eq!(run.state, RunState::Error);
    let streams = h.streams(run.id).await;
    assert_eq!(streams.len(), 3, "the cycle was not followed");
    assert_eq!(
        streams.iter().map(|s| s.state).collect::<Vec<_>>(),
        [
            StreamState::Processed,
            StreamState::Processed,
            StreamState::Error
        ]
    );
    let error = streams[2].error_record().unwrap();
    assert!(
        error
            .message
            .starts_with("pagination cycles: the next page of `feed` (\"A\")"),
        "{}",
        error.message
    );
    assert_eq!(
        source_ids(&h.activities(integration.id).await),
        ["act-1", "act-2", "act-3"],
        "the records of the page that cycled are kept"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn continue_run_refuses_a_run_of_a_disconnected_integration(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["a"]), |_| async move {
        Err(IntegrationError::fatal("boom"))
    })
    .config(fast_config());
    let h = harness(pool.clone(), service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let (_, ended) = h.run_to_end(run.id).await;
    assert_eq!(ended.state, RunState::Error);
    integrations::disconnect(&pool, integration.id)
        .await
        .unwrap();

    let refused = tributary::admin::continue_run(&pool, run.id)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("is disconnected"), "{refused}");
    assert_eq!(h.run(run.id).await.state, RunState::Error, "not revived");
    assert!(matches!(
        h.process(run.id).await,
        RunOutcome::NotClaimable { .. }
    ));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn disconnect_leaves_no_stream_processing_and_the_worker_stops(pool: PgPool) {
    let started = Signal::new();
    let release = Signal::new();
    let (s, r) = (started.clone(), release.clone());
    let service = ScriptedService::new(PLATFORM, roots(&["slow", "other"]), move |_| {
        let (s, r) = (s.clone(), r.clone());
        async move {
            s.fire();
            r.wait().await;
            Ok(StreamOutcome::new())
        }
    })
    .config(fast_config());
    let h = harness(pool.clone(), service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let processor = h.processor("w1");
    let worker = tokio::spawn(async move {
        processor
            .process_run(run.id, &CancellationToken::new())
            .await
            .unwrap()
    });
    started.wait().await;
    integrations::disconnect(&pool, integration.id)
        .await
        .unwrap();
    let streams = h.streams(run.id).await;
    assert!(
        streams.iter().all(|s| s.state == StreamState::Pending),
        "{:?}",
        streams.iter().map(|s| s.state).collect::<Vec<_>>()
    );
    release.fire();
    assert_eq!(worker.await.unwrap(), RunOutcome::LeaseLost);
    assert!(
        h.streams(run.id)
            .await
            .iter()
            .all(|s| s.state == StreamState::Pending)
    );
    assert_eq!(h.run(run.id).await.state, RunState::Cancelled);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn an_integration_in_error_gets_a_check_on_its_next_due_tick(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["a"]), |call| async move {
        if call.ctx.is_onboarding() {
            Err(IntegrationError::fatal("the platform refused"))
        } else {
            Ok(StreamOutcome::new().activity(activity("1", "ada")))
        }
    })
    .config(ServiceConfig {
        check_schedule: CheckSchedule::EveryTick,
        ..fast_config()
    });
    let h = harness(pool.clone(), service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let (_, run) = h.run_to_end(run.id).await;
    assert_eq!(run.state, RunState::Error);
    assert_eq!(
        h.integration(integration.id).await.status,
        IntegrationStatus::Error
    );

    let queue = Arc::new(PgQueue::new(pool.clone(), PgQueueConfig::default()));
    let scheduler = TickScheduler::new(
        pool.clone(),
        h.registry.clone(),
        queue,
        TickSchedulerConfig::default(),
    );
    let fan_out = scheduler
        .run_once(TickSlot::containing(Utc::now()))
        .await
        .unwrap();
    assert_eq!(fan_out.runs_created, 1);
    let check = h
        .runs(integration.id)
        .await
        .into_iter()
        .find(|r| !r.onboarding)
        .unwrap();
    let (_, check) = h.run_to_end(check.id).await;
    assert_eq!(check.state, RunState::Processed);
    assert_eq!(
        h.integration(integration.id).await.status,
        IntegrationStatus::Done
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_run_whose_get_streams_returns_nothing_ends_processed_at_once(pool: PgPool) {
    let service =
        ScriptedService::new(
            PLATFORM,
            Vec::new(),
            |_| async move { Ok(StreamOutcome::new()) },
        )
        .config(fast_config());
    let log = service.log();
    let h = harness(pool, service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    assert_eq!(h.process(run.id).await, RunOutcome::Processed);
    let run = h.run(run.id).await;
    assert_eq!((run.state, run.attempt), (RunState::Processed, 1));
    assert!(h.streams(run.id).await.is_empty());
    assert_eq!(log.count("postprocess"), 1);
    assert_eq!(
        h.integration(integration.id).await.status,
        IntegrationStatus::Done
    );
}
