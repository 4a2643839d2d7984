//! `/api/v1/integrations`: list, read, connect, disconnect, start a run.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tributary::Credentials;
use tributary::admin::views::{self, IntegrationDetail};
use tributary::admin::{self, ConnectRequest, DEFAULT_TENANT};
use tributary::store::overview::{IntegrationFilter, IntegrationSummary, RunSummary};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::input::{Params, json_body, uuid_field};
use crate::AppState;
use crate::auth::{Operator, Reader};
use crate::problem::Problem;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct IntegrationQuery {
    /// Only this platform's.
    platform: Option<String>,
    /// Only those with this status: pending, in-progress, done, error, disconnected.
    status: Option<String>,
    tenant_id: Option<Uuid>,
    /// 1 to 1000 (default 100).
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Integrations, newest first, with their figures and last error.
#[utoipa::path(get, path = "/api/v1/integrations", tag = "integrations",
    params(IntegrationQuery),
    responses((status = 200, body = [IntegrationSummary]), (status = 400, body = Problem),
              (status = 401, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _: Reader,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<IntegrationSummary>>, Problem> {
    let q = Params::parse(
        query.as_deref(),
        &["platform", "status", "tenant_id", "limit", "offset"],
    )?;
    let (limit, offset) = views::page(q.int("limit")?, q.int("offset")?)?;
    let filter = IntegrationFilter {
        platform: q.text("platform"),
        status: q.text("status"),
        tenant_id: q.uuid("tenant_id")?,
        limit,
        offset,
    };
    Ok(Json(views::integrations(&state.pool, &filter).await?))
}

/// An integration, its recent runs and its platform's quotas.
#[utoipa::path(get, path = "/api/v1/integrations/{id}", tag = "integrations",
    params(("id" = Uuid, Path, description = "integration id")),
    responses((status = 200, body = IntegrationDetail), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    _: Reader,
    Path(id): Path<String>,
) -> Result<Json<IntegrationDetail>, Problem> {
    let id = uuid_field("id", &id)?;
    Ok(Json(views::integration(&state.pool, id).await?))
}

/// What connecting an integration takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectBody {
    /// e.g. `github`, `devto`, `example-forum`.
    pub platform: String,
    /// The platform's settings, checked by its integration.
    #[schema(value_type = Object)]
    pub settings: Value,
    /// Tokens and keys; stored apart, never shown again.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Value>,
    pub tenant_id: Option<Uuid>,
}

/// A run started and handed to the workers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Started {
    pub integration_id: Uuid,
    pub run_id: Uuid,
    /// The queue message that hands the run to the workers.
    pub message_id: String,
}

/// Connects an integration: settings validated by its platform, then the integration and its
/// onboarding run are created and the run is handed to the workers.
#[utoipa::path(post, path = "/api/v1/integrations", tag = "integrations",
    request_body = ConnectBody,
    responses((status = 201, body = Started), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn connect(
    State(state): State<Arc<AppState>>,
    _: Operator,
    body: Bytes,
) -> Result<(StatusCode, Json<Started>), Problem> {
    let body: ConnectBody = json_body(&body)?;
    let credentials = match body.credentials {
        None => Value::Object(Default::default()),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(Problem::invalid("credentials", "must be a JSON object")),
    };
    let request = ConnectRequest {
        tenant_id: body.tenant_id.unwrap_or(DEFAULT_TENANT),
        platform: body.platform,
        settings: body.settings,
        credentials: Credentials::new(credentials),
    };
    let (integration, run) = admin::connect(&state.pool, &state.registry, request).await?;
    let message_id = state.hand_off(run.id).await?;
    Ok((
        StatusCode::CREATED,
        Json(Started {
            integration_id: integration.id,
            run_id: run.id,
            message_id,
        }),
    ))
}

/// Disconnects an integration: no check starts again; its active run is cancelled.
#[utoipa::path(post, path = "/api/v1/integrations/{id}/disconnect", tag = "integrations",
    params(("id" = Uuid, Path, description = "integration id")),
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn disconnect(
    State(state): State<Arc<AppState>>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let id = uuid_field("id", &id)?;
    admin::disconnect(&state.pool, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// An onboarding (the whole history) instead of a check (new data only).
    #[serde(default)]
    pub onboarding: bool,
}

/// Starts an onboarding or a check and hands it to the workers.
#[utoipa::path(post, path = "/api/v1/integrations/{id}/runs", tag = "integrations",
    params(("id" = Uuid, Path, description = "integration id")),
    request_body = StartBody,
    responses((status = 201, body = RunSummary), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn start(
    State(state): State<Arc<AppState>>,
    _: Operator,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<RunSummary>), Problem> {
    let id = uuid_field("id", &id)?;
    let body: StartBody = if body.is_empty() {
        StartBody { onboarding: false }
    } else {
        json_body(&body)?
    };
    let run = admin::start_run(&state.pool, &state.registry, id, body.onboarding, None).await?;
    state.hand_off(run.id).await?;
    let run = tributary::store::overview::run(&state.pool, run.id)
        .await
        .map_err(admin::AdminError::from)?;
    Ok((StatusCode::CREATED, Json(run)))
}
