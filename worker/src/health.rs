//! The health endpoint: `GET /health` answers 200 while the worker takes messages and reaches
//! PostgreSQL, 503 otherwise (shutting down, database unreachable), with figures in JSON; and
//! `GET /metrics` in Prometheus format.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tributary::queue::Queue;

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
    queue: Arc<dyn Queue>,
    metrics: Option<PrometheusHandle>,
}

async fn metrics(State(health): State<Arc<Health>>) -> Response {
    let Some(handle) = &health.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are not recorded").into_response();
    };
    match tributary::telemetry::render(handle, &health.pool, Some(health.queue.as_ref())).await {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            events::metrics_failed(&e);
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
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
        "queue": health.queue.describe(),
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
    queue: Arc<dyn Queue>,
    stop: CancellationToken,
) {
    let state = Arc::new(Health {
        pool,
        stats,
        worker_id,
        queue,
        metrics: tributary::telemetry::install()
            .inspect_err(|e| events::metrics_unavailable(e))
            .ok(),
    });
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        events::health_failed(&e);
    }
}
