//! The Example Forum through the real processor and PostgreSQL, against its fake server: the
//! conformance suite, and what is particular to the forum.
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
use tributary_integrations::example_forum::fake::{
    DatasetSpec, FakeForum, ForumData, ForumOptions, author,
};
use tributary_integrations::example_forum::{ExampleForumIntegration, PLATFORM};

const SPEC: DatasetSpec = DatasetSpec {
    channels: 2,
    posts_per_channel: 25,
    replies_per_post: 2,
    members: 7,
};

struct Forum(FakeForum);

impl Forum {
    async fn with(options: ForumOptions) -> Self {
        Self(
            FakeForum::start(ForumData::generate(SPEC), options)
                .await
                .unwrap(),
        )
    }
}

#[async_trait]
impl Conformance for Forum {
    type Service = ExampleForumIntegration;

    async fn start() -> Self {
        Self::with(ForumOptions::default()).await
    }

    fn service(&self) -> ExampleForumIntegration {
        ExampleForumIntegration
    }

    fn server(&self) -> &FakeServer {
        self.0.server()
    }

    fn settings(&self) -> Value {
        json!({"base_url": self.0.base_url(), "per_page": 10})
    }

    fn credentials(&self) -> Value {
        json!({"token": self.0.token()})
    }

    fn expected_activities(&self) -> BTreeSet<String> {
        self.0.expected_activities()
    }

    fn expected_members(&self) -> BTreeSet<String> {
        self.0.expected_members()
    }

    /// The channel list, then per channel 3 pages of posts and 5 of replies.
    fn expected_requests(&self) -> Option<usize> {
        Some(1 + 2 * (3 + 5))
    }

    fn list_path(&self) -> String {
        "/api/v1/channels/channel-0/replies".to_owned()
    }

    fn endless_page(&self) -> Reply {
        let reply = self.0.edit(|d| d.replies[0].clone());
        Reply::json(json!({"items": [reply], "page": 1, "next_page": 2}))
    }

    fn add_activities(&self) -> BTreeSet<String> {
        let now = Utc::now();
        self.0.edit(|d| {
            let post = d.add_post("channel-1", author(3), "Fresh news", now);
            let welcome = d.add_reply(post, author(4), "Welcome", now);
            let late = d.add_reply(1, author(5), "Late answer to the first post", now);
            [
                format!("post:{post}"),
                format!("reply:{welcome}"),
                format!("reply:{late}"),
            ]
            .into()
        })
    }

    fn refused_credentials(&self) -> Option<Value> {
        Some(json!({"token": "expired-token"}))
    }

    fn refused_settings(&self) -> Vec<Refused> {
        vec![
            Refused::new(
                json!({"base_url": "nope", "channels": ["ok", "not ok", "ok"], "per_page": 0}),
                json!({}),
                "`base_url` must be an http(s) URL without query, such as \
                 `https://forum.example.com`, not `nope`; `channels[1]` must be a channel id \
                 (letters, digits, - and _), not `not ok`; `channels[2]` repeats `ok`; \
                 `per_page` must be between 1 and 100, not 0; `credentials.token` is required \
                 (the forum's API token)",
            ),
            Refused::new(
                json!({"base_url": self.0.base_url(), "chanels": []}),
                self.credentials(),
                "unknown field `chanels`, expected one of `base_url`, `channels`, `per_page`, `replies`",
            ),
        ]
    }
}

tributary::conformance_suite!(Forum);

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn configured_channels_skip_the_channel_list(pool: PgPool) {
    let forum = Forum::start().await;
    let h = Harness::with_service(pool, ExampleForumIntegration);
    let settings = json!({"base_url": forum.0.base_url(), "channels": ["channel-0"]});
    let report = h.onboard(PLATFORM, settings, forum.credentials()).await;
    report.assert_processed();
    assert_eq!(report.activities.len(), 75);
    assert_eq!(forum.0.requests(), 2, "100 per page: one request per list");
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn without_replies_a_channel_is_one_stream_of_posts(pool: PgPool) {
    let forum = Forum::start().await;
    let h = Harness::with_service(pool, ExampleForumIntegration);
    let settings =
        json!({"base_url": forum.0.base_url(), "channels": ["channel-0"], "replies": false});
    let report = h.onboard(PLATFORM, settings, forum.credentials()).await;
    report.assert_processed();
    let posts: BTreeSet<String> = forum.0.edit(|d| {
        d.posts
            .iter()
            .filter(|p| p.channel_id == "channel-0")
            .map(|p| format!("post:{}", p.id))
            .collect()
    });
    assert_eq!(posts.len(), 25);
    assert_eq!(report.activity_ids(), posts, "channel-0's posts, no reply");
    assert_eq!(forum.0.requests(), 1, "one request: the posts");
    let streams: Vec<&str> = report
        .streams
        .iter()
        .map(|s| s.identifier.as_str())
        .collect();
    assert_eq!(streams, ["posts:channel-0"]);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_forums_budget_defers_the_run_to_its_reset_and_nothing_is_lost(pool: PgPool) {
    let forum = Forum::with(ForumOptions {
        rate_limit: Some((6, Duration::from_secs(2))),
        ..ForumOptions::default()
    })
    .await;
    let h = Harness::with_service(pool, ExampleForumIntegration)
        .max_inline_wait(Duration::from_millis(500));
    let (integration, run) = h
        .connect(PLATFORM, forum.settings(), forum.credentials())
        .await
        .unwrap();
    let started = Utc::now();
    let first = h.process(run.id).await;
    let RunOutcome::Delayed { until, reason } = &first else {
        panic!("the spent budget defers the run: {first:?}")
    };
    assert!(
        reason.starts_with("rate limited while processing"),
        "{reason}"
    );
    // the window is 2 s from the first request, announced in whole seconds
    assert!(*until > started && *until <= Utc::now() + chrono::Duration::seconds(3));
    let (mut outcomes, end) = h
        .run_honouring_deferrals(run.id, Duration::from_secs(60))
        .await;
    assert_eq!(end.state, RunState::Processed, "{outcomes:?}");
    outcomes.insert(0, first);
    let report = h.report(integration.id, run.id, outcomes).await;
    assert_eq!(report.retries(), 0, "a 429 consumes no retry");
    assert_eq!(report.activity_ids(), forum.expected_activities());
}
