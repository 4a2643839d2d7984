//! Slack: 4 channels of 500 messages, a thread of 5 replies every 25 messages, 30 users.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tributary::Registry;
use tributary_integrations::slack::fake::{FakeSlack, SlackData, SlackSpec};
use tributary_integrations::slack::{PLATFORM, SlackIntegration};

use crate::bench::onboarding::{BenchPlatform, Prepared};

const TOKEN: &str = "xoxb-bench-slack-bot-token";

pub struct Slack;

#[async_trait]
impl BenchPlatform for Slack {
    fn name(&self) -> &'static str {
        PLATFORM
    }

    async fn prepare(&self, latency: Duration) -> anyhow::Result<Prepared> {
        let spec = SlackSpec {
            channels: 4,
            messages_per_channel: 500,
            thread_every: 25,
            replies: 5,
            users: 30,
        };
        let slack = FakeSlack::start(SlackData::generate(spec), TOKEN).await?;
        slack.server().latency(latency);
        let (activities, members) =
            slack.edit(|d| (d.expected_activities().len(), d.expected_members().len()));
        let mut registry = Registry::new();
        registry.register(SlackIntegration::default())?;
        Ok(Prepared {
            registry,
            platform: PLATFORM,
            settings: json!({ "base_url": slack.base_url() }),
            credentials: json!({ "bot_token": TOKEN }),
            description: format!(
                "{} channels × {} messages, a thread of {} replies every {}, {} users",
                spec.channels,
                spec.messages_per_channel,
                spec.replies,
                spec.thread_every,
                spec.users
            ),
            expected_activities: activities,
            expected_members: members,
            requests: Box::new(move || slack.server().request_count()),
        })
    }
}
