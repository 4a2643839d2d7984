//! **Reddit**: the posts of the configured subreddits and keyword searches, and their comment
//! trees, collapsed branches included.
//!
//! No published API description of Reddit is in `/work/shared/specs`: this follows Reddit's
//! public API documentation (https://www.reddit.com/dev/api, the OAuth2 wiki) as known; the
//! assumptions are written down in the fake (`fake.rs`).
//!
//! API: OAuth2 client credentials (an application's `client_id` and `client_secret`, token from
//! `token_url`, by default `https://www.reddit.com/api/v1/access_token`; the toolkit fetches it
//! once, shares it and refreshes it), requests to `base_url` (`https://oauth.reddit.com`) with
//! the descriptive `User-Agent` Reddit requires, `raw_json=1` so bodies come unescaped:
//! * `GET /r/{sub}/new?limit=100&after={fullname}` — a subreddit's posts, newest first;
//! * `GET /search?q=…&sort=new&type=link&limit=100&after=…` — a keyword search;
//! * `GET /comments/{id}?limit=500` — a post's comment tree, with collapsed branches as `more`;
//! * `GET /api/morechildren?api_type=json&link_id=t3_{id}&children=a,b,…` — up to 100 collapsed
//!   comments a request;
//! * `GET /r/{sub}/comments?limit=100&after=…` — a subreddit's newest comments (checks).
//!
//! Rate limits: `x-ratelimit-used`, `x-ratelimit-remaining` (a float, `"996.0"`) and
//! `x-ratelimit-reset` in seconds until the window resets — read by the toolkit as
//! [`ResetForm::SecondsFromNow`]; 100 requests a minute by default (`max_requests_per_minute`).
//!
//! Streams:
//! * `subreddit:{name}` — `/new`, paged by `after` fullname (a cursor that repeats is an error);
//!   each post is a `post` activity, and in an onboarding each commented post a thread;
//! * `search:{query}` — the same for a search; in a check, a new commented post a thread unless
//!   its subreddit is configured (its comments come with the subreddit's);
//! * `thread:{post}` (`thread:{post}:{comment}` for a "continue this thread") — the tree; every
//!   comment is a `comment` activity whose parent is the post or the comment it answers;
//!   collapsed ids become `more:{post}:{first id}` streams of at most 100 ids each;
//! * `comments:{name}` — checks only, in the subreddit's source: its newest comments down to the
//!   window, so a check reads new comments on old posts without reading every tree again.
//!
//! Onboarding reads everything; a check reads each listing down to its window. Members are keyed
//! by the account's fullname (`t2_…`), with the username and profile URL (listings carry no
//! avatar, and per-user requests are not made for one). Posts and comments of deleted accounts
//! (`[deleted]`, no `author_fullname`) are not activities; their replies are.

mod api;
#[cfg(feature = "fakes")]
pub mod fake;
mod settings;
mod threads;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tributary::http::{
    Auth, ClientCredentials, Cursor, HttpClient, HttpConfig, RequestRate, ResetForm,
};
use tributary::{
    Activity, IntegrationError, IntegrationService, Member, NewStream, RunContext, Secret, Stream,
    StreamOutcome, Window,
};

pub use api::{Comment, CommentThing, Listing, More, Post, PostThing};
pub use settings::{DEFAULT_BASE_URL, DEFAULT_TOKEN_URL, MAX_PER_PAGE, RedditSettings};
pub use threads::MORE_BATCH;

use threads::{Walked, parent_source_id};

pub const PLATFORM: &str = "reddit";
/// Where posts, comments and profiles are shown.
pub const SITE: &str = "https://www.reddit.com";

/// The Reddit integration.
#[derive(Debug, Default)]
pub struct RedditIntegration;

/// What a stream stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Target {
    Subreddit {
        name: String,
    },
    Search {
        query: String,
    },
    Comments {
        name: String,
    },
    Thread {
        post: String,
        channel: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    More {
        post: String,
        channel: String,
        ids: Vec<String>,
    },
}

