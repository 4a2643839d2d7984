//! The Example Forum's fake server (feature `fakes`), on the testkit's [`FakeServer`]: it pages
//! (newest first, `page`/`per_page`, `next_page` in the body), filters by `since`, checks the
//! bearer token, reports its rate limit in `x-ratelimit-*` headers and answers 429 with
//! `Retry-After` once a window's budget is spent; faults and latency come from the testkit.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use serde_json::json;
use tributary::testkit::{Budget, FakeServer, Fault, Reply as Answer, Request};

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

/// How the fake forum behaves.
#[derive(Debug, Clone)]
pub struct ForumOptions {
    /// The bearer token it accepts.
    pub token: String,
    /// Requests allowed per window; past that, 429 with `Retry-After`.
    pub rate_limit: Option<(u32, Duration)>,
    /// Added to every answer.
    pub latency: Duration,
    /// Port to bind on 127.0.0.1 (0: any free port).
    pub port: u16,
}

impl Default for ForumOptions {
    fn default() -> Self {
        Self {
            token: "forum-token".to_owned(),
            rate_limit: None,
            latency: Duration::ZERO,
            port: 0,
        }
    }
}

/// A running fake forum. Stops when dropped.
pub struct FakeForum {
    server: FakeServer,
    data: Arc<Mutex<ForumData>>,
    token: String,
}

impl FakeForum {
    pub async fn start(data: ForumData, options: ForumOptions) -> std::io::Result<Self> {
        let server = FakeServer::start_on(options.port).await?;
        let data = Arc::new(Mutex::new(data));
        server
            .require_header("authorization", &format!("Bearer {}", options.token))
            .latency(options.latency);
        if let Some((limit, window)) = options.rate_limit {
            server.budget(Budget::per_window(limit, window));
        }
        let shared = data.clone();
        server.handle("/api/v1/", move |request| answer(&lock(&shared), request));
        Ok(Self {
            server,
            data,
            token: options.token,
        })
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The testkit server underneath: requests received, faults to inject.
    pub fn server(&self) -> &FakeServer {
        &self.server
    }

    /// Requests received so far (refused ones included).
    pub fn requests(&self) -> usize {
        self.server.request_count()
    }

    /// The next `n` requests fail with 503.
    pub fn fail_next(&self, n: u32) {
        self.server
            .inject(Fault::any(n, Answer::error(503, "the forum is overloaded")));
    }

    /// Changes the forum's content (new posts between runs, say).
    pub fn edit<T>(&self, f: impl FnOnce(&mut ForumData) -> T) -> T {
        f(&mut lock(&self.data))
    }

    /// The source ids of the activities an onboarding of every channel stores.
    pub fn expected_activities(&self) -> BTreeSet<String> {
        let data = lock(&self.data);
        data.posts
            .iter()
            .map(|p| format!("post:{}", p.id))
            .chain(data.replies.iter().map(|r| format!("reply:{}", r.id)))
            .collect()
    }

    /// The source ids of the members an onboarding of every channel stores.
    pub fn expected_members(&self) -> BTreeSet<String> {
        let data = lock(&self.data);
        data.posts
            .iter()
            .map(|p| p.author.id.to_string())
            .chain(data.replies.iter().map(|r| r.author.id.to_string()))
            .collect()
    }
}

fn lock(data: &Mutex<ForumData>) -> MutexGuard<'_, ForumData> {
    data.lock().unwrap_or_else(|p| p.into_inner())
}

fn error(status: u16, message: &str) -> Answer {
    Answer::json(json!({ "message": message })).with_status(status)
}

/// One page of a list: `page` and `per_page` (1 to 100) from the query, `next_page` while more.
fn paginate<T: Clone + Serialize>(items: &[T], request: &Request) -> Answer {
    let per_page = request
        .query("per_page")
        .map_or(Ok(30), str::parse::<usize>)
        .unwrap_or(0);
    if !(1..=100).contains(&per_page) {
        return error(400, "per_page must be between 1 and 100");
    }
    let page = request
        .query("page")
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    let start = (page as usize - 1) * per_page;
    let body = Page {
        items: items.iter().skip(start).take(per_page).cloned().collect(),
        page,
        next_page: (start + per_page < items.len()).then_some(page + 1),
    };
    Answer::json(body)
}

/// The answer to `GET /api/v1/…`.
fn answer(data: &ForumData, request: &Request) -> Answer {
    let path = request.path.trim_start_matches("/api/v1");
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["channels"] => paginate(&data.channels, request),
        ["channels", channel, list @ ("posts" | "replies")] => {
            if !data.channels.iter().any(|c| c.id == *channel) {
                return error(404, "channel not found");
            }
            let since = match request.query("since").map(DateTime::parse_from_rfc3339) {
                None => None,
                Some(Ok(at)) => Some(at.with_timezone(&Utc)),
                Some(Err(_)) => return error(400, "since must be an RFC 3339 time"),
            };
            let keep = |c: &str, at: DateTime<Utc>| c == *channel && since.is_none_or(|s| at >= s);
            if *list == "posts" {
                let mut posts: Vec<&Post> = data
                    .posts
                    .iter()
                    .filter(|p| keep(&p.channel_id, p.created_at))
                    .collect();
                posts.sort_by_key(|p| std::cmp::Reverse((p.created_at, p.id)));
                paginate(&posts, request)
            } else {
                let mut replies: Vec<&Reply> = data
                    .replies
                    .iter()
                    .filter(|r| keep(&r.channel_id, r.created_at))
                    .collect();
                replies.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
                paginate(&replies, request)
            }
        }
        _ => error(404, "not found"),
    }
}
