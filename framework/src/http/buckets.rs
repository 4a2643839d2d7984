//! Per-route rate-limit buckets and invalid-request accounting (Discord's model; any platform
//! that announces a bucket per route can use it).
//!
//! * **Buckets.** Each answer names its bucket (`X-RateLimit-Bucket: abcd1234`) with the budget
//!   left in it (`X-RateLimit-Remaining`, `X-RateLimit-Reset-After` in seconds with decimals).
//!   A bucket is the announced hash *and* the route's major parameter (Discord: the channel, the
//!   guild or the webhook the path starts with): two routes that share a hash and a major
//!   parameter share one budget. The client learns which bucket a route is in from its first
//!   answer, then paces every request to that bucket — from every stream of the process, for
//!   the same credential — with one [`Pacer`]: an exhausted bucket blocks only its routes.
//! * **The global limit.** A 429 that says `"global": true` in its body (or
//!   `X-RateLimit-Global: true`) blocks the whole credential for its `retry_after`; any other 429
//!   blocks only its bucket.
//! * **Invalid requests.** Platforms ban a credential that collects too many 401, 403 and 429
//!   answers in a window (Discord: 10,000 in 10 minutes, 429s of a *shared* scope excepted).
//!   With an [`InvalidRequestLimit`], the client counts them per credential and, once the count
//!   reaches the limit, refuses to send anything more for it with a fatal error that says why,
//!   until the window has moved on.
//!
//! ```text
//! HttpConfig::new(base)
//!     .route_buckets(RouteBuckets::new("discord", |path| Route::major_parameter(path, &["channels", "guilds", "webhooks"])))
//!     .invalid_requests(InvalidRequestLimit { limit: 5_000, per: Duration::from_secs(600) })
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio::time::Instant;

use super::body::{BodyClassifier, classify_answer};
use super::config::Pacing;
use super::pacing::Pacer;
use super::waits::{RateLimitInfo, WaitCaps};
use crate::error::IntegrationError;
use crate::secret::Secret;

/// A request's route: what the platform buckets it by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// The route with its minor ids replaced (`/channels/1/messages/{id}`).
    pub key: String,
    /// The major parameter: `channels/1`, or empty when the route has none.
    pub major: String,
}

impl Route {
    /// Discord's rule: the id after the first segment named in `majors` is the major parameter
    /// (kept in the key); every other all-digit segment is a minor id (`{id}` in the key).
    pub fn major_parameter(path: &str, majors: &[&str]) -> Self {
        let mut major = String::new();
        let mut previous = "";
        let mut segments = Vec::new();
        for segment in path.split('/') {
            let is_id = !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit());
            if is_id && major.is_empty() && majors.contains(&previous) {
                major = format!("{previous}/{segment}");
                segments.push(segment);
            } else if is_id {
                segments.push("{id}");
            } else {
                segments.push(segment);
            }
            previous = segment;
        }
        Self {
            key: segments.join("/"),
            major,
        }
    }
}

/// How a platform's paths map to routes (see [`Route::major_parameter`]); compared by name.
#[derive(Clone, Copy)]
pub struct RouteBuckets {
    name: &'static str,
    route: fn(&str) -> Route,
}

impl RouteBuckets {
    pub const fn new(name: &'static str, route: fn(&str) -> Route) -> Self {
        Self { name, route }
    }

    pub fn route(&self, path: &str) -> Route {
        (self.route)(path)
    }
}

impl PartialEq for RouteBuckets {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl fmt::Debug for RouteBuckets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RouteBuckets").field(&self.name).finish()
    }
}

/// Stop sending for a credential once `limit` answers 401, 403 or 429 came back within `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidRequestLimit {
    pub limit: u32,
    pub per: Duration,
}

