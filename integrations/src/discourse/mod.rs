//! **Discourse**: a forum's categories (with their subcategories), every topic of each, every
//! post of every topic; members from the posts' authors.
//!
//! API (the forum's own URL; `Api-Key` and `Api-Username` headers, both optional for a public
//! forum):
//! * `GET /categories.json?include_subcategories=true` — the categories, subcategories inside;
//! * `GET /c/{slug}/{id}.json?page=N&no_subcategories=true` — a category's topics, page by page:
//!   the page number (0-based) goes up by one while the answer has a `more_topics_url`;
//! * `GET /t/{id}.json` — a topic, its first posts and `post_stream.stream`, the ids of all;
//! * `GET /t/{id}/posts.json?post_ids[]=…` — the other posts, `posts_per_request` ids at a time;
//! * `GET /posts.json?before=ID` — the forum's latest posts, newest first (checks).
//!
//! Streams: the root `categories` reads the category list. Onboarding: a `category:{id}` stream
//! per category (paged), a `topic:{id}` child per topic, and a `posts:{topic}:{first id}` child
//! per chunk of post ids the topic answer left out. A check: one `latest` child reading
//! `/posts.json` back to the check window (`before` paging) — no topic list is read again.
//!
//! Activities: `topic_created` (`topic:{id}`, from the topic's first post, titled) and
//! `post_created` (`post:{topic id}:{post number}`; Discourse links a reply by its post number,
//! so keying posts by their number in the topic links every reply to the post it answers,
//! `reply_to_post_number`, with no request more; the post's own id is an attribute). Small
//! actions and moderator actions ("closed this topic") are not activities. Members are keyed by
//! Discourse's user id.
//!
//! Rate limits are the toolkit's: 429 with `Retry-After` and Discourse's
//! `extras.wait_seconds` (its per-minute and per-day API limits); requests are paced to
//! `max_requests_per_minute` per credential.

mod activities;
mod api;
#[cfg(feature = "fakes")]
pub mod fake;
mod settings;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tributary::http::{
    Auth, Direction, HttpClient, HttpConfig, IdBoundary, PageNumber, RequestRate,
};
use tributary::{
    IntegrationError, IntegrationService, NewStream, RunContext, Secret, Stream, StreamOutcome,
};

pub use api::{
    CategoriesAnswer, Category, LatestPosts, Post, PostsAnswer, TopicAnswer, TopicListAnswer,
};
pub use settings::{DEFAULT_POSTS_PER_REQUEST, DiscourseSettings};

use activities::{Site, post_activity};

pub const PLATFORM: &str = "discourse";

/// The Discourse integration.
#[derive(Debug, Default)]
pub struct DiscourseIntegration;

/// What a stream stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Target {
    Categories,
    Category {
        id: u64,
        slug: String,
    },
    Topic {
        id: u64,
        channel: String,
    },
    Posts {
        topic_id: u64,
        title: String,
        channel: String,
        ids: Vec<u64>,
    },
    /// The categories read, by id (their slug): a post elsewhere is not the forum's part read.
    Latest {
        channels: Vec<(u64, String)>,
    },
}

impl Target {
    fn stream(&self) -> Result<NewStream, IntegrationError> {
        let identifier = match self {
            Self::Categories => "categories".to_owned(),
            Self::Category { id, .. } => format!("category:{id}"),
            Self::Topic { id, .. } => format!("topic:{id}"),
            Self::Posts { topic_id, ids, .. } => {
                format!(
                    "posts:{topic_id}:{}",
                    ids.first().copied().unwrap_or_default()
                )
            }
            Self::Latest { .. } => "latest".to_owned(),
        };
        NewStream::with(identifier, self)
    }
}

/// The client and credential of a run.
struct Api {
    client: HttpClient,
    key: Option<Secret>,
}

