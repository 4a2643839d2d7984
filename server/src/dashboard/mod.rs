//! The dashboard: server-rendered HTML over the same `tributary::admin` functions as the API. Live
//! pages reload themselves every few seconds (a meta refresh: no script needed); steering is
//! plain HTML forms, allowed to operator tokens only.

pub mod chart;
pub mod layout;
pub mod pages;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::Markup;
use tributary::admin::{dead_letters, quotas, tokens, views};
use tributary::store::overview::{IntegrationFilter, RunFilter};

use crate::AppState;
use crate::api::input::{Params, uuid_field};
use crate::api::runs::continue_run;
use crate::auth::{Viewer, login_cookie};
use crate::problem::Problem;

/// Seconds between reloads of a live page.
const REFRESH: u32 = 2;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(overview))
        .route("/login", get(login_page).post(login))
        .route("/integrations", get(integrations))
        .route("/integrations/{id}", get(integration))
        .route("/runs", get(runs))
        .route("/runs/{id}", get(run))
        .route("/runs/{id}/continue", post(continue_action))
        .route("/runs/{id}/cancel", post(cancel_action))
        .route("/quotas", get(quotas_page))
        .route("/dead-letters", get(dead_letters_page))
        .route("/dead-letters/{id}/redrive", post(redrive_action))
        .route("/dead-letters/{id}/discard", post(discard_action))
}

fn who(viewer: &Viewer) -> String {
    format!("{} · {}", viewer.0.name, viewer.0.role)
}

fn render(title: &str, nav: &str, viewer: &Viewer, refresh: Option<u32>, body: Markup) -> Response {
    Html(layout::page(title, nav, &who(viewer), refresh, body).into_string()).into_response()
}

/// The `done` message a redirect after an action carries.
fn flash(query: Option<&str>) -> Option<&'static str> {
    let q = Params::parse(query, &["done"]).ok()?;
    match q.text("done")?.as_str() {
        "redriven" => Some("The dead letter was sent to the workers again."),
        "discarded" => Some("The dead letter was discarded."),
        "continued" => Some("The run was resumed and handed to the workers."),
        "cancelled" => Some("The run was cancelled."),
        _ => None,
    }
}

async fn login_page(State(state): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Response {
    let token = Params::parse(query.as_deref(), &["token"])
        .ok()
        .and_then(|q| q.text("token"));
    match token {
        Some(token) => sign_in(&state, &token).await,
        None => Html(layout::page("Sign in", "", "", None, pages::login(None)).into_string())
            .into_response(),
    }
}

async fn login(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body);
    let token = Params::parse(Some(&text), &["token"])
        .ok()
        .and_then(|q| q.text("token"))
        .unwrap_or_default();
    sign_in(&state, &token).await
}

async fn sign_in(state: &AppState, token: &str) -> Response {
    match tokens::authenticate(&state.pool, token).await {
        Ok(Some(_)) => (
            [(header::SET_COOKIE, login_cookie(token))],
            Redirect::to("/"),
        )
            .into_response(),
        Ok(None) => Html(
            layout::page(
                "Sign in",
                "",
                "",
                None,
                pages::login(Some("That token is unknown or revoked.")),
            )
            .into_string(),
        )
        .into_response(),
        Err(e) => Problem::from(e).into_response(),
    }
}

async fn overview(State(state): State<Arc<AppState>>, viewer: Viewer) -> Result<Response, Problem> {
    let o = views::overview(&state.pool, state.queue.as_ref()).await?;
    Ok(render(
        "Overview",
        "overview",
        &viewer,
        Some(REFRESH),
        pages::overview(&o),
    ))
}

async fn integrations(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let q = Params::parse(query.as_deref(), &["platform", "status"])?;
    let filter = IntegrationFilter {
        platform: q.text("platform"),
        status: q.text("status"),
        limit: views::MAX_LIMIT,
        ..IntegrationFilter::default()
    };
    let list = views::integrations(&state.pool, &filter).await?;
    Ok(render(
        "Integrations",
        "integrations",
        &viewer,
        None,
        pages::integrations(&list),
    ))
}

async fn integration(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = uuid_field("id", &id)?;
    let detail = views::integration(&state.pool, id).await?;
    let live = detail.integration.active_run_id.is_some();
    Ok(render(
        "Integration",
        "integrations",
        &viewer,
        live.then_some(REFRESH),
        pages::integration(&detail),
    ))
}

async fn runs(State(state): State<Arc<AppState>>, viewer: Viewer) -> Result<Response, Problem> {
    let list = views::runs(
        &state.pool,
        &RunFilter {
            limit: 200,
            ..RunFilter::default()
        },
    )
    .await?;
    Ok(render(
        "Runs",
        "runs",
        &viewer,
        Some(REFRESH),
        maud::html! { h1 { "Runs" } div.card { (pages::runs_table(&list, &[])) } },
    ))
}

async fn run(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let id = uuid_field("id", &id)?;
    let detail = views::run(&state.pool, id).await?;
    // errored streams first: they are what an operator opens a run for
    let mut streams = views::streams(&state.pool, id, true, 200, 0).await?;
    streams.extend(
        views::streams(&state.pool, id, false, 300, 0)
            .await?
            .into_iter()
            .filter(|s| s.state != "error"),
    );
    let live = matches!(
        detail.run.state.as_str(),
        "pending" | "processing" | "delayed"
    );
    Ok(render(
        "Run",
        "runs",
        &viewer,
        live.then_some(REFRESH),
        pages::run(
            &detail,
            &streams,
            viewer.is_operator(),
            flash(query.as_deref()),
        ),
    ))
}

async fn continue_action(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    viewer.require_operator()?;
    let id = uuid_field("id", &id)?;
    continue_run(&state, id).await?;
    Ok(Redirect::to(&format!("/runs/{id}?done=continued")).into_response())
}

async fn cancel_action(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    viewer.require_operator()?;
    let id = uuid_field("id", &id)?;
    tributary::admin::cancel_run(&state.pool, id).await?;
    Ok(Redirect::to(&format!("/runs/{id}?done=cancelled")).into_response())
}

async fn quotas_page(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
) -> Result<Response, Problem> {
    let list = quotas::list(&state.pool, None).await?;
    Ok(render(
        "Quotas",
        "quotas",
        &viewer,
        Some(10),
        pages::quotas(&list),
    ))
}

async fn dead_letters_page(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let list = dead_letters::list(state.queue.as_ref(), 200).await?;
    Ok(render(
        "Dead letters",
        "dead-letters",
        &viewer,
        None,
        pages::dead_letters(&list, viewer.is_operator(), flash(query.as_deref())),
    ))
}

async fn redrive_action(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    viewer.require_operator()?;
    dead_letters::redrive(state.queue.as_ref(), &id).await?;
    Ok(Redirect::to("/dead-letters?done=redriven").into_response())
}

async fn discard_action(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    viewer.require_operator()?;
    dead_letters::discard(state.queue.as_ref(), &id).await?;
    Ok(Redirect::to("/dead-letters?done=discarded").into_response())
}
