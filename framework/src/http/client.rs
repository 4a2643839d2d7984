//! An integration's HTTP client: paced per credential, every failure classified, short waits slept
//! inline and long ones turned into deferrals, bodies decoded with the path of any bad field.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url, redirect};
use serde::de::DeserializeOwned;

use super::body_limits::daily_quota;
use super::buckets::{Book, Books};
use super::budgets::{BudgetKey, SharedBudgets};
use super::classify::transport_error;
use super::config::{Auth, HttpConfig};
use super::oauth2::Tokens;
use super::pacing::{Pacer, Pacers};
use super::policy::{AddressGuard, AddressRefused, GuardedResolver, HttpPolicy};
use super::resources::{BudgetRoute, Known, Resources};
use super::waits::RateLimitInfo;
use crate::error::IntegrationError;
use crate::secret::Secret;

/// Rate-limit refusals waited out inline, one request, before the refusal is returned.
const MAX_INLINE_REFUSALS: u32 = 3;

/// A platform's HTTP client. Cheap to clone (clones share connections and pacing). Build it once
/// per configuration — [`HttpClients`] keeps them — not once per request: pacing lives in it.
#[derive(Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    config: Arc<HttpConfig>,
    base: Url,
    pacers: Arc<Pacers>,
    /// OAuth2 access tokens ([`Auth::ClientCredentials`]).
    tokens: Arc<Tokens>,
    max_body_bytes: usize,
    guard: Option<Arc<AddressGuard>>,
    /// Route buckets and invalid-request counts, when the configuration asks for them.
    books: Option<Arc<Books>>,
    /// The process's shared budgets, when it shares them and the client names its platform.
    shared: Option<SharedBudgets>,
    /// Which budget each route of a credential draws on, as its answers said.
    resources: Arc<Resources>,
}

/// A successful response, decoded, with the rate-limit figures it reported (its headers', else a
/// daily quota its body reports, as Stack Exchange's `quota_remaining`).
#[derive(Debug, Clone)]
pub struct HttpResponse<T> {
    pub body: T,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub rate_limit: RateLimitInfo,
}

impl HttpClient {
    /// Refuses a base URL that is not an absolute http(s) URL. The default policy: bodies up to
    /// 64 MiB, any address.
    pub fn new(config: HttpConfig) -> Result<Self, IntegrationError> {
        Self::build(config, None, &HttpPolicy::default())
    }

    /// A client held to the process's `policy` (body cap, address guard).
    pub fn with_policy(config: HttpConfig, policy: &HttpPolicy) -> Result<Self, IntegrationError> {
        Self::build(config, None, policy)
    }

