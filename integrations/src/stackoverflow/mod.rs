//! **Stack Overflow / Stack Exchange** (API 2.3, any site): the questions of the configured tags
//! and keyword searches, their answers and the comments on both.
//!
//! API (`https://api.stackexchange.com/2.3`, `site=…` on every request, an optional app `key`
//! for 10,000 requests a day instead of 300; answers are always gzip-compressed):
//! * `GET /questions?tagged=TAG` and `GET /search/advanced?q=…` — `sort=activity`, 100 a page
//!   (`page`, `has_more`); a check adds `min=` the window's start (last activity since);
//! * `GET /questions/{ids}/answers` — the answers of up to 100 questions in one request;
//! * `GET /posts/{ids}/comments` — the comments of up to 100 posts in one request;
//!
//! all with `filter=withbody`. A check asks answers and comments with `fromdate=` the window's
//! start. Streams: `questions:tag:{tag}` and `questions:search:{q}` (roots, paged); for each page,
//! an `answers:…` stream for its answered questions and a `comments:question:…` stream for its
//! questions; for each page of answers, a `comments:answer:…` stream. Batches are named after
//! their ids, so the same batch is read once per run.
//!
//! Activities: `question` (`question:{id}`), `answer` (`answer:{id}`, parent the question) and
//! `comment` (`comment:{id}`, parent the question or answer), all in the site's channel. Members
//! are keyed by the site's user id, with the display name, profile link and image; posts of
//! deleted accounts (no `user_id`) are no activity.
//!
//! Rate limits, all the toolkit's: a `backoff` holds back the next call of the same method from
//! every stream; HTTP 400 `throttle_violation` (`error_id` 502) defers the run for the wait it
//! states; the daily quota (`quota_remaining`) is logged as it runs low and, once spent, defers
//! the run to its reset at midnight UTC; requests are paced to `max_requests_per_second`.

mod api;
#[cfg(feature = "fakes")]
pub mod fake;
mod settings;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tributary::http::{Auth, HttpClient, HttpConfig, PageNumber, fingerprint};
use tributary::{
    Activity, IntegrationError, IntegrationService, Member, NewStream, RunContext, Secret, Stream,
    StreamOutcome, Window,
};

pub use api::{Answer, Comment, Owner, Question, Wrapper};
pub use settings::{DEFAULT_BASE_URL, MAX_PAGE_SIZE, StackoverflowSettings};

pub const PLATFORM: &str = "stackoverflow";

/// Below this share of the daily quota, each answer's `quota_remaining` is logged as a warning.
const QUOTA_WARNING_SHARE: f64 = 0.1;

/// The Stack Overflow / Stack Exchange integration.
#[derive(Debug, Default)]
pub struct StackoverflowIntegration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PostKind {
    Question,
    Answer,
}

impl PostKind {
    fn name(self) -> &'static str {
        match self {
            Self::Question => "question",
            Self::Answer => "answer",
        }
    }
}

/// What a stream stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Target {
    Tagged { tag: String },
    Search { q: String },
    Answers { question_ids: Vec<u64> },
    Comments { on: PostKind, post_ids: Vec<u64> },
}

/// A batch's name: its first id, its size and a fingerprint of all its ids.
fn batch_name(ids: &[u64]) -> String {
    format!(
        "{}+{}:{:016x}",
        ids.first().copied().unwrap_or_default(),
        ids.len(),
        fingerprint(ids.iter()).unwrap_or_default()
    )
}

impl Target {
    fn stream(&self) -> Result<NewStream, IntegrationError> {
        let identifier = match self {
            Self::Tagged { tag } => format!("questions:tag:{tag}"),
            Self::Search { q } => format!("questions:search:{q}"),
            Self::Answers { question_ids } => format!("answers:{}", batch_name(question_ids)),
            Self::Comments { on, post_ids } => {
                format!("comments:{}:{}", on.name(), batch_name(post_ids))
            }
        };
        NewStream::with(identifier, self)
    }
}

/// What every request of a run shares.
struct Api<'a> {
    client: HttpClient,
    key: Option<Secret>,
    settings: &'a StackoverflowSettings,
    window: Window,
}

