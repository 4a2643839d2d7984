//! A fake Slack (feature `fakes`) on the testkit's [`FakeServer`], following the published Web
//! API description: `conversations.list` (types, exclude_archived, cursor), `conversations.history`
//! (oldest, newest first, cursor, `has_more`), `conversations.replies` (the parent first),
//! `users.info`; errors as Slack gives them, `200` with `{"ok": false, "error": …}`
//! (`not_authed`, `invalid_auth`, `not_in_channel`, `channel_not_found`, `user_not_found`,
//! `invalid_cursor`). Edits and deletions leave `message_changed` / `message_deleted` entries in
//! the history, as Slack's events do. Faults, latency and 429s come from the testkit.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{Duration, TimeZone, Utc};
use serde_json::{Value, json};
use tributary::testkit::{FakeServer, Reply, Request};

use super::api::{Channel, Edited, Message, Profile, User, time_ts, ts_time};

/// What the fake holds.
#[derive(Debug, Clone, Default)]
pub struct SlackData {
    pub channels: Vec<Channel>,
    pub users: Vec<User>,
    /// Every message by channel id, oldest first; replies carry their `thread_ts`.
    pub messages: Vec<(String, Message)>,
    clock: i64,
}

/// Shape of a generated workspace.
#[derive(Debug, Clone, Copy)]
pub struct SlackSpec {
    /// Channels the bot is in (a private, an archived and a not-joined channel are added).
    pub channels: usize,
    pub messages_per_channel: usize,
    /// Every this many messages starts a thread…
    pub thread_every: usize,
    /// …of this many replies.
    pub replies: usize,
    pub users: usize,
}

impl SlackData {
    /// The same every time: each channel opens with a `channel_join`, holds a bot message, and
    /// threads.
    pub fn generate(spec: SlackSpec) -> Self {
        let mut data = Self::default();
        for i in 0..spec.users.max(1) {
            data.users.push(User {
                id: format!("U{i:04}"),
                name: format!("user{i}"),
                real_name: Some(format!("User Number {i}")),
                deleted: Some(false),
                is_bot: Some(false),
                profile: Some(Profile {
                    display_name: Some(if i % 2 == 0 {
                        format!("User {i}")
                    } else {
                        String::new()
                    }),
                    real_name: Some(format!("User Number {i}")),
                    image_192: (i % 3 != 0).then(|| format!("https://avatars.test/{i}_192.png")),
                    image_72: None,
                }),
            });
        }
        let users = data.users.len();
        let mut add_channel = |id: String, name: &str, member: bool, archived: bool, private| {
            data.channels.push(Channel {
                id,
                name: Some(name.to_owned()),
                is_member: Some(member),
                is_archived: Some(archived),
                is_private: Some(private),
            });
        };
        for c in 0..spec.channels {
            add_channel(
                format!("C{c:03}"),
                &format!("channel-{c}"),
                true,
                false,
                false,
            );
        }
        add_channel("C900".into(), "not-joined", false, false, false);
        add_channel("C901".into(), "old", true, true, false);
        add_channel("G902".into(), "secret", true, false, true);
        let ids: Vec<String> = data.channels.iter().map(|c| c.id.clone()).collect();
        for channel in ids {
            for i in 0..spec.messages_per_channel {
                let user = i % users;
                let ts = data.tick();
                let mut message = data.message(&ts, user, &format!("message {i} in {channel}"));
                if i == 0 {
                    message.subtype = Some("channel_join".into());
                } else if i == 1 {
                    message.subtype = Some("bot_message".into());
                    message.user = None;
                    message.bot_id = Some("B0001".into());
                    message.username = Some("deploybot".into());
                }
                data.messages.push((channel.clone(), message));
                if spec.thread_every > 0 && i % spec.thread_every == spec.thread_every - 1 {
                    for r in 0..spec.replies {
                        let at = data.tick();
                        data.reply_at(&channel, &ts, (user + r + 1) % users, &at);
                    }
                }
            }
        }
        data
    }

    fn tick(&mut self) -> String {
        self.clock += 1;
        let start = Utc
            .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        time_ts(start + Duration::seconds(self.clock * 60) + Duration::microseconds(self.clock))
    }

    fn now_ts(&mut self) -> String {
        self.clock += 1;
        time_ts(Utc::now() + Duration::microseconds(self.clock % 1000))
    }

    fn message(&self, ts: &str, user: usize, text: &str) -> Message {
        Message {
            ts: ts.to_owned(),
            subtype: None,
            user: Some(self.users[user % self.users.len()].id.clone()),
            bot_id: None,
            username: None,
            text: Some(text.to_owned()),
            thread_ts: None,
            reply_count: None,
            latest_reply: None,
            edited: None,
            message: None,
            previous_message: None,
            deleted_ts: None,
        }
    }

