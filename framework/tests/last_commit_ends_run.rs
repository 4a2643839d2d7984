//! The commit of a run's last stream ends the run in the same statement (`postprocess` having run
//! before it): one transaction fewer per check. It does so only when every other stream of the
//! run is `processed` and this one ends so; otherwise the stream is committed alone and the run
//! goes on as before.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use sqlx::PgPool;
use tributary::store::outcomes::{self, Completion, FinishRun};
use tributary::store::records::RecordScope;
use tributary::store::runs::{self, RunState};
use tributary::store::streams::{self, StreamRow};
use tributary::store::{Lease, claims};
use tributary::testkit::ScriptedService;
use tributary::{IntegrationError, NewStream, RunOutcome, ServiceConfig, StreamOutcome};

const LEASE: Duration = Duration::from_secs(30);

/// A connected integration's run claimed by worker "w", with streams "a" (source alpha) and "b"
/// (source beta) preprocessed and claimed.
async fn claimed_run_of_two(
    pool: &PgPool,
) -> (
    tributary::store::integrations::Integration,
    Lease,
    Vec<StreamRow>,
) {
    let h = harness(
        pool.clone(),
        ScriptedService::new(PLATFORM, roots(&["a"]), |_| async {
            Ok(StreamOutcome::new())
        }),
    );
    let (integration, run) = h
        .connect(PLATFORM, json!({ "v": 1 }), json!({}))
        .await
        .unwrap();
    let lease = claims::claim(pool, run.id, "w", LEASE)
        .await
        .unwrap()
        .unwrap()
        .run
        .lease();
    let roots = [
        NewStream::new("a", json!({})).source("alpha"),
        NewStream::new("b", json!({})).source("beta"),
    ];
    let (_, claimed) = runs::save_preprocessed(pool, &lease, &json!({}), None, &roots, 2)
        .await
        .unwrap();
    (integration, lease, claimed)
}

fn scope_of(integration: &tributary::store::integrations::Integration) -> RecordScope {
    RecordScope {
        tenant_id: integration.tenant_id,
        platform: PLATFORM.to_owned(),
        integration_id: integration.id,
    }
}

/// The outcome of `stream` with `activities` (ids, all by member "ada"; records are the tenant's,
/// so each case of a test uses its own ids), asking to end the run with settings `{"v": 2}` when
/// `finish`.
fn outcome<'a>(
    stream: &StreamRow,
    scope: &'a RecordScope,
    activities: &[&str],
    finish: bool,
) -> Completion<'a> {
    Completion {
        stream_id: stream.id,
        scope,
        members: Vec::new(),
        activities: activities.iter().map(|id| activity(id, "ada")).collect(),
        new_streams: Vec::new(),
        last_record: None,
        last_record_timestamp: None,
        error: None,
        summarize: finish,
        finish: finish.then(|| FinishRun {
            settings: Some(json!({ "v": 2 })),
        }),
    }
}

/// The event types of the integration's events, in the order they were written.
async fn event_types(pool: &PgPool, integration_id: uuid::Uuid) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM events WHERE integration_id = $1 ORDER BY pos")
        .bind(integration_id)
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn checkpoints(pool: &PgPool, integration_id: uuid::Uuid) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT source FROM source_checkpoints WHERE integration_id = $1 ORDER BY source",
    )
    .bind(integration_id)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// With records (one statement for records and stream) and without (the stream's mark alone):
/// the run ends `processed` with every stream's figures, its integration's settings and
/// checkpoints, and its event after the records' events.
#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_last_commit_ends_the_run_with_its_figures_settings_checkpoints_and_event(
    pool: PgPool,
) {
    for (first_record, last_records) in [("1a", &["1b", "1c"][..]), ("2a", &[])] {
        let (integration, lease, claimed) = claimed_run_of_two(&pool).await;
        let scope = scope_of(&integration);
        let first = outcomes::complete(
            &pool,
            &lease,
            &outcome(&claimed[0], &scope, &[first_record], false),
        )
        .await
        .unwrap();
        assert_eq!(first.finished, None, "not asked");
        let last = outcomes::complete(
            &pool,
            &lease,
            &outcome(&claimed[1], &scope, last_records, true),
        )
        .await
        .unwrap();
        let created = 1 + last_records.len() as i64;
        let figures = last.finished.expect("every other stream was processed");
        assert_eq!((figures.streams_processed, figures.streams_errored), (2, 0));
        assert_eq!(figures.activities_created, created);

        let run = runs::get(&pool, lease.run_id).await.unwrap();
        assert_eq!(run.state, RunState::Processed, "{last_records:?}");
        assert_eq!((run.streams_processed, run.streams_errored), (2, 0));
        let members = i64::from(first_record == "1a");
        assert_eq!(
            (run.activities_created, run.members_created),
            (created, members)
        );
        assert_eq!(run.lease_owner, None);
        let listed = streams::list(&pool, lease.run_id).await.unwrap();
        let b = listed.iter().find(|s| s.id == claimed[1].id).unwrap();
        assert_eq!(b.state, tributary::store::streams::StreamState::Processed);
        assert_eq!(
            run.finished_at, b.finished_at,
            "the run ended in the stream's own statement"
        );
        let stored = tributary::store::integrations::get(&pool, integration.id)
            .await
            .unwrap();
        assert_eq!(stored.settings, json!({ "v": 2 }), "postprocess's settings");
        assert_eq!(stored.last_processed_at, run.started_at);
        assert_eq!(
            checkpoints(&pool, integration.id).await,
            ["alpha", "beta"],
            "the committed stream's source counts as read"
        );
        let mut expected = if first_record == "1a" {
            vec!["member.created"]
        } else {
            Vec::new() // "ada" was created in the first case
        };
        expected.extend(std::iter::repeat_n("activity.created", created as usize));
        expected.push("run.processed");
        assert_eq!(event_types(&pool, integration.id).await, expected);
    }
}

