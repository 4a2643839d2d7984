//! Errors as RFC 9457 problem details (`application/problem+json`), naming the field at fault.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tributary::admin::AdminError;
use utoipa::ToSchema;

/// A problem: what went wrong, and which field of the request caused it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type", serialize_with = "problem_uri")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    #[schema(value_type = String)]
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// The request field at fault (`settings.repositories[0]`, `limit`, `id`…), if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every problem when there are several (invalid settings).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

fn problem_uri<S: serde::Serializer>(kind: &&'static str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("https://tributary.dev/problems/{kind}"))
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind,
            title: status.canonical_reason().unwrap_or("error"),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            errors: Vec::new(),
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400: a parameter or the body is malformed.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            format!("`{field}` {message}"),
        )
        .field(field)
    }

    pub fn unauthorized(detail: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server could not complete the request; its log says why",
        )
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let mut response = (status, axum::Json(&self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<AdminError> for Problem {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::UnknownPlatform(e) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-platform",
                e.to_string(),
            )
            .field("platform"),
            AdminError::InvalidSettings { platform, source } => {
                let errors: Vec<FieldError> = source
                    .problems
                    .iter()
                    .map(|p| FieldError {
                        field: if p.field.is_empty() {
                            "settings".to_owned()
                        } else {
                            format!("settings.{}", p.field)
                        },
                        message: p.message.clone(),
                    })
                    .collect();
                let mut problem = Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-settings",
                    format!("settings for platform `{platform}` refused: {source}"),
                );
                problem.field = errors.first().map(|e| e.field.clone());
                problem.errors = errors;
                problem
            }
            e @ (AdminError::UnknownIntegration(_)
            | AdminError::UnknownRun(_)
            | AdminError::UnknownDeadLetter(_)
            | AdminError::UnknownToken(_)) => Self::not_found(e.to_string()).field("id"),
            AdminError::InvalidInput { field, message } => Self::invalid(&field, message),
            AdminError::Refused(message) => Self::new(StatusCode::CONFLICT, "refused", message),
            e @ (AdminError::Store(_) | AdminError::Queue(_)) => {
                crate::events::request_failed(&e);
                Self::internal()
            }
        }
    }
}
