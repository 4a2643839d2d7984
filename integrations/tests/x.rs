//! The X integration through the real processor and PostgreSQL, against its fake: the
//! conformance suite, and what is particular to X (an epoch reset deferring minutes, not years;
//! the monthly read cap reported by name; authors from expansions; `since_id` for checks).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use sqlx::PgPool;
use tributary::async_trait;
use tributary::testkit::{Conformance, FakeServer, Fault, Harness, Refused, Reply, first_deferral};
use tributary_integrations::x::fake::{FakeX, XData, XSpec, problem};
use tributary_integrations::x::{PLATFORM, XIntegration, snowflake_at};

const SPEC: XSpec = XSpec {
    users: 5,
    mentions: 14,
    hashtag_posts: 12,
};
const ACCOUNT: &str = "1000";
const SEARCHES: [&str; 1] = ["#rustlang"];
const PER_PAGE: usize = 10;
const TOKEN: &str = "x-bearer-token-123";

struct X(FakeX);

#[async_trait]
impl Conformance for X {
    type Service = XIntegration;

    async fn start() -> Self {
        Self(FakeX::start(XData::generate(SPEC), TOKEN).await.unwrap())
    }

    fn service(&self) -> XIntegration {
        XIntegration
    }

    fn server(&self) -> &FakeServer {
        self.0.server()
    }

    fn settings(&self) -> Value {
        json!({
            "base_url": self.0.base_url(),
            "account_id": ACCOUNT,
            "searches": SEARCHES,
            "per_page": PER_PAGE,
        })
    }

    fn credentials(&self) -> Value {
        json!({"bearer_token": TOKEN})
    }

    fn expected_activities(&self) -> BTreeSet<String> {
        self.0
            .edit(|d| d.expected_activities(Some(ACCOUNT), &SEARCHES))
    }

    fn expected_members(&self) -> BTreeSet<String> {
        self.0
            .edit(|d| d.expected_members(Some(ACCOUNT), &SEARCHES))
    }

    fn expected_requests(&self) -> Option<usize> {
        Some(
            self.0
                .edit(|d| d.expected_requests(Some(ACCOUNT), &SEARCHES, PER_PAGE)),
        )
    }

    fn list_path(&self) -> String {
        format!("/2/users/{ACCOUNT}/mentions")
    }

    fn endless_page(&self) -> Reply {
        let data: Vec<Value> = (1..=PER_PAGE)
            .map(|i| {
                json!({"id": i.to_string(), "text": "again", "author_id": "1001",
                       "created_at": "2025-01-01T00:00:00.000Z"})
            })
            .collect();
        Reply::json(json!({"data": data, "meta": {"result_count": PER_PAGE, "next_token": "same"}}))
    }

    /// A new mention, a reply to it and a new hashtag post.
    fn add_activities(&self) -> BTreeSet<String> {
        self.0.edit(|d| {
            d.set_clock(Utc::now());
            let mention = d.add_post(2, "@user0 news", vec![0], None);
            let reply = d.add_post(3, "@user0 indeed", vec![0], Some(mention));
            let tagged = d.add_post(4, "shipping #rustlang 2.0", Vec::new(), None);
            [mention, reply, tagged]
                .iter()
                .map(|id| format!("tweet:{id}"))
                .collect()
        })
    }

    fn refused_credentials(&self) -> Option<Value> {
        Some(json!({"bearer_token": "wrong-token-456"}))
    }

    /// X's 429: the window spent, its reset an epoch time a second away.
    fn rate_limited(&self) -> Reply {
        problem(429, "Too Many Requests", "Too Many Requests")
            .header("x-rate-limit-limit", "450")
            .header("x-rate-limit-remaining", "0")
            .header(
                "x-rate-limit-reset",
                (Utc::now().timestamp() + 1).to_string(),
            )
    }

    fn refused_settings(&self) -> Vec<Refused> {
        vec![
            Refused::new(
                json!({"base_url": self.0.base_url()}),
                self.credentials(),
                "name at least one of `account_id` or `searches` (an account whose mentions to \
                 read, or searches)",
            ),
            Refused::new(
                json!({"account_id": "@user0", "searches": ["#ok", ""], "per_page": 5}),
                json!({}),
                "`account_id` must be a numeric user id (digits only), not `@user0`; \
                 `searches[1]` must not be empty; `per_page` must be between 10 and 100, not 5; \
                 `credentials.bearer_token` is required (an X app's bearer token)",
            ),
        ]
    }
}

