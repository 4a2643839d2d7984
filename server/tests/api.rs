//! The admin API against a real database: every endpoint, auth by role, bad input answered with
//! problem+json naming the field, credentials never in a response, the OpenAPI document current.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::TestServer;
use serde_json::{Value, json};
use sqlx::PgPool;
use tributary::queue::{OutgoingMessage, ReceiveRequest};
use uuid::Uuid;

const SECRET: &str = "forum-secret-4c1d";

async fn integration(pool: &PgPool, platform: &str, status: &str) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO integrations (id, tenant_id, platform, status, settings, credentials)
         VALUES ($1, $2, $3, $4, '{\"base_url\":\"http://127.0.0.1:1\"}', $5)",
    )
    .bind(id)
    .bind(Uuid::nil())
    .bind(platform)
    .bind(status)
    .bind(json!({ "token": SECRET }))
    .execute(pool)
    .await
    .unwrap();
    id
}

/// A run that ended in error: one stream processed, one in error with a chain of causes.
async fn failed_run(pool: &PgPool, integration_id: Uuid) -> Uuid {
    let run = Uuid::new_v4();
    let error = json!({"kind": "fatal", "hook": "process_stream", "message": "GET /posts: 500",
        "chain": ["GET /posts: 500", "the forum answered 500 Internal Server Error"],
        "failures": 3, "at": "2026-11-26T03:00:00Z"});
    sqlx::query(
        "INSERT INTO integration_runs (id, integration_id, onboarding, state, error, finished_at,
             streams_processed, streams_errored)
         VALUES ($1, $2, true, 'error', $3, now(), 1, 1)",
    )
    .bind(run)
    .bind(integration_id)
    .bind(&error)
    .execute(pool)
    .await
    .unwrap();
    for (identifier, state, err, activities) in [
        ("channel:general", "processed", None, 7),
        ("channel:random", "error", Some(&error), 0),
    ] {
        sqlx::query(
            "INSERT INTO integration_streams (id, run_id, identifier, chain_identifier, source,
                 state, error, activities_created, retries, finished_at)
             VALUES ($1, $2, $3, $3, $3, $4, $5, $6, 3, now())",
        )
        .bind(Uuid::new_v4())
        .bind(run)
        .bind(identifier)
        .bind(state)
        .bind(err)
        .bind(activities)
        .execute(pool)
        .await
        .unwrap();
    }
    run
}

