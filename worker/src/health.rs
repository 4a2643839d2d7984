//! The health endpoint, with figures in JSON:
//!
//! * `GET /health/live`: 200 as long as the process runs and answers, whatever the database or
//!   the queue do (a liveness probe must not restart a worker that waits out an outage);
//! * `GET /health/ready` (and `GET /health`): 200 while the worker takes messages and reaches
//!   PostgreSQL; 503 while it starts (waiting for the database or the queue), while the database
//!   is unreachable, and while it shuts down.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::events;

/// Figures the worker keeps up to date and the endpoint reports.
#[derive(Debug, Default)]
pub struct Stats {
    pub in_flight: AtomicUsize,
    pub handled: AtomicU64,
    pub refused: AtomicU64,
    pub retried: AtomicU64,
    pub stopping: AtomicBool,
}

/// What the endpoint reads. The pool and the queue are set once the worker has them.
pub struct Health {
    pool: OnceLock<PgPool>,
    queue: OnceLock<String>,
    stats: Arc<Stats>,
    worker_id: String,
}

impl Health {
    pub fn new(stats: Arc<Stats>, worker_id: String) -> Arc<Self> {
        Arc::new(Self {
            pool: OnceLock::new(),
            queue: OnceLock::new(),
            stats,
            worker_id,
        })
    }

    /// The worker is connected: readiness now follows the database.
    pub fn connected(&self, pool: PgPool, queue: String) {
        let _ = self.pool.set(pool);
        let _ = self.queue.set(queue);
    }
}

async fn live(State(health): State<Arc<Health>>) -> Response {
    let body = json!({
        "status": "alive",
        "worker_id": health.worker_id,
        "in_flight": health.stats.in_flight.load(Ordering::Relaxed),
    });
    (StatusCode::OK, Json(body)).into_response()
}

async fn ready(State(health): State<Arc<Health>>) -> Response {
    let database = match health.pool.get() {
        Some(pool) => tokio::time::timeout(
            Duration::from_secs(2),
            sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(pool),
        )
        .await
        .is_ok_and(|r| r.is_ok()),
        None => false,
    };
    let stats = &health.stats;
    let stopping = stats.stopping.load(Ordering::Relaxed);
    let status = match (stopping, health.pool.get().is_some(), database) {
        (true, _, _) => "stopping",
        (false, false, _) => "starting",
        (false, true, false) => "database unreachable",
        (false, true, true) => "ok",
    };
    let code = if status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": status,
        "worker_id": health.worker_id,
        "queue": health.queue.get(),
        "database": database,
        "in_flight": stats.in_flight.load(Ordering::Relaxed),
        "messages_handled": stats.handled.load(Ordering::Relaxed),
        "messages_refused": stats.refused.load(Ordering::Relaxed),
        "messages_retried": stats.retried.load(Ordering::Relaxed),
    });
    (code, Json(body)).into_response()
}

/// Serves the endpoint on `listener` until `stop`.
pub async fn serve(listener: TcpListener, health: Arc<Health>, stop: CancellationToken) {
    let app = Router::new()
        .route("/health", get(ready))
        .route("/health/ready", get(ready))
        .route("/health/live", get(live))
        .with_state(health);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        events::health_failed(&e);
    }
}
