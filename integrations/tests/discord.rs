//! The Discord integration through the real processor and PostgreSQL, against its fake: the
//! conformance suite, and what is particular to Discord (replies and threads, per-route buckets,
//! the global limit, invalid-request accounting, checks `after` the last seen message).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use tributary::async_trait;
use tributary::processor::RunOutcome;
use tributary::testkit::{Conformance, FakeServer, Fault, Harness, Refused, Reply};
use tributary_integrations::discord::fake::{
    self, DiscordData, FakeDiscord, GENERAL, GUILD, HELP, NEWS,
};
use tributary_integrations::discord::{DiscordIntegration, PLATFORM};

const TOKEN: &str = "discord-bot-token-123";
const PER_PAGE: usize = 5;

struct Fixture(FakeDiscord);

#[async_trait]
impl Conformance for Fixture {
    type Service = DiscordIntegration;

    async fn start() -> Self {
        let data = DiscordData::generate(12, 5, 4);
        Self(FakeDiscord::start(data, TOKEN).await.unwrap())
    }

    fn service(&self) -> DiscordIntegration {
        DiscordIntegration
    }

    fn server(&self) -> &FakeServer {
        self.0.server()
    }

    fn settings(&self) -> Value {
        json!({"base_url": self.0.base_url(), "guild_id": GUILD.to_string(), "per_page": PER_PAGE})
    }

    fn credentials(&self) -> Value {
        json!({"bot_token": TOKEN})
    }

    fn expected_activities(&self) -> BTreeSet<String> {
        self.0.edit(|d| d.expected_activities())
    }

    fn expected_members(&self) -> BTreeSet<String> {
        self.0.edit(|d| d.expected_members())
    }

    fn expected_requests(&self) -> Option<usize> {
        Some(self.0.edit(|d| d.expected_requests(PER_PAGE)))
    }

    fn list_path(&self) -> String {
        format!("/channels/{GENERAL}/messages")
    }

    fn endless_page(&self) -> Reply {
        let page: Vec<Value> = self.0.edit(|d| {
            d.messages
                .iter()
                .filter(|m| m.channel_id == GENERAL)
                .take(PER_PAGE)
                .map(|m| json!(m))
                .collect()
        });
        Reply::json(page)
    }

    fn add_activities(&self) -> BTreeSet<String> {
        let id = self.0.edit(|d| d.post_now(GENERAL, 2, None));
        [format!("message:{id}")].into()
    }

    fn refused_credentials(&self) -> Option<Value> {
        Some(json!({"bot_token": "wrong-token-456"}))
    }

    fn rate_limited(&self) -> Reply {
        fake::rate_limited("b-messages", 1.0, false)
    }

    fn refused_settings(&self) -> Vec<Refused> {
        vec![
            Refused::new(
                json!({"base_url": "ftp://x", "guild_id": "my guild", "channels": ["1", "general"],
                       "per_page": 0, "max_invalid_requests": 10000}),
                json!({"bot_token": ""}),
                "`base_url` must be an http(s) URL without query, such as \
                 `https://discord.com/api/v10`, not `ftp://x`; `guild_id` must be a guild id \
                 (digits only), not `my guild`; `channels[1]` must be a channel id (digits \
                 only), not `general`; `per_page` must be between 1 and 100, not 0; \
                 `max_invalid_requests` must be between 1 and 9000, not 10000; \
                 `credentials.bot_token` must be a non-empty string (a Discord bot token)",
            ),
            Refused::new(
                json!({"guild_id": "1"}),
                json!({}),
                "`credentials.bot_token` is required (a Discord bot token)",
            ),
        ]
    }
}

tributary::conformance_suite!(Fixture);