    fn build(
        config: HttpConfig,
        shared: Option<SharedBudgets>,
        policy: &HttpPolicy,
    ) -> Result<Self, IntegrationError> {
        let base = http_url(&config.base_url, "base URL")?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|e| {
                IntegrationError::fatal(format!("`{name}` is not a header name")).with_source(e)
            })?;
            let value = reqwest::header::HeaderValue::from_str(value).map_err(|e| {
                IntegrationError::fatal(format!("the value of header `{name}` is not valid"))
                    .with_source(e)
            })?;
            headers.insert(name, value);
        }
        let guard = policy.guard.clone().map(Arc::new);
        let mut builder = reqwest::Client::builder();
        if let Some(guard) = &guard {
            builder = builder.dns_resolver(Arc::new(GuardedResolver {
                guard: guard.clone(),
            }));
        }
        let inner = builder
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(config.user_agent.clone())
            .default_headers(headers)
            // credentials must not follow a redirect to another host
            .redirect(redirect::Policy::custom(|attempt| {
                let same_origin = attempt
                    .previous()
                    .first()
                    .is_some_and(|first| first.origin() == attempt.url().origin());
                if same_origin && attempt.previous().len() < 10 {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .build()
            .map_err(|e| IntegrationError::fatal("cannot build the HTTP client").with_source(e))?;
        let pacers = Arc::new(Pacers::new(config.pacing, config.waits));
        let books = (config.buckets.is_some() || config.invalid_requests.is_some())
            .then(|| Arc::new(Books::new(config.pacing, config.waits)));
        let shared = shared.filter(|_| config.platform.is_some());
        Ok(Self {
            inner,
            config: Arc::new(config),
            base,
            pacers,
            tokens: Arc::new(Tokens::new()),
            max_body_bytes: policy.max_body_bytes,
            guard,
            books,
            shared,
            resources: Arc::new(Resources::default()),
        })
    }

    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// The full URL of `path` (which starts with `/`) under the base URL.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.config.base_url.trim_end_matches('/'), path)
    }

    /// The OAuth2 tokens this client fetched (for diagnostics and tests).
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The pacer of a credential (what it is waiting for, for diagnostics and tests).
    pub fn pacer(&self, token: Option<&Secret>) -> Arc<Pacer> {
        self.pacers.get(token)
    }

    /// The route buckets and invalid-request count of a credential, when configured.
    pub fn book(&self, token: Option<&Secret>) -> Option<Arc<Book>> {
        self.books.as_ref().map(|b| b.get(token))
    }

    /// GETs `path` (under the base URL) with `query`, and decodes its JSON body as `T`.
    ///
    /// Errors: [`IntegrationError::RateLimited`] when the platform refused for longer than
    /// `max_inline_wait` (or pacing would wait that long), `Retryable` for 5xx and transport
    /// failures, `Fatal` for other 4xx (with the platform's message) and for a body that does
    /// not decode (naming the field, e.g. `malformed body at [3].user.user_id: …`).
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        token: Option<&Secret>,
    ) -> Result<HttpResponse<T>, IntegrationError> {
        self.get_json_with(path, query, &[], token).await
    }

    /// [`HttpClient::get_json`] with headers of this request only (an `Accept` that asks for a
    /// richer media type, say), sent in addition to (or instead of) the configured ones.
    pub async fn get_json_with<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        headers: &[(&str, &str)],
        token: Option<&Secret>,
    ) -> Result<HttpResponse<T>, IntegrationError> {
        let url = Url::parse(&self.url(path)).map_err(|e| {
            IntegrationError::fatal(format!("GET {path}: not a valid path")).with_source(e)
        })?;
        self.fetch(url, query, headers, token).await
    }

    /// GETs an absolute URL a platform handed out (a `Link` header's `next`), which must be on
    /// the base URL's origin: a credential is never sent anywhere else.
    pub async fn get_json_url<T: DeserializeOwned>(
        &self,
        url: &str,
        token: Option<&Secret>,
    ) -> Result<HttpResponse<T>, IntegrationError> {
        self.get_json_url_with(url, &[], token).await
    }

    /// [`HttpClient::get_json_url`] with headers of this request only.
    pub async fn get_json_url_with<T: DeserializeOwned>(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        token: Option<&Secret>,
    ) -> Result<HttpResponse<T>, IntegrationError> {
        let parsed = Url::parse(url)
            .ok()
            .filter(|u| u.origin() == self.base.origin())
            .ok_or_else(|| {
                IntegrationError::fatal(format!(
                    "refusing to follow a URL outside {} (`{}`)",
                    self.base.origin().ascii_serialization(),
                    url.split('?').next().unwrap_or_default()
                ))
            })?;
        self.fetch(parsed, &[], headers, token).await
    }

    async fn fetch<T: DeserializeOwned>(
        &self,
        url: Url,
        query: &[(&str, String)],
        extra: &[(&str, &str)],
        token: Option<&Secret>,
    ) -> Result<HttpResponse<T>, IntegrationError> {
        // the path only: a query string or a full URL may carry a credential
        let what = format!("GET {}", url.path());
        let pacer = self.pacers.get(token);
        let book = self.books.as_ref().map(|b| b.get(token));
        // the credential's budget (a fingerprint), and which of its resources this route spends
        let budget = self
            .config
            .platform
            .as_deref()
            .map(|platform| BudgetKey::new(platform, token));
        let route = BudgetRoute::of(url.path(), self.config.buckets.as_ref());
        // a roomy credential's requests take no turn from PostgreSQL (see `budgets`)
        let mut tight = match (&self.shared, &budget) {
            (Some(budgets), Some(key)) => budgets.is_tight(key).await,
            _ => false,
        };
        let mut hint = match (&self.shared, &budget) {
            (Some(budgets), Some(key)) => self.resource_hint(budgets, key, &route, tight).await,
            _ => None,
        };
        // the budget a rate limit of this request waits on
        let mut waiting = budget
            .as_ref()
            .map(|key| key.with_resource(hint.as_deref().unwrap_or(&route.unnamed())));
        let tag = |e: IntegrationError, waiting: &Option<BudgetKey>| match waiting {
            Some(key) => e.waiting_on(key),
            None => e,
        };
        let mut refusals = 0;
        let mut refreshed = false;
        let (status, headers, bytes) = loop {
            if let Some(book) = &book {
                book.check_invalid(self.config.invalid_requests, &what)?;
            }
            pacer
                .acquire_for(&what)
                .await
                .map_err(|e| tag(e, &waiting))?;
            let mut counted = false;
            if let (Some(budgets), Some(key), Some(_), true) =
                (&self.shared, &waiting, &hint, tight)
            {
                budgets
                    .acquire(key, pacer.max_inline_wait())
                    .await
                    .map_err(|e| e.waiting_on(key))?;
                counted = true;
            }
            let bucket = book
                .as_ref()
                .zip(self.config.buckets.as_ref())
                .map(|(book, buckets)| book.bucket(buckets, url.path()));
            if let Some(bucket) = &bucket {
                bucket.acquire().await.map_err(|e| tag(e, &waiting))?;
            }
            let (status, headers, bytes, bearer) =
                self.exchange(&url, query, extra, token, &what).await?;
            let now = crate::clock::now();
            let classifier = self.config.classifier.as_ref();
            if let Some(book) = &book {
                book.count(status, &headers);
            }
            let error = match book.as_ref().zip(self.config.buckets.as_ref()) {
                Some((book, buckets)) => book.learn(
                    buckets,
                    &pacer,
                    classifier,
                    &what,
                    url.path(),
                    status,
                    &headers,
                    &bytes,
                    now,
                ),
                None => pacer.learn_with(classifier, &what, status, &headers, &bytes, now),
            };
            // the resource the answer named (else the one this route was known to spend)
            let resource = route
                .named_by(&headers)
                .or_else(|| hint.clone())
                .unwrap_or_else(|| route.unnamed());
            waiting = budget.as_ref().map(|key| key.with_resource(&resource));
            if let (Some(budgets), Some(key)) = (&self.shared, &waiting) {
                self.resources.learn(&key.credential, &route, &resource);
                let blocked = match &error {
                    Some(IntegrationError::RateLimited { until, .. }) => Some(*until),
                    _ => None,
                };
                let mut info = RateLimitInfo::read(&headers, now, self.config.waits.reset);
                if !info.is_reported()
                    && let Some(quota) = daily_quota(&bytes, now)
                {
                    // a daily quota stated in the body (Stack Exchange) is the budget shown
                    info = quota;
                }
                let mistaken = hint.as_deref().filter(|h| counted && *h != resource);
                if let (Some(other), Some(credential)) = (mistaken, &budget)
                    && let Err(e) = budgets.refund(&credential.with_resource(other)).await
                {
                    tracing::debug!(error = %crate::error::ErrorChain(&e), "giving back a shared turn failed");
                }
                let counted = counted && mistaken.is_none();
                // a roomy credential's answer that reports no budget tells the others nothing
                let telling = tight || info.is_reported() || blocked.is_some();
                if telling && let Err(e) = budgets.record(key, &info, blocked, counted).await {
                    tracing::debug!(error = %crate::error::ErrorChain(&e), "recording the shared budget failed");
                }
                tight = budgets.is_tight(key).await;
                hint = Some(resource);
            }
            let Some(error) = error else {
                break (status, headers, bytes);
            };
            // an OAuth2 token refused: fetched again, once
            if let (Auth::ClientCredentials(grant), Some(secret), Some(stale)) =
                (&self.config.auth, token, &bearer)
                && status == StatusCode::UNAUTHORIZED
                && !refreshed
            {
                self.tokens.invalidate(grant, secret, stale).await;
                refreshed = true;
                tracing::debug!("the access token was refused; fetching a new one");
                continue;
            }
            let IntegrationError::RateLimited { until, .. } = &error else {
                return Err(error);
            };
            // a short refusal is waited out by the next `acquire`; a long one defers the run
            let wait = (*until - now).to_std().unwrap_or_default();
            if wait > pacer.max_inline_wait() || refusals >= MAX_INLINE_REFUSALS {
                return Err(tag(error, &waiting));
            }
            refusals += 1;
            tracing::debug!(%until, "rate limited briefly; waiting inline");
        };
        let body = decode(&what, &bytes)?;
        let mut rate_limit =
            RateLimitInfo::read(&headers, crate::clock::now(), self.config.waits.reset);
        if !rate_limit.is_reported()
            && let Some(quota) = daily_quota(&bytes, crate::clock::now())
        {
            rate_limit = quota;
        }
        Ok(HttpResponse {
            body,
            status,
            rate_limit,
            headers,
        })
    }

    /// The resource of `key`'s budget a request of `route` takes its turn from, if known (see
    /// [`super::resources`]).
    async fn resource_hint(
        &self,
        budgets: &SharedBudgets,
        key: &BudgetKey,
        route: &BudgetRoute,
        tight: bool,
    ) -> Option<String> {
        match self.resources.known(&key.credential, route) {
            Known::Resource(resource) => Some(resource),
            Known::Unknown => None,
            // a roomy credential takes no turn: no need to ask which budget it would be
            Known::Nothing if !tight => None,
            Known::Nothing => budgets
                .only_resource(&key.platform, &key.credential)
                .await
                .unwrap_or_else(|e| {
                    tracing::debug!(error = %crate::error::ErrorChain(&e), "shared budgets unavailable");
                    None
                }),
        }
    }

    /// One request and its whole body, with the OAuth2 access token it carried, if any.
    async fn exchange(
        &self,
        url: &Url,
        query: &[(&str, String)],
        extra: &[(&str, &str)],
        token: Option<&Secret>,
        what: &str,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>, Option<Secret>), IntegrationError> {
        let mut request = self.inner.request(Method::GET, url.clone()).query(query);
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let mut bearer = None;
        if let Some(token) = token {
            request = match &self.config.auth {
                Auth::Bearer => request.bearer_auth(token.expose()),
                Auth::Header(name) => request.header(name.as_str(), token.expose()),
                Auth::Scheme(scheme) => request.header(
                    reqwest::header::AUTHORIZATION,
                    format!("{scheme} {}", token.expose()),
                ),
                Auth::Query(name) => request.query(&[(name.as_str(), token.expose())]),
                Auth::ClientCredentials(grant) => {
                    let access = self
                        .tokens
                        .token(&self.inner, grant, token, self.config.waits)
                        .await?;
                    let request = request.bearer_auth(access.expose());
                    bearer = Some(access);
                    request
                }
            };
        }
        // an address in the URL itself is never resolved: checked here
        if let Some(guard) = &self.guard
            && let Some(ip) = url
                .host_str()
                .and_then(|h| h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().ok())
            && let Some(why) = guard.refusal(ip)
        {
            let refused = AddressRefused {
                host: ip.to_string(),
                ip,
                why,
            };
            return Err(IntegrationError::fatal(format!("{what}: {refused}")));
        }
        let mut response = request.send().await.map_err(|e| {
            crate::telemetry::http_request(0);
            self.send_error(what, e)
        })?;
        let status = response.status();
        crate::telemetry::http_request(status.as_u16());
        let headers = response.headers().clone();
        let cap = self.max_body_bytes;
        let too_large = |size: String| {
            IntegrationError::fatal(format!(
                "{what}: the response body is {size} bytes, over the {cap} a response may have \
                 (TRIBUTARY_HTTP_MAX_BODY_BYTES)"
            ))
        };
        if let Some(length) = response.content_length()
            && length > cap as u64
        {
            return Err(too_large(length.to_string()));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(what, e))?
        {
            if bytes.len() + chunk.len() > cap {
                return Err(too_large(format!("more than {cap}")));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((status, headers, bytes, bearer))
    }
}

impl HttpClient {
    /// A failed send: a connection the address guard refused is fatal (retrying reaches the same
    /// address); anything else is a transport failure.
    fn send_error(&self, what: &str, e: reqwest::Error) -> IntegrationError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(cause) = source {
            if let Some(refused) = cause.downcast_ref::<AddressRefused>() {
                return IntegrationError::fatal(format!("{what}: {refused}"));
            }
            source = cause.source();
        }
        transport_error(what, e)
    }
}

