//! Issue 12: every credential's quota in view — the resource each budget is kept under (as the
//! platform names it), how fast it is being spent, when it runs out at that pace, and exactly
//! which runs wait on it.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use serde_json::{Value, json};
use sqlx::PgPool;
use tributary::admin::quotas::{self, QuotaView};
use tributary::admin::views;
use tributary::http::{BudgetKey, HttpClients, HttpConfig, RateLimitInfo, SharedBudgets};
use tributary::store::runs::RunState;
use tributary::testkit::{Budget, FakeServer, Reply, ScriptedService};
use tributary::{Secret, StreamOutcome};

fn key() -> BudgetKey {
    BudgetKey::new("github", Some(&Secret::new("ghp_quota_test"))).with_resource("core")
}

fn answer(remaining: f64, reset_at: DateTime<Utc>) -> RateLimitInfo {
    RateLimitInfo {
        limit: Some(5000.0),
        remaining: Some(remaining),
        reset_at: Some(reset_at),
    }
}

/// The answer the rate was last computed from, as if recorded `by` earlier.
async fn backdate(pool: &PgPool, by: Duration) {
    sqlx::query(
        "UPDATE rate_limit_budgets SET observed_at = observed_at - make_interval(secs => $1)",
    )
    .bind(by.as_secs_f64())
    .execute(pool)
    .await
    .unwrap();
}

async fn the_quota(pool: &PgPool) -> QuotaView {
    let mut list = quotas::list(pool, Some("github")).await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    list.remove(0)
}

/// An answer of `key`'s budget whose turn was already taken (`counted`).
async fn seen(budgets: &SharedBudgets, remaining: f64, reset_at: DateTime<Utc>) {
    budgets
        .record(&key(), &answer(remaining, reset_at), None, true)
        .await
        .unwrap();
}

