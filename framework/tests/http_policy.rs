//! The process's HTTP policy: a response body over the cap is refused with a clear error, and the
//! opt-in address guard refuses loopback and private addresses, resolved or literal, unless
//! allowed.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use tributary::http::{AddressGuard, HttpClient, HttpClients, HttpConfig, HttpPolicy};
use tributary::testkit::{FakeServer, Reply};
use tributary::{ErrorKind, IntegrationError};

async fn server_with_body(items: usize) -> FakeServer {
    let server = FakeServer::start().await.unwrap();
    let body: Vec<Value> = (0..items)
        .map(|i| json!({"id": i, "text": "x".repeat(100)}))
        .collect();
    server.route("/items", [Reply::json(body)]);
    server
}

fn policy(max_body_bytes: usize, guard: Option<AddressGuard>) -> HttpPolicy {
    HttpPolicy {
        max_body_bytes,
        guard,
    }
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused_with_a_clear_error() {
    let server = server_with_body(100).await;
    let capped =
        HttpClient::with_policy(HttpConfig::new(server.base_url()), &policy(4096, None)).unwrap();
    let err = capped
        .get_json::<Value>("/items", &[], None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fatal);
    assert!(
        err.to_string()
            .contains("over the 4096 a response may have"),
        "{err}"
    );
    // the default is generous
    let default = HttpClient::new(HttpConfig::new(server.base_url())).unwrap();
    let items = default
        .get_json::<Vec<Value>>("/items", &[], None)
        .await
        .unwrap();
    assert_eq!(items.body.len(), 100);
}

fn refused(err: &IntegrationError) -> String {
    assert_eq!(err.kind(), ErrorKind::Fatal, "{err:?}");
    err.to_string()
}

#[tokio::test]
async fn the_address_guard_refuses_loopback_resolved_or_literal_unless_allowed() {
    let server = server_with_body(1).await;
    let guarded =
        HttpClients::with_policy(policy(1 << 20, Some(AddressGuard::allowing("").unwrap())));
    // an address in the URL
    let literal = guarded.get(HttpConfig::new(server.base_url())).unwrap();
    let err = literal
        .get_json::<Value>("/items", &[], None)
        .await
        .unwrap_err();
    let message = refused(&err);
    assert!(
        message.contains("127.0.0.1, a loopback address"),
        "{message}"
    );
    // a name that resolves to it
    let by_name = server.base_url().replace("127.0.0.1", "localhost");
    let named = guarded.get(HttpConfig::new(&by_name)).unwrap();
    let err = named
        .get_json::<Value>("/items", &[], None)
        .await
        .unwrap_err();
    let message = refused(&err);
    assert!(
        message.contains("`localhost` resolves to") && message.contains("loopback"),
        "{message}"
    );
    assert_eq!(server.requests().len(), 0, "nothing reached the server");

    // the operator's allowlist lets it through
    let allowed = HttpClients::with_policy(policy(
        1 << 20,
        Some(AddressGuard::allowing("127.0.0.0/8, ::1").unwrap()),
    ));
    for base in [server.base_url(), by_name] {
        let client = allowed.get(HttpConfig::new(&base)).unwrap();
        assert!(
            client.get_json::<Value>("/items", &[], None).await.is_ok(),
            "{base}"
        );
    }
}
