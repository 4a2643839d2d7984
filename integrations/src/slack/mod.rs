//! **Slack**: the public channels the bot is in, each channel's history, the replies of every
//! thread, and their authors.
//!
//! API (Web API, `https://slack.com/api`, `Authorization: Bearer xoxb-…`, base URL
//! configurable): `conversations.list?types=public_channel&exclude_archived=true` (cursor
//! paging), `conversations.history?channel=C&oldest=TS` (newest first, cursor paging),
//! `conversations.replies?channel=C&ts=THREAD&oldest=TS` and `users.info?user=U` (once per run
//! and user; Slack puts only the user id in a message). Slack answers most errors with `200`
//! and `{"ok": false, "error": …}`: the toolkit's body classifier reads them (`ratelimited` is a
//! rate limit; `invalid_auth`, `not_in_channel`, `channel_not_found` end with a message that says
//! what to do; `internal_error` is retried). Each method is paced at its documented tier (list:
//! 20, history and replies: 50, users: 100 a minute), and a `429` waits its `Retry-After`.
//!
//! Streams: `channels` (the root); `history:{channel}` for each channel the bot is in (its own
//! source: a check reads from its window, looking `thread_lookback_days` further back only to
//! find threads with new replies); `replies:{channel}:{thread_ts}` for each thread with replies
//! in the window.
//!
//! Activities: `message`, `thread_reply` (parent `message:{channel}:{thread_ts}`) and
//! `channel_joined` (Slack's `channel_join` messages), keyed `message:{channel}:{ts}`. An edit
//! (`message_changed`) or a deletion (`message_deleted`) rewrites the stored activity: the new
//! text, or no text and `deleted: true`.

mod activities;
mod api;
mod classify;
#[cfg(feature = "fakes")]
pub mod fake;
mod settings;
mod users;

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tributary::http::{Cursor, HttpClient, HttpConfig, RequestRate};
use tributary::{
    IntegrationError, IntegrationService, Member, NewStream, RunContext, Secret, Stream,
    StreamOutcome,
};

pub use api::{
    Channel, ChannelList, Edited, Message, MessageList, Profile, ResponseMetadata, User, UserInfo,
    time_ts, ts_time,
};
pub use settings::{DEFAULT_BASE_URL, SlackSettings};

use activities::Place;

pub const PLATFORM: &str = "slack";

/// Slack's rate-limit tiers, per method and workspace (requests a minute).
const TIER_2: u32 = 20;
const TIER_3: u32 = 50;
const TIER_4: u32 = 100;

/// The Slack integration.
#[derive(Debug, Default)]
pub struct SlackIntegration {
    users: users::Directory,
}

/// What a stream stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Target {
    Channels,
    History { place: Place },
    Replies { place: Place, thread_ts: String },
}

impl Target {
    fn stream(&self) -> Result<NewStream, IntegrationError> {
        match self {
            Self::Channels => NewStream::with("channels", self),
            Self::History { place } => Ok(NewStream::with(format!("history:{}", place.id), self)?
                .source(format!("channel:{}", place.id))),
            Self::Replies { place, thread_ts } => Ok(NewStream::with(
                format!("replies:{}:{thread_ts}", place.id),
                self,
            )?
            .source(format!("channel:{}", place.id))),
        }
    }
}

#[async_trait]
impl IntegrationService for SlackIntegration {
    type Settings = SlackSettings;

    fn platform(&self) -> &'static str {
        PLATFORM
    }

    async fn get_streams(
        &self,
        _ctx: &RunContext<SlackSettings>,
    ) -> Result<Vec<NewStream>, IntegrationError> {
        Ok(vec![Target::Channels.stream()?])
    }

    async fn process_stream(
        &self,
        stream: &Stream,
        ctx: &RunContext<SlackSettings>,
    ) -> Result<StreamOutcome, IntegrationError> {
        let token = ctx.credentials().secret("bot_token");
        let reader = Reader {
            ctx,
            token: token.as_ref(),
            users: &self.users,
        };
        match stream.data_as::<Target>()? {
            Target::Channels => reader.channels(stream).await,
            Target::History { place } => reader.history(stream, &place).await,
            Target::Replies { place, thread_ts } => {
                reader.replies(stream, &place, &thread_ts).await
            }
        }
    }
}

struct Reader<'a> {
    ctx: &'a RunContext<SlackSettings>,
    token: Option<&'a Secret>,
    users: &'a users::Directory,
}

