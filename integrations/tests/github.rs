//! The GitHub integration through the real processor and PostgreSQL, against the fake GitHub
//! built on the testkit's server (served under `/api/v3`, as GitHub Enterprise Server is).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use sqlx::PgPool;
use tributary::store::runs::RunState;
use tributary::testkit::{Fault, Harness, Reply, first_deferral};
use tributary::{ErrorKind, RunOutcome};
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

async fn start(pool: PgPool, options: FakeGithubOptions) -> (Harness, FakeGithub) {
    let github = FakeGithub::start(GithubData::generate(SPEC), options)
        .await
        .unwrap();
    let service = GithubIntegration::new();
    let mut harness = Harness::with_service(pool, service);
    harness.config.max_inline_wait = Duration::from_millis(500);
    (harness, github)
}

async fn setup(pool: PgPool) -> (Harness, FakeGithub) {
    start(
        pool,
        FakeGithubOptions {
            token: Some(TOKEN.to_owned()),
            rate_limit: None,
        },
    )
    .await
}

fn settings(github: &FakeGithub) -> Value {
    json!({
        "base_url": github.base_url(),
        // as a user types them: GitHub's spelling comes back from the API
        "repositories": ["ORG0/project0", "org1/project1"],
        "per_page": PER_PAGE,
    })
}

fn creds() -> Value {
    json!({"token": TOKEN})
}

fn expected(github: &FakeGithub) -> BTreeSet<String> {
    github.edit(|d| d.expected_activities())
}

