//! How an integration's client talks to its platform: base URL, timeouts, user agent, how the
//! credential is sent, extra headers, pacing. Every field is set per integration, so self-hosted
//! instances (GitHub Enterprise, Discourse, Forem) work the same way as hosted ones.

use std::num::NonZeroU32;
use std::time::Duration;

use super::body::BodyClassifier;
use super::buckets::{InvalidRequestLimit, RouteBuckets};
use super::waits::WaitCaps;

/// How the credential travels with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <token>` (GitHub, most OAuth APIs).
    Bearer,
    /// A header of its own: `api-key: <token>` (Forem).
    Header(String),
    /// `Authorization: <scheme> <token>`: Discord's `Bot TOKEN`.
    Scheme(String),
    /// A query parameter: `?key=<token>` (Stack Exchange). Never shown in errors: they carry the
    /// path only.
    Query(String),
}

/// A steady rate: at most `requests` per `per`, with bursts of up to `requests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRate {
    pub requests: NonZeroU32,
    pub per: Duration,
}

impl RequestRate {
    /// `requests` per second.
    pub fn per_second(requests: NonZeroU32) -> Self {
        Self {
            requests,
            per: Duration::from_secs(1),
        }
    }
}

/// Proactive pacing, per credential (see [`super::Pacer`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    /// A rate this client never exceeds for one credential (a platform's documented limit), if
    /// any.
    pub rate: Option<RequestRate>,
    /// Once the budget the platform reports falls to this fraction of its reported limit, the
    /// remaining requests are spread evenly until the reset. Where no limit is reported, below
    /// [`Pacing::SPREAD_BELOW_REQUESTS`] requests.
    pub spread_below: f64,
    /// Waits up to this long (pacing, a short `Retry-After`) are slept inline; a longer one
    /// becomes [`crate::IntegrationError::RateLimited`]: the run commits and is deferred.
    pub max_inline_wait: Duration,
}

impl Pacing {
    /// Where a platform reports a remaining count but no limit: spread below this many requests.
    pub const SPREAD_BELOW_REQUESTS: f64 = 50.0;
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            rate: None,
            spread_below: 0.2,
            max_inline_wait: Duration::from_secs(5),
        }
    }
}

/// Everything an [`super::HttpClient`] is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// The API's root, e.g. `https://api.github.com` or `https://dev.to/api`; request paths are
    /// appended to it.
    pub base_url: String,
    /// For a whole request, body included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub user_agent: String,
    pub auth: Auth,
    /// Sent with every request (`Accept`, an API version header…).
    pub headers: Vec<(String, String)>,
    pub waits: WaitCaps,
    pub pacing: Pacing,
    /// The platform whose shared budgets (`rate_limit_budgets`) this client's requests count
    /// against, when its process shares them; set by [`crate::RunContext::client`].
    pub platform: Option<String>,
    /// The platform's own reading of its answers (Slack's `200` with `ok: false`), before the
    /// standard classification.
    pub classifier: Option<BodyClassifier>,
    /// Per-route rate-limit buckets (Discord's `X-RateLimit-Bucket`), see [`RouteBuckets`].
    pub buckets: Option<RouteBuckets>,
    /// Stop sending for a credential before the platform bans it for invalid requests.
    pub invalid_requests: Option<InvalidRequestLimit>,
}

impl HttpConfig {
    /// Defaults: 30 s timeout, 10 s to connect, `tributary/<version>` as user agent, bearer auth,
    /// default waits and pacing.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            user_agent: format!("tributary/{}", env!("CARGO_PKG_VERSION")),
            auth: Auth::Bearer,
            headers: Vec::new(),
            waits: WaitCaps::default(),
            pacing: Pacing::default(),
            platform: None,
            classifier: None,
            buckets: None,
            invalid_requests: None,
        }
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn waits(mut self, waits: WaitCaps) -> Self {
        self.waits = waits;
        self
    }

    /// Counts this client's requests against `platform`'s shared budgets (if its process shares
    /// them: [`super::HttpClients::share_budgets`]).
    pub fn platform(mut self, platform: impl Into<String>) -> Self {
        self.platform = Some(platform.into());
        self
    }

    pub fn pacing(mut self, pacing: Pacing) -> Self {
        self.pacing = pacing;
        self
    }

    /// A steady per-credential rate (see [`Pacing::rate`]).
    pub fn rate(mut self, rate: RequestRate) -> Self {
        self.pacing.rate = Some(rate);
        self
    }

    /// At most `requests` per second per credential (none when 0): a platform's documented
    /// limit, or a limit the settings give.
    pub fn requests_per_second(mut self, requests: u32) -> Self {
        self.pacing.rate = NonZeroU32::new(requests).map(RequestRate::per_second);
        self
    }

    /// Reads every answer with `classifier` first (see [`BodyClassifier`]).
    pub fn classify_body(mut self, classifier: BodyClassifier) -> Self {
        self.classifier = Some(classifier);
        self
    }

    /// Paces requests per route bucket, as the platform announces them (see [`RouteBuckets`]).
    pub fn route_buckets(mut self, buckets: RouteBuckets) -> Self {
        self.buckets = Some(buckets);
        self
    }

    /// Counts invalid answers per credential and stops at `limit` (see [`InvalidRequestLimit`]).
    pub fn invalid_requests(mut self, limit: InvalidRequestLimit) -> Self {
        self.invalid_requests = Some(limit);
        self
    }

    pub fn max_inline_wait(mut self, wait: Duration) -> Self {
        self.pacing.max_inline_wait = wait;
        self
    }
}