    fn reply_at(&mut self, channel: &str, thread_ts: &str, user: usize, ts: &str) {
        let mut reply = self.message(ts, user, &format!("a reply in {thread_ts}"));
        reply.thread_ts = Some(thread_ts.to_owned());
        self.messages.push((channel.to_owned(), reply));
        if let Some((_, parent)) = self
            .messages
            .iter_mut()
            .find(|(c, m)| c == channel && m.ts == thread_ts)
        {
            parent.thread_ts = Some(thread_ts.to_owned());
            parent.reply_count = Some(parent.reply_count.unwrap_or(0) + 1);
            parent.latest_reply = Some(ts.to_owned());
        }
    }

    /// Posts a message now; returns its `ts`.
    pub fn post_now(&mut self, channel: &str, user: usize, text: &str) -> String {
        let ts = self.now_ts();
        let message = self.message(&ts, user, text);
        self.messages.push((channel.to_owned(), message));
        ts
    }

    /// Replies now in the thread of `thread_ts`; returns the reply's `ts`.
    pub fn reply_now(&mut self, channel: &str, thread_ts: &str, user: usize) -> String {
        let ts = self.now_ts();
        self.reply_at(channel, thread_ts, user, &ts);
        ts
    }

    /// Edits a message now: its text changes and a `message_changed` entry is added.
    pub fn edit_now(&mut self, channel: &str, ts: &str, text: &str) {
        let at = self.now_ts();
        let Some((_, message)) = self
            .messages
            .iter_mut()
            .find(|(c, m)| c == channel && m.ts == ts)
        else {
            return;
        };
        let previous = message.clone();
        message.text = Some(text.to_owned());
        message.edited = Some(Edited {
            user: message.user.clone(),
            ts: at.clone(),
        });
        let mut event = Message {
            subtype: Some("message_changed".into()),
            message: Some(Box::new(message.clone())),
            previous_message: Some(Box::new(previous)),
            ..self.message(&at, 0, "")
        };
        event.user = None;
        event.text = None;
        self.messages.push((channel.to_owned(), event));
    }

    /// Deletes a message now: it goes, a `message_deleted` entry is added.
    pub fn delete_now(&mut self, channel: &str, ts: &str) {
        let at = self.now_ts();
        let Some(index) = self
            .messages
            .iter()
            .position(|(c, m)| c == channel && m.ts == ts)
        else {
            return;
        };
        let (_, previous) = self.messages.remove(index);
        let mut event = Message {
            subtype: Some("message_deleted".into()),
            deleted_ts: Some(ts.to_owned()),
            previous_message: Some(Box::new(previous)),
            ..self.message(&at, 0, "")
        };
        event.user = None;
        event.text = None;
        self.messages.push((channel.to_owned(), event));
    }

    fn readable(&self) -> Vec<&Channel> {
        self.channels
            .iter()
            .filter(|c| {
                c.is_member == Some(true)
                    && c.is_archived != Some(true)
                    && c.is_private != Some(true)
            })
            .collect()
    }

    fn counted(&self) -> impl Iterator<Item = &(String, Message)> {
        let readable: Vec<String> = self.readable().iter().map(|c| c.id.clone()).collect();
        self.messages.iter().filter(move |(c, m)| {
            readable.contains(c)
                && matches!(
                    m.subtype.as_deref(),
                    None | Some("channel_join" | "bot_message")
                )
        })
    }

    pub fn expected_activities(&self) -> BTreeSet<String> {
        self.counted()
            .map(|(c, m)| format!("message:{c}:{}", m.ts))
            .collect()
    }

    pub fn expected_members(&self) -> BTreeSet<String> {
        self.counted()
            .filter_map(|(_, m)| m.user.clone().or_else(|| m.bot_id.clone()))
            .collect()
    }

    /// The requests an onboarding needs at `per_page`: the channel list's pages, each readable
    /// channel's history pages, each thread's reply pages (the parent included), and one
    /// `users.info` per author.
    pub fn expected_requests(&self, per_page: usize) -> usize {
        let pages = |n: usize| n.div_ceil(per_page).max(1);
        let public = self
            .channels
            .iter()
            .filter(|c| c.is_private != Some(true) && c.is_archived != Some(true))
            .count();
        let mut total = pages(public);
        for channel in self.readable() {
            let top = self.history(&channel.id).len();
            total += pages(top);
            for (_, m) in self
                .messages
                .iter()
                .filter(|(c, m)| c == &channel.id && m.reply_count.is_some())
            {
                total += pages(1 + m.reply_count.unwrap_or(0) as usize);
            }
        }
        let users = self
            .expected_members()
            .iter()
            .filter(|id| id.starts_with('U'))
            .count();
        total + users
    }

    /// A channel's history: everything but thread replies, newest first.
    fn history(&self, channel: &str) -> Vec<&Message> {
        let mut list: Vec<&Message> = self
            .messages
            .iter()
            .filter(|(c, m)| c == channel && m.thread_ts.as_ref().is_none_or(|t| *t == m.ts))
            .map(|(_, m)| m)
            .collect();
        list.sort_by(|a, b| b.ts.cmp(&a.ts));
        list
    }
}

