//! Who is asking: a bearer token (`Authorization: Bearer trb_…`), or for the dashboard the same
//! token in the `tributary_token` cookie (HttpOnly, SameSite=Strict) that `/login` sets. Every
//! request without a live token is refused; steering needs the operator role.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use tributary::admin::tokens::{self, Role, TokenInfo};

use crate::AppState;
use crate::problem::Problem;

pub const COOKIE: &str = "tributary_token";

/// The token a request presents, if any.
fn presented(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

async fn caller(state: &AppState, headers: &HeaderMap) -> Result<TokenInfo, Problem> {
    let Some(token) = presented(headers) else {
        return Err(Problem::unauthorized(
            "a bearer token is required (Authorization: Bearer …); create one with `tributary-server token create`",
        ));
    };
    match tokens::authenticate(&state.pool, &token).await {
        Ok(Some(info)) => Ok(info),
        Ok(None) => Err(Problem::unauthorized("the token is unknown or revoked")),
        Err(e) => Err(Problem::from(e)),
    }
}

/// Any live token: reads.
#[derive(Debug, Clone)]
pub struct Reader(pub TokenInfo);

/// An operator's token: steers.
#[derive(Debug, Clone)]
pub struct Operator(pub TokenInfo);

impl FromRequestParts<Arc<AppState>> for Reader {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Problem> {
        caller(state, &parts.headers).await.map(Reader)
    }
}

impl FromRequestParts<Arc<AppState>> for Operator {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Problem> {
        let info = caller(state, &parts.headers).await?;
        if info.role == Role::Operator {
            Ok(Operator(info))
        } else {
            Err(Problem::forbidden(
                "this token is read-only; steering needs an operator token",
            ))
        }
    }
}

/// A dashboard visitor: without a live token, the login page instead.
#[derive(Debug, Clone)]
pub struct Viewer(pub TokenInfo);

pub enum ViewerRejection {
    Login,
    Problem(Problem),
}

impl IntoResponse for ViewerRejection {
    fn into_response(self) -> Response {
        match self {
            Self::Login => Redirect::to("/login").into_response(),
            Self::Problem(p) => p.into_response(),
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Viewer {
    type Rejection = ViewerRejection;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ViewerRejection> {
        match caller(state, &parts.headers).await {
            Ok(info) => Ok(Viewer(info)),
            Err(p) if p.status == 401 => Err(ViewerRejection::Login),
            Err(p) => Err(ViewerRejection::Problem(p)),
        }
    }
}

impl Viewer {
    pub fn is_operator(&self) -> bool {
        self.0.role == Role::Operator
    }

    /// Refuses a read-only visitor's attempt to steer.
    pub fn require_operator(&self) -> Result<(), Problem> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(Problem::forbidden(
                "this token is read-only; steering needs an operator token",
            ))
        }
    }
}

/// The cookie `/login` sets for a valid token.
pub fn login_cookie(token: &str) -> String {
    format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/")
}
