//! The GitHub integration through the real processor and PostgreSQL, against the fake GitHub
//! built on the testkit's server (served under `/api/v3`, as GitHub Enterprise Server is): the
//! conformance suite, and what is particular to GitHub (fan-out by `rel="last"`, checks that read
//! stars backwards and forks newest first, the primary and secondary rate limits).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use sqlx::PgPool;
use tributary::RunOutcome;
use tributary::async_trait;
use tributary::store::runs::RunState;
use tributary::testkit::{Conformance, FakeServer, Harness, Refused, Reply};
use tributary_integrations::github::fake::{FakeGithub, FakeGithubOptions, GithubData, GithubSpec};
use tributary_integrations::github::{GithubIntegration, PLATFORM};

const SPEC: GithubSpec = GithubSpec {
    repositories: 2,
    users: 40,
    stars: 23,
    forks: 7,
    issues: 25,
    pull_every: 3,
    comments: 31,
    review_comments: 11,
};
const PER_PAGE: usize = 5;
const TOKEN: &str = "ghp_test-token-123";
const LISTS: [&str; 5] = [
    "stargazers",
    "forks",
    "issues",
    "issues/comments",
    "pulls/comments",
];
const FORKS: &str = "/api/v3/repos/org0/project0/forks";

struct Github(FakeGithub);

impl Github {
    async fn with(rate_limit: Option<(u32, Duration)>) -> Self {
        let options = FakeGithubOptions {
            token: Some(TOKEN.to_owned()),
            rate_limit,
        };
        Self(
            FakeGithub::start(GithubData::generate(SPEC), options)
                .await
                .unwrap(),
        )
    }

    fn harness(&self, pool: PgPool) -> Harness {
        Harness::with_service(pool, GithubIntegration::new())
            .max_inline_wait(Duration::from_millis(500))
    }
}

#[async_trait]
impl Conformance for Github {
    type Service = GithubIntegration;

    async fn start() -> Self {
        Self::with(None).await
    }

    fn service(&self) -> GithubIntegration {
        GithubIntegration::new()
    }

    fn server(&self) -> &FakeServer {
        self.0.server()
    }

    fn settings(&self) -> Value {
        json!({
            "base_url": self.0.base_url(),
            // as a user types them: GitHub's spelling comes back from the API
            "repositories": ["ORG0/project0", "org1/project1"],
            "per_page": PER_PAGE,
        })
    }

    fn credentials(&self) -> Value {
        json!({"token": TOKEN})
    }

    fn expected_activities(&self) -> BTreeSet<String> {
        self.0.edit(|d| d.expected_activities())
    }

    fn expected_members(&self) -> BTreeSet<String> {
        self.0.edit(|d| d.expected_members())
    }

    /// Per repository: itself and every page of every list.
    fn expected_requests(&self) -> Option<usize> {
        let pages = |n: usize| n.div_ceil(PER_PAGE).max(1);
        Some(
            SPEC.repositories
                * (1 + pages(SPEC.stars)
                    + pages(SPEC.forks)
                    + pages(SPEC.issues)
                    + pages(SPEC.comments)
                    + pages(SPEC.review_comments)),
        )
    }

    fn list_path(&self) -> String {
        FORKS.to_owned()
    }

    fn endless_page(&self) -> Reply {
        let fork = |id: u64| {
            json!({"id": id, "full_name": format!("u{id}/project0"),
                   "created_at": "2024-01-01T00:00:00Z", "owner": {"id": id, "login": format!("u{id}")}})
        };
        let next = format!(
            "<{}/repos/org0/project0/forks?page=2>; rel=\"next\"",
            self.0.base_url()
        );
        Reply::json(json!([fork(1), fork(2)])).header("Link", next)
    }

