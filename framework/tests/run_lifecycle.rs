//! A run from onboarding to its end: hooks in order, every page and child processed, the run and
//! its integration updated; the run state machine's arrows.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use sqlx::PgPool;
use tributary::store::integrations::IntegrationStatus;
use tributary::store::runs::RunState;
use tributary::testkit::ScriptedService;
use tributary::{IntegrationError, NewStream, RunOutcome, StreamOutcome};

/// channel:a has two pages and a thread child; channel:b one page.
fn forum() -> ScriptedService {
    ScriptedService::new(
        PLATFORM,
        roots(&["channel:a", "channel:b"]),
        |call| async move {
            let s = &call.stream;
            Ok(match (s.identifier.as_str(), s.page_number) {
                ("channel:a", 1) => StreamOutcome::new()
                    .activity(activity("a1", "ada"))
                    .activity(activity("a2", "bob"))
                    .child(NewStream::new("thread:a1", json!({"thread": "a1"})))
                    .next_page(json!(2))
                    .last_record(json!("a2"), Some(at(2))),
                (_, 2) => StreamOutcome::new().activity(activity("a3", "ada")),
                ("channel:b", 1) => StreamOutcome::new().activity(activity("b1", "cy")),
                ("thread:a1", 1) => {
                    StreamOutcome::new().activity(activity("a1-r1", "bob").parent("act-a1"))
                }
                other => panic!("unexpected stream {other:?}"),
            })
        },
    )
    .config(fast_config())
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn onboarding_processes_every_stream_and_page_then_postprocesses(pool: PgPool) {
    let service = forum();
    let log = service.log();
    let h = harness(pool, service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    assert!(run.onboarding);
    assert_eq!(integration.status, IntegrationStatus::InProgress);

    assert_eq!(h.process(run.id).await, RunOutcome::Processed);

    let run = h.run(run.id).await;
    assert_eq!(run.state, RunState::Processed);
    assert_eq!((run.streams_processed, run.streams_errored), (4, 0));
    assert_eq!(run.activities_created, 5);
    assert_eq!(run.members_created, 3);
    assert!(run.finished_at.is_some() && run.lease_owner.is_none());
    let streams = h.streams(run.id).await;
    let page2 = streams.iter().find(|s| s.page_number == 2).unwrap();
    assert_eq!(page2.identifier, "channel:a#page=2");
    assert_eq!(
        page2.data,
        json!({"id": "channel:a"}),
        "a next page keeps its stream's context"
    );
    assert_eq!(page2.parent_id, None);
    let thread = streams
        .iter()
        .find(|s| s.identifier == "thread:a1")
        .unwrap();
    assert_eq!(thread.parent_id, Some(streams[0].id));
    assert_eq!(streams[0].last_record_timestamp, Some(at(2)));

    assert_eq!(
        source_ids(&h.activities(integration.id).await),
        ["act-a1", "act-a1-r1", "act-a2", "act-a3", "act-b1"]
    );
    let reply = h
        .activities(integration.id)
        .await
        .into_iter()
        .find(|a| a.source_id == "act-a1-r1")
        .unwrap();
    assert_eq!(reply.source_parent_id.as_deref(), Some("act-a1"));
    assert_eq!(h.members(PLATFORM).await.len(), 3);

    let integration = h.integration(integration.id).await;
    assert_eq!(integration.status, IntegrationStatus::Done);
    assert_eq!(integration.last_processed_at, run.started_at);

    let entries = log.entries();
    assert_eq!(&entries[..2], ["preprocess", "get_streams"]);
    assert_eq!(entries.last().map(String::as_str), Some("postprocess"));
    assert_eq!(entries.len(), 7);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn processing_the_same_pages_again_changes_nothing(pool: PgPool) {
    let h = harness(pool, forum());
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    h.process(run.id).await;
    let before = h.activities(integration.id).await;
    let members_before = h.members(PLATFORM).await;

    let check = h.check(integration.id).await.unwrap();
    assert!(!check.onboarding);
    assert_eq!(h.process(check.id).await, RunOutcome::Processed);
    let check = h.run(check.id).await;
    assert_eq!(
        (
            check.activities_created,
            check.activities_updated,
            check.members_created
        ),
        (0, 0, 0)
    );
    assert_eq!(
        h.activities(integration.id).await,
        before,
        "not even updated_at moves"
    );
    assert_eq!(h.members(PLATFORM).await, members_before);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_stream_in_error_ends_the_run_in_error_without_postprocess(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["ok", "broken"]), |call| async move {
        match call.stream.identifier.as_str() {
            "broken" => Err(IntegrationError::fatal(
                "the platform answered 404 for /things/broken",
            )),
            _ => Ok(StreamOutcome::new().activity(activity("1", "ada"))),
        }
    })
    .config(fast_config());
    let log = service.log();
    let h = harness(pool, service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();

    let RunOutcome::Failed { message } = h.process(run.id).await else {
        panic!("expected failure")
    };
    assert_eq!(
        message,
        "1 stream(s) ended in error; first: `broken`: the platform answered 404 for /things/broken"
    );
    let run = h.run(run.id).await;
    assert_eq!(run.state, RunState::Error);
    assert_eq!((run.streams_processed, run.streams_errored), (1, 1));
    assert_eq!(log.count("postprocess"), 0);
    let integration = h.integration(integration.id).await;
    assert_eq!(integration.status, IntegrationStatus::Error);
    assert_eq!(
        integration.last_processed_at, None,
        "a failed run is not a checkpoint"
    );
    assert_eq!(
        h.activities(integration.id).await.len(),
        1,
        "what succeeded is kept"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn pipeline_data_from_preprocess_survives_a_resume_on_another_worker(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["s"]), |call| async move {
        let scope: String = call.ctx.pipeline_data_as::<serde_json::Value>()?["scope"]
            .as_str()
            .unwrap()
            .to_owned();
        if call.call == 1 {
            return Err(IntegrationError::rate_limited(
                chrono::Utc::now() + chrono::Duration::hours(1),
                "429",
            ));
        }
        Ok(StreamOutcome::new().activity(activity(&scope, "ada")))
    })
    .config(fast_config())
    .preprocess(|ctx| ctx.set_pipeline_data(&json!({"scope": "from-preprocess"})));
    let log = service.log();
    let h = harness(pool, service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();

    assert!(matches!(
        h.process(run.id).await,
        RunOutcome::Delayed { .. }
    ));
    assert_eq!(
        h.run(run.id).await.pipeline_data,
        json!({"scope": "from-preprocess"})
    );
    h.make_due(run.id).await;
    let other = h.processor("worker-b");
    let outcome = other
        .process_run(run.id, &Default::default())
        .await
        .unwrap();
    assert_eq!(outcome, RunOutcome::Processed);
    assert_eq!(log.count("preprocess"), 1, "preprocess runs once per run");
    assert_eq!(
        source_ids(&h.activities(integration.id).await),
        ["act-from-preprocess"]
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn settings_changed_by_hooks_are_committed_with_them(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["s"]), |_| async {
        Ok(StreamOutcome::new())
    })
    .config(fast_config())
    .preprocess(|ctx| {
        let mut s = ctx.settings().clone();
        s["discovered"] = json!(42);
        ctx.update_settings(s);
        Ok(())
    })
    .postprocess(|ctx| {
        let mut s = ctx.settings().clone();
        s["cursor"] = json!("c-9");
        ctx.update_settings(s);
        Ok(())
    });
    let h = harness(pool, service);
    let (integration, run) = h
        .connect(PLATFORM, json!({"keep": true}), json!({}))
        .await
        .unwrap();
    assert_eq!(h.process(run.id).await, RunOutcome::Processed);
    assert_eq!(
        h.integration(integration.id).await.settings,
        json!({"keep": true, "discovered": 42, "cursor": "c-9"})
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn run_level_hooks_retry_with_backoff_then_fail_with_their_chain(pool: PgPool) {
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = attempts.clone();
    let service = ScriptedService::new(PLATFORM, roots(&["s"]), |_| async {
        Ok(StreamOutcome::new())
    })
    .config(fast_config())
    .preprocess(move |_| {
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(IntegrationError::retryable("token exchange failed")
            .with_source(std::io::Error::other("connection reset by peer")))
    });
    let h = harness(pool, service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();

    let RunOutcome::Delayed { reason, .. } = h.process(run.id).await else {
        panic!("expected a retry")
    };
    assert_eq!(reason, "retrying preprocess");
    let delayed = h.run(run.id).await;
    assert_eq!((delayed.state, delayed.retries), (RunState::Delayed, 1));
    assert_eq!(
        delayed.error_record().unwrap().chain,
        ["token exchange failed", "connection reset by peer"]
    );

    let (outcomes, run) = h.run_to_end(run.id).await;
    assert_eq!(outcomes.len(), 2, "max_retries = 2: two more tries");
    assert_eq!(run.state, RunState::Error);
    let error = run.error_record().unwrap();
    assert_eq!((error.hook.as_str(), error.failures), ("preprocess", 3));
    assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(
        h.integration(integration.id).await.status,
        IntegrationStatus::Error
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_panicking_preprocess_fails_the_run_and_not_the_worker(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["s"]), |_| async {
        Ok(StreamOutcome::new())
    })
    .config(fast_config())
    .preprocess(|_| panic!("settings cache poisoned"));
    let h = harness(pool, service);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let RunOutcome::Failed { message } = h.process(run.id).await else {
        panic!("expected failure")
    };
    assert_eq!(message, "panicked: settings cache poisoned");
    assert_eq!(
        h.run(run.id).await.error_record().unwrap().kind,
        tributary::ErrorKind::Panicked
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_platform_this_build_does_not_know_fails_the_run_clearly(pool: PgPool) {
    let h = harness(pool.clone(), forum());
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    sqlx::query("UPDATE integrations SET platform = 'myspace' WHERE id = $1")
        .bind(integration.id)
        .execute(&pool)
        .await
        .unwrap();
    let RunOutcome::Failed { message } = h.process(run.id).await else {
        panic!("expected failure")
    };
    assert_eq!(
        message,
        "unknown platform `myspace`; known platforms: scripted"
    );
}

// ---- the run state machine, arrow by arrow ----

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn pending_to_processing_and_a_live_lease_is_not_claimable(pool: PgPool) {
    let h = harness(pool.clone(), forum());
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    assert_eq!(run.state, RunState::Pending);
    let claimed = tributary::store::runs::claim(&pool, run.id, "w1", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((claimed.state, claimed.attempt), (RunState::Processing, 1));
    assert_eq!(claimed.lease_owner.as_deref(), Some("w1"));
    assert!(claimed.started_at.is_some());
    assert!(
        tributary::store::runs::claim(&pool, run.id, "w2", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "a live lease keeps other workers out"
    );
    assert!(matches!(
        h.processor("w2")
            .process_run(run.id, &Default::default())
            .await
            .unwrap(),
        RunOutcome::NotClaimable {
            state: RunState::Processing,
            ..
        }
    ));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn processing_to_processing_when_an_expired_lease_is_rescued(pool: PgPool) {
    let h = harness(pool.clone(), forum());
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    tributary::store::runs::claim(&pool, run.id, "dead", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    h.expire_lease(run.id).await;
    let rescued = tributary::store::runs::claim(&pool, run.id, "alive", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (rescued.attempt, rescued.lease_owner.as_deref()),
        (2, Some("alive"))
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn delayed_to_processing_only_once_its_time_has_come(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["s"]), |call| async move {
        if call.call == 1 {
            Err(IntegrationError::rate_limited(
                chrono::Utc::now() + chrono::Duration::minutes(10),
                "slow down",
            ))
        } else {
            Ok(StreamOutcome::new())
        }
    })
    .config(fast_config());
    let h = harness(pool, service);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    assert!(matches!(
        h.process(run.id).await,
        RunOutcome::Delayed { .. }
    ));
    assert!(matches!(
        h.process(run.id).await,
        RunOutcome::NotClaimable {
            state: RunState::Delayed,
            delayed_until: Some(_)
        }
    ));
    h.make_due(run.id).await;
    assert_eq!(h.process(run.id).await, RunOutcome::Processed);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn active_runs_can_be_cancelled_and_ended_runs_cannot(pool: PgPool) {
    let h = harness(pool.clone(), forum());
    let (integration, pending) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let cancelled = tributary::admin::cancel_run(&pool, pending.id)
        .await
        .unwrap();
    assert_eq!(cancelled.state, RunState::Cancelled);

    let run = h.check(integration.id).await.unwrap();
    tributary::store::runs::claim(&pool, run.id, "w", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        tributary::admin::cancel_run(&pool, run.id)
            .await
            .unwrap()
            .state,
        RunState::Cancelled
    );

    let run = h.check(integration.id).await.unwrap();
    let claimed = tributary::store::runs::claim(&pool, run.id, "w", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    tributary::store::runs::defer(&pool, &claimed.lease(), later, "rate limited", None)
        .await
        .unwrap();
    assert_eq!(h.run(run.id).await.state, RunState::Delayed);
    let cancelled = tributary::admin::cancel_run(&pool, run.id).await.unwrap();
    assert_eq!(
        (cancelled.state, cancelled.delayed_until),
        (RunState::Cancelled, None)
    );

    let run = h.check(integration.id).await.unwrap();
    assert_eq!(h.process(run.id).await, RunOutcome::Processed);
    let err = tributary::admin::cancel_run(&pool, run.id)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("run {} is processed and cannot be cancelled", run.id)
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn continue_run_takes_error_delayed_and_cancelled_runs_back_to_pending(pool: PgPool) {
    let h = harness(pool.clone(), forum());
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    for state in ["error", "delayed", "cancelled"] {
        sqlx::query(
            "UPDATE integration_runs SET state = $2,
                 delayed_until = CASE WHEN $2 = 'delayed' THEN now() + interval '1 hour' END
             WHERE id = $1",
        )
        .bind(run.id)
        .bind(state)
        .execute(&pool)
        .await
        .unwrap();
        let (resumed, _) = tributary::admin::continue_run(&pool, run.id).await.unwrap();
        assert_eq!(resumed.state, RunState::Pending, "from {state}");
        assert_eq!(resumed.delayed_until, None);
    }
    assert_eq!(h.process(run.id).await, RunOutcome::Processed);
    let err = tributary::admin::continue_run(&pool, run.id)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "run {} is already processed; start a new one with process-integration",
            run.id
        )
    );
    let check = h.check(integration.id).await.unwrap();
    tributary::store::runs::claim(&pool, check.id, "busy-worker", Duration::from_secs(30))
        .await
        .unwrap();
    let err = tributary::admin::continue_run(&pool, check.id)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("is being processed by busy-worker"),
        "{err}"
    );
}
