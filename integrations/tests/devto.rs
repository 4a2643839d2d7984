//! The Dev.to / Forem integration through the real processor and PostgreSQL, against the fake
//! Forem built on the testkit's server: the conformance suite, and what is particular to Forem
//! (comment trees flattened with their parents, threads fetched only when commented).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use chrono::Utc;
use serde_json::{Value, json};
use sqlx::PgPool;
use tributary::async_trait;
use tributary::testkit::{Conformance, FakeServer, Harness, Refused, Reply};
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

struct Forem(FakeForem);

#[async_trait]
impl Conformance for Forem {
    type Service = DevtoIntegration;

    async fn start() -> Self {
        Self(
            FakeForem::start(ForemData::generate(SPEC), Some(KEY))
                .await
                .unwrap(),
        )
    }

    fn service(&self) -> DevtoIntegration {
        DevtoIntegration
    }

    fn server(&self) -> &FakeServer {
        self.0.server()
    }

    fn settings(&self) -> Value {
        json!({
            "base_url": self.0.base_url(),
            "users": USERS,
            "organizations": ORGS,
            "per_page": PER_PAGE,
            "max_requests_per_second": 100,
        })
    }

    fn credentials(&self) -> Value {
        json!({"api_key": KEY})
    }

    fn expected_activities(&self) -> BTreeSet<String> {
        self.0.edit(|d| d.expected_activities(&USERS, &ORGS))
    }

    fn expected_members(&self) -> BTreeSet<String> {
        self.0.edit(|d| d.expected_members(&USERS, &ORGS))
    }

    fn expected_requests(&self) -> Option<usize> {
        let (list_pages, commented) = expected_requests(&self.0);
        Some(list_pages + commented)
    }

    fn list_path(&self) -> String {
        "/api/articles".to_owned()
    }

    fn endless_page(&self) -> Reply {
        let page: Vec<Value> = (1..=PER_PAGE)
            .map(|id| {
                json!({
                    "id": id, "title": format!("Article {id}"),
                    "url": format!("https://forem.test/a/{id}"),
                    "published_at": "2025-01-01T00:00:00Z", "comments_count": 0,
                    "user": {"user_id": 7, "username": "user0"}
                })
            })
            .collect();
        Reply::json(page)
    }

    /// A new article with a comment, and a late reply deep in an old thread.
    fn add_activities(&self) -> BTreeSet<String> {
        let now = Utc::now();
        self.0.edit(|d| {
            let old = d.articles_of(&USERS, &ORGS)[2].id;
            let deep = d.comments[&old][0].children[0].id_code.clone();
            let late = d.add_comment(old, Some(&deep), 3, now);
            let new = d.add_article(0, None, "Fresh news", now);
            let first = d.add_comment(new, None, 4, now);
            [
                format!("comment:{late}"),
                format!("article:{new}"),
                format!("comment:{first}"),
            ]
            .into()
        })
    }

    fn refused_credentials(&self) -> Option<Value> {
        Some(json!({"api_key": "wrong-key-456"}))
    }

    fn refused_settings(&self) -> Vec<Refused> {
        vec![
            Refused::new(
                json!({"base_url": self.0.base_url()}),
                self.credentials(),
                "name at least one of `organizations` or `users` (usernames whose articles to \
                 read)",
            ),
            Refused::new(
                json!({"base_url": "ftp://forem", "users": ["ok", "bad name", "OK"], "per_page": 0,
                       "max_requests_per_second": 0}),
                json!({"api_key": 42}),
                "`base_url` must be an http(s) URL without query, such as `https://dev.to/api`, \
                 not `ftp://forem`; `users[1]` must be a username (letters, digits, - and _), \
                 not `bad name`; `users[2]` repeats `ok`; `per_page` must be between 1 and 1000, \
                 not 0; `max_requests_per_second` must be between 1 and 100, not 0; \
                 `credentials.api_key` must be a non-empty string (a DEV API key), or left out",
            ),
            Refused::new(
                json!({"users": ["ben"], "orgs": ["x"]}),
                self.credentials(),
                "unknown field `orgs`, expected one of `base_url`, `organizations`, `users`, \
                 `per_page`, `max_requests_per_second`",
            ),
        ]
    }
}