impl Target {
    fn stream(&self) -> Result<NewStream, IntegrationError> {
        let identifier = match self {
            Self::Subreddit { name } => format!("subreddit:{name}"),
            Self::Search { query } => format!("search:{query}"),
            Self::Comments { name } => {
                return Ok(NewStream::with(format!("comments:{name}"), self)?
                    .source(format!("subreddit:{name}")));
            }
            Self::Thread {
                post,
                comment: None,
                ..
            } => format!("thread:{post}"),
            Self::Thread {
                post,
                comment: Some(comment),
                ..
            } => format!("thread:{post}:{comment}"),
            Self::More { post, ids, .. } => {
                format!("more:{post}:{}", ids.first().map_or("", String::as_str))
            }
        };
        NewStream::with(identifier, self)
    }
}

/// What one request needs.
struct Call<'a> {
    client: HttpClient,
    secret: Option<Secret>,
    settings: &'a RedditSettings,
    window: Window,
    onboarding: bool,
}

#[async_trait]
impl IntegrationService for RedditIntegration {
    type Settings = RedditSettings;

    fn platform(&self) -> &'static str {
        PLATFORM
    }

    async fn get_streams(
        &self,
        ctx: &RunContext<RedditSettings>,
    ) -> Result<Vec<NewStream>, IntegrationError> {
        let settings = ctx.settings();
        let mut targets: Vec<Target> = settings
            .subreddits
            .iter()
            .map(|name| Target::Subreddit { name: name.clone() })
            .collect();
        targets.extend(settings.searches.iter().map(|query| Target::Search {
            query: query.clone(),
        }));
        // a check reads a subreddit's new comments from its comment listing; a subreddit read
        // whole (onboarding, or new in the settings) gets them from its threads
        targets.extend(
            settings
                .subreddits
                .iter()
                .filter(|name| !ctx.window_of(&format!("subreddit:{name}")).is_everything())
                .map(|name| Target::Comments { name: name.clone() }),
        );
        targets.iter().map(Target::stream).collect()
    }

    async fn process_stream(
        &self,
        stream: &Stream,
        ctx: &RunContext<RedditSettings>,
    ) -> Result<StreamOutcome, IntegrationError> {
        let settings = ctx.settings();
        let client_id = ctx
            .credentials()
            .secret("client_id")
            .map(|id| id.expose().to_owned())
            .unwrap_or_default();
        let rate = std::num::NonZeroU32::new(settings.max_requests_per_minute).map(|requests| {
            RequestRate {
                requests,
                per: std::time::Duration::from_secs(60),
            }
        });
        let mut config = HttpConfig::new(&settings.base_url)
            .auth(Auth::ClientCredentials(ClientCredentials::new(
                &settings.token_url,
                client_id,
            )))
            .user_agent(&settings.user_agent)
            .reset_form(ResetForm::SecondsFromNow);
        if let Some(rate) = rate {
            config = config.rate(rate);
        }
        let call = Call {
            client: ctx.client(config)?,
            secret: ctx.credentials().secret("client_secret"),
            settings,
            window: ctx.window(stream),
            onboarding: ctx.is_onboarding(),
        };
        match stream.data_as::<Target>()? {
            Target::Subreddit { name } => {
                let path = format!("/r/{name}/new");
                call.posts(stream, &path, Vec::new(), false).await
            }
            Target::Search { query } => {
                let filter = vec![
                    ("q", query),
                    ("sort", "new".to_owned()),
                    ("type", "link".to_owned()),
                ];
                call.posts(stream, "/search", filter, true).await
            }
            Target::Comments { name } => call.comments(stream, &name).await,
            Target::Thread {
                post,
                channel,
                comment,
            } => call.thread(&post, &channel, comment).await,
            Target::More { post, channel, ids } => call.more(&post, &channel, &ids).await,
        }
    }

    /// Listings are newest first: a check stops once a page reaches back before its window.
    async fn is_processing_finished(
        &self,
        stream: &Stream,
        outcome: &StreamOutcome,
        ctx: &RunContext<RedditSettings>,
    ) -> Result<bool, IntegrationError> {
        Ok(outcome
            .last_record_timestamp
            .is_some_and(|oldest| !ctx.window(stream).includes(oldest)))
    }
}

