//! Issue 13, delivery to a real local receiver: order, batches, signatures, filters, failures,
//! timeouts, 429 with Retry-After, 410, dead letters and redrive, pausing, two dispatchers.
#![allow(clippy::unwrap_used)]

mod events_common;

use std::time::{Duration, Instant};

use events_common::*;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tributary::subscriptions;
use tributary::testkit::{Answer, WebhookReceiver};

fn seqs(events: &[(uuid::Uuid, i64, String)]) -> Vec<i64> {
    events.iter().map(|e| e.1).collect()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn events_are_delivered_in_order_in_signed_batches_and_filters_hold(pool: PgPool) {
    let receiver = WebhookReceiver::start().await;
    let (all, _) = subscribe(&pool, &receiver, |r| r.batch_size = 10).await;
    let other = WebhookReceiver::start().await;
    let (filtered, _) = subscribe(&pool, &other, |r| {
        r.platforms = vec!["github".into()];
        r.event_types = vec!["activity.created".into()];
        r.channels = vec!["general".into()];
    })
    .await;
    emit(&pool, "slack", 20).await;
    emit(&pool, "github", 5).await;
    let d = dispatcher(&pool);
    dispatch_until(&d, "25 + 5 events", || {
        receiver.accepted_count() == 25 && other.accepted_count() == 5
    })
    .await;

    let requests = receiver.received();
    assert_eq!(
        requests
            .iter()
            .map(|r| r.events().len())
            .collect::<Vec<_>>(),
        [10, 10, 5]
    );
    assert!(requests.iter().all(|r| r.signature_valid), "{requests:?}");
    assert!(requests.iter().all(|r| r.webhook_id.starts_with("batch_")));
    assert_eq!(
        seqs(&receiver.accepted_events()),
        (1..=25).collect::<Vec<_>>()
    );
    let first = &requests[0].body["events"][0];
    assert_eq!(first["type"], "activity.created");
    assert_eq!(first["schema_version"], 1);
    assert_eq!(first["platform"], "slack");
    assert_eq!(first["data"]["n"], 1);
    assert_eq!(requests[0].body["subscription_id"], all.id.to_string());
    assert_eq!(
        seqs(&other.accepted_events()),
        (21..=25).collect::<Vec<_>>()
    );
    let sub = subscription(&pool, filtered.id).await;
    assert_eq!((sub.cursor_seq, sub.delivered_count), (25, 5));
    // nothing more to do: no request is sent again
    let report = d.run_once().await.unwrap();
    assert_eq!(report.batches, 0);
    assert_eq!(receiver.received().len(), 3);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn errors_timeouts_and_429_are_retried_in_order_with_duplicates_only_after_a_timeout(
    pool: PgPool,
) {
    let receiver = WebhookReceiver::start().await;
    receiver.script([
        Answer::Status(500),
        Answer::Accept,
        Answer::Slow(Duration::from_secs(2)),
        Answer::Accept,
        Answer::TooMany {
            retry_after_secs: 1,
        },
        Answer::Accept,
    ]);
    let (sub, _) = subscribe(&pool, &receiver, |r| r.batch_size = 4).await;
    emit(&pool, "slack", 12).await;
    let d = dispatcher(&pool);
    dispatch_until(&d, "12 events accepted", || receiver.accepted_count() == 12).await;

    let requests = receiver.received();
    let answers: Vec<(Answer, Vec<i64>)> = requests
        .iter()
        .map(|r| (r.answer.clone(), seqs(&r.events())))
        .collect();
    assert_eq!(
        answers,
        [
            (Answer::Status(500), vec![1, 2, 3, 4]),
            (Answer::Accept, vec![1, 2, 3, 4]),
            (Answer::Slow(Duration::from_secs(2)), vec![5, 6, 7, 8]),
            (Answer::Accept, vec![5, 6, 7, 8]),
            (
                Answer::TooMany {
                    retry_after_secs: 1
                },
                vec![9, 10, 11, 12]
            ),
            (Answer::Accept, vec![9, 10, 11, 12]),
        ]
    );
    assert_eq!(
        seqs(&receiver.accepted_events()),
        (1..=12).collect::<Vec<_>>()
    );
    // Retry-After: 1 s, not the schedule's 50 ms
    assert!(
        requests[5].timestamp - requests[4].timestamp >= 1,
        "{requests:?}"
    );
    assert_eq!(
        requests[4].webhook_id, requests[5].webhook_id,
        "the same id on retry"
    );
    let sub = subscription(&pool, sub.id).await;
    assert_eq!(
        (sub.failures, sub.state.as_str(), sub.cursor_seq),
        (0, "active", 12)
    );
    assert!(
        subscriptions::dead_letters(&pool, sub.id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn exhausted_batches_become_dead_letters_with_the_last_response_and_redrive_delivers_them(
    pool: PgPool,
) {
    let receiver = WebhookReceiver::start().await;
    receiver.script([
        Answer::Status(503),
        Answer::Status(502),
        Answer::Status(503),
    ]);
    let (sub, _) = subscribe(&pool, &receiver, |r| r.batch_size = 3).await;
    emit(&pool, "slack", 6).await;
    let d = dispatcher(&pool);
    dispatch_until(&d, "the second batch", || receiver.accepted_count() == 3).await;
    assert_eq!(
        seqs(&receiver.accepted_events()),
        [4, 5, 6],
        "delivery went on"
    );
    let dead = subscriptions::dead_letters(&pool, sub.id).await.unwrap();
    assert_eq!(dead.iter().map(|d| d.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(dead.iter().all(|d| d.attempts == 3 && d.state == "dead"));
    assert_eq!(dead[0].last_status, Some(503));
    assert_eq!(dead[0].last_response.as_deref(), Some("scripted 503"));
    assert_eq!(
        receiver.received().len(),
        4,
        "three attempts, then the next batch"
    );

    assert_eq!(subscriptions::redrive(&pool, sub.id).await.unwrap(), 3);
    dispatch_until(&d, "the redriven batch", || receiver.accepted_count() == 6).await;
    assert_eq!(seqs(&receiver.accepted_events()), [4, 5, 6, 1, 2, 3]);
    let dead = subscriptions::dead_letters(&pool, sub.id).await.unwrap();
    assert!(dead.iter().all(|d| d.state == "redriven"), "{dead:?}");
    assert_eq!(subscriptions::redrive(&pool, sub.id).await.unwrap(), 0);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_410_pauses_the_subscription_and_so_does_a_day_of_failures(pool: PgPool) {
    let receiver = WebhookReceiver::start().await;
    receiver.script([Answer::Gone]);
    let (gone, _) = subscribe(&pool, &receiver, |_| {}).await;
    emit(&pool, "slack", 2).await;
    let d = dispatcher(&pool);
    dispatch_until(&d, "the 410", || !receiver.received().is_empty()).await;
    let sub = subscription(&pool, gone.id).await;
    assert_eq!(sub.state, "paused");
    assert_eq!(
        sub.paused_reason.as_deref(),
        Some("the endpoint answered 410 Gone")
    );
    assert_eq!(
        d.run_once().await.unwrap().batches,
        0,
        "a paused subscription gets nothing"
    );
    subscriptions::resume(&pool, gone.id).await.unwrap();
    dispatch_until(&d, "delivery after resume", || {
        receiver.accepted_count() == 2
    })
    .await;

    // failing since 25 hours: the next failure pauses it
    let failing = WebhookReceiver::start().await;
    failing.script([Answer::Status(500)]);
    let (sub, _) = subscribe(&pool, &failing, |_| {}).await;
    sqlx::query(
        "UPDATE subscriptions SET failing_since = now() - interval '25 hours' WHERE id = $1",
    )
    .bind(sub.id)
    .execute(&pool)
    .await
    .unwrap();
    emit(&pool, "slack", 1).await;
    let report = d.run_once().await.unwrap();
    assert_eq!(report.paused, 1);
    let sub = subscription(&pool, sub.id).await;
    assert_eq!(sub.state, "paused");
    assert!(sub.paused_reason.unwrap().starts_with("failing since"));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn two_dispatchers_deliver_each_event_once(pool: PgPool) {
    let receiver = WebhookReceiver::start().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(subscribe(&pool, &receiver, |r| r.batch_size = 7).await.0.id);
    }
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    for name in ["one", "two"] {
        let mut config = fast();
        config.owner = name.to_owned();
        config.concurrency = 2;
        let d = tributary::delivery::Dispatcher::new(pool.clone(), config, None).unwrap();
        let token = shutdown.clone();
        tasks.push(tokio::spawn(async move { d.run(token).await }));
    }
    for _ in 0..5 {
        emit(&pool, "slack", 40).await;
    }
    let until = Instant::now() + Duration::from_secs(30);
    while receiver.accepted_count() < 4 * 200 {
        assert!(
            Instant::now() < until,
            "{} delivered",
            receiver.accepted_count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    for task in tasks {
        task.await.unwrap();
    }
    let requests = receiver.received();
    for id in ids {
        let got: Vec<i64> = requests
            .iter()
            .filter(|r| r.body["subscription_id"] == id.to_string())
            .flat_map(|r| seqs(&r.events()))
            .collect();
        assert_eq!(
            got,
            (1..=200).collect::<Vec<_>>(),
            "subscription {id}: once each, in order"
        );
    }
    assert_eq!(receiver.accepted_count(), 800);
}