/// A running fake Slack. Stops when dropped.
pub struct FakeSlack {
    server: FakeServer,
    data: Arc<Mutex<SlackData>>,
}

impl FakeSlack {
    /// Serves `data` to the bot token `token`.
    pub async fn start(data: SlackData, token: &str) -> std::io::Result<Self> {
        let server = FakeServer::start().await?;
        let data = Arc::new(Mutex::new(data));
        let shared = data.clone();
        let bearer = format!("Bearer {token}");
        server.handle("/", move |request| {
            match request.header("authorization") {
                None => return error("not_authed"),
                Some(given) if given != bearer => return error("invalid_auth"),
                Some(_) => {}
            }
            answer(&lock(&shared), request)
        });
        Ok(Self { server, data })
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The testkit server underneath: faults to inject, requests received.
    pub fn server(&self) -> &FakeServer {
        &self.server
    }

    /// Reads or changes the content (new messages, edits between runs).
    pub fn edit<T>(&self, f: impl FnOnce(&mut SlackData) -> T) -> T {
        f(&mut lock(&self.data))
    }
}

fn lock(data: &Mutex<SlackData>) -> MutexGuard<'_, SlackData> {
    data.lock().unwrap_or_else(|p| p.into_inner())
}

/// Slack's error answer: `200` with `ok: false`.
pub fn error(code: &str) -> Reply {
    Reply::json(json!({"ok": false, "error": code}))
}

/// Slack's rate limit: `429`, `Retry-After`, and `ratelimited` in the body.
pub fn rate_limited(retry_after: u64) -> Reply {
    Reply::json(json!({"ok": false, "error": "ratelimited"}))
        .with_status(429)
        .header("Retry-After", retry_after.to_string())
}

fn answer(data: &SlackData, request: &Request) -> Reply {
    let limit = match request.query("limit").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        _ => return error("invalid_limit"),
    };
    let offset = match request.query("cursor") {
        None | Some("") => 0,
        Some(c) => match c
            .strip_prefix("dXNlcjo")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => n,
            None => return error("invalid_cursor"),
        },
    };
    match request.path.as_str() {
        "/conversations.list" => {
            let types = request.query("types").unwrap_or("public_channel");
            let exclude_archived = request.query("exclude_archived") == Some("true");
            let list: Vec<&Channel> = data
                .channels
                .iter()
                .filter(|c| types.contains("private_channel") || c.is_private != Some(true))
                .filter(|c| !exclude_archived || c.is_archived != Some(true))
                .collect();
            page("channels", &list, offset, limit)
        }
        "/conversations.history" | "/conversations.replies" => {
            let Some(channel) = request.query("channel") else {
                return error("channel_not_found");
            };
            let Some(known) = data.channels.iter().find(|c| c.id == channel) else {
                return error("channel_not_found");
            };
            if known.is_member != Some(true) {
                return error("not_in_channel");
            }
            let oldest = request.query("oldest").and_then(ts_time);
            let after = |m: &&Message| oldest.is_none_or(|o| ts_time(&m.ts).is_some_and(|t| t > o));
            if request.path == "/conversations.history" {
                let list: Vec<&Message> = data.history(channel).into_iter().filter(after).collect();
                return page("messages", &list, offset, limit);
            }
            let Some(ts) = request.query("ts") else {
                return error("thread_not_found");
            };
            let mut thread: Vec<&Message> = data
                .messages
                .iter()
                .filter(|(c, m)| c == channel && m.thread_ts.as_deref() == Some(ts))
                .map(|(_, m)| m)
                .filter(|m| m.ts == ts || after(m))
                .collect();
            if thread.is_empty() {
                return error("thread_not_found");
            }
            thread.sort_by(|a, b| (a.ts != ts, &a.ts).cmp(&(b.ts != ts, &b.ts)));
            page("messages", &thread, offset, limit)
        }
        "/users.info" => match data
            .users
            .iter()
            .find(|u| Some(u.id.as_str()) == request.query("user"))
        {
            Some(user) => Reply::json(json!({"ok": true, "user": user})),
            None => error("user_not_found"),
        },
        _ => error("unknown_method"),
    }
}

/// One page of `items` under `key`, with Slack's cursor.
fn page<T: serde::Serialize>(key: &str, items: &[T], offset: usize, limit: usize) -> Reply {
    let end = (offset + limit).min(items.len());
    let slice = items.get(offset..end).unwrap_or_default();
    let more = end < items.len();
    let cursor = if more {
        format!("dXNlcjo{end}")
    } else {
        String::new()
    };
    let mut body: Value = json!({"ok": true, "response_metadata": {"next_cursor": cursor}});
    body[key] = json!(slice);
    if key == "messages" {
        body["has_more"] = json!(more);
    }
    Reply::json(body)
}
