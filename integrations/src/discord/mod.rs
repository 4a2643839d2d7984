//! **Discord**: the configured guild's text, announcement, forum and media channels, their
//! public threads (active and archived), and every message in them.
//!
//! API (`https://discord.com/api/v10`, `Authorization: Bot TOKEN`, base URL configurable):
//! `GET /guilds/{guild}/channels` (every channel in one answer), `GET
//! /guilds/{guild}/threads/active` (every active thread of the guild in one answer), `GET
//! /channels/{channel}/threads/archived/public?limit=100&before=TIME` (newest archived first),
//! `GET /channels/{channel}/messages?limit=100&after=SNOWFLAKE` (a thread is a channel too).
//!
//! Streams:
//! * `guild:{guild}` — the root: lists the channels; a `messages:{channel}` child per text or
//!   announcement channel, an `archived:{channel}` child per channel that can hold threads, and
//!   `active-threads:{guild}`.
//! * `active-threads:{guild}` and `archived:{channel}` — list threads (archived ones paged by
//!   archive time, a check stops at the window); a `messages:{thread}` child per thread.
//! * `messages:{channel}` — the channel's (or thread's) messages, oldest first, 100 a page,
//!   `after` the last message of the page. Each is its own source: a check reads `after` the
//!   snowflake of its window (the last time it was read whole, less the overlap), and a channel
//!   or thread whose `last_message_id` is older than that is not requested at all.
//!
//! Activities: `message`; `reply` (a message answering another, parent `message:{id}`);
//! `thread_started` (`thread:{id}`: a forum post, whose first message has the thread's id, or a
//! message that started a thread in a text channel, which is its parent), in the thread's parent
//! channel. Messages in a thread have the thread as parent. Members come from message authors
//! (the member list needs a privileged intent), keyed by user id.
//!
//! Rate limits through the toolkit: per-route buckets (`X-RateLimit-Bucket`, major parameter the
//! channel or guild) shared by every stream of the bot token, the global limit (a 429 with
//! `"global": true`), 50 requests a second, and a stop before Discord's ban for invalid requests.

mod activities;
mod api;
#[cfg(feature = "fakes")]
pub mod fake;
mod settings;

use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tributary::http::{
    Auth, Direction, HttpClient, HttpConfig, IdBoundary, InvalidRequestLimit, Route, RouteBuckets,
};
use tributary::{
    IntegrationError, IntegrationService, NewStream, RunContext, Secret, Stream, StreamOutcome,
};

pub use api::{
    Channel, DISCORD_EPOCH_MS, Message, MessageReference, ThreadList, ThreadMetadata, User,
    channel_type, message_type, snowflake_at, snowflake_time,
};
pub use settings::{DEFAULT_BASE_URL, DEFAULT_MAX_INVALID_REQUESTS, DiscordSettings};

pub const PLATFORM: &str = "discord";

/// Discord's global limit for a bot: 50 requests a second.
const GLOBAL_REQUESTS_PER_SECOND: u32 = 50;
/// The window of Discord's invalid-request ban.
const INVALID_REQUEST_WINDOW: Duration = Duration::from_secs(600);

/// Discord's buckets: per route, the channel, guild or webhook a path starts with its major
/// parameter.
pub const ROUTES: RouteBuckets = RouteBuckets::new("discord", |path| {
    Route::major_parameter(path, &["channels", "guilds", "webhooks"])
});

/// The Discord integration.
#[derive(Debug, Default)]
pub struct DiscordIntegration;

/// A channel as its children need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Place {
    id: u64,
    name: String,
    /// A forum or media channel: its threads are posts.
    forum: bool,
}

/// A thread as its messages need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ThreadRef {
    id: u64,
    name: String,
}

/// What a stream stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Target {
    Guild,
    ActiveThreads {
        places: Vec<Place>,
    },
    Archived {
        place: Place,
    },
    Messages {
        channel: u64,
        place: Place,
        thread: Option<ThreadRef>,
    },
}

impl Target {
    fn stream(&self, guild: &str) -> Result<NewStream, IntegrationError> {
        match self {
            Self::Guild => NewStream::with(format!("guild:{guild}"), self),
            Self::ActiveThreads { .. } => NewStream::with(format!("active-threads:{guild}"), self),
            Self::Archived { place } => NewStream::with(format!("archived:{}", place.id), self),
            Self::Messages { channel, .. } => {
                Ok(NewStream::with(format!("messages:{channel}"), self)?
                    .source(source_of(*channel)))
            }
        }
    }
}