fn close(actual: Option<f64>, expected: f64, tolerance: f64) {
    let actual = actual.unwrap_or_else(|| panic!("no rate; expected {expected}"));
    assert!(
        (actual - expected).abs() <= tolerance,
        "{actual} is not {expected} ± {tolerance}"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn two_answers_of_one_window_give_the_spend_rate_and_when_the_budget_runs_out(pool: PgPool) {
    let budgets = SharedBudgets::new(pool.clone());
    let key = key();
    let reset = Utc::now() + chrono::Duration::hours(2);

    budgets
        .record(&key, &answer(4000.0, reset), None, false)
        .await
        .unwrap();
    let first = the_quota(&pool).await;
    assert_eq!(first.spend_per_min, None, "one answer tells no pace");
    assert_eq!(first.runs_out_at, None);

    // 100 spent in two minutes: 50 a minute; 3,900 left last 78 minutes, before the reset
    backdate(&pool, Duration::from_secs(120)).await;
    seen(&budgets, 3900.0, reset).await;
    let quota = the_quota(&pool).await;
    close(quota.spend_per_min, 50.0, 0.5);
    assert_eq!(quota.outlook, "runs out before reset");
    let runs_out = quota.runs_out_at.expect("runs out before the reset");
    let expected = Utc::now() + chrono::Duration::minutes(78);
    assert!(
        (runs_out - expected).num_seconds().abs() < 60,
        "{runs_out} is not about {expected}"
    );

    // the next minute at 20 a minute: the average moves most of the way (1 − e^−1) towards it
    backdate(&pool, Duration::from_secs(60)).await;
    seen(&budgets, 3880.0, reset).await;
    let smoothed = 50.0 + (1.0 - (-1.0_f64).exp()) * (20.0 - 50.0);
    close(the_quota(&pool).await.spend_per_min, smoothed, 0.5);

    // an answer right after the last one measures nothing yet
    seen(&budgets, 3879.0, reset).await;
    close(the_quota(&pool).await.spend_per_min, smoothed, 0.5);

    // ten quiet minutes at 1 a minute: it will not run out before the reset at this pace
    backdate(&pool, Duration::from_secs(600)).await;
    seen(&budgets, 3870.0, reset).await;
    let slow = the_quota(&pool).await;
    close(slow.spend_per_min, 1.0, 0.05);
    assert_eq!(slow.runs_out_at, None);
    assert_eq!(slow.outlook, "lasts until reset");

    let requests: i64 = sqlx::query_scalar("SELECT requests FROM rate_limit_budgets")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(requests, 1, "answers of turns already taken count nothing");
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_new_window_starts_the_rate_again(pool: PgPool) {
    let budgets = SharedBudgets::new(pool.clone());
    let key = key();
    let reset = Utc::now() + chrono::Duration::minutes(30);
    budgets
        .record(&key, &answer(1000.0, reset), None, false)
        .await
        .unwrap();
    backdate(&pool, Duration::from_secs(60)).await;
    seen(&budgets, 400.0, reset).await;
    let spending = the_quota(&pool).await;
    close(spending.spend_per_min, 600.0, 5.0);
    assert!(spending.runs_out_at.is_some(), "{spending:?}");

    // the window reset: a full budget and a later reset; the old pace no longer holds
    let next = reset + chrono::Duration::hours(1);
    seen(&budgets, 4999.0, next).await;
    let restarted = the_quota(&pool).await;
    assert_eq!(restarted.spend_per_min, None, "{restarted:?}");
    assert_eq!(restarted.runs_out_at, None);
    assert_eq!(restarted.remaining, Some(4999));

    // the new window's own pace, not blended with the old one
    backdate(&pool, Duration::from_secs(60)).await;
    seen(&budgets, 4989.0, next).await;
    close(the_quota(&pool).await.spend_per_min, 10.0, 0.2);

    // a late answer of the old window changes no rate
    seen(&budgets, 100.0, reset).await;
    close(the_quota(&pool).await.spend_per_min, 10.0, 0.2);
}

/// A GitHub-like platform: each answer names its resource and reports that resource's budget.
async fn resourceful_server() -> FakeServer {
    let server = FakeServer::start().await.unwrap();
    let reset = (Utc::now() + chrono::Duration::hours(1))
        .timestamp()
        .to_string();
    for (prefix, resource, limit) in [("/repos", "core", "5000"), ("/search", "search", "30")] {
        let reset = reset.clone();
        server.handle(prefix, move |_| {
            Reply::json(json!([]))
                .header("x-ratelimit-resource", resource)
                .header("x-ratelimit-limit", limit)
                .header("x-ratelimit-remaining", "20")
                .header("x-ratelimit-reset", reset.clone())
        });
    }
    server
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn each_budget_is_kept_under_the_resource_its_platform_names(pool: PgPool) {
    let server = resourceful_server().await;
    let clients = HttpClients::new();
    clients.share_budgets(pool.clone());
    let client = clients
        .get(HttpConfig::new(server.base_url()).platform("github"))
        .unwrap();
    let token = Secret::new("ghp_resources");
    for path in [
        "/repos/acme/widget/issues",
        "/search/issues",
        "/repos/acme/widget/forks",
        "/search/issues",
        "/repos/acme/widget/issues",
    ] {
        client
            .get_json::<Value>(path, &[], Some(&token))
            .await
            .unwrap();
    }
    let rows: Vec<(String, Option<i64>, i64)> = sqlx::query_as(
        "SELECT resource, limit_total, requests FROM rate_limit_budgets ORDER BY resource",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ("core".to_owned(), Some(5000), 3),
            ("search".to_owned(), Some(30), 2)
        ]
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_run_deferred_by_a_spent_budget_waits_on_exactly_that_credentials_quota(pool: PgPool) {
    // one request per hour per token, every answer naming the `core` resource
    let server = FakeServer::start().await.unwrap();
    server.budget(Budget {
        headers: |state| {
            let mut headers = state.headers();
            headers.push(("x-ratelimit-resource".into(), "core".into()));
            headers
        },
        ..Budget::per_window(1, Duration::from_secs(3600)).per_caller("authorization")
    });
    server.handle("/items", |_| Reply::json(json!([])));
    let base = server.base_url();
    // each stream makes `requests` requests with the integration's token
    let service = ScriptedService::new(PLATFORM, roots(&["items"]), move |call| {
        let base = base.clone();
        async move {
            let client = call.ctx.client(HttpConfig::new(&base))?;
            let token = call.ctx.credentials().secret("token");
            let requests = call.ctx.settings()["requests"].as_u64().unwrap_or(1);
            for _ in 0..requests {
                client
                    .get_json::<Value>("/items", &[], token.as_ref())
                    .await?;
            }
            Ok(StreamOutcome::new())
        }
    })
    .config(fast_config());
    let h = harness(pool.clone(), service).max_inline_wait(Duration::from_millis(200));
    h.registry.http().share_budgets(pool.clone());

    let (_, spender) = h
        .connect(
            PLATFORM,
            json!({"requests": 3}),
            json!({"token": "tok-spender"}),
        )
        .await
        .unwrap();
    let (_, frugal) = h
        .connect(
            PLATFORM,
            json!({"requests": 1}),
            json!({"token": "tok-frugal"}),
        )
        .await
        .unwrap();
    h.process(spender.id).await;
    h.process(frugal.id).await;
    assert_eq!(h.run(spender.id).await.state, RunState::Delayed);
    assert_eq!(h.run(frugal.id).await.state, RunState::Processed);

    let spender_key =
        BudgetKey::new(PLATFORM, Some(&Secret::new("tok-spender"))).with_resource("core");
    let frugal_key =
        BudgetKey::new(PLATFORM, Some(&Secret::new("tok-frugal"))).with_resource("core");
    let waiting: (Option<String>, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT waiting_platform, waiting_credential, waiting_resource FROM integration_runs
         WHERE id = $1",
    )
    .bind(spender.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        waiting,
        (
            Some(spender_key.platform.clone()),
            Some(spender_key.credential.clone()),
            Some("core".to_owned())
        )
    );

    let list = quotas::list(&pool, Some(PLATFORM)).await.unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let of = |key: &BudgetKey| {
        list.iter()
            .find(|q| q.credential == key.credential && q.resource == key.resource)
            .unwrap_or_else(|| panic!("no quota for {key:?} in {list:?}"))
    };
    assert_eq!(of(&spender_key).runs_waiting, 1);
    assert_eq!(of(&spender_key).waiting_runs, [spender.id]);
    assert_eq!(of(&spender_key).remaining, Some(0));
    assert_eq!(of(&frugal_key).runs_waiting, 0);
    assert!(of(&frugal_key).waiting_runs.is_empty());

    let detail = views::run(&pool, spender.id).await.unwrap();
    assert_eq!(detail.waiting_on.len(), 1);
    assert_eq!(detail.waiting_on[0].credential, spender_key.credential);
    assert!(
        views::run(&pool, frugal.id)
            .await
            .unwrap()
            .waiting_on
            .is_empty()
    );

    // resumed by an operator, it waits on nothing any more
    tributary::admin::continue_run(&pool, spender.id)
        .await
        .unwrap();
    let list = quotas::list(&pool, Some(PLATFORM)).await.unwrap();
    assert!(list.iter().all(|q| q.runs_waiting == 0), "{list:?}");
}
