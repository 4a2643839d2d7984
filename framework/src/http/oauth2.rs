//! OAuth2 client credentials (RFC 6749 §4.4): an application's id and secret exchanged for an
//! access token, which then goes with every request as `Authorization: Bearer`.
//!
//! An integration asks for it with [`super::Auth::ClientCredentials`] and passes the client
//! secret as the request's credential; the client does the rest:
//!
//! * the token is fetched once (`POST token_url`, HTTP Basic with the id and secret,
//!   `grant_type=client_credentials`) and shared by every request of that credential, from every
//!   stream and run of the process (concurrent first requests wait for the one fetch);
//! * it is fetched again [`REFRESH_MARGIN`] before it expires (`expires_in`), and once when the
//!   API answers 401 to it (a token revoked or expired early): the 401 is retried with the new
//!   token once, a second 401 is the answer;
//! * the token lives in memory only, as a [`Secret`]: never in stream data, errors or logs.
//!   Errors of the token endpoint name its path and the platform's message only.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::classify::{classify_response, transport_error};
use super::client::http_url;
use super::waits::WaitCaps;
use crate::error::IntegrationError;
use crate::secret::Secret;

/// A token is fetched again this long before it expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// A token whose answer gives no `expires_in` is kept this long.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// Where and as whom a client-credentials token is asked for. The secret is the request's
/// credential, never part of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// The token endpoint, e.g. `https://www.reddit.com/api/v1/access_token`.
    pub token_url: String,
    /// The application's id (not a secret: it travels in the Basic header with the secret).
    pub client_id: String,
    /// The scope asked for, if the platform wants one.
    pub scope: Option<String>,
}

impl ClientCredentials {
    pub fn new(token_url: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            token_url: token_url.into(),
            client_id: client_id.into(),
            scope: None,
        }
    }

    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }
}

/// The token endpoint's answer (RFC 6749 §5.1; some platforms answer 200 with an `error`).
#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<f64>,
    error: Option<String>,
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
}

/// The access tokens of one client, by credential (a keyed hash of id and secret).
#[derive(Default)]
pub struct Tokens {
    hasher: RandomState,
    by_credential: Mutex<HashMap<u64, Cached>>,
    fetched: std::sync::atomic::AtomicUsize,
}

impl Tokens {
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&self, grant: &ClientCredentials, secret: &Secret) -> u64 {
        self.hasher
            .hash_one((&grant.token_url, &grant.client_id, secret.expose()))
    }

    /// How many tokens were fetched (for tests and diagnostics).
    pub fn fetched(&self) -> usize {
        self.fetched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The current token of `grant` and `secret`, fetched when there is none or it is about to
    /// expire.
    pub async fn token(
        &self,
        http: &reqwest::Client,
        grant: &ClientCredentials,
        secret: &Secret,
        caps: WaitCaps,
    ) -> Result<Secret, IntegrationError> {
        let key = self.key(grant, secret);
        // held across the fetch: concurrent first requests wait for one token
        let mut tokens = self.by_credential.lock().await;
        if let Some(cached) = tokens.get(&key)
            && cached.refresh_at > Instant::now()
        {
            return Ok(cached.token.clone());
        }
        let (token, lifetime) = fetch(http, grant, secret, caps).await?;
        self.fetched
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let refresh_at = Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN);
        tokens.insert(
            key,
            Cached {
                token: token.clone(),
                refresh_at,
            },
        );
        Ok(token)
    }

    /// Forgets `stale` (a token the API refused), unless another request already replaced it.
    pub async fn invalidate(&self, grant: &ClientCredentials, secret: &Secret, stale: &Secret) {
        let key = self.key(grant, secret);
        let mut tokens = self.by_credential.lock().await;
        if tokens.get(&key).is_some_and(|c| c.token == *stale) {
            tokens.remove(&key);
        }
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("fetched", &self.fetched())
            .finish_non_exhaustive()
    }
}

async fn fetch(
    http: &reqwest::Client,
    grant: &ClientCredentials,
    secret: &Secret,
    caps: WaitCaps,
) -> Result<(Secret, Duration), IntegrationError> {
    let url = http_url(&grant.token_url, "token URL")?;
    let what = format!("POST {}", url.path());
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = &grant.scope {
        form.push(("scope", scope.as_str()));
    }
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let response = http
        .post(url)
        .basic_auth(&grant.client_id, Some(secret.expose()))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| transport_error(&what, e))?;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| transport_error(&what, e))?;
    if let Some(error) =
        classify_response(&what, status, &headers, &bytes, crate::clock::now(), caps)
    {
        return Err(error);
    }
    let answer: TokenAnswer = serde_json::from_slice(&bytes).map_err(|e| {
        IntegrationError::fatal(format!("{what}: the token answer is not JSON")).with_source(e)
    })?;
    match (answer.access_token, answer.error) {
        (Some(token), None) if !token.is_empty() => {
            let lifetime = answer
                .expires_in
                .filter(|s| s.is_finite() && *s > 0.0)
                .map_or(DEFAULT_LIFETIME, |s| Duration::from_secs_f64(s.min(1e9)));
            Ok((Secret::new(token), lifetime))
        }
        (_, error) => Err(IntegrationError::fatal(format!(
            "{what}: {status}: no token: {}",
            error
                .as_deref()
                .unwrap_or("the answer has no `access_token`")
        ))),
    }
}

/// Percent-encodes a form value (RFC 3986 unreserved characters kept).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(encode("read identity"), "read%20identity");
        assert_eq!(encode("a-b_c.d~"), "a-b_c.d~");
    }
}
