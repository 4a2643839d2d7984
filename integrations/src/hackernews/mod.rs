//! **Hacker News**: the stories and comments that mention the configured keywords or URLs, the
//! whole discussion of every such story, and the profiles of their authors.
//!
//! APIs (both public: no credentials; both base URLs configurable):
//! * HN Search by Algolia, `https://hn.algolia.com/api/v1`:
//!   `GET /search_by_date?query=Q&tags=(story,comment)&hitsPerPage=1000&numericFilters=…`
//!   (newest first). A hit carries the item's data (title, url, text, points, comment count,
//!   story, parent), so items are never fetched one by one from the official API.
//! * The official API (Firebase), `https://hacker-news.firebaseio.com/v0`:
//!   `GET /user/{username}.json` (`null` for an unknown user).
//!
//! Streams:
//! * `search:keyword:{keyword}` and `search:url:{url}` — the roots: one Algolia query over stories
//!   and comments. A URL is searched as a plain query too: Algolia then matches every word of it
//!   in a story's `url` and in the text of stories and comments (where HN escapes the `/` of
//!   links, which a phrase query or `restrictSearchableAttributes=url` would miss), in one
//!   request instead of two. Each hit is a `story` or `comment` activity (`item:{id}`: stories
//!   and comments share one id space); each story with comments opens a child stream:
//! * `thread:{story_id}` — `tags=comment,story_{id}`: every comment of the discussion, with its
//!   parent (`item:{parent_id}`). A story found by two searches is one stream (a run stores an
//!   identifier once), so its thread is read once.
//! * `user:{username}` — the author's profile (`joined_at`, karma, about), once per run per
//!   author. The activity already carries its member (username, profile URL), so nothing waits
//!   for this stream, and an unknown user (`null`) leaves that member as it is.
//!
//! Pages are time windows, not page numbers: Algolia serves at most 1,000 hits of a query. The
//! next page adds `created_at_i<=T`, T the oldest `created_at_i` of the page (`<=`: the items of
//! T's second are read again, never lost; reading twice writes the same rows). A page that does
//! not reach below T (an Algolia that ignores the filter) ends the stream with an error. There
//! is more while a page is full and `nbHits` counts more (`nbPages` cannot say: Algolia caps it
//! at the 1,000-hit limit, so it reads 1 at 1,000 hits a page). More than `hits_per_page` items
//! in one second cannot be paged by time: with 1,000 a page that does not happen; with tiny
//! pages it ends the stream with the same error rather than losing items.
//!
//! Onboarding reads everything. A check reads from S, the last successful run's start minus 10
//! minutes: the roots search from S minus 14 days — HN takes no new comments on items older than
//! two weeks, so that covers every story whose discussion may have grown — and write the hits
//! newer than S; every story of that window with comments has its thread read from S on.
//!
//! Members are keyed by HN username (the stable id, case kept). An activity's channel is the
//! first configured term its own text mentions (keywords, then URLs, in the settings' order),
//! else the term whose search found it, or for a thread's comment its story's channel: an item
//! found by several searches gets the same channel from each (see [`channel`]).

mod api;
mod channel;
#[cfg(feature = "fakes")]
pub mod fake;
mod settings;

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tributary::http::{Direction, HttpClient, HttpConfig, IdBoundary};
use tributary::{
    Activity, IntegrationError, IntegrationService, Member, NewStream, RunContext, ServiceConfig,
    Stream, StreamOutcome, Window,
};

pub use api::{Hit, SearchResponse, User};
use channel::channel_of;
pub use settings::{
    DEFAULT_ALGOLIA_BASE_URL, DEFAULT_FIREBASE_BASE_URL, HackerNewsSettings, MAX_HITS_PER_PAGE,
};

pub const PLATFORM: &str = "hackernews";

/// Where items and profiles are shown.
const SITE: &str = "https://news.ycombinator.com";

/// HN takes no replies to items older than this: a story older than this before a check's start
/// has no comment newer than it.
const REPLY_WINDOW_SECS: u64 = 14 * 24 * 3600;

/// The Hacker News integration.
#[derive(Debug, Default)]
pub struct HackerNewsIntegration;

impl HackerNewsIntegration {
    pub fn new() -> Self {
        Self
    }

