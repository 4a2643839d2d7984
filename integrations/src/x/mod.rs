//! **X** (API v2): the configured account's mentions and recent searches for hashtags and
//! keywords, with their authors.
//!
//! No published API description of X is in `/work/shared/specs`: this follows X's public API v2
//! documentation as known; the assumptions are written down in the fake (`fake.rs`).
//!
//! API (`base_url`, by default `https://api.x.com`; an app's bearer token):
//! * `GET /2/users/{id}/mentions?max_results=100&pagination_token=…&since_id=…`;
//! * `GET /2/tweets/search/recent?query=…&max_results=100&next_token=…&since_id=…` (the last
//!   seven days only);
//!
//! both with `tweet.fields` (creation time, conversation, references, entities, metrics) and
//! `expansions=author_id` + `user.fields`, so the authors come in `includes.users` of the same
//! answer: no per-user request is ever made.
//!
//! Rate limits: 15-minute windows per endpoint, `x-rate-limit-limit` / `-remaining` /
//! `x-rate-limit-reset` — an **epoch time** ([`ResetForm::Epoch`]: a reset is minutes away, never
//! read as a delay of decades); a 429 defers the run to that reset. The monthly read cap (a 429
//! whose body says `UsageCapExceeded`) is reported by name and defers the run a day (the
//! toolkit's body classifier, [`monthly_cap`]).
//!
//! Streams: `mentions:{account_id}` and `search:{query}`, paged by the answer's `next_token` (a
//! token that repeats is an error). Onboarding reads everything the API keeps; a check sends
//! `since_id` — the snowflake of its window's start (X's ids encode their time), so no id has to
//! be kept between runs — and reads only newer posts.
//!
//! Activities (`tweet:{id}`, the same whichever stream finds a post): `reply` (a post answering
//! another, whose `tweet:{id}` is its parent), else `mention` (a post naming the account), else
//! `hashtag_post` (a post found by a hashtag or keyword search). Members are keyed by X's user
//! id, with the username, display name, profile URL and avatar.

mod api;
#[cfg(feature = "fakes")]
pub mod fake;
mod settings;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tributary::http::{Answer, BodyClassifier, Cursor, HttpConfig, ResetForm, Verdict};
use tributary::{
    Activity, IntegrationError, IntegrationService, Member, NewStream, RunContext, Stream,
    StreamOutcome,
};

pub use api::{Includes, Meta, PostPage, Tweet, User};
pub use settings::{DEFAULT_BASE_URL, MAX_PER_PAGE, XSettings};

pub const PLATFORM: &str = "x";
/// Where posts and profiles are shown.
pub const SITE: &str = "https://x.com";
/// X's snowflake epoch (2010-11-04T01:42:54.657Z), in Unix milliseconds.
pub const SNOWFLAKE_EPOCH_MS: i64 = 1_288_834_974_657;
/// How far back recent search reaches.
pub const RECENT_SEARCH_DAYS: i64 = 7;

const TWEET_FIELDS: &str = "created_at,author_id,conversation_id,in_reply_to_user_id,referenced_tweets,entities,public_metrics,lang";
const USER_FIELDS: &str = "name,username,profile_image_url,verified";

/// The X integration.
#[derive(Debug, Default)]
pub struct XIntegration;

/// What a stream stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Target {
    Mentions { account_id: String },
    Search { query: String },
}

impl Target {
    fn stream(&self) -> Result<NewStream, IntegrationError> {
        let identifier = match self {
            Self::Mentions { account_id } => format!("mentions:{account_id}"),
            Self::Search { query } => format!("search:{query}"),
        };
        NewStream::with(identifier, self)
    }
}

/// The first snowflake of the millisecond `at` (ids are `(ms - epoch) << 22 | …`).
pub fn snowflake_at(at: DateTime<Utc>) -> u64 {
    let ms = (at.timestamp_millis() - SNOWFLAKE_EPOCH_MS).max(0);
    u64::try_from(ms).unwrap_or_default() << 22
}

/// How long a spent monthly read cap defers the run: X does not say when the cap resets (the
/// project's billing day), so the run tries again a day later.
pub const MONTHLY_CAP_WAIT: Duration = Duration::from_secs(24 * 3600);

