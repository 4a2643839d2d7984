//! Route buckets, the global limit and invalid-request accounting through the real client.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tributary::http::{HttpClient, HttpConfig, InvalidRequestLimit, Route, RouteBuckets, WaitCaps};
use tributary::testkit::{FakeServer, Reply};
use tributary::{ErrorKind, Secret};

const DISCORD: RouteBuckets = RouteBuckets::new("discord", |path| {
    Route::major_parameter(path, &["channels", "guilds", "webhooks"])
});

fn client(server: &FakeServer) -> HttpClient {
    HttpClient::new(
        HttpConfig::new(server.base_url())
            .waits(WaitCaps {
                default_wait: Duration::from_secs(60),
                min_wait: Duration::from_millis(50),
                max_wait: Duration::from_secs(3600),
            })
            .route_buckets(DISCORD)
            .invalid_requests(InvalidRequestLimit {
                limit: 3,
                per: Duration::from_secs(600),
            }),
    )
    .unwrap()
}

fn token() -> Secret {
    Secret::new("bot-token-buckets")
}

fn bucket(hash: &str, remaining: u32, reset_after: &str) -> Reply {
    Reply::json(json!([]))
        .header("X-RateLimit-Bucket", hash)
        .header("X-RateLimit-Limit", "5")
        .header("X-RateLimit-Remaining", remaining.to_string())
        .header("X-RateLimit-Reset-After", reset_after)
}

#[tokio::test]
async fn an_exhausted_bucket_delays_its_routes_only() {
    let server = FakeServer::start().await.unwrap();
    server.route(
        "/channels/1/messages",
        [
            bucket("m", 4, "5"),
            bucket("m", 0, "0.5"),
            bucket("m", 4, "5"),
        ],
    );
    server.route("/channels/1/threads/archived/public", [bucket("m", 3, "5")]);
    server.route("/channels/2/messages", [bucket("m", 4, "5")]);
    let client = client(&server);
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            client
                .get_json::<Value>(path, &[], Some(&token()))
                .await
                .unwrap()
        }
    };
    get("/channels/1/messages").await;
    get("/channels/1/threads/archived/public").await;
    get("/channels/1/messages").await; // the bucket is now spent for 0.5 s
    let started = Instant::now();
    get("/channels/2/messages").await;
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "another channel: not delayed"
    );
    get("/channels/1/threads/archived/public").await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "the same bucket: waits for its reset ({:?})",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_global_429_blocks_every_route_of_the_credential() {
    let server = FakeServer::start().await.unwrap();
    server.route(
        "/channels/1/messages",
        [Reply::json(
            json!({"message": "You are being rate limited.", "retry_after": 64.57, "global": true}),
        )
        .with_status(429)
        .header("X-RateLimit-Global", "true")
        .header("X-RateLimit-Scope", "global")],
    );
    let client = client(&server);
    let err = client
        .get_json::<Value>("/channels/1/messages", &[], Some(&token()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    let again = client
        .get_json::<Value>("/guilds/9/channels", &[], Some(&token()))
        .await
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::RateLimited);
    assert_eq!(server.request_count(), 1, "nothing else went out");
}

#[tokio::test]
async fn too_many_invalid_answers_stop_the_credential_before_a_ban() {
    let server = FakeServer::start().await.unwrap();
    server.route(
        "/channels/1/messages",
        [Reply::error(403, "Missing Access").with_status(403)],
    );
    let client = client(&server);
    for _ in 0..3 {
        let err = client
            .get_json::<Value>("/channels/1/messages", &[], Some(&token()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Fatal);
        assert!(err.to_string().contains("Missing Access"), "{err}");
    }
    let err = client
        .get_json::<Value>("/channels/1/messages", &[], Some(&token()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fatal);
    assert!(
        err.to_string().contains("before the platform bans it"),
        "{err}"
    );
    assert_eq!(server.request_count(), 3, "the fourth was not sent");
    let other = Secret::new("another-bot");
    let err = client
        .get_json::<Value>("/channels/1/messages", &[], Some(&other))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("Missing Access"),
        "another credential counts on its own"
    );
}