fn field(body: &Value) -> &str {
    body["field"].as_str().unwrap_or_default()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn requests_without_a_live_token_are_refused_and_steering_needs_an_operator(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let http = &server.http;
    for path in [
        "/api/v1/integrations",
        "/api/v1/runs",
        "/api/v1/overview",
        "/api/openapi.json",
        "/metrics",
    ] {
        let response = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path} without a token");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    let (status, body) = server
        .send(http.get(server.url("/api/v1/runs")), "trb_not-a-token")
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["type"], "https://tributary.dev/problems/unauthorized");

    // read-only reads, and may not steer
    assert_eq!(server.get("/api/v1/integrations").await.0, 200);
    let reader = server.reader.clone();
    let (status, body) = server
        .send(
            http.post(server.url("/api/v1/integrations"))
                .json(&json!({"platform": "example-forum", "settings": {}})),
            &reader,
        )
        .await;
    assert_eq!(status, 403, "{body}");

    // a revoked token is refused at once
    let (info, token) = tributary::admin::tokens::create(
        &pool,
        "short-lived",
        tributary::admin::tokens::Role::Operator,
    )
    .await
    .unwrap();
    assert_eq!(
        server
            .send(http.get(server.url("/api/v1/runs")), &token)
            .await
            .0,
        200
    );
    tributary::admin::tokens::revoke(&pool, info.id)
        .await
        .unwrap();
    assert_eq!(
        server
            .send(http.get(server.url("/api/v1/runs")), &token)
            .await
            .0,
        401
    );
    // tokens are stored as digests only
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE token_sha256 = $1")
        .bind(&token)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn connecting_validates_settings_names_the_field_and_hands_the_run_to_the_workers(
    pool: PgPool,
) {
    let server = TestServer::start(pool.clone()).await;
    // malformed JSON, a wrong type, an unknown field, an unknown platform, invalid settings
    let raw = server
        .send(
            server
                .http
                .post(server.url("/api/v1/integrations"))
                .header("content-type", "application/json")
                .body("{\"platform\":"),
            &server.operator.clone(),
        )
        .await;
    assert_eq!((raw.0, field(&raw.1)), (400, "body"), "{}", raw.1);
    let (status, body) = server
        .post(
            "/api/v1/integrations",
            Some(json!({"platform": 7, "settings": {}})),
        )
        .await;
    assert_eq!((status, field(&body)), (400, "platform"), "{body}");
    let (status, body) = server
        .post(
            "/api/v1/integrations",
            Some(json!({"platform": "example-forum", "settings": {}, "colour": "red"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server
        .post(
            "/api/v1/integrations",
            Some(json!({"platform": "myspace", "settings": {}})),
        )
        .await;
    assert_eq!((status, field(&body)), (422, "platform"), "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("known platforms"),
        "{body}"
    );
    let (status, body) = server
        .post(
            "/api/v1/integrations",
            Some(json!({"platform": "github", "settings": {"repositories": ["nope"]}})),
        )
        .await;
    assert_eq!(
        (status, field(&body)),
        (422, "settings.repositories[0]"),
        "{body}"
    );
    assert_eq!(body["errors"][0]["field"], "settings.repositories[0]");
    let (status, body) = server
        .post(
            "/api/v1/integrations",
            Some(
                json!({"platform": "example-forum", "settings": {"base_url": "http://127.0.0.1:9"},
                        "credentials": "token"}),
            ),
        )
        .await;
    assert_eq!((status, field(&body)), (400, "credentials"), "{body}");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM integrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0, "nothing written for a refused request");

    let (status, started) = server
        .post(
            "/api/v1/integrations",
            Some(json!({"platform": "example-forum",
                        "settings": {"base_url": "http://127.0.0.1:9"},
                        "credentials": {"token": SECRET}})),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    let stats = server.queue.stats().await.unwrap();
    assert_eq!(stats.visible, 1, "the onboarding is handed to the workers");

    let id = started["integration_id"].as_str().unwrap();
    let (status, detail) = server.get(&format!("/api/v1/integrations/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(detail["integration"]["status"], "in-progress");
    assert_eq!(detail["integration"]["active_run_id"], started["run_id"]);
    assert_eq!(detail["recent_runs"][0]["state"], "pending");
    // a second onboarding while one is active is refused
    let (status, body) = server
        .post(
            &format!("/api/v1/integrations/{id}/runs"),
            Some(json!({"onboarding": true})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    // every response so far, and the listing, never shows the credential
    let (_, list) = server
        .get("/api/v1/integrations?platform=example-forum")
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    for text in [list.to_string(), detail.to_string(), started.to_string()] {
        assert!(!text.contains(SECRET), "a credential leaked: {text}");
    }
    // disconnect, then a run is refused
    assert_eq!(
        server
            .post(&format!("/api/v1/integrations/{id}/disconnect"), None)
            .await
            .0,
        204
    );
    let (status, body) = server
        .post(&format!("/api/v1/integrations/{id}/runs"), None)
        .await;
    assert_eq!(status, 409, "{body}");
    let unknown = Uuid::new_v4();
    let (status, body) = server
        .post(&format!("/api/v1/integrations/{unknown}/disconnect"), None)
        .await;
    assert_eq!((status, field(&body)), (404, "id"), "{body}");
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn listings_filter_and_refuse_bad_parameters_by_name(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let forum = integration(&pool, "example-forum", "error").await;
    integration(&pool, "github", "done").await;
    failed_run(&pool, forum).await;

    let (_, errored) = server.get("/api/v1/integrations?status=error").await;
    let errored = errored.as_array().unwrap();
    assert_eq!(errored.len(), 1);
    assert_eq!(errored[0]["platform"], "example-forum");
    assert_eq!(errored[0]["activities"], 0);
    assert_eq!(
        errored[0]["last_error"]["chain"][1],
        "the forum answered 500 Internal Server Error"
    );
    assert!(!errored[0].to_string().contains(SECRET));
    let (_, github) = server
        .get("/api/v1/integrations?platform=github&limit=5")
        .await;
    assert_eq!(github.as_array().unwrap().len(), 1);
    let (_, runs) = server.get("/api/v1/runs?state=error,processed").await;
    assert_eq!(runs.as_array().unwrap().len(), 1);

    for (path, expected) in [
        ("/api/v1/integrations?status=sleeping", "status"),
        ("/api/v1/integrations?limit=0", "limit"),
        ("/api/v1/integrations?limit=ten", "limit"),
        ("/api/v1/integrations?offset=-1", "offset"),
        ("/api/v1/integrations?tenant_id=42", "tenant_id"),
        ("/api/v1/integrations?colour=red", "colour"),
        ("/api/v1/integrations?platform=a%00b", "platform"),
        ("/api/v1/runs?state=running", "state"),
        ("/api/v1/runs/not-a-uuid", "id"),
        ("/api/v1/runs/not-a-uuid/streams", "id"),
        ("/api/v1/integrations/42", "id"),
        ("/api/v1/ticks?limit=100000", "limit"),
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!((status, field(&body)), (400, expected), "{path}: {body}");
    }
    let (status, body) = server
        .get(&format!("/api/v1/runs/{}", Uuid::new_v4()))
        .await;
    assert_eq!((status, field(&body)), (404, "id"), "{body}");
    let (status, _) = server.get("/api/v1/nothing-here").await;
    assert_eq!(status, 404);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_failed_run_shows_its_progress_and_error_chains_and_can_be_continued(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let forum = integration(&pool, "example-forum", "error").await;
    let run = failed_run(&pool, forum).await;

    let (status, detail) = server.get(&format!("/api/v1/runs/{run}")).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["run"]["state"], "error");
    assert_eq!(detail["run"]["error"]["hook"], "process_stream");
    assert_eq!(detail["progress"]["streams_total"], 2);
    assert_eq!(detail["progress"]["streams_processed"], 1);
    assert_eq!(detail["progress"]["streams_errored"], 1);
    assert_eq!(detail["progress"]["activities_new"], 7);

    let (_, errored) = server
        .get(&format!("/api/v1/runs/{run}/streams?errors_only=true"))
        .await;
    let errored = errored.as_array().unwrap();
    assert_eq!(errored.len(), 1);
    assert_eq!(errored[0]["identifier"], "channel:random");
    assert_eq!(errored[0]["error"]["chain"].as_array().unwrap().len(), 2);
    let (_, all) = server.get(&format!("/api/v1/runs/{run}/streams")).await;
    assert_eq!(all.as_array().unwrap().len(), 2);

    // a run that ended cannot be cancelled; continuing revives its errored stream
    let (status, body) = server
        .post(&format!("/api/v1/runs/{run}/cancel"), None)
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, resumed) = server
        .post(&format!("/api/v1/runs/{run}/continue"), None)
        .await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["state"], "pending");
    assert_eq!(
        server.queue.stats().await.unwrap().visible,
        1,
        "handed to the workers"
    );
    let (_, detail) = server.get(&format!("/api/v1/runs/{run}")).await;
    assert_eq!(detail["progress"]["streams_pending"], 1);
    let (status, cancelled) = server
        .post(&format!("/api/v1/runs/{run}/cancel"), None)
        .await;
    assert_eq!(
        (status, cancelled["state"].as_str()),
        (200, Some("cancelled"))
    );
    let (status, body) = server
        .post(&format!("/api/v1/runs/{}/continue", Uuid::new_v4()), None)
        .await;
    assert_eq!((status, field(&body)), (404, "id"), "{body}");
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn dead_letters_are_listed_with_their_reason_redriven_and_discarded(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let queue = server.queue.clone();
    let dead_letter = |body: &'static str| {
        let queue = queue.clone();
        async move {
            queue.send(OutgoingMessage::new(body)).await.unwrap();
            let received = queue
                .receive(ReceiveRequest {
                    max_messages: 1,
                    wait: Duration::ZERO,
                    visibility: Duration::from_secs(30),
                })
                .await
                .unwrap();
            queue
                .dead_letter(&received[0], "the message is not JSON")
                .await
                .unwrap();
            received[0].id.clone()
        }
    };
    let first = dead_letter("not json").await;
    let second = dead_letter("{oops").await;

    let (_, list) = server.get("/api/v1/dead-letters").await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], first.as_str());
    assert_eq!(list[0]["reason"], "the message is not JSON");
    assert_eq!(list[0]["receive_count"], 1);
    assert!(list[0]["dead_lettered_at"].is_string());

    let reader = server.reader.clone();
    let (status, _) = server
        .send(
            server
                .http
                .post(server.url(&format!("/api/v1/dead-letters/{first}/redrive"))),
            &reader,
        )
        .await;
    assert_eq!(status, 403, "read-only may not redrive");
    assert_eq!(
        server
            .post(&format!("/api/v1/dead-letters/{first}/redrive"), None)
            .await
            .0,
        204
    );
    let stats = server.queue.stats().await.unwrap();
    assert_eq!((stats.visible, stats.dead_letters), (1, 1));
    let back = server
        .queue
        .receive(ReceiveRequest {
            max_messages: 1,
            wait: Duration::ZERO,
            visibility: Duration::from_secs(30),
        })
        .await
        .unwrap();
    assert_eq!(
        (back[0].id.as_str(), back[0].body.as_str()),
        (first.as_str(), "not json")
    );

    assert_eq!(
        server
            .delete(&format!("/api/v1/dead-letters/{second}"))
            .await
            .0,
        204
    );
    let (status, body) = server
        .delete(&format!("/api/v1/dead-letters/{second}"))
        .await;
    assert_eq!((status, field(&body)), (404, "id"), "{body}");
    let (status, _) = server
        .post("/api/v1/dead-letters/not-an-id/redrive", None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(server.queue.stats().await.unwrap().dead_letters, 0);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn ticks_quotas_and_the_runs_waiting_on_a_quota_are_shown(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    let github = integration(&pool, "github", "in-progress").await;
    let slot = "2026-11-26T03:00:00Z";
    sqlx::query("INSERT INTO tick_slots (slot, emitted_by) VALUES ($1::timestamptz, 'gen-1')")
        .bind(slot)
        .execute(&pool)
        .await
        .unwrap();
    // a check run made by that tick, deferred by one credential's GitHub `core` budget until
    // its reset (the deferral records which budget)
    let waiting = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO integration_runs (id, integration_id, onboarding, state, trigger_key,
             delayed_until, delay_reason, waiting_platform, waiting_credential, waiting_resource)
         VALUES ($1, $2, false, 'delayed', $3, now() + interval '20 minutes',
                 'rate limited while processing `repo:acme/widget:issues`',
                 'github', 'fp:9f2c', 'core')",
    )
    .bind(waiting)
    .bind(github)
    .bind(format!("tick:{slot}"))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO rate_limit_budgets (platform, credential, resource, limit_total, remaining,
             reset_at, spend_per_min, requests)
         VALUES ('github', 'fp:9f2c', 'core', 5000, 0, now() + interval '20 minutes', 40, 5000),
                ('github', 'fp:9f2c', 'search', 30, 20, now() + interval '30 seconds', 2, 10),
                ('github', 'fp:77aa', 'core', 5000, 600, now() + interval '50 minutes', 60, 4400)",
    )
    .execute(&pool)
    .await
    .unwrap();

    let (_, ticks) = server.get("/api/v1/ticks").await;
    assert_eq!(ticks[0]["emitted_by"], "gen-1");
    assert_eq!(ticks[0]["runs_created"], 1);

    let (_, quotas) = server.get("/api/v1/quotas?platform=github").await;
    let quotas = quotas.as_array().unwrap();
    assert_eq!(quotas.len(), 3);
    let find = |credential: &str, resource: &str| {
        quotas
            .iter()
            .find(|q| q["credential"] == credential && q["resource"] == resource)
            .unwrap()
            .clone()
    };
    let spent = find("fp:9f2c", "core");
    assert_eq!(spent["outlook"], "exhausted");
    assert_eq!(spent["runs_waiting"], 1);
    assert_eq!(spent["waiting_runs"], json!([waiting]));
    let lasting = find("fp:9f2c", "search");
    assert_eq!(lasting["outlook"], "lasts until reset");
    assert_eq!(lasting["runs_waiting"], 0);
    let running_out = find("fp:77aa", "core");
    assert_eq!(running_out["outlook"], "runs out before reset");
    assert!(running_out["runs_out_at"].is_string(), "{running_out}");
    assert_eq!(running_out["spend_per_min"], 60.0);
    assert_eq!(
        running_out["runs_waiting"], 0,
        "another credential's budget waits for nothing"
    );
    let (_, none) = server.get("/api/v1/quotas?platform=devto").await;
    assert_eq!(none.as_array().unwrap().len(), 0);

    let (_, run) = server.get(&format!("/api/v1/runs/{waiting}")).await;
    assert_eq!(
        run["run"]["delay_reason"],
        "rate limited while processing `repo:acme/widget:issues`"
    );
    assert_eq!(run["waiting_on"].as_array().unwrap().len(), 1);
    assert_eq!(run["waiting_on"][0]["resource"], "core");
    let (_, detail) = server.get(&format!("/api/v1/integrations/{github}")).await;
    assert_eq!(detail["quotas"].as_array().unwrap().len(), 3);

    let (_, overview) = server.get("/api/v1/overview").await;
    assert_eq!(overview["runs_in_flight"][0]["id"], waiting.to_string());
    assert_eq!(overview["queue_backend"], "postgres");
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_openapi_document_is_served_and_checked_in_as_generated(pool: PgPool) {
    let server = TestServer::start(pool).await;
    let generated = tributary_server::api::openapi_json();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        generated == checked_in,
        "docs/openapi.json is stale: run `cargo run -p tributary-server -- openapi > docs/openapi.json`"
    );
    let (status, served) = server.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(served, serde_json::from_str::<Value>(&generated).unwrap());
    for path in [
        "/api/v1/integrations",
        "/api/v1/runs/{id}/streams",
        "/api/v1/quotas",
    ] {
        assert!(served["paths"][path].is_object(), "{path} documented");
    }
}