    /// One page (time window) of an Algolia search: the activities newer than the run's window,
    /// a thread stream for each story with comments (when `threads`), a user stream for each
    /// author, and the next window while there is more.
    async fn search(
        &self,
        stream: &Stream,
        client: &HttpClient,
        settings: &HackerNewsSettings,
        search: Search<'_>,
    ) -> Result<StreamOutcome, IntegrationError> {
        let boundary = IdBoundary::of(stream, Direction::Before, None)?;
        let mut query = search.query;
        query.push(("hitsPerPage", settings.hits_per_page.to_string()));
        if let Some(filters) = numeric_filters(search.from, boundary.id()) {
            query.push(("numericFilters", filters));
        }
        let page: SearchResponse = client.get_json("/search_by_date", &query, None).await?.body;
        let next = if has_more(&page, settings.hits_per_page) {
            boundary.next(true, page.hits.iter().map(|h| h.created_at_i))?
        } else {
            None
        };
        let mut outcome = StreamOutcome::new();
        let mut children = Vec::new();
        let mut authors = BTreeSet::new();
        let terms: Vec<&str> = settings
            .keywords
            .iter()
            .chain(&settings.urls)
            .map(String::as_str)
            .collect();
        for hit in &page.hits {
            let channel = channel_of(hit, &terms, search.channel);
            if search.threads && !hit.is_comment() && hit.num_comments.unwrap_or(0) > 0 {
                let thread = Target::Thread {
                    story_id: hit.object_id,
                    channel: channel.clone(),
                };
                children.push(thread.stream()?);
            }
            if !includes(search.window, hit.created_at_i) {
                continue;
            }
            if let Some(activity) = activity(hit, &channel)? {
                authors.insert(activity.member.source_id.clone());
                outcome = outcome.activity(activity);
            }
        }
        for username in authors.into_iter().filter(|a| is_username(a)) {
            children.push(Target::User { username }.stream()?);
        }
        outcome = outcome.children(children);
        if let Some(oldest) = page.hits.iter().min_by_key(|h| h.created_at_i) {
            outcome = outcome.last_record(
                json!(item_source_id(oldest.object_id)),
                timestamp(oldest.created_at_i),
            );
        }
        Ok(outcome.next_page_opt(next))
    }
}

/// One search: its own query pairs, the lower bound of its window, and what to do with the hits.
struct Search<'a> {
    query: Vec<(&'static str, String)>,
    /// `created_at_i>from`, if any.
    from: Option<u64>,
    window: Window,
    channel: &'a str,
    /// Whether stories open thread streams (the roots do; threads do not).
    threads: bool,
}

/// What a search looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Term {
    Keyword,
    Url,
}

/// What a stream stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Target {
    Search {
        term: Term,
        value: String,
    },
    Thread {
        story_id: u64,
        /// The story's channel, given to its comments that mention no term.
        channel: String,
    },
    User {
        username: String,
    },
}

impl Target {
    fn stream(&self) -> Result<NewStream, IntegrationError> {
        let identifier = match self {
            Self::Search {
                term: Term::Keyword,
                value,
            } => format!("search:keyword:{value}"),
            Self::Search {
                term: Term::Url,
                value,
            } => format!("search:url:{value}"),
            Self::Thread { story_id, .. } => format!("thread:{story_id}"),
            Self::User { username } => format!("user:{username}"),
        };
        NewStream::with(identifier, self)
    }
}

/// Whether an item created at `created_at_i` (Unix seconds) is in the window.
fn includes(window: Window, created_at_i: u64) -> bool {
    timestamp(created_at_i).is_some_and(|at| window.includes(at))
}

/// Where a root search starts: every story that may have been commented within the window.
fn search_from(window: Window) -> Option<u64> {
    window.since_unix().map(|since| {
        u64::try_from(since)
            .unwrap_or(0)
            .saturating_sub(REPLY_WINDOW_SECS)
    })
}

#[async_trait]
impl IntegrationService for HackerNewsIntegration {
    type Settings = HackerNewsSettings;

    fn platform(&self) -> &'static str {
        PLATFORM
    }

    fn config(&self) -> ServiceConfig {
        ServiceConfig {
            stream_concurrency: 6,
            ..ServiceConfig::default()
        }
    }

    async fn get_streams(
        &self,
        ctx: &RunContext<HackerNewsSettings>,
    ) -> Result<Vec<NewStream>, IntegrationError> {
        let settings = ctx.settings();
        let keywords = settings.keywords.iter().map(|k| Target::Search {
            term: Term::Keyword,
            value: k.clone(),
        });
        let urls = settings.urls.iter().map(|u| Target::Search {
            term: Term::Url,
            value: u.clone(),
        });
        keywords.chain(urls).map(|t| t.stream()).collect()
    }

    async fn process_stream(
        &self,
        stream: &Stream,
        ctx: &RunContext<HackerNewsSettings>,
    ) -> Result<StreamOutcome, IntegrationError> {
        let settings = ctx.settings();
        // each of the two APIs is paced on its own
        let client = |base_url: &str| {
            ctx.client(
                HttpConfig::new(base_url).requests_per_second(settings.max_requests_per_second),
            )
        };
        let window = ctx.window(stream);
        match stream.data_as::<Target>()? {
            Target::Search { value, .. } => {
                let search = Search {
                    query: vec![("query", value.clone()), ("tags", "(story,comment)".into())],
                    from: search_from(window),
                    window,
                    channel: &value,
                    threads: true,
                };
                let algolia = client(&settings.algolia_base_url)?;
                self.search(stream, &algolia, settings, search).await
            }
            Target::Thread { story_id, channel } => {
                let search = Search {
                    query: vec![("tags", format!("comment,story_{story_id}"))],
                    from: window.since_unix().map(|s| u64::try_from(s).unwrap_or(0)),
                    window,
                    channel: &channel,
                    threads: false,
                };
                let algolia = client(&settings.algolia_base_url)?;
                self.search(stream, &algolia, settings, search).await
            }
            Target::User { username } => {
                let client = client(&settings.firebase_base_url)?;
                let path = format!("/user/{username}.json");
                let user: Option<User> = client.get_json(&path, &[], None).await?.body;
                let Some(user) = user else {
                    tracing::debug!(%username, "no HN profile: the member keeps what its items say");
                    return Ok(StreamOutcome::new());
                };
                let record = json!(user.id);
                Ok(StreamOutcome::new()
                    .member(profile(&user))
                    .last_record(record, None))
            }
        }
    }
}

