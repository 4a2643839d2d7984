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
