//! A fake Discord (feature `fakes`) on the testkit's [`FakeServer`], following the published
//! description: a guild's channels, its active threads, each channel's public archived threads
//! (`before` an archive time, `limit` 2–100, `has_more`), each channel's messages (`after` /
//! `before` a snowflake, `limit` 1–100, newest first as Discord answers), `Authorization: Bot
//! TOKEN` checked, and per-route bucket headers (`X-RateLimit-Bucket`, `-Limit`, `-Remaining`,
//! `-Reset-After`) on every answer. Faults, latency and 429s come from the testkit.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use tributary::testkit::{FakeServer, Reply, Request};

use super::api::{
    Channel, Message, MessageReference, ThreadMetadata, User, channel_type, message_type,
    snowflake_at,
};

pub const GUILD: u64 = 1100;
pub const GENERAL: u64 = 2001;
pub const NEWS: u64 = 2002;
pub const HELP: u64 = 2003;
const VOICE: u64 = 2004;
const CATEGORY: u64 = 2005;
/// Discord's documented buckets are at most a few requests per second: the fake announces 5.
const BUCKET_LIMIT: u32 = 5;

/// What the fake holds.
#[derive(Debug, Clone, Default)]
pub struct DiscordData {
    pub channels: Vec<Channel>,
    pub threads: Vec<Channel>,
    pub messages: Vec<Message>,
    pub users: Vec<User>,
    /// Channels the bot may not read: their messages answer 403 `Missing Access`.
    pub forbidden: BTreeSet<u64>,
    /// When set, each bucket (per major parameter) allows `limit` requests per window and
    /// answers a bucket 429 beyond, as Discord does.
    pub bucket_limit: Option<(u32, std::time::Duration)>,
    buckets: HashMap<String, (Instant, u32)>,
    clock: i64,
}

impl DiscordData {
    /// A guild with a text channel of `messages` messages (a reply every fifth, one starting an
    /// archived thread of 4 messages), an announcement channel of half as many, a forum of
    /// `posts` posts (each with 3 answers; every other one archived), a voice channel and a
    /// category; by `users` users. The same every time.
    pub fn generate(messages: usize, posts: usize, users: u64) -> Self {
        let mut data = Self::default();
        for i in 0..users.max(1) {
            data.users.push(User {
                id: 80_000 + i,
                username: format!("user{i}"),
                global_name: i.is_multiple_of(2).then(|| format!("User {i}")),
                avatar: (!i.is_multiple_of(3)).then(|| format!("a{i:04x}")),
                bot: (i == 1).then_some(false),
            });
        }
        for (id, kind, name) in [
            (GENERAL, channel_type::TEXT, "general"),
            (NEWS, channel_type::ANNOUNCEMENT, "news"),
            (HELP, channel_type::FORUM, "help"),
            (VOICE, 2, "voice"),
            (CATEGORY, 4, "community"),
        ] {
            data.channels.push(Channel {
                id,
                kind,
                name: Some(name.to_owned()),
                parent_id: (kind != 4).then_some(CATEGORY),
                last_message_id: None,
                owner_id: None,
                thread_metadata: None,
                message_count: None,
            });
        }
        let users = data.users.len();
        let mut previous = None;
        for i in 0..messages {
            let author = i % users;
            let reply_to = (i % 5 == 4).then_some(previous).flatten();
            let id = data.post(GENERAL, author, reply_to);
            if i == 2 {
                data.start_thread(id, GENERAL, "A side talk", author, true);
                data.thread_message(id, 21, author); // the starter stub
                for k in 0..3 {
                    data.thread_message(id, message_type::DEFAULT, (author + k + 1) % users);
                }
            }
            previous = Some(id);
        }
        for i in 0..messages / 2 {
            data.post(NEWS, i % users, None);
        }
        for p in 0..posts {
            let author = p % users;
            let id = data.next_id();
            data.start_thread(id, HELP, &format!("Question {p}"), author, p % 2 == 0);
            data.push_message(id, id, message_type::DEFAULT, author, None);
            for k in 0..3 {
                data.thread_message(id, message_type::DEFAULT, (author + k + 1) % users);
            }
        }
        data
    }

