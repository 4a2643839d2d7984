//! A fake platform: a real HTTP server on 127.0.0.1 whose answers a test scripts, and which
//! records every request it received, so a test can assert request economy.
//!
//! Answers are chosen, for each request, in this order:
//! 1. the required credential header, if set ([`FakeServer::require_header`]): 401 without it;
//! 2. the rate-limit budget, if set ([`FakeServer::budget`]): once a caller's budget for the
//!    window is spent, the budget's refusal (its headers go on every answer);
//! 3. injected faults ([`FakeServer::inject`]): the next N matching requests get that reply (a
//!    429 with `Retry-After`, a burst of 503s, a malformed body, a slow answer);
//! 4. scripted routes ([`FakeServer::route`]): replies for a path (and optional query pairs),
//!    served in order, the last one repeating;
//! 5. handlers ([`FakeServer::handle`]): a closure computing the reply for a path prefix (the
//!    longest prefix wins) — how a fake platform serves its data;
//! 6. else 404 with a JSON `message` naming the request.
//!
//! ```text
//! let server = FakeServer::start().await?;
//! server.route("/items", [Reply::json(json!([1, 2])).header("Link", "<…>; rel=\"next\""), Reply::json(json!([]))]);
//! server.inject(Fault::any(2, Reply::status(503)));
//! // … run the integration against server.base_url() …
//! assert_eq!(server.requests_to("/items"), 4);
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Waited before answering (on tokio's clock).
    pub delay: Duration,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn json(value: impl Serialize) -> Self {
        Self {
            status: StatusCode::OK,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(&value).unwrap_or_default(),
            delay: Duration::ZERO,
        }
    }

    /// An empty answer with this status.
    pub fn status(code: u16) -> Self {
        Self {
            status: StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// An error answer with a JSON `message`, as most platforms send.
    pub fn error(code: u16, message: &str) -> Self {
        Self::json(json!({ "message": message })).with_status(code)
    }

    /// 429 with `Retry-After: seconds`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::error(429, "rate limit exceeded").header("Retry-After", retry_after_secs.to_string())
    }

    /// 503, as an overloaded platform answers.
    pub fn unavailable() -> Self {
        Self::error(503, "the service is overloaded")
    }

    /// 200 with this text as a JSON body (truncated JSON, wrong types…).
    pub fn malformed(body: &str) -> Self {
        Self {
            status: StatusCode::OK,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }

    pub fn with_status(mut self, code: u16) -> Self {
        self.status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self
    }

    /// Adds a header (names as the platform spells them; HTTP makes them case-insensitive).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                response.headers_mut().append(name, value);
            }
        }
        response
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
}

impl Request {
    /// The first value of a query parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the request carried a credential (`Authorization`, `api-key`, `x-api-key`, or the
    /// header the server requires).
    pub fn has_credential(&self) -> bool {
        ["authorization", "api-key", "x-api-key"]
            .iter()
            .any(|h| self.headers.contains_key(*h))
    }

    /// `path?query` as sent, for messages.
    pub fn target(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            let q: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{}?{}", self.path, q.join("&"))
        }
    }
}

/// Replies forced onto the next matching requests.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Only requests whose path starts with this (`None`: any request).
    pub path_prefix: Option<String>,
    pub times: u32,
    pub reply: Reply,
}

impl Fault {
    /// The next `times` requests, whatever their path.
    pub fn any(times: u32, reply: Reply) -> Self {
        Self {
            path_prefix: None,
            times,
            reply,
        }
    }

    /// The next `times` requests under `path_prefix`.
    pub fn on(path_prefix: &str, times: u32, reply: Reply) -> Self {
        Self {
            path_prefix: Some(path_prefix.to_owned()),
            times,
            reply,
        }
    }

    /// After `skip` more matching requests have been answered normally, the next `times` get the
    /// reply: "a 429 in the middle".
    pub fn after(self, skip: u32) -> Delayed {
        Delayed { skip, fault: self }
    }
}

/// A fault that starts after some requests.
#[derive(Debug, Clone)]
pub struct Delayed {
    skip: u32,
    fault: Fault,
}

/// A rate-limit budget a fake platform enforces: `limit` requests per `window` for each caller,
/// reported on every answer, refused once spent. The window starts with a caller's first request
/// and restarts with the first request after its reset.
#[derive(Clone)]
pub struct Budget {
    pub limit: u32,
    pub window: Duration,
    /// Callers are told apart by this request header (a token); `None`: one budget for all.
    pub key_header: Option<String>,
    /// The headers every answer carries.
    pub headers: fn(&BudgetState) -> Vec<(String, String)>,
    /// The answer to a request over the budget.
    pub refusal: fn(&BudgetState) -> Reply,
}

