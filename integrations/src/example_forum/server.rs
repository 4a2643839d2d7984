//! The Example Forum server: a real HTTP server (axum on 127.0.0.1) that behaves like a hosted
//! platform. It paginates, checks the bearer token, reports its rate limit in headers, answers
//! 429 with `Retry-After` once the window's budget is spent, and fails with 503 on request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::api::{Author, Channel, Page, Post, Reply};

/// The forum's content.
#[derive(Debug, Clone, Default)]
pub struct ForumData {
    pub channels: Vec<Channel>,
    pub posts: Vec<Post>,
    pub replies: Vec<Reply>,
    next_id: u64,
}

/// The shape of a generated forum.
#[derive(Debug, Clone, Copy)]
pub struct DatasetSpec {
    pub channels: usize,
    pub posts_per_channel: usize,
    pub replies_per_post: usize,
    pub members: usize,
}

impl ForumData {
    /// A deterministic forum: the same spec always yields the same ids, authors and times.
    pub fn generate(spec: DatasetSpec) -> Self {
        let mut data = Self {
            next_id: 1,
            ..Self::default()
        };
        let start = Utc
            .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        let members = spec.members.max(1);
        let mut minute = 0i64;
        for c in 0..spec.channels {
            let channel = format!("channel-{c}");
            data.channels.push(Channel {
                id: channel.clone(),
                name: format!("Channel {c}"),
            });
            for p in 0..spec.posts_per_channel {
                minute += 1;
                let author = author((c * 7 + p) % members);
                let at = start + chrono::Duration::minutes(minute);
                let post = data.add_post(&channel, author, &format!("Post {p} in {channel}"), at);
                for r in 0..spec.replies_per_post {
                    minute += 1;
                    let at = start + chrono::Duration::minutes(minute);
                    data.add_reply(post, author_of(c + p + r + 1, members), "Thanks!", at);
                }
            }
        }
        data
    }

    fn take_id(&mut self) -> u64 {
        self.next_id = self.next_id.max(1);
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Adds a post; returns its id.
    pub fn add_post(
        &mut self,
        channel: &str,
        author: Author,
        title: &str,
        at: DateTime<Utc>,
    ) -> u64 {
        let id = self.take_id();
        self.posts.push(Post {
            id,
            channel_id: channel.to_owned(),
            author,
            title: title.to_owned(),
            body: format!("{title}: body"),
            url: format!("https://forum.example/p/{id}"),
            created_at: at,
        });
        id
    }

    /// Adds a reply to a post; returns its id.
    pub fn add_reply(
        &mut self,
        post_id: u64,
        author: Author,
        body: &str,
        at: DateTime<Utc>,
    ) -> u64 {
        let id = self.take_id();
        let channel = self
            .posts
            .iter()
            .find(|p| p.id == post_id)
            .map(|p| p.channel_id.clone())
            .unwrap_or_default();
        self.replies.push(Reply {
            id,
            post_id,
            channel_id: channel,
            author,
            body: body.to_owned(),
            url: format!("https://forum.example/p/{post_id}#r{id}"),
            created_at: at,
        });
        id
    }

    /// Posts and replies: the number of activities an onboarding produces.
    pub fn activity_count(&self) -> usize {
        self.posts.len() + self.replies.len()
    }
}

/// Member `n` of the forum.
pub fn author(n: usize) -> Author {
    Author {
        id: 1000 + n as u64,
        login: format!("member{n}"),
        name: Some(format!("Member {n}")),
    }
}

fn author_of(n: usize, members: usize) -> Author {
    author(n % members)
}

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The bearer token it accepts.
    pub token: String,
    /// Requests allowed per window; past that, 429 with `Retry-After`.
    pub rate_limit: Option<(u32, Duration)>,
    /// Added to every answer.
    pub latency: Duration,
    /// Port to bind on 127.0.0.1 (0: any free port).
    pub port: u16,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            token: "forum-token".to_owned(),
            rate_limit: None,
            latency: Duration::ZERO,
            port: 0,
        }
    }
}

struct Shared {
    data: Mutex<ForumData>,
    options: ServerOptions,
    requests: AtomicU64,
    failures_to_inject: AtomicU32,
    window: Mutex<(DateTime<Utc>, u32)>,
}

