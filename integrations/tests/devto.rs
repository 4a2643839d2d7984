//! The Dev.to / Forem integration through the real processor and PostgreSQL, against the fake
//! Forem built on the testkit's server.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use sqlx::PgPool;
use tributary::store::runs::RunState;
use tributary::testkit::{Fault, Harness, Reply, first_deferral};
use tributary::{ErrorKind, RunOutcome};
use tributary_integrations::devto::fake::{FakeForem, ForemData, ForemSpec};
use tributary_integrations::devto::{DevtoIntegration, PLATFORM};

const SPEC: ForemSpec = ForemSpec {
    users: 5,
    organizations: 2,
    articles_per_user: 6,
    comments_per_article: 2,
    reply_depth: 2,
};
const USERS: [&str; 2] = ["user0", "user1"];
const ORGS: [&str; 1] = ["org1"];
const PER_PAGE: usize = 4;
const KEY: &str = "devto-api-key-123";

async fn setup(pool: PgPool) -> (Harness, FakeForem) {
    let forem = FakeForem::start(ForemData::generate(SPEC), Some(KEY))
        .await
        .unwrap();
    let service = DevtoIntegration::new().max_inline_wait(Duration::from_millis(500));
    (Harness::with_service(pool, service), forem)
}

fn settings(forem: &FakeForem) -> Value {
    json!({
        "base_url": forem.base_url(),
        "users": USERS,
        "organizations": ORGS,
        "per_page": PER_PAGE,
        "max_requests_per_second": 100,
    })
}

fn creds() -> Value {
    json!({"api_key": KEY})
}

fn expected_activities(forem: &FakeForem) -> BTreeSet<String> {
    forem.edit(|d| d.expected_activities(&USERS, &ORGS))
}

/// Article list pages each source needs, and the articles whose comments are fetched.
fn expected_requests(forem: &FakeForem) -> (usize, usize) {
    forem.edit(|d| {
        let pages = |n: usize| n / PER_PAGE + 1;
        let of_user = |u: &str| d.articles.iter().filter(|a| a.user.username == u).count();
        let of_org = |o: &str| {
            d.articles
                .iter()
                .filter(|a| a.organization.as_ref().is_some_and(|x| x.username == o))
                .count()
        };
        let list_pages = USERS.iter().map(|u| pages(of_user(u))).sum::<usize>()
            + ORGS.iter().map(|o| pages(of_org(o))).sum::<usize>();
        let commented = d
            .articles_of(&USERS, &ORGS)
            .iter()
            .filter(|a| d.comment_count(a.id) > 0)
            .count();
        (list_pages, commented)
    })
}