    /// Posts a message now (a check's new data); returns its id.
    pub fn post_now(&mut self, channel: u64, author: usize, reply_to: Option<u64>) -> u64 {
        self.clock += 1;
        let id = snowflake_at(Utc::now()) + (self.clock as u64 % 4096);
        let kind = if reply_to.is_some() {
            message_type::REPLY
        } else {
            message_type::DEFAULT
        };
        self.push_message(channel, id, kind, author, reply_to);
        id
    }

    fn next_id(&mut self) -> u64 {
        self.clock += 1;
        let at = Utc
            .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
            + Duration::minutes(self.clock);
        snowflake_at(at) + (self.clock as u64 % 4096)
    }

    fn push_message(
        &mut self,
        channel: u64,
        id: u64,
        kind: u8,
        author: usize,
        reply_to: Option<u64>,
    ) {
        let author = self.users[author % self.users.len()].clone();
        let message = Message {
            id,
            kind,
            channel_id: channel,
            content: Some(format!("message {id} by {}", author.username)),
            author,
            timestamp: super::snowflake_time(id),
            edited_timestamp: None,
            message_reference: reply_to.map(|m| MessageReference {
                kind: Some(0),
                message_id: Some(m),
                channel_id: Some(channel),
            }),
            thread: None,
        };
        self.messages.push(message);
        for c in self.channels.iter_mut().chain(self.threads.iter_mut()) {
            if c.id == channel {
                c.last_message_id = Some(id);
                c.message_count = Some(c.message_count.unwrap_or(0) + 1);
            }
        }
    }

    /// Posts a message (a reply when `reply_to`) in a channel; returns its id.
    pub fn post(&mut self, channel: u64, author: usize, reply_to: Option<u64>) -> u64 {
        let id = self.next_id();
        let kind = if reply_to.is_some() {
            message_type::REPLY
        } else {
            message_type::DEFAULT
        };
        self.push_message(channel, id, kind, author, reply_to);
        id
    }

    /// Posts a message of `kind` in a thread; returns its id.
    pub fn thread_message(&mut self, thread: u64, kind: u8, author: usize) -> u64 {
        let id = self.next_id();
        self.push_message(thread, id, kind, author, None);
        id
    }

    fn start_thread(&mut self, id: u64, parent: u64, name: &str, owner: usize, archived: bool) {
        let owner = self.users[owner % self.users.len()].id;
        let at = super::snowflake_time(id);
        let thread = Channel {
            id,
            kind: channel_type::PUBLIC_THREAD,
            name: Some(name.to_owned()),
            parent_id: Some(parent),
            last_message_id: None,
            owner_id: Some(owner),
            thread_metadata: Some(ThreadMetadata {
                archived,
                archive_timestamp: Some(at + Duration::days(3)),
                locked: false,
                create_timestamp: Some(at),
            }),
            message_count: Some(0),
        };
        if let Some(starter) = self.messages.iter_mut().find(|m| m.id == id) {
            starter.thread = Some(thread.clone());
        }
        self.threads.push(thread);
    }

    fn is_forum_post(&self, message: &Message) -> bool {
        message.id == message.channel_id
            && self.threads.iter().any(|t| {
                t.id == message.id
                    && self
                        .channels
                        .iter()
                        .any(|c| Some(c.id) == t.parent_id && c.kind == channel_type::FORUM)
            })
    }

    fn counted(&self) -> impl Iterator<Item = &Message> {
        self.messages
            .iter()
            .filter(|m| matches!(m.kind, message_type::DEFAULT | message_type::REPLY))
    }

    pub fn expected_activities(&self) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for message in self.counted() {
            if self.is_forum_post(message) {
                ids.insert(format!("thread:{}", message.id));
                continue;
            }
            ids.insert(format!("message:{}", message.id));
            if let Some(thread) = &message.thread {
                ids.insert(format!("thread:{}", thread.id));
            }
        }
        ids
    }

    pub fn expected_members(&self) -> BTreeSet<String> {
        self.counted().map(|m| m.author.id.to_string()).collect()
    }

    fn messages_in(&self, channel: u64) -> usize {
        self.messages
            .iter()
            .filter(|m| m.channel_id == channel)
            .count()
    }

    /// The requests an onboarding of every channel needs at `per_page`: the channel list, the
    /// active threads, each thread-holding channel's archived pages, and each channel's and
    /// thread's message pages (a full last page asks once more).
    pub fn expected_requests(&self, per_page: usize) -> usize {
        let places: Vec<&Channel> = self
            .channels
            .iter()
            .filter(|c| {
                matches!(
                    c.kind,
                    channel_type::TEXT | channel_type::ANNOUNCEMENT | channel_type::FORUM
                )
            })
            .collect();
        let archived_limit = per_page.max(2);
        let archived: usize = places
            .iter()
            .map(|p| {
                let n = self
                    .threads
                    .iter()
                    .filter(|t| t.parent_id == Some(p.id) && archived(t))
                    .count();
                n.div_ceil(archived_limit).max(1)
            })
            .sum();
        let pages = |channel: u64| self.messages_in(channel) / per_page + 1;
        let channels: usize = places
            .iter()
            .filter(|p| p.kind != channel_type::FORUM)
            .map(|p| pages(p.id))
            .sum();
        let threads: usize = self.threads.iter().map(|t| pages(t.id)).sum();
        2 + archived + channels + threads
    }
}