impl Shared {
    fn data(&self) -> MutexGuard<'_, ForumData> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running forum server.
pub struct ExampleForumServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl ExampleForumServer {
    pub async fn start(data: ForumData, options: ServerOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", options.port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            data: Mutex::new(data),
            options,
            requests: AtomicU64::new(0),
            failures_to_inject: AtomicU32::new(0),
            window: Mutex::new((Utc::now(), 0)),
        });
        let app = Router::new()
            .route("/api/v1/channels", get(channels))
            .route("/api/v1/channels/{id}/posts", get(posts))
            .route("/api/v1/channels/{id}/replies", get(replies))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "example forum server stopped");
            }
        });
        Ok(Self { addr, shared, task })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token(&self) -> &str {
        &self.shared.options.token
    }

    /// Requests served so far (refused ones included).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The next `n` requests fail with 503.
    pub fn fail_next(&self, n: u32) {
        self.shared.failures_to_inject.store(n, Ordering::SeqCst);
    }

    /// Changes the forum's content (new posts between runs, say).
    pub fn edit<T>(&self, f: impl FnOnce(&mut ForumData) -> T) -> T {
        f(&mut self.shared.data())
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for ExampleForumServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    page: Option<u32>,
    per_page: Option<u32>,
    since: Option<String>,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

/// Auth, injected failures, latency and the rate limit, for every request. `Err` is the answer
/// to send instead; `Ok` carries the headers to add.
async fn gate(shared: &Shared, headers: &HeaderMap) -> Result<HeaderMap, Response> {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    if !shared.options.latency.is_zero() {
        tokio::time::sleep(shared.options.latency).await;
    }
    let expected = format!("Bearer {}", shared.options.token);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return Err(error(StatusCode::UNAUTHORIZED, "bad credentials"));
    }
    let injected =
        shared
            .failures_to_inject
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    if injected.is_ok() {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the forum is overloaded",
        ));
    }
    let mut out = HeaderMap::new();
    if let Some((limit, window)) = shared.options.rate_limit {
        let now = Utc::now();
        let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::seconds(60));
        let mut state = shared.window.lock().unwrap_or_else(|p| p.into_inner());
        if now >= state.0 + window {
            *state = (now, 0);
        }
        let reset = state.0 + window;
        let insert = |out: &mut HeaderMap, name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                out.insert(name, v);
            }
        };
        insert(&mut out, "x-ratelimit-limit", limit.to_string());
        // whole seconds, rounded up: a client that obeys never comes back before the reset
        let reset_secs = reset.timestamp() + i64::from(reset.timestamp_subsec_nanos() > 0);
        insert(&mut out, "x-ratelimit-reset", reset_secs.to_string());
        if state.1 >= limit {
            insert(&mut out, "x-ratelimit-remaining", "0".to_owned());
            let wait = ((reset - now).num_milliseconds() + 999)
                .div_euclid(1000)
                .max(1);
            insert(&mut out, "retry-after", wait.to_string());
            let mut refused = error(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
            refused.headers_mut().extend(out);
            return Err(refused);
        }
        state.1 += 1;
        insert(
            &mut out,
            "x-ratelimit-remaining",
            (limit - state.1).to_string(),
        );
    }
    Ok(out)
}

fn paginate<T: Clone + serde::Serialize>(
    items: Vec<T>,
    query: &ListQuery,
    extra: HeaderMap,
) -> Response {
    let per_page = query.per_page.unwrap_or(30);
    if !(1..=100).contains(&per_page) {
        return error(
            StatusCode::BAD_REQUEST,
            "per_page must be between 1 and 100",
        );
    }
    let page = query.page.unwrap_or(1).max(1);
    let start = (page as usize - 1) * per_page as usize;
    let slice: Vec<T> = items
        .iter()
        .skip(start)
        .take(per_page as usize)
        .cloned()
        .collect();
    let next_page = (start + (per_page as usize) < items.len()).then_some(page + 1);
    let body = Page {
        items: slice,
        page,
        next_page,
    };
    (StatusCode::OK, extra, Json(body)).into_response()
}

/// The `since` filter; `Err` when it is not an RFC 3339 time.
fn parse_since(query: &ListQuery) -> Result<Option<DateTime<Utc>>, chrono::ParseError> {
    query
        .since
        .as_deref()
        .map(|s| DateTime::parse_from_rfc3339(s).map(|d| d.with_timezone(&Utc)))
        .transpose()
}

fn bad_since() -> Response {
    error(StatusCode::BAD_REQUEST, "since must be an RFC 3339 time")
}

async fn channels(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    let extra = match gate(&shared, &headers).await {
        Ok(extra) => extra,
        Err(refused) => return refused,
    };
    let channels = shared.data().channels.clone();
    paginate(channels, &query, extra)
}

/// What a channel lists: posts and replies, newest first.
trait ChannelItem: Clone + serde::Serialize {
    fn channel_id(&self) -> &str;
    fn created_at(&self) -> DateTime<Utc>;
    fn id(&self) -> u64;
}

impl ChannelItem for Post {
    fn channel_id(&self) -> &str {
        &self.channel_id
    }
    fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    fn id(&self) -> u64 {
        self.id
    }
}

impl ChannelItem for Reply {
    fn channel_id(&self) -> &str {
        &self.channel_id
    }
    fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    fn id(&self) -> u64 {
        self.id
    }
}

/// A channel's items (`since` filtered, newest first), one page of them.
async fn channel_list<T: ChannelItem>(
    shared: &Shared,
    channel: &str,
    headers: &HeaderMap,
    query: &ListQuery,
    items: impl Fn(&ForumData) -> &[T],
) -> Response {
    let extra = match gate(shared, headers).await {
        Ok(extra) => extra,
        Err(refused) => return refused,
    };
    let Ok(since) = parse_since(query) else {
        return bad_since();
    };
    let mut list: Vec<T> = {
        let data = shared.data();
        if !data.channels.iter().any(|c| c.id == channel) {
            return error(StatusCode::NOT_FOUND, "channel not found");
        }
        items(&data)
            .iter()
            .filter(|i| i.channel_id() == channel && since.is_none_or(|s| i.created_at() >= s))
            .cloned()
            .collect()
    };
    list.sort_by(|a, b| {
        b.created_at()
            .cmp(&a.created_at())
            .then(b.id().cmp(&a.id()))
    });
    paginate(list, query, extra)
}

async fn posts(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    channel_list(&shared, &channel, &headers, &query, |d| &d.posts).await
}

async fn replies(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    channel_list(&shared, &channel, &headers, &query, |d| &d.replies).await
}