tributary::conformance_suite!(X);

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn an_epoch_reset_defers_the_run_minutes_not_years(pool: PgPool) {
    let x = X::start().await;
    let h = Harness::with_service(pool, XIntegration).max_inline_wait(Duration::from_millis(100));
    let reset = Utc::now().timestamp() + 900;
    x.server().inject(Fault::on(
        "/2/",
        1,
        problem(429, "Too Many Requests", "Too Many Requests")
            .header("x-rate-limit-limit", "450")
            .header("x-rate-limit-remaining", "0")
            .header("x-rate-limit-reset", reset.to_string()),
    ));
    let (_, run) = h
        .connect(PLATFORM, x.settings(), x.credentials())
        .await
        .unwrap();
    let outcome = h.process(run.id).await;
    let (until, reason) = first_deferral(std::slice::from_ref(&outcome));
    let wait = (until - Utc::now()).num_seconds();
    assert!(
        (840..=905).contains(&wait),
        "deferred to the reset, 15 minutes away, not decades: {wait} s ({reason})"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_monthly_read_cap_is_reported_by_name_and_defers_a_day(pool: PgPool) {
    let x = X::start().await;
    let h = Harness::with_service(pool, XIntegration);
    x.0.exhaust_monthly_cap();
    let (_, run) = h
        .connect(PLATFORM, x.settings(), x.credentials())
        .await
        .unwrap();
    let outcome = h.process(run.id).await;
    let (until, reason) = first_deferral(std::slice::from_ref(&outcome));
    assert!(
        reason.contains("X's monthly read cap") && reason.contains("Usage cap exceeded"),
        "{reason}"
    );
    let wait = (until - Utc::now()).num_hours();
    assert!((23..=24).contains(&wait), "{wait} h");
    // the run itself says why it waits, for whoever looks at it
    let stored = h.run(run.id).await;
    assert!(
        stored
            .delay_reason
            .as_deref()
            .is_some_and(|r| r.contains("X's monthly read cap")),
        "{:?}",
        stored.delay_reason
    );
    assert!(
        x.server().request_count() <= 2,
        "the credential stops at the first refusal of each stream"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn authors_come_from_expansions_and_replies_name_their_parent(pool: PgPool) {
    let x = X::start().await;
    let h = Harness::with_service(pool, XIntegration);
    let report = h.onboard(PLATFORM, x.settings(), x.credentials()).await;
    report.assert_processed();
    let requests = x.server().requests();
    assert!(
        requests
            .iter()
            .all(|r| !r.path.starts_with("/2/users/") || r.path.ends_with("/mentions")),
        "no per-user request"
    );
    for r in &requests {
        assert_eq!(r.query("expansions"), Some("author_id"));
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(r.query("since_id"), None, "an onboarding reads everything");
    }
    let types: BTreeSet<&str> = report
        .activities
        .iter()
        .map(|a| a.activity_type.as_str())
        .collect();
    assert_eq!(types, ["hashtag_post", "mention", "reply"].into());
    let (reply, parent) = x.0.edit(|d| {
        let p = d.posts.iter().find(|p| p.reply_to.is_some()).unwrap();
        (p.id, p.reply_to.unwrap())
    });
    let stored = report.activity(&format!("tweet:{reply}"));
    assert_eq!(stored.activity_type, "reply");
    assert_eq!(stored.source_parent_id, Some(format!("tweet:{parent}")));
    let tagged = report
        .activities
        .iter()
        .find(|a| a.activity_type == "hashtag_post")
        .unwrap();
    assert_eq!(tagged.channel.as_deref(), Some("#rustlang"));
    let member = report.member("1002");
    assert_eq!(member.username, "user2");
    assert_eq!(member.display_name.as_deref(), Some("User 2"));
    assert_eq!(member.url.as_deref(), Some("https://x.com/user2"));
    assert!(
        member.attributes["avatar_url"]
            .as_str()
            .unwrap()
            .contains("1002")
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_check_sends_since_id_from_its_window(pool: PgPool) {
    let x = X::start().await;
    let h = Harness::with_service(pool, XIntegration);
    let onboarding = h.onboard(PLATFORM, x.settings(), x.credentials()).await;
    onboarding.assert_processed();
    let before = Utc::now();
    x.server().clear_requests();
    let check = h.check_to_end(onboarding.integration.id).await;
    check.assert_processed();
    let requests = x.server().requests();
    assert_eq!(requests.len(), 2, "one page per stream: nothing new");
    for r in &requests {
        let since: u64 = r.query("since_id").unwrap().parse().unwrap();
        assert!(
            since <= snowflake_at(before),
            "the window starts before the check"
        );
        assert!(
            since >= snowflake_at(before - chrono::Duration::hours(2)),
            "and not long before it"
        );
    }
}
