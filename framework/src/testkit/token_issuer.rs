//! A fake OAuth2 token endpoint (client credentials) on a [`FakeServer`], for the fakes of
//! platforms that use [`crate::http::Auth::ClientCredentials`]: it checks the HTTP Basic id and
//! secret, issues `token-1`, `token-2`… with the lifetime a test sets, and tells the fake's API
//! handlers whether a request's bearer token is one it issued and has not revoked.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::http::Method;
use serde_json::json;

use super::fake_server::{FakeServer, Reply, Request};

#[derive(Debug)]
struct State {
    basic: String,
    lifetime_secs: u64,
    issued: usize,
    valid: BTreeSet<String>,
}

/// A token endpoint served by a fake platform. Clones share the same tokens.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    state: Arc<Mutex<State>>,
}

impl TokenIssuer {
    /// Serves the endpoint at `path` of `server` for the application `client_id` / `secret`;
    /// tokens say they live `lifetime_secs`.
    pub fn serve(
        server: &FakeServer,
        path: &str,
        client_id: &str,
        secret: &str,
        lifetime_secs: u64,
    ) -> Self {
        let issuer = Self {
            state: Arc::new(Mutex::new(State {
                basic: basic_auth(client_id, secret),
                lifetime_secs,
                issued: 0,
                valid: BTreeSet::new(),
            })),
        };
        let shared = issuer.clone();
        server.handle(path, move |request| shared.answer(request));
        issuer
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn answer(&self, request: &Request) -> Reply {
        if request.method != Method::POST {
            return Reply::error(405, "method not allowed");
        }
        let mut state = self.state();
        if request.header("authorization") != Some(state.basic.as_str()) {
            return Reply::json(json!({"message": "Unauthorized", "error": 401})).with_status(401);
        }
        state.issued += 1;
        let token = format!("token-{}", state.issued);
        state.valid.insert(token.clone());
        Reply::json(json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": state.lifetime_secs,
            "scope": "*",
        }))
    }

    /// Whether `request` carries a bearer token this endpoint issued and has not revoked.
    pub fn authorizes(&self, request: &Request) -> bool {
        request
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|token| self.state().valid.contains(token))
    }

    /// Revokes every token issued so far (as a platform does when one expires early).
    pub fn revoke_all(&self) {
        self.state().valid.clear();
    }

    /// The lifetime announced by the next tokens.
    pub fn set_lifetime(&self, lifetime_secs: u64) {
        self.state().lifetime_secs = lifetime_secs;
    }

    /// How many tokens were issued.
    pub fn issued(&self) -> usize {
        self.state().issued
    }
}

/// The `Authorization` value of HTTP Basic for `user` / `password`.
pub fn basic_auth(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}");
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4 + 6);
    out.push_str("Basic ");
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_is_base64_of_user_colon_password() {
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic_auth("a", "b"), "Basic YTpi");
        assert_eq!(basic_auth("ab", "c"), "Basic YWI6Yw==");
    }
}