fn comment_requests(forem: &FakeForem) -> Vec<String> {
    forem
        .server()
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/comments")
        .map(|r| r.query("a_id").unwrap_or_default().to_owned())
        .collect()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn onboarding_over_several_pages_produces_exactly_the_expected_members_and_activities(
    pool: PgPool,
) {
    let (h, forem) = setup(pool).await;
    forem.server().latency(Duration::from_millis(30));
    // a comment whose author left: no activity, its replies still count
    let orphan = forem.edit(|d| {
        let article = d.articles_of(&USERS, &ORGS)[1].id;
        let id = d.comments[&article][1].id_code.clone();
        d.delete_comment_author(&id);
        (id, d.comments[&article][1].children[0].id_code.clone())
    });
    let report = h.onboard(PLATFORM, settings(&forem), creds()).await;
    assert_eq!(
        report.run.state,
        RunState::Processed,
        "{:?}",
        report.outcomes
    );

    let expected = expected_activities(&forem);
    assert!(expected.len() > 60, "a sizeable Forem: {}", expected.len());
    assert_eq!(report.activity_ids(), expected);
    assert_eq!(report.run.activities_created as usize, expected.len());
    assert_eq!(
        report.member_ids(),
        forem.edit(|d| d.expected_members(&USERS, &ORGS))
    );

    // request economy: every list page once, every commented article's thread once, no more
    let (list_pages, commented) = expected_requests(&forem);
    let threads = comment_requests(&forem);
    let distinct: BTreeSet<&String> = threads.iter().collect();
    assert_eq!(threads.len(), commented, "only articles with comments");
    assert_eq!(distinct.len(), threads.len(), "no thread fetched twice");
    assert_eq!(forem.server().request_count(), list_pages + commented);
    let requests = forem.server().requests();
    assert!(requests.iter().all(|r| r.header("api-key") == Some(KEY)));
    assert!(
        requests
            .iter()
            .all(|r| r.header("accept") == Some("application/vnd.forem.api-v1+json"))
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.path != "/api/comments")
            .all(|r| r.query("per_page") == Some("4"))
    );
    assert!(
        forem.server().max_in_flight() >= 2,
        "independent streams run concurrently"
    );

    assert!(
        !report
            .activity_ids()
            .contains(&format!("comment:{}", orphan.0))
    );
    let reply_to_orphan = report
        .activities
        .iter()
        .find(|a| a.source_id == format!("comment:{}", orphan.1))
        .unwrap();
    assert_eq!(
        reply_to_orphan.source_parent_id,
        Some(format!("comment:{}", orphan.0))
    );

    // nested replies are flattened with their parents
    let by_id = |id: &str| {
        report
            .activities
            .iter()
            .find(|a| a.source_id == id)
            .unwrap()
    };
    let (article_id, reply) = forem.edit(|d| {
        let article = d.articles_of(&USERS, &ORGS)[0];
        let tree = &d.comments[&article.id];
        (article.id, tree[0].children[0].clone())
    });
    let top = forem.edit(|d| d.comments[&article_id][0].id_code.clone());
    assert_eq!(
        by_id(&format!("comment:{top}")).source_parent_id.as_deref(),
        Some(format!("article:{article_id}").as_str())
    );
    let stored = by_id(&format!("comment:{}", reply.id_code));
    assert_eq!(
        stored.source_parent_id.as_deref(),
        Some(format!("comment:{top}").as_str())
    );
    assert_eq!(stored.activity_type, "comment");
    assert_eq!(
        stored.member_source_id,
        reply.user.unwrap().user_id.to_string()
    );
    assert_eq!(stored.attributes["depth"], 1);
    // an organization's article happens in the organization; members keep their identity
    let org_article = report
        .activities
        .iter()
        .find(|a| a.activity_type == "article" && a.channel.as_deref() == Some("org1"))
        .unwrap();
    assert_eq!(org_article.attributes["organization"], "org1");
    let member = report
        .members
        .iter()
        .find(|m| m.username == "user1")
        .unwrap();
    assert_eq!(member.source_id, "1001");
    assert_eq!(member.display_name.as_deref(), Some("User 1"));
    assert_eq!(member.attributes["github_username"], "gh-user1");
    assert!(member.url.as_deref().unwrap().ends_with("/user1"));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_check_reads_only_what_is_new(pool: PgPool) {
    let (h, forem) = setup(pool).await;
    let onboarding = h.onboard(PLATFORM, settings(&forem), creds()).await;
    let integration = onboarding.integration.id;
    let (list_pages, _) = expected_requests(&forem);

    forem.server().clear_requests();
    let check = h.check_to_end(integration).await;
    assert_eq!(check.run.state, RunState::Processed);
    assert_eq!(check.run.activities_created, 0, "a second run adds nothing");
    assert_eq!(check.activities.len(), onboarding.activities.len());
    assert!(
        comment_requests(&forem).is_empty(),
        "no thread without new comments is fetched"
    );
    assert_eq!(forem.server().request_count(), list_pages);

    // new: an article (with a comment) and a late reply deep in an old thread
    let now = Utc::now();
    let (old_article, new_article) = forem.edit(|d| {
        let old = d.articles_of(&USERS, &ORGS)[2].id;
        let deep = d.comments[&old][0].children[0].id_code.clone();
        d.add_comment(old, Some(&deep), 3, now);
        let new = d.add_article(0, None, "Fresh news", now);
        d.add_comment(new, None, 4, now);
        (old, new)
    });
    forem.server().clear_requests();
    let check = h.check_to_end(integration).await;
    assert_eq!(check.run.activities_created, 3);
    assert_eq!(check.activity_ids(), expected_activities(&forem));
    assert_eq!(
        h.runs(integration).await.len(),
        3,
        "onboarding and two checks"
    );
    let mut threads = comment_requests(&forem);
    threads.sort();
    let mut wanted = vec![old_article.to_string(), new_article.to_string()];
    wanted.sort();
    assert_eq!(threads, wanted, "only the threads with new comments");
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_429_in_the_middle_defers_the_run_to_the_reset_and_the_resumed_run_loses_nothing(
    pool: PgPool,
) {
    let (h, forem) = setup(pool).await;
    forem
        .server()
        .inject_later(Fault::on("/api/comments", 1, Reply::rate_limited(2)).after(3));
    let (integration, run) = h
        .connect(PLATFORM, settings(&forem), creds())
        .await
        .unwrap();
    let started = Utc::now();
    let (outcomes, final_run) = h
        .run_honouring_deferrals(run.id, Duration::from_secs(60))
        .await;
    assert_eq!(final_run.state, RunState::Processed, "{outcomes:?}");
    let (until, reason) = first_deferral(&outcomes);
    // the refused thread, or a stream of the same key stopped by the block that followed
    assert!(
        reason.starts_with("rate limited while processing `"),
        "{reason}"
    );
    let wait = (until - started).num_milliseconds();
    assert!(
        (1_500..=3_500).contains(&wait),
        "deferred to the reset: {wait} ms"
    );
    assert_eq!(outcomes.last(), Some(&RunOutcome::Processed));

    let report = h.report(integration.id, run.id, outcomes).await;
    assert!(
        report.streams.iter().all(|s| s.retries == 0),
        "a 429 costs no retry"
    );
    assert_eq!(report.activity_ids(), expected_activities(&forem));
    assert_eq!(
        report.activities.len(),
        expected_activities(&forem).len(),
        "nothing doubled"
    );
    let (list_pages, commented) = expected_requests(&forem);
    assert_eq!(
        forem.server().request_count(),
        list_pages + commented + 1,
        "the refused request is the only extra one: a blocked key sends nothing"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_burst_of_5xx_is_retried(pool: PgPool) {
    let (h, forem) = setup(pool).await;
    forem
        .server()
        .inject(Fault::on("/api/", 3, Reply::unavailable()));
    let report = h.onboard(PLATFORM, settings(&forem), creds()).await;
    assert_eq!(
        report.run.state,
        RunState::Processed,
        "{:?}",
        report.outcomes
    );
    assert_eq!(report.retries(), 3);
    assert_eq!(report.activity_ids(), expected_activities(&forem));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_malformed_body_is_a_stream_error_naming_the_field(pool: PgPool) {
    let (h, forem) = setup(pool).await;
    forem.server().inject(Fault::on(
        "/api/comments",
        1,
        Reply::malformed(
            r#"[{"type_of": "comment", "id_code": "zz", "created_at": "2025-01-01T00:00:00Z",
                 "body_html": "<p>x</p>", "children": [],
                 "user": {"username": "x", "user_id": "not-a-number"}}]"#,
        ),
    ));
    let report = h.onboard(PLATFORM, settings(&forem), creds()).await;
    assert_eq!(report.run.state, RunState::Error);
    let errors = report.stream_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (identifier, error) = &errors[0];
    assert!(identifier.starts_with("comments:"), "{identifier}");
    assert_eq!(error.kind, ErrorKind::Fatal);
    assert!(
        error.message.starts_with(
            "GET /api/comments: malformed body at `[0].user.user_id`: invalid type: string \"not-a-number\""
        ),
        "{}",
        error.message
    );
    // every other stream finished: only that thread is missing
    let missing = expected_activities(&forem).len() - report.activities.len();
    assert!(missing > 0 && missing <= 1 + SPEC.comments_per_article * (1 + SPEC.reply_depth));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_wrong_api_key_is_fatal_with_the_platforms_message_and_never_shown(pool: PgPool) {
    let (h, forem) = setup(pool).await;
    let report = h
        .onboard(
            PLATFORM,
            settings(&forem),
            json!({"api_key": "wrong-key-456"}),
        )
        .await;
    assert_eq!(report.run.state, RunState::Error);
    let (_, error) = &report.stream_errors()[0];
    assert!(
        error.message.ends_with("401 Unauthorized: bad credentials"),
        "{}",
        error.message
    );
    let stored = serde_json::to_string(
        &report
            .streams
            .iter()
            .map(|s| (&s.data, &s.error))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!stored.contains("wrong-key"), "{stored}");
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn settings_that_are_missing_or_wrong_are_refused_at_connect_time(pool: PgPool) {
    let (h, forem) = setup(pool).await;
    let refused = |settings: Value, creds: Value| {
        let h = h.clone();
        async move { h.refused(PLATFORM, settings, creds).await }
    };
    assert_eq!(
        refused(json!({"base_url": forem.base_url()}), creds()).await,
        "settings for platform `devto` refused: invalid settings: name at least one of \
         `organizations` or `users` (usernames whose articles to read)"
    );
    assert_eq!(
        refused(
            json!({"base_url": "ftp://forem", "users": ["ok", "bad name"], "per_page": 0}),
            json!({"api_key": 42})
        )
        .await,
        "settings for platform `devto` refused: invalid settings: `base_url` must be an http(s) \
         URL without query, such as `https://dev.to/api`, not `ftp://forem`; `users[1]` must be \
         a username (letters, digits, _ and -), not `bad name`; `per_page` must be between 1 \
         and 1000, not 0; `credentials.api_key` must be a non-empty string (a DEV API key), or \
         left out for public data"
    );
    assert!(
        refused(json!({"users": ["ben"], "orgs": ["x"]}), creds())
            .await
            .contains("unknown field `orgs`")
    );
    assert_eq!(
        h.integration_count().await,
        0,
        "nothing is created when settings are refused"
    );
    assert_eq!(forem.server().request_count(), 0);
    let registry = tributary_integrations::registry().unwrap();
    assert!(registry.get(PLATFORM).is_ok(), "register_all knows devto");
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_forem_that_ignores_the_page_ends_the_stream_with_a_clear_error(pool: PgPool) {
    let (h, forem) = setup(pool).await;
    let same_page: Vec<Value> = (1..=4)
        .map(|id| {
            json!({
                "id": id, "title": format!("Article {id}"), "url": format!("https://forem.test/a/{id}"),
                "published_at": "2025-01-01T00:00:00Z", "comments_count": 0,
                "user": {"user_id": 7, "username": "user0"}
            })
        })
        .collect();
    forem
        .server()
        .route("/api/articles", [Reply::json(same_page)]);
    let settings = json!({
        "base_url": forem.base_url(), "users": ["user0"], "per_page": 4,
        "max_requests_per_second": 100
    });
    let report = h.onboard(PLATFORM, settings, creds()).await;
    assert_eq!(report.run.state, RunState::Error);
    let errors = report.stream_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].0.starts_with("articles:user:user0#page="),
        "{}",
        errors[0].0
    );
    assert_eq!(
        errors[0].1.message,
        "pagination loops: page 2 of `articles:user:user0` repeats page 1 (same items); the API \
         ignores the page it is asked for"
    );
    assert_eq!(report.activities.len(), 4, "the first page is kept");
    assert_eq!(
        forem.server().request_count(),
        2,
        "not followed any further"
    );
}
