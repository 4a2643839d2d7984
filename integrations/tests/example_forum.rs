//! The example integration through the real processor, PostgreSQL and its own HTTP server.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use sqlx::PgPool;
use tributary::store::runs::RunState;
use tributary::store::streams::StreamState;
use tributary::testkit::{Harness, eventually};
use tributary::{ErrorKind, RunOutcome};
use tributary_integrations::ExampleForumIntegration;
use tributary_integrations::example_forum::PLATFORM;
use tributary_integrations::example_forum::server::{
    DatasetSpec, ExampleForumServer, ForumData, ServerOptions, author,
};

const SPEC: DatasetSpec = DatasetSpec {
    channels: 2,
    posts_per_channel: 25,
    replies_per_post: 2,
    members: 7,
};

async fn setup(pool: PgPool, options: ServerOptions) -> (Harness, ExampleForumServer) {
    let server = ExampleForumServer::start(ForumData::generate(SPEC), options)
        .await
        .unwrap();
    // refusals of more than half a second defer the run (the server's windows are 2 s)
    let service = ExampleForumIntegration::new().max_inline_wait(Duration::from_millis(500));
    let harness = Harness::with_service(pool, service);
    (harness, server)
}

fn settings(server: &ExampleForumServer) -> serde_json::Value {
    json!({"base_url": server.base_url(), "per_page": 10})
}

fn creds(server: &ExampleForumServer) -> serde_json::Value {
    json!({"token": server.token()})
}

fn expected_ids(server: &ExampleForumServer) -> BTreeSet<String> {
    server.edit(|d| {
        d.posts
            .iter()
            .map(|p| format!("post:{}", p.id))
            .chain(d.replies.iter().map(|r| format!("reply:{}", r.id)))
            .collect()
    })
}

