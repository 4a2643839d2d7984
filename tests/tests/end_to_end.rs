//! End to end: the real `tributary-worker` and `tributary-tick-generator` binaries, PostgreSQL,
//! the Example Forum server (in this process), the `postgres` queue and SQS (moto, driven by the
//! `aws` CLI like any outside producer).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::*;
use serde_json::Value;
use sqlx::PgPool;
use tributary::messages::{Message, TickSlot};
use tributary::queue::{PgQueue, PgQueueConfig, Queue, SqsQueue, SqsQueueSettings};
use tributary::store::runs::RunState;
use tributary::store::streams::StreamState;
use tributary::testkit::eventually;
use tributary::testkit::moto::{MotoServer, aws_cli_path};

fn pg_queue(pool: &PgPool) -> Arc<PgQueue> {
    Arc::new(PgQueue::new(pool.clone(), PgQueueConfig::default()))
}

async fn sqs_queue(prefix: &str) -> SqsQueue {
    MotoServer::shared()
        .queue(
            prefix,
            &SqsQueueSettings {
                max_receives: 3,
                visibility: Duration::from_secs(30),
            },
        )
        .await
}

/// The environment of a process that uses `queue` on moto.
fn sqs_env(queue: &SqsQueue) -> Vec<(&'static str, String)> {
    let mut env = MotoServer::shared().env();
    env.push(("TRIBUTARY_QUEUE", "sqs".to_owned()));
    env.push(("TRIBUTARY_SQS_QUEUE_URL", queue.url().to_owned()));
    env
}

