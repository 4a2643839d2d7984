//! `GET /metrics` of the tick generator, in Prometheus format: tick lag, runs by state, queue
//! depth, and what this process counted.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tributary::queue::Queue;

use crate::events;

/// Where the endpoint listens unless told otherwise (any free port of 127.0.0.1 when taken).
pub const DEFAULT_METRICS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9465);

struct Endpoint {
    pool: PgPool,
    queue: Arc<dyn Queue>,
    handle: PrometheusHandle,
}

async fn metrics(State(endpoint): State<Arc<Endpoint>>) -> Response {
    match tributary::telemetry::render(
        &endpoint.handle,
        &endpoint.pool,
        Some(endpoint.queue.as_ref()),
    )
    .await
    {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => {
            events::metrics_failed(&e);
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// Binds `addr` (or, for the default address when it is taken, any free port) and serves until
/// `stop`. Without a recorder or a port, the generator runs on without the endpoint.
pub async fn serve(addr: SocketAddr, pool: PgPool, queue: Arc<dyn Queue>, stop: CancellationToken) {
    let handle = match tributary::telemetry::install() {
        Ok(handle) => handle,
        Err(e) => return events::metrics_unavailable(&e),
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(_) if addr == DEFAULT_METRICS_ADDR => {
            match TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await {
                Ok(listener) => listener,
                Err(e) => return events::metrics_unavailable(&e.to_string()),
            }
        }
        Err(e) => return events::metrics_unavailable(&e.to_string()),
    };
    if let Ok(addr) = listener.local_addr() {
        events::metrics_listening(addr);
    }
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(Endpoint {
            pool,
            queue,
            handle,
        }));
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        events::metrics_unavailable(&e.to_string());
    }
}
