//! What happens to a stream: rate limits, sleeps, retries, timeouts, panics, pagination,
//! concurrency, global limits, secrets; the stream state machine's arrows.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{Duration as ChronoDuration, SubsecRound, Utc};
use common::*;
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::Barrier;
use tributary::store::integrations::IntegrationStatus;
use tributary::store::runs::RunState;
use tributary::store::streams::StreamState;
use tributary::testkit::ScriptedService;
use tributary::{
    ErrorKind, GlobalLimit, IntegrationError, NewStream, RunOutcome, ServiceConfig, StreamOutcome,
};

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_rate_limit_defers_the_run_to_the_reset_time_without_consuming_a_retry(pool: PgPool) {
    let reset = (Utc::now() + ChronoDuration::minutes(17)).trunc_subsecs(0);
    let service = ScriptedService::new(PLATFORM, roots(&["a", "b"]), move |call| async move {
        match (call.stream.identifier.as_str(), call.call) {
            ("b", 1) => Err(IntegrationError::rate_limited(
                reset,
                "429 Too Many Requests",
            )),
            (id, _) => Ok(StreamOutcome::new().activity(activity(id, "ada"))),
        }
    })
    .config(ServiceConfig {
        stream_concurrency: 1,
        ..fast_config()
    });
    let h = harness(pool, service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();

    let RunOutcome::Delayed { until, reason } = h.process(run.id).await else {
        panic!("expected a deferral")
    };
    assert_eq!(until, reset);
    assert!(
        reason.starts_with("rate limited while processing `b`: "),
        "{reason}"
    );
    let delayed = h.run(run.id).await;
    assert_eq!(
        (delayed.state, delayed.delayed_until, delayed.lease_owner),
        (RunState::Delayed, Some(reset), None)
    );
    let streams = h.streams(run.id).await;
    assert_eq!(
        (streams[0].state, streams[1].state),
        (StreamState::Processed, StreamState::Pending)
    );
    assert_eq!(streams[1].retries, 0, "a rate limit consumes no retry");
    assert_eq!(streams[1].error, None);
    assert_eq!(
        source_ids(&h.activities(integration.id).await),
        ["act-a"],
        "progress was committed"
    );

    let (outcomes, run) = h.run_to_end(run.id).await;
    assert_eq!(run.state, RunState::Processed, "{outcomes:?} {run:?}");
    assert_eq!(
        source_ids(&h.activities(integration.id).await),
        ["act-a", "act-b"]
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn sleep_commits_the_stream_before_deferring(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["a"]), |call| async move {
        Ok(match call.stream.page_number {
            1 => StreamOutcome::new()
                .activity(activity("1", "ada"))
                .next_page(json!("cursor-2"))
                .sleep(Duration::from_secs(3600)),
            _ => StreamOutcome::new().activity(activity("2", "ada")),
        })
    })
    .config(fast_config());
    let h = harness(pool, service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let before = Utc::now();
    let RunOutcome::Delayed { until, .. } = h.process(run.id).await else {
        panic!("expected a deferral")
    };
    assert!(
        until >= before + ChronoDuration::seconds(3599)
            && until <= Utc::now() + ChronoDuration::seconds(3600)
    );
    let streams = h.streams(run.id).await;
    assert_eq!(streams[0].state, StreamState::Processed);
    assert_eq!(streams[1].page, Some(json!("cursor-2")));
    assert_eq!(source_ids(&h.activities(integration.id).await), ["act-1"]);
    let (_, run) = h.run_to_end(run.id).await;
    assert_eq!(run.state, RunState::Processed);
    assert_eq!(h.activities(integration.id).await.len(), 2);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn retries_end_in_error_with_the_chain_and_continue_run_revives_them(pool: PgPool) {
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = healthy.clone();
    let service = ScriptedService::new(PLATFORM, roots(&["flaky"]), move |_| {
        let healthy = flag.load(Ordering::SeqCst);
        async move {
            if healthy {
                Ok(StreamOutcome::new().activity(activity("1", "ada")))
            } else {
                Err(IntegrationError::retryable("GET /items failed with 503")
                    .with_source(std::io::Error::other("upstream connect error")))
            }
        }
    })
    .config(fast_config());
    let log = service.log();
    let h = harness(pool.clone(), service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();

    let RunOutcome::Failed { message } = h.process(run.id).await else {
        panic!("expected failure")
    };
    assert!(
        message.contains("`flaky`: GET /items failed with 503"),
        "{message}"
    );
    assert_eq!(
        log.count("stream:flaky"),
        3,
        "the first try and max_retries = 2 retries"
    );
    let stream = &h.streams(run.id).await[0];
    assert_eq!((stream.state, stream.retries), (StreamState::Error, 3));
    let error = stream.error_record().unwrap();
    assert_eq!(error.kind, ErrorKind::Retryable);
    assert_eq!(
        error.chain,
        ["GET /items failed with 503", "upstream connect error"]
    );
    assert_eq!(
        h.run(run.id).await.error_record().unwrap().chain[1..],
        error.chain[..]
    );

    healthy.store(true, Ordering::SeqCst);
    let (resumed, revived) = tributary::admin::continue_run(&pool, run.id).await.unwrap();
    assert_eq!((resumed.state, revived.errored), (RunState::Pending, 1));
    let stream = &h.streams(run.id).await[0];
    assert_eq!(
        (stream.state, stream.retries),
        (StreamState::Pending, 0),
        "retries reset"
    );
    assert_eq!(
        h.integration(integration.id).await.status,
        IntegrationStatus::InProgress
    );

    assert_eq!(h.process(run.id).await, RunOutcome::Processed);
    let stream = &h.streams(run.id).await[0];
    assert_eq!(
        (stream.state, stream.error.clone()),
        (StreamState::Processed, None)
    );
    assert_eq!(
        h.integration(integration.id).await.status,
        IntegrationStatus::Done
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_long_retry_backoff_defers_the_run_instead_of_blocking(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["s"]), |call| async move {
        if call.call == 1 {
            Err(IntegrationError::retryable("502"))
        } else {
            Ok(StreamOutcome::new())
        }
    })
    .config(ServiceConfig {
        retry_backoff: tributary::RetryBackoff {
            base: Duration::from_secs(120),
            max: Duration::from_secs(120),
        },
        ..fast_config()
    });
    let h = harness(pool, service);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let RunOutcome::Delayed { until, reason } = h.process(run.id).await else {
        panic!("expected a deferral")
    };
    assert_eq!(reason, "waiting for a stream's retry backoff");
    let stream = &h.streams(run.id).await[0];
    assert_eq!(
        (stream.state, stream.retries, stream.delayed_until),
        (StreamState::Pending, 1, Some(until))
    );
    assert!(until >= Utc::now() + ChronoDuration::seconds(55));

    // continue-run cuts the backoff short
    let pool = h.pool.clone();
    let (_, revived) = tributary::admin::continue_run(&pool, run.id).await.unwrap();
    assert_eq!(revived.waiting, 1);
    assert_eq!(h.process(run.id).await, RunOutcome::Processed);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_hanging_stream_times_out_and_is_retried_then_errors(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["hangs", "fine"]), |call| async move {
        if call.stream.identifier == "hangs" {
            std::future::pending::<()>().await;
        }
        Ok(StreamOutcome::new().activity(activity("1", "ada")))
    })
    .config(ServiceConfig {
        stream_timeout: Duration::from_millis(200),
        max_retries: 1,
        ..fast_config()
    });
    let log = service.log();
    let h = harness(pool, service);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let RunOutcome::Failed { .. } = h.process(run.id).await else {
        panic!("expected failure")
    };
    assert_eq!(log.count("stream:hangs"), 2);
    let streams = h.streams(run.id).await;
    let error = streams[0].error_record().unwrap();
    assert_eq!(
        (streams[0].state, error.kind),
        (StreamState::Error, ErrorKind::TimedOut)
    );
    assert_eq!(error.message, "did not finish within 200ms");
    assert_eq!(
        streams[1].state,
        StreamState::Processed,
        "other streams carry on"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_panicking_stream_becomes_a_stream_error_and_the_worker_carries_on(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["boom", "fine"]), |call| async move {
        if call.stream.identifier == "boom" {
            let items: Vec<u32> = Vec::new();
            let _ = items[3];
        }
        Ok(StreamOutcome::new().activity(activity("1", "ada")))
    })
    .config(fast_config());
    let log = service.log();
    let h = harness(pool, service);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let RunOutcome::Failed { message } = h.process(run.id).await else {
        panic!("expected failure")
    };
    assert!(
        message.contains("`boom`: panicked: index out of bounds"),
        "{message}"
    );
    assert_eq!(log.count("stream:boom"), 1, "a panic is a bug: not retried");
    let streams = h.streams(run.id).await;
    assert_eq!(streams[0].error_record().unwrap().kind, ErrorKind::Panicked);
    assert_eq!(streams[1].state, StreamState::Processed);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn is_processing_finished_stops_paging(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["feed"]), |call| async move {
        let page = call.stream.page_number;
        Ok(StreamOutcome::new()
            .activity(activity(&format!("p{page}"), "ada"))
            .next_page(json!(page + 1)))
    })
    .config(fast_config())
    .finished_when(|stream, _| stream.page_number >= 3);
    let h = harness(pool, service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    assert_eq!(h.process(run.id).await, RunOutcome::Processed);
    assert_eq!(h.streams(run.id).await.len(), 3);
    assert_eq!(
        source_ids(&h.activities(integration.id).await),
        ["act-p1", "act-p2", "act-p3"],
        "the last page's records are kept"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_next_page_and_a_child_with_the_same_identifier_are_stored_once(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["list"]), |call| async move {
        Ok(match call.stream.identifier.as_str() {
            "list" => StreamOutcome::new()
                .child(NewStream::new("list#page=2", json!({"as": "child"})))
                .child(NewStream::new("list#page=2", json!({"as": "child again"})))
                .next_page(json!(2)),
            _ => StreamOutcome::new().activity(activity("x", "ada")),
        })
    })
    .config(fast_config());
    let log = service.log();
    let h = harness(pool, service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    assert_eq!(h.process(run.id).await, RunOutcome::Processed);
    let streams = h.streams(run.id).await;
    let identifiers: Vec<&str> = streams.iter().map(|s| s.identifier.as_str()).collect();
    assert_eq!(identifiers, ["list", "list#page=2"]);
    assert_eq!(
        streams[1].data,
        json!({"as": "child"}),
        "the first one asked for is kept"
    );
    assert_eq!(log.count("stream:list#page=2"), 1);
    assert_eq!(h.activities(integration.id).await.len(), 1);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn pagination_that_does_not_advance_or_never_ends_is_stopped(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["stuck", "endless"]), |call| async move {
        let s = &call.stream;
        let next = if s.identifier.starts_with("stuck") {
            json!("same-cursor")
        } else {
            json!(s.page_number + 1)
        };
        Ok(StreamOutcome::new()
            .activity(activity(
                &format!("{}-{}", s.chain_identifier, s.page_number),
                "ada",
            ))
            .next_page(next))
    })
    .config(ServiceConfig {
        max_pages_per_stream: 4,
        ..fast_config()
    });
    let h = harness(pool, service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let RunOutcome::Failed { .. } = h.process(run.id).await else {
        panic!("expected failure")
    };
    let streams = h.streams(run.id).await;
    // in any order: the two streams end concurrently
    let mut errors: Vec<String> = streams
        .iter()
        .filter(|s| s.state == StreamState::Error)
        .map(|s| s.error_record().unwrap().message)
        .collect();
    errors.sort();
    assert_eq!(
        errors,
        [
            "pagination did not end: `endless` reached 4 pages (max_pages_per_stream)",
            "pagination does not advance: the next page of `stuck` is the page just fetched (\"same-cursor\")",
        ]
    );
    assert_eq!(streams.len(), 6, "stuck: 2 pages, endless: 4 pages");
    assert_eq!(
        h.activities(integration.id).await.len(),
        6,
        "the records of every fetched page are kept"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn streams_of_a_run_are_processed_concurrently_up_to_the_limit(pool: PgPool) {
    let barrier = Arc::new(Barrier::new(3));
    let current = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (b, c, p) = (barrier.clone(), current.clone(), peak.clone());
    let ids: Vec<String> = (0..9).map(|i| format!("s{i}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let service = ScriptedService::new(PLATFORM, roots(&id_refs), move |_| {
        let (b, c, p) = (b.clone(), c.clone(), p.clone());
        async move {
            let now = c.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            // three streams must be in flight at once for any of them to pass
            b.wait().await;
            c.fetch_sub(1, Ordering::SeqCst);
            Ok(StreamOutcome::new())
        }
    })
    .config(ServiceConfig {
        stream_concurrency: 3,
        ..fast_config()
    });
    let h = harness(pool, service);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), h.process(run.id)).await;
    assert_eq!(
        outcome.expect("three streams never ran at once"),
        RunOutcome::Processed
    );
    assert_eq!(
        peak.load(Ordering::SeqCst),
        3,
        "never more than stream_concurrency"
    );
}

fn limited(units: u32, factor: f64) -> ServiceConfig {
    ServiceConfig {
        global_limit: Some(GlobalLimit {
            units,
            window: Duration::from_secs(3600),
        }),
        onboarding_limit_modifier_factor: factor,
        stream_concurrency: 1,
        ..fast_config()
    }
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_global_limit_reached_defers_the_run_to_the_window_reset(pool: PgPool) {
    let service = ScriptedService::new(
        PLATFORM,
        roots(&["a", "b", "c", "d", "e"]),
        |call| async move {
            let id = format!("{}-{}", call.ctx.integration_id(), call.stream.identifier);
            Ok(StreamOutcome::new().activity(activity(&id, "ada")))
        },
    )
    .config(limited(4, 0.5));
    let h = harness(pool.clone(), service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();

    let RunOutcome::Delayed { until, reason } = h.process(run.id).await else {
        panic!("expected a deferral")
    };
    assert_eq!(
        reason, "global limit of 2 per 3600s reached for scripted",
        "onboarding: 4 × 0.5"
    );
    let now = Utc::now().timestamp();
    assert_eq!(
        until.timestamp(),
        (now / 3600 + 1) * 3600,
        "the end of the current hour window"
    );
    assert_eq!(h.activities(integration.id).await.len(), 2);
    let streams = h.streams(run.id).await;
    assert!(streams.iter().all(|s| s.retries == 0));
    assert_eq!(
        streams
            .iter()
            .filter(|s| s.state == StreamState::Pending)
            .count(),
        3
    );

    // a check run of another integration of the platform gets the full limit: 2 more units
    let (other, other_run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    tributary::admin::cancel_run(&pool, other_run.id)
        .await
        .unwrap();
    let check = h.check(other.id).await.unwrap();
    let outcome = h.process(check.id).await;
    assert!(matches!(outcome, RunOutcome::Delayed { .. }), "{outcome:?}");
    assert_eq!(
        h.activities(other.id).await.len(),
        2,
        "the window is shared: 4 units in all"
    );
    let used: i64 = sqlx::query_scalar("SELECT sum(used)::int8 FROM rate_limit_windows")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(used, 4);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn secrets_never_reach_stored_errors_or_stream_data(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["s"]), |call| async move {
        let token = call.ctx.credentials().secret("token").unwrap();
        match call.stream.page_number {
            1 => Ok(StreamOutcome::new()
                .next_page(json!({"url": format!("/next?token={}", token.expose())}))),
            _ => Err(IntegrationError::fatal(format!(
                "GET /x?access_token={} returned 401",
                token.expose()
            ))),
        }
    })
    .config(fast_config());
    let h = harness(pool.clone(), service);
    let (_, run) = h
        .connect(PLATFORM, json!({}), json!({"token": "tok_live_abcdef123"}))
        .await
        .unwrap();
    h.process(run.id).await;
    let dump: String = sqlx::query_scalar(
        "SELECT string_agg(coalesce(data::text,'') || coalesce(page::text,'') || coalesce(error::text,''), ' ')
         FROM integration_streams",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!dump.contains("tok_live_abcdef123"), "{dump}");
    assert!(
        dump.contains("access_token=[redacted] returned 401"),
        "{dump}"
    );
    let run_error: String = sqlx::query_scalar("SELECT error::text FROM integration_runs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!run_error.contains("tok_live_abcdef123"));
    let integration = h.integration(h.run(run.id).await.integration_id).await;
    assert!(
        !format!("{integration:?}").contains("tok_live"),
        "Debug of an integration redacts"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn concurrent_streams_writing_the_same_members_in_any_order_never_deadlock(pool: PgPool) {
    let ids: Vec<String> = (0..16).map(|i| format!("s{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let service = ScriptedService::new(PLATFORM, roots(&refs), |call| async move {
        let n: usize = call.stream.identifier[1..].parse().unwrap();
        // every stream writes the same 40 members, each in its own order
        let mut members: Vec<usize> = (0..40).collect();
        members.rotate_left(n * 5 % 40);
        if n % 2 == 1 {
            members.reverse();
        }
        Ok(StreamOutcome::new().activities(
            members
                .into_iter()
                .map(|m| activity(&format!("{n}-{m}"), &m.to_string())),
        ))
    })
    .config(ServiceConfig {
        stream_concurrency: 8,
        ..fast_config()
    });
    let h = harness(pool, service);
    for round in 0..3 {
        let (integration, run) = h
            .connect(PLATFORM, json!({"round": round}), json!({}))
            .await
            .unwrap();
        assert_eq!(h.process(run.id).await, RunOutcome::Processed);
        if round == 0 {
            assert_eq!(h.activities(integration.id).await.len(), 640);
        }
    }
    assert_eq!(h.members(PLATFORM).await.len(), 40);
}
