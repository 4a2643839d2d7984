//! The round trips a check saves: the run claimed with its integration and checkpoints, the roots
//! claimed with the preprocessing's commit, the last stream's commit saying how the run stands.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use chrono::{Duration as ChronoDuration, SubsecRound, Utc};
use common::*;
use serde_json::json;
use sqlx::PgPool;
use tributary::store::outcomes::{self, Completion, RunSummary};
use tributary::store::records::RecordScope;
use tributary::store::streams::{self, PendingWait, StreamState};
use tributary::store::{Lease, claims, run_end, runs};
use tributary::testkit::ScriptedService;
use tributary::{IntegrationError, ServiceConfig, StreamOutcome};

fn service() -> ScriptedService {
    ScriptedService::new(PLATFORM, roots(&["a"]), |_| async move {
        Ok(StreamOutcome::new())
    })
}

const LEASE: Duration = Duration::from_secs(30);

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_claim_reads_the_integration_and_its_checkpoints_with_the_run(pool: PgPool) {
    let h = harness(pool.clone(), service());
    let (integration, run) = h
        .connect(PLATFORM, json!({ "x": 1 }), json!({ "token": "t0ken" }))
        .await
        .unwrap();
    let read_from = Utc::now().trunc_subsecs(3) - ChronoDuration::hours(2);
    sqlx::query(
        "INSERT INTO source_checkpoints (integration_id, source, read_from, run_id)
         VALUES ($1, 'issues', $2, $3)",
    )
    .bind(integration.id)
    .bind(read_from)
    .bind(run.id)
    .execute(&pool)
    .await
    .unwrap();

    let claimed = claims::claim(&pool, run.id, "w1", LEASE)
        .await
        .unwrap()
        .expect("a pending run is claimable");
    assert_eq!(
        (claimed.run.attempt, claimed.run.lease_owner.as_deref()),
        (1, Some("w1"))
    );
    let read = &claimed.integration;
    assert_eq!(
        (read.id, read.platform.as_str(), &read.settings),
        (integration.id, PLATFORM, &json!({ "x": 1 }))
    );
    assert_eq!(
        read.credentials
            .secret("token")
            .map(|s| s.expose().to_owned()),
        Some("t0ken".to_owned()),
        "credentials opened with the process's key"
    );
    let checkpoints = &claimed.checkpoints;
    assert_eq!(checkpoints.get("issues"), Some(&read_from));
    assert_eq!(checkpoints.len(), 1);

    assert!(
        claims::claim(&pool, run.id, "w2", LEASE)
            .await
            .unwrap()
            .is_none(),
        "a run leased to another worker is not claimable"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_preprocessing_commit_claims_the_first_roots(pool: PgPool) {
    let h = harness(pool.clone(), service());
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let claimed = claims::claim(&pool, run.id, "w", LEASE)
        .await
        .unwrap()
        .unwrap();
    let lease = claimed.run.lease();

    let (inserted, first) =
        runs::save_preprocessed(&pool, &lease, &json!({}), None, &roots(&["a", "b", "c"]), 2)
            .await
            .unwrap();
    assert_eq!(inserted, 3);
    assert_eq!(
        first
            .iter()
            .map(|s| (s.identifier.as_str(), s.state, s.claimed_attempt))
            .collect::<Vec<_>>(),
        [
            ("a", StreamState::Processing, Some(lease.attempt)),
            ("b", StreamState::Processing, Some(lease.attempt))
        ],
        "the first two roots, in order, claimed for this attempt"
    );
    let stored = h.streams(run.id).await;
    assert_eq!(
        stored.iter().map(|s| s.state).collect::<Vec<_>>(),
        [
            StreamState::Processing,
            StreamState::Processing,
            StreamState::Pending
        ]
    );

    // a stale attempt claims nothing, and saves nothing
    let stale = Lease {
        attempt: lease.attempt - 1,
        ..lease.clone()
    };
    let refused = runs::save_preprocessed(&pool, &stale, &json!({}), None, &roots(&["d"]), 2).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.is_lease_lost()),
        "{refused:?}"
    );
    assert_eq!(h.streams(run.id).await.len(), 3);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_preprocessing_commit_writes_settings_and_roots_once_or_nothing(pool: PgPool) {
    let h = harness(pool.clone(), service());
    let (integration, run) = h
        .connect(PLATFORM, json!({ "v": 1 }), json!({}))
        .await
        .unwrap();
    let lease = claimed_lease(&pool, run.id).await;
    let settings_now = || async {
        sqlx::query_scalar::<_, serde_json::Value>(
            "SELECT settings FROM integrations WHERE id = $1",
        )
        .bind(integration.id)
        .fetch_one(&pool)
        .await
        .unwrap()
    };

    // a stale attempt writes neither the settings nor the pipeline data nor a root
    let stale = Lease {
        attempt: lease.attempt + 1,
        ..lease.clone()
    };
    let refused = runs::save_preprocessed(
        &pool,
        &stale,
        &json!({ "p": 0 }),
        Some(&json!({ "v": 0 })),
        &roots(&["x"]),
        1,
    )
    .await;
    assert!(refused.is_err_and(|e| e.is_lease_lost()));
    assert_eq!(settings_now().await, json!({ "v": 1 }));
    assert!(h.streams(run.id).await.is_empty());

    // a root given twice is stored once, and the claim counts it once
    let (inserted, first) = runs::save_preprocessed(
        &pool,
        &lease,
        &json!({ "p": "a\u{0}b" }),
        Some(&json!({ "v": 2, "note": "x\u{0}y" })),
        &roots(&["a", "a", "b", "c"]),
        2,
    )
    .await
    .unwrap();
    assert_eq!(inserted, 3);
    assert_eq!(
        first
            .iter()
            .map(|s| s.identifier.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(
        settings_now().await,
        json!({ "v": 2, "note": "xy" }),
        "NUL stripped"
    );
    let run_now = runs::get(&pool, run.id).await.unwrap();
    assert!(run_now.preprocessed);
    assert_eq!(run_now.pipeline_data, json!({ "p": "ab" }));
    let stored = h.streams(run.id).await;
    assert_eq!(
        stored
            .iter()
            .map(|s| (
                s.identifier.as_str(),
                s.state,
                s.claimed_attempt,
                s.started_at.is_some()
            ))
            .collect::<Vec<_>>(),
        [
            ("a", StreamState::Processing, Some(lease.attempt), true),
            ("b", StreamState::Processing, Some(lease.attempt), true),
            ("c", StreamState::Pending, None, false),
        ]
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_preprocessing_with_no_roots_or_no_claim_is_saved_too(pool: PgPool) {
    let h = harness(pool.clone(), service());
    for (names, claim) in [(&[][..], 2), (&["a", "b"][..], 0)] {
        let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
        let lease = claimed_lease(&pool, run.id).await;
        let (inserted, first) =
            runs::save_preprocessed(&pool, &lease, &json!({}), None, &roots(names), claim)
                .await
                .unwrap();
        assert_eq!((inserted, first.len()), (names.len() as u64, 0));
        assert!(runs::get(&pool, run.id).await.unwrap().preprocessed);
        assert!(
            h.streams(run.id)
                .await
                .iter()
                .all(|s| s.state == StreamState::Pending)
        );
    }
}

/// The lease of `run` claimed by worker "w".
async fn claimed_lease(pool: &PgPool, run: uuid::Uuid) -> Lease {
    claims::claim(pool, run, "w", LEASE)
        .await
        .unwrap()
        .expect("the run is claimable")
        .run
        .lease()
}

/// Where the records of `integration`'s streams go.
fn scope_of(integration: &tributary::store::integrations::Integration) -> RecordScope {
    RecordScope {
        tenant_id: integration.tenant_id,
        platform: PLATFORM.to_owned(),
        integration_id: integration.id,
    }
}

fn completion<'a>(
    stream_id: uuid::Uuid,
    scope: &'a RecordScope,
    summarize: bool,
) -> Completion<'a> {
    Completion {
        stream_id,
        scope,
        members: Vec::new(),
        activities: Vec::new(),
        new_streams: Vec::new(),
        last_record: None,
        last_record_timestamp: None,
        error: None,
        summarize,
        finish: None,
    }
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_last_commit_says_how_the_runs_streams_stand(pool: PgPool) {
    let h = harness(pool.clone(), service());
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let claimed = claims::claim(&pool, run.id, "w", LEASE)
        .await
        .unwrap()
        .unwrap();
    let lease = claimed.run.lease();
    let (_, first) = runs::save_preprocessed(
        &pool,
        &lease,
        &json!({}),
        None,
        &roots(&["a", "b", "c", "d"]),
        4,
    )
    .await
    .unwrap();
    let scope = scope_of(&integration);
    // a: committed while b, c and d are in flight: its summary cannot be the last word
    let done = outcomes::complete(&pool, &lease, &completion(first[0].id, &scope, true))
        .await
        .unwrap();
    let early = done.summary.expect("asked for");
    assert_eq!((early.open, early.processing), (3, 3));
    assert!(!early.is_conclusive(), "other commits may follow");
    assert_eq!(
        outcomes::complete(&pool, &lease, &completion(first[0].id, &scope, false))
            .await
            .map(|_| ())
            .map_err(|e| e.is_lease_lost()),
        Err(true),
        "a stream commits once"
    );
    // b: failed for good; c: failed, retried in an hour
    let failure = fatal("process_stream", "gone");
    streams::fail(&pool, &lease, first[1].id, &failure, None)
        .await
        .unwrap();
    let retry_at = Utc::now().trunc_subsecs(3) + ChronoDuration::hours(1);
    streams::fail(&pool, &lease, first[2].id, &failure, Some(retry_at))
        .await
        .unwrap();

    // d, the last in flight: one errored, one waiting for its backoff
    let done = outcomes::complete(&pool, &lease, &completion(first[3].id, &scope, true))
        .await
        .unwrap();
    let summary = done.summary.expect("asked for");
    assert_eq!(
        summary,
        RunSummary {
            open: 1,
            processing: 0,
            errored: 1,
            due_now: false,
            next_due: Some(retry_at),
        }
    );
    assert_eq!(summary.pending_wait(), PendingWait::DueAt(retry_at));
    assert!(summary.is_conclusive(), "nothing else in flight");
    assert_eq!(
        summary.pending_wait(),
        outcomes::summary(&pool, run.id)
            .await
            .unwrap()
            .pending_wait(),
        "the summary agrees with asking afterwards"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_summary_counts_the_committed_stream_and_its_children(pool: PgPool) {
    let h = harness(pool.clone(), service());
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let lease = claimed_lease(&pool, run.id).await;
    let (_, first) = runs::save_preprocessed(&pool, &lease, &json!({}), None, &roots(&["a"]), 4)
        .await
        .unwrap();
    let scope = scope_of(&integration);
    let stream = first[0].to_stream();
    let mut with_child = completion(first[0].id, &scope, true);
    with_child.new_streams = vec![streams::StreamInsert::child(
        &stream,
        &tributary::NewStream::new("a/child", json!({})),
    )];
    let summary = outcomes::complete(&pool, &lease, &with_child)
        .await
        .unwrap()
        .summary
        .unwrap();
    assert_eq!(
        (summary.open, summary.errored, summary.pending_wait()),
        (1, 0, PendingWait::DueNow),
        "the child inserted by the same commit is due"
    );

    // the child ends in error by its pagination: counted as errored, nothing open
    let child = streams::claim_due(&pool, &lease, 4).await.unwrap();
    let broken = fatal("processor", "pagination does not advance");
    let mut last = completion(child[0].id, &scope, true);
    last.error = Some(&broken);
    let summary = outcomes::complete(&pool, &lease, &last)
        .await
        .unwrap()
        .summary
        .unwrap();
    assert_eq!(
        (summary.open, summary.errored, summary.pending_wait()),
        (0, 1, PendingWait::None)
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn runs_of_one_stream_end_as_before_whatever_their_stream_did(pool: PgPool) {
    // processed, failed for good, retried then processed: the run's end is the same as when the
    // processor asked the database after the last stream
    let service = ScriptedService::new(
        PLATFORM,
        roots(&["ok", "gone", "flaky"]),
        |call| async move {
            match (call.stream.identifier.as_str(), call.call) {
                ("gone", _) => Err(IntegrationError::fatal("the channel was deleted")),
                ("flaky", 1) => Err(IntegrationError::retryable("503 Service Unavailable")),
                (id, _) => Ok(StreamOutcome::new().activity(activity(id, "ada"))),
            }
        },
    )
    .config(ServiceConfig {
        stream_concurrency: 1,
        ..fast_config()
    });
    let h = harness(pool, service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let (_, run) = h.run_to_end(run.id).await;
    assert_eq!(run.state, runs::RunState::Error);
    let error = run.error_record().unwrap();
    assert!(
        error
            .message
            .starts_with("1 stream(s) ended in error; first: `gone`"),
        "{error:?}"
    );
    assert_eq!(
        (run.streams_processed, run.streams_errored),
        (2, 1),
        "{run:?}"
    );
    assert_eq!(
        source_ids(&h.activities(integration.id).await),
        ["act-flaky", "act-ok"]
    );
}

/// A claimed run of `h` with streams "a" (source alpha, processed) and "b" (source beta, failed
/// for good), ready to end.
async fn run_with_one_stream_processed_one_failed(
    h: &tributary::testkit::Harness,
    pool: &PgPool,
) -> (
    tributary::store::integrations::Integration,
    runs::Run,
    Lease,
) {
    let (integration, run) = h
        .connect(PLATFORM, json!({ "v": 1 }), json!({}))
        .await
        .unwrap();
    let claimed = claims::claim(pool, run.id, "w", LEASE)
        .await
        .unwrap()
        .unwrap();
    let lease = claimed.run.lease();
    let streams = [
        tributary::NewStream::new("a", json!({})).source("alpha"),
        tributary::NewStream::new("b", json!({})).source("beta"),
    ];
    let (_, first) = runs::save_preprocessed(pool, &lease, &json!({}), None, &streams, 2)
        .await
        .unwrap();
    let scope = scope_of(&integration);
    outcomes::complete(pool, &lease, &completion(first[0].id, &scope, false))
        .await
        .unwrap();
    let failure = fatal("process_stream", "gone");
    streams::fail(pool, &lease, first[1].id, &failure, None)
        .await
        .unwrap();
    (integration, claimed.run, lease)
}

/// The event the run's end wrote: its type and data.
async fn run_event(pool: &PgPool, run_id: uuid::Uuid) -> (String, serde_json::Value) {
    sqlx::query_as("SELECT event_type, data FROM events WHERE data->>'run_id' = $1::text")
        .bind(run_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_end_of_a_run_writes_its_figures_checkpoints_event_and_integration_at_once(
    pool: PgPool,
) {
    let h = harness(pool.clone(), service());
    let (integration, claimed, lease) = run_with_one_stream_processed_one_failed(&h, &pool).await;
    let settings = json!({ "v": 2, "note": "a\u{0}b" });
    let run = run_end::finish(
        &pool,
        &lease,
        run_end::RunEnd::Processed {
            settings: Some(&settings),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (
            run.state,
            run.streams_processed,
            run.streams_errored,
            run.lease_owner.as_deref()
        ),
        (runs::RunState::Processed, 1, 1, None)
    );
    let started = claimed.started_at.expect("a claimed run has started");
    assert!(run.finished_at.is_some_and(|f| f >= started));

    // only the source whose streams all ended processed moves forward
    let checkpoints = tributary::store::checkpoints::load(&pool, integration.id)
        .await
        .unwrap();
    assert_eq!(checkpoints.get("alpha"), Some(&started));
    assert_eq!(checkpoints.get("beta"), None);

    let stored = h.integration(integration.id).await;
    assert_eq!(stored.status.as_str(), "done");
    assert_eq!(stored.last_processed_at, Some(started));
    assert_eq!(
        stored.settings,
        json!({ "v": 2, "note": "ab" }),
        "postprocess's settings, stored without NUL"
    );

    let (event_type, data) = run_event(&pool, run.id).await;
    assert_eq!(event_type, "run.processed");
    assert_eq!(
        (
            &data["state"],
            &data["streams_processed"],
            &data["streams_errored"],
            &data["error"]
        ),
        (&json!("processed"), &json!(1), &json!(1), &json!(null))
    );
    let at = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(data[field].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    assert_eq!(at("started_at"), started);
    assert_eq!(Some(at("finished_at")), run.finished_at);

    let again = run_end::finish(&pool, &lease, run_end::RunEnd::Processed { settings: None }).await;
    assert!(again.is_err_and(|e| e.is_lease_lost()), "a run ends once");
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_failed_end_keeps_the_settings_and_last_processed_and_a_disconnection(pool: PgPool) {
    let h = harness(pool.clone(), service());
    let (integration, _, lease) = run_with_one_stream_processed_one_failed(&h, &pool).await;
    sqlx::query("UPDATE integrations SET status = 'disconnected' WHERE id = $1")
        .bind(integration.id)
        .execute(&pool)
        .await
        .unwrap();
    let error = fatal("postprocess", "postprocess failed");
    let run = run_end::finish(&pool, &lease, run_end::RunEnd::Failed { error: &error })
        .await
        .unwrap();
    assert_eq!(run.state, runs::RunState::Error);
    let stored = h.integration(integration.id).await;
    assert_eq!(
        (
            stored.status.as_str(),
            stored.last_processed_at,
            &stored.settings
        ),
        ("disconnected", None, &json!({ "v": 1 }))
    );
    let (event_type, data) = run_event(&pool, run.id).await;
    assert_eq!(event_type, "run.failed");
    assert_eq!(data["error"]["message"], json!("postprocess failed"));
    assert_eq!(data["state"], json!("error"));
}
