//! Dead letters, ticks, quotas and the overview.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use tributary::admin::dead_letters::{self, DeadLetterView};
use tributary::admin::quotas::{self, QuotaView};
use tributary::admin::views::{self, Overview};
use tributary::store::overview::TickSummary;
use utoipa::IntoParams;

use super::input::Params;
use crate::AppState;
use crate::auth::{Operator, Reader};
use crate::problem::Problem;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct LimitQuery {
    /// 1 to 1000 (default 100).
    limit: Option<i64>,
}

/// The dead-letter queue, oldest first, each with the reason it is there.
#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "dead letters", params(LimitQuery),
    responses((status = 200, body = [DeadLetterView]), (status = 400, body = Problem),
              (status = 401, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_dead_letters(
    State(state): State<Arc<AppState>>,
    _: Reader,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<DeadLetterView>>, Problem> {
    let q = Params::parse(query.as_deref(), &["limit"])?;
    let (limit, _) = views::page(q.int("limit")?, None)?;
    let max = usize::try_from(limit).unwrap_or(100);
    Ok(Json(dead_letters::list(state.queue.as_ref(), max).await?))
}

/// Sends a dead letter to the workers again.
#[utoipa::path(post, path = "/api/v1/dead-letters/{id}/redrive", tag = "dead letters",
    params(("id" = String, Path, description = "dead letter id")),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn redrive(
    State(state): State<Arc<AppState>>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    dead_letters::redrive(state.queue.as_ref(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a dead letter for good.
#[utoipa::path(delete, path = "/api/v1/dead-letters/{id}", tag = "dead letters",
    params(("id" = String, Path, description = "dead letter id")),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
              (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn discard(
    State(state): State<Arc<AppState>>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    dead_letters::discard(state.queue.as_ref(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Recent tick slots, newest first, and how many check runs each created.
#[utoipa::path(get, path = "/api/v1/ticks", tag = "ticks", params(LimitQuery),
    responses((status = 200, body = [TickSummary]), (status = 400, body = Problem),
              (status = 401, body = Problem)),
    security(("bearer" = [])))]
pub async fn ticks(
    State(state): State<Arc<AppState>>,
    _: Reader,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<TickSummary>>, Problem> {
    let q = Params::parse(query.as_deref(), &["limit"])?;
    let (limit, _) = views::page(q.int("limit")?, None)?;
    Ok(Json(views::ticks(&state.pool, limit).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct QuotaQuery {
    platform: Option<String>,
}

/// Every credential's rate-limit budget per platform resource: remaining, reset, spend rate,
/// when it runs out at the current pace, and the runs waiting on it.
#[utoipa::path(get, path = "/api/v1/quotas", tag = "quotas", params(QuotaQuery),
    responses((status = 200, body = [QuotaView]), (status = 400, body = Problem),
              (status = 401, body = Problem)),
    security(("bearer" = [])))]
pub async fn quotas(
    State(state): State<Arc<AppState>>,
    _: Reader,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<QuotaView>>, Problem> {
    let q = Params::parse(query.as_deref(), &["platform"])?;
    Ok(Json(
        quotas::list(&state.pool, q.text("platform").as_deref()).await?,
    ))
}

/// Integrations by platform and status, activities per minute per platform over the last hour,
/// runs in flight, dead letters.
#[utoipa::path(get, path = "/api/v1/overview", tag = "overview",
    responses((status = 200, body = Overview), (status = 401, body = Problem)),
    security(("bearer" = [])))]
pub async fn overview(
    State(state): State<Arc<AppState>>,
    _: Reader,
) -> Result<Json<Overview>, Problem> {
    Ok(Json(
        views::overview(&state.pool, state.queue.as_ref()).await?,
    ))
}
