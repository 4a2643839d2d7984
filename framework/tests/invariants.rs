//! DESIGN §4: crashes lose nothing and duplicate nothing, leases fence stale workers, duplicates
//! are no-ops, shutdown releases runs.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tributary::store::runs::{self, CreatedRun, RunState};
use tributary::store::streams::StreamState;
use tributary::store::{Lease, StoreError, run_end};
use tributary::testkit::{ScriptedService, eventually};
use tributary::{ErrorKind, RunOutcome, ServiceConfig, StreamOutcome};

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_crash_between_fetching_a_page_and_committing_it_repeats_only_the_in_flight_work(
    pool: PgPool,
) {
    let fetched = Signal::new();
    let signal = fetched.clone();
    let service = ScriptedService::new(PLATFORM, roots(&["s0", "s1", "s2"]), move |call| {
        let signal = signal.clone();
        async move {
            let id = call.stream.identifier.clone();
            if id == "s1" && call.call == 1 {
                // the page is fetched... and the worker dies before committing it
                signal.fire();
                std::future::pending::<()>().await;
            }
            Ok(StreamOutcome::new()
                .activity(activity(&format!("{id}-x"), "ada"))
                .activity(activity(&format!("{id}-y"), "bob")))
        }
    })
    .config(ServiceConfig {
        stream_concurrency: 1,
        ..fast_config()
    });
    let log = service.log();
    let h = harness(pool, service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();

    let dying = h.clone();
    let worker = tokio::spawn(async move { dying.process(run.id).await });
    fetched.wait().await;
    worker.abort();
    assert!(worker.await.unwrap_err().is_cancelled());
    let crashed = h.run(run.id).await;
    assert_eq!(
        crashed.state,
        RunState::Processing,
        "the dead worker still holds its lease"
    );
    assert_eq!(
        source_ids(&h.activities(integration.id).await),
        ["act-s0-x", "act-s0-y"]
    );

    h.expire_lease(run.id).await;
    let outcome = h
        .processor("rescuer")
        .process_run(run.id, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome, RunOutcome::Processed);
    assert_eq!(
        source_ids(&h.activities(integration.id).await),
        [
            "act-s0-x", "act-s0-y", "act-s1-x", "act-s1-y", "act-s2-x", "act-s2-y"
        ]
    );
    assert_eq!(
        (
            log.count("stream:s0"),
            log.count("stream:s1"),
            log.count("stream:s2")
        ),
        (1, 2, 1)
    );
    let s1 = h
        .streams(run.id)
        .await
        .into_iter()
        .find(|s| s.identifier == "s1")
        .unwrap();
    assert_eq!(
        (s1.state, s1.retries),
        (StreamState::Processed, 1),
        "the crash counted as one failure"
    );
    let run = h.run(run.id).await;
    assert_eq!((run.attempt, run.activities_created), (2, 6));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_stale_worker_whose_lease_was_taken_over_cannot_write(pool: PgPool) {
    let started = Signal::new();
    let gate = Signal::new();
    let (s, g) = (started.clone(), gate.clone());
    let service = ScriptedService::new(PLATFORM, roots(&["s"]), move |call| {
        let (s, g) = (s.clone(), g.clone());
        async move {
            if call.call == 1 {
                s.fire();
                g.wait().await;
                return Ok(StreamOutcome::new().activity(activity("stale", "ada")));
            }
            Ok(StreamOutcome::new().activity(activity("fresh", "ada")))
        }
    })
    .config(fast_config());
    let mut h = harness(pool, service);
    // the stale worker never heartbeats in time to notice: only the fence stops it
    h.config.heartbeat_interval = Duration::from_secs(3600);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();

    let stale = h.processor("stale");
    let stale_run =
        tokio::spawn(async move { stale.process_run(run.id, &CancellationToken::new()).await });
    started.wait().await;
    h.expire_lease(run.id).await;
    let fresh = h
        .processor("fresh")
        .process_run(run.id, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(fresh, RunOutcome::Processed);

    gate.fire();
    assert_eq!(stale_run.await.unwrap().unwrap(), RunOutcome::LeaseLost);
    assert_eq!(
        source_ids(&h.activities(integration.id).await),
        ["act-fresh"]
    );
    let run = h.run(run.id).await;
    assert_eq!((run.state, run.attempt), (RunState::Processed, 2));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn every_write_names_the_attempt_of_its_lease(pool: PgPool) {
    let h = harness(
        pool.clone(),
        ScriptedService::new(PLATFORM, roots(&["s"]), |_| async {
            Ok(StreamOutcome::new())
        }),
    );
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let first = runs::claim(&pool, run.id, "w1", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    runs::save_preprocessed(&pool, &first.lease(), &json!(null), None, &roots(&["s"]), 0)
        .await
        .unwrap();
    let claimed = tributary::store::streams::claim_due(&pool, &first.lease(), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    h.expire_lease(run.id).await;
    let second = runs::claim(&pool, run.id, "w2", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let stale: Lease = first.lease();

    let lost = |r: Result<(), StoreError>| {
        assert!(
            matches!(r, Err(StoreError::LeaseLost { attempt: 1, .. })),
            "{r:?}"
        )
    };
    lost(runs::heartbeat(&pool, &stale, Duration::from_secs(30)).await);
    // the new attempt puts the abandoned stream back; the stale lease cannot claim it
    tributary::store::streams::rescue_abandoned(&pool, &second.lease(), 5, &abandoned())
        .await
        .unwrap();
    assert!(
        tributary::store::streams::claim_due(&pool, &stale, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(h.streams(run.id).await[0].state, StreamState::Pending);
    lost(runs::defer(&pool, &stale, chrono::Utc::now(), "x", None).await);
    lost(
        run_end::finish(&pool, &stale, run_end::RunEnd::Processed { settings: None })
            .await
            .map(|_| ()),
    );
    let scope = tributary::store::records::RecordScope {
        tenant_id: uuid::Uuid::nil(),
        platform: PLATFORM.into(),
        integration_id: run.integration_id,
    };
    lost(
        tributary::store::outcomes::complete(
            &pool,
            &stale,
            &tributary::store::outcomes::Completion {
                // pending again: refused by the stream's own guard too
                stream_id: claimed[0].id,
                scope: &scope,
                members: vec![],
                activities: vec![activity("never", "ada")],
                new_streams: vec![],
                last_record: None,
                last_record_timestamp: None,
                error: None,
                // the summarizing statement is guarded the same way
                summarize: true,
                finish: None,
            },
        )
        .await
        .map(|_| ()),
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM activities")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0, "the refused transaction wrote nothing");
    runs::heartbeat(&pool, &second.lease(), Duration::from_secs(30))
        .await
        .unwrap();
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn two_processors_given_the_same_run_at_once_produce_one_set_of_results(pool: PgPool) {
    let ids: Vec<String> = (0..20).map(|i| format!("s{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let service = ScriptedService::new(PLATFORM, roots(&refs), |call| async move {
        let id = call.stream.identifier.clone();
        Ok(StreamOutcome::new().activity(activity(&id, &id)))
    })
    .config(fast_config());
    let log = service.log();
    let h = harness(pool, service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();

    let (a, b) = (h.processor("a"), h.processor("b"));
    let token = CancellationToken::new();
    let (ra, rb) = tokio::join!(a.process_run(run.id, &token), b.process_run(run.id, &token));
    let mut outcomes = [ra.unwrap(), rb.unwrap()];
    outcomes.sort_by_key(|o| matches!(o, RunOutcome::Processed));
    assert!(
        matches!(outcomes[0], RunOutcome::NotClaimable { .. }),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[1], RunOutcome::Processed);
    assert_eq!(h.activities(integration.id).await.len(), 20);
    assert!(ids.iter().all(|id| log.count(&format!("stream:{id}")) == 1));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn shutdown_lets_in_flight_streams_commit_and_releases_the_run(pool: PgPool) {
    let started = Signal::new();
    let gate = Signal::new();
    let (s, g) = (started.clone(), gate.clone());
    let service = ScriptedService::new(PLATFORM, roots(&["slow", "later"]), move |call| {
        let (s, g) = (s.clone(), g.clone());
        async move {
            if call.stream.identifier == "slow" {
                s.fire();
                g.wait().await;
            }
            Ok(StreamOutcome::new().activity(activity(&call.stream.identifier, "ada")))
        }
    })
    .config(ServiceConfig {
        stream_concurrency: 1,
        ..fast_config()
    });
    let h = harness(pool, service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();

    let shutdown = CancellationToken::new();
    let processor = h.processor("leaving");
    let token = shutdown.clone();
    let task = tokio::spawn(async move { processor.process_run(run.id, &token).await });
    started.wait().await;
    shutdown.cancel();
    gate.fire();
    assert_eq!(task.await.unwrap().unwrap(), RunOutcome::Released);

    let released = h.run(run.id).await;
    assert_eq!(released.state, RunState::Delayed);
    assert!(
        released.delayed_until.unwrap() <= chrono::Utc::now(),
        "due at once"
    );
    let streams = h.streams(run.id).await;
    assert_eq!(
        (streams[0].state, streams[1].state),
        (StreamState::Processed, StreamState::Pending)
    );
    assert_eq!(
        source_ids(&h.activities(integration.id).await),
        ["act-slow"]
    );
    assert_eq!(
        h.process(run.id).await,
        RunOutcome::Processed,
        "another worker resumes at once"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_stream_still_running_when_the_grace_ends_goes_back_unharmed(pool: PgPool) {
    let started = Signal::new();
    let s = started.clone();
    let service = ScriptedService::new(PLATFORM, roots(&["stuck"]), move |call| {
        let s = s.clone();
        async move {
            if call.call == 1 {
                s.fire();
                std::future::pending::<()>().await;
            }
            Ok(StreamOutcome::new())
        }
    })
    .config(fast_config());
    let mut h = harness(pool, service);
    h.config.shutdown_grace = Duration::from_millis(100);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let shutdown = CancellationToken::new();
    let processor = h.processor("leaving");
    let token = shutdown.clone();
    let task = tokio::spawn(async move { processor.process_run(run.id, &token).await });
    started.wait().await;
    shutdown.cancel();
    assert_eq!(task.await.unwrap().unwrap(), RunOutcome::Released);
    let stream = &h.streams(run.id).await[0];
    assert_eq!(
        (stream.state, stream.retries, stream.error.clone()),
        (StreamState::Pending, 0, None)
    );
    assert_eq!(h.process(run.id).await, RunOutcome::Processed);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn heartbeats_extend_the_lease_of_a_long_stream(pool: PgPool) {
    let started = Signal::new();
    let gate = Signal::new();
    let (s, g) = (started.clone(), gate.clone());
    let service = ScriptedService::new(PLATFORM, roots(&["long"]), move |_| {
        let (s, g) = (s.clone(), g.clone());
        async move {
            s.fire();
            g.wait().await;
            Ok(StreamOutcome::new())
        }
    })
    .config(fast_config());
    let mut h = harness(pool, service);
    h.config.heartbeat_interval = Duration::from_millis(50);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let worker = h.clone();
    let task = tokio::spawn(async move { worker.process(run.id).await });
    started.wait().await;
    let first = h.run(run.id).await.lease_expires_at.unwrap();
    eventually(Duration::from_secs(10), "a heartbeat", || async {
        (h.run(run.id).await.lease_expires_at.unwrap() > first).then_some(())
    })
    .await;
    gate.fire();
    assert_eq!(task.await.unwrap(), RunOutcome::Processed);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn cancelling_a_run_in_flight_stops_its_worker_through_the_heartbeat(pool: PgPool) {
    let started = Signal::new();
    let s = started.clone();
    let service = ScriptedService::new(PLATFORM, roots(&["long"]), move |_| {
        let s = s.clone();
        async move {
            s.fire();
            std::future::pending::<()>().await;
            Ok(StreamOutcome::new())
        }
    })
    .config(fast_config());
    let mut h = harness(pool.clone(), service);
    h.config.heartbeat_interval = Duration::from_millis(50);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let worker = h.clone();
    let task = tokio::spawn(async move { worker.process(run.id).await });
    started.wait().await;
    tributary::admin::cancel_run(&pool, run.id).await.unwrap();
    assert_eq!(task.await.unwrap(), RunOutcome::LeaseLost);
    let run = h.run(run.id).await;
    assert_eq!(run.state, RunState::Cancelled);
    assert_eq!(h.streams(run.id).await[0].state, StreamState::Pending);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_trigger_delivered_twice_makes_one_run_and_one_integration_has_one_active_run(
    pool: PgPool,
) {
    let h = harness(
        pool.clone(),
        ScriptedService::new(PLATFORM, roots(&["s"]), |_| async {
            Ok(StreamOutcome::new())
        }),
    );
    let (integration, onboarding) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let CreatedRun::AlreadyActive(active) = runs::create(&pool, integration.id, false, None)
        .await
        .unwrap()
    else {
        panic!("a second active run was created")
    };
    assert_eq!(active.id, onboarding.id);
    h.process(onboarding.id).await;

    let CreatedRun::Created(first) =
        runs::create(&pool, integration.id, false, Some("tick:2026-11-22T10:05Z"))
            .await
            .unwrap()
    else {
        panic!("expected a new run")
    };
    let CreatedRun::Duplicate(again) =
        runs::create(&pool, integration.id, false, Some("tick:2026-11-22T10:05Z"))
            .await
            .unwrap()
    else {
        panic!("expected the duplicate to find the run")
    };
    assert_eq!(again.id, first.id);
    h.process(first.id).await;
    assert!(
        matches!(
            runs::create(&pool, integration.id, false, Some("tick:2026-11-22T10:05Z")).await.unwrap(),
            CreatedRun::Duplicate(run) if run.id == first.id && run.state == RunState::Processed
        ),
        "even after the run ended, the same trigger makes no new run"
    );
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM integration_runs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(total, 2);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn streams_abandoned_too_often_end_in_error(pool: PgPool) {
    let h = harness(
        pool.clone(),
        ScriptedService::new(PLATFORM, roots(&["poison"]), |_| async {
            Ok(StreamOutcome::new())
        })
        .config(fast_config()),
    );
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    // three workers in a row die while processing the stream (max_retries = 2)
    for attempt in 1..=3 {
        let claimed = runs::claim(&pool, run.id, "doomed", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        if attempt == 1 {
            runs::save_preprocessed(
                &pool,
                &claimed.lease(),
                &json!(null),
                None,
                &roots(&["poison"]),
                0,
            )
            .await
            .unwrap();
        } else {
            tributary::store::streams::rescue_abandoned(&pool, &claimed.lease(), 2, &abandoned())
                .await
                .unwrap();
        }
        tributary::store::streams::claim_due(&pool, &claimed.lease(), 1)
            .await
            .unwrap();
        h.expire_lease(run.id).await;
    }
    let RunOutcome::Failed { message } = h.process(run.id).await else {
        panic!("expected failure")
    };
    assert!(message.contains("`poison`"), "{message}");
    let stream = &h.streams(run.id).await[0];
    assert_eq!((stream.state, stream.retries), (StreamState::Error, 3));
    assert_eq!(stream.error_record().unwrap().kind, ErrorKind::Abandoned);
}

fn abandoned() -> tributary::ErrorRecord {
    tributary::ErrorRecord {
        kind: ErrorKind::Abandoned,
        hook: "process_stream".into(),
        message: "abandoned".into(),
        chain: vec!["abandoned".into()],
        failures: 1,
        at: chrono::Utc::now(),
    }
}