impl Api<'_> {
    /// One page of `path`: the site, the body filter, the page size and number, and `extra`.
    async fn page<T: DeserializeOwned>(
        &self,
        path: &str,
        page: u32,
        extra: &[(&str, String)],
    ) -> Result<Wrapper<T>, IntegrationError> {
        let mut query = vec![
            ("site", self.settings.site.clone()),
            ("filter", "withbody".to_owned()),
            ("pagesize", self.settings.page_size.to_string()),
            ("page", page.to_string()),
            ("order", "desc".to_owned()),
        ];
        query.extend(extra.iter().cloned());
        let answer = self
            .client
            .get_json::<Wrapper<T>>(path, &query, self.key.as_ref())
            .await?;
        let quota = answer.rate_limit;
        if let (Some(remaining), Some(max)) = (quota.remaining, quota.limit) {
            if remaining < max * QUOTA_WARNING_SHARE {
                tracing::warn!(
                    quota_remaining = remaining,
                    quota_max = max,
                    "the daily quota runs low"
                );
            } else {
                tracing::debug!(quota_remaining = remaining, quota_max = max, "daily quota");
            }
        }
        Ok(answer.body)
    }

    /// `fromdate=` the window's start, in a check.
    fn since(&self) -> Vec<(&'static str, String)> {
        self.window
            .since_unix()
            .map(|since| ("fromdate", since.to_string()))
            .into_iter()
            .collect()
    }
}

fn ids_path(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(";")
}

#[async_trait]
impl IntegrationService for StackoverflowIntegration {
    type Settings = StackoverflowSettings;

    fn platform(&self) -> &'static str {
        PLATFORM
    }

    async fn get_streams(
        &self,
        ctx: &RunContext<StackoverflowSettings>,
    ) -> Result<Vec<NewStream>, IntegrationError> {
        let settings = ctx.settings();
        let tags = settings
            .tags
            .iter()
            .map(|tag| Target::Tagged { tag: tag.clone() });
        let searches = settings
            .keywords
            .iter()
            .map(|q| Target::Search { q: q.clone() });
        tags.chain(searches).map(|t| t.stream()).collect()
    }

    async fn process_stream(
        &self,
        stream: &Stream,
        ctx: &RunContext<StackoverflowSettings>,
    ) -> Result<StreamOutcome, IntegrationError> {
        let settings = ctx.settings();
        let api = Api {
            client: ctx.client(
                HttpConfig::new(&settings.base_url)
                    .auth(Auth::Query("key".to_owned()))
                    .requests_per_second(settings.max_requests_per_second),
            )?,
            key: ctx.credentials().secret("key"),
            settings,
            window: ctx.window(stream),
        };
        let pages = PageNumber::of(stream)?;
        match stream.data_as::<Target>()? {
            Target::Tagged { tag } => questions(&api, &pages, "/questions", ("tagged", tag)).await,
            Target::Search { q } => questions(&api, &pages, "/search/advanced", ("q", q)).await,
            Target::Answers { question_ids } => {
                let path = format!("/questions/{}/answers", ids_path(&question_ids));
                let mut extra = api.since();
                extra.push(("sort", "creation".to_owned()));
                let answers: Wrapper<Answer> = api.page(&path, pages.page(), &extra).await?;
                let next =
                    pages.next(answers.has_more, answers.items.iter().map(|a| a.answer_id))?;
                let mut outcome = StreamOutcome::new().activities(
                    answers
                        .items
                        .iter()
                        .filter_map(|a| answer_activity(a, &api)),
                );
                let ids: Vec<u64> = answers.items.iter().map(|a| a.answer_id).collect();
                if !ids.is_empty() {
                    outcome = outcome.child(
                        Target::Comments {
                            on: PostKind::Answer,
                            post_ids: ids,
                        }
                        .stream()?,
                    );
                }
                Ok(outcome.newest_activity_as_last_record().next_page_opt(next))
            }
            Target::Comments { on, post_ids } => {
                let path = format!("/posts/{}/comments", ids_path(&post_ids));
                let mut extra = api.since();
                extra.push(("sort", "creation".to_owned()));
                let comments: Wrapper<Comment> = api.page(&path, pages.page(), &extra).await?;
                let next = pages.next(
                    comments.has_more,
                    comments.items.iter().map(|c| c.comment_id),
                )?;
                Ok(StreamOutcome::new()
                    .activities(
                        comments
                            .items
                            .iter()
                            .filter_map(|c| comment_activity(c, on, &api)),
                    )
                    .newest_activity_as_last_record()
                    .next_page_opt(next))
            }
        }
    }
}

