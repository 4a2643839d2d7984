//! The Reddit integration through the real processor and PostgreSQL, against its fake: the
//! conformance suite, and what is particular to Reddit (the OAuth2 token refreshed mid-run after
//! a 401, collapsed comment branches expanded in batches, its rate-limit headers).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use chrono::Utc;
use serde_json::{Value, json};
use sqlx::PgPool;
use tributary::async_trait;
use tributary::testkit::{Conformance, FakeServer, Fault, Harness, Refused, Reply, first_deferral};
use tributary_integrations::reddit::fake::{
    FakeReddit, RedditData, RedditSpec, TOKEN_PATH, budget,
};
use tributary_integrations::reddit::{PLATFORM, RedditIntegration};

const SPEC: RedditSpec = RedditSpec {
    subreddits: 3,
    users: 6,
    posts_per_subreddit: 8,
    comments_per_post: 4,
    reply_depth: 2,
};
const SUBREDDITS: [&str; 2] = ["sub0", "sub1"];
const SEARCHES: [&str; 1] = ["rust"];
const PER_PAGE: usize = 5;
const CLIENT_ID: &str = "reddit-app-id";
const SECRET: &str = "reddit-app-secret";
const USER_AGENT: &str = "server:tributary-test:1.0 (by /u/tributary)";

struct Reddit(FakeReddit);

#[async_trait]
impl Conformance for Reddit {
    type Service = RedditIntegration;

    async fn start() -> Self {
        Self(
            FakeReddit::start(RedditData::generate(SPEC), CLIENT_ID, SECRET, 86_400)
                .await
                .unwrap(),
        )
    }

    fn service(&self) -> RedditIntegration {
        RedditIntegration
    }

    fn server(&self) -> &FakeServer {
        self.0.server()
    }

    fn settings(&self) -> Value {
        json!({
            "base_url": self.0.base_url(),
            "token_url": self.0.token_url(),
            "subreddits": SUBREDDITS,
            "searches": SEARCHES,
            "per_page": PER_PAGE,
            "max_requests_per_minute": 6000,
            "user_agent": USER_AGENT,
        })
    }

    fn credentials(&self) -> Value {
        json!({"client_id": CLIENT_ID, "client_secret": SECRET})
    }

    fn expected_activities(&self) -> BTreeSet<String> {
        self.0
            .edit(|d| d.expected_activities(&SUBREDDITS, &SEARCHES))
    }

    fn expected_members(&self) -> BTreeSet<String> {
        self.0.edit(|d| d.expected_members(&SUBREDDITS, &SEARCHES))
    }

    fn expected_requests(&self) -> Option<usize> {
        Some(
            self.0
                .edit(|d| d.expected_requests(&SUBREDDITS, &SEARCHES, PER_PAGE)),
        )
    }

    fn list_path(&self) -> String {
        "/r/sub0/new".to_owned()
    }

    fn endless_page(&self) -> Reply {
        let children: Vec<Value> = (1..=PER_PAGE)
            .map(|i| {
                json!({"kind": "t3", "data": {
                    "id": format!("p{i}"), "subreddit": "sub0", "title": "again", "author": "user0",
                    "author_fullname": "t2_u0", "created_utc": 1_735_689_600.0,
                    "permalink": format!("/r/sub0/comments/p{i}/again/"), "num_comments": 0
                }})
            })
            .collect();
        Reply::json(json!({"kind": "Listing", "data": {"after": "t3_p5", "children": children}}))
    }

    /// A new post with a comment in a configured subreddit, and a late reply on an old post.
    fn add_activities(&self) -> BTreeSet<String> {
        self.0.edit(|d| {
            d.set_clock(Utc::now());
            let old = d.posts[0].id.clone();
            let top = d
                .comments
                .iter()
                .find(|c| c.post == old && c.parent.is_none())
                .unwrap()
                .id
                .clone();
            let late = d.add_comment(&old, Some(&top), Some(2));
            let post = d.add_post("sub1", Some(3), "Fresh news");
            let first = d.add_comment(&post, None, Some(4));
            [
                format!("comment:{late}"),
                format!("post:{post}"),
                format!("comment:{first}"),
            ]
            .into()
        })
    }

    fn refused_credentials(&self) -> Option<Value> {
        Some(json!({"client_id": CLIENT_ID, "client_secret": "wrong-secret-456"}))
    }

    /// Reddit's own 429: no `Retry-After`, the budget spent, the reset in seconds from now.
    fn rate_limited(&self) -> Reply {
        Reply::error(429, "Too Many Requests")
            .header("x-ratelimit-used", "1000")
            .header("x-ratelimit-remaining", "0.0")
            .header("x-ratelimit-reset", "1")
    }

