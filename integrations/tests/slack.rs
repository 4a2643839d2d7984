//! The Slack integration through the real processor and PostgreSQL, against its fake: the
//! conformance suite, and what is particular to Slack (`ok: false` errors, edits and deletions
//! rewriting their activity, threads, users looked up once per run).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use tributary::async_trait;
use tributary::processor::RunOutcome;
use tributary::testkit::{Conformance, FakeServer, Fault, Harness, Refused, Reply, RunReport};
use tributary_integrations::slack::fake::{self, FakeSlack, SlackData, SlackSpec};
use tributary_integrations::slack::{PLATFORM, SlackIntegration};

const TOKEN: &str = "xoxb-slack-bot-token-123";
const PER_PAGE: usize = 4;
const SPEC: SlackSpec = SlackSpec {
    channels: 2,
    messages_per_channel: 9,
    thread_every: 4,
    replies: 5,
    users: 4,
};

struct Fixture(FakeSlack);

#[async_trait]
impl Conformance for Fixture {
    type Service = SlackIntegration;

    async fn start() -> Self {
        Self(
            FakeSlack::start(SlackData::generate(SPEC), TOKEN)
                .await
                .unwrap(),
        )
    }

    fn service(&self) -> SlackIntegration {
        SlackIntegration::default()
    }

    fn server(&self) -> &FakeServer {
        self.0.server()
    }

    fn settings(&self) -> Value {
        json!({"base_url": self.0.base_url(), "per_page": PER_PAGE,
               "workspace_url": "https://acme.slack.com"})
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
        "/conversations.history".to_owned()
    }

    fn endless_page(&self) -> Reply {
        let messages: Vec<Value> = self.0.edit(|d| {
            d.messages
                .iter()
                .take(PER_PAGE)
                .map(|(_, m)| json!(m))
                .collect()
        });
        Reply::json(json!({"ok": true, "messages": messages, "has_more": true,
                           "response_metadata": {"next_cursor": "dXNlcjo4"}}))
    }

    fn add_activities(&self) -> BTreeSet<String> {
        self.0.edit(|d| {
            let ts = d.post_now("C000", 1, "fresh news");
            let reply = d.reply_now("C000", &ts, 2);
            [
                format!("message:C000:{ts}"),
                format!("message:C000:{reply}"),
            ]
            .into()
        })
    }

    fn refused_credentials(&self) -> Option<Value> {
        Some(json!({"bot_token": "xoxb-wrong-token"}))
    }

    fn credential_refusal(&self) -> &'static str {
        "invalid_auth"
    }

    fn rate_limited(&self) -> Reply {
        fake::rate_limited(1)
    }

    fn refused_settings(&self) -> Vec<Refused> {
        vec![
            Refused::new(
                json!({"base_url": "ftp://x", "workspace_url": "acme", "channels": ["C01", "general"],
                       "per_page": 0, "thread_lookback_days": 100}),
                json!({"bot_token": ""}),
                "`base_url` must be an http(s) URL without query, such as \
                 `https://slack.com/api`, not `ftp://x`; `workspace_url` must be an http(s) URL \
                 without query, such as `https://acme.slack.com`, not `acme`; `channels[1]` must \
                 be a channel id (such as `C012AB3CD`), not `general`; `per_page` must be \
                 between 1 and 1000, not 0; `thread_lookback_days` must be between 0 and 90, \
                 not 100; `credentials.bot_token` must be a non-empty string (a Slack bot token \
                 (xoxb-…))",
            ),
            Refused::new(
                json!({}),
                json!({}),
                "`credentials.bot_token` is required (a Slack bot token (xoxb-…))",
            ),
        ]
    }
}

tributary::conformance_suite!(Fixture);

