//! **Dev.to / Forem**: the articles of the configured organizations and users, and the comment
//! threads of each article (nested replies flattened into activities with parents).
//!
//! API (Forem v1, `Accept: application/vnd.forem.api-v1+json`, optional `api-key` header; base
//! URL configurable for a self-hosted Forem):
//! `GET /articles?username=U&page=N&per_page=1000` (a user's articles, newest first),
//! `GET /organizations/{U}/articles?page=N&per_page=1000`, and `GET /comments?a_id=ID` (an
//! article's whole comment tree in one answer when no `page` is given).
//!
//! Streams:
//! * `articles:user:{username}` and `articles:org:{username}` — the roots, paginated by page
//!   number (the largest page Forem accepts; a page that repeats the previous one is an error);
//!   each article is an `article` activity and, when it has comments, a child stream:
//! * `comments:{article_id}` — the article's comment tree in one request; every comment is a
//!   `comment` activity whose parent is the article (`article:{id}`) or the comment it answers
//!   (`comment:{id_code}`). An article found through both its author and its organization is
//!   one stream: the run stores a stream identifier once, so nothing is fetched twice.
//!
//! Onboarding reads everything. A check (since the last successful run, with a small overlap)
//! still lists the articles — Forem only tells which old articles have new comments through
//! `last_comment_at` in that list, and a list page holds 1,000 articles — but writes only the
//! articles published since, and fetches comment trees only of articles commented since.
//!
//! Members are keyed by Forem's `user_id` (usernames can change), with their username, name,
//! profile URL and their GitHub / Twitter usernames and website as attributes.

mod api;
#[cfg(feature = "fakes")]
pub mod fake;
mod settings;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tributary::http::{Auth, HttpClient, HttpConfig, PageNumber};
use tributary::{
    Activity, IntegrationError, IntegrationService, Member, NewStream, RunContext, Secret, Stream,
    StreamOutcome, Window,
};

pub use api::{Article, Comment, Organization, User};
pub use settings::{DEFAULT_BASE_URL, DevtoSettings, MAX_PER_PAGE};

pub const PLATFORM: &str = "devto";

/// The Dev.to / Forem integration.
#[derive(Debug, Default)]
pub struct DevtoIntegration;

impl DevtoIntegration {
    pub fn new() -> Self {
        Self
    }
}

/// What a stream stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Target {
    UserArticles {
        username: String,
    },
    OrgArticles {
        username: String,
    },
    Comments {
        article_id: u64,
        /// The article's channel, given to its comments.
        channel: String,
    },
}

impl Target {
    fn stream(&self) -> Result<NewStream, IntegrationError> {
        let identifier = match self {
            Self::UserArticles { username } => format!("articles:user:{username}"),
            Self::OrgArticles { username } => format!("articles:org:{username}"),
            Self::Comments { article_id, .. } => format!("comments:{article_id}"),
        };
        NewStream::with(identifier, self)
    }
}

#[async_trait]
impl IntegrationService for DevtoIntegration {
    type Settings = DevtoSettings;

    fn platform(&self) -> &'static str {
        PLATFORM
    }

    async fn get_streams(
        &self,
        ctx: &RunContext<DevtoSettings>,
    ) -> Result<Vec<NewStream>, IntegrationError> {
        let settings = ctx.settings();
        let orgs = settings.organizations.iter().map(|u| Target::OrgArticles {
            username: u.clone(),
        });
        let users = settings.users.iter().map(|u| Target::UserArticles {
            username: u.clone(),
        });
        orgs.chain(users).map(|t| t.stream()).collect()
    }

    async fn process_stream(
        &self,
        stream: &Stream,
        ctx: &RunContext<DevtoSettings>,
    ) -> Result<StreamOutcome, IntegrationError> {
        let settings = ctx.settings();
        let client = ctx.client(
            HttpConfig::new(&settings.base_url)
                .auth(Auth::Header("api-key".to_owned()))
                .header("Accept", "application/vnd.forem.api-v1+json")
                .requests_per_second(settings.max_requests_per_second),
        )?;
        let key = ctx.credentials().secret("api_key");
        let site = site_url(&settings.base_url);
        let window = ctx.window(stream);
        match stream.data_as::<Target>()? {
            Target::UserArticles { username } => {
                let query = [("username", username)];
                articles(
                    &client,
                    key.as_ref(),
                    stream,
                    "/articles",
                    &query,
                    settings,
                    &site,
                    window,
                )
                .await
            }
            Target::OrgArticles { username } => {
                let path = format!("/organizations/{username}/articles");
                articles(
                    &client,
                    key.as_ref(),
                    stream,
                    &path,
                    &[],
                    settings,
                    &site,
                    window,
                )
                .await
            }
            Target::Comments {
                article_id,
                channel,
            } => {
                let query = [("a_id", article_id.to_string())];
                let tree: Vec<Comment> = client
                    .get_json("/comments", &query, key.as_ref())
                    .await?
                    .body;
                let mut activities = Vec::new();
                let parent = format!("article:{article_id}");
                flatten(&tree, &parent, 0, &mut |comment, parent, depth| {
                    if let Some(user) = &comment.user
                        && window.includes(comment.created_at)
                    {
                        activities.push(comment_activity(
                            comment, user, parent, depth, article_id, &channel, &site,
                        ));
                    }
                });
                Ok(StreamOutcome::new()
                    .activities(activities)
                    .newest_activity_as_last_record())
            }
        }
    }
}

