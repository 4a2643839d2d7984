//! Issue 8 items 2 and 10 at the worker: it waits for PostgreSQL at start (alive, not ready), and
//! crashes of a healthy run leave nothing in the dead-letter queue.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tributary::maintenance::RunRescuerConfig;
use tributary::messages::Message;
use tributary::queue::{PgQueue, PgQueueConfig, Queue};
use tributary::store::runs::RunState;
use tributary::testkit::pg_server::free_port;
use tributary::testkit::{Harness, PgServer, ScriptedService, eventually};
use tributary::{Activity, Member, NewStream, ProcessorConfig, Registry, StreamOutcome};
use tributary_worker::{HealthEndpoint, Worker, WorkerConfig};

const PLATFORM: &str = "scripted";

fn service(hang: Arc<AtomicBool>, started: Arc<AtomicU32>) -> ScriptedService {
    let roots = vec![NewStream::new("only", json!({}))];
    ScriptedService::new(PLATFORM, roots, move |call| {
        let (hang, started) = (hang.clone(), started.clone());
        async move {
            started.fetch_add(1, Ordering::SeqCst);
            if hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let member = Member::new("user-ada", "ada");
            let id = format!("act-{}", call.stream.identifier);
            Ok(StreamOutcome::new().activity(Activity::new(id, "message", Utc::now(), member)))
        }
    })
}

fn config(url: &str) -> WorkerConfig {
    let mut config = WorkerConfig::new(url);
    config.concurrency = 2;
    config.processor = ProcessorConfig {
        worker_id: "recovery".to_owned(),
        lease_duration: Duration::from_secs(1),
        heartbeat_interval: Duration::from_millis(300),
        max_inline_wait: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(2),
        ..ProcessorConfig::default()
    };
    config.visibility_timeout = Duration::from_secs(1);
    config.receive_wait = Duration::from_millis(500);
    config.health = HealthEndpoint::Off;
    // the messages alone carry the run: no rescuer
    config.rescuer = RunRescuerConfig {
        resend_after: Duration::from_secs(3600),
        pending_resend_after: Duration::from_secs(3600),
        interval: Duration::from_secs(3600),
        ..RunRescuerConfig::default()
    };
    config
}

async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_started_while_postgresql_is_down_is_alive_waits_and_then_works() {
    let server = PgServer::init();
    let port = free_port();
    let mut config = config(&server.url());
    config.health = HealthEndpoint::At(format!("127.0.0.1:{port}").parse().unwrap());
    let mut registry = Registry::new();
    let (hang, started) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU32::new(0)),
    );
    registry.register(service(hang, started)).unwrap();
    let registry = Arc::new(registry);
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(tributary_worker::run_with_registry(
        config,
        registry.clone(),
        shutdown.clone(),
    ));

    // alive, not ready, while the database is down
    let (status, body) = eventually(Duration::from_secs(30), "the health endpoint", || async {
        http_get(port, "/health/live").await
    })
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(port, "/health/ready").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"starting\""), "{body}");
    assert!(!worker.is_finished(), "the worker waits for the database");

    server.start();
    eventually(
        Duration::from_secs(30),
        "the worker to be ready",
        || async {
            http_get(port, "/health/ready")
                .await
                .filter(|(status, _)| *status == 200)
        },
    )
    .await;
    let pool = PgPool::connect(&server.url()).await.unwrap();
    let mut h = Harness::new(pool.clone(), Registry::new());
    h.registry = registry;
    let (integration, _) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let queue = PgQueue::new(pool.clone(), PgQueueConfig::default());
    let message = Message::process_integration(integration.id, true);
    queue.send((&message).into()).await.unwrap();
    eventually(
        Duration::from_secs(30),
        "the onboarding processed",
        || async {
            let runs = h.runs(integration.id).await;
            runs.first()
                .filter(|r| r.state == RunState::Processed)
                .map(|_| ())
        },
    )
    .await;
    shutdown.cancel();
    worker.await.unwrap().unwrap();
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn five_crashes_of_a_healthy_run_leave_no_dead_letter(pool: PgPool) {
    let hang = Arc::new(AtomicBool::new(true));
    let started = Arc::new(AtomicU32::new(0));
    let mut registry = Registry::new();
    registry
        .register(service(hang.clone(), started.clone()))
        .unwrap();
    let h = Harness::new(pool.clone(), registry);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let queue = Arc::new(PgQueue::new(
        pool.clone(),
        PgQueueConfig {
            max_receives: 3,
            ..PgQueueConfig::default()
        },
    ));
    queue
        .send((&Message::continue_run(run.id)).into())
        .await
        .unwrap();
    let start = || {
        let worker = Worker::new(
            pool.clone(),
            h.registry.clone(),
            queue.clone(),
            config("postgres://unused"),
        );
        tokio::spawn(worker.run(None, CancellationToken::new()))
    };
    for crash in 1..=5 {
        let worker = start();
        eventually(
            Duration::from_secs(30),
            &format!("the run's stream running before crash {crash}"),
            || async { (started.load(Ordering::SeqCst) >= crash).then_some(()) },
        )
        .await;
        worker.abort();
        let _ = worker.await;
    }
    hang.store(false, Ordering::SeqCst);
    let worker = start();
    eventually(Duration::from_secs(30), "the run processed", || async {
        (h.run(run.id).await.state == RunState::Processed).then_some(())
    })
    .await;
    worker.abort();
    assert_eq!(h.activities(integration.id).await.len(), 1);
    let dead = queue.peek_dead_letters(10).await.unwrap();
    assert!(dead.is_empty(), "dead letters: {dead:?}");
}

/// At the rescuer's default interval (60 s), a killed worker's run is resumed by another worker
/// within its lease plus a few seconds.
#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_killed_workers_run_resumes_within_its_lease(pool: PgPool) {
    let hang = Arc::new(AtomicBool::new(true));
    let started = Arc::new(AtomicU32::new(0));
    let mut registry = Registry::new();
    registry
        .register(service(hang.clone(), started.clone()))
        .unwrap();
    let h = Harness::new(pool.clone(), registry);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let queue = Arc::new(PgQueue::new(pool.clone(), PgQueueConfig::default()));
    queue
        .send((&Message::continue_run(run.id)).into())
        .await
        .unwrap();
    let lease = Duration::from_secs(2);
    let start = || {
        let mut config = config("postgres://unused");
        config.processor.lease_duration = lease;
        config.processor.heartbeat_interval = Duration::from_millis(500);
        // the defaults: neither the message's redelivery nor the rescuer's interval may decide
        config.visibility_timeout = Duration::from_secs(60);
        config.rescuer = RunRescuerConfig::default();
        let worker = Worker::new(pool.clone(), h.registry.clone(), queue.clone(), config);
        tokio::spawn(worker.run(None, CancellationToken::new()))
    };
    let first = start();
    eventually(
        Duration::from_secs(30),
        "the run's stream running",
        || async { (started.load(Ordering::SeqCst) >= 1).then_some(()) },
    )
    .await;
    hang.store(false, Ordering::SeqCst);
    let second = start();
    first.abort();
    let killed = tokio::time::Instant::now();
    let _ = first.await;
    eventually(Duration::from_secs(30), "the run processed", || async {
        (h.run(run.id).await.state == RunState::Processed).then_some(())
    })
    .await;
    let took = killed.elapsed();
    second.abort();
    assert!(
        took <= lease + Duration::from_secs(4),
        "resumed {took:?} after the kill (lease {lease:?})"
    );
}
