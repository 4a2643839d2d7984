//! An integration's HTTP client: base URL, timeouts, user agent, bearer token; every failure
//! classified.

use std::time::Duration;

use chrono::Utc;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use super::waits::{RateLimitInfo, WaitCaps, announced_wait};
use crate::error::IntegrationError;
use crate::secret::Secret;

/// How an integration talks to its platform. Every field can be set per integration, so
/// self-hosted instances (GitHub Enterprise, Discourse, Forem) work the same.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub base_url: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub user_agent: String,
    pub waits: WaitCaps,
}

impl HttpConfig {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            user_agent: format!("tributary/{}", env!("CARGO_PKG_VERSION")),
            waits: WaitCaps::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    config: HttpConfig,
}

/// A successful response, decoded, with the rate-limit figures it reported.
#[derive(Debug, Clone)]
pub struct HttpResponse<T> {
    pub body: T,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub rate_limit: RateLimitInfo,
}

impl HttpClient {
    pub fn new(config: HttpConfig) -> Result<Self, IntegrationError> {
        let inner = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(config.user_agent.clone())
            .build()
            .map_err(|e| IntegrationError::fatal("cannot build the HTTP client").with_source(e))?;
        Ok(Self { inner, config })
    }

    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// The full URL of `path` (which starts with `/`) under the base URL.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.config.base_url.trim_end_matches('/'), path)
    }

    /// GETs `path` with `query` and decodes its JSON body as `T`.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        token: Option<&Secret>,
    ) -> Result<HttpResponse<T>, IntegrationError> {
        let mut request = self.inner.request(Method::GET, self.url(path)).query(query);
        if let Some(token) = token {
            request = request.bearer_auth(token.expose());
        }
        let what = format!("GET {path}");
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(&what, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(&what, e))?;
        if !status.is_success() {
            return Err(classify_status(
                &what,
                status,
                &headers,
                &bytes,
                self.config.waits,
            ));
        }
        let body = serde_json::from_slice(&bytes).map_err(|e| {
            IntegrationError::fatal(format!("{what}: malformed body: {e}")).with_source(e)
        })?;
        Ok(HttpResponse {
            body,
            status,
            rate_limit: RateLimitInfo::from_headers(&headers),
            headers,
        })
    }
}

/// Timeouts and connection failures are worth retrying; the URL (which may carry a token) is
/// left out of the message.
fn transport_error(what: &str, e: reqwest::Error) -> IntegrationError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    IntegrationError::retryable(format!("{what} {kind}")).with_source(e.without_url())
}

/// 429 and an exhausted budget's 403 are rate limits; 5xx (and 408) are retryable; any other
/// 4xx is fatal, with the platform's message kept.
pub(crate) fn classify_status(
    what: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    caps: WaitCaps,
) -> IntegrationError {
    let now = Utc::now();
    let message = platform_message(body);
    let wait = announced_wait(headers, now, caps);
    let rate_limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN
            && (RateLimitInfo::from_headers(headers).exhausted() || wait.is_some()));
    if rate_limited {
        let wait = wait.unwrap_or(caps.default_wait);
        let until = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
        return IntegrationError::rate_limited(until, format!("{what}: {status}: {message}"));
    }
    let text = format!("{what}: {status}: {message}");
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        IntegrationError::retryable(text)
    } else {
        IntegrationError::fatal(text)
    }
}

/// The platform's own message: a JSON body's `message` / `error`, else the start of the body.
fn platform_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        for key in ["message", "error", "error_description"] {
            if let Some(text) = value.get(key).and_then(|v| v.as_str()) {
                return text.to_owned();
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        text.chars().take(300).collect()
    }
}