tributary::conformance_suite!(Forem);

/// Article list pages each source needs, and the articles whose comments are fetched.
fn expected_requests(forem: &FakeForem) -> (usize, usize) {
    forem.edit(|d| d.expected_requests(&USERS, &ORGS, PER_PAGE))
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
async fn comment_trees_are_flattened_with_their_parents_and_fetched_once_when_commented(
    pool: PgPool,
) {
    let forem = Forem::start().await;
    let h = Harness::with_service(pool, DevtoIntegration);
    forem.server().latency(std::time::Duration::from_millis(30));
    // a comment whose author left: no activity, its replies still count
    let orphan = forem.0.edit(|d| {
        let article = d.articles_of(&USERS, &ORGS)[1].id;
        let id = d.comments[&article][1].id_code.clone();
        d.delete_comment_author(&id);
        (id, d.comments[&article][1].children[0].id_code.clone())
    });
    let report = h
        .onboard(PLATFORM, forem.settings(), forem.credentials())
        .await;
    report.assert_processed();
    assert_eq!(report.activity_ids(), forem.expected_activities());

    // every commented article's thread once; the key and Forem's media type on every request
    let (_, commented) = expected_requests(&forem.0);
    let threads = comment_requests(&forem.0);
    let distinct: BTreeSet<&String> = threads.iter().collect();
    assert_eq!(threads.len(), commented, "only articles with comments");
    assert_eq!(distinct.len(), threads.len(), "no thread fetched twice");
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
        "streams run concurrently"
    );

    assert!(
        !report
            .activity_ids()
            .contains(&format!("comment:{}", orphan.0))
    );
    assert_eq!(
        report
            .activity(&format!("comment:{}", orphan.1))
            .source_parent_id,
        Some(format!("comment:{}", orphan.0))
    );
    // nested replies are flattened with their parents
    let (article_id, top, reply) = forem.0.edit(|d| {
        let article = d.articles_of(&USERS, &ORGS)[0];
        let tree = &d.comments[&article.id];
        (
            article.id,
            tree[0].id_code.clone(),
            tree[0].children[0].clone(),
        )
    });
    assert_eq!(
        report
            .activity(&format!("comment:{top}"))
            .source_parent_id
            .as_deref(),
        Some(format!("article:{article_id}").as_str())
    );
    let stored = report.activity(&format!("comment:{}", reply.id_code));
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
    let member = report.member("1001");
    assert_eq!(member.username, "user1");
    assert_eq!(member.display_name.as_deref(), Some("User 1"));
    assert_eq!(member.attributes["github_username"], "gh-user1");
    assert!(member.url.as_deref().unwrap().ends_with("/user1"));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_check_fetches_only_the_threads_commented_since(pool: PgPool) {
    let forem = Forem::start().await;
    let h = Harness::with_service(pool, DevtoIntegration);
    let onboarding = h
        .onboard(PLATFORM, forem.settings(), forem.credentials())
        .await;
    let (list_pages, _) = expected_requests(&forem.0);

    forem.server().clear_requests();
    h.check_to_end(onboarding.integration.id).await;
    assert!(
        comment_requests(&forem.0).is_empty(),
        "no thread without new comments"
    );
    assert_eq!(forem.server().request_count(), list_pages);

    let now = Utc::now();
    let (old_article, new_article) = forem.0.edit(|d| {
        let old = d.articles_of(&USERS, &ORGS)[2].id;
        let deep = d.comments[&old][0].children[0].id_code.clone();
        d.add_comment(old, Some(&deep), 3, now);
        let new = d.add_article(0, None, "Fresh news", now);
        d.add_comment(new, None, 4, now);
        (old, new)
    });
    forem.server().clear_requests();
    let check = h.check_to_end(onboarding.integration.id).await;
    assert_eq!(check.run.activities_created, 3);
    let mut threads = comment_requests(&forem.0);
    threads.sort();
    let mut wanted = vec![old_article.to_string(), new_article.to_string()];
    wanted.sort();
    assert_eq!(threads, wanted, "only the threads with new comments");
}
