//! The HTTP toolkit against the testkit's fake platform server: classification, announced waits,
//! pacing, pagination, redaction. (The header forms themselves, with a paused clock, are unit
//! tests of `http::waits`, `http::classify` and `http::pacing`.)
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use tributary::http::{Auth, HttpClient, HttpClients, HttpConfig, LinkPages, WaitCaps, per_second};
use tributary::testkit::{FakeServer, Fault, Reply};
use tributary::{ErrorKind, IntegrationError, Secret, Stream};

fn token() -> Secret {
    Secret::new("s3cret-token-value")
}

fn config(server: &FakeServer) -> HttpConfig {
    HttpConfig::new(server.base_url()).waits(WaitCaps {
        default_wait: Duration::from_secs(60),
        min_wait: Duration::from_millis(50),
        max_wait: Duration::from_secs(3600),
        ..WaitCaps::default()
    })
}

fn client(server: &FakeServer) -> HttpClient {
    HttpClient::new(config(server)).unwrap()
}

#[derive(Debug, Deserialize, PartialEq)]
struct Item {
    id: u64,
    user: User,
}

#[derive(Debug, Deserialize, PartialEq)]
struct User {
    login: String,
}

fn items(ids: &[u64]) -> Value {
    Value::Array(
        ids.iter()
            .map(|id| json!({"id": id, "user": {"login": format!("u{id}")}}))
            .collect(),
    )
}

fn wait_of(e: &IntegrationError) -> Duration {
    match e {
        IntegrationError::RateLimited { until, .. } => {
            (*until - Utc::now()).to_std().unwrap_or_default()
        }
        other => panic!("expected a rate limit, got {other:?}"),
    }
}

#[tokio::test]
async fn get_json_sends_the_credential_the_way_the_platform_wants() {
    let server = FakeServer::start().await.unwrap();
    server.route("/items", [Reply::json(items(&[1, 2]))]);
    let bearer = client(&server);
    let got = bearer
        .get_json::<Vec<Item>>("/items", &[("page", "1".into())], Some(&token()))
        .await
        .unwrap();
    assert_eq!(got.body.len(), 2);
    let forem = HttpClient::new(
        config(&server)
            .auth(Auth::Header("api-key".into()))
            .user_agent("my-integration/1.0")
            .header("Accept", "application/vnd.forem.api-v1+json"),
    )
    .unwrap();
    forem
        .get_json::<Vec<Item>>("/items", &[], Some(&token()))
        .await
        .unwrap();
    let keyed = HttpClient::new(config(&server).auth(Auth::Query("key".into()))).unwrap();
    keyed
        .get_json::<Vec<Item>>("/items", &[], Some(&token()))
        .await
        .unwrap();
    bearer
        .get_json::<Vec<Item>>("/items", &[], None)
        .await
        .unwrap();

    let requests = server.requests();
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer s3cret-token-value")
    );
    assert_eq!(requests[0].query("page"), Some("1"));
    assert_eq!(requests[1].header("api-key"), Some("s3cret-token-value"));
    assert_eq!(requests[1].header("user-agent"), Some("my-integration/1.0"));
    assert_eq!(
        requests[1].header("accept"),
        Some("application/vnd.forem.api-v1+json")
    );
    assert!(!requests[1].headers.contains_key("authorization"));
    assert_eq!(requests[2].query("key"), Some("s3cret-token-value"));
    assert!(requests.iter().take(2).all(|r| r.has_credential()));
    assert!(!requests[3].has_credential());
}