async fn onboard(fixture: &Fixture, h: &Harness) -> tributary::testkit::RunReport {
    h.onboard(PLATFORM, fixture.settings(), fixture.credentials())
        .await
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn replies_threads_and_forum_posts_are_linked(pool: PgPool) {
    let fixture = Fixture::start().await;
    let h = Harness::with_service(pool, DiscordIntegration);
    let report = onboard(&fixture, &h).await;
    report.assert_processed();
    assert_eq!(report.activity_ids(), fixture.expected_activities());

    let (reply, replied, starter, side_messages, post, answers) = fixture.0.edit(|d| {
        let reply = d.messages.iter().find(|m| m.kind == 19).unwrap().clone();
        let starter = d
            .messages
            .iter()
            .find(|m| m.thread.is_some())
            .unwrap()
            .clone();
        let side: Vec<u64> = d
            .messages
            .iter()
            .filter(|m| m.channel_id == starter.id && m.kind == 0)
            .map(|m| m.id)
            .collect();
        let post = d
            .threads
            .iter()
            .find(|t| t.parent_id == Some(HELP))
            .unwrap()
            .id;
        let answers: Vec<u64> = d
            .messages
            .iter()
            .filter(|m| m.channel_id == post && m.id != post)
            .map(|m| m.id)
            .collect();
        let replied = reply
            .message_reference
            .as_ref()
            .unwrap()
            .message_id
            .unwrap();
        (reply, replied, starter, side, post, answers)
    });
    let stored = report.activity(&format!("message:{}", reply.id));
    assert_eq!(stored.activity_type, "reply");
    assert_eq!(stored.source_parent_id, Some(format!("message:{replied}")));
    assert_eq!(stored.channel.as_deref(), Some("general"));

    // a thread started from a message in a text channel: the message is its parent
    let thread = report.activity(&format!("thread:{}", starter.id));
    assert_eq!(thread.activity_type, "thread_started");
    assert_eq!(
        thread.source_parent_id,
        Some(format!("message:{}", starter.id))
    );
    assert_eq!(thread.title.as_deref(), Some("A side talk"));
    assert_eq!(thread.channel.as_deref(), Some("general"));
    assert_eq!(side_messages.len(), 3, "the starter stub is no activity");
    for id in side_messages {
        let message = report.activity(&format!("message:{id}"));
        assert_eq!(
            message.source_parent_id,
            Some(format!("thread:{}", starter.id))
        );
    }

    // a forum post: its first message is the thread, its answers are in the forum channel
    let started = report.activity(&format!("thread:{post}"));
    assert_eq!(started.activity_type, "thread_started");
    assert_eq!(started.channel.as_deref(), Some("help"));
    assert!(!report.activity_ids().contains(&format!("message:{post}")));
    for id in answers {
        let answer = report.activity(&format!("message:{id}"));
        assert_eq!(answer.source_parent_id, Some(format!("thread:{post}")));
        assert_eq!(answer.channel.as_deref(), Some("help"));
    }
    // announcement channels are read; voice channels and categories are not
    assert!(
        report
            .activities
            .iter()
            .any(|a| a.channel.as_deref() == Some("news"))
    );
    let requests = fixture.server().requests();
    assert!(
        !requests
            .iter()
            .any(|r| r.path.contains("/2004/") || r.path.contains("/2005/"))
    );
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some("Bot discord-bot-token-123"))
    );

    // members from authors: user id, username, display name, avatar, profile
    let member = report.member("80000");
    assert_eq!(member.username, "user0");
    assert_eq!(member.display_name.as_deref(), Some("User 0"));
    assert_eq!(
        member.url.as_deref(),
        Some("https://discord.com/users/80000")
    );
    assert_eq!(
        member.attributes["avatar_url"],
        Value::Null,
        "no avatar set"
    );
    let member = report.member("80001");
    assert_eq!(member.display_name, None, "global_name is null");
    assert_eq!(
        member.attributes["avatar_url"],
        "https://cdn.discordapp.com/avatars/80001/a0001.png"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_check_reads_after_the_last_seen_message_and_skips_quiet_channels(pool: PgPool) {
    let fixture = Fixture::start().await;
    let h = Harness::with_service(pool, DiscordIntegration);
    let onboarding = onboard(&fixture, &h).await;
    let new = fixture.0.edit(|d| d.post_now(NEWS, 1, None));
    fixture.server().clear_requests();
    let check = h.check_to_end(onboarding.integration.id).await;
    check.assert_processed();
    assert_eq!(check.run.activities_created, 1);
    assert!(check.activity_ids().contains(&format!("message:{new}")));
    let reads: Vec<_> = fixture
        .server()
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/messages"))
        .collect();
    assert_eq!(
        reads.len(),
        1,
        "only the channel with a new message: {reads:?}"
    );
    assert_eq!(reads[0].path, format!("/channels/{NEWS}/messages"));
    let after: u64 = reads[0].query("after").unwrap().parse().unwrap();
    assert!(
        after > 0 && after < new,
        "after the window's snowflake: {after}"
    );
    assert_eq!(reads[0].query("limit"), Some("5"));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn per_bucket_limits_are_paced_without_a_single_429(pool: PgPool) {
    let fixture = Fixture::start().await;
    // every bucket (per channel or guild) allows 2 requests per 300 ms, and refuses beyond
    fixture
        .0
        .edit(|d| d.bucket_limit = Some((2, Duration::from_millis(300))));
    let h = Harness::with_service(pool, DiscordIntegration);
    let report = onboard(&fixture, &h).await;
    report.assert_processed();
    assert_eq!(report.activity_ids(), fixture.expected_activities());
    assert_eq!(
        fixture.server().request_count(),
        fixture.expected_requests().unwrap(),
        "no request refused, none repeated"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_global_429_defers_the_run_and_it_resumes_exact(pool: PgPool) {
    let fixture = Fixture::start().await;
    fixture.server().inject(Fault::on(
        &format!("/channels/{GENERAL}/messages"),
        1,
        fake::rate_limited("b-messages", 2.5, true),
    ));
    let h = Harness::with_service(pool, DiscordIntegration).max_inline_wait(Duration::ZERO);
    let (integration, run) = h
        .connect(PLATFORM, fixture.settings(), fixture.credentials())
        .await
        .unwrap();
    let (outcomes, _) = h
        .run_honouring_deferrals(run.id, Duration::from_secs(30))
        .await;
    assert!(
        outcomes.iter().any(
            |o| matches!(o, RunOutcome::Delayed { reason, .. } if reason.contains("rate limit"))
        ),
        "{outcomes:?}"
    );
    let report = h.report(integration.id, run.id, outcomes).await;
    report.assert_processed();
    assert_eq!(report.activity_ids(), fixture.expected_activities());
    assert_eq!(report.retries(), 0);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn too_many_forbidden_channels_stop_the_bot_before_a_ban(pool: PgPool) {
    let fixture = Fixture::start().await;
    fixture.0.edit(|d| {
        d.forbidden.insert(GENERAL);
        d.forbidden.insert(NEWS);
    });
    let mut settings = fixture.settings();
    settings["max_invalid_requests"] = json!(1);
    let h = Harness::with_service(pool, DiscordIntegration);
    let report = h.onboard(PLATFORM, settings, fixture.credentials()).await;
    let errors = report.stream_errors();
    let messages: Vec<String> = errors.iter().map(|(_, e)| e.message.clone()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("403") && m.contains("Missing Access")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("before the platform bans it")),
        "{messages:?}"
    );
    // once stopped, nothing more goes out for the bot: the rest of the guild is not read
    assert!(
        fixture.server().request_count() < fixture.expected_requests().unwrap(),
        "{} requests",
        fixture.server().request_count()
    );
}
