//! OAuth2 client credentials through the HTTP toolkit, against a fake token endpoint and API:
//! one token shared by concurrent requests, refreshed before it expires and once on a 401,
//! never shown in errors.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use tributary::http::{Auth, ClientCredentials, HttpClient, HttpConfig};
use tributary::testkit::{FakeServer, Reply, TokenIssuer};
use tributary::{ErrorKind, Secret};

const ID: &str = "app-id-123";
const SECRET: &str = "app-secret-456";

async fn setup(lifetime: u64) -> (FakeServer, TokenIssuer, HttpClient) {
    let server = FakeServer::start().await.unwrap();
    let issuer = TokenIssuer::serve(&server, "/api/v1/access_token", ID, SECRET, lifetime);
    let guard = issuer.clone();
    server.handle("/r/", move |request| {
        if guard.authorizes(request) {
            Reply::json(json!({"path": request.path}))
        } else {
            Reply::json(json!({"message": "Unauthorized", "error": 401})).with_status(401)
        }
    });
    let grant = ClientCredentials::new(server.url("/api/v1/access_token"), ID);
    let client = HttpClient::new(
        HttpConfig::new(server.base_url())
            .auth(Auth::ClientCredentials(grant))
            .user_agent("test:tributary:1.0 (by /u/tributary)"),
    )
    .unwrap();
    (server, issuer, client)
}

fn secret() -> Secret {
    Secret::new(SECRET)
}

#[tokio::test]
async fn one_token_is_fetched_and_shared_by_concurrent_requests() {
    let (server, issuer, client) = setup(86_400).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .get_json::<Value>(&format!("/r/sub{i}/new"), &[], Some(&secret()))
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(issuer.issued(), 1, "one token for all");
    assert_eq!(client.tokens().fetched(), 1);
    let token_requests: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/access_token")
        .collect();
    assert_eq!(token_requests.len(), 1);
    assert_eq!(
        token_requests[0].header("user-agent"),
        Some("test:tributary:1.0 (by /u/tributary)"),
        "the token request identifies the application too"
    );
    assert!(
        server
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/r/"))
            .all(|r| r.header("authorization") == Some("Bearer token-1"))
    );
}

#[tokio::test]
async fn a_token_about_to_expire_is_fetched_again() {
    // a token living no longer than the refresh margin is refreshed before every use
    let (_server, issuer, client) = setup(60).await;
    for _ in 0..3 {
        client
            .get_json::<Value>("/r/rust/new", &[], Some(&secret()))
            .await
            .unwrap();
    }
    assert_eq!(issuer.issued(), 3);
    // a long-lived one is kept
    issuer.set_lifetime(3600);
    for _ in 0..3 {
        client
            .get_json::<Value>("/r/rust/new", &[], Some(&secret()))
            .await
            .unwrap();
    }
    assert_eq!(issuer.issued(), 4);
}

#[tokio::test]
async fn a_401_fetches_a_new_token_once() {
    let (server, issuer, client) = setup(86_400).await;
    client
        .get_json::<Value>("/r/rust/new", &[], Some(&secret()))
        .await
        .unwrap();
    issuer.revoke_all();
    let body: Value = client
        .get_json("/r/rust/new", &[], Some(&secret()))
        .await
        .unwrap()
        .body;
    assert_eq!(body["path"], "/r/rust/new");
    assert_eq!(issuer.issued(), 2, "refreshed after the 401");
    let last = server.requests().last().cloned().unwrap();
    assert_eq!(last.header("authorization"), Some("Bearer token-2"));

    // an API that refuses every token: one refresh, then the 401 is the answer
    server.handle("/r/locked/", |_| {
        Reply::json(json!({"message": "Unauthorized", "error": 401})).with_status(401)
    });
    server.clear_requests();
    let error = client
        .get_json::<Value>("/r/locked/new", &[], Some(&secret()))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Fatal);
    assert_eq!(
        error.to_string(),
        "GET /r/locked/new: 401 Unauthorized: Unauthorized"
    );
    assert_eq!(server.requests_to("/r/locked/new"), 2, "tried twice");
    assert_eq!(server.requests_to("/api/v1/access_token"), 1, "one refresh");
}

#[tokio::test]
async fn a_refused_application_is_fatal_and_its_secret_shown_nowhere() {
    let (server, issuer, client) = setup(86_400).await;
    let wrong = Secret::new("wrong-secret-789");
    let error = client
        .get_json::<Value>("/r/rust/new", &[], Some(&wrong))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Fatal);
    let text = format!("{error} {error:?}");
    assert!(text.contains("POST /api/v1/access_token: 401"), "{text}");
    assert!(
        !text.contains("wrong-secret-789") && !text.contains(ID),
        "{text}"
    );
    assert_eq!(issuer.issued(), 0);
    assert_eq!(
        server.requests_to("/r/rust/new"),
        0,
        "no API request without a token"
    );
    // a 200 with an `error` (Reddit's answer to a bad grant) is no token either
    server.route(
        "/api/v1/access_token",
        [Reply::json(json!({"error": "unsupported_grant_type"}))],
    );
    let error = client
        .get_json::<Value>("/r/rust/new", &[], Some(&secret()))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("unsupported_grant_type"),
        "{error}"
    );
}