    /// Stars past the last page, a fork, an issue, comments and a review comment.
    fn add_activities(&self) -> BTreeSet<String> {
        let before = self.expected_activities();
        let now = Utc::now();
        self.0.edit(|d| {
            for u in 30..34 {
                d.add_star(0, u, now);
            }
            d.add_fork(0, 39, now);
            let issue = d.add_issue(0, 12, "Something new", false, now);
            d.add_comment(0, issue, 13, now);
            d.add_comment(0, 1, 14, now);
            d.add_review_comment(0, 3, 15, None, now);
        });
        &self.expected_activities() - &before
    }

    /// GitHub's secondary rate limit: a 403 with `Retry-After`.
    fn rate_limited(&self) -> Reply {
        Reply::error(
            403,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try \
             again.",
        )
        .header("retry-after", "1")
    }

    fn refused_credentials(&self) -> Option<Value> {
        Some(json!({"token": "ghp_wrong-456"}))
    }

    fn refused_settings(&self) -> Vec<Refused> {
        vec![
            Refused::new(
                json!({"base_url": self.0.base_url(), "repositories": []}),
                self.credentials(),
                "`repositories` must name at least one repository as `owner/name`",
            ),
            Refused::new(
                json!({"base_url": "ftp://github", "repositories": ["acme", "a/b", "A/B"],
                       "sources": [], "per_page": 0}),
                json!({"token": 42}),
                "`base_url` must be an http(s) URL without query, such as \
                 `https://api.github.com` or `https://github.example.com/api/v3`, not \
                 `ftp://github`; `repositories[0]` must be a repository as `owner/name`, not \
                 `acme`; `repositories[2]` repeats `A/B`; `sources` must name at least one of \
                 stars, forks, issues, comments, review_comments; `per_page` must be between 1 \
                 and 100, not 0; `credentials.token` must be a non-empty string (a personal \
                 access token or an installation token; without it, public repositories at 60 \
                 requests an hour), or left out",
            ),
            Refused::new(
                json!({"repositories": ["a/b"], "sources": ["watchers"]}),
                self.credentials(),
                "`sources[0]` unknown variant `watchers`, expected one of `stars`, `forks`, \
                 `issues`, `comments`, `review_comments`",
            ),
        ]
    }
}