/// The source of a channel's or thread's messages: each is read incrementally on its own.
fn source_of(channel: u64) -> String {
    format!("channel:{channel}")
}

#[async_trait]
impl IntegrationService for DiscordIntegration {
    type Settings = DiscordSettings;

    fn platform(&self) -> &'static str {
        PLATFORM
    }

    async fn get_streams(
        &self,
        ctx: &RunContext<DiscordSettings>,
    ) -> Result<Vec<NewStream>, IntegrationError> {
        Ok(vec![Target::Guild.stream(&ctx.settings().guild_id)?])
    }

    async fn process_stream(
        &self,
        stream: &Stream,
        ctx: &RunContext<DiscordSettings>,
    ) -> Result<StreamOutcome, IntegrationError> {
        let settings = ctx.settings();
        let client = ctx.client(
            HttpConfig::new(&settings.base_url)
                .auth(Auth::Scheme("Bot".to_owned()))
                .route_buckets(ROUTES)
                .invalid_requests(InvalidRequestLimit {
                    limit: settings.max_invalid_requests,
                    per: INVALID_REQUEST_WINDOW,
                })
                .requests_per_second(GLOBAL_REQUESTS_PER_SECOND),
        )?;
        let token = ctx.credentials().secret("bot_token");
        let reader = Reader {
            client: &client,
            token: token.as_ref(),
            settings,
            ctx,
        };
        match stream.data_as::<Target>()? {
            Target::Guild => reader.guild().await,
            Target::ActiveThreads { places } => reader.active_threads(&places).await,
            Target::Archived { place } => reader.archived(stream, &place).await,
            Target::Messages {
                channel,
                place,
                thread,
            } => {
                reader
                    .messages(stream, channel, &place, thread.as_ref())
                    .await
            }
        }
    }

    /// Archived threads come newest archived first: a check stops at its window.
    async fn is_processing_finished(
        &self,
        stream: &Stream,
        outcome: &StreamOutcome,
        ctx: &RunContext<DiscordSettings>,
    ) -> Result<bool, IntegrationError> {
        if !matches!(stream.data_as::<Target>()?, Target::Archived { .. }) {
            return Ok(false);
        }
        Ok(outcome
            .last_record_timestamp
            .is_some_and(|oldest| !ctx.window(stream).includes(oldest)))
    }
}

struct Reader<'a> {
    client: &'a HttpClient,
    token: Option<&'a Secret>,
    settings: &'a DiscordSettings,
    ctx: &'a RunContext<DiscordSettings>,
}

