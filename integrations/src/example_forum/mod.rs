//! The example integration: **Example Forum**, a small forum platform whose server ships with
//! Tributary (see [`server`]), so the demo and the tests exercise the whole path without the
//! internet.
//!
//! API (`/api/v1`, bearer token, 100 items a page at most, rate-limit headers on every answer):
//! `GET /channels`, `GET /channels/{id}/posts`, `GET /channels/{id}/replies`, each with `page`,
//! `per_page` and, for posts and replies, `since` (RFC 3339). Lists are newest first.
//!
//! Streams: `channels` (the root, when no channel is configured) → `posts:{channel}` and
//! `replies:{channel}`, each paginated. Onboarding reads everything; a check reads what was
//! created since the last successful run started.

mod api;
pub mod server;
mod settings;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tributary::http::{HttpClient, HttpClients, HttpConfig};
use tributary::{
    Activity, CheckSchedule, Credentials, IntegrationError, IntegrationService, Member, NewStream,
    RunContext, ServiceConfig, SettingsError, Stream, StreamOutcome,
};

pub use settings::ExampleForumSettings;

pub const PLATFORM: &str = "example-forum";

/// The Example Forum integration. It keeps its HTTP clients (and so each token's pacing) for the
/// life of the process.
#[derive(Debug)]
pub struct ExampleForumIntegration {
    clients: HttpClients,
    max_inline_wait: Duration,
}

impl Default for ExampleForumIntegration {
    fn default() -> Self {
        Self {
            clients: HttpClients::new(),
            max_inline_wait: Duration::from_secs(5),
        }
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
            Self::Channels => "channels".to_owned(),
            Self::Posts { channel } => format!("posts:{channel}"),
            Self::Replies { channel } => format!("replies:{channel}"),
        };
        NewStream::with(identifier, self)
    }

    fn for_channel(channel: &str) -> [Self; 2] {
        [
            Self::Posts {
                channel: channel.to_owned(),
            },
            Self::Replies {
                channel: channel.to_owned(),
            },
        ]
    }
}

impl ExampleForumIntegration {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rate-limit waits up to this long are slept inline; longer ones defer the run (5 s).
    pub fn max_inline_wait(mut self, wait: Duration) -> Self {
        self.max_inline_wait = wait;
        self
    }

    fn client(&self, settings: &ExampleForumSettings) -> Result<HttpClient, IntegrationError> {
        self.clients
            .get(HttpConfig::new(settings.base_url.clone()).max_inline_wait(self.max_inline_wait))
    }
}

#[async_trait]
impl IntegrationService for ExampleForumIntegration {
    fn platform(&self) -> &'static str {
        PLATFORM
    }

    fn config(&self) -> ServiceConfig {
        ServiceConfig {
            check_schedule: CheckSchedule::EveryTick,
            stream_concurrency: 4,
            ..ServiceConfig::default()
        }
    }

    fn validate_settings(
        &self,
        settings: &Value,
        credentials: &Credentials,
    ) -> Result<Value, SettingsError> {
        let settings = ExampleForumSettings::validate(settings, credentials)?;
        serde_json::to_value(settings).map_err(|e| SettingsError::from_serde(&e))
    }

    async fn get_streams(&self, ctx: &RunContext) -> Result<Vec<NewStream>, IntegrationError> {
        let settings: ExampleForumSettings = ctx.settings_as()?;
        if settings.channels.is_empty() {
            return Ok(vec![Target::Channels.stream()?]);
        }
        settings
            .channels
            .iter()
            .flat_map(|c| Target::for_channel(c))
            .map(|t| t.stream())
            .collect()
    }

    async fn process_stream(
        &self,
        stream: &Stream,
        ctx: &RunContext,
    ) -> Result<StreamOutcome, IntegrationError> {
        let settings: ExampleForumSettings = ctx.settings_as()?;
        let token = ctx
            .credentials()
            .secret("token")
            .ok_or_else(|| IntegrationError::fatal("the integration has no `token` credential"))?;
        let client = self.client(&settings)?;
        let page: u32 = stream.page_as()?.unwrap_or(1);
        let since = if ctx.is_onboarding() {
            None
        } else {
            ctx.last_processed_at()
        };
        let mut query = vec![
            ("page", page.to_string()),
            ("per_page", settings.per_page.to_string()),
        ];
        if let Some(since) = since {
            query.push(("since", since.to_rfc3339()));
        }
        let outcome = match stream.data_as::<Target>()? {
            Target::Channels => {
                let list: api::Page<api::Channel> = client
                    .get_json("/api/v1/channels", &query, Some(&token))
                    .await?
                    .body;
                let children = list
                    .items
                    .iter()
                    .flat_map(|c| Target::for_channel(&c.id))
                    .map(|t| t.stream())
                    .collect::<Result<Vec<_>, _>>()?;
                StreamOutcome::new()
                    .children(children)
                    .with_next(list.next_page)
            }
            Target::Posts { channel } => {
                let path = format!("/api/v1/channels/{channel}/posts");
                let list: api::Page<api::Post> =
                    client.get_json(&path, &query, Some(&token)).await?.body;
                let last = list.items.last().map(|p| (json!(p.id), p.created_at));
                StreamOutcome::new()
                    .activities(list.items.into_iter().map(|p| post_activity(&channel, p)))
                    .with_last(last)
                    .with_next(list.next_page)
            }
            Target::Replies { channel } => {
                let path = format!("/api/v1/channels/{channel}/replies");
                let list: api::Page<api::Reply> =
                    client.get_json(&path, &query, Some(&token)).await?.body;
                let last = list.items.last().map(|r| (json!(r.id), r.created_at));
                StreamOutcome::new()
                    .activities(list.items.into_iter().map(|r| reply_activity(&channel, r)))
                    .with_last(last)
                    .with_next(list.next_page)
            }
        };
        Ok(outcome)
    }

    /// Lists are newest first: a check stops paging once it reaches records older than the last
    /// run (the server's `since` filter already does; this spares a request on servers that
    /// ignore it).
    async fn is_processing_finished(
        &self,
        _stream: &Stream,
        outcome: &StreamOutcome,
        ctx: &RunContext,
    ) -> Result<bool, IntegrationError> {
        Ok(
            match (
                ctx.is_onboarding(),
                ctx.last_processed_at(),
                outcome.last_record_timestamp,
            ) {
                (false, Some(since), Some(last)) => last < since,
                _ => false,
            },
        )
    }
}

trait OutcomeExt {
    fn with_next(self, next_page: Option<u32>) -> Self;
    fn with_last(self, last: Option<(Value, DateTime<Utc>)>) -> Self;
}

impl OutcomeExt for StreamOutcome {
    fn with_next(self, next_page: Option<u32>) -> Self {
        match next_page {
            Some(page) => self.next_page(json!(page)),
            None => self,
        }
    }

    fn with_last(self, last: Option<(Value, DateTime<Utc>)>) -> Self {
        match last {
            Some((record, at)) => self.last_record(record, Some(at)),
            None => self,
        }
    }
}

fn member(author: api::Author) -> Member {
    let mut member = Member::new(author.id.to_string(), author.login);
    if let Some(name) = author.name {
        member = member.display_name(name);
    }
    member
}

fn post_activity(channel: &str, post: api::Post) -> Activity {
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

fn reply_activity(channel: &str, reply: api::Reply) -> Activity {
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
