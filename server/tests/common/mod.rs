//! A server on a free port of 127.0.0.1 over a test's database, with an operator and a read-only
//! token; an in-process worker for tests that need runs to progress.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tributary::admin::tokens::{self, Role};
use tributary::queue::{PgQueue, PgQueueConfig, Queue};
use tributary_server::AppState;

pub struct TestServer {
    pub base: String,
    pub operator: String,
    pub reader: String,
    pub pool: PgPool,
    pub queue: Arc<dyn Queue>,
    pub http: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestServer {
    pub async fn start(pool: PgPool) -> Self {
        let queue: Arc<dyn Queue> = Arc::new(PgQueue::new(pool.clone(), PgQueueConfig::default()));
        let metrics = tributary::telemetry::install().expect("metrics recorder");
        let state = Arc::new(AppState {
            pool: pool.clone(),
            registry: Arc::new(tributary_integrations::registry().unwrap()),
            queue: queue.clone(),
            metrics: Some(metrics),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        tokio::spawn(tributary_server::serve(listener, state, stop.clone()));
        let (_, operator) = tokens::create(&pool, "test operator", Role::Operator)
            .await
            .unwrap();
        let (_, reader) = tokens::create(&pool, "test reader", Role::ReadOnly)
            .await
            .unwrap();
        Self {
            base,
            operator,
            reader,
            pool,
            queue,
            http: reqwest::Client::new(),
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET with the read-only token: (status, JSON body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let reader = self.reader.clone();
        self.send(self.http.get(self.url(path)), &reader).await
    }

    /// POST with the operator token.
    pub async fn post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.post(self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let operator = self.operator.clone();
        self.send(request, &operator).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let operator = self.operator.clone();
        self.send(self.http.delete(self.url(path)), &operator).await
    }

    /// Sends with `token`; an error answer must be problem+json.
    pub async fn send(&self, request: reqwest::RequestBuilder, token: &str) -> (u16, Value) {
        let response = request.bearer_auth(token).send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        if status >= 400 {
            assert_eq!(
                content_type, "application/problem+json",
                "an error is problem+json: {text}"
            );
        }
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    /// Polls `path` until `done` holds of its body, or panics after `timeout`.
    pub async fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = self.get(path).await;
            if status == 200 && done(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting on {path}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The URL of the test's own database (`DATABASE_URL` with its database name).
pub fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let mut url = reqwest::Url::parse(&base).expect("DATABASE_URL is a URL");
    let name = pool
        .connect_options()
        .get_database()
        .unwrap_or("postgres")
        .to_owned();
    url.set_path(&name);
    url.to_string()
}

/// A worker in this process over the test's database; stops when the token is cancelled.
pub fn start_worker(pool: &PgPool) -> CancellationToken {
    let mut config = tributary_worker::WorkerConfig::new(database_url(pool));
    config.health = tributary_worker::HealthEndpoint::Off;
    config.receive_wait = Duration::from_secs(1);
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        tributary_worker::run(config, token).await.expect("worker");
    });
    stop
}

/// The demo's forum: 3 channels, 120 posts, 360 replies, 25 members (49 streams to onboard).
pub const FORUM: tributary_integrations::example_forum::fake::DatasetSpec =
    tributary_integrations::example_forum::fake::DatasetSpec {
        channels: 3,
        posts_per_channel: 40,
        replies_per_post: 3,
        members: 25,
    };

/// The fake forum, answering each request after `latency`.
pub async fn start_forum(
    latency: Duration,
) -> tributary_integrations::example_forum::fake::FakeForum {
    use tributary_integrations::example_forum::fake::{FakeForum, ForumData, ForumOptions};
    FakeForum::start(
        ForumData::generate(FORUM),
        ForumOptions {
            latency,
            ..ForumOptions::default()
        },
    )
    .await
    .unwrap()
}

/// Connects a forum integration through the API: (integration id, run id).
pub async fn connect_forum(server: &TestServer, base_url: &str, token: &str) -> (String, String) {
    let (status, started) = server
        .post(
            "/api/v1/integrations",
            Some(serde_json::json!({"platform": "example-forum",
                "settings": {"base_url": base_url}, "credentials": {"token": token}})),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    (
        started["integration_id"].as_str().unwrap().to_owned(),
        started["run_id"].as_str().unwrap().to_owned(),
    )
}