/// The bucket state and invalid-request count of one credential.
pub struct Book {
    caps: WaitCaps,
    pacing: Pacing,
    /// Route key → the bucket hash its answers named.
    routes: Mutex<HashMap<String, String>>,
    /// Bucket (`hash` + major parameter, or the route while its hash is unknown) → its pacer.
    buckets: Mutex<HashMap<String, Arc<Pacer>>>,
    /// When each counted invalid answer came back, oldest first.
    invalid: Mutex<VecDeque<Instant>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Book {
    fn new(pacing: Pacing, caps: WaitCaps) -> Self {
        // a bucket is paced by what it reports; the steady rate is the credential's
        let pacing = Pacing {
            rate: None,
            ..pacing
        };
        Self {
            caps,
            pacing,
            routes: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            invalid: Mutex::new(VecDeque::new()),
        }
    }

    fn bucket_key(&self, route: &Route) -> String {
        match lock(&self.routes).get(&route.key) {
            Some(hash) => format!("bucket:{hash}:{}", route.major),
            None => format!("route:{}:{}", route.key, route.major),
        }
    }

    fn pacer_of(&self, key: String) -> Arc<Pacer> {
        lock(&self.buckets)
            .entry(key)
            .or_insert_with(|| Arc::new(Pacer::new(self.pacing, self.caps)))
            .clone()
    }

    /// The pacer of the bucket `path` is in (as far as known).
    pub fn bucket(&self, buckets: &RouteBuckets, path: &str) -> Arc<Pacer> {
        let key = self.bucket_key(&buckets.route(path));
        self.pacer_of(key)
    }

    /// The bucket key `path` is in (as far as known), for diagnostics and tests.
    pub fn bucket_name(&self, buckets: &RouteBuckets, path: &str) -> String {
        self.bucket_key(&buckets.route(path))
    }

    /// Refuses when this credential collected `limit` invalid answers within the window.
    pub fn check_invalid(
        &self,
        limit: Option<InvalidRequestLimit>,
        what: &str,
    ) -> Result<(), IntegrationError> {
        let Some(limit) = limit else {
            return Ok(());
        };
        let mut invalid = lock(&self.invalid);
        let now = Instant::now();
        while invalid
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= limit.per)
        {
            invalid.pop_front();
        }
        if invalid.len() < limit.limit as usize {
            return Ok(());
        }
        Err(IntegrationError::fatal(format!(
            "{what}: not sent: this credential got {} answers 401, 403 or 429 in the last {}s, \
             the most this client allows before the platform bans it; check the credential and \
             its permissions",
            invalid.len(),
            limit.per.as_secs()
        )))
    }

    /// Counts an answer if it is an invalid request (401, 403, or a 429 not of a shared scope).
    pub fn count(&self, status: StatusCode, headers: &HeaderMap) {
        let shared = headers
            .get("x-ratelimit-scope")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("shared"));
        let invalid = matches!(status.as_u16(), 401 | 403) || (status.as_u16() == 429 && !shared);
        if invalid {
            lock(&self.invalid).push_back(Instant::now());
        }
    }

    /// Learns from one answer: the bucket its route is in and that bucket's budget; a global 429
    /// blocks `credential`, any other refusal the bucket. Returns the answer's error.
    #[allow(clippy::too_many_arguments)]
    pub fn learn(
        &self,
        buckets: &RouteBuckets,
        credential: &Pacer,
        classifier: Option<&BodyClassifier>,
        what: &str,
        path: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Option<IntegrationError> {
        let route = buckets.route(path);
        if let Some(hash) = headers
            .get("x-ratelimit-bucket")
            .and_then(|v| v.to_str().ok())
            .filter(|h| !h.is_empty())
        {
            lock(&self.routes).insert(route.key.clone(), hash.to_owned());
        }
        let bucket = self.pacer_of(self.bucket_key(&route));
        bucket.observe(&RateLimitInfo::from_headers_at(headers, now), now);
        let error = classify_answer(classifier, what, status, headers, body, now, self.caps);
        if let Some(IntegrationError::RateLimited { until, .. }) = &error {
            let wait = (*until - now).to_std().unwrap_or_default();
            if is_global(headers, body) {
                credential.block_for(wait);
            } else {
                bucket.block_for(wait);
            }
        }
        error
    }
}

/// A refusal of the whole credential: `"global": true` in the body or `X-RateLimit-Global`.
fn is_global(headers: &HeaderMap, body: &[u8]) -> bool {
    let header = headers
        .get("x-ratelimit-global")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    header
        || serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("global").and_then(Value::as_bool))
            .unwrap_or(false)
}

/// One [`Book`] per credential, told apart by a keyed hash.
pub struct Books {
    pacing: Pacing,
    caps: WaitCaps,
    hasher: RandomState,
    by_credential: Mutex<HashMap<u64, Arc<Book>>>,
}