/// One page of a user's or an organization's articles: the articles in the window, a comments
/// stream for each article commented in the window, and the next page while pages are full.
#[allow(clippy::too_many_arguments)]
async fn articles(
    client: &HttpClient,
    key: Option<&Secret>,
    stream: &Stream,
    path: &str,
    filter: &[(&str, String)],
    settings: &DevtoSettings,
    site: &str,
    window: Window,
) -> Result<StreamOutcome, IntegrationError> {
    let pages = PageNumber::of(stream)?;
    let mut query = filter.to_vec();
    query.push(("page", pages.page().to_string()));
    query.push(("per_page", settings.per_page.to_string()));
    let list: Vec<Article> = client.get_json(path, &query, key).await?.body;
    let full = list.len() >= settings.per_page as usize;
    let next = pages.next(full, list.iter().map(|a| a.id))?;
    let mut outcome = StreamOutcome::new();
    for article in &list {
        let channel = channel_of(article);
        let commented = article.comments_count > 0
            && window.includes(article.last_comment_at.unwrap_or(article.published_at));
        if commented {
            outcome = outcome.child(
                Target::Comments {
                    article_id: article.id,
                    channel: channel.clone(),
                }
                .stream()?,
            );
        }
        if window.includes(article.published_at) {
            outcome = outcome.activity(article_activity(article, &channel, site));
        }
    }
    if let Some(oldest) = list.last() {
        outcome = outcome.last_record(json!(oldest.id), Some(oldest.published_at));
    }
    Ok(outcome.next_page_opt(next))
}

/// Walks a comment tree depth first, calling `visit(comment, parent source id, depth)`.
fn flatten(
    comments: &[Comment],
    parent: &str,
    depth: u32,
    visit: &mut impl FnMut(&Comment, &str, u32),
) {
    for comment in comments {
        visit(comment, parent, depth);
        let id = format!("comment:{}", comment.id_code);
        flatten(&comment.children, &id, depth + 1, visit);
    }
}

/// `https://dev.to/api` → `https://dev.to`: where profiles and comments live.
fn site_url(base_url: &str) -> String {
    base_url
        .trim_end_matches('/')
        .trim_end_matches("/api")
        .to_owned()
}

/// Where an article happened: its organization, else its author.
fn channel_of(article: &Article) -> String {
    article
        .organization
        .as_ref()
        .map_or_else(|| article.user.username.clone(), |o| o.username.clone())
}

fn member(user: &User, site: &str) -> Member {
    Member::new(user.user_id.to_string(), user.username.clone())
        .url(format!("{site}/{}", user.username))
        .attributes(json!({
            "github_username": user.github_username,
            "twitter_username": user.twitter_username,
            "website_url": user.website_url,
            "profile_image": user.profile_image,
        }))
        .display_name(user.name.as_ref().filter(|n| !n.is_empty()))
}

fn article_activity(article: &Article, channel: &str, site: &str) -> Activity {
    Activity::new(
        format!("article:{}", article.id),
        "article",
        article.published_at,
        member(&article.user, site),
    )
    .channel(channel)
    .title(article.title.clone())
    .url(article.url.clone())
    .attributes(json!({
        "tags": article.tag_list,
        "comments_count": article.comments_count,
        "public_reactions_count": article.public_reactions_count,
        "reading_time_minutes": article.reading_time_minutes,
        "organization": article.organization.as_ref().map(|o| &o.username),
    }))
    .body(&article.description)
}

fn comment_activity(
    comment: &Comment,
    user: &User,
    parent: &str,
    depth: u32,
    article_id: u64,
    channel: &str,
    site: &str,
) -> Activity {
    Activity::new(
        format!("comment:{}", comment.id_code),
        "comment",
        comment.created_at,
        member(user, site),
    )
    .parent(parent)
    .channel(channel)
    .url(format!(
        "{site}/{}/comment/{}",
        user.username, comment.id_code
    ))
    .attributes(json!({ "article_id": article_id, "depth": depth }))
    .body(&comment.body_html)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::DateTime;

    fn user(id: u64) -> User {
        User {
            user_id: id,
            username: format!("user{id}"),
            name: Some(format!("User {id}")),
            twitter_username: None,
            github_username: Some(format!("gh{id}")),
            website_url: None,
            profile_image: None,
        }
    }

    fn comment(id: &str, children: Vec<Comment>) -> Comment {
        Comment {
            id_code: id.into(),
            created_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            body_html: Some("<p>hi</p>".into()),
            user: Some(user(1)),
            children,
        }
    }

    #[test]
    fn nested_replies_are_flattened_with_their_parents() {
        let tree = vec![
            comment("a", vec![comment("b", vec![comment("c", vec![])])]),
            comment("d", vec![]),
        ];
        let mut seen = Vec::new();
        flatten(&tree, "article:7", 0, &mut |c, parent, depth| {
            seen.push((c.id_code.clone(), parent.to_owned(), depth));
        });
        assert_eq!(
            seen,
            vec![
                ("a".into(), "article:7".into(), 0),
                ("b".into(), "comment:a".into(), 1),
                ("c".into(), "comment:b".into(), 2),
                ("d".into(), "article:7".into(), 0),
            ]
        );
        let activity = comment_activity(
            &tree[0].children[0],
            &user(1),
            "comment:a",
            1,
            7,
            "forem",
            "https://dev.to",
        );
        assert_eq!(activity.source_id, "comment:b");
        assert_eq!(
            activity.url.as_deref(),
            Some("https://dev.to/user1/comment/b")
        );
        assert_eq!(activity.member.source_id, "1");
        assert_eq!(activity.member.attributes["github_username"], "gh1");
    }

    #[test]
    fn the_site_is_the_base_url_without_api() {
        assert_eq!(site_url("https://dev.to/api"), "https://dev.to");
        assert_eq!(
            site_url("https://forem.example.com/api/"),
            "https://forem.example.com"
        );
        assert_eq!(
            site_url("http://127.0.0.1:9/other"),
            "http://127.0.0.1:9/other"
        );
    }
}