impl Api {
    fn of(ctx: &RunContext<DiscourseSettings>) -> Result<Self, IntegrationError> {
        let settings = ctx.settings();
        let credentials = ctx.credentials();
        let key = credentials.secret("api_key");
        let mut config = HttpConfig::new(&settings.base_url)
            .auth(Auth::Header("Api-Key".to_owned()))
            .header("Accept", "application/json");
        if let Some(username) = credentials.secret("api_username") {
            config = config.header("Api-Username", username.expose());
        }
        if let Some(requests) = NonZeroU32::new(settings.max_requests_per_minute) {
            config = config.rate(RequestRate {
                requests,
                per: Duration::from_secs(60),
            });
        }
        Ok(Self {
            client: ctx.client(config)?,
            key,
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, IntegrationError> {
        Ok(self
            .client
            .get_json(path, query, self.key.as_ref())
            .await?
            .body)
    }
}

#[async_trait]
impl IntegrationService for DiscourseIntegration {
    type Settings = DiscourseSettings;

    fn platform(&self) -> &'static str {
        PLATFORM
    }

    async fn get_streams(
        &self,
        _ctx: &RunContext<DiscourseSettings>,
    ) -> Result<Vec<NewStream>, IntegrationError> {
        Ok(vec![Target::Categories.stream()?])
    }

    async fn process_stream(
        &self,
        stream: &Stream,
        ctx: &RunContext<DiscourseSettings>,
    ) -> Result<StreamOutcome, IntegrationError> {
        let api = Api::of(ctx)?;
        let settings = ctx.settings();
        let site = Site::new(&settings.base_url);
        match stream.data_as::<Target>()? {
            Target::Categories => categories(&api, ctx).await,
            Target::Category { id, slug } => {
                let pages = PageNumber::of(stream)?;
                let query = [
                    // Discourse counts pages from 0
                    ("page", (pages.page() - 1).to_string()),
                    ("no_subcategories", "true".to_owned()),
                    ("per_page", settings.topics_per_page.to_string()),
                ];
                let list: TopicListAnswer =
                    api.get(&format!("/c/{slug}/{id}.json"), &query).await?;
                let list = list.topic_list;
                let next = pages.next(
                    list.more_topics_url.is_some(),
                    list.topics.iter().map(|t| t.id),
                )?;
                let topics = list
                    .topics
                    .iter()
                    .map(|t| {
                        Target::Topic {
                            id: t.id,
                            channel: slug.clone(),
                        }
                        .stream()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(StreamOutcome::new().children(topics).next_page_opt(next))
            }
            Target::Topic { id, channel } => {
                let topic: TopicAnswer = api.get(&format!("/t/{id}.json"), &[]).await?;
                let window = ctx.window(stream);
                let have: Vec<u64> = topic.post_stream.posts.iter().map(|p| p.id).collect();
                let rest: Vec<u64> = topic
                    .post_stream
                    .stream
                    .iter()
                    .copied()
                    .filter(|id| !have.contains(id))
                    .collect();
                let chunks = rest
                    .chunks(settings.posts_per_request.max(1) as usize)
                    .map(|ids| {
                        Target::Posts {
                            topic_id: id,
                            title: topic.title.clone(),
                            channel: channel.clone(),
                            ids: ids.to_vec(),
                        }
                        .stream()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let activities = topic
                    .post_stream
                    .posts
                    .iter()
                    .filter(|p| window.includes(p.created_at))
                    .filter_map(|p| post_activity(p, &topic.title, &channel, &site));
                Ok(StreamOutcome::new()
                    .activities(activities)
                    .children(chunks)
                    .newest_activity_as_last_record())
            }
            Target::Posts {
                topic_id,
                title,
                channel,
                ids,
            } => {
                let query: Vec<(&str, String)> = ids
                    .iter()
                    .map(|id| ("post_ids[]", id.to_string()))
                    .collect();
                let posts: PostsAnswer = api
                    .get(&format!("/t/{topic_id}/posts.json"), &query)
                    .await?;
                let window = ctx.window(stream);
                let activities = posts
                    .post_stream
                    .posts
                    .iter()
                    .filter(|p| window.includes(p.created_at))
                    .filter_map(|p| post_activity(p, &title, &channel, &site));
                Ok(StreamOutcome::new()
                    .activities(activities)
                    .newest_activity_as_last_record())
            }
            Target::Latest { channels } => {
                let channels: BTreeMap<u64, String> = channels.into_iter().collect();
                let boundary = IdBoundary::of(stream, Direction::Before, None)?;
                let mut query = Vec::new();
                if let Some(before) = boundary.id() {
                    query.push(("before", before.to_string()));
                }
                let page: LatestPosts = api.get("/posts.json", &query).await?;
                let posts = page.latest_posts;
                let next = boundary.next(!posts.is_empty(), posts.iter().map(|p| p.id))?;
                let window = ctx.window(stream);
                let activities = posts
                    .iter()
                    .filter(|p| window.includes(p.created_at))
                    .filter_map(|p| {
                        let channel = channels.get(&p.category_id?)?;
                        let title = p.topic_title.as_deref().unwrap_or_default();
                        post_activity(p, title, channel, &site)
                    });
                let mut outcome = StreamOutcome::new().activities(activities);
                // the page's oldest post, read or not: the check stops once it is before the window
                if let Some(oldest) = posts.iter().min_by_key(|p| p.id) {
                    outcome = outcome.last_record(json!(oldest.id), Some(oldest.created_at));
                }
                Ok(outcome.next_page_opt(next))
            }
        }
    }

    /// `/posts.json` is newest first: a check stops once a page reaches back before its window.
    async fn is_processing_finished(
        &self,
        stream: &Stream,
        outcome: &StreamOutcome,
        ctx: &RunContext<DiscourseSettings>,
    ) -> Result<bool, IntegrationError> {
        if !matches!(stream.data_as::<Target>()?, Target::Latest { .. }) {
            return Ok(false);
        }
        Ok(outcome
            .last_record_timestamp
            .is_some_and(|oldest| !ctx.window(stream).includes(oldest)))
    }
}

/// The category list: onboarding reads each configured category (subcategories included);
/// a check reads the latest posts of those categories.
async fn categories(
    api: &Api,
    ctx: &RunContext<DiscourseSettings>,
) -> Result<StreamOutcome, IntegrationError> {
    let query = [("include_subcategories", "true".to_owned())];
    let answer: CategoriesAnswer = api.get("/categories.json", &query).await.map_err(|e| {
        if api.key.is_none() && e.to_string().contains("403") {
            IntegrationError::fatal(format!(
                "{e} (this forum refuses anonymous readers: give an `api_key` and an \
                 `api_username`)"
            ))
        } else {
            e
        }
    })?;
    let wanted = &ctx.settings().categories;
    let mut read = Vec::new();
    collect(&answer.category_list.categories, wanted, false, &mut read);
    if ctx.is_onboarding() {
        let streams = read
            .iter()
            .map(|c| {
                Target::Category {
                    id: c.id,
                    slug: c.slug.clone(),
                }
                .stream()
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(StreamOutcome::new().children(streams));
    }
    let channels = read.iter().map(|c| (c.id, c.slug.clone())).collect();
    Ok(StreamOutcome::new().child(Target::Latest { channels }.stream()?))
}

/// The categories to read, depth first: every one when `wanted` is empty, else those named and
/// everything under them.
fn collect<'a>(
    categories: &'a [Category],
    wanted: &[String],
    inside_wanted: bool,
    out: &mut Vec<&'a Category>,
) {
    for category in categories {
        let take = wanted.is_empty() || inside_wanted || wanted.contains(&category.slug);
        if take {
            out.push(category);
        }
        if let Some(subcategories) = &category.subcategory_list {
            collect(subcategories, wanted, take, out);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn category(id: u64, slug: &str, subs: Vec<Category>) -> Category {
        Category {
            id,
            name: slug.to_uppercase(),
            slug: slug.to_owned(),
            read_restricted: false,
            subcategory_list: Some(subs),
        }
    }

    #[test]
    fn categories_are_read_with_their_subcategories() {
        let tree = vec![
            category(
                1,
                "general",
                vec![category(3, "help", vec![category(5, "deep", vec![])])],
            ),
            category(2, "dev", vec![]),
        ];
        let ids = |wanted: &[&str]| {
            let wanted: Vec<String> = wanted.iter().map(|s| (*s).to_owned()).collect();
            let mut out = Vec::new();
            collect(&tree, &wanted, false, &mut out);
            out.iter().map(|c| c.id).collect::<Vec<_>>()
        };
        assert_eq!(ids(&[]), [1, 3, 5, 2]);
        assert_eq!(ids(&["general"]), [1, 3, 5]);
        assert_eq!(ids(&["help", "dev"]), [3, 5, 2]);
        assert!(ids(&["nothing"]).is_empty());
    }
}
