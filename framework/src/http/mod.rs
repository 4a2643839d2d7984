//! The HTTP toolkit every integration uses, so that no integration handles rate limits by hand.
//!
//! * [`HttpConfig`]: base URL, timeouts, user agent, how the credential is sent ([`Auth`]), extra
//!   headers, [`WaitCaps`] and [`Pacing`] — all per integration (self-hosted instances included).
//! * [`HttpClient::get_json`] / [`HttpClient::get_json_url`]: one paced, classified GET whose
//!   body is decoded with the path of any field that does not fit. Keep clients in an
//!   [`HttpClients`] held by the integration: pacing is per credential and lives in the client.
//! * [`classify_response`]: 429, GitHub's 403s (primary and secondary limits) → `RateLimited`;
//!   5xx, 408 and transport failures → `Retryable`; other 4xx → `Fatal` with the platform's
//!   message. Errors carry the method and path only, never a query string or a credential.
//! * [`BodyClassifier`] (`HttpConfig::classify_body`): a platform's own reading of an answer's
//!   body before the standard classification (Slack's `200` with `ok: false`, Discourse's
//!   `extras.wait_seconds`), as a [`Verdict`]: success, rate limit, retryable or fatal.
//! * [`RouteBuckets`] (`HttpConfig::route_buckets`): per-route buckets (`X-RateLimit-Bucket`)
//!   shared by every stream of a credential, global 429s (`"global": true`) blocking the
//!   credential; [`InvalidRequestLimit`]: stop before a ban for too many 401/403/429 answers.
//! * [`announced_wait`], [`RateLimitInfo`]: every form of announced wait and budget
//!   (`Retry-After`, reset epochs and deltas, float counts, JSON `retry_after` / `backoff` /
//!   `extras.wait_seconds`); body-level limits ([`STACK_EXCHANGE`], a [`BodyClassifier`]: Stack
//!   Exchange's 400 `throttle_violation` a rate limit for the wait it states; [`daily_quota`]:
//!   `quota_remaining`, surfaced as the answer's [`RateLimitInfo`], deferring the run to midnight
//!   UTC once spent).
//! * [`MethodBackoffs`]: a `backoff` holds back the next call of the same method ([`method_of`]),
//!   from every stream of the process, while other methods go on.
//! * [`Auth::ClientCredentials`] ([`oauth2`]): OAuth2 client credentials, the token fetched once,
//!   shared, refreshed before it expires and once on a 401, never stored.
//! * [`ResetForm`]: whether a platform's reset header is an epoch (X) or seconds from now
//!   (Reddit).
//! * [`Pacer`]: per-credential pacing with `governor`, fed by the reported budget; waits up to
//!   `max_inline_wait` are slept, longer ones come back as `RateLimited` (a deferral of the run).
//! * [`SharedBudgets`]: each credential's budget in PostgreSQL, shared by every worker and
//!   command of a deployment that opts in ([`HttpClients::share_budgets`]).
//! * [`PageNumber`], [`Cursor`], [`LinkPages`], [`IdBoundary`]: page tokens with loop detection.
//!
//! A typical `process_stream`:
//!
//! ```text
//! let client = self.clients.get(HttpConfig::new(&settings.base_url).auth(Auth::Header("api-key".into())))?;
//! let pages = PageNumber::of(stream)?;
//! let query = [("page", pages.page().to_string()), ("per_page", "100".to_owned())];
//! let items: Vec<Item> = client.get_json("/items", &query, token.as_ref()).await?.body;
//! let next = pages.next(items.len() == 100, items.iter().map(|i| i.id))?;
//! Ok(StreamOutcome::new().activities(items.into_iter().map(to_activity)).next_page_opt(next))
//! ```

mod backoff;
mod body;
mod body_limits;
mod buckets;
mod budgets;
mod classify;
mod client;
mod config;
pub mod oauth2;
mod pacing;
mod pagination;
pub mod policy;
mod resources;
mod waits;

pub use backoff::{MethodBackoffs, method_of};
pub use body::{Answer, BodyClassifier, Verdict, classify_answer};
pub use body_limits::{STACK_EXCHANGE, daily_quota, is_body_rate_limit, stated_wait};
pub use buckets::{Book, Books, InvalidRequestLimit, Route, RouteBuckets};
pub use budgets::{
    BudgetKey, MIN_SPAN, SAME_WINDOW, SPEND_SMOOTHING, SharedBudgets, Turn, credential_fingerprint,
    shared_budgets_from_env,
};
pub use classify::{classify_response, platform_message, transport_error};
pub use client::{HttpClient, HttpClients, HttpResponse, decode};
pub use config::{Auth, HttpConfig, Pacing, RequestRate};
pub use oauth2::{ClientCredentials, Tokens};
pub use pacing::{Pacer, PacerStatus, Pacers, per_second};
pub use pagination::{
    Cursor, Direction, IdBoundary, LinkPages, PageNumber, fingerprint, link, next_link,
};
pub use policy::{AddressGuard, HttpPolicy};
pub use waits::{RateLimitInfo, ResetForm, WaitCaps, announced_wait, body_wait, retry_after};