    fn refused_settings(&self) -> Vec<Refused> {
        vec![
            Refused::new(
                json!({"base_url": self.0.base_url()}),
                self.credentials(),
                "name at least one of `subreddits` or `searches` (subreddits or keyword searches \
                 to read)",
            ),
            Refused::new(
                json!({"subreddits": ["ok", "bad name", "r/OK"], "searches": [" "], "per_page": 101,
                       "token_url": "ftp://x", "user_agent": " "}),
                json!({"client_id": CLIENT_ID}),
                "`token_url` must be an http(s) URL without query, such as \
                 `https://www.reddit.com/api/v1/access_token`, not `ftp://x`; `subreddits[1]` \
                 must be a subreddit name (letters, digits, - and _), not `bad name`; \
                 `subreddits[2]` repeats `ok`; `searches[0]` must not be empty; `per_page` must \
                 be between 1 and 100, not 101; `user_agent` must describe the application, \
                 such as `server:myapp:1.0 (by /u/me)`; `credentials.client_secret` is required \
                 (the application's secret)",
            ),
        ]
    }
}

tributary::conformance_suite!(Reddit);

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_token_is_refreshed_mid_run_after_a_401(pool: PgPool) {
    let reddit = Reddit::start().await;
    let h = Harness::with_service(pool, RedditIntegration);
    // the third thread read is refused: its token was revoked early
    reddit
        .server()
        .inject_later(Fault::on("/comments/", 1, Reply::error(401, "Unauthorized")).after(2));
    let report = h
        .onboard(PLATFORM, reddit.settings(), reddit.credentials())
        .await;
    report.assert_processed();
    assert_eq!(report.activity_ids(), reddit.expected_activities());
    assert_eq!(reddit.0.issuer().issued(), 2, "one token, then one refresh");
    assert_eq!(report.retries(), 0, "the refresh costs the stream no retry");
    let requests = reddit.server().requests();
    assert_eq!(requests.iter().filter(|r| r.path == TOKEN_PATH).count(), 2);
    // the application's identity on every request; the API only ever sees a bearer token
    assert!(
        requests
            .iter()
            .all(|r| r.header("user-agent") == Some(USER_AGENT))
    );
    for r in requests.iter().filter(|r| r.path != TOKEN_PATH) {
        let auth = r.header("authorization").unwrap();
        assert!(auth.starts_with("Bearer token-"), "{auth}");
        assert_eq!(r.query("raw_json"), Some("1"));
    }
    // no token in what is stored
    let stored = serde_json::to_string(&(
        report
            .streams
            .iter()
            .map(|s| (&s.data, &s.page))
            .collect::<Vec<_>>(),
        &report.run.pipeline_data,
    ))
    .unwrap();
    assert!(!stored.contains("token-") && !stored.contains(SECRET));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn collapsed_branches_are_expanded_in_batches_of_a_hundred(pool: PgPool) {
    let reddit = Reddit::start().await;
    let h = Harness::with_service(pool, RedditIntegration);
    // a busy post: 130 top-level comments, the first answered twice
    let (post, first) = reddit.0.edit(|d| {
        let post = d.add_post("sub0", Some(0), "A busy thread");
        let first = d.add_comment(&post, None, Some(2));
        d.add_comment(&post, Some(&first), Some(3));
        for i in 0..129 {
            d.add_comment(&post, None, Some(i % 6));
        }
        (post, first)
    });
    let collapsed = reddit.0.edit(|d| d.collapsed(&post));
    assert_eq!(collapsed.len(), 127, "all but the shown three");
    let report = h
        .onboard(PLATFORM, reddit.settings(), reddit.credentials())
        .await;
    report.assert_processed();
    assert_eq!(report.activity_ids(), reddit.expected_activities());
    assert_eq!(
        reddit.server().request_count(),
        reddit.expected_requests().unwrap(),
        "each batch once"
    );
    let batches: Vec<Vec<String>> = reddit
        .server()
        .requests()
        .iter()
        .filter(|r| {
            r.path == "/api/morechildren" && r.query("link_id") == Some(&format!("t3_{post}"))
        })
        .map(|r| {
            r.query("children")
                .unwrap()
                .split(',')
                .map(str::to_owned)
                .collect()
        })
        .collect();
    let mut sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [27, 100]);
    let asked: BTreeSet<String> = batches.into_iter().flatten().collect();
    assert_eq!(asked, collapsed.into_iter().collect());

    // replies name what they answer; members are keyed by account fullname
    let reply = report
        .activities
        .iter()
        .find(|a| a.source_parent_id.as_deref() == Some(format!("comment:{first}").as_str()))
        .unwrap();
    assert_eq!(reply.activity_type, "comment");
    assert_eq!(reply.member_source_id, "t2_u3");
    assert_eq!(
        report
            .activity(&format!("comment:{first}"))
            .source_parent_id,
        Some(format!("post:{post}"))
    );
    let stored_post = report.activity(&format!("post:{post}"));
    assert_eq!(stored_post.channel.as_deref(), Some("sub0"));
    assert_eq!(stored_post.title.as_deref(), Some("A busy thread"));
    let member = report.member("t2_u3");
    assert_eq!(member.username, "user3");
    assert_eq!(
        member.url.as_deref(),
        Some("https://www.reddit.com/user/user3")
    );
    // a deleted account is no member, and its posts and comments no activities
    assert!(!report.member_ids().contains("t2_u1"));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_check_reads_new_comments_on_old_posts_from_the_subreddit_listing(pool: PgPool) {
    let reddit = Reddit::start().await;
    let h = Harness::with_service(pool, RedditIntegration);
    let onboarding = h
        .onboard(PLATFORM, reddit.settings(), reddit.credentials())
        .await;
    onboarding.assert_processed();
    let new = reddit.add_activities();
    reddit.server().clear_requests();
    let check = h.check_to_end(onboarding.integration.id).await;
    check.assert_processed();
    assert!(new.is_subset(&check.activity_ids()));
    let paths: Vec<String> = reddit
        .server()
        .requests()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert!(
        !paths.iter().any(|p| p.starts_with("/comments/")),
        "no tree read again: {paths:?}"
    );
    assert_eq!(
        paths.iter().filter(|p| p.ends_with("/comments")).count(),
        SUBREDDITS.len(),
        "one page of each subreddit's newest comments"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_spent_budget_defers_the_run_by_the_seconds_reddit_gives(pool: PgPool) {
    let reddit = Reddit::start().await;
    // 6 requests per 10 minutes: `x-ratelimit-remaining: 0.0` and `x-ratelimit-reset: 600`
    // (seconds from now) after the sixth
    reddit
        .server()
        .budget(budget(6, std::time::Duration::from_secs(600)));
    let h = Harness::with_service(pool, RedditIntegration)
        .max_inline_wait(std::time::Duration::from_millis(100));
    let (_, run) = h
        .connect(PLATFORM, reddit.settings(), reddit.credentials())
        .await
        .unwrap();
    let outcome = h.process(run.id).await;
    let (until, reason) = first_deferral(std::slice::from_ref(&outcome));
    let wait = (until - Utc::now()).num_seconds();
    assert!(
        (590..=601).contains(&wait),
        "deferred to the reset 600 s away (not to 1970, not decades ahead): {wait} s ({reason})"
    );
    // the budget counts the token request; streams run four at a time, so a few may have been in
    // flight when the budget ran out, but nothing goes out after
    let sent = reddit.server().request_count();
    assert!((6..=10).contains(&sent), "{sent} requests");
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_deep_thread_is_continued_where_the_tree_stops(pool: PgPool) {
    let reddit = Reddit::start().await;
    let h = Harness::with_service(pool, RedditIntegration);
    // a chain of ten replies: the tree shows four levels, the rest is read as threads of their own
    let (post, chain) = reddit.0.edit(|d| {
        let post = d.add_post("sub1", Some(2), "Deep");
        let mut chain = vec![d.add_comment(&post, None, Some(3))];
        for i in 0..10 {
            let parent = chain.last().cloned();
            chain.push(d.add_comment(&post, parent.as_deref(), Some(i % 6)));
        }
        (post, chain)
    });
    let continued = reddit.0.edit(|d| d.continuations(&post));
    assert!(continued >= 2, "{continued}");
    let report = h
        .onboard(PLATFORM, reddit.settings(), reddit.credentials())
        .await;
    report.assert_processed();
    assert_eq!(report.activity_ids(), reddit.expected_activities());
    assert_eq!(
        reddit.server().request_count(),
        reddit.expected_requests().unwrap()
    );
    let focused: Vec<String> = reddit
        .server()
        .requests()
        .iter()
        .filter(|r| r.path == format!("/comments/{post}"))
        .filter_map(|r| r.query("comment").map(str::to_owned))
        .collect();
    assert_eq!(focused.len(), continued);
    let deepest = chain.last().unwrap();
    assert_eq!(
        report
            .activity(&format!("comment:{deepest}"))
            .source_parent_id,
        Some(format!("comment:{}", chain[chain.len() - 2]))
    );
}