/// Another stream still in flight, or failed, or this stream ending in `error`: the stream is
/// committed, the run is not ended, and the run ends as before afterwards.
#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_last_commit_leaves_the_run_when_another_stream_is_not_processed(pool: PgPool) {
    for case in ["in flight", "failed", "this one failed"] {
        let (integration, lease, claimed) = claimed_run_of_two(&pool).await;
        let scope = scope_of(&integration);
        let failure = fatal("process_stream", "gone");
        if case == "failed" {
            streams::fail(&pool, &lease, claimed[0].id, &failure, None)
                .await
                .unwrap();
        }
        if case == "this one failed" {
            outcomes::complete(&pool, &lease, &outcome(&claimed[0], &scope, &[], false))
                .await
                .unwrap();
        }
        let mut last = outcome(&claimed[1], &scope, &[case], true);
        if case == "this one failed" {
            last.error = Some(&failure);
        }
        let committed = outcomes::complete(&pool, &lease, &last).await.unwrap();
        assert_eq!(committed.finished, None, "{case}");
        assert_eq!(committed.records.activities_created, 1, "{case}");
        let run = runs::get(&pool, lease.run_id).await.unwrap();
        assert_eq!(run.state, RunState::Processing, "{case}");
        let stored = tributary::store::integrations::get(&pool, integration.id)
            .await
            .unwrap();
        assert_eq!(stored.settings, json!({ "v": 1 }), "{case}");
        assert!(
            !event_types(&pool, integration.id)
                .await
                .contains(&"run.processed".to_owned()),
            "{case}"
        );
    }
}

fn two_streams(answer: fn(&str) -> Result<StreamOutcome, IntegrationError>) -> ScriptedService {
    ScriptedService::new(PLATFORM, roots(&["a", "b"]), move |call| async move {
        answer(&call.stream.identifier)
    })
    .config(ServiceConfig {
        stream_concurrency: 4,
        ..fast_config()
    })
    .postprocess(|ctx| {
        let mut s = ctx.settings().clone();
        s["cursor"] = json!("c-1");
        ctx.update_settings(s);
        Ok(())
    })
}

/// Through the processor: `postprocess` runs once, before the last stream's commit, which ends
/// the run with the settings it set.
#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_check_ends_in_its_last_streams_commit(pool: PgPool) {
    let service = two_streams(|id| Ok(StreamOutcome::new().activity(activity(id, "ada"))));
    let log = service.log();
    let h = harness(pool.clone(), service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    assert_eq!(h.process(run.id).await, RunOutcome::Processed);
    assert_eq!(log.count("postprocess"), 1);
    let run = h.run(run.id).await;
    assert_eq!((run.state, run.streams_processed), (RunState::Processed, 2));
    let last_stream = h
        .streams(run.id)
        .await
        .iter()
        .filter_map(|s| s.finished_at)
        .max();
    assert_eq!(
        run.finished_at, last_stream,
        "ended by the last stream's statement"
    );
    assert_eq!(
        h.integration(integration.id).await.settings,
        json!({ "cursor": "c-1" })
    );
}

/// A stream that fails, or asks to sleep: no `postprocess` before the run's end, which is as
/// before (failed; deferred, then processed with one `postprocess`).
#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_failed_or_sleeping_stream_keeps_postprocess_for_the_runs_end(pool: PgPool) {
    let failing = two_streams(|id| match id {
        "a" => Err(IntegrationError::fatal("the channel was deleted")),
        _ => Ok(StreamOutcome::new()),
    });
    let log = failing.log();
    let h = harness(pool.clone(), failing);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    assert!(matches!(h.process(run.id).await, RunOutcome::Failed { .. }));
    assert_eq!(log.count("postprocess"), 0);

    let sleeping = two_streams(|id| match id {
        "a" => Ok(StreamOutcome::new().sleep(Duration::from_millis(1))),
        _ => Ok(StreamOutcome::new()),
    });
    let log = sleeping.log();
    let h = harness(pool.clone(), sleeping);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    assert!(matches!(
        h.process(run.id).await,
        RunOutcome::Delayed { .. }
    ));
    assert_eq!(log.count("postprocess"), 0, "the run sleeps first");
    let (_, ended) = h.run_to_end(run.id).await;
    assert_eq!(ended.state, RunState::Processed);
    assert_eq!(log.count("postprocess"), 1);
}

/// `postprocess` failing in the last stream's task: the stream is committed, and the run retries
/// `postprocess` as it would have at its end (called once per attempt).
#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_postprocess_failing_before_the_last_commit_retries_the_run(pool: PgPool) {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = calls.clone();
    let service = ScriptedService::new(PLATFORM, roots(&["a", "b"]), |_| async {
        Ok(StreamOutcome::new())
    })
    .config(ServiceConfig {
        stream_concurrency: 4,
        ..fast_config()
    })
    .postprocess(
        move |_| match seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => Err(IntegrationError::retryable("cursor endpoint unavailable")),
            _ => Ok(()),
        },
    );
    let h = harness(pool.clone(), service);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let RunOutcome::Delayed { reason, .. } = h.process(run.id).await else {
        panic!("expected a retry")
    };
    assert_eq!(reason, "retrying postprocess");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    let streams = h.streams(run.id).await;
    assert!(
        streams
            .iter()
            .all(|s| s.state == tributary::store::streams::StreamState::Processed),
        "the streams' commits stand: {streams:?}"
    );
    let (_, ended) = h.run_to_end(run.id).await;
    assert_eq!(ended.state, RunState::Processed);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}