/// Requests an onboarding needs: per repository, itself and every page of every list.
fn onboarding_requests() -> usize {
    let pages = |n: usize| n.div_ceil(PER_PAGE).max(1);
    SPEC.repositories
        * (1 + pages(SPEC.stars)
            + pages(SPEC.forks)
            + pages(SPEC.issues)
            + pages(SPEC.comments)
            + pages(SPEC.review_comments))
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn onboarding_over_several_pages_produces_exactly_the_expected_members_and_activities(
    pool: PgPool,
) {
    let (h, github) = setup(pool).await;
    github.server().latency(Duration::from_millis(20));
    github.edit(|d| d.delete_issue_author(0, 2));
    let report = h.onboard(PLATFORM, settings(&github), creds()).await;
    assert_eq!(
        report.run.state,
        RunState::Processed,
        "{:?}",
        report.outcomes
    );

    let expected = expected(&github);
    assert_eq!(expected.len(), 2 * (23 + 7 + 25 + 31 + 11) - 1);
    assert_eq!(report.activity_ids(), expected);
    assert_eq!(report.run.activities_created as usize, expected.len());
    assert_eq!(report.member_ids(), github.edit(|d| d.expected_members()));

    // request economy: every page of every list exactly once, nothing else
    assert_eq!(github.server().request_count(), onboarding_requests());
    for repo in ["org0/project0", "org1/project1"] {
        for list in LISTS {
            let requests = github.requests_to_list(repo, list);
            let mut pages: Vec<String> = requests
                .iter()
                .map(|r| r.query("page").unwrap_or("1").to_owned())
                .collect();
            pages.sort();
            let before = pages.len();
            pages.dedup();
            assert_eq!(pages.len(), before, "{repo} {list}: a page fetched twice");
            assert!(requests.iter().all(|r| r.query("per_page") == Some("5")));
        }
        let issues = github.requests_to_list(repo, "issues");
        assert!(issues.iter().all(|r| r.query("state") == Some("all")
            && r.query("direction") == Some("asc")
            && r.query("since").is_none()));
        let stars = github.requests_to_list(repo, "stargazers");
        assert!(
            stars
                .iter()
                .all(|r| r.header("accept") == Some("application/vnd.github.star+json"))
        );
    }
    let requests = github.server().requests();
    assert!(requests.iter().all(|r| {
        r.header("authorization") == Some("Bearer ghp_test-token-123")
            && r.header("x-github-api-version") == Some("2022-11-28")
    }));
    assert!(
        github.server().max_in_flight() >= 4,
        "pages fan out and run concurrently: {}",
        github.server().max_in_flight()
    );

    // activities are linked to their issue or pull request, members keep their identity
    let repo_id = github.edit(|d| d.repos[0].id);
    let by_id = |id: &str| {
        report
            .activities
            .iter()
            .find(|a| a.source_id == id)
            .unwrap()
    };
    let (pull_comment, review_reply) = github.edit(|d| {
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
    let stored = by_id(&format!("issue_comment:{}", pull_comment.id));
    assert_eq!(stored.activity_type, "pull_request-comment");
    assert_eq!(
        stored.source_parent_id,
        Some(format!("issue:{repo_id}:{}", pull_comment.number))
    );
    assert_eq!(stored.channel.as_deref(), Some("org0/project0"));
    assert_eq!(
        by_id(&format!("issue:{repo_id}:3")).activity_type,
        "pull_request-opened"
    );
    assert_eq!(
        by_id(&format!("issue:{repo_id}:1")).activity_type,
        "issue-opened"
    );
    assert!(
        !report
            .activity_ids()
            .contains(&format!("issue:{repo_id}:2")),
        "author gone"
    );
    let reply = by_id(&format!("review_comment:{}", review_reply.id));
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
    let member = report
        .members
        .iter()
        .find(|m| m.username == "dev7")
        .unwrap();
    assert_eq!(member.source_id, "5007");
    assert_eq!(member.url.as_deref(), Some("https://github.test/dev7"));
    assert_eq!(member.attributes["type"], "User");
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_check_reads_only_what_is_new(pool: PgPool) {
    let (h, github) = setup(pool).await;
    let onboarding = h.onboard(PLATFORM, settings(&github), creds()).await;
    let integration = onboarding.integration.id;

    github.server().clear_requests();
    let check = h.check_to_end(integration).await;
    assert_eq!(check.run.state, RunState::Processed, "{:?}", check.outcomes);
    assert_eq!(check.run.activities_created, 0, "a second run adds nothing");
    assert_eq!(check.run.activities_updated, 0);
    // per repository: itself, the last page of stars, the newest forks, and each filtered list
    assert_eq!(github.server().request_count(), 2 * 6);
    let stars = github.requests_to_list("org0/project0", "stargazers");
    assert_eq!(
        stars[0].query("page"),
        Some("5"),
        "straight to the last page"
    );
    let forks = github.requests_to_list("org0/project0", "forks");
    assert_eq!(forks[0].query("sort"), Some("newest"));
    let window_start =
        onboarding.integration.last_processed_at.unwrap() - chrono::Duration::minutes(10);
    for list in ["issues", "issues/comments", "pulls/comments"] {
        let request = &github.requests_to_list("org0/project0", list)[0];
        let since = chrono::DateTime::parse_from_rfc3339(request.query("since").unwrap()).unwrap();
        assert_eq!(
            since.timestamp(),
            window_start.timestamp(),
            "{list}: since the last run started, less the overlap"
        );
    }

    // new: stars (past the last page), a fork, an issue, comments, a review comment, an edit
    let now = Utc::now();
    let (edited, old_comment) = github.edit(|d| {
        for u in 30..34 {
            d.add_star(0, u, now);
        }
        d.add_fork(0, 39, now);
        let issue = d.add_issue(0, 12, "Something new", false, now);
        d.add_comment(0, issue, 13, now);
        d.add_comment(0, 1, 14, now);
        d.add_review_comment(0, 3, 15, None, now);
        let old = d.repos[0].comments[0].id;
        d.edit_comment(0, old, "edited later", now);
        (old, d.repos[0].comments[0].id)
    });
    assert_eq!(edited, old_comment);
    github.server().clear_requests();
    let check = h.check_to_end(integration).await;
    assert_eq!(check.run.state, RunState::Processed);
    assert_eq!(check.run.activities_created, 4 + 1 + 1 + 2 + 1);
    assert!(check.run.activities_updated >= 1, "the edited comment");
    assert_eq!(check.activity_ids(), expected(&github));
    let stored = check
        .activities
        .iter()
        .find(|a| a.source_id == format!("issue_comment:{edited}"))
        .unwrap();
    assert_eq!(stored.body.as_deref(), Some("edited later"));
    // stars: the new last page, then the one before it, where the window ends
    let mut star_pages: Vec<String> = github
        .requests_to_list("org0/project0", "stargazers")
        .iter()
        .map(|r| r.query("page").unwrap_or("1").to_owned())
        .collect();
    star_pages.sort();
    assert_eq!(star_pages, ["5", "6"]);
    assert_eq!(github.server().request_count(), 2 * 6 + 1);
    assert_eq!(h.runs(integration).await.len(), 3);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_secondary_rate_limit_in_the_middle_defers_the_run_and_the_resumed_run_loses_nothing(
    pool: PgPool,
) {
    let (h, github) = setup(pool).await;
    github.server().inject_later(
        Fault::on(
            "/api/v3/repos/org1/project1/issues",
            1,
            Reply::error(
                403,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you \
                 try again.",
            )
            .header("retry-after", "2"),
        )
        .after(2),
    );
    let (integration, run) = h
        .connect(PLATFORM, settings(&github), creds())
        .await
        .unwrap();
    let started = Utc::now();
    let (outcomes, final_run) = h
        .run_honouring_deferrals(run.id, Duration::from_secs(60))
        .await;
    assert_eq!(final_run.state, RunState::Processed, "{outcomes:?}");
    let (until, reason) = first_deferral(&outcomes);
    // the refused list, or a stream of the same token stopped by the block that followed
    assert!(
        reason.starts_with("rate limited while processing `"),
        "{reason}"
    );
    let wait = (until - started).num_milliseconds();
    assert!(
        (1_500..=4_000).contains(&wait),
        "deferred to the reset: {wait} ms"
    );

    let report = h.report(integration.id, run.id, outcomes).await;
    assert!(
        report.streams.iter().all(|s| s.retries == 0),
        "a rate limit costs no retry"
    );
    assert_eq!(report.activity_ids(), expected(&github));
    assert_eq!(
        report.activities.len(),
        expected(&github).len(),
        "nothing doubled"
    );
    assert_eq!(
        github.server().request_count(),
        onboarding_requests() + 1,
        "the refused request is the only extra one"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_primary_budget_is_paced_and_an_exhausted_one_defers_the_run_to_its_reset(
    pool: PgPool,
) {
    let (h, github) = start(
        pool,
        FakeGithubOptions {
            token: Some(TOKEN.to_owned()),
            rate_limit: Some((20, Duration::from_secs(2))),
        },
    )
    .await;
    let (integration, run) = h
        .connect(PLATFORM, settings(&github), creds())
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
    assert_eq!(report.activity_ids(), expected(&github));
    let refused = github.server().request_count() - onboarding_requests();
    assert!(
        refused <= 8,
        "the budget is read from the headers, so few requests are refused: {refused}"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_burst_of_5xx_is_retried(pool: PgPool) {
    let (h, github) = setup(pool).await;
    github.server().inject(Fault::on(
        "/api/v3/repos/org0/project0/",
        3,
        Reply::status(502),
    ));
    let report = h.onboard(PLATFORM, settings(&github), creds()).await;
    assert_eq!(
        report.run.state,
        RunState::Processed,
        "{:?}",
        report.outcomes
    );
    assert_eq!(report.retries(), 3);
    assert_eq!(report.activity_ids(), expected(&github));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_malformed_body_is_a_stream_error_naming_the_field(pool: PgPool) {
    let (h, github) = setup(pool).await;
    github.server().inject(Fault::on(
        "/api/v3/repos/org1/project1/pulls/comments",
        1,
        Reply::malformed(
            r#"[{"id": 1, "html_url": "https://github.test/x", "user": null,
                 "pull_request_url": "https://x/pulls/1", "created_at": "2024-01-01T00:00:00Z",
                 "updated_at": "yesterday"}]"#,
        ),
    ));
    let report = h.onboard(PLATFORM, settings(&github), creds()).await;
    assert_eq!(report.run.state, RunState::Error);
    let errors = report.stream_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (identifier, error) = &errors[0];
    assert_eq!(identifier, "review_comments:org1/project1");
    assert_eq!(error.kind, ErrorKind::Fatal);
    assert!(
        error.message.starts_with(
            "GET /api/v3/repos/org1/project1/pulls/comments: malformed body at `[0].updated_at`: \
             input contains invalid characters"
        ),
        "{}",
        error.message
    );
    let missing = expected(&github).len() - report.activities.len();
    assert_eq!(
        missing, 11,
        "only that list (whose pages were never fanned out) is missing"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_wrong_token_or_an_unknown_repository_is_fatal_with_githubs_message(pool: PgPool) {
    let (h, github) = setup(pool).await;
    let report = h
        .onboard(
            PLATFORM,
            settings(&github),
            json!({"token": "ghp_wrong-456"}),
        )
        .await;
    assert_eq!(report.run.state, RunState::Error);
    let (_, error) = &report.stream_errors()[0];
    assert_eq!(
        error.message,
        "GET /api/v3/repos/ORG0/project0: 401 Unauthorized: bad credentials"
    );
    let stored = serde_json::to_string(
        &report
            .streams
            .iter()
            .map(|s| (&s.data, &s.error))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!stored.contains("wrong-456"), "{stored}");

    let settings = json!({"base_url": github.base_url(), "repositories": ["org0/nope"]});
    let report = h.onboard(PLATFORM, settings, creds()).await;
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
    let (h, github) = setup(pool).await;
    let settings = json!({
        "base_url": github.base_url(), "repositories": ["org0/project0"],
        "sources": ["stars", "review_comments"], "per_page": 100
    });
    let report = h.onboard(PLATFORM, settings, creds()).await;
    assert_eq!(report.run.state, RunState::Processed);
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
        github.server().request_count(),
        3,
        "the repository and one page of each"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_github_that_repeats_a_page_ends_the_stream_with_a_clear_error(pool: PgPool) {
    let (h, github) = setup(pool).await;
    let fork = |id: u64| {
        json!({"id": id, "full_name": format!("u{id}/project0"), "created_at": "2024-01-01T00:00:00Z",
               "owner": {"id": id, "login": format!("u{id}")}})
    };
    let next = format!(
        "<{}/repos/org0/project0/forks?page=2>; rel=\"next\"",
        github.base_url()
    );
    github.server().route(
        "/api/v3/repos/org0/project0/forks",
        [Reply::json(json!([fork(1), fork(2)])).header("Link", next)],
    );
    let settings = json!({
        "base_url": github.base_url(), "repositories": ["org0/project0"], "sources": ["forks"]
    });
    let report = h.onboard(PLATFORM, settings, creds()).await;
    assert_eq!(report.run.state, RunState::Error);
    let errors = report.stream_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].0.starts_with("forks:org0/project0#page="),
        "{}",
        errors[0].0
    );
    assert!(
        errors[0].1.message.starts_with("pagination loops:"),
        "{}",
        errors[0].1.message
    );
    assert_eq!(report.activities.len(), 2, "the first page is kept");
    assert_eq!(
        github.server().request_count(),
        3,
        "not followed any further"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn settings_that_are_missing_or_wrong_are_refused_at_connect_time(pool: PgPool) {
    let (h, github) = setup(pool).await;
    let refused = |settings: Value, creds: Value| {
        let h = h.clone();
        async move { h.refused(PLATFORM, settings, creds).await }
    };
    assert_eq!(
        refused(
            json!({"base_url": github.base_url(), "repositories": []}),
            creds()
        )
        .await,
        "settings for platform `github` refused: invalid settings: `repositories` must name at \
         least one repository as `owner/name`"
    );
    assert_eq!(
        refused(
            json!({"base_url": "ftp://github", "repositories": ["acme"], "per_page": 0}),
            json!({"token": 42})
        )
        .await,
        "settings for platform `github` refused: invalid settings: `base_url` must be an \
         http(s) URL without query, such as `https://api.github.com` or \
         `https://github.example.com/api/v3`, not `ftp://github`; `repositories[0]` must be a \
         repository as `owner/name`, not `acme`; `per_page` must be between 1 and 100, not 0; \
         `credentials.token` must be a non-empty string (a personal access token or an \
         installation token), or left out for public repositories (60 requests an hour)"
    );
    assert!(
        refused(json!({"repositories": ["a/b"], "repos": ["x/y"]}), creds())
            .await
            .contains("unknown field `repos`")
    );
    assert_eq!(
        h.integration_count().await,
        0,
        "nothing is created when settings are refused"
    );
    assert_eq!(github.server().request_count(), 0);
    let registry = tributary_integrations::registry().unwrap();
    assert!(registry.get(PLATFORM).is_ok(), "register_all knows github");
}
