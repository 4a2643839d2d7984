//! Issue 8 item 8: a credential's budget is shared in PostgreSQL by every process that opts in,
//! cleared at its reset, and paced from.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;
use tributary::Secret;
use tributary::http::{HttpClients, HttpConfig};
use tributary::testkit::{Budget, FakeServer, Reply};

const PLATFORM: &str = "budgeted";

async fn server(limit: u32, window: Duration) -> FakeServer {
    let server = FakeServer::start().await.unwrap();
    server.budget(Budget::per_window(limit, window));
    server.handle("/items", |_| Reply::json(json!([])));
    server
}

/// A process of its own: its clients, opted in to the shared budgets.
fn process(pool: &PgPool) -> HttpClients {
    let clients = HttpClients::new();
    clients.share_budgets(pool.clone());
    clients
}

fn config(server: &FakeServer, max_inline_wait: Duration) -> HttpConfig {
    HttpConfig::new(server.base_url())
        .platform(PLATFORM)
        .max_inline_wait(max_inline_wait)
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn another_process_knows_the_spent_budget_and_goes_on_at_its_reset(pool: PgPool) {
    let server = server(5, Duration::from_secs(2)).await;
    let token = Secret::new("tok-shared-budget");
    let short = Duration::from_millis(100);

    let first = process(&pool).get(config(&server, short)).unwrap();
    for _ in 0..5 {
        first
            .get_json::<Value>("/items", &[], Some(&token))
            .await
            .unwrap();
    }
    // another process (a second worker, `continue-run --inline`): nothing goes out before the
    // reset; the run is deferred
    let second = process(&pool);
    let error = second
        .get(config(&server, short))
        .unwrap()
        .get_json::<Value>("/items", &[], Some(&token))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), tributary::ErrorKind::RateLimited, "{error}");
    assert_eq!(server.request_count(), 5, "no request over the budget");

    // waiting inline, it goes out as soon as the window has reset, and is not refused
    let started = Instant::now();
    second
        .get(config(&server, Duration::from_secs(5)))
        .unwrap()
        .get_json::<Value>("/items", &[], Some(&token))
        .await
        .unwrap();
    assert!(
        started.elapsed() <= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.request_count(), 6);

    let (credential, limit, remaining, requests): (String, Option<i64>, Option<i64>, i64) =
        sqlx::query_as(
            "SELECT credential, limit_total, remaining, requests FROM rate_limit_budgets
             WHERE platform = $1",
        )
        .bind(PLATFORM)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(credential.len(), 32, "a fingerprint");
    assert!(!credential.contains("tok-"), "never the secret");
    assert_eq!((limit, remaining, requests), (Some(5), Some(4), 6));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_process_that_does_not_opt_in_writes_no_budget(pool: PgPool) {
    let server = server(5, Duration::from_secs(2)).await;
    let client = HttpClients::new()
        .get(config(&server, Duration::from_millis(100)))
        .unwrap();
    client
        .get_json::<Value>("/items", &[], Some(&Secret::new("tok")))
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM rate_limit_budgets")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_roomy_credential_takes_no_turn_and_an_unreported_answer_writes_nothing(pool: PgPool) {
    // a platform that reports no budget: nothing is known, nothing to share
    let server = FakeServer::start().await.unwrap();
    server.handle("/items", |_| Reply::json(json!([])));
    let client = process(&pool)
        .get(config(&server, Duration::from_millis(100)))
        .unwrap();
    for _ in 0..3 {
        client
            .get_json::<Value>("/items", &[], Some(&Secret::new("tok-roomy")))
            .await
            .unwrap();
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM rate_limit_budgets")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((server.request_count(), rows), (3, 0));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_budget_that_became_tight_elsewhere_is_paced_from_postgres(pool: PgPool) {
    let server = server(600, Duration::from_secs(600)).await;
    let token = Secret::new("tok-tightening");
    let short = Duration::from_millis(100);
    process(&pool)
        .get(config(&server, short))
        .unwrap()
        .get_json::<Value>("/items", &[], Some(&token))
        .await
        .unwrap();
    let (remaining, requests): (Option<i64>, i64) =
        sqlx::query_as("SELECT remaining, requests FROM rate_limit_budgets WHERE platform = $1")
            .bind(PLATFORM)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (remaining, requests),
        (Some(599), 1),
        "a roomy budget's answer is still recorded (its quota in view)"
    );
    // other processes spent it down to 2
    sqlx::query("UPDATE rate_limit_budgets SET remaining = 2 WHERE platform = $1")
        .bind(PLATFORM)
        .execute(&pool)
        .await
        .unwrap();
    // a new process learns it is tight and takes its turns: two go, the third waits for the reset
    let client = process(&pool).get(config(&server, short)).unwrap();
    for _ in 0..2 {
        client
            .get_json::<Value>("/items", &[], Some(&token))
            .await
            .unwrap();
    }
    let error = client
        .get_json::<Value>("/items", &[], Some(&token))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), tributary::ErrorKind::RateLimited, "{error}");
    assert_eq!(server.request_count(), 3, "nothing over the shared budget");
}
