//! The fake platforms the demo serves besides the Example Forum — each a local server that
//! behaves like the real API (pagination, rate-limit headers, latency) — and the settings that
//! connect an integration to it.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use tributary_integrations::devto::fake::{FakeForem, ForemData, ForemSpec};
use tributary_integrations::github::fake::{FakeGithub, FakeGithubOptions, GithubData, GithubSpec};
use tributary_integrations::hackernews::fake::{FakeHn, HnData, HnSpec, KEYWORDS, URL};

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
    HackerNews(FakeHn),
}

impl DemoPlatform {
    /// Requests the platform has answered.
    pub fn requests(&self) -> usize {
        match &self.server {
            Server::Github(s) => s.server().request_count(),
            Server::Forem(s) => s.server().request_count(),
            Server::HackerNews(s) => s.server().request_count(),
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

const HN: HnSpec = HnSpec {
    users: 12,
    stories: 40,
    comments_per_story: 8,
};

/// Starts the fake GitHub, the fake Forem (Dev.to) and the fake Hacker News (Algolia search and
/// the official API).
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

    let data = HnData::generate(HN);
    let terms = [KEYWORDS[0], KEYWORDS[1], URL];
    let expected = data.expected_activities(&terms).len();
    let hn = FakeHn::start(data)
        .await
        .context("starting the fake Hacker News")?;
    hn.server().latency(LATENCY);
    let hackernews = DemoPlatform {
        platform: tributary_integrations::hackernews::PLATFORM,
        description: format!(
            "Hacker News (Algolia search at {}, profiles at {}): the stories and comments that mention {:?}, {:?} or {URL}, with their threads",
            hn.algolia_base_url(),
            hn.firebase_base_url(),
            KEYWORDS[0],
            KEYWORDS[1]
        ),
        settings: json!({
            "keywords": KEYWORDS,
            "urls": [URL],
            "algolia_base_url": hn.algolia_base_url(),
            "firebase_base_url": hn.firebase_base_url(),
            "hits_per_page": 20,
            "max_requests_per_second": 20,
        }),
        credentials: json!({}),
        expected,
        server: Server::HackerNews(hn),
    };
    Ok(vec![github, devto, hackernews])
}