/// `aws sqs send-message`, as any producer outside Tributary would.
async fn aws_send(queue: &SqsQueue, body: &str) {
    let moto = MotoServer::shared();
    let output = tokio::process::Command::new(aws_cli_path())
        .envs(moto.env())
        .args([
            "--endpoint-url",
            &moto.endpoint(),
            "sqs",
            "send-message",
            "--queue-url",
            queue.url(),
            "--message-body",
            body,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "aws sqs send-message failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `aws sqs receive-message` on the dead-letter queue: (body, tributary-reason) of each message.
async fn aws_dead_letters(queue: &SqsQueue) -> Vec<(String, Option<String>)> {
    let moto = MotoServer::shared();
    let output = tokio::process::Command::new(aws_cli_path())
        .envs(moto.env())
        .args([
            "--endpoint-url",
            &moto.endpoint(),
            "sqs",
            "receive-message",
            "--queue-url",
            queue.dead_letter_url(),
            "--max-number-of-messages",
            "10",
            "--visibility-timeout",
            "0",
            "--message-attribute-names",
            "All",
        ])
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    if text.trim().is_empty() {
        return Vec::new();
    }
    let value: Value = serde_json::from_str(&text).unwrap();
    value["Messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["Body"].as_str().unwrap_or_default().to_owned(),
                m["MessageAttributes"]["tributary-reason"]["StringValue"]
                    .as_str()
                    .map(str::to_owned),
            )
        })
        .collect()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn onboarding_started_by_an_aws_cli_message_reaches_processed_once_even_if_sent_twice(
    pool: PgPool,
) {
    let server = forum(Duration::from_millis(20)).await;
    let h = harness(pool.clone());
    let (integration, onboarding) = connect(&h, &server).await;
    let queue = sqs_queue("onboarding").await;
    let body = format!(
        r#"{{"type":"process_integration","integration_id":"{}","onboarding":true}}"#,
        integration.id
    );
    // the same request twice, before any worker looks
    aws_send(&queue, &body).await;
    aws_send(&queue, &body).await;

    let env = worker_env(&pool, "worker-sqs");
    let worker = Proc::spawn(WORKER, "worker-sqs", &with(env, &sqs_env(&queue)));
    wait_for_run(
        &h,
        onboarding.id,
        RunState::Processed,
        Duration::from_secs(60),
    )
    .await;

    let runs = runs_of(&pool, integration.id).await;
    assert_eq!(runs.len(), 1, "one run for both messages: {runs:?}");
    let expected: Vec<String> = expected_ids(&server).into_iter().collect();
    assert_eq!(expected.len(), 60);
    assert_eq!(stored_ids(&h, integration.id).await, expected);
    assert_eq!(h.run(onboarding.id).await.activities_created, 60);
    assert_eq!(h.integration(integration.id).await.status.as_str(), "done");
    // both messages were taken and deleted, none dead-lettered
    eventually(Duration::from_secs(20), "the queue to be empty", || async {
        let left = queue
            .receive(tributary::queue::ReceiveRequest {
                max_messages: 10,
                wait: Duration::ZERO,
                visibility: Duration::from_secs(0),
            })
            .await
            .unwrap();
        left.is_empty().then_some(())
    })
    .await;
    assert!(aws_dead_letters(&queue).await.is_empty());
    drop(worker);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_malformed_message_lands_in_the_dead_letter_queue_with_its_reason_and_the_next_is_processed(
    pool: PgPool,
) {
    let server = forum(Duration::ZERO).await;
    let h = harness(pool.clone());
    let (integration, onboarding) = connect(&h, &server).await;
    let queue = sqs_queue("malformed").await;
    aws_send(&queue, "{this is not json").await;
    aws_send(&queue, &Message::continue_run(onboarding.id).encode()).await;

    let env = worker_env(&pool, "worker-dlq");
    let worker = Proc::spawn(WORKER, "worker-dlq", &with(env, &sqs_env(&queue)));
    wait_for_run(
        &h,
        onboarding.id,
        RunState::Processed,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(stored_ids(&h, integration.id).await.len(), 60);

    let dead = eventually(Duration::from_secs(20), "the dead letter", || async {
        let dead = aws_dead_letters(&queue).await;
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, "{this is not json");
    let reason = dead[0].1.clone().expect("the reason is recorded");
    assert!(
        reason.starts_with("the message body is not JSON"),
        "{reason}"
    );
    // one clear line in the worker's log
    let log = worker.log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("message refused"))
        .collect();
    assert_eq!(refused.len(), 1, "{log}");
    assert!(refused[0].contains("not JSON"), "{}", refused[0]);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn two_tick_generators_and_their_restarts_emit_each_slot_once(pool: PgPool) {
    let env = |name: &str| -> Vec<(String, String)> {
        vec![
            ("DATABASE_URL".to_owned(), database_url(&pool)),
            ("TRIBUTARY_GENERATOR_ID".to_owned(), name.to_owned()),
            (
                "RUST_LOG".to_owned(),
                "info,tributary_tick_generator=debug,sqlx=warn".to_owned(),
            ),
        ]
    };
    // a slot is emitted or found taken once per generator start
    let settled = |g: &Proc| {
        let log = g.log();
        log.contains("tick emitted") || log.contains("slot already emitted")
    };
    for round in 0..2 {
        let mut a = Proc::spawn(TICK_GENERATOR, &format!("gen-a-{round}"), &env("a"));
        let mut b = Proc::spawn(TICK_GENERATOR, &format!("gen-b-{round}"), &env("b"));
        eventually(
            Duration::from_secs(30),
            "both generators to try the slot",
            || async { (settled(&a) && settled(&b)).then_some(()) },
        )
        .await;
        for g in [&mut a, &mut b] {
            g.signal("TERM");
            let (code, _) = g.wait_exit(Duration::from_secs(10)).await;
            assert_eq!(code, Some(0), "{}", g.log());
        }
    }

    let slots: Vec<(chrono::DateTime<Utc>, String)> =
        tributary::store::ticks::list(&pool).await.unwrap();
    assert!(!slots.is_empty());
    let mut sent: BTreeMap<TickSlot, usize> = BTreeMap::new();
    let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM queue_messages")
        .fetch_all(&pool)
        .await
        .unwrap();
    for body in bodies {
        let Message::Tick { slot } = Message::decode(&body).unwrap() else {
            panic!("not a tick: {body}");
        };
        *sent.entry(slot).or_default() += 1;
    }
    let recorded: BTreeSet<TickSlot> = slots
        .iter()
        .map(|(s, _)| TickSlot::exact(*s).unwrap())
        .collect();
    assert_eq!(sent.keys().copied().collect::<BTreeSet<_>>(), recorded);
    assert!(
        sent.values().all(|n| *n == 1),
        "a slot sent twice: {sent:?}"
    );
    // four starts within at most two minutes: one or two slots, never four
    assert!(slots.len() <= 2, "{slots:?}");
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_check_tick_creates_runs_only_for_due_idle_integrations(pool: PgPool) {
    let server = forum(Duration::ZERO).await;
    let h = harness(pool.clone());
    // idle: onboarding over (cancelled here, to keep the test short)
    let (idle, onboarding) = connect(&h, &server).await;
    tributary::admin::cancel_run(&pool, onboarding.id)
        .await
        .unwrap();
    // busy: its onboarding waits (delayed for an hour)
    let (busy, busy_run) = connect(&h, &server).await;
    sqlx::query(
        "UPDATE integration_runs SET state = 'delayed', delayed_until = now() + interval '1 hour'
         WHERE id = $1",
    )
    .bind(busy_run.id)
    .execute(&pool)
    .await
    .unwrap();
    // disconnected
    let (gone, _) = connect(&h, &server).await;
    tributary::store::integrations::disconnect(&pool, gone.id)
        .await
        .unwrap();
    // a platform this build does not know
    let unknown = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO integrations (id, tenant_id, platform, status) VALUES ($1, $2, 'elsewhere', 'done')",
    )
    .bind(unknown)
    .bind(uuid::Uuid::nil())
    .execute(&pool)
    .await
    .unwrap();

    let worker = Proc::spawn(WORKER, "worker-tick", &worker_env(&pool, "worker-tick"));
    let slot = TickSlot::containing(Utc::now());
    pg_queue(&pool)
        .send((&Message::Tick { slot }).into())
        .await
        .unwrap();

    let check = eventually(Duration::from_secs(30), "the check run", || async {
        runs_of(&pool, idle.id).await.get(1).map(|r| r.0)
    })
    .await;
    wait_for_run(&h, check, RunState::Processed, Duration::from_secs(60)).await;
    let run = h.run(check).await;
    assert!(!run.onboarding);
    assert_eq!(run.trigger_key, Some(slot.trigger_key()));
    assert_eq!(stored_ids(&h, idle.id).await.len(), 60);

    assert_eq!(
        runs_of(&pool, busy.id).await,
        [(busy_run.id, RunState::Delayed, None)],
        "the integration with an active run got no check"
    );
    assert_eq!(
        runs_of(&pool, gone.id).await.len(),
        1,
        "only its cancelled onboarding"
    );
    assert!(runs_of(&pool, unknown).await.is_empty());
    drop(worker);
}

/// Streams in flight when the test interrupts: how many activities are stored now.
async fn progress(h: &tributary::testkit::Harness, integration_id: uuid::Uuid) -> usize {
    h.activities(integration_id).await.len()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_worker_killed_mid_run_leaves_a_run_that_is_rescued_with_exactly_the_expected_activities(
    pool: PgPool,
) {
    let server = forum(Duration::from_millis(150)).await;
    let h = harness(pool.clone());
    let (integration, run) = connect(&h, &server).await;
    tributary::handoff::enqueue_run(&pool, pg_queue(&pool).as_ref(), run.id)
        .await
        .unwrap();

    let env = worker_env(&pool, "doomed");
    let mut doomed = Proc::spawn(WORKER, "doomed", &env);
    eventually(Duration::from_secs(60), "some progress", || async {
        (progress(&h, integration.id).await >= 10).then_some(())
    })
    .await;
    // health while it works
    let (status, body) = http_get(health_port(&env), "/health").await;
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["worker_id"], "doomed");

    doomed.kill().await;
    let crashed = h.run(run.id).await;
    assert_eq!(
        crashed.state,
        RunState::Processing,
        "the dead worker's lease remains"
    );
    assert!(progress(&h, integration.id).await < 60, "killed mid-run");

    let rescuer = Proc::spawn(WORKER, "rescuer", &worker_env(&pool, "rescuer"));
    wait_for_run(&h, run.id, RunState::Processed, Duration::from_secs(90)).await;
    let done = h.run(run.id).await;
    assert!(done.attempt >= 2, "taken over: attempt {}", done.attempt);
    assert_eq!(done.lease_owner, None, "finished runs hold no lease");
    let expected: Vec<String> = expected_ids(&server).into_iter().collect();
    assert_eq!(stored_ids(&h, integration.id).await, expected);
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM activities WHERE integration_id = $1")
            .bind(integration.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(count, 60);
    drop(rescuer);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn sigterm_commits_in_flight_streams_releases_the_run_and_exits_in_bounded_time(
    pool: PgPool,
) {
    let server = forum(Duration::from_millis(150)).await;
    let h = harness(pool.clone());
    let (integration, run) = connect(&h, &server).await;
    tributary::handoff::enqueue_run(&pool, pg_queue(&pool).as_ref(), run.id)
        .await
        .unwrap();

    let mut first = Proc::spawn(WORKER, "first", &worker_env(&pool, "first"));
    eventually(Duration::from_secs(60), "some progress", || async {
        (progress(&h, integration.id).await >= 10).then_some(())
    })
    .await;
    first.signal("TERM");
    let (code, took) = first.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(code, Some(0), "{}", first.log());
    assert!(took < Duration::from_secs(12), "exit took {took:?}");

    let streams = h.streams(run.id).await;
    assert!(
        streams.iter().all(|s| s.state != StreamState::Processing),
        "no stream left in processing: {:?}",
        streams
            .iter()
            .map(|s| (&s.identifier, s.state))
            .collect::<Vec<_>>()
    );
    let released = h.run(run.id).await;
    assert_eq!(released.state, RunState::Delayed, "released, not leased");
    assert!(released.lease_owner.is_none());
    assert!(
        first
            .log()
            .contains("released run handed to the next worker")
    );

    let second = Proc::spawn(WORKER, "second", &worker_env(&pool, "second"));
    wait_for_run(&h, run.id, RunState::Processed, Duration::from_secs(60)).await;
    let expected: Vec<String> = expected_ids(&server).into_iter().collect();
    assert_eq!(stored_ids(&h, integration.id).await, expected);
    drop(second);
}