impl Books {
    pub fn new(pacing: Pacing, caps: WaitCaps) -> Self {
        Self {
            pacing,
            caps,
            hasher: RandomState::new(),
            by_credential: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, token: Option<&Secret>) -> Arc<Book> {
        let key = token.map_or(0, |t| self.hasher.hash_one(t.expose()) | 1);
        lock(&self.by_credential)
            .entry(key)
            .or_insert_with(|| Arc::new(Book::new(self.pacing, self.caps)))
            .clone()
    }
}

impl fmt::Debug for Books {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Books")
            .field("credentials", &lock(&self.by_credential).len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::ErrorKind;
    use reqwest::header::{HeaderName, HeaderValue};

    const DISCORD: RouteBuckets = RouteBuckets::new("discord", |path| {
        Route::major_parameter(path, &["channels", "guilds", "webhooks"])
    });

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn routes_keep_the_major_parameter_and_hide_minor_ids() {
        let route = Route::major_parameter("/channels/42/messages/7", &["channels", "guilds"]);
        assert_eq!(route.key, "/channels/42/messages/{id}");
        assert_eq!(route.major, "channels/42");
        let route = Route::major_parameter("/guilds/9/threads/active", &["channels", "guilds"]);
        assert_eq!(route.major, "guilds/9");
        let route = Route::major_parameter("/users/5", &["channels", "guilds"]);
        assert_eq!(
            (route.key.as_str(), route.major.as_str()),
            ("/users/{id}", "")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn routes_sharing_a_hash_and_major_share_a_bucket_others_do_not() {
        let book = Book::new(Pacing::default(), WaitCaps::default());
        let credential = Pacer::new(Pacing::default(), WaitCaps::default());
        let now = Utc::now();
        let exhausted = headers(&[
            ("x-ratelimit-bucket", "abc"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset-after", "2.5"),
        ]);
        let learn = |path: &str, h: &HeaderMap| {
            book.learn(
                &DISCORD,
                &credential,
                None,
                "GET",
                path,
                StatusCode::OK,
                h,
                b"[]",
                now,
            )
        };
        assert!(learn("/channels/1/messages", &exhausted).is_none());
        let shared = headers(&[
            ("x-ratelimit-bucket", "abc"),
            ("x-ratelimit-remaining", "4"),
        ]);
        assert!(learn("/channels/1/threads/archived/public", &shared).is_none());
        assert!(learn("/channels/2/messages", &shared).is_none());
        let blocked = |path: &str| book.bucket(&DISCORD, path).status().blocked_for;
        assert!(blocked("/channels/1/messages") > Duration::from_secs(2));
        assert!(
            blocked("/channels/1/threads/archived/public") > Duration::from_secs(2),
            "the same hash and channel: the same bucket"
        );
        assert_eq!(
            blocked("/channels/2/messages"),
            Duration::ZERO,
            "another channel"
        );
        assert_eq!(credential.status().blocked_for, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_global_429_blocks_the_credential_a_local_one_its_bucket() {
        let book = Book::new(Pacing::default(), WaitCaps::default());
        let credential = Pacer::new(Pacing::default(), WaitCaps::default());
        let now = Utc::now();
        let local = book
            .learn(
                &DISCORD,
                &credential,
                None,
                "GET /channels/1/messages",
                "/channels/1/messages",
                StatusCode::TOO_MANY_REQUESTS,
                &headers(&[("x-ratelimit-bucket", "m"), ("x-ratelimit-scope", "user")]),
                br#"{"message": "You are being rate limited.", "retry_after": 3.5, "global": false}"#,
                now,
            )
            .unwrap();
        assert_eq!(local.kind(), ErrorKind::RateLimited);
        assert_eq!(credential.status().blocked_for, Duration::ZERO);
        assert_eq!(
            book.bucket(&DISCORD, "/channels/1/messages")
                .status()
                .blocked_for,
            Duration::from_millis(3500)
        );
        let global = book
            .learn(
                &DISCORD,
                &credential,
                None,
                "GET /channels/2/messages",
                "/channels/2/messages",
                StatusCode::TOO_MANY_REQUESTS,
                &headers(&[("x-ratelimit-global", "true")]),
                br#"{"message": "You are being rate limited.", "retry_after": 7, "global": true}"#,
                now,
            )
            .unwrap();
        assert_eq!(global.kind(), ErrorKind::RateLimited);
        assert_eq!(credential.status().blocked_for, Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn invalid_answers_stop_the_credential_until_the_window_moves_on() {
        let book = Book::new(Pacing::default(), WaitCaps::default());
        let limit = Some(InvalidRequestLimit {
            limit: 3,
            per: Duration::from_secs(600),
        });
        let none = HeaderMap::new();
        book.count(StatusCode::UNAUTHORIZED, &none);
        book.count(StatusCode::OK, &none);
        book.count(StatusCode::NOT_FOUND, &none);
        book.count(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("x-ratelimit-scope", "shared")]),
        );
        book.count(StatusCode::FORBIDDEN, &none);
        assert!(book.check_invalid(limit, "GET /x").is_ok(), "two counted");
        tokio::time::advance(Duration::from_secs(300)).await;
        book.count(StatusCode::TOO_MANY_REQUESTS, &none);
        let e = book.check_invalid(limit, "GET /x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Fatal);
        assert!(
            e.to_string()
                .contains("3 answers 401, 403 or 429 in the last 600s"),
            "{e}"
        );
        assert!(
            book.check_invalid(None, "GET /x").is_ok(),
            "no limit: no count"
        );
        tokio::time::advance(Duration::from_secs(301)).await;
        assert!(
            book.check_invalid(limit, "GET /x").is_ok(),
            "two left the window"
        );
    }
}
