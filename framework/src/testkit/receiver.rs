//! A webhook receiver for tests and benchmarks: a real HTTP server on 127.0.0.1 that answers each
//! request as scripted (accept, an error status, 429 with `Retry-After`, 410, or no answer in
//! time), verifies Standard Webhooks signatures and records what it was sent.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::delivery::signature;

/// How the receiver answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Accept,
    Status(u16),
    /// 429 with `Retry-After: secs`.
    TooMany {
        retry_after_secs: u64,
    },
    /// 410 Gone.
    Gone,
    /// Answers 200 only after this long (longer than the dispatcher waits: a timeout).
    Slow(Duration),
    /// Holds the request until [`WebhookReceiver::release`] (or 60 s), then answers 200.
    Hang,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub webhook_id: String,
    pub timestamp: i64,
    pub signature: String,
    /// Whether a `v1` signature verified with one of the receiver's secrets.
    pub signature_valid: bool,
    pub body: Value,
    pub answer: Answer,
}

impl Received {
    /// The events of the batch: (id, seq, type).
    pub fn events(&self) -> Vec<(Uuid, i64, String)> {
        self.body["events"]
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .filter_map(|e| {
                        Some((
                            e["id"].as_str()?.parse().ok()?,
                            e["seq"].as_i64()?,
                            e["type"].as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Answer>>,
    secrets: Mutex<Vec<String>>,
    received: Mutex<Vec<Received>>,
    /// Events of requests answered 2xx in time.
    accepted: AtomicUsize,
    /// Benchmarks count only: requests are not kept.
    count_only: AtomicBool,
    arrived: Notify,
    released: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The server; stopped when dropped.
pub struct WebhookReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    /// Starts on a free port of 127.0.0.1; answers [`Answer::Accept`] once the script is used up.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot bind a receiver on 127.0.0.1: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("receiver address: {e}"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Keeps no request, only counts accepted events (for benchmarks).
    pub fn count_only(&self) {
        self.shared.count_only.store(true, Ordering::Relaxed);
    }

    /// The next requests are answered so, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        lock(&self.shared.script).extend(answers);
    }

    /// Signatures are verified with these secrets (any one verifying is enough).
    pub fn secrets(&self, secrets: impl IntoIterator<Item = String>) {
        *lock(&self.shared.secrets) = secrets.into_iter().collect();
    }

    /// Lets hung requests answer.
    pub fn release(&self) {
        self.shared.released.notify_waiters();
    }

    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    /// The events of the requests answered 2xx in time, in arrival order.
    pub fn accepted_events(&self) -> Vec<(Uuid, i64, String)> {
        lock(&self.shared.received)
            .iter()
            .filter(|r| r.answer == Answer::Accept)
            .flat_map(Received::events)
            .collect()
    }

    /// How many events were accepted (cheap: for benchmarks).
    pub fn accepted_count(&self) -> usize {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` requests arrived, or panics after `deadline`.
    pub async fn wait_for_requests(&self, n: usize, deadline: Duration) -> Vec<Received> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let arrived = self.shared.arrived.notified();
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            if tokio::time::timeout_at(until, arrived).await.is_err() {
                panic!(
                    "timed out after {deadline:?} waiting for {n} requests ({} arrived)",
                    self.received().len()
                );
            }
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = lock(&shared.script).pop_front().unwrap_or(Answer::Accept);
    if shared.count_only.load(Ordering::Relaxed) {
        #[derive(serde::Deserialize)]
        struct Batch {
            events: Vec<serde::de::IgnoredAny>,
        }
        let n = serde_json::from_slice::<Batch>(&body).map_or(0, |b| b.events.len());
        shared.accepted.fetch_add(n, Ordering::Relaxed);
        return StatusCode::OK.into_response();
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let webhook_id = header("webhook-id");
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap_or(0);
    let sig = header("webhook-signature");
    let now = chrono::Utc::now().timestamp();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let accepted = if answer == Answer::Accept {
        parsed["events"].as_array().map_or(0, Vec::len)
    } else {
        0
    };
    let signature_valid = lock(&shared.secrets)
        .iter()
        .any(|s| signature::verify(s, &webhook_id, timestamp, now, 300, &body, &sig).is_ok());
    lock(&shared.received).push(Received {
        webhook_id,
        timestamp,
        signature: sig,
        signature_valid,
        body: parsed,
        answer: answer.clone(),
    });
    shared.accepted.fetch_add(accepted, Ordering::Relaxed);
    shared.arrived.notify_waiters();
    match answer {
        Answer::Accept => StatusCode::OK.into_response(),
        Answer::Status(code) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            format!("scripted {code}"),
        )
            .into_response(),
        Answer::TooMany { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", retry_after_secs.to_string())],
            "slow down",
        )
            .into_response(),
        Answer::Gone => (StatusCode::GONE, "no such hook").into_response(),
        Answer::Slow(wait) => {
            tokio::time::sleep(wait).await;
            StatusCode::OK.into_response()
        }
        Answer::Hang => {
            let _ = tokio::time::timeout(Duration::from_secs(60), shared.released.notified()).await;
            StatusCode::OK.into_response()
        }
    }
}