fn archived(thread: &Channel) -> bool {
    thread.thread_metadata.as_ref().is_some_and(|m| m.archived)
}

/// A running fake Discord. Stops when dropped.
pub struct FakeDiscord {
    server: FakeServer,
    data: Arc<Mutex<DiscordData>>,
}

impl FakeDiscord {
    /// Serves `data`; requests without `Authorization: Bot <token>` get 401.
    pub async fn start(data: DiscordData, token: &str) -> std::io::Result<Self> {
        let server = FakeServer::start().await?;
        server.require_header("authorization", &format!("Bot {token}"));
        let data = Arc::new(Mutex::new(data));
        for prefix in ["/guilds/", "/channels/"] {
            let shared = data.clone();
            server.handle(prefix, move |request| answer(&mut lock(&shared), request));
        }
        Ok(Self { server, data })
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The testkit server underneath: faults to inject, requests received.
    pub fn server(&self) -> &FakeServer {
        &self.server
    }

    /// Reads or changes the content (new messages between runs).
    pub fn edit<T>(&self, f: impl FnOnce(&mut DiscordData) -> T) -> T {
        f(&mut lock(&self.data))
    }
}

fn lock(data: &Mutex<DiscordData>) -> MutexGuard<'_, DiscordData> {
    data.lock().unwrap_or_else(|p| p.into_inner())
}

/// Discord's 429 for a bucket (`global: false`) or for the whole bot.
pub fn rate_limited(bucket: &str, retry_after: f64, global: bool) -> Reply {
    let reply = Reply::json(json!({
        "message": "You are being rate limited.",
        "retry_after": retry_after,
        "global": global,
    }))
    .with_status(429)
    .header("Retry-After", format!("{}", retry_after.ceil() as u64))
    .header("X-RateLimit-Scope", if global { "global" } else { "user" });
    if global {
        reply.header("X-RateLimit-Global", "true")
    } else {
        bucket_headers(reply, bucket, 0, retry_after)
    }
}

/// The bucket headers of an answer.
pub fn bucket_headers(reply: Reply, bucket: &str, remaining: u32, reset_after: f64) -> Reply {
    reply
        .header("X-RateLimit-Bucket", bucket)
        .header("X-RateLimit-Limit", BUCKET_LIMIT.to_string())
        .header("X-RateLimit-Remaining", remaining.to_string())
        .header("X-RateLimit-Reset-After", format!("{reset_after:.3}"))
}

fn answer(data: &mut DiscordData, request: &Request) -> Reply {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let major = segments
        .iter()
        .take(2)
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    let bucket = match segments.as_slice() {
        ["guilds", _, "channels"] => "b-channels",
        ["guilds", _, "threads", "active"] => "b-active",
        ["channels", _, "threads", "archived", "public"] => "b-archived",
        ["channels", _, "messages"] => "b-messages",
        _ => "b-other",
    };
    let (remaining, reset_after) = match data.bucket_limit {
        None => (BUCKET_LIMIT - 1, 1.0),
        Some((limit, window)) => {
            let now = Instant::now();
            let (start, used) = data
                .buckets
                .entry(format!("{bucket}:{major}"))
                .or_insert((now, 0));
            if now.duration_since(*start) >= window {
                (*start, *used) = (now, 0);
            }
            let left = window
                .saturating_sub(now.duration_since(*start))
                .as_secs_f64();
            if *used >= limit {
                return rate_limited(bucket, left, false);
            }
            *used += 1;
            (limit - *used, left)
        }
    };
    bucket_headers(
        route(data, &segments, request),
        bucket,
        remaining,
        reset_after,
    )
}