/// X's monthly read cap: a refusal (429, or 403) whose problem document is
/// `UsageCapExceeded`, named in the deferral; every other answer is left to the standard
/// classification.
pub fn monthly_cap(answer: &Answer<'_>) -> Option<Verdict> {
    if !matches!(answer.status.as_u16(), 429 | 403) {
        return None;
    }
    let problem = answer.json()?;
    let capped = problem.get("title").and_then(|t| t.as_str()) == Some("UsageCapExceeded")
        || problem
            .get("type")
            .and_then(|t| t.as_str())
            .is_some_and(|t| t.ends_with("/usage-capped"));
    if !capped {
        return None;
    }
    let detail = problem
        .get("detail")
        .and_then(|d| d.as_str())
        .unwrap_or("usage cap exceeded");
    Some(Verdict::rate_limited(
        Some(MONTHLY_CAP_WAIT),
        format!(
            "{}: X's monthly read cap (the project's monthly post cap) is exhausted ({detail}); \
             nothing more can be read until it resets: the run tries again in a day",
            answer.status
        ),
    ))
}

/// [`monthly_cap`] as the client's body classifier.
pub const CLASSIFIER: BodyClassifier = BodyClassifier::new("x", monthly_cap);

#[async_trait]
impl IntegrationService for XIntegration {
    type Settings = XSettings;

    fn platform(&self) -> &'static str {
        PLATFORM
    }

    async fn get_streams(
        &self,
        ctx: &RunContext<XSettings>,
    ) -> Result<Vec<NewStream>, IntegrationError> {
        let settings = ctx.settings();
        let mentions = settings.account_id.iter().map(|id| Target::Mentions {
            account_id: id.clone(),
        });
        let searches = settings
            .searches
            .iter()
            .map(|q| Target::Search { query: q.clone() });
        mentions.chain(searches).map(|t| t.stream()).collect()
    }

    async fn process_stream(
        &self,
        stream: &Stream,
        ctx: &RunContext<XSettings>,
    ) -> Result<StreamOutcome, IntegrationError> {
        let settings = ctx.settings();
        let client = ctx.client(
            HttpConfig::new(&settings.base_url)
                .reset_form(ResetForm::Epoch)
                .classify_body(CLASSIFIER),
        )?;
        let token = ctx.credentials().secret("bearer_token");
        let pages = Cursor::of(stream)?;
        let target = stream.data_as::<Target>()?;
        let (path, mut query, page_param) = match &target {
            Target::Mentions { account_id } => (
                format!("/2/users/{account_id}/mentions"),
                Vec::new(),
                "pagination_token",
            ),
            Target::Search { query } => (
                "/2/tweets/search/recent".to_owned(),
                vec![("query", query.clone())],
                "next_token",
            ),
        };
        query.extend([
            ("max_results", settings.per_page.to_string()),
            ("tweet.fields", TWEET_FIELDS.to_owned()),
            ("expansions", "author_id".to_owned()),
            ("user.fields", USER_FIELDS.to_owned()),
        ]);
        if let Some(cursor) = pages.cursor() {
            query.push((page_param, cursor.to_owned()));
        }
        if let Some(since) = ctx.window(stream).since {
            // recent search refuses a `since_id` older than its seven days
            let reachable = match target {
                Target::Search { .. } => {
                    since
                        > Utc::now() - chrono::Duration::days(RECENT_SEARCH_DAYS)
                            + chrono::Duration::minutes(5)
                }
                Target::Mentions { .. } => true,
            };
            if reachable {
                query.push(("since_id", snowflake_at(since).to_string()));
            }
        }
        let page: PostPage = client.get_json(&path, &query, token.as_ref()).await?.body;
        let next = pages.next(page.meta.next_token.as_deref())?;
        let activities = page
            .data
            .iter()
            .map(|tweet| {
                let author = page.includes.users.iter().find(|u| u.id == tweet.author_id);
                tweet_activity(tweet, author, settings)
            })
            .collect::<Vec<_>>();
        Ok(StreamOutcome::new()
            .activities(activities)
            .oldest_activity_as_last_record()
            .next_page_opt(next))
    }
}

fn member(id: &str, user: Option<&User>) -> Member {
    match user {
        Some(user) => Member::new(&user.id, &user.username)
            .display_name(&user.name)
            .url(format!("{SITE}/{}", user.username))
            .attributes(json!({
                "avatar_url": user.profile_image_url,
                "verified": user.verified,
            })),
        // X leaves an author out of `includes` when the account is suspended or protected
        None => Member::new(id, id).url(format!("{SITE}/i/user/{id}")),
    }
}

/// What a post is to this integration: a reply, a mention of the account, or a search find.
fn kind(tweet: &Tweet, settings: &XSettings) -> (&'static str, Option<String>) {
    if let Some(parent) = tweet
        .referenced_tweets
        .iter()
        .find(|r| r.kind == "replied_to")
    {
        return ("reply", Some(format!("tweet:{}", parent.id)));
    }
    let mentions_account = settings.account_id.as_ref().is_some_and(|account| {
        tweet.in_reply_to_user_id.as_ref() == Some(account)
            || tweet
                .entities
                .iter()
                .flat_map(|e| &e.mentions)
                .any(|m| m.id.as_ref() == Some(account))
    });
    if mentions_account {
        ("mention", None)
    } else {
        ("hashtag_post", None)
    }
}

