//! The example integration: **Example Forum**, a small forum platform whose fake server ships
//! with Tributary (see [`fake`], feature `fakes`), so the demo and the tests exercise the whole
//! path without the internet. It is the model of an integration built with the kit: typed
//! settings, clients from the run context, the toolkit's paginator, per-source check windows.
//!
//! API (`/api/v1`, bearer token, 100 items a page at most, rate-limit headers on every answer):
//! `GET /channels`, `GET /channels/{id}/posts`, `GET /channels/{id}/replies`, each with `page` and
//! `per_page` and, for posts and replies, `since` (RFC 3339). Lists are newest first.
//!
//! Streams: `channels` (the root, when no channel is configured) → `posts:{channel}` and
//! `replies:{channel}` (unless `replies` is false), each paginated and each a source of its own.
//! Onboarding reads everything;
//! a check reads what was created since the last run that read the list successfully.

mod api;
#[cfg(feature = "fakes")]
pub mod fake;
mod settings;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tributary::http::{HttpConfig, PageNumber};
use tributary::{
    Activity, CheckSchedule, IntegrationError, IntegrationService, Member, NewStream, RunContext,
    ServiceConfig, Stream, StreamOutcome,
};

pub use api::{Author, Channel, Page, Post, Reply};
pub use settings::ExampleForumSettings;

pub const PLATFORM: &str = "example-forum";

/// The Example Forum integration.
#[derive(Debug, Default)]
pub struct ExampleForumIntegration;

impl ExampleForumIntegration {
    pub fn new() -> Self {
        Self
    }
}

/// What a stream stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Target {
    Channels,
    Posts { channel: String },
    Replies { channel: String },
}

impl Target {
    fn stream(&self) -> Result<NewStream, IntegrationError> {
        let identifier = match self {
            Self::Channels => return NewStream::with("channels", self),
            Self::Posts { channel } => format!("posts:{channel}"),
            Self::Replies { channel } => format!("replies:{channel}"),
        };
        // each list is a source of its own, whether configured or found in the channel list
        Ok(NewStream::with(identifier.clone(), self)?.source(identifier))
    }

    /// A channel's lists: its posts, and its replies unless `replies` is false.
    fn for_channel(channel: &str, replies: bool) -> Vec<Self> {
        let posts = Self::Posts {
            channel: channel.to_owned(),
        };
        if !replies {
            return vec![posts];
        }
        vec![
            posts,
            Self::Replies {
                channel: channel.to_owned(),
            },
        ]
    }
}

#[async_trait]
impl IntegrationService for ExampleForumIntegration {
    type Settings = ExampleForumSettings;

    fn platform(&self) -> &'static str {
        PLATFORM
    }

    fn config(&self) -> ServiceConfig {
        ServiceConfig {
            check_schedule: CheckSchedule::EveryTick,
            ..ServiceConfig::default()
        }
    }

    async fn get_streams(
        &self,
        ctx: &RunContext<ExampleForumSettings>,
    ) -> Result<Vec<NewStream>, IntegrationError> {
        let settings = ctx.settings();
        if settings.channels.is_empty() {
            return Ok(vec![Target::Channels.stream()?]);
        }
        settings
            .channels
            .iter()
            .flat_map(|c| Target::for_channel(c, settings.replies))
            .map(|t| t.stream())
            .collect()
    }

    async fn process_stream(
        &self,
        stream: &Stream,
        ctx: &RunContext<ExampleForumSettings>,
    ) -> Result<StreamOutcome, IntegrationError> {
        let settings = ctx.settings();
        let token = ctx.credentials().secret("token");
        let client = ctx.client(HttpConfig::new(&settings.base_url))?;
        let pages = PageNumber::of(stream)?;
        let mut query = vec![
            ("page", pages.page().to_string()),
            ("per_page", settings.per_page.to_string()),
        ];
        if let Some(since) = ctx.window(stream).since {
            query.push(("since", since.to_rfc3339()));
        }
        let target = stream.data_as::<Target>()?;
        let path = match &target {
            Target::Channels => "/api/v1/channels".to_owned(),
            Target::Posts { channel } => format!("/api/v1/channels/{channel}/posts"),
            Target::Replies { channel } => format!("/api/v1/channels/{channel}/replies"),
        };
        let outcome = match target {
            Target::Channels => {
                let list: Page<Channel> =
                    client.get_json(&path, &query, token.as_ref()).await?.body;
                let next =
                    pages.next(list.next_page.is_some(), list.items.iter().map(|c| &c.id))?;
                let children = list
                    .items
                    .iter()
                    .flat_map(|c| Target::for_channel(&c.id, settings.replies))
                    .map(|t| t.stream())
                    .collect::<Result<Vec<_>, _>>()?;
                StreamOutcome::new().children(children).next_page_opt(next)
            }
            Target::Posts { channel } => {
                let list: Page<Post> = client.get_json(&path, &query, token.as_ref()).await?.body;
                let next = pages.next(list.next_page.is_some(), list.items.iter().map(|p| p.id))?;
                StreamOutcome::new()
                    .activities(list.items.into_iter().map(|p| post_activity(&channel, p)))
                    .oldest_activity_as_last_record()
                    .next_page_opt(next)
            }
            Target::Replies { channel } => {
                let list: Page<Reply> = client.get_json(&path, &query, token.as_ref()).await?.body;
                let next = pages.next(list.next_page.is_some(), list.items.iter().map(|r| r.id))?;
                StreamOutcome::new()
                    .activities(list.items.into_iter().map(|r| reply_activity(&channel, r)))
                    .oldest_activity_as_last_record()
                    .next_page_opt(next)
            }
        };
        Ok(outcome)
    }

    /// Lists are newest first: a check stops paging once a page reaches back before its window
    /// (the server's `since` filter already does; this spares a request on servers that ignore
    /// it).
    async fn is_processing_finished(
        &self,
        stream: &Stream,
        outcome: &StreamOutcome,
        ctx: &RunContext<ExampleForumSettings>,
    ) -> Result<bool, IntegrationError> {
        Ok(outcome
            .last_record_timestamp
            .is_some_and(|oldest| !ctx.window(stream).includes(oldest)))
    }
}

fn member(author: Author) -> Member {
    Member::new(author.id.to_string(), author.login).display_name(author.name)
}

fn post_activity(channel: &str, post: Post) -> Activity {
    Activity::new(
        format!("post:{}", post.id),
        "post",
        post.created_at,
        member(post.author),
    )
    .channel(channel)
    .title(post.title)
    .body(post.body)
    .url(post.url)
}

fn reply_activity(channel: &str, reply: Reply) -> Activity {
    Activity::new(
        format!("reply:{}", reply.id),
        "reply",
        reply.created_at,
        member(reply.author),
    )
    .parent(format!("post:{}", reply.post_id))
    .channel(channel)
    .body(reply.body)
    .url(reply.url)
}
