//! The Discourse integration through the real processor and PostgreSQL, against its fake: the
//! conformance suite, and what is particular to Discourse — categories read page by page (the
//! page number moves on; the anchor system this replaces dropped page 2), subcategories, a long
//! topic fetched in chunks of post ids, a private forum refusing anonymous readers, and
//! Discourse's own 429 (`extras.wait_seconds`).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use chrono::{Duration as Minutes, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use tributary::async_trait;
use tributary::processor::RunOutcome;
use tributary::testkit::{Conformance, FakeServer, Fault, Harness, Refused, Reply};
use tributary_integrations::discourse::fake::{self, DiscourseData, FakeDiscourse, ForumSpec};
use tributary_integrations::discourse::{DiscourseIntegration, PLATFORM};

const KEY: &str = "discourse-key-123";
const SPEC: ForumSpec = ForumSpec {
    users: 6,
    topics_per_category: 7,
    replies_step: 8,
};
const TOPICS_PER_PAGE: usize = 3;
const POSTS_PER_REQUEST: usize = 20;

struct Forum(FakeDiscourse);

impl Forum {
    fn settings_with(&self, extra: Value) -> Value {
        let mut settings = json!({
            "base_url": self.0.base_url(),
            "topics_per_page": TOPICS_PER_PAGE,
            "posts_per_request": POSTS_PER_REQUEST,
            "max_requests_per_minute": 6000,
        });
        if let (Value::Object(map), Value::Object(extra)) = (&mut settings, extra) {
            map.extend(extra);
        }
        settings
    }
}

#[async_trait]
impl Conformance for Forum {
    type Service = DiscourseIntegration;

    async fn start() -> Self {
        Self(
            FakeDiscourse::start(DiscourseData::generate(SPEC), Some(KEY))
                .await
                .unwrap(),
        )
    }

    fn service(&self) -> DiscourseIntegration {
        DiscourseIntegration
    }

    fn server(&self) -> &FakeServer {
        self.0.server()
    }

    fn settings(&self) -> Value {
        self.settings_with(json!({}))
    }

    fn credentials(&self) -> Value {
        json!({"api_key": KEY, "api_username": "system"})
    }

    fn expected_activities(&self) -> BTreeSet<String> {
        self.0.edit(|d| d.expected_activities())
    }

    fn expected_members(&self) -> BTreeSet<String> {
        self.0.edit(|d| d.expected_members())
    }

    fn expected_requests(&self) -> Option<usize> {
        Some(
            self.0
                .edit(|d| d.expected_requests(TOPICS_PER_PAGE, POSTS_PER_REQUEST)),
        )
    }

    fn list_path(&self) -> String {
        "/c/".to_owned()
    }

    /// A full page of real topics that always says there is more.
    fn endless_page(&self) -> Reply {
        let ids: Vec<u64> = self
            .0
            .edit(|d| d.topics.iter().take(3).map(|t| t.id).collect());
        let topics: Vec<Value> = ids
            .iter()
            .map(|id| {
                json!({"id": id, "title": format!("Topic {id}"), "slug": null, "posts_count": 1,
                       "created_at": "2025-01-01T00:00:00Z", "category_id": 1})
            })
            .collect();
        Reply::json(json!({"topic_list": {
            "can_create_topic": true, "per_page": 3, "topics": topics,
            "more_topics_url": "/c/general/1/l/latest?page=1",
        }}))
    }

    /// A new topic with a reply, and a late reply deep in an old topic.
    fn add_activities(&self) -> BTreeSet<String> {
        let now = Utc::now();
        self.0.edit(|d| {
            let old = d.topics[3].id;
            let late = d.add_post(old, 4, Some(2), now);
            let new = d.add_topic(2, 1, now);
            let reply = d.add_post(new, 2, None, now + Minutes::seconds(1));
            [late, format!("topic:{new}"), reply].into()
        })
    }

    fn refused_credentials(&self) -> Option<Value> {
        Some(json!({"api_key": "wrong-key-456", "api_username": "system"}))
    }