async fn onboard(fixture: &Fixture, h: &Harness) -> RunReport {
    h.onboard(PLATFORM, fixture.settings(), fixture.credentials())
        .await
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn threads_joins_bots_and_users_looked_up_once(pool: PgPool) {
    let fixture = Fixture::start().await;
    let h = Harness::with_service(pool, SlackIntegration::default());
    let report = onboard(&fixture, &h).await;
    report.assert_processed();
    assert_eq!(report.activity_ids(), fixture.expected_activities());
    assert_eq!(report.member_ids(), fixture.expected_members());

    let (parent, reply, join) = fixture.0.edit(|d| {
        let reply = d
            .messages
            .iter()
            .find(|(c, m)| c == "C000" && m.thread_ts.as_ref().is_some_and(|t| *t != m.ts))
            .unwrap()
            .1
            .clone();
        let join = d.messages[0].1.ts.clone();
        (reply.thread_ts.clone().unwrap(), reply.ts, join)
    });
    let stored = report.activity(&format!("message:C000:{reply}"));
    assert_eq!(stored.activity_type, "thread_reply");
    assert_eq!(
        stored.source_parent_id,
        Some(format!("message:C000:{parent}"))
    );
    assert_eq!(stored.channel.as_deref(), Some("channel-0"));
    assert_eq!(
        stored.url.as_deref(),
        Some(
            format!(
                "https://acme.slack.com/archives/C000/p{}",
                reply.replace('.', "")
            )
            .as_str()
        )
    );
    assert_eq!(
        report
            .activity(&format!("message:C000:{join}"))
            .activity_type,
        "channel_joined"
    );

    // users.info once per user in the run, whatever the number of their messages
    let lookups: Vec<String> = fixture
        .server()
        .requests()
        .iter()
        .filter(|r| r.path == "/users.info")
        .map(|r| r.query("user").unwrap().to_owned())
        .collect();
    let distinct: BTreeSet<&String> = lookups.iter().collect();
    assert_eq!(distinct.len(), lookups.len(), "{lookups:?}");
    assert_eq!(distinct.len(), SPEC.users);
    let requests = fixture.server().requests();
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer xoxb-slack-bot-token-123"))
    );
    assert!(
        !requests
            .iter()
            .any(|r| ["C900", "C901", "G902"].contains(&r.query("channel").unwrap_or_default()))
    );

    let member = report.member("U0000");
    assert_eq!(member.username, "user0");
    assert_eq!(member.display_name.as_deref(), Some("User 0"));
    assert_eq!(
        member.url.as_deref(),
        Some("https://acme.slack.com/team/U0000")
    );
    assert_eq!(member.attributes["avatar_url"], Value::Null);
    let member = report.member("U0001");
    assert_eq!(
        member.display_name.as_deref(),
        Some("User Number 1"),
        "an empty display name"
    );
    assert_eq!(
        member.attributes["avatar_url"],
        "https://avatars.test/1_192.png"
    );
    assert_eq!(
        report.member("B0001").display_name.as_deref(),
        Some("deploybot")
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn an_edited_or_deleted_message_updates_its_activity(pool: PgPool) {
    let fixture = Fixture::start().await;
    let h = Harness::with_service(pool, SlackIntegration::default());
    let onboarding = onboard(&fixture, &h).await;
    let (edited, deleted) = fixture.0.edit(|d| {
        let edited = d.messages[2].1.ts.clone();
        let deleted = d.messages[3].1.ts.clone();
        d.edit_now("C000", &edited, "now with the right link");
        d.delete_now("C000", &deleted);
        (edited, deleted)
    });
    let check = h.check_to_end(onboarding.integration.id).await;
    check.assert_processed();
    assert_eq!(check.run.activities_created, 0);
    assert_eq!(check.run.activities_updated, 2);
    let stored = check.activity(&format!("message:C000:{edited}"));
    assert_eq!(stored.body.as_deref(), Some("now with the right link"));
    assert!(stored.attributes["edited_at"].is_string());
    let stored = check.activity(&format!("message:C000:{deleted}"));
    assert_eq!(stored.body, None);
    assert_eq!(stored.attributes["deleted"], true);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn ok_false_errors_name_what_to_fix_and_end_only_their_stream(pool: PgPool) {
    let fixture = Fixture::start().await;
    let h = Harness::with_service(pool, SlackIntegration::default());
    let mut settings = fixture.settings();
    settings["channels"] = json!(["C000", "C900"]);
    // C900 is listed but the bot is not in it; C000's history is asked of a channel that vanished
    fixture.server().inject(Fault::on(
        "/conversations.history",
        1,
        fake::error("channel_not_found"),
    ));
    let report = h.onboard(PLATFORM, settings, fixture.credentials()).await;
    let errors: Vec<String> = report
        .stream_errors()
        .into_iter()
        .map(|(id, e)| format!("{id}: {}", e.message))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(
            "history:C000: GET /conversations.history: channel_not_found: no such channel"
        ),
        "{errors:?}"
    );
    assert!(
        !fixture
            .server()
            .requests()
            .iter()
            .any(|r| r.query("channel") == Some("C900")),
        "a channel the bot is not in is not read"
    );

    // asked directly, a channel the bot is not in says how to fix it
    fixture.server().inject(Fault::on(
        "/conversations.history",
        1,
        fake::error("not_in_channel"),
    ));
    let again = h.check_to_end(report.integration.id).await;
    let errors: Vec<String> = again
        .stream_errors()
        .into_iter()
        .map(|(_, e)| e.message)
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e
                .contains("not_in_channel: the bot is not a member of this channel; invite it")),
        "{errors:?}"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn ratelimited_in_a_200_defers_the_run_and_it_resumes_exact(pool: PgPool) {
    let fixture = Fixture::start().await;
    fixture.server().inject(Fault::on(
        "/conversations.replies",
        1,
        fake::error("ratelimited").header("Retry-After", "2"),
    ));
    let h =
        Harness::with_service(pool, SlackIntegration::default()).max_inline_wait(Duration::ZERO);
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
