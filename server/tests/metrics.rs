//! `/metrics` scraped during and after an onboarding processed by a worker in this process; the
//! figures are checked against the database.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{TestServer, connect_forum, start_forum, start_worker};
use sqlx::PgPool;

/// The value of the sample `name{labels…}` (all of `labels` among its labels), if exposed.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn scrape(server: &TestServer) -> String {
    let response = server
        .http
        .get(server.url("/metrics"))
        .bearer_auth(&server.reader)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

async fn count(pool: &PgPool, sql: &'static str) -> f64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap() as f64
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn metrics_scraped_during_and_after_a_run_match_the_database(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let forum = start_forum(Duration::from_millis(20)).await;
    let worker = start_worker(&pool);
    let (_, run) = connect_forum(&server, &forum.base_url(), forum.token()).await;

    // during the run: it is active in the gauge as in the database
    server
        .wait_for(
            &format!("/api/v1/runs/{run}"),
            Duration::from_secs(60),
            |d| d["progress"]["streams_processed"].as_i64() > Some(0),
        )
        .await;
    let during = scrape(&server).await;
    let active: f64 = ["pending", "processing", "delayed", "processed"]
        .iter()
        .map(|s| sample(&during, "tributary_runs", &[("state", s)]).unwrap())
        .sum();
    assert_eq!(active, 1.0, "{during}");
    assert!(sample(&during, "tributary_queue_messages", &[("state", "visible")]).is_some());

    let detail = server
        .wait_for(
            &format!("/api/v1/runs/{run}"),
            Duration::from_secs(90),
            |d| d["run"]["state"] == "processed",
        )
        .await;
    let after = scrape(&server).await;
    let platform = ("platform", "example-forum");
    let activities = count(&pool, "SELECT count(*) FROM activities").await;
    assert_eq!(activities, 480.0);
    assert_eq!(
        sample(
            &after,
            "tributary_activities_written_total",
            &[platform, ("kind", "new")]
        ),
        Some(activities)
    );
    assert_eq!(
        sample(&after, "tributary_members_written_total", &[platform]),
        Some(count(&pool, "SELECT count(*) FROM members").await)
    );
    let processed = count(
        &pool,
        "SELECT count(*) FROM integration_streams WHERE state = 'processed'",
    )
    .await;
    assert_eq!(
        processed,
        detail["progress"]["streams_processed"].as_f64().unwrap()
    );
    assert_eq!(
        sample(
            &after,
            "tributary_streams_total",
            &[platform, ("outcome", "processed")]
        ),
        Some(processed)
    );
    let requests = sample(
        &after,
        "tributary_http_requests_total",
        &[platform, ("status", "200")],
    )
    .unwrap();
    assert!(
        requests >= processed,
        "{requests} requests for {processed} streams"
    );
    assert_eq!(
        sample(&after, "tributary_runs", &[("state", "processed")]),
        Some(
            count(
                &pool,
                "SELECT count(*) FROM integration_runs WHERE state = 'processed'"
            )
            .await
        )
    );
    assert_eq!(
        sample(
            &after,
            "tributary_runs_finished_total",
            &[("state", "processed")]
        ),
        Some(1.0)
    );
    let stats = server.queue.stats().await.unwrap();
    assert_eq!(
        sample(&after, "tributary_dead_letters", &[]),
        Some(stats.dead_letters as f64)
    );
    worker.cancel();
}