/// `text` as an absolute http(s) URL; `what` names it in the error (`the base URL …`).
pub(crate) fn http_url(text: &str, what: &str) -> Result<Url, IntegrationError> {
    Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        .ok_or_else(|| {
            IntegrationError::fatal(format!("the {what} `{text}` is not an http(s) URL"))
        })
}

/// Decodes a JSON body; an error names the path of the field that did not fit.
pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, IntegrationError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let at = if path == "." {
            String::new()
        } else {
            format!(" at `{path}`")
        };
        IntegrationError::fatal(format!(
            "{what}: malformed body{at}: {inner}; the body: {}",
            quote_body(bytes)
        ))
        .with_source(inner)
    })
}

/// The start of a body, quoted for an error message: at most 200 characters, control characters
/// escaped.
fn quote_body(bytes: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(bytes);
    let mut quoted: String = text
        .chars()
        .take(MAX)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if text.chars().count() > MAX {
        quoted.push('…');
    }
    format!("`{quoted}`")
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("config", &self.config)
            .field("pacers", &self.pacers)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

/// Most clients an [`HttpClients`] keeps; past that the oldest is dropped.
const MAX_CLIENTS: usize = 256;

/// The clients of one integration, one per configuration (a self-hosted base URL is its own
/// configuration). An integration keeps one in its struct, so requests of every stream of a
/// process share connections and per-credential pacing.
#[derive(Default)]
pub struct HttpClients {
    clients: Mutex<Vec<(HttpConfig, HttpClient)>>,
    policy: HttpPolicy,
    shared: OnceLock<SharedBudgets>,
}

impl HttpClients {
    pub fn new() -> Self {
        Self::default()
    }

    /// Clients held to `policy` (the process's body cap and address guard).
    pub fn with_policy(policy: HttpPolicy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    /// Opts this process in to budgets shared in PostgreSQL ([`SharedBudgets`]): every client it
    /// builds from then on for a configuration that names its platform (every client of a run's
    /// context does) paces from `rate_limit_budgets` too. Once per process; later calls are
    /// ignored.
    pub fn share_budgets(&self, pool: sqlx::PgPool) {
        let _ = self.shared.set(SharedBudgets::new(pool));
    }

    /// Whether this process shares its budgets.
    pub fn shares_budgets(&self) -> bool {
        self.shared.get().is_some()
    }

    /// The client for `config`, built on first use.
    pub fn get(&self, config: HttpConfig) -> Result<HttpClient, IntegrationError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, client)) = clients.iter().find(|(c, _)| *c == config) {
            return Ok(client.clone());
        }
        let client = HttpClient::build(config.clone(), self.shared.get().cloned(), &self.policy)?;
        if clients.len() >= MAX_CLIENTS {
            clients.remove(0);
        }
        clients.push((config, client.clone()));
        Ok(client)
    }
}

impl fmt::Debug for HttpClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.clients.lock().unwrap_or_else(|p| p.into_inner()).len();
        f.debug_struct("HttpClients")
            .field("clients", &count)
            .finish()
    }
}
