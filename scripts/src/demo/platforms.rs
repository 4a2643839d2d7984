//! The fake platforms the demo serves besides the Example Forum — each a local server that
//! behaves like the real API (pagination, rate-limit headers, latency) — and the settings that
//! connect an integration to it.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use tributary_integrations::devto::fake::{FakeForem, ForemData, ForemSpec};
use tributary_integrations::github::fake::{FakeGithub, FakeGithubOptions, GithubData, GithubSpec};

/// Every answer of the fake platforms comes after this long, as over a network.
const LATENCY: Duration = Duration::from_millis(30);

/// A running fake platform and what an onboarding of it should produce.
pub struct DemoPlatform {
    pub platform: &'static str,
    /// One line: what it serves.
    pub description: String,
    pub settings: Value,
    pub credentials: Value,
    /// Activities an onboarding produces.
    pub expected: usize,
    server: Server,
}

enum Server {
    Github(FakeGithub),
    Forem(FakeForem),
}

impl DemoPlatform {
    /// Requests the platform has answered.
    pub fn requests(&self) -> usize {
        match &self.server {
            Server::Github(s) => s.server().request_count(),
            Server::Forem(s) => s.server().request_count(),
        }
    }
}

const GITHUB_TOKEN: &str = "ghp_demo-token";
const GITHUB: GithubSpec = GithubSpec {
    repositories: 2,
    users: 80,
    stars: 300,
    forks: 25,
    issues: 120,
    pull_every: 3,
    comments: 200,
    review_comments: 60,
};

const FOREM: ForemSpec = ForemSpec {
    users: 6,
    organizations: 2,
    articles_per_user: 12,
    comments_per_article: 3,
    reply_depth: 2,
};
const FOREM_USERS: [&str; 2] = ["user0", "user1"];
const FOREM_ORGS: [&str; 1] = ["org0"];

/// Starts the fake GitHub and the fake Forem (Dev.to).
pub async fn start() -> anyhow::Result<Vec<DemoPlatform>> {
    let data = GithubData::generate(GITHUB);
    let expected = data.expected_activities().len();
    let github = FakeGithub::start(
        data,
        FakeGithubOptions {
            token: Some(GITHUB_TOKEN.to_owned()),
            rate_limit: Some((5_000, Duration::from_secs(3_600))),
        },
    )
    .await
    .context("starting the fake GitHub")?;
    github.server().latency(LATENCY);
    let github = DemoPlatform {
        platform: tributary_integrations::github::PLATFORM,
        description: format!(
            "GitHub (REST v3) at {}: 2 repositories, each {} stargazers, {} forks, {} issues and pull requests, {} comments, {} review comments",
            github.base_url(),
            GITHUB.stars,
            GITHUB.forks,
            GITHUB.issues,
            GITHUB.comments,
            GITHUB.review_comments
        ),
        settings: json!({
            "base_url": github.base_url(),
            "repositories": ["org0/project0", "org1/project1"],
        }),
        credentials: json!({ "token": GITHUB_TOKEN }),
        expected,
        server: Server::Github(github),
    };

    let data = ForemData::generate(FOREM);
    let expected = data.expected_activities(&FOREM_USERS, &FOREM_ORGS).len();
    let forem = FakeForem::start(data, None)
        .await
        .context("starting the fake Forem")?;
    forem.server().latency(LATENCY);
    let devto = DemoPlatform {
        platform: tributary_integrations::devto::PLATFORM,
        description: format!(
            "Dev.to (Forem API v1) at {}: the articles of 2 users and 1 organization, with their comment threads",
            forem.base_url()
        ),
        settings: json!({
            "base_url": forem.base_url(),
            "users": FOREM_USERS,
            "organizations": FOREM_ORGS,
            "per_page": 5,
            "max_requests_per_second": 20,
        }),
        credentials: json!({}),
        expected,
        server: Server::Forem(forem),
    };
    Ok(vec![github, devto])
}