impl Reader<'_> {
    fn guild_id(&self) -> &str {
        &self.settings.guild_id
    }

    /// Whether a channel or thread has messages its source has not read: its last message is
    /// inside the source's window (or unknown).
    fn has_news(&self, channel: u64, last_message_id: Option<u64>) -> bool {
        match (
            self.ctx.window_of(&source_of(channel)).since,
            last_message_id,
        ) {
            (Some(since), Some(last)) => last >= snowflake_at(since),
            (Some(_), None) => false,
            (None, _) => true,
        }
    }

    fn wanted(&self, channel: u64) -> bool {
        let channels = &self.settings.channels;
        channels.is_empty() || channels.iter().any(|c| c == &channel.to_string())
    }

    async fn guild(&self) -> Result<StreamOutcome, IntegrationError> {
        let path = format!("/guilds/{}/channels", self.guild_id());
        let channels: Vec<Channel> = self.client.get_json(&path, &[], self.token).await?.body;
        let mut places = Vec::new();
        let mut children = Vec::new();
        for channel in channels.iter().filter(|c| self.wanted(c.id)) {
            use channel_type::{ANNOUNCEMENT, FORUM, MEDIA, TEXT};
            if !matches!(channel.kind, TEXT | ANNOUNCEMENT | FORUM | MEDIA) {
                continue;
            }
            let place = Place {
                id: channel.id,
                name: channel
                    .name
                    .clone()
                    .unwrap_or_else(|| channel.id.to_string()),
                forum: matches!(channel.kind, FORUM | MEDIA),
            };
            if !place.forum && self.has_news(channel.id, channel.last_message_id) {
                children.push(
                    Target::Messages {
                        channel: channel.id,
                        place: place.clone(),
                        thread: None,
                    }
                    .stream(self.guild_id())?,
                );
            }
            children.push(
                Target::Archived {
                    place: place.clone(),
                }
                .stream(self.guild_id())?,
            );
            places.push(place);
        }
        children.push(Target::ActiveThreads { places }.stream(self.guild_id())?);
        Ok(StreamOutcome::new().children(children))
    }

    /// A `messages:{thread}` child for each thread of `places` with news.
    fn thread_children(
        &self,
        threads: &[Channel],
        places: &[Place],
    ) -> Result<Vec<NewStream>, IntegrationError> {
        threads
            .iter()
            .filter(|t| self.has_news(t.id, t.last_message_id))
            .filter_map(|thread| {
                let place = places.iter().find(|p| Some(p.id) == thread.parent_id)?;
                Some(
                    Target::Messages {
                        channel: thread.id,
                        place: place.clone(),
                        thread: Some(ThreadRef {
                            id: thread.id,
                            name: thread.name.clone().unwrap_or_default(),
                        }),
                    }
                    .stream(self.guild_id()),
                )
            })
            .collect()
    }

    async fn active_threads(&self, places: &[Place]) -> Result<StreamOutcome, IntegrationError> {
        let path = format!("/guilds/{}/threads/active", self.guild_id());
        let list: ThreadList = self.client.get_json(&path, &[], self.token).await?.body;
        Ok(StreamOutcome::new().children(self.thread_children(&list.threads, places)?))
    }

    async fn archived(
        &self,
        stream: &Stream,
        place: &Place,
    ) -> Result<StreamOutcome, IntegrationError> {
        // the boundary is an archive time in milliseconds, newest first
        let pages = IdBoundary::of(stream, Direction::Before, None)?;
        let limit = self.settings.per_page.max(2);
        let mut query = vec![("limit", limit.to_string())];
        if let Some(before) = pages
            .id()
            .and_then(|ms| DateTime::from_timestamp_millis(ms as i64))
        {
            query.push(("before", before.to_rfc3339()));
        }
        let path = format!("/channels/{}/threads/archived/public", place.id);
        let list: ThreadList = self.client.get_json(&path, &query, self.token).await?.body;
        let archived_at = |t: &Channel| {
            t.thread_metadata
                .as_ref()
                .and_then(|m| m.archive_timestamp)
                .unwrap_or_else(|| snowflake_time(t.id))
        };
        let next = pages.next(
            list.has_more,
            list.threads
                .iter()
                .map(|t| archived_at(t).timestamp_millis().max(0) as u64),
        )?;
        let children = self.thread_children(&list.threads, std::slice::from_ref(place))?;
        let mut outcome = StreamOutcome::new().children(children);
        if let Some(oldest) = list.threads.iter().min_by_key(|t| archived_at(t)) {
            outcome = outcome.last_record(json!(oldest.id), Some(archived_at(oldest)));
        }
        Ok(outcome.next_page_opt(next))
    }

    async fn messages(
        &self,
        stream: &Stream,
        channel: u64,
        place: &Place,
        thread: Option<&ThreadRef>,
    ) -> Result<StreamOutcome, IntegrationError> {
        let start = self.ctx.window(stream).since.map_or(0, snowflake_at);
        let pages = IdBoundary::of(stream, Direction::After, Some(start))?;
        let query = [
            ("limit", self.settings.per_page.to_string()),
            ("after", pages.id().unwrap_or(start).to_string()),
        ];
        let path = format!("/channels/{channel}/messages");
        let messages: Vec<Message> = self.client.get_json(&path, &query, self.token).await?.body;
        let full = messages.len() >= self.settings.per_page as usize;
        let next = pages.next(full, messages.iter().map(|m| m.id))?;
        let context = activities::Context {
            guild: self.guild_id(),
            place,
            thread,
        };
        let records = messages
            .iter()
            .flat_map(|m| activities::of_message(m, &context));
        Ok(StreamOutcome::new()
            .activities(records)
            .newest_activity_as_last_record()
            .next_page_opt(next))
    }
}
