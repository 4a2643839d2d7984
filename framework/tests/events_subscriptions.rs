//! Issue 13, managing subscriptions: validation, replay from a sequence or a time, secret
//! rotation with two valid secrets, delayed, lingering and digest delivery, the SQS target
//! against moto read back with the aws CLI.
#![allow(clippy::unwrap_used)]

mod events_common;

use std::time::Duration;

use chrono::Utc;
use events_common::*;
use sqlx::PgPool;
use tributary::delivery::Dispatcher;
use tributary::secret::Secret;
use tributary::store::subscriptions::ReplayFrom;
use tributary::subscriptions::{self, SubscriptionError, SubscriptionRequest, Target};
use tributary::testkit::WebhookReceiver;
use tributary::testkit::moto::{MotoServer, aws_cli_path};

fn seqs(events: &[(uuid::Uuid, i64, String)]) -> Vec<i64> {
    events.iter().map(|e| e.1).collect()
}

fn webhook(url: &str) -> SubscriptionRequest {
    SubscriptionRequest::new(
        TENANT,
        "t",
        Target::Webhook {
            url: url.to_owned(),
            secret: None,
        },
    )
}

async fn refused(pool: &PgPool, request: SubscriptionRequest) -> String {
    match subscriptions::create(pool, request).await {
        Err(SubscriptionError::Invalid(message)) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn bad_requests_are_refused_with_what_is_wrong(pool: PgPool) {
    let m = refused(&pool, webhook("http://example.com/hook")).await;
    assert!(m.contains("must be https"), "{m}");
    let m = refused(&pool, webhook("not a url")).await;
    assert!(m.contains("is not a URL"), "{m}");
    let mut r = webhook("https://example.com/hook");
    r.event_types = vec!["activity.deleted".into()];
    let m = refused(&pool, r).await;
    assert!(m.contains("unknown event type `activity.deleted`"), "{m}");
    let mut r = webhook("https://example.com/hook");
    r.batch_size = 0;
    assert!(refused(&pool, r).await.contains("batch size"));
    let r = SubscriptionRequest::new(
        TENANT,
        "t",
        Target::Webhook {
            url: "https://example.com/hook".into(),
            secret: Some(Secret::new("whsec_tooshort")),
        },
    );
    assert!(refused(&pool, r).await.contains("whsec_"));
    let mut r = webhook("https://example.com/hook");
    r.name = " ".into();
    assert!(refused(&pool, r).await.contains("needs a name"));

    let sqs = subscriptions::create(
        &pool,
        SubscriptionRequest::new(
            TENANT,
            "q",
            Target::Sqs {
                queue_url: "https://sqs.us-east-1.amazonaws.com/1/q".into(),
            },
        ),
    )
    .await
    .unwrap();
    assert!(sqs.secret.is_none());
    let id = sqs.subscription.id;
    let m = subscriptions::rotate_secret(&pool, id, None, Duration::from_secs(60))
        .await
        .unwrap_err()
        .to_string();
    assert!(m.contains("only webhooks have a signing secret"), "{m}");
    let m = subscriptions::replay(&pool, id, ReplayFrom::Seq(0))
        .await
        .unwrap_err();
    assert!(m.to_string().contains("start at 1"));
    let unknown = uuid::Uuid::new_v4();
    let m = subscriptions::pause(&pool, unknown)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(m, format!("subscription {unknown} does not exist"));
    subscriptions::delete(&pool, id).await.unwrap();
    assert!(
        subscriptions::list(&pool, Some(TENANT))
            .await
            .unwrap()
            .is_empty()
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn replay_from_a_sequence_or_a_time_delivers_again_in_order(pool: PgPool) {
    emit(&pool, "slack", 2).await;
    let receiver = WebhookReceiver::start().await;
    let (sub, _) = subscribe(&pool, &receiver, |_| {}).await;
    assert_eq!(
        sub.cursor_seq, 2,
        "a new subscription starts with what comes next"
    );
    emit(&pool, "slack", 3).await;
    let d = dispatcher(&pool);
    dispatch_until(&d, "3 events", || receiver.accepted_count() == 3).await;
    assert_eq!(seqs(&receiver.accepted_events()), [3, 4, 5]);

    assert_eq!(
        subscriptions::replay(&pool, sub.id, ReplayFrom::Seq(2))
            .await
            .unwrap(),
        1
    );
    dispatch_until(&d, "the replay", || receiver.accepted_count() == 7).await;
    assert_eq!(seqs(&receiver.accepted_events()), [3, 4, 5, 2, 3, 4, 5]);

    let before = Utc::now();
    emit(&pool, "slack", 1).await;
    dispatch_until(&d, "event 6", || receiver.accepted_count() == 8).await;
    let cursor = subscriptions::replay(&pool, sub.id, ReplayFrom::Time(before))
        .await
        .unwrap();
    assert_eq!(cursor, 5);
    dispatch_until(&d, "the replay by time", || receiver.accepted_count() == 9).await;
    assert_eq!(seqs(&receiver.accepted_events())[8..], [6]);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_rotated_secret_and_the_previous_one_both_verify_until_the_overlap_ends(pool: PgPool) {
    let receiver = WebhookReceiver::start().await;
    let (sub, old) = subscribe(&pool, &receiver, |_| {}).await;
    let new = subscriptions::rotate_secret(&pool, sub.id, None, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_ne!(new.expose(), old.expose());
    emit(&pool, "slack", 1).await;
    let d = dispatcher(&pool);
    receiver.secrets([old.expose().to_owned()]);
    dispatch_until(&d, "one delivery", || receiver.received().len() == 1).await;
    let first = &receiver.received()[0];
    assert_eq!(first.signature.split(' ').count(), 2);
    assert!(first.signature_valid, "the old secret still verifies");
    assert!(
        first.webhook_id.starts_with("evt_"),
        "one event: its own id"
    );

    // the overlap ends: only the new secret signs
    sqlx::query("UPDATE subscriptions SET previous_secret_expires_at = now() WHERE id = $1")
        .bind(sub.id)
        .execute(&pool)
        .await
        .unwrap();
    emit(&pool, "slack", 1).await;
    receiver.secrets([new.expose().to_owned()]);
    dispatch_until(&d, "a second delivery", || receiver.received().len() == 2).await;
    let second = &receiver.received()[1];
    assert_eq!(second.signature.split(' ').count(), 1);
    assert!(second.signature_valid);
    receiver.secrets([old.expose().to_owned()]);
    emit(&pool, "slack", 1).await;
    dispatch_until(&d, "a third delivery", || receiver.received().len() == 3).await;
    assert!(
        !receiver.received()[2].signature_valid,
        "the old secret no longer verifies"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn delayed_lingering_and_digest_subscriptions_wait_then_deliver_in_one_batch(pool: PgPool) {
    let d = dispatcher(&pool);
    let delayed = WebhookReceiver::start().await;
    subscribe(&pool, &delayed, |r| r.delay = Duration::from_secs(1)).await;
    let lingering = WebhookReceiver::start().await;
    subscribe(&pool, &lingering, |r| r.linger = Duration::from_millis(500)).await;
    let digest = WebhookReceiver::start().await;
    subscribe(&pool, &digest, |r| {
        r.digest_every = Some(Duration::from_secs(2))
    })
    .await;

    emit(&pool, "slack", 3).await;
    let emitted = std::time::Instant::now();
    d.run_once().await.unwrap();
    assert!(delayed.received().is_empty(), "not before its delay");
    assert!(lingering.received().is_empty(), "a short batch lingers");
    assert_eq!(
        digest.accepted_count(),
        3,
        "a digest's first delivery is at once"
    );

    dispatch_until(&d, "the lingering batch", || {
        lingering.accepted_count() == 3
    })
    .await;
    assert!(emitted.elapsed() >= Duration::from_millis(450));
    assert_eq!(lingering.received().len(), 1, "in one batch");
    dispatch_until(&d, "the delayed events", || delayed.accepted_count() == 3).await;
    assert!(emitted.elapsed() >= Duration::from_millis(950));

    emit(&pool, "slack", 2).await;
    let digest_emitted = std::time::Instant::now();
    emit(&pool, "slack", 2).await;
    dispatch_until(&d, "the next digest", || digest.accepted_count() == 7).await;
    assert_eq!(
        digest.received().len(),
        2,
        "the next four came in one digest"
    );
    assert!(digest_emitted.elapsed() >= Duration::from_millis(900));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_sqs_target_sends_one_message_per_event_read_back_with_the_aws_cli(pool: PgPool) {
    let moto = MotoServer::shared();
    let client = moto.client();
    let name = format!("events-{}", uuid::Uuid::new_v4().simple());
    let url = client
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let created = subscriptions::create(
        &pool,
        SubscriptionRequest::new(
            TENANT,
            "sqs",
            Target::Sqs {
                queue_url: url.clone(),
            },
        ),
    )
    .await
    .unwrap();
    emit(&pool, "slack", 12).await;
    let d = Dispatcher::new(pool.clone(), fast(), Some(client)).unwrap();
    let report = d.run_once().await.unwrap();
    assert_eq!((report.batches, report.delivered), (1, 12));
    assert_eq!(
        subscription(&pool, created.subscription.id)
            .await
            .cursor_seq,
        12
    );

    let mut got: Vec<i64> = Vec::new();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 12 {
        assert!(std::time::Instant::now() < until, "read {got:?}");
        let output = tokio::process::Command::new(aws_cli_path())
            .envs(moto.env())
            .args([
                "--endpoint-url",
                &moto.endpoint(),
                "sqs",
                "receive-message",
                "--queue-url",
            ])
            .arg(&url)
            .args([
                "--max-number-of-messages",
                "10",
                "--message-attribute-names",
                "All",
            ])
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        if output.stdout.is_empty() {
            continue;
        }
        let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        for message in answer["Messages"].as_array().into_iter().flatten() {
            let body: serde_json::Value =
                serde_json::from_str(message["Body"].as_str().unwrap()).unwrap();
            assert_eq!(body["type"], "activity.created");
            assert_eq!(
                message["MessageAttributes"]["event_id"]["StringValue"],
                body["id"]
            );
            got.push(body["seq"].as_i64().unwrap());
        }
    }
    got.sort_unstable();
    assert_eq!(got, (1..=12).collect::<Vec<_>>());
}