tributary::conformance_suite!(Github);

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn onboarding_fans_pages_out_and_links_every_activity_to_its_issue(pool: PgPool) {
    let github = Github::start().await;
    let h = github.harness(pool);
    github.0.server().latency(Duration::from_millis(20));
    github.0.edit(|d| d.delete_issue_author(0, 2));
    let report = h
        .onboard(PLATFORM, github.settings(), github.credentials())
        .await;
    report.assert_processed();
    let expected = github.expected_activities();
    assert_eq!(expected.len(), 2 * (23 + 7 + 25 + 31 + 11) - 1);
    assert_eq!(report.activity_ids(), expected);

    // request economy: every page of every list exactly once, nothing else
    assert_eq!(
        github.0.server().request_count(),
        github.expected_requests().unwrap()
    );
    for repo in ["org0/project0", "org1/project1"] {
        for list in LISTS {
            let requests = github.0.requests_to_list(repo, list);
            assert!(requests.iter().all(|r| r.query("per_page") == Some("5")));
        }
        let issues = github.0.requests_to_list(repo, "issues");
        assert!(issues.iter().all(|r| r.query("state") == Some("all")
            && r.query("direction") == Some("asc")
            && r.query("since").is_none()));
        let stars = github.0.requests_to_list(repo, "stargazers");
        assert!(
            stars
                .iter()
                .all(|r| r.header("accept") == Some("application/vnd.github.star+json"))
        );
    }
    let requests = github.0.server().requests();
    assert!(requests.iter().all(|r| {
        r.header("authorization") == Some("Bearer ghp_test-token-123")
            && r.header("x-github-api-version") == Some("2022-11-28")
    }));
    assert!(
        github.0.server().max_in_flight() >= 4,
        "pages fan out and run concurrently: {}",
        github.0.server().max_in_flight()
    );

    // activities are linked to their issue or pull request, members keep their identity
    let repo_id = github.0.edit(|d| d.repos[0].id);
    let (pull_comment, review_reply) = github.0.edit(|d| {
        let repo = &d.repos[0];
        let pulls: Vec<u64> = repo
            .issues
            .iter()
            .filter(|i| i.pull)
            .map(|i| i.number)
            .collect();
        let comment = repo
            .comments
            .iter()
            .find(|c| pulls.contains(&c.number))
            .unwrap()
            .clone();
        let reply = repo
            .review_comments
            .iter()
            .find(|c| c.in_reply_to.is_some())
            .unwrap()
            .clone();
        (comment, reply)
    });
    let stored = report.activity(&format!("issue_comment:{}", pull_comment.id));
    assert_eq!(stored.activity_type, "pull_request-comment");
    assert_eq!(
        stored.source_parent_id,
        Some(format!("issue:{repo_id}:{}", pull_comment.number))
    );
    assert_eq!(stored.channel.as_deref(), Some("org0/project0"));
    assert_eq!(
        report.activity(&format!("issue:{repo_id}:3")).activity_type,
        "pull_request-opened"
    );
    assert_eq!(
        report.activity(&format!("issue:{repo_id}:1")).activity_type,
        "issue-opened"
    );
    assert!(
        !report
            .activity_ids()
            .contains(&format!("issue:{repo_id}:2")),
        "author gone"
    );
    let reply = report.activity(&format!("review_comment:{}", review_reply.id));
    assert_eq!(reply.activity_type, "pull_request-review-comment");
    assert_eq!(
        reply.source_parent_id,
        Some(format!("issue:{repo_id}:{}", review_reply.number))
    );
    assert_eq!(
        reply.attributes["in_reply_to"],
        format!("review_comment:{}", review_reply.in_reply_to.unwrap())
    );
    let star = report
        .activities
        .iter()
        .find(|a| a.activity_type == "star")
        .unwrap();
    assert!(
        star.occurred_at < Utc::now() - chrono::Duration::days(300),
        "starred_at kept"
    );
    let member = report.member("5007");
    assert_eq!(member.username, "dev7");
    assert_eq!(member.url.as_deref(), Some("https://github.test/dev7"));
    assert_eq!(member.attributes["type"], "User");
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_check_reads_stars_backwards_forks_newest_first_and_lists_since_the_window(pool: PgPool) {
    let github = Github::start().await;
    let h = github.harness(pool);
    let onboarding = h
        .onboard(PLATFORM, github.settings(), github.credentials())
        .await;
    let integration = onboarding.integration.id;

    github.0.server().clear_requests();
    let check = h.check_to_end(integration).await;
    check.assert_processed();
    assert_eq!(check.run.activities_created, 0, "a second run adds nothing");
    assert_eq!(check.run.activities_updated, 0);
    // per repository: itself, the last page of stars, the newest forks, and each filtered list
    assert_eq!(github.0.server().request_count(), 2 * 6);
    let stars = github.0.requests_to_list("org0/project0", "stargazers");
    assert_eq!(
        stars[0].query("page"),
        Some("5"),
        "straight to the last page"
    );
    let forks = github.0.requests_to_list("org0/project0", "forks");
    assert_eq!(forks[0].query("sort"), Some("newest"));
    let window_start =
        onboarding.integration.last_processed_at.unwrap() - chrono::Duration::minutes(10);
    for list in ["issues", "issues/comments", "pulls/comments"] {
        let request = &github.0.requests_to_list("org0/project0", list)[0];
        let since = chrono::DateTime::parse_from_rfc3339(request.query("since").unwrap()).unwrap();
        assert_eq!(
            since.timestamp(),
            window_start.timestamp(),
            "{list}: since the last run started, less the overlap"
        );
    }

    // new: stars (past the last page), a fork, an issue, comments, a review comment, an edit
    let now = Utc::now();
    github.add_activities();
    let (edited, old_comment) = github.0.edit(|d| {
        let old = d.repos[0].comments[0].id;
        d.edit_comment(0, old, "edited later", now);
        (old, d.repos[0].comments[0].id)
    });
    assert_eq!(edited, old_comment);
    github.0.server().clear_requests();
    let check = h.check_to_end(integration).await;
    check.assert_processed();
    assert_eq!(check.run.activities_created, 4 + 1 + 1 + 2 + 1);
    assert!(check.run.activities_updated >= 1, "the edited comment");
    assert_eq!(check.activity_ids(), github.expected_activities());
    let stored = check
        .activities
        .iter()
        .find(|a| a.source_id == format!("issue_comment:{edited}"))
        .unwrap();
    assert_eq!(stored.body.as_deref(), Some("edited later"));
    // stars: the new last page, then the one before it, where the window ends
    let mut star_pages: Vec<String> = github
        .0
        .requests_to_list("org0/project0", "stargazers")
        .iter()
        .map(|r| r.query("page").unwrap_or("1").to_owned())
        .collect();
    star_pages.sort();
    assert_eq!(star_pages, ["5", "6"]);
    assert_eq!(github.0.server().request_count(), 2 * 6 + 1);
    assert_eq!(h.runs(integration).await.len(), 3);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_primary_budget_is_paced_and_an_exhausted_one_defers_the_run_to_its_reset(
    pool: PgPool,
) {
    let github = Github::with(Some((20, Duration::from_secs(2)))).await;
    let h = github.harness(pool);
    let (integration, run) = h
        .connect(PLATFORM, github.settings(), github.credentials())
        .await
        .unwrap();
    let (outcomes, final_run) = h
        .run_honouring_deferrals(run.id, Duration::from_secs(60))
        .await;
    assert_eq!(final_run.state, RunState::Processed, "{outcomes:?}");
    let deferrals: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            RunOutcome::Delayed { until, .. } => Some(*until),
            _ => None,
        })
        .collect();
    assert!(
        deferrals.len() >= 2,
        "46 requests on a budget of 20 per 2 s: {outcomes:?}"
    );
    for until in &deferrals {
        let ahead = (*until - Utc::now()).num_seconds();
        assert!(ahead <= 3, "never deferred past the reset: {until}");
    }
    let report = h.report(integration.id, run.id, outcomes).await;
    assert!(report.streams.iter().all(|s| s.retries == 0));
    assert_eq!(report.activity_ids(), github.expected_activities());
    let refused = github.0.server().request_count() - github.expected_requests().unwrap();
    assert!(
        refused <= 8,
        "the budget is read from the headers, so few requests are refused: {refused}"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn an_unknown_repository_is_fatal_with_githubs_message(pool: PgPool) {
    let github = Github::start().await;
    let h = github.harness(pool);
    let settings = json!({"base_url": github.0.base_url(), "repositories": ["org0/nope"]});
    let report = h.onboard(PLATFORM, settings, github.credentials()).await;
    assert_eq!(report.run.state, RunState::Error);
    let errors = report.stream_errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0, "repo:org0/nope");
    assert_eq!(
        errors[0].1.message,
        "GET /api/v3/repos/org0/nope: 404 Not Found: Not Found"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn only_the_configured_sources_are_read(pool: PgPool) {
    let github = Github::start().await;
    let h = github.harness(pool);
    let settings = json!({
        "base_url": github.0.base_url(), "repositories": ["org0/project0"],
        "sources": ["stars", "review_comments"], "per_page": 100
    });
    let report = h.onboard(PLATFORM, settings, github.credentials()).await;
    report.assert_processed();
    let kinds: BTreeSet<&str> = report
        .activities
        .iter()
        .map(|a| a.activity_type.as_str())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["pull_request-review-comment", "star"])
    );
    assert_eq!(report.activities.len(), SPEC.stars + SPEC.review_comments);
    assert_eq!(
        github.0.server().request_count(),
        3,
        "the repository and one page of each"
    );
}