impl Call<'_> {
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        mut query: Vec<(&str, String)>,
    ) -> Result<T, IntegrationError> {
        query.push(("raw_json", "1".to_owned()));
        Ok(self
            .client
            .get_json(path, &query, self.secret.as_ref())
            .await?
            .body)
    }

    /// One page of posts (a subreddit's `/new` or a search): the posts in the window, a thread
    /// for each commented post that needs one, the next page by `after`.
    async fn posts(
        &self,
        stream: &Stream,
        path: &str,
        mut query: Vec<(&'static str, String)>,
        search: bool,
    ) -> Result<StreamOutcome, IntegrationError> {
        let pages = Cursor::of(stream)?;
        query.push(("limit", self.settings.per_page.to_string()));
        if let Some(after) = pages.cursor() {
            query.push(("after", after.to_owned()));
        }
        let listing: Listing<PostThing> = self.get(path, query).await?;
        let next = pages.next(listing.data.after.as_deref())?;
        let mut outcome = StreamOutcome::new();
        for post in listing.data.children.iter().map(|t| &t.data) {
            if !self.window.includes(post.created_utc) {
                continue;
            }
            let configured = self
                .settings
                .subreddits
                .contains(&post.subreddit.to_ascii_lowercase());
            let thread = post.num_comments > 0
                && (self.onboarding || (search && !configured) || self.window.is_everything());
            if thread {
                outcome = outcome.child(
                    Target::Thread {
                        post: post.id.clone(),
                        channel: post.subreddit.clone(),
                        comment: None,
                    }
                    .stream()?,
                );
            }
            if let Some(activity) = post_activity(post) {
                outcome = outcome.activity(activity);
            }
        }
        if let Some(oldest) = listing.data.children.last() {
            outcome = outcome.last_record(json!(oldest.data.id), Some(oldest.data.created_utc));
        }
        Ok(outcome.next_page_opt(next))
    }

    /// One page of a subreddit's newest comments, in a check.
    async fn comments(
        &self,
        stream: &Stream,
        name: &str,
    ) -> Result<StreamOutcome, IntegrationError> {
        let pages = Cursor::of(stream)?;
        let mut query = vec![("limit", self.settings.per_page.to_string())];
        if let Some(after) = pages.cursor() {
            query.push(("after", after.to_owned()));
        }
        let listing: Listing<CommentThing> =
            self.get(&format!("/r/{name}/comments"), query).await?;
        let next = pages.next(listing.data.after.as_deref())?;
        let walked = Walked::of(&listing.data.children);
        let mut outcome = StreamOutcome::new().activities(
            walked
                .comments
                .iter()
                .filter(|c| self.window.includes(c.created_utc))
                .filter_map(|c| comment_activity(c, name)),
        );
        if let Some(oldest) = walked.comments.iter().map(|c| c.created_utc).min() {
            outcome = outcome.last_record(json!(null), Some(oldest));
        }
        Ok(outcome.next_page_opt(next))
    }

    /// A post's comment tree (or the part under `comment`): its comments, a `more` stream per
    /// batch of collapsed ids, a thread per "continue this thread".
    async fn thread(
        &self,
        post: &str,
        channel: &str,
        comment: Option<String>,
    ) -> Result<StreamOutcome, IntegrationError> {
        let mut query = vec![("limit", "500".to_owned())];
        if let Some(comment) = &comment {
            query.push(("comment", comment.clone()));
        }
        let (_, tree): api::CommentPage = self.get(&format!("/comments/{post}"), query).await?;
        self.comment_outcome(post, channel, &Walked::of(&tree.data.children))
    }

    /// A batch of collapsed comments.
    async fn more(
        &self,
        post: &str,
        channel: &str,
        ids: &[String],
    ) -> Result<StreamOutcome, IntegrationError> {
        let query = vec![
            ("api_type", "json".to_owned()),
            ("link_id", format!("t3_{post}")),
            ("children", ids.join(",")),
            ("limit_children", "false".to_owned()),
        ];
        let answer: api::MoreChildren = self.get("/api/morechildren", query).await?;
        if let Some(error) = answer.json.errors.first() {
            return Err(IntegrationError::fatal(format!(
                "GET /api/morechildren: Reddit answered an error: {error}"
            )));
        }
        let things = answer.json.data.map(|d| d.things).unwrap_or_default();
        // what was asked for is not asked for again
        let mut walked = Walked::of(&things);
        walked.collapsed.retain(|id| !ids.contains(id));
        self.comment_outcome(post, channel, &walked)
    }

    fn comment_outcome(
        &self,
        post: &str,
        channel: &str,
        walked: &Walked<'_>,
    ) -> Result<StreamOutcome, IntegrationError> {
        let mut outcome = StreamOutcome::new().activities(
            walked
                .comments
                .iter()
                .filter(|c| self.window.includes(c.created_utc))
                .filter_map(|c| comment_activity(c, channel)),
        );
        for ids in walked.batches() {
            outcome = outcome.child(
                Target::More {
                    post: post.to_owned(),
                    channel: channel.to_owned(),
                    ids,
                }
                .stream()?,
            );
        }
        for comment in &walked.continued {
            outcome = outcome.child(
                Target::Thread {
                    post: post.to_owned(),
                    channel: channel.to_owned(),
                    comment: Some(comment.clone()),
                }
                .stream()?,
            );
        }
        Ok(outcome.newest_activity_as_last_record())
    }
}