fn route(data: &DiscordData, segments: &[&str], request: &Request) -> Reply {
    let guild = GUILD.to_string();
    match segments {
        ["guilds", g, "channels"] if *g == guild => Reply::json(&data.channels),
        ["guilds", g, "threads", "active"] if *g == guild => {
            let threads: Vec<&Channel> = data.threads.iter().filter(|t| !archived(t)).collect();
            Reply::json(json!({"threads": threads, "members": [], "has_more": false}))
        }
        ["guilds", ..] => {
            Reply::json(json!({"message": "Unknown Guild", "code": 10004})).with_status(404)
        }
        ["channels", channel, "threads", "archived", "public"] => {
            archived_threads(data, channel, request)
        }
        ["channels", channel, "messages"] => {
            if data.forbidden.iter().any(|c| c.to_string() == *channel) {
                return Reply::json(json!({"message": "Missing Access", "code": 50001}))
                    .with_status(403);
            }
            messages(data, channel, request)
        }
        _ => Reply::json(json!({"message": "404: Not Found", "code": 0})).with_status(404),
    }
}

fn invalid(message: &str) -> Reply {
    Reply::json(json!({"message": message, "code": 50035})).with_status(400)
}

fn channel_of<'a>(data: &'a DiscordData, id: &str) -> Option<&'a Channel> {
    data.channels
        .iter()
        .chain(data.threads.iter())
        .find(|c| c.id.to_string() == id)
}

fn archived_threads(data: &DiscordData, channel: &str, request: &Request) -> Reply {
    if channel_of(data, channel).is_none() {
        return Reply::json(json!({"message": "Unknown Channel", "code": 10003})).with_status(404);
    }
    let limit = match request.query("limit").map(str::parse::<usize>) {
        None => 50,
        Some(Ok(n)) if (2..=100).contains(&n) => n,
        _ => return invalid("limit: must be between 2 and 100"),
    };
    let before = match request.query("before").map(DateTime::parse_from_rfc3339) {
        None => None,
        Some(Ok(at)) => Some(at.with_timezone(&Utc)),
        Some(Err(_)) => return invalid("before: not an ISO8601 timestamp"),
    };
    let at = |t: &Channel| t.thread_metadata.as_ref().and_then(|m| m.archive_timestamp);
    let mut threads: Vec<&Channel> = data
        .threads
        .iter()
        .filter(|t| t.parent_id.map(|p| p.to_string()).as_deref() == Some(channel))
        .filter(|t| archived(t) && before.is_none_or(|b| at(t).is_some_and(|a| a < b)))
        .collect();
    threads.sort_by_key(|t| std::cmp::Reverse(at(t)));
    let has_more = threads.len() > limit;
    threads.truncate(limit);
    Reply::json(json!({"threads": threads, "members": [], "has_more": has_more}))
}

fn messages(data: &DiscordData, channel: &str, request: &Request) -> Reply {
    if channel_of(data, channel).is_none() {
        return Reply::json(json!({"message": "Unknown Channel", "code": 10003})).with_status(404);
    }
    let limit = match request.query("limit").map(str::parse::<usize>) {
        None => 50,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        _ => return invalid("limit: must be between 1 and 100"),
    };
    let snowflake = |name: &str| request.query(name).map(str::parse::<u64>);
    let (after, before) = match (snowflake("after"), snowflake("before")) {
        (Some(Err(_)), _) | (_, Some(Err(_))) => return invalid("not a snowflake"),
        (a, b) => (a.and_then(Result::ok), b.and_then(Result::ok)),
    };
    let mut list: Vec<&Message> = data
        .messages
        .iter()
        .filter(|m| m.channel_id.to_string() == channel)
        .collect();
    list.sort_by_key(|m| m.id);
    let page: Vec<&Message> = if let Some(after) = after {
        // the oldest `limit` after the boundary, answered newest first
        let mut page: Vec<&Message> = list
            .into_iter()
            .filter(|m| m.id > after)
            .take(limit)
            .collect();
        page.reverse();
        page
    } else {
        list.into_iter()
            .rev()
            .filter(|m| before.is_none_or(|b| m.id < b))
            .take(limit)
            .collect()
    };
    Reply::json(page)
}
