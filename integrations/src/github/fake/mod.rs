//! A fake GitHub (feature `fakes`), built on the testkit's [`FakeServer`]. It serves
//! [`GithubData`] under `/api/v3` (the shape of GitHub Enterprise Server's base URL) the way
//! GitHub's REST API does: `GET /repos/{owner}/{repo}` (names case-insensitive), `/stargazers`
//! (oldest first; `starred_at` only with `Accept: application/vnd.github.star+json`), `/forks`
//! (`sort=newest|oldest`), `/issues` (`state` open by default, `sort`, `direction`, `since` on
//! `updated_at`; pull requests carry a `pull_request` object), `/issues/comments` and
//! `/pulls/comments` (`sort`, `direction`, `since`); `per_page` (30 by default, at most 100) and
//! `page`, with `Link` headers (`next`, `last`, `first`, `prev`) as absolute URLs; the
//! `x-ratelimit-*` headers of a per-token budget and its 403 once spent. Faults are injected and
//! requests read through [`FakeGithub::server`].

mod data;
mod serve;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tributary::testkit::FakeServer;

pub use data::{
    CommentData, ForkData, GithubData, GithubSpec, IssueData, RepoData, ReviewData, user,
};

/// How a fake GitHub behaves.
#[derive(Debug, Clone, Default)]
pub struct FakeGithubOptions {
    /// Requests without `Authorization: Bearer <token>` get 401 `Bad credentials`.
    pub token: Option<String>,
    /// The primary rate limit: this many requests per window (per token), then 403 until the
    /// window resets. GitHub's own is 5,000 an hour.
    pub rate_limit: Option<(u32, Duration)>,
}

/// A running fake GitHub.
pub struct FakeGithub {
    server: FakeServer,
    data: Arc<Mutex<GithubData>>,
}

impl FakeGithub {
    pub async fn start(data: GithubData, options: FakeGithubOptions) -> std::io::Result<Self> {
        let server = FakeServer::start().await?;
        if let Some(token) = &options.token {
            server.require_header("authorization", &format!("Bearer {token}"));
        }
        if let Some((limit, window)) = options.rate_limit {
            server.budget(serve::primary_budget(limit, window));
        }
        let data = Arc::new(Mutex::new(data));
        let api = serve::Api::new(data.clone(), server.url("/api/v3"));
        server.handle("/api/v3/", move |request| api.answer(request));
        Ok(Self { server, data })
    }

    /// The API root to configure: `http://127.0.0.1:PORT/api/v3`.
    pub fn base_url(&self) -> String {
        self.server.url("/api/v3")
    }

    /// The underlying server: inject faults, set a latency, read the requests.
    pub fn server(&self) -> &FakeServer {
        &self.server
    }

    fn data(&self) -> MutexGuard<'_, GithubData> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads or changes the content (new stars, issues, comments between runs).
    pub fn edit<T>(&self, f: impl FnOnce(&mut GithubData) -> T) -> T {
        f(&mut self.data())
    }

    /// Requests to a list of a repository (`stargazers`, `issues/comments`, …), any page.
    pub fn requests_to_list(
        &self,
        full_name: &str,
        list: &str,
    ) -> Vec<tributary::testkit::Request> {
        let path = format!("/api/v3/repos/{full_name}/{list}");
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}
