//! A platform's body classifier through the real client: a `200` that is an error, a rate limit
//! announced in a body, and the credential blocked for every request after it.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tributary::http::{Answer, BodyClassifier, HttpClient, HttpConfig, Verdict, WaitCaps};
use tributary::testkit::{FakeServer, Reply};
use tributary::{ErrorKind, IntegrationError, Secret};

fn slack_like(answer: &Answer<'_>) -> Option<Verdict> {
    let json = answer.json()?;
    if json.get("ok")? != &Value::Bool(false) {
        return None;
    }
    let error = json.get("error")?.as_str()?.to_owned();
    Some(match error.as_str() {
        "ratelimited" => Verdict::rate_limited(None, error),
        "fatal_error" => Verdict::retryable(error),
        _ => Verdict::fatal(format!("refused: {error}")),
    })
}

fn client(server: &FakeServer) -> HttpClient {
    HttpClient::new(
        HttpConfig::new(server.base_url())
            .waits(WaitCaps {
                default_wait: Duration::from_secs(60),
                min_wait: Duration::from_millis(50),
                max_wait: Duration::from_secs(3600),
            })
            .classify_body(BodyClassifier::new("slack-like", slack_like)),
    )
    .unwrap()
}

fn token() -> Secret {
    Secret::new("xoxb-body-classifier")
}

#[tokio::test]
async fn a_200_with_ok_false_is_an_error_of_the_kind_the_platform_means() {
    let server = FakeServer::start().await.unwrap();
    server.route(
        "/conversations.history",
        [
            Reply::json(json!({"ok": false, "error": "not_in_channel"})),
            Reply::json(json!({"ok": false, "error": "fatal_error"})),
            Reply::json(json!({"ok": true, "messages": []})),
        ],
    );
    let client = client(&server);
    let err = client
        .get_json::<Value>(
            "/conversations.history",
            &[("channel", "C1".into())],
            Some(&token()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fatal);
    assert_eq!(
        err.to_string(),
        "GET /conversations.history: refused: not_in_channel"
    );
    let err = client
        .get_json::<Value>("/conversations.history", &[], Some(&token()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Retryable);
    let ok = client
        .get_json::<Value>("/conversations.history", &[], Some(&token()))
        .await
        .unwrap();
    assert_eq!(ok.body["ok"], json!(true));
}

#[tokio::test]
async fn a_rate_limit_in_a_body_blocks_the_credential_without_more_requests() {
    let server = FakeServer::start().await.unwrap();
    server.route(
        "/users.info",
        [Reply::json(json!({"ok": false, "error": "ratelimited"})).header("Retry-After", "90")],
    );
    let client = client(&server);
    let err = client
        .get_json::<Value>("/users.info", &[], Some(&token()))
        .await
        .unwrap_err();
    let IntegrationError::RateLimited { until, .. } = &err else {
        panic!("not a rate limit: {err:?}");
    };
    let wait = (*until - Utc::now()).to_std().unwrap();
    assert!(
        wait > Duration::from_secs(85) && wait <= Duration::from_secs(90),
        "{wait:?}"
    );
    let again = client
        .get_json::<Value>("/conversations.list", &[], Some(&token()))
        .await
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::RateLimited);
    assert_eq!(
        server.request_count(),
        1,
        "a blocked credential sends nothing"
    );
}
