//! The worker in-process, with scripted integrations, PostgreSQL and the `postgres` queue.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tributary::maintenance::RunRescuerConfig;
use tributary::messages::Message;
use tributary::queue::{OutgoingMessage, PgQueue, PgQueueConfig, Queue};
use tributary::store::integrations::Integration;
use tributary::store::runs::RunState;
use tributary::store::streams::StreamState;
use tributary::testkit::{Harness, ScriptedService, eventually};
use tributary::{
    Activity, IntegrationError, Member, NewStream, ProcessorConfig, Registry, RetryBackoff,
    ServiceConfig, StreamOutcome,
};
use tributary_worker::{HealthEndpoint, Worker, WorkerConfig};
use uuid::Uuid;

const PLATFORM: &str = "scripted";

fn fast_config() -> ServiceConfig {
    ServiceConfig {
        max_retries: 2,
        retry_backoff: RetryBackoff {
            base: Duration::from_millis(1),
            max: Duration::from_millis(4),
        },
        stream_concurrency: 2,
        ..ServiceConfig::default()
    }
}

fn activity(id: &str) -> Activity {
    Activity::new(
        format!("act-{id}"),
        "message",
        Utc::now(),
        Member::new("user-ada", "ada"),
    )
}

fn roots(ids: &[&str]) -> Vec<NewStream> {
    ids.iter()
        .map(|id| NewStream::new(*id, json!({ "id": id })))
        .collect()
}

/// One activity per stream.
fn simple_service() -> ScriptedService {
    ScriptedService::new(PLATFORM, roots(&["a", "b", "c"]), |call| async move {
        Ok(StreamOutcome::new().activity(activity(&call.stream.identifier)))
    })
    .config(fast_config())
}

fn worker_config(concurrency: usize) -> WorkerConfig {
    let mut config = WorkerConfig::new("postgres://unused");
    config.concurrency = concurrency;
    config.max_concurrency = concurrency;
    config.processor = ProcessorConfig {
        worker_id: "test-worker".to_owned(),
        lease_duration: Duration::from_secs(10),
        heartbeat_interval: Duration::from_millis(500),
        max_inline_wait: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(5),
        ..ProcessorConfig::default()
    };
    config.visibility_timeout = Duration::from_secs(5);
    config.receive_wait = Duration::from_secs(2);
    config.retry_after = Duration::from_secs(1);
    config.health = HealthEndpoint::Off;
    config.rescuer = RunRescuerConfig {
        resend_after: Duration::from_secs(3600),
        pending_resend_after: Duration::from_secs(3600),
        interval: Duration::from_secs(3600),
        ..RunRescuerConfig::default()
    };
    config.shutdown_timeout = Duration::from_secs(15);
    config
}

struct Running {
    h: Harness,
    queue: Arc<PgQueue>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) -> Duration {
        let started = Instant::now();
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the worker did not stop within 30 s")
            .unwrap();
        started.elapsed()
    }

    async fn send(&self, message: &Message) {
        self.queue.send(message.into()).await.unwrap();
    }

    async fn run_of(&self, integration_id: Uuid) -> Vec<(Uuid, RunState)> {
        sqlx::query_as::<_, (Uuid, String)>(
            "SELECT id, state FROM integration_runs WHERE integration_id = $1 ORDER BY created_at",
        )
        .bind(integration_id)
        .fetch_all(&self.h.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, state)| (id, state.parse().unwrap()))
        .collect()
    }

    async fn wait_for_state(&self, run_id: Uuid, state: RunState) {
        eventually(
            Duration::from_secs(30),
            &format!("run {run_id} to be {state}"),
            || async { (self.h.run(run_id).await.state == state).then_some(()) },
        )
        .await;
    }

    /// Waits until every message has been handled and deleted.
    async fn wait_queue_empty(&self, what: &str) {
        eventually(Duration::from_secs(20), what, || async {
            (self.queued().await == 0).then_some(())
        })
        .await;
    }

    /// An integration whose onboarding run (made by connecting it) is cancelled: the next run
    /// a message makes is its check.
    async fn connected_without_onboarding(&self) -> Integration {
        let (integration, onboarding) = self
            .h
            .connect(PLATFORM, json!({}), json!({}))
            .await
            .unwrap();
        tributary::store::runs::cancel(&self.h.pool, onboarding.id)
            .await
            .unwrap();
        integration
    }

    async fn queued(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM queue_messages")
            .fetch_one(&self.h.pool)
            .await
            .unwrap()
    }
}