#[tokio::test]
async fn headers_of_one_request_replace_the_configured_ones_for_that_request_only() {
    let server = FakeServer::start().await.unwrap();
    server.route("/items", [Reply::json(items(&[1]))]);
    let github = HttpClient::new(
        config(&server)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28"),
    )
    .unwrap();
    let star = [("Accept", "application/vnd.github.star+json")];
    github
        .get_json_with::<Vec<Item>>("/items", &[], &star, Some(&token()))
        .await
        .unwrap();
    github
        .get_json_url_with::<Vec<Item>>(&server.url("/items?page=2"), &star, Some(&token()))
        .await
        .unwrap();
    github
        .get_json::<Vec<Item>>("/items", &[], Some(&token()))
        .await
        .unwrap();
    let requests = server.requests();
    for request in &requests[..2] {
        let accepts: Vec<_> = request.headers.get_all("accept").iter().collect();
        assert_eq!(
            accepts,
            ["application/vnd.github.star+json"],
            "replaced, not added"
        );
        assert_eq!(request.header("x-github-api-version"), Some("2022-11-28"));
        assert!(request.has_credential());
    }
    assert_eq!(requests[1].query("page"), Some("2"));
    assert_eq!(
        requests[2].header("accept"),
        Some("application/vnd.github+json"),
        "the next request has the configured header again"
    );
}

#[tokio::test]
async fn a_short_retry_after_is_slept_inline_and_the_request_repeated() {
    let server = FakeServer::start().await.unwrap();
    server.route(
        "/items",
        [
            Reply::error(429, "slow down").header("Retry-After", "0.3"),
            Reply::json(items(&[1])),
        ],
    );
    let started = Instant::now();
    let got = client(&server)
        .get_json::<Vec<Item>>("/items", &[], Some(&token()))
        .await
        .unwrap();
    assert_eq!(got.body[0].id, 1);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(server.requests_to("/items"), 2);
}