/// The author, unless the account was deleted.
fn member(author: &str, fullname: Option<&String>) -> Option<Member> {
    let id = fullname.filter(|f| !f.is_empty())?;
    Some(
        Member::new(id.clone(), author)
            .display_name(author)
            .url(format!("{SITE}/user/{author}"))
            .attributes(json!({ "fullname": id })),
    )
}

fn post_activity(post: &Post) -> Option<Activity> {
    let author = member(&post.author, post.author_fullname.as_ref())?;
    Some(
        Activity::new(
            format!("post:{}", post.id),
            "post",
            post.created_utc,
            author,
        )
        .channel(&post.subreddit)
        .title(&post.title)
        .body(post.selftext.as_ref().filter(|s| !s.is_empty()))
        .url(format!("{SITE}{}", post.permalink))
        .attributes(json!({
            "score": post.score,
            "num_comments": post.num_comments,
            "flair": post.link_flair_text,
            "link": post.url.as_ref().filter(|_| !post.is_self),
        })),
    )
}

fn comment_activity(comment: &Comment, channel: &str) -> Option<Activity> {
    let author = member(&comment.author, comment.author_fullname.as_ref())?;
    let post = comment.link_id.trim_start_matches("t3_");
    let url = comment.permalink.as_ref().map_or_else(
        || format!("{SITE}/comments/{post}/_/{}/", comment.id),
        |p| format!("{SITE}{p}"),
    );
    Some(
        Activity::new(
            format!("comment:{}", comment.id),
            "comment",
            comment.created_utc,
            author,
        )
        .parent(parent_source_id(&comment.parent_id))
        .channel(comment.subreddit.as_deref().unwrap_or(channel))
        .body(&comment.body)
        .url(url)
        .attributes(json!({ "score": comment.score, "post": format!("post:{post}") })),
    )
}