/// A plain HTTP/1.0 GET: the whole answer as text.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

fn start_with(pool: PgPool, registry: Registry, config: WorkerConfig) -> Running {
    let h = Harness::new(pool.clone(), registry);
    let queue = Arc::new(PgQueue::new(
        pool.clone(),
        PgQueueConfig {
            max_receives: 3,
            ..PgQueueConfig::default()
        },
    ));
    let shutdown = CancellationToken::new();
    let worker = Worker::new(pool, h.registry.clone(), queue.clone(), config);
    let task = tokio::spawn(worker.run(None, shutdown.clone()));
    Running {
        h,
        queue,
        shutdown,
        task,
    }
}

fn start(pool: PgPool, service: ScriptedService, concurrency: usize) -> Running {
    let mut registry = Registry::new();
    registry.register(service).unwrap();
    start_with(pool, registry, worker_config(concurrency))
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_process_integration_message_runs_onboarding_to_the_end(pool: PgPool) {
    let w = start(pool, simple_service(), 2);
    let (integration, run) = w.h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    w.send(&Message::process_integration(integration.id, true))
        .await;
    w.wait_for_state(run.id, RunState::Processed).await;
    assert_eq!(
        w.run_of(integration.id).await,
        [(run.id, RunState::Processed)],
        "the message took the onboarding run connect made"
    );
    assert_eq!(w.h.activities(integration.id).await.len(), 3);
    w.wait_queue_empty("the message to be deleted").await;
    assert!(w.queue.peek_dead_letters(10).await.unwrap().is_empty());
    w.stop().await;
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn bad_messages_are_dead_lettered_with_their_reason_and_the_worker_goes_on(pool: PgPool) {
    let w = start(pool.clone(), simple_service(), 1);
    let (disconnected, _) = w.h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    tributary::store::integrations::disconnect(&pool, disconnected.id)
        .await
        .unwrap();
    let unknown_platform = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO integrations (id, tenant_id, platform, status) VALUES ($1, $2, 'gone', 'done')",
    )
    .bind(unknown_platform)
    .bind(Uuid::nil())
    .execute(&pool)
    .await
    .unwrap();
    let missing = Uuid::new_v4();
    let bad = [
        "this is not json".to_owned(),
        r#"{"type":"explode"}"#.to_owned(),
        r#"{"type":"tick","slot":"2026-11-22T21:13:30Z"}"#.to_owned(),
        Message::ContinueRun { run_id: missing }.encode(),
        Message::process_integration(missing, true).encode(),
        Message::process_integration(unknown_platform, false).encode(),
        Message::process_integration(disconnected.id, false).encode(),
        format!(r#"{{"type":"process_integration","integration_id":"{missing}","key":""}}"#),
    ];
    for body in &bad {
        w.queue
            .send(OutgoingMessage::new(body.clone()))
            .await
            .unwrap();
    }
    let (good, run) = w.h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    w.send(&Message::continue_run(run.id)).await;

    w.wait_for_state(run.id, RunState::Processed).await;
    assert_eq!(w.h.activities(good.id).await.len(), 3);
    let dead = eventually(
        Duration::from_secs(20),
        "every bad message dead-lettered",
        || async {
            let dead = w.queue.peek_dead_letters(100).await.unwrap();
            (dead.len() == bad.len()).then_some(dead)
        },
    )
    .await;
    let reason_of = |body: &str| {
        dead.iter()
            .find(|d| d.body == body)
            .and_then(|d| d.reason.clone())
            .unwrap_or_else(|| panic!("{body} is not dead-lettered"))
    };
    let expect = |i: usize, needle: &str| {
        let reason = reason_of(&bad[i]);
        assert!(reason.contains(needle), "reason of {}: {reason}", bad[i]);
    };
    expect(0, "not JSON");
    expect(1, "unknown message type \"explode\"");
    expect(2, "not on a whole minute");
    expect(3, &format!("run {missing} does not exist"));
    expect(4, &format!("integration {missing} does not exist"));
    expect(5, "unknown platform `gone`");
    expect(6, "is disconnected");
    expect(7, "`key` is empty");
    // the good run's message is deleted once its handling returns, which may be just after the
    // run is seen processed
    w.wait_queue_empty("the queue empty").await;
    w.stop().await;
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_same_message_delivered_twice_makes_one_run(pool: PgPool) {
    let w = start(pool.clone(), simple_service(), 2);
    let integration = w.connected_without_onboarding().await;
    let body = Message::process_integration(integration.id, false).encode();
    let id = Uuid::new_v4();
    let deliver = || async {
        // SQS delivers at least once: the same message (same id) may come again, even after
        // it was deleted
        sqlx::query(
            "INSERT INTO queue_messages (id, queue, body, visible_at) VALUES ($1, 'tributary', $2, now())",
        )
        .bind(id)
        .bind(&body)
        .execute(&pool)
        .await
        .unwrap();
        w.wait_queue_empty("the message to be handled").await;
    };
    deliver().await;
    let runs = w.run_of(integration.id).await;
    assert_eq!(runs.len(), 2, "the cancelled onboarding and one check");
    let check = runs[1].0;
    w.wait_for_state(check, RunState::Processed).await;
    deliver().await;
    assert_eq!(w.run_of(integration.id).await, runs_after(&runs, check));
    assert_eq!(w.h.activities(integration.id).await.len(), 3);
    w.stop().await;
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn messages_with_one_key_make_one_run_even_after_it_ended(pool: PgPool) {
    let w = start(pool.clone(), simple_service(), 2);
    let integration = w.connected_without_onboarding().await;
    let keyed = |key: &str| Message::ProcessIntegration {
        integration_id: integration.id,
        onboarding: false,
        key: Some(key.to_owned()),
    };
    // a producer's send, and its retry once the run has ended: two messages, two ids, one key
    w.send(&keyed("sync-1")).await;
    eventually(Duration::from_secs(20), "the check run", || async {
        let runs = w.run_of(integration.id).await;
        (runs.len() == 2).then_some(())
    })
    .await;
    let runs = w.run_of(integration.id).await;
    let check = runs[1].0;
    w.wait_for_state(check, RunState::Processed).await;
    w.send(&keyed("sync-1")).await;
    w.wait_queue_empty("the retried send to be handled").await;
    assert_eq!(w.run_of(integration.id).await, runs_after(&runs, check));
    // another key is another request: a second check
    w.send(&keyed("sync-2")).await;
    let second = eventually(Duration::from_secs(20), "the second check", || async {
        let runs = w.run_of(integration.id).await;
        (runs.len() == 3 && runs[2].1 == RunState::Processed).then(|| runs[2].0)
    })
    .await;
    assert_ne!(second, check);
    assert_eq!(w.h.activities(integration.id).await.len(), 3);
    w.stop().await;
}

fn runs_after(runs: &[(Uuid, RunState)], check: Uuid) -> Vec<(Uuid, RunState)> {
    vec![
        (runs[0].0, RunState::Cancelled),
        (check, RunState::Processed),
    ]
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_waiting_run_gets_a_delayed_message_and_resumes_on_its_own(pool: PgPool) {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let service = ScriptedService::new(PLATFORM, roots(&["only"]), move |call| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            if call.call == 1 {
                return Err(IntegrationError::rate_limited(
                    Utc::now() + chrono::Duration::seconds(2),
                    "slow down",
                ));
            }
            Ok(StreamOutcome::new().activity(activity("late")))
        }
    })
    .config(fast_config());
    let w = start(pool, service, 1);
    let (integration, run) = w.h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    w.send(&Message::continue_run(run.id)).await;
    w.wait_for_state(run.id, RunState::Delayed).await;
    let delayed = w.h.run(run.id).await;
    let until = delayed.delayed_until.unwrap();
    // no tick, no rescuer: the delayed message alone brings it back
    w.wait_for_state(run.id, RunState::Processed).await;
    let finished = w.h.run(run.id).await;
    assert!(
        finished.finished_at.unwrap() >= until,
        "resumed at {:?}, before it was due at {until}",
        finished.finished_at
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(w.h.activities(integration.id).await.len(), 1);
    w.stop().await;
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn several_runs_are_processed_at_once(pool: PgPool) {
    // each run's stream waits until three streams are in flight together
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let b = barrier.clone();
    let service = ScriptedService::new(PLATFORM, roots(&["only"]), move |call| {
        let b = b.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(20), b.wait())
                .await
                .map_err(|_| IntegrationError::fatal("the runs were not processed at once"))?;
            Ok(StreamOutcome::new().activity(activity(&call.ctx.run_id().to_string())))
        }
    })
    .config(fast_config());
    let w = start(pool, service, 3);
    let mut runs = Vec::new();
    for _ in 0..3 {
        let (_, run) = w.h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
        w.send(&Message::continue_run(run.id)).await;
        runs.push(run.id);
    }
    for run in runs {
        w.wait_for_state(run, RunState::Processed).await;
    }
    w.stop().await;
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_backlog_raises_the_concurrency_up_to_its_maximum(pool: PgPool) {
    // six runs queued for a worker of concurrency 1: each run's stream waits until all six are in
    // flight together, which only a worker that follows its backlog reaches
    let barrier = Arc::new(tokio::sync::Barrier::new(6));
    let b = barrier.clone();
    let service = ScriptedService::new(PLATFORM, roots(&["only"]), move |call| {
        let b = b.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(20), b.wait())
                .await
                .map_err(|_| IntegrationError::fatal("the backlog was not taken at once"))?;
            Ok(StreamOutcome::new().activity(activity(&call.ctx.run_id().to_string())))
        }
    })
    .config(fast_config());
    let mut registry = Registry::new();
    registry.register(service.clone()).unwrap();
    let h = Harness::new(pool.clone(), registry);
    let queue = PgQueue::new(pool.clone(), PgQueueConfig::default());
    let mut runs = Vec::new();
    for _ in 0..6 {
        let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
        queue
            .send((&Message::continue_run(run.id)).into())
            .await
            .unwrap();
        runs.push(run.id);
    }
    let mut config = worker_config(1);
    config.max_concurrency = 8;
    let mut registry = Registry::new();
    registry.register(service).unwrap();
    let w = start_with(pool, registry, config);
    for run in runs {
        w.wait_for_state(run, RunState::Processed).await;
    }
    w.stop().await;
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn shutdown_lets_streams_commit_releases_the_run_and_hands_it_on(pool: PgPool) {
    let started = Arc::new(tokio::sync::Notify::new());
    let s = started.clone();
    let service = ScriptedService::new(PLATFORM, roots(&["a", "b", "c", "d"]), move |call| {
        let s = s.clone();
        async move {
            s.notify_one();
            // slow pages: shutdown arrives while one is in flight
            tokio::time::sleep(Duration::from_millis(700)).await;
            Ok(StreamOutcome::new().activity(activity(&call.stream.identifier)))
        }
    })
    .config(ServiceConfig {
        stream_concurrency: 1,
        ..fast_config()
    });
    let mut registry = Registry::new();
    registry.register(service.clone()).unwrap();
    let w = start_with(pool.clone(), registry, worker_config(1));
    let (integration, run) = w.h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    w.send(&Message::continue_run(run.id)).await;
    tokio::time::timeout(Duration::from_secs(20), started.notified())
        .await
        .unwrap();
    let h = w.h.clone();
    let took = w.stop().await;
    assert!(took < Duration::from_secs(6), "shutdown took {took:?}");

    let released = h.run(run.id).await;
    assert_eq!(released.state, RunState::Delayed);
    assert!(released.delayed_until.unwrap() <= Utc::now());
    assert!(released.lease_owner.is_none(), "the lease is freed");
    let streams = h.streams(run.id).await;
    assert!(
        streams.iter().all(|s| s.state != StreamState::Processing),
        "{streams:?}"
    );
    assert!(
        streams.iter().any(|s| s.state == StreamState::Processed),
        "the stream in flight committed"
    );
    // the hand-off: a continue_run for the run is waiting in the queue
    let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM queue_messages")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(
        Message::decode(&bodies[0]).unwrap(),
        Message::continue_run(run.id)
    );

    // the next worker resumes it at once
    let mut registry = Registry::new();
    registry.register(service).unwrap();
    let next = start_with(pool, registry, worker_config(1));
    next.wait_for_state(run.id, RunState::Processed).await;
    assert_eq!(next.h.activities(integration.id).await.len(), 4);
    next.stop().await;
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_tick_message_makes_check_runs_that_the_worker_processes(pool: PgPool) {
    let service = simple_service().config(ServiceConfig {
        check_schedule: tributary::CheckSchedule::EveryTick,
        ..fast_config()
    });
    let w = start(pool, service, 2);
    let (integration, onboarding) = w.h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    w.send(&Message::continue_run(onboarding.id)).await;
    w.wait_for_state(onboarding.id, RunState::Processed).await;

    let slot = tributary::messages::TickSlot::containing(Utc::now());
    w.send(&Message::Tick { slot }).await;
    let check = eventually(Duration::from_secs(20), "a check run", || async {
        w.run_of(integration.id).await.get(1).map(|r| r.0)
    })
    .await;
    w.wait_for_state(check, RunState::Processed).await;
    let run = w.h.run(check).await;
    assert!(!run.onboarding);
    assert_eq!(run.trigger_key, Some(slot.trigger_key()));
    // the same tick again makes nothing new
    w.send(&Message::Tick { slot }).await;
    w.wait_queue_empty("the tick to be handled").await;
    assert_eq!(w.run_of(integration.id).await.len(), 2);
    w.stop().await;
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_message_stays_invisible_while_its_run_works_and_is_deleted_only_after_the_commit(
    pool: PgPool,
) {
    let started = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::new(tokio::sync::Notify::new());
    let (s, g) = (started.clone(), gate.clone());
    let service = ScriptedService::new(PLATFORM, roots(&["only"]), move |_| {
        let (s, g) = (s.clone(), g.clone());
        async move {
            s.notify_one();
            g.notified().await;
            Ok(StreamOutcome::new().activity(activity("only")))
        }
    })
    .config(fast_config());
    let mut registry = Registry::new();
    registry.register(service).unwrap();
    let mut config = worker_config(2);
    // a short visibility: without its extensions the message would come back many times
    config.visibility_timeout = Duration::from_secs(1);
    let w = start_with(pool.clone(), registry, config);
    let (integration, run) = w.h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    w.send(&Message::continue_run(run.id)).await;
    tokio::time::timeout(Duration::from_secs(20), started.notified())
        .await
        .unwrap();

    // three visibility timeouts later the message is still there, received once, hidden
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let (count, hidden): (i32, bool) =
            sqlx::query_as("SELECT receive_count, visible_at > now() FROM queue_messages")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!((count, hidden), (1, true));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(w.h.run(run.id).await.state, RunState::Processing);

    gate.notify_one();
    w.wait_for_state(run.id, RunState::Processed).await;
    w.wait_queue_empty("the message to be deleted").await;
    assert_eq!(w.h.activities(integration.id).await.len(), 1);
    w.stop().await;
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn metrics_are_served_beside_health_and_match_the_database(pool: PgPool) {
    tributary::telemetry::install().unwrap();
    let mut registry = Registry::new();
    registry.register(simple_service()).unwrap();
    let h = Harness::new(pool.clone(), registry);
    let queue = Arc::new(PgQueue::new(pool.clone(), PgQueueConfig::default()));
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let worker = Worker::new(pool, h.registry.clone(), queue.clone(), worker_config(1));
    let task = tokio::spawn(worker.run(Some(listener), shutdown.clone()));
    queue
        .send((&Message::process_integration(integration.id, true)).into())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "the run to be processed",
        || async { (h.run(run.id).await.state == RunState::Processed).then_some(()) },
    )
    .await;
    let answer = http_get(addr, "/metrics").await;
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    for line in [
        "tributary_runs{state=\"processed\"} 1",
        "tributary_runs_finished_total{state=\"processed\"} 1",
        "tributary_activities_written_total{platform=\"scripted\",kind=\"new\"} 3",
        "tributary_queue_messages{state=\"visible\"} 0",
        "tributary_dead_letters 0",
    ] {
        assert!(answer.contains(line), "{line} in {answer}");
    }
    assert!(
        http_get(addr, "/health")
            .await
            .contains("\"status\":\"ok\"")
    );
    shutdown.cancel();
    task.await.unwrap();
}
