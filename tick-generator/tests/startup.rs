//! The tick generator's start, as an operator starts it (the binary): it waits for a database
//! that is down, says so, and emits once the database answers; SIGTERM while it waits stops it
//! cleanly; a database that refuses it is an error at once.
#![allow(clippy::unwrap_used)]

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};
use tributary::testkit::{PgServer, eventually};

const WAITING: &str = "is not reachable yet: the tick generator waits for it";

fn start(database_url: &str) -> (Child, Lines<BufReader<ChildStderr>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tributary-tick-generator"))
        .env("DATABASE_URL", database_url)
        .env("TRIBUTARY_TICK_METRICS_ADDR", "off")
        .env("RUST_LOG", "info,sqlx=warn")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    (child, stderr)
}

/// Reads the process's log until a line contains `wanted` (within 30 s); the lines read.
async fn read_until(lines: &mut Lines<BufReader<ChildStderr>>, wanted: &str) -> String {
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(wanted) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(found, "no line with {wanted:?} in the log:\n{seen}");
    seen
}

async fn terminate(mut child: Child) -> ExitStatus {
    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the tick generator did not stop within 30 s of SIGTERM")
        .unwrap()
}

#[tokio::test]
async fn a_tick_generator_started_while_postgresql_is_down_waits_and_then_emits() {
    let server = PgServer::init();
    let (child, mut log) = start(&server.url());
    let seen = read_until(&mut log, WAITING).await;
    assert!(
        seen.contains(&format!("PostgreSQL at {}", server.url())),
        "the line names the database: {seen}"
    );
    // a second try, still waiting: it neither exited nor gave up
    read_until(&mut log, WAITING).await;

    server.start();
    let pool = PgPool::connect(&server.url()).await.unwrap();
    eventually(Duration::from_secs(60), "a tick emitted", || async {
        let emitted: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM tick_slots")
            .fetch_one(&pool)
            .await
            .ok();
        emitted.filter(|n| *n >= 1)
    })
    .await;
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM queue_messages")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(queued, 1, "the slot's tick is in the queue");
    assert!(terminate(child).await.success());
}

#[tokio::test]
async fn sigterm_while_waiting_for_the_database_stops_the_tick_generator_cleanly() {
    let server = PgServer::init();
    let (child, mut log) = start(&server.url());
    read_until(&mut log, WAITING).await;
    let status = terminate(child).await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn a_database_that_refuses_the_tick_generator_is_an_error_at_once() {
    // the shared server answers, but knows no such role: waiting would not mend that
    let url = "postgres://no_such_role_for_tributary@127.0.0.1:5432/postgres";
    let (mut child, mut log) = start(url);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the tick generator should exit at once")
        .unwrap();
    assert!(!status.success());
    let mut rest = String::new();
    while let Ok(Some(line)) = log.next_line().await {
        rest.push_str(&line);
        rest.push('\n');
    }
    assert!(
        rest.contains("cannot connect to PostgreSQL at"),
        "the error says what is wrong: {rest}"
    );
    assert!(!rest.contains(WAITING), "{rest}");
}