impl Reader<'_> {
    fn settings(&self) -> &SlackSettings {
        self.ctx.settings()
    }

    /// The client of a method's tier: each tier is paced on its own.
    fn client(&self, per_minute: u32) -> Result<HttpClient, IntegrationError> {
        let mut config =
            HttpConfig::new(&self.settings().base_url).classify_body(classify::CLASSIFIER);
        if let Some(requests) = NonZeroU32::new(per_minute) {
            config = config.rate(RequestRate {
                requests,
                per: Duration::from_secs(60),
            });
        }
        self.ctx.client(config)
    }

    fn page_size(&self) -> String {
        self.settings().per_page.to_string()
    }

    async fn channels(&self, stream: &Stream) -> Result<StreamOutcome, IntegrationError> {
        let pages = Cursor::of(stream)?;
        let mut query = vec![
            ("types", "public_channel".to_owned()),
            ("exclude_archived", "true".to_owned()),
            ("limit", self.page_size()),
        ];
        if let Some(cursor) = pages.cursor() {
            query.push(("cursor", cursor.to_owned()));
        }
        let list: ChannelList = self
            .client(TIER_2)?
            .get_json("/conversations.list", &query, self.token)
            .await?
            .body;
        let wanted = &self.settings().channels;
        let children = list
            .channels
            .iter()
            .filter(|c| c.is_member == Some(true) && c.is_archived != Some(true))
            .filter(|c| wanted.is_empty() || wanted.contains(&c.id))
            .map(|c| {
                Target::History {
                    place: Place {
                        id: c.id.clone(),
                        name: c.name.clone().unwrap_or_else(|| c.id.clone()),
                    },
                }
                .stream()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next = pages.next(next_cursor(list.response_metadata.as_ref()))?;
        Ok(StreamOutcome::new().children(children).next_page_opt(next))
    }

    async fn history(
        &self,
        stream: &Stream,
        place: &Place,
    ) -> Result<StreamOutcome, IntegrationError> {
        let window = self.ctx.window(stream);
        let lookback = chrono::Duration::days(i64::from(self.settings().thread_lookback_days));
        let pages = Cursor::of(stream)?;
        let mut query = vec![("channel", place.id.clone()), ("limit", self.page_size())];
        if let Some(since) = window.since {
            query.push(("oldest", time_ts(since - lookback)));
        }
        if let Some(cursor) = pages.cursor() {
            query.push(("cursor", cursor.to_owned()));
        }
        let list: MessageList = self
            .client(TIER_3)?
            .get_json("/conversations.history", &query, self.token)
            .await?
            .body;
        let mut children = Vec::new();
        let mut shown = Vec::new();
        for message in &list.messages {
            let thread = message.thread_ts.as_deref() == Some(message.ts.as_str())
                && message.reply_count.unwrap_or(0) > 0;
            let replied = message
                .latest_reply
                .as_deref()
                .and_then(ts_time)
                .is_none_or(|at| window.includes(at));
            if thread && replied {
                children.push(
                    Target::Replies {
                        place: place.clone(),
                        thread_ts: message.ts.clone(),
                    }
                    .stream()?,
                );
            }
            if ts_time(&message.ts).is_some_and(|at| window.includes(at)) {
                shown.push(message);
            }
        }
        let records = self.activities(place, &shown).await?;
        let next = pages.next(next_cursor(list.response_metadata.as_ref()))?;
        Ok(StreamOutcome::new()
            .activities(records)
            .children(children)
            .next_page_opt(next))
    }

    async fn replies(
        &self,
        stream: &Stream,
        place: &Place,
        thread_ts: &str,
    ) -> Result<StreamOutcome, IntegrationError> {
        let window = self.ctx.window(stream);
        let pages = Cursor::of(stream)?;
        let mut query = vec![
            ("channel", place.id.clone()),
            ("ts", thread_ts.to_owned()),
            ("limit", self.page_size()),
        ];
        if let Some(since) = window.since {
            query.push(("oldest", time_ts(since)));
        }
        if let Some(cursor) = pages.cursor() {
            query.push(("cursor", cursor.to_owned()));
        }
        let list: MessageList = self
            .client(TIER_3)?
            .get_json("/conversations.replies", &query, self.token)
            .await?
            .body;
        let replies: Vec<&Message> = list
            .messages
            .iter()
            .filter(|m| m.ts != thread_ts)
            .filter(|m| ts_time(&m.ts).is_some_and(|at| window.includes(at)))
            .collect();
        let records = self.activities(place, &replies).await?;
        let next = pages.next(next_cursor(list.response_metadata.as_ref()))?;
        Ok(StreamOutcome::new().activities(records).next_page_opt(next))
    }

    /// The activities of `messages`, their authors looked up once per run.
    async fn activities(
        &self,
        place: &Place,
        messages: &[&Message],
    ) -> Result<Vec<tributary::Activity>, IntegrationError> {
        let authors: BTreeSet<&str> = messages
            .iter()
            .filter_map(|m| activities::user_id(m))
            .collect();
        let site = self.settings().workspace_url.as_deref();
        let mut members = Vec::new();
        for id in authors {
            members.push((id.to_owned(), self.member(id, site).await?));
        }
        let lookup = |id: &str| {
            members
                .iter()
                .find(|(m, _)| m == id)
                .map(|(_, m)| m.clone())
        };
        Ok(messages
            .iter()
            .filter_map(|m| activities::of_message(m, place, site, &lookup))
            .collect())
    }

    async fn member(&self, id: &str, site: Option<&str>) -> Result<Member, IntegrationError> {
        let run = self.ctx.run_id().to_string();
        let client = self.client(TIER_4)?;
        let user = self
            .users
            .get(&run, id, || async {
                let answer: UserAnswer = client
                    .get_json("/users.info", &[("user", id.to_owned())], self.token)
                    .await?
                    .body;
                Ok(answer.user)
            })
            .await?;
        Ok(activities::member(id, user.as_ref(), site))
    }
}

/// `users.info`, or its `user_not_found`.
#[derive(Debug, Deserialize)]
struct UserAnswer {
    #[serde(default)]
    user: Option<User>,
}

fn next_cursor(metadata: Option<&ResponseMetadata>) -> Option<&str> {
    metadata
        .and_then(|m| m.next_cursor.as_deref())
        .filter(|c| !c.is_empty())
}
