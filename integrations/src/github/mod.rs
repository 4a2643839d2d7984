//! **GitHub** (REST v3; the base URL is configurable, so GitHub Enterprise Server works the same
//! way): for each configured repository, its stargazers (with when they starred), forks, issues
//! and pull requests, their comments and their review comments, each comment linked to its issue
//! or pull request.
//!
//! API (`Accept: application/vnd.github+json`, `X-GitHub-Api-Version: 2022-11-28`, a bearer
//! token if one is given): `GET /repos/{owner}/{repo}`, then the repository-wide lists
//! `/stargazers` (with `Accept: application/vnd.github.star+json` for `starred_at`), `/forks`,
//! `/issues?state=all` (pull requests are issues there), `/issues/comments` and
//! `/pulls/comments` — never one request per issue. Every list asks for 100 items a page and
//! follows GitHub's `Link` header.
//!
//! Streams:
//! * `repo:{owner}/{name}` — the root: the repository (its id makes every source id stable
//!   across renames, its counts size the lists), then one stream per list;
//! * `{source}:{owner}/{name}` — a list's first page. Its `Link: rel="last"` says how many pages
//!   there are, and the other pages become streams of their own, `{source}:{owner}/{name}@{page}`,
//!   fetched concurrently; the last one follows `rel="next"` (items added meanwhile) as next
//!   pages that keep its context. Without a `last` link the `next` links are followed one by one.
//!
//! Onboarding reads everything: the lists in ascending order of creation, so pages do not shift
//! as new items arrive. A check (since the last successful run, with a ten-minute overlap) reads:
//! issues and both kinds of comments with `since` (what was created or updated since); forks
//! newest first, stopping at the first page that reaches back before the window; stargazers from
//! the last page backwards (GitHub lists them oldest first, and the repository's count says where
//! the last page is), stopping likewise. GitHub's rate limits (the primary budget in
//! `x-ratelimit-*`, the secondary limits' 403/429 with `Retry-After`) are handled by the toolkit:
//! the budget is paced per token, and a refusal defers the run to the announced time.
//!
//! Activities (source ids from GitHub's stable ids): `star` (`star:{repo id}:{user id}`), `fork`
//! (`fork:{fork id}`), `issue-opened` / `pull_request-opened` (`issue:{repo id}:{number}`: a pull
//! request is an issue, so a comment can name its parent without knowing which it is),
//! `issue-comment` / `pull_request-comment` (`issue_comment:{id}`) and
//! `pull_request-review-comment` (`review_comment:{id}`), the last three with their issue or pull
//! request as parent. Members are keyed by GitHub's user id, with the login as username.

mod activities;
mod api;
#[cfg(feature = "fakes")]
pub mod fake;
mod lists;
mod settings;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tributary::http::HttpConfig;
use tributary::{
    IntegrationError, IntegrationService, NewStream, RunContext, ServiceConfig, Stream,
    StreamOutcome,
};

pub use api::{Issue, IssueComment, Repository, ReviewComment, Stargazer, User};
pub use settings::{DEFAULT_BASE_URL, GithubSettings, MAX_PER_PAGE, Source};

use lists::{ListPage, RepoRef};

pub const PLATFORM: &str = "github";

/// The GitHub integration.
#[derive(Debug)]
pub struct GithubIntegration {
    stream_concurrency: usize,
}

impl Default for GithubIntegration {
    fn default() -> Self {
        Self {
            stream_concurrency: 8,
        }
    }
}

impl GithubIntegration {
    pub fn new() -> Self {
        Self::default()
    }

    /// Streams (so requests) of one run in flight at once (8). GitHub asks integrators to keep
    /// concurrent requests modest: its secondary limits refuse bursts.
    pub fn stream_concurrency(mut self, streams: usize) -> Self {
        self.stream_concurrency = streams.max(1);
        self
    }
}

/// What a stream stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Target {
    /// `GET /repos/{name}`, then its lists.
    Repository { name: String },
    /// One page (and what follows it) of one list of a repository.
    List {
        repo: RepoRef,
        source: Source,
        page: ListPage,
    },
}

impl Target {
    fn stream(&self) -> Result<NewStream, IntegrationError> {
        let identifier = match self {
            Self::Repository { name } => format!("repo:{name}"),
            Self::List { repo, source, page } => match page.number() {
                Some(n) => format!("{source}:{}@{n}", repo.full_name),
                // a list's first page starts the source its other pages belong to
                None => {
                    return Ok(NewStream::with(list_source(*source, repo), self)?
                        .source(list_source(*source, repo)));
                }
            },
        };
        NewStream::with(identifier, self)
    }
}

/// Each list of a repository is a source of its own: one that keeps failing does not make the
/// others re-read their history.
fn list_source(source: Source, repo: &RepoRef) -> String {
    format!("{source}:{}", repo.full_name)
}

#[async_trait]
impl IntegrationService for GithubIntegration {
    type Settings = GithubSettings;

    fn platform(&self) -> &'static str {
        PLATFORM
    }

    fn config(&self) -> ServiceConfig {
        ServiceConfig {
            stream_concurrency: self.stream_concurrency,
            ..ServiceConfig::default()
        }
    }

    async fn get_streams(
        &self,
        ctx: &RunContext<GithubSettings>,
    ) -> Result<Vec<NewStream>, IntegrationError> {
        ctx.settings()
            .repositories
            .iter()
            .map(|name| Target::Repository { name: name.clone() }.stream())
            .collect()
    }

    async fn process_stream(
        &self,
        stream: &Stream,
        ctx: &RunContext<GithubSettings>,
    ) -> Result<StreamOutcome, IntegrationError> {
        let settings = ctx.settings();
        let client = ctx.client(
            HttpConfig::new(&settings.base_url)
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28"),
        )?;
        let token = ctx.credentials().secret("token");
        match stream.data_as::<Target>()? {
            Target::Repository { name } => {
                let repo: Repository = client
                    .get_json(&format!("/repos/{name}"), &[], token.as_ref())
                    .await?
                    .body;
                let repo_ref = RepoRef::of(&repo);
                let first_pages = settings
                    .sources
                    .iter()
                    .map(|&source| {
                        let since = ctx.window_of(&list_source(source, &repo_ref)).since;
                        Target::List {
                            repo: repo_ref.clone(),
                            source,
                            page: ListPage::first(source, &repo, settings.per_page, since),
                        }
                    })
                    .map(|t| t.stream())
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(StreamOutcome::new().children(first_pages))
            }
            Target::List { repo, source, page } => {
                let since = ctx.window(stream).since;
                let request = lists::Request {
                    client: &client,
                    token: token.as_ref(),
                    repo: &repo,
                    source,
                    per_page: settings.per_page,
                    since,
                };
                let fetched = request.fetch(stream, &page).await?;
                let mut outcome = activities::of_page(&repo, &fetched.items, since)?;
                for page in fetched.more_pages {
                    outcome = outcome.child(
                        Target::List {
                            repo: repo.clone(),
                            source,
                            page,
                        }
                        .stream()?,
                    );
                }
                Ok(outcome.next_page_opt(fetched.next))
            }
        }
    }
}
