//! The health endpoint: `GET /health` answers 200 while the worker takes messages and reaches
//! PostgreSQL, 503 otherwise (shutting down, database unreachable), with figures in JSON.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

struct Health {
    pool: PgPool,
    stats: Arc<Stats>,
    worker_id: String,
    queue: String,
}

async fn health(State(health): State<Arc<Health>>) -> Response {
    let database = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&health.pool),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let stats = &health.stats;
    let stopping = stats.stopping.load(Ordering::Relaxed);
    let status = match (stopping, database) {
        (true, _) => "stopping",
        (false, false) => "database unreachable",
        (false, true) => "ok",
    };
    let code = if status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": status,
        "worker_id": health.worker_id,
        "queue": health.queue,
        "database": database,
        "in_flight": stats.in_flight.load(Ordering::Relaxed),
        "messages_handled": stats.handled.load(Ordering::Relaxed),
        "messages_refused": stats.refused.load(Ordering::Relaxed),
        "messages_retried": stats.retried.load(Ordering::Relaxed),
    });
    (code, Json(body)).into_response()
}

/// Serves the endpoint on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    pool: PgPool,
    stats: Arc<Stats>,
    worker_id: String,
    queue: String,
    stop: CancellationToken,
) {
    let state = Arc::new(Health {
        pool,
        stats,
        worker_id,
        queue,
    });
    let app = Router::new()
        .route("/health", get(health))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        events::health_failed(&e);
    }
}