/// `created_at_i>from,created_at_i<=before`, the parts that apply.
fn numeric_filters(from: Option<u64>, before: Option<u64>) -> Option<String> {
    let filters: Vec<String> = from
        .map(|f| format!("created_at_i>{f}"))
        .into_iter()
        .chain(before.map(|b| format!("created_at_i<={b}")))
        .collect();
    (!filters.is_empty()).then(|| filters.join(","))
}

/// A full page is followed by another while `nbHits` counts more than it holds. Full is the
/// page size asked for, or the one Algolia answers with if it serves smaller pages.
fn has_more(page: &SearchResponse, hits_per_page: u32) -> bool {
    let got = page.hits.len() as u64;
    let size = page
        .hits_per_page
        .map_or(u64::from(hits_per_page), |served| {
            served.min(u64::from(hits_per_page))
        });
    got > 0 && got >= size && page.nb_hits.is_none_or(|total| total > got)
}

/// HN usernames: letters, digits, `-` and `_` (anything else is not put into a path).
fn is_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn timestamp(created_at_i: u64) -> Option<DateTime<Utc>> {
    i64::try_from(created_at_i)
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
}

fn item_source_id(id: u64) -> String {
    format!("item:{id}")
}

fn member(username: &str) -> Member {
    Member::new(username, username).url(format!("{SITE}/user?id={username}"))
}

/// The member as the official API describes it.
fn profile(user: &User) -> Member {
    member(&user.id)
        .attributes(json!({
            "karma": user.karma,
            "about": user.about,
        }))
        .joined_at(DateTime::from_timestamp(user.created, 0))
}