/// One page of questions (by tag or by search), most recently active first: the questions asked
/// in the window, and the batches of their answers and comments.
async fn questions(
    api: &Api<'_>,
    pages: &PageNumber,
    path: &str,
    filter: (&'static str, String),
) -> Result<StreamOutcome, IntegrationError> {
    let mut extra = vec![filter, ("sort", "activity".to_owned())];
    if let Some(since) = api.window.since_unix() {
        extra.push(("min", since.to_string()));
    }
    let list: Wrapper<Question> = api.page(path, pages.page(), &extra).await?;
    let next = pages.next(list.has_more, list.items.iter().map(|q| q.question_id))?;
    let mut outcome = StreamOutcome::new().activities(
        list.items
            .iter()
            .filter(|q| api.window.includes(at(q.creation_date)))
            .filter_map(|q| question_activity(q, api)),
    );
    let answered: Vec<u64> = list
        .items
        .iter()
        .filter(|q| q.answer_count > 0)
        .map(|q| q.question_id)
        .collect();
    if !answered.is_empty() {
        outcome = outcome.child(
            Target::Answers {
                question_ids: answered,
            }
            .stream()?,
        );
    }
    let asked: Vec<u64> = list.items.iter().map(|q| q.question_id).collect();
    if !asked.is_empty() {
        outcome = outcome.child(
            Target::Comments {
                on: PostKind::Question,
                post_ids: asked,
            }
            .stream()?,
        );
    }
    if let Some(last) = list.items.last() {
        outcome = outcome.last_record(json!(last.question_id), last.last_activity_date.map(at));
    }
    Ok(outcome.next_page_opt(next))
}

fn at(unix: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(unix, 0).unwrap_or_default()
}

/// The author as a member; `None` for a deleted account.
fn member(owner: Option<&Owner>) -> Option<Member> {
    let owner = owner?;
    let id = owner.user_id?;
    let name = owner.display_name.clone().unwrap_or_else(|| id.to_string());
    Some(
        Member::new(id.to_string(), name.clone())
            .display_name(name)
            .url(&owner.link)
            .attributes(json!({
                "profile_image": owner.profile_image,
                "user_type": owner.user_type,
            })),
    )
}

fn question_activity(q: &Question, api: &Api<'_>) -> Option<Activity> {
    let author = member(q.owner.as_ref())?;
    Some(
        Activity::new(
            format!("question:{}", q.question_id),
            "question",
            at(q.creation_date),
            author,
        )
        .channel(&api.settings.site)
        .title(&q.title)
        .body(&q.body)
        .url(&q.link)
        .attributes(json!({"tags": q.tags, "is_answered": q.is_answered})),
    )
}

fn answer_activity(a: &Answer, api: &Api<'_>) -> Option<Activity> {
    if !api.window.includes(at(a.creation_date)) {
        return None;
    }
    let author = member(a.owner.as_ref())?;
    Some(
        Activity::new(
            format!("answer:{}", a.answer_id),
            "answer",
            at(a.creation_date),
            author,
        )
        .parent(format!("question:{}", a.question_id))
        .channel(&api.settings.site)
        .body(&a.body)
        .url(format!(
            "{}/a/{}",
            site_url(&api.settings.site),
            a.answer_id
        ))
        .attributes(json!({"question_id": a.question_id, "is_accepted": a.is_accepted})),
    )
}

fn comment_activity(c: &Comment, on: PostKind, api: &Api<'_>) -> Option<Activity> {
    if !api.window.includes(at(c.creation_date)) {
        return None;
    }
    let author = member(c.owner.as_ref())?;
    Some(
        Activity::new(
            format!("comment:{}", c.comment_id),
            "comment",
            at(c.creation_date),
            author,
        )
        .parent(format!("{}:{}", on.name(), c.post_id))
        .channel(&api.settings.site)
        .body(&c.body)
        .url(format!(
            "{}/posts/comments/{}",
            site_url(&api.settings.site),
            c.comment_id
        )),
    )
}

/// A site's web address: `stackoverflow` → `https://stackoverflow.com`, other sites under
/// `stackexchange.com` unless they have their own domain.
fn site_url(site: &str) -> String {
    match site {
        "stackoverflow" | "serverfault" | "superuser" | "askubuntu" | "stackapps"
        | "mathoverflow" => format!("https://{site}.com"),
        other => format!("https://{other}.stackexchange.com"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_named_after_their_ids() {
        let a = batch_name(&[5, 6, 7]);
        assert!(a.starts_with("5+3:"), "{a}");
        assert_eq!(a, batch_name(&[5, 6, 7]));
        assert_ne!(a, batch_name(&[5, 6, 8]));
        assert_eq!(ids_path(&[1, 22, 333]), "1;22;333");
        assert_eq!(site_url("stackoverflow"), "https://stackoverflow.com");
        assert_eq!(site_url("math"), "https://math.stackexchange.com");
    }

    #[test]
    fn deleted_accounts_are_no_member() {
        let gone = Owner {
            user_id: None,
            display_name: Some("user123".into()),
            link: None,
            profile_image: None,
            reputation: None,
            user_type: Some("does_not_exist".into()),
        };
        assert!(member(Some(&gone)).is_none());
        assert!(member(None).is_none());
        let here = Owner {
            user_id: Some(9),
            link: Some("https://stackoverflow.com/users/9/ann".into()),
            ..gone
        };
        let m = member(Some(&here)).unwrap_or_else(|| Member::new("", ""));
        assert_eq!(
            (m.source_id.as_str(), m.username.as_str()),
            ("9", "user123")
        );
    }
}