/// Where a caller's budget stands, as an answer reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetState {
    pub limit: u32,
    /// Requests counted in this window (at most `limit`).
    pub used: u32,
    pub reset_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

impl BudgetState {
    pub fn remaining(&self) -> u32 {
        self.limit.saturating_sub(self.used)
    }

    /// The reset in epoch seconds, rounded up: a client that obeys never comes back early.
    pub fn reset_epoch(&self) -> i64 {
        self.reset_at.timestamp() + i64::from(self.reset_at.timestamp_subsec_nanos() > 0)
    }

    /// The common report: `x-ratelimit-limit`, `-remaining`, `-reset` (epoch seconds) and `-used`.
    pub fn headers(&self) -> Vec<(String, String)> {
        vec![
            ("x-ratelimit-limit".into(), self.limit.to_string()),
            ("x-ratelimit-remaining".into(), self.remaining().to_string()),
            ("x-ratelimit-reset".into(), self.reset_epoch().to_string()),
            ("x-ratelimit-used".into(), self.used.to_string()),
        ]
    }

    /// Whole seconds until the reset, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> i64 {
        ((self.reset_at - self.now).num_milliseconds() + 999)
            .div_euclid(1000)
            .max(1)
    }
}

impl Budget {
    /// The common shape: `x-ratelimit-limit`, `-remaining`, `-reset` (epoch seconds) and `-used`
    /// on every answer, and 429 with `Retry-After` once spent; one budget for all callers.
    pub fn per_window(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            key_header: None,
            headers: BudgetState::headers,
            refusal: |state| {
                Reply::error(429, "rate limit exceeded")
                    .header("Retry-After", state.retry_after_secs().to_string())
            },
        }
    }

    /// A budget per value of `header` (per token).
    pub fn per_caller(mut self, header: &str) -> Self {
        self.key_header = Some(header.to_ascii_lowercase());
        self
    }
}

/// Callers' windows: when each resets and how much of it is used.
#[derive(Default)]
struct Spent {
    windows: HashMap<String, (DateTime<Utc>, u32)>,
}

impl Spent {
    /// Counts the request: its caller's state after it, and whether it is over the budget.
    fn spend(&mut self, budget: &Budget, request: &Request) -> (BudgetState, bool) {
        let key = budget
            .key_header
            .as_deref()
            .and_then(|h| request.header(h))
            .unwrap_or_default()
            .to_owned();
        let now = Utc::now();
        let window = chrono::Duration::from_std(budget.window).unwrap_or_default();
        let entry = self.windows.entry(key).or_insert((now + window, 0));
        if now >= entry.0 {
            *entry = (now + window, 0);
        }
        let refused = entry.1 >= budget.limit;
        if !refused {
            entry.1 += 1;
        }
        let state = BudgetState {
            limit: budget.limit,
            used: entry.1,
            reset_at: entry.0,
            now,
        };
        (state, refused)
    }
}

type HandlerFn = dyn Fn(&Request) -> Reply + Send + Sync;

struct Route {
    path: String,
    query: Vec<(String, String)>,
    replies: VecDeque<Reply>,
}

#[derive(Default)]
struct Script {
    required: Option<(String, String)>,
    budget: Option<Budget>,
    spent: Spent,
    faults: Vec<(u32, Fault)>,
    routes: Vec<Route>,
    handlers: Vec<(String, Arc<HandlerFn>)>,
    latency: Duration,
}

