//! The admin API, JSON under `/api/v1`, described by an OpenAPI document (served at
//! `/api/openapi.json`, checked in as `docs/openapi.json`).

pub mod input;
pub mod integrations;
pub mod operations;
pub mod runs;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Tributary admin API", version = "1",
         description = "Integrations, runs, streams, dead letters, ticks and every credential's quota. Every request needs a bearer token (`tributary-server token create`); steering needs the operator role. Errors are application/problem+json and name the field at fault."),
    paths(
        integrations::list, integrations::get, integrations::connect, integrations::disconnect,
        integrations::start, runs::list, runs::get, runs::streams, runs::resume, runs::cancel,
        operations::list_dead_letters, operations::redrive, operations::discard,
        operations::ticks, operations::quotas, operations::overview,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI document, pretty-printed as it is checked in.
pub fn openapi_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    text.push('\n');
    text
}

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v1/integrations",
            get(integrations::list).post(integrations::connect),
        )
        .route("/api/v1/integrations/{id}", get(integrations::get))
        .route(
            "/api/v1/integrations/{id}/disconnect",
            post(integrations::disconnect),
        )
        .route("/api/v1/integrations/{id}/runs", post(integrations::start))
        .route("/api/v1/runs", get(runs::list))
        .route("/api/v1/runs/{id}", get(runs::get))
        .route("/api/v1/runs/{id}/streams", get(runs::streams))
        .route("/api/v1/runs/{id}/continue", post(runs::resume))
        .route("/api/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/api/v1/dead-letters", get(operations::list_dead_letters))
        .route(
            "/api/v1/dead-letters/{id}",
            axum::routing::delete(operations::discard),
        )
        .route(
            "/api/v1/dead-letters/{id}/redrive",
            post(operations::redrive),
        )
        .route("/api/v1/ticks", get(operations::ticks))
        .route("/api/v1/quotas", get(operations::quotas))
        .route("/api/v1/overview", get(operations::overview))
        .route("/api/openapi.json", get(serve_openapi))
}

async fn serve_openapi(_: crate::auth::Reader) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi_json(),
    )
}
