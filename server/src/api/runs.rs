//! `/api/v1/runs`: list, detail with live progress, streams with their error chains, continue,
//! cancel.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde::Deserialize;
use tributary::admin::views::{self, RunDetail};
use tributary::admin::{self, AdminError};
use tributary::store::overview::{RunFilter, RunSummary, StreamSummary};
use utoipa::IntoParams;
use uuid::Uuid;

use super::input::{Params, uuid_field};
use crate::AppState;
use crate::auth::{Operator, Reader};
use crate::problem::Problem;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct RunQuery {
    integration_id: Option<Uuid>,
    platform: Option<String>,
    /// Comma-separated: pending, processing, delayed, processed, error, cancelled.
    state: Option<String>,
    /// 1 to 1000 (default 100).
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Runs, newest first.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(RunQuery),
    responses((status = 200, body = [RunSummary]), (status = 400, body = Problem),
              (status = 401, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _: Reader,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<RunSummary>>, Problem> {
    let q = Params::parse(
        query.as_deref(),
        &["integration_id", "platform", "state", "limit", "offset"],
    )?;
    let (limit, offset) = views::page(q.int("limit")?, q.int("offset")?)?;
    let filter = RunFilter {
        integration_id: q.uuid("integration_id")?,
        platform: q.text("platform"),
        states: q
            .text("state")
            .map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
        limit,
        offset,
    };
    Ok(Json(views::runs(&state.pool, &filter).await?))
}

/// A run with its live progress (streams by state, activities new and updated), its current
/// delay and why, and the quotas it waits on.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = Uuid, Path, description = "run id")),
    responses((status = 200, body = RunDetail), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    _: Reader,
    Path(id): Path<String>,
) -> Result<Json<RunDetail>, Problem> {
    let id = uuid_field("id", &id)?;
    Ok(Json(views::run(&state.pool, id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct StreamQuery {
    /// Only streams that ended in error.
    errors_only: Option<bool>,
    /// 1 to 1000 (default 100).
    limit: Option<i64>,
    offset: Option<i64>,
}

/// The run's streams in creation order, each with its stored error chain.
#[utoipa::path(get, path = "/api/v1/runs/{id}/streams", tag = "runs",
    params(("id" = Uuid, Path, description = "run id"), StreamQuery),
    responses((status = 200, body = [StreamSummary]), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn streams(
    State(state): State<Arc<AppState>>,
    _: Reader,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<StreamSummary>>, Problem> {
    let id = uuid_field("id", &id)?;
    let q = Params::parse(query.as_deref(), &["errors_only", "limit", "offset"])?;
    let (limit, offset) = views::page(q.int("limit")?, q.int("offset")?)?;
    Ok(Json(
        views::streams(&state.pool, id, q.flag("errors_only")?, limit, offset).await?,
    ))
}

/// Resumes a run: errored streams get a new chance, waiting ones are due at once; the run is
/// handed to the workers.
#[utoipa::path(post, path = "/api/v1/runs/{id}/continue", tag = "runs",
    params(("id" = Uuid, Path, description = "run id")),
    responses((status = 200, body = RunSummary), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn resume(
    State(state): State<Arc<AppState>>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<RunSummary>, Problem> {
    let id = uuid_field("id", &id)?;
    continue_run(&state, id).await.map(Json)
}

/// What the API and the dashboard do to continue a run.
pub async fn continue_run(state: &AppState, id: Uuid) -> Result<RunSummary, Problem> {
    admin::continue_run(&state.pool, id).await?;
    state.hand_off(id).await?;
    Ok(tributary::store::overview::run(&state.pool, id)
        .await
        .map_err(AdminError::from)?)
}

/// Cancels an active run.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = Uuid, Path, description = "run id")),
    responses((status = 200, body = RunSummary), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<RunSummary>, Problem> {
    let id = uuid_field("id", &id)?;
    admin::cancel_run(&state.pool, id).await?;
    Ok(Json(
        tributary::store::overview::run(&state.pool, id)
            .await
            .map_err(AdminError::from)?,
    ))
}