/// The activity of a hit: a `story` or a `comment`; none for an item without author.
fn activity(hit: &Hit, channel: &str) -> Result<Option<Activity>, IntegrationError> {
    let Some(author) = hit.author.as_deref().filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let at = timestamp(hit.created_at_i).ok_or_else(|| {
        IntegrationError::fatal(format!(
            "item {} has a `created_at_i` out of range: {}",
            hit.object_id, hit.created_at_i
        ))
    })?;
    let id = hit.object_id;
    let kind = if hit.is_comment() { "comment" } else { "story" };
    let activity = Activity::new(item_source_id(id), kind, at, member(author))
        .channel(channel)
        .url(format!("{SITE}/item?id={id}"));
    let activity = if hit.is_comment() {
        activity
            .attributes(json!({
                "story_id": hit.story_id,
                "story_title": hit.story_title,
            }))
            .parent(hit.parent_id.or(hit.story_id).map(item_source_id))
            .body(&hit.comment_text)
    } else {
        activity
            .attributes(json!({
                "url": hit.url,
                "points": hit.points,
                "num_comments": hit.num_comments,
            }))
            .title(&hit.title)
            .body(hit.story_text.as_ref().filter(|t| !t.is_empty()))
    };
    Ok(Some(activity))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hit(tags: &[&str]) -> Hit {
        Hit {
            object_id: 42,
            created_at_i: 1_700_000_000,
            created_at: None,
            author: Some("pg".into()),
            title: Some("A story".into()),
            url: Some("https://example.com".into()),
            story_text: Some(String::new()),
            comment_text: Some("<p>a comment</p>".into()),
            points: Some(7),
            num_comments: Some(3),
            story_id: Some(40),
            story_title: Some("The story".into()),
            story_url: None,
            parent_id: Some(41),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[test]
    fn stories_and_comments_become_activities_with_their_parents() {
        let story = activity(&hit(&["story", "author_pg", "story_42"]), "rust")
            .unwrap()
            .unwrap();
        assert_eq!(
            (story.source_id.as_str(), story.activity_type.as_str()),
            ("item:42", "story")
        );
        assert_eq!(story.title.as_deref(), Some("A story"));
        assert_eq!(story.body, None, "an empty story text is no body");
        assert_eq!(story.channel.as_deref(), Some("rust"));
        assert_eq!(story.source_parent_id, None);
        assert_eq!(
            story.attributes,
            json!({"url": "https://example.com", "points": 7, "num_comments": 3})
        );
        assert_eq!(
            story.url.as_deref(),
            Some("https://news.ycombinator.com/item?id=42")
        );
        assert_eq!(story.member.source_id, "pg");
        assert_eq!(
            story.member.url.as_deref(),
            Some("https://news.ycombinator.com/user?id=pg")
        );
        assert_eq!(story.occurred_at.timestamp(), 1_700_000_000);

        let comment = activity(&hit(&["comment", "author_pg", "story_40"]), "rust")
            .unwrap()
            .unwrap();
        assert_eq!(comment.activity_type, "comment");
        assert_eq!(comment.source_parent_id.as_deref(), Some("item:41"));
        assert_eq!(comment.body.as_deref(), Some("<p>a comment</p>"));
        assert_eq!(comment.title, None);
        assert_eq!(
            comment.attributes,
            json!({"story_id": 40, "story_title": "The story"})
        );

        let mut gone = hit(&["comment"]);
        gone.author = None;
        assert_eq!(activity(&gone, "rust").unwrap(), None);
        gone.author = Some(String::new());
        assert_eq!(activity(&gone, "rust").unwrap(), None);
        let mut untagged = hit(&[]);
        assert!(untagged.is_comment(), "a parent makes a comment");
        untagged.parent_id = None;
        assert!(!untagged.is_comment());
    }

    #[test]
    fn windows_and_filters() {
        assert_eq!(numeric_filters(None, None), None);
        assert_eq!(
            numeric_filters(Some(5), Some(9)).as_deref(),
            Some("created_at_i>5,created_at_i<=9")
        );
        assert_eq!(
            numeric_filters(None, Some(9)).as_deref(),
            Some("created_at_i<=9")
        );
        let check = Window {
            since: DateTime::from_timestamp(2_000_000, 0),
        };
        assert!(includes(Window::EVERYTHING, 0));
        assert_eq!(search_from(Window::EVERYTHING), None);
        assert!(!includes(check, 1_999_999) && includes(check, 2_000_000));
        assert_eq!(search_from(check), Some(2_000_000 - 14 * 24 * 3600));
    }

    #[test]
    fn a_page_has_more_after_it_while_full_and_nb_hits_counts_more() {
        let page = |hits: usize, nb_hits: Option<u64>| SearchResponse {
            hits: (0..hits).map(|_| hit(&["story"])).collect(),
            nb_hits,
            nb_pages: Some(1),
            page: Some(0),
            hits_per_page: Some(3),
        };
        assert!(
            has_more(&page(3, Some(4000)), 3),
            "nbPages is capped; nbHits is not"
        );
        assert!(!has_more(&page(3, Some(3)), 3));
        assert!(!has_more(&page(2, Some(4000)), 3));
        assert!(has_more(&page(3, None), 3));
        assert!(!has_more(&page(0, None), 0));
        assert!(
            has_more(&page(3, Some(4000)), 1000),
            "a page as full as Algolia serves them"
        );
    }

    #[test]
    fn identifiers_and_usernames() {
        let ids: Vec<String> = [
            Target::Search {
                term: Term::Keyword,
                value: "rust lang".into(),
            },
            Target::Search {
                term: Term::Url,
                value: "github.com/acme/widget".into(),
            },
            Target::Thread {
                story_id: 8863,
                channel: "rust".into(),
            },
            Target::User {
                username: "Pg_1-x".into(),
            },
        ]
        .iter()
        .map(|t| t.stream().unwrap().identifier)
        .collect();
        assert_eq!(
            ids,
            [
                "search:keyword:rust lang",
                "search:url:github.com/acme/widget",
                "thread:8863",
                "user:Pg_1-x"
            ]
        );
        assert!(is_username("Pg_1-x"));
        assert!(!is_username("") && !is_username("a/b") && !is_username("a b"));
    }

    #[test]
    fn a_profile_is_a_member_with_its_join_date_and_karma() {
        let member = profile(&User {
            id: "pg".into(),
            created: 1_160_418_092,
            karma: Some(155_111),
            about: Some("Bug fixer.".into()),
        });
        assert_eq!(member.source_id, "pg");
        assert_eq!(member.joined_at.unwrap().timestamp(), 1_160_418_092);
        assert_eq!(
            member.attributes,
            json!({"karma": 155_111, "about": "Bug fixer."})
        );
    }
}