/// Where a post happened: the account's mentions, or the first configured search it matches.
fn channel(tweet: &Tweet, activity_type: &str, settings: &XSettings) -> String {
    if activity_type == "mention" {
        return "mentions".to_owned();
    }
    let text = tweet.text.to_lowercase();
    settings
        .searches
        .iter()
        .find(|q| text.contains(&q.to_lowercase()))
        .cloned()
        .unwrap_or_else(|| "search".to_owned())
}

fn tweet_activity(tweet: &Tweet, author: Option<&User>, settings: &XSettings) -> Activity {
    let (activity_type, parent) = kind(tweet, settings);
    let username = author.map_or("i", |u| u.username.as_str());
    let hashtags: Vec<&str> = tweet
        .entities
        .iter()
        .flat_map(|e| &e.hashtags)
        .map(|h| h.tag.as_str())
        .collect();
    Activity::new(
        format!("tweet:{}", tweet.id),
        activity_type,
        tweet.created_at,
        member(&tweet.author_id, author),
    )
    .parent(parent)
    .channel(channel(tweet, activity_type, settings))
    .body(&tweet.text)
    .url(format!("{SITE}/{username}/status/{}", tweet.id))
    .attributes(json!({
        "conversation_id": tweet.conversation_id,
        "hashtags": hashtags,
        "public_metrics": tweet.public_metrics,
        "lang": tweet.lang,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tweet(text: &str, json_extra: serde_json::Value) -> Tweet {
        let mut value = json!({"id": "7", "text": text, "author_id": "42",
                               "created_at": "2025-01-01T00:00:00Z"});
        if let (Some(v), Some(extra)) = (value.as_object_mut(), json_extra.as_object()) {
            v.extend(extra.clone());
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_post_is_a_reply_a_mention_or_a_search_find() {
        let settings = XSettings {
            base_url: DEFAULT_BASE_URL.into(),
            account_id: Some("1000".into()),
            searches: vec!["#RustLang".into()],
            per_page: 100,
        };
        let reply = tweet(
            "@a yes",
            json!({"referenced_tweets": [{"type": "quoted", "id": "5"}, {"type": "replied_to", "id": "6"}]}),
        );
        assert_eq!(kind(&reply, &settings), ("reply", Some("tweet:6".into())));
        let mention = tweet(
            "@user0 hi",
            json!({"entities": {"mentions": [{"username": "user0", "id": "1000"}]}}),
        );
        assert_eq!(kind(&mention, &settings), ("mention", None));
        assert_eq!(channel(&mention, "mention", &settings), "mentions");
        let found = tweet("learning #rustlang", json!({}));
        assert_eq!(kind(&found, &settings), ("hashtag_post", None));
        assert_eq!(channel(&found, "hashtag_post", &settings), "#RustLang");
        // an author left out of `includes` (suspended, protected) is still a member by id
        let activity = tweet_activity(&found, None, &settings);
        assert_eq!(activity.member.source_id, "42");
        assert_eq!(activity.url.as_deref(), Some("https://x.com/i/status/7"));
    }

    #[test]
    fn only_a_spent_monthly_cap_is_the_monthly_cap() {
        let headers = reqwest::header::HeaderMap::new();
        let answer = |status: u16, body: &'static str| Answer {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            headers: &headers,
            body: body.as_bytes(),
        };
        let capped = r#"{"title":"UsageCapExceeded","detail":"Usage cap exceeded: Monthly product cap","type":"https://api.twitter.com/2/problems/usage-capped","period":"Monthly","scope":"Product"}"#;
        let Some(Verdict::RateLimited { wait, message }) = monthly_cap(&answer(429, capped)) else {
            panic!("not the cap")
        };
        assert_eq!(wait, Some(MONTHLY_CAP_WAIT));
        assert!(
            message.contains("X's monthly read cap") && message.contains("Monthly product cap")
        );
        // an ordinary 429 is the window's, left to the reset headers
        let window = r#"{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}"#;
        assert_eq!(monthly_cap(&answer(429, window)), None);
        assert_eq!(monthly_cap(&answer(200, capped)), None);
    }

    #[test]
    fn a_snowflake_encodes_its_time() {
        // 1373001119480344583 was posted at 2021-03-19T19:59:10Z
        let at = DateTime::parse_from_rfc3339("2021-03-19T19:59:10Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = snowflake_at(at);
        let posted: u64 = 1_373_001_119_480_344_583;
        assert!(id <= posted && posted - id < (1000 << 22), "{id}");
        assert_eq!(snowflake_at(DateTime::UNIX_EPOCH), 0);
    }
}
