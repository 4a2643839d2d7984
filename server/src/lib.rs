//! `tributary-server`: the admin API (`/api/v1`, OpenAPI at `/api/openapi.json`), the dashboard
//! (server-rendered pages) and `/metrics`, over the database and queue the workers use. Every
//! request needs a bearer token (or the dashboard's login cookie); it binds 127.0.0.1 by default.

pub mod api;
pub mod auth;
pub mod dashboard;
mod events;
pub mod problem;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tributary::Registry;
use tributary::admin::AdminError;
use tributary::queue::Queue;
use uuid::Uuid;

use crate::auth::Reader;
use crate::problem::Problem;

/// What every request reads and steers.
pub struct AppState {
    pub pool: PgPool,
    pub registry: Arc<Registry>,
    pub queue: Arc<dyn Queue>,
    pub metrics: Option<PrometheusHandle>,
}

impl AppState {
    /// Sends the message that makes a worker process the run (the run is already committed).
    pub async fn hand_off(&self, run_id: Uuid) -> Result<String, Problem> {
        tributary::queue::enqueue_run(&self.pool, self.queue.as_ref(), run_id)
            .await
            .map_err(|e| Problem::from(AdminError::from(e)))
    }
}

/// The whole application: API, dashboard, `/metrics`, `/health`.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(api::router())
        .merge(dashboard::router())
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route_layer(axum::middleware::from_fn(request_span))
        .fallback(|| async { Problem::not_found("no such page or endpoint") })
        .with_state(state)
}

/// A span per request (exported through OpenTelemetry when configured): its method, its route
/// (the template, never an id) and the status answered.
async fn request_span(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let route = matched.as_ref().map_or("", MatchedPath::as_str);
    let span = tracing::info_span!(
        "request", method = %request.method(), route, status = tracing::field::Empty
    );
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    span.record("status", response.status().as_u16());
    response
}

async fn metrics(State(state): State<Arc<AppState>>, _: Reader) -> Response {
    let Some(handle) = &state.metrics else {
        return Problem::not_found("metrics are not recorded in this process").into_response();
    };
    match tributary::telemetry::render(handle, &state.pool, Some(state.queue.as_ref())).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => {
            events::metrics_failed(&e);
            Problem::internal().into_response()
        }
    }
}

/// Liveness, without a token: 200 while the database answers.
async fn health(State(state): State<Arc<AppState>>) -> StatusCode {
    match sqlx::query("SELECT 1").execute(&state.pool).await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Serves on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        events::listening(addr);
    }
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// The address the server binds by default: loopback only.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8480);