#[tokio::test]
async fn a_long_wait_is_a_deferral_and_the_credential_stays_blocked_without_requests() {
    let server = FakeServer::start().await.unwrap();
    server.route("/items", [Reply::rate_limited(120)]);
    let client = client(&server);
    let err = client
        .get_json::<Vec<Item>>("/items", &[], Some(&token()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    let wait = wait_of(&err);
    assert!(
        wait > Duration::from_secs(118) && wait <= Duration::from_secs(120),
        "{wait:?}"
    );
    assert_eq!(
        err.to_string().split_once(": ").unwrap().1,
        "GET /items: 429 Too Many Requests: rate limit exceeded"
    );
    // the same credential: refused at once, no request
    let again = client
        .get_json::<Vec<Item>>("/other", &[], Some(&token()))
        .await
        .unwrap_err();
    assert!(wait_of(&again) > Duration::from_secs(110));
    assert_eq!(
        server.request_count(),
        1,
        "a blocked credential sends nothing"
    );
    // another credential is paced on its own
    server.route("/other", [Reply::json(items(&[]))]);
    client
        .get_json::<Vec<Item>>("/other", &[], Some(&Secret::new("another-token")))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_exhausted_budget_on_a_success_delays_the_next_request() {
    let server = FakeServer::start().await.unwrap();
    server.route(
        "/items",
        [
            Reply::json(items(&[1]))
                .header("X-RateLimit-Limit", "10")
                .header("X-RateLimit-Remaining", "0")
                .header("X-RateLimit-Reset-After", "0.4"),
            Reply::json(items(&[2])),
        ],
    );
    let client = client(&server);
    client
        .get_json::<Vec<Item>>("/items", &[], Some(&token()))
        .await
        .unwrap();
    let started = Instant::now();
    client
        .get_json::<Vec<Item>>("/items", &[], Some(&token()))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_stack_exchange_backoff_in_a_body_is_obeyed() {
    let server = FakeServer::start().await.unwrap();
    server.route(
        "/answers",
        [
            Reply::json(json!({"items": [], "has_more": false, "backoff": 0.4})),
            Reply::json(json!({"items": [], "has_more": false})),
        ],
    );
    let client = client(&server);
    client
        .get_json::<Value>("/answers", &[], None)
        .await
        .unwrap();
    let started = Instant::now();
    client
        .get_json::<Value>("/answers", &[], None)
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(350));
}

#[tokio::test]
async fn a_steady_rate_paces_requests() {
    let server = FakeServer::start().await.unwrap();
    server.route("/items", [Reply::json(items(&[]))]);
    let client = HttpClient::new(config(&server).rate(per_second(10).unwrap())).unwrap();
    let started = Instant::now();
    for _ in 0..15 {
        client
            .get_json::<Vec<Item>>("/items", &[], Some(&token()))
            .await
            .unwrap();
    }
    // a burst of 10, then one every 100 ms
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn githubs_secondary_limit_is_a_rate_limit() {
    let server = FakeServer::start().await.unwrap();
    server.route(
        "/repos/a/b/issues",
        [Reply::error(
            403,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        )
        .header("x-ratelimit-remaining", "4321")],
    );
    let err = client(&server)
        .get_json::<Value>("/repos/a/b/issues", &[], Some(&token()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert!(
        wait_of(&err) > Duration::from_secs(55),
        "GitHub's one minute"
    );
}

#[tokio::test]
async fn failures_are_classified_and_never_show_the_token() {
    let server = FakeServer::start().await.unwrap();
    server
        .route("/gone", [Reply::error(404, "Not Found")])
        .route("/down", [Reply::unavailable()])
        .route(
            "/slow",
            [Reply::json(items(&[])).delay(Duration::from_secs(5))],
        )
        .route(
            "/bad",
            [Reply::malformed(
                r#"[{"id": 1, "user": {"login": "a"}}, {"id": 2, "user": {"login": 7}}]"#,
            )],
        )
        .route("/missing", [Reply::malformed(r#"[{"id": 1, "user": {}}]"#)])
        .route("/truncated", [Reply::malformed(r#"[{"id": 1, "us"#)]);
    let client = HttpClient::new(
        config(&server)
            .auth(Auth::Query("access_token".into()))
            .timeout(Duration::from_millis(300)),
    )
    .unwrap();
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            client
                .get_json::<Vec<Item>>(path, &[("q", "x".into())], Some(&token()))
                .await
                .unwrap_err()
        }
    };
    let gone = get("/gone").await;
    assert_eq!(gone.kind(), ErrorKind::Fatal);
    assert_eq!(gone.to_string(), "GET /gone: 404 Not Found: Not Found");
    let down = get("/down").await;
    assert_eq!(down.kind(), ErrorKind::Retryable);
    let slow = get("/slow").await;
    assert_eq!(
        (slow.kind(), slow.to_string().as_str()),
        (ErrorKind::Retryable, "GET /slow timed out")
    );
    let bad = get("/bad").await;
    assert_eq!(bad.kind(), ErrorKind::Fatal);
    assert!(
        bad.to_string()
            .starts_with("GET /bad: malformed body at `[1].user.login`: invalid type: integer `7`, expected a string"),
        "{bad}"
    );
    let missing = get("/missing").await;
    assert!(
        missing
            .to_string()
            .starts_with("GET /missing: malformed body at `[0].user`: missing field `login`"),
        "{missing}"
    );
    let truncated = get("/truncated").await;
    assert!(
        truncated.to_string().contains("malformed body"),
        "{truncated}"
    );
    for e in [&gone, &down, &slow, &bad, &missing, &truncated] {
        let everything = format!("{e} {e:?} {:?}", e.chain());
        assert!(!everything.contains("s3cret"), "{everything}");
    }
    let shown = format!("{client:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
}

#[tokio::test]
async fn link_pages_are_followed_on_the_same_origin_only() {
    let server = FakeServer::start().await.unwrap();
    let next = server.url("/items?page=2");
    server
        .route_query("/items", &[("page", "2")], [Reply::json(items(&[3]))])
        .route(
            "/items",
            [Reply::json(items(&[1, 2])).header("Link", format!("<{next}>; rel=\"next\""))],
        );
    let client = client(&server);
    let first_stream = stream(None);
    let pages = LinkPages::of(&first_stream).unwrap();
    let first = client
        .get_json::<Vec<Item>>("/items", &[], Some(&token()))
        .await
        .unwrap();
    let token_value = pages
        .next(&first.headers, first.body.iter().map(|i| i.id))
        .unwrap()
        .unwrap();
    let second_stream = stream(Some(token_value));
    let pages = LinkPages::of(&second_stream).unwrap();
    let second = client
        .get_json_url::<Vec<Item>>(pages.url().unwrap(), Some(&token()))
        .await
        .unwrap();
    assert_eq!(second.body[0].id, 3);
    assert_eq!(pages.next(&second.headers, [3]).unwrap(), None);

    let err = client
        .get_json_url::<Value>(
            "http://elsewhere.example/items?access_token=x",
            Some(&token()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fatal);
    assert!(!err.to_string().contains("access_token"), "{err}");
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn a_redirect_to_another_host_is_not_followed() {
    let server = FakeServer::start().await.unwrap();
    let other = FakeServer::start().await.unwrap();
    other.route("/steal", [Reply::json(json!([]))]);
    server.route(
        "/moved",
        [Reply::status(302).header("Location", other.url("/steal"))],
    );
    let err = client(&server)
        .get_json::<Value>("/moved", &[], Some(&token()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fatal);
    assert_eq!(other.request_count(), 0, "the credential never left");
}

#[tokio::test]
async fn the_fake_server_scripts_faults_routes_and_handlers() {
    let server = FakeServer::start().await.unwrap();
    server
        .handle("/users/", |r| {
            Reply::json(json!({"login": r.path.trim_start_matches("/users/")}))
        })
        .route("/users/fixed", [Reply::json(json!({"login": "scripted"}))])
        .inject(Fault::on("/users/", 2, Reply::unavailable()))
        .inject_later(Fault::any(1, Reply::rate_limited(1)).after(2));
    let client = HttpClient::new(config(&server).waits(WaitCaps {
        min_wait: Duration::from_millis(10),
        ..WaitCaps::default()
    }))
    .unwrap();
    let get = |path: &'static str| {
        let client = client.clone();
        async move { client.get_json::<Value>(path, &[], None).await }
    };
    assert_eq!(
        get("/users/a").await.unwrap_err().kind(),
        ErrorKind::Retryable
    );
    assert_eq!(
        get("/users/a").await.unwrap_err().kind(),
        ErrorKind::Retryable
    );
    assert_eq!(get("/users/a").await.unwrap().body, json!({"login": "a"}));
    assert_eq!(
        get("/users/fixed").await.unwrap().body,
        json!({"login": "scripted"})
    );
    assert_eq!(
        get("/nowhere").await.unwrap_err().to_string(),
        "GET /nowhere: 404 Not Found: no fake route for GET /nowhere"
    );
    // the 5th request met the 429 (waited 1 s inline, then asked again): 6 requests in all
    assert_eq!(server.request_count(), 6);
    assert_eq!(server.requests()[4].path, "/nowhere");
}

#[tokio::test]
async fn clients_are_kept_per_configuration() {
    let server = FakeServer::start().await.unwrap();
    let clients = HttpClients::new();
    let a = clients.get(config(&server)).unwrap();
    let b = clients.get(config(&server)).unwrap();
    assert!(std::sync::Arc::ptr_eq(
        &a.pacer(Some(&token())),
        &b.pacer(Some(&token()))
    ));
    let c = clients.get(config(&server).user_agent("other")).unwrap();
    assert!(!std::sync::Arc::ptr_eq(
        &a.pacer(Some(&token())),
        &c.pacer(Some(&token()))
    ));
    assert!(HttpClient::new(HttpConfig::new("not a url")).is_err());
    assert!(HttpClient::new(HttpConfig::new("ftp://x")).is_err());
}

fn stream(page: Option<Value>) -> Stream {
    Stream {
        id: uuid::Uuid::nil(),
        run_id: uuid::Uuid::nil(),
        parent_id: None,
        identifier: "items".into(),
        chain_identifier: "items".into(),
        source: "items".into(),
        data: json!({}),
        page_number: 1,
        page,
        retries: 0,
    }
}