#[derive(Default)]
struct Shared {
    script: Mutex<Script>,
    log: Mutex<Vec<Request>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Shared {
    fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log(&self) -> MutexGuard<'_, Vec<Request>> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake platform. Stops when dropped.
pub struct FakeServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeServer {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(0).await
    }

    /// Starts on `port` of 127.0.0.1 (0: any free port).
    pub async fn start_on(port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(answer).with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "fake server stopped");
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// Requests without this header value get 401 (`{"message": "bad credentials"}`).
    pub fn require_header(&self, name: &str, value: &str) -> &Self {
        self.shared.script().required = Some((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// Enforces a rate-limit budget (see [`Budget`]).
    pub fn budget(&self, budget: Budget) -> &Self {
        self.shared.script().budget = Some(budget);
        self
    }

    /// Waits this long before every answer.
    pub fn latency(&self, latency: Duration) -> &Self {
        self.shared.script().latency = latency;
        self
    }

    /// Replies for `path` (any query), in order; the last one repeats.
    pub fn route(&self, path: &str, replies: impl IntoIterator<Item = Reply>) -> &Self {
        self.route_query(path, &[], replies)
    }

    /// Replies for `path` when the query holds every pair of `query`.
    pub fn route_query(
        &self,
        path: &str,
        query: &[(&str, &str)],
        replies: impl IntoIterator<Item = Reply>,
    ) -> &Self {
        self.shared.script().routes.push(Route {
            path: path.to_owned(),
            query: query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            replies: replies.into_iter().collect(),
        });
        self
    }

    /// Computes replies for every path under `prefix` not answered by a fault or a route.
    pub fn handle(
        &self,
        prefix: &str,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> &Self {
        self.shared
            .script()
            .handlers
            .push((prefix.to_owned(), Arc::new(handler)));
        self
    }

    /// Forces a reply onto the next matching requests.
    pub fn inject(&self, fault: Fault) -> &Self {
        self.shared.script().faults.push((0, fault));
        self
    }

    /// Forces a reply onto matching requests once `skip` more of them have been served.
    pub fn inject_later(&self, delayed: Delayed) -> &Self {
        self.shared
            .script()
            .faults
            .push((delayed.skip, delayed.fault));
        self
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.log().clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.log().len()
    }

    /// Requests whose path is `path`.
    pub fn requests_to(&self, path: &str) -> usize {
        self.shared.log().iter().filter(|r| r.path == path).count()
    }

    /// The most requests it was answering at once: how concurrent the client was.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.shared.log().clear();
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn parse_query(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| {
            url_pairs(q)
                .into_iter()
                .filter(|(k, _)| !k.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// `application/x-www-form-urlencoded` pairs.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

fn decode_component(s: &str) -> String {
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes[i] {
            b'+' => Some((b' ', 1)),
            b'%' if i + 2 < bytes.len() => hex(bytes[i + 1])
                .zip(hex(bytes[i + 2]))
                .map(|(h, l)| (h * 16 + l, 3)),
            _ => None,
        };
        let (byte, width) = decoded.unwrap_or((bytes[i], 1));
        out.push(byte);
        i += width;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Picks the reply for a request (see the module's order).
fn choose(script: &mut Script, request: &Request) -> Reply {
    if let Some((name, value)) = &script.required
        && request.header(name) != Some(value.as_str())
    {
        return Reply::error(401, "bad credentials");
    }
    let budget = script
        .budget
        .clone()
        .map(|budget| (script.spent.spend(&budget, request), budget));
    let reply = match &budget {
        Some(((state, true), budget)) => (budget.refusal)(state),
        _ => choose_answer(script, request),
    };
    match budget {
        Some(((state, _), budget)) => (budget.headers)(&state)
            .into_iter()
            .fold(reply, |reply, (name, value)| reply.header(&name, value)),
        None => reply,
    }
}

/// The answer after the credential and budget checks: a fault, a route, a handler, or 404.
fn choose_answer(script: &mut Script, request: &Request) -> Reply {
    let matches = |fault: &Fault| {
        fault
            .path_prefix
            .as_deref()
            .is_none_or(|p| request.path.starts_with(p))
    };
    let mut forced = None;
    for (skip, fault) in &mut script.faults {
        if fault.times == 0 || !matches(fault) {
            continue;
        }
        if *skip > 0 {
            *skip -= 1;
            continue;
        }
        fault.times -= 1;
        forced = Some(fault.reply.clone());
        break;
    }
    script.faults.retain(|(_, f)| f.times > 0);
    if let Some(reply) = forced {
        return reply;
    }
    if let Some(route) = script.routes.iter_mut().find(|r| {
        r.path == request.path
            && r.query
                .iter()
                .all(|(k, v)| request.query(k) == Some(v.as_str()))
    }) {
        let reply = if route.replies.len() > 1 {
            route.replies.pop_front()
        } else {
            route.replies.front().cloned()
        };
        if let Some(reply) = reply {
            return reply;
        }
    }
    if let Some((_, handler)) = script
        .handlers
        .iter()
        .filter(|(prefix, _)| request.path.starts_with(prefix.as_str()))
        .max_by_key(|(prefix, _)| prefix.len())
    {
        let handler = handler.clone();
        return handler(request);
    }
    Reply::error(
        404,
        &format!("no fake route for {} {}", request.method, request.target()),
    )
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let request = Request {
        method,
        path: uri.path().to_owned(),
        query: parse_query(&uri),
        headers,
    };
    shared.log().push(request.clone());
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _done = InFlight(&shared);
    let (reply, latency) = {
        let mut script = shared.script();
        let latency = script.latency;
        (choose(&mut script, &request), latency)
    };
    let wait = latency + reply.delay;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    reply.into_response()
}

/// Counts a request out when its answer is ready (or its connection dropped).
struct InFlight<'a>(&'a Shared);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn query_components_are_decoded() {
        assert_eq!(
            url_pairs("a=1&b=x%20y+z&c=%2F&d&e=%zz"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y z".into()),
                ("c".into(), "/".into()),
                ("d".into(), "".into()),
                ("e".into(), "%zz".into()),
            ]
        );
    }
}