    fn credential_refusal(&self) -> &'static str {
        "The API username or key is invalid"
    }

    fn rate_limited(&self) -> Reply {
        fake::rate_limited(1)
    }

    fn refused_settings(&self) -> Vec<Refused> {
        vec![
            Refused::new(
                json!({"base_url": "ftp://forum", "categories": ["ok", "not ok", "OK"],
                       "topics_per_page": 0, "posts_per_request": 500}),
                json!({"api_key": KEY}),
                "`base_url` must be an http(s) URL without query, such as \
                 `https://meta.discourse.org`, not `ftp://forum`; `categories[1]` must be a \
                 category slug (letters, digits, - and _), not `not ok`; `categories[2]` \
                 repeats `ok`; `topics_per_page` must be between 1 and 100, not 0; \
                 `posts_per_request` must be between 1 and 100, not 500; \
                 `credentials.api_username` is required with an `api_key` (the user the key \
                 acts as, e.g. `system`)",
            ),
            Refused::new(
                json!({"categories": ["dev"]}),
                json!({}),
                "missing field `base_url`",
            ),
        ]
    }
}

tributary::conformance_suite!(Forum);

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn categories_and_subcategories_are_read_page_after_page(pool: PgPool) {
    let forum = Forum::start().await;
    let h = Harness::with_service(pool, DiscourseIntegration);
    let report = h
        .onboard(PLATFORM, forum.settings(), forum.credentials())
        .await;
    report.assert_processed();
    assert_eq!(report.activity_ids(), forum.expected_activities());
    let requests = forum.server().requests();
    // 7 topics, 3 a page: pages 0, 1 and 2 of each category, each once, its own topics only
    for list in ["/c/general/1.json", "/c/dev/2.json", "/c/help/3.json"] {
        let mut pages: Vec<&str> = requests
            .iter()
            .filter(|r| r.path == list)
            .map(|r| r.query("page").unwrap())
            .collect();
        pages.sort_unstable();
        assert_eq!(pages, ["0", "1", "2"], "{list}");
    }
    assert!(
        requests
            .iter()
            .filter(|r| r.path.starts_with("/c/"))
            .all(|r| r.query("no_subcategories") == Some("true"))
    );
    assert!(
        requests
            .iter()
            .all(|r| r.header("api-username") == Some("system"))
    );
    // the subcategory's topics happen in the subcategory; replies link to what they answer
    let help_topic = forum
        .0
        .edit(|d| d.topics.iter().find(|t| t.category_id == 3).unwrap().id);
    let topic = report.activity(&format!("topic:{help_topic}"));
    assert_eq!(topic.channel.as_deref(), Some("help"));
    assert_eq!(topic.activity_type, "topic_created");
    assert_eq!(
        topic.title.as_deref(),
        Some(format!("Topic {help_topic}").as_str())
    );
    let (topic_id, number, reply_to) = forum.0.edit(|d| {
        let p = d.posts.iter().find(|p| p.reply_to.is_some()).unwrap();
        (p.topic_id, p.post_number, p.reply_to.unwrap())
    });
    let reply = report.activity(&format!("post:{topic_id}:{number}"));
    assert_eq!(reply.activity_type, "post_created");
    assert_eq!(
        reply.source_parent_id,
        Some(format!("post:{topic_id}:{reply_to}"))
    );
    // members: Discourse's user id, name, profile and avatar
    let member = report.member("201");
    assert_eq!(member.username, "user1");
    assert_eq!(member.display_name.as_deref(), Some("User 1"));
    assert!(member.url.as_deref().unwrap().ends_with("/u/user1"));
    assert!(
        member.attributes["avatar_url"]
            .as_str()
            .unwrap()
            .ends_with("/user_avatar/forum.test/user1/144/1_2.png")
    );
    assert_eq!(report.member("202").display_name, None, "no name");
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_topic_of_250_posts_is_fetched_in_chunks_of_post_ids(pool: PgPool) {
    let forum = Forum::start().await;
    let long = forum.0.edit(|d| {
        let at = Utc::now() - Minutes::days(30);
        let id = d.add_topic(2, 0, at);
        for n in 1..250 {
            let reply_to = (n % 7 == 0).then(|| n as u64 - 3);
            d.add_post(id, n % 6, reply_to, at + Minutes::minutes(n as i64));
        }
        id
    });
    let h = Harness::with_service(pool, DiscourseIntegration);
    let report = h
        .onboard(
            PLATFORM,
            forum.settings_with(json!({"categories": ["dev"]})),
            forum.credentials(),
        )
        .await;
    report.assert_processed();
    let requests = forum.server().requests();
    let chunks: Vec<Vec<&str>> = requests
        .iter()
        .filter(|r| r.path == format!("/t/{long}/posts.json"))
        .map(|r| {
            r.query
                .iter()
                .filter(|(k, _)| k == "post_ids[]")
                .map(|(_, v)| v.as_str())
                .collect()
        })
        .collect();
    // the topic answer holds the first 20; the other 230 in 12 requests of at most 20 ids
    assert_eq!(chunks.len(), 12, "{chunks:?}");
    assert!(
        chunks
            .iter()
            .all(|c| !c.is_empty() && c.len() <= POSTS_PER_REQUEST)
    );
    let asked: BTreeSet<&str> = chunks.iter().flatten().copied().collect();
    assert_eq!(asked.len(), 230, "no post asked for twice");
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.path == format!("/t/{long}.json"))
            .count(),
        1
    );
    let of_long: Vec<_> = report
        .activities
        .iter()
        .filter(|a| a.attributes["topic_id"] == long)
        .collect();
    assert_eq!(of_long.len(), 250);
    assert_eq!(
        report.activity(&format!("post:{long}:15")).source_parent_id,
        Some(format!("post:{long}:11"))
    );
    assert_eq!(
        report
            .activity(&format!("post:{long}:250"))
            .source_parent_id,
        Some(format!("topic:{long}"))
    );
    assert_eq!(report.retries(), 0);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_private_forum_refuses_anonymous_access_with_a_clear_error(pool: PgPool) {
    let forum = Forum::start().await;
    let h = Harness::with_service(pool, DiscourseIntegration);
    let report = h.onboard(PLATFORM, forum.settings(), json!({})).await;
    assert_eq!(report.run.state, tributary::store::runs::RunState::Error);
    let errors = report.stream_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (identifier, error) = &errors[0];
    assert_eq!(identifier, "categories");
    assert_eq!(error.failures, 1, "not retried");
    assert_eq!(
        error.message,
        "GET /categories.json: 403 Forbidden: You need to be logged in to do that. (this forum \
         refuses anonymous readers: give an `api_key` and an `api_username`)"
    );
    assert_eq!(forum.server().request_count(), 1);
    assert!(report.activities.is_empty());
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn discourses_daily_limit_defers_the_run_for_its_wait_seconds(pool: PgPool) {
    let forum = Forum::start().await;
    let h = Harness::with_service(pool, DiscourseIntegration);
    // the per-day admin API limit: no Retry-After, only the body's `extras.wait_seconds`
    let mut refusal = fake::rate_limited(7200);
    refusal.headers.retain(|(name, _)| name != "Retry-After");
    forum
        .server()
        .inject(Fault::on("/categories.json", 1, refusal));
    let (_, run) = h
        .connect(PLATFORM, forum.settings(), forum.credentials())
        .await
        .unwrap();
    let before = Utc::now();
    match h.process(run.id).await {
        RunOutcome::Delayed { until, reason } => {
            let wait = (until - before).num_seconds();
            assert!((7195..=7205).contains(&wait), "deferred {wait} s: {reason}");
        }
        other => panic!("not deferred: {other:?}"),
    }
    assert_eq!(forum.server().request_count(), 1, "nothing more is sent");
    let streams = h.streams(run.id).await;
    assert!(
        streams.iter().all(|s| s.retries == 0),
        "a rate limit costs no retry"
    );
}