async fn stored_ids(h: &Harness, integration_id: uuid::Uuid) -> BTreeSet<String> {
    h.activities(integration_id)
        .await
        .into_iter()
        .map(|a| a.source_id)
        .collect()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn onboarding_over_many_pages_produces_exactly_the_forum(pool: PgPool) {
    let (h, server) = setup(pool, ServerOptions::default()).await;
    let (integration, run) = h
        .connect(PLATFORM, settings(&server), creds(&server))
        .await
        .unwrap();
    assert_eq!(h.process(run.id).await, RunOutcome::Processed);

    let activities = h.activities(integration.id).await;
    assert_eq!(activities.len(), 150, "50 posts and 100 replies");
    assert_eq!(stored_ids(&h, integration.id).await, expected_ids(&server));
    let reply = activities
        .iter()
        .find(|a| a.activity_type == "reply")
        .unwrap();
    assert!(
        reply
            .source_parent_id
            .as_deref()
            .unwrap()
            .starts_with("post:")
    );
    assert_eq!(
        reply.channel.as_deref().map(|c| c.starts_with("channel-")),
        Some(true)
    );
    let members = h.members(PLATFORM).await;
    assert_eq!(members.len(), 7);
    assert_eq!(members[0].username, "member0");
    assert_eq!(members[0].display_name.as_deref(), Some("Member 0"));
    // 1 channel list + per channel 3 pages of posts and 5 pages of replies
    assert_eq!(server.requests(), 1 + 2 * (3 + 5));
    let run = h.run(run.id).await;
    assert_eq!((run.streams_processed, run.activities_created), (17, 150));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_check_reads_only_what_is_new(pool: PgPool) {
    let (h, server) = setup(pool, ServerOptions::default()).await;
    let (integration, run) = h
        .connect(PLATFORM, settings(&server), creds(&server))
        .await
        .unwrap();
    h.process(run.id).await;

    let check = h.check(integration.id).await.unwrap();
    assert_eq!(h.process(check.id).await, RunOutcome::Processed);
    assert_eq!(
        h.run(check.id).await.activities_created,
        0,
        "a second check adds nothing"
    );

    let now = Utc::now();
    let new_post = server.edit(|d| d.add_post("channel-1", author(3), "Fresh news", now));
    server.edit(|d| d.add_reply(new_post, author(4), "Welcome", now));
    server.edit(|d| d.add_reply(1, author(5), "Late answer to the first post", now));
    let before = server.requests();
    let check = h.check(integration.id).await.unwrap();
    assert_eq!(h.process(check.id).await, RunOutcome::Processed);
    let check = h.run(check.id).await;
    assert_eq!(check.activities_created, 3);
    assert_eq!(
        server.requests() - before,
        1 + 2 * 2,
        "one page per list: only new items"
    );
    assert_eq!(stored_ids(&h, integration.id).await, expected_ids(&server));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_429_defers_the_run_to_the_platforms_reset_and_the_resumed_run_loses_nothing(
    pool: PgPool,
) {
    let options = ServerOptions {
        rate_limit: Some((6, Duration::from_secs(2))),
        ..ServerOptions::default()
    };
    let (h, server) = setup(pool, options).await;
    let (integration, run) = h
        .connect(PLATFORM, settings(&server), creds(&server))
        .await
        .unwrap();

    let started = Utc::now();
    let RunOutcome::Delayed { until, reason } = h.process(run.id).await else {
        panic!("expected a deferral")
    };
    assert!(
        reason.starts_with("rate limited while processing"),
        "{reason}"
    );
    assert!(
        until > started && until <= started + chrono::Duration::seconds(3),
        "{until} vs {started}"
    );
    let streams = h.streams(run.id).await;
    assert!(
        streams.iter().all(|s| s.retries == 0),
        "a 429 consumes no retry"
    );

    // resume each time the platform's reset comes, until the run ends
    let final_run = eventually(Duration::from_secs(60), "the run to end", || async {
        match h.process(run.id).await {
            RunOutcome::Processed => Some(h.run(run.id).await),
            RunOutcome::Failed { message } => panic!("{message}"),
            _ => None,
        }
    })
    .await;
    assert_eq!(final_run.state, RunState::Processed);
    assert_eq!(stored_ids(&h, integration.id).await, expected_ids(&server));
    assert_eq!(
        h.activities(integration.id).await.len(),
        150,
        "nothing doubled"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_burst_of_5xx_is_retried(pool: PgPool) {
    let (h, server) = setup(pool, ServerOptions::default()).await;
    let (integration, run) = h
        .connect(PLATFORM, settings(&server), creds(&server))
        .await
        .unwrap();
    server.fail_next(2);
    let (_, run) = h.run_to_end(run.id).await;
    assert_eq!(run.state, RunState::Processed);
    assert_eq!(h.activities(integration.id).await.len(), 150);
    let retried: i32 = h.streams(run.id).await.iter().map(|s| s.retries).sum();
    assert_eq!(retried, 2);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_wrong_token_is_a_fatal_stream_error_with_the_platforms_message(pool: PgPool) {
    let (h, server) = setup(pool, ServerOptions::default()).await;
    let (_, run) = h
        .connect(
            PLATFORM,
            settings(&server),
            json!({"token": "expired-token"}),
        )
        .await
        .unwrap();
    let RunOutcome::Failed { message } = h.process(run.id).await else {
        panic!("expected failure")
    };
    assert_eq!(
        message,
        "1 stream(s) ended in error; first: `channels`: GET /api/v1/channels: 401 Unauthorized: bad credentials"
    );
    let stream = &h.streams(run.id).await[0];
    assert_eq!((stream.state, stream.retries), (StreamState::Error, 1));
    assert_eq!(stream.error_record().unwrap().kind, ErrorKind::Fatal);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn configured_channels_skip_the_channel_list(pool: PgPool) {
    let (h, server) = setup(pool, ServerOptions::default()).await;
    let settings = json!({"base_url": server.base_url(), "channels": ["channel-0"]});
    let (integration, run) = h.connect(PLATFORM, settings, creds(&server)).await.unwrap();
    assert_eq!(h.process(run.id).await, RunOutcome::Processed);
    assert_eq!(h.activities(integration.id).await.len(), 75);
    assert_eq!(server.requests(), 2, "100 per page: one request per list");
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn settings_that_are_missing_or_wrong_are_refused_at_connect_time(pool: PgPool) {
    let (h, server) = setup(pool, ServerOptions::default()).await;
    let err = h
        .connect(
            PLATFORM,
            json!({"base_url": "nope", "per_page": 0}),
            json!({}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "settings for platform `example-forum` refused: invalid settings: `base_url` must be an http(s) URL, not `nope`; \
         `per_page` must be between 1 and 100, not 0; `credentials.token` is required (the forum's API token)"
    );
    let err = h
        .connect("myspace", settings(&server), creds(&server))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown platform `myspace`; known platforms: example-forum"
    );
    assert_eq!(
        h.integration_count().await,
        0,
        "nothing is created when settings are refused"
    );
}
