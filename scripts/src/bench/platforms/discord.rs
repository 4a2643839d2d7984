//! Discord: a guild with a text channel of 2,000 messages (a reply every fifth, a side thread),
//! an announcement channel of 1,000, a forum of 60 posts with 3 answers each, 40 authors.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tributary::Registry;
use tributary_integrations::discord::fake::{DiscordData, FakeDiscord, GUILD};
use tributary_integrations::discord::{DiscordIntegration, PLATFORM};

use crate::bench::onboarding::{BenchPlatform, Prepared};

const TOKEN: &str = "bench-discord-bot-token";

pub struct Discord;

#[async_trait]
impl BenchPlatform for Discord {
    fn name(&self) -> &'static str {
        PLATFORM
    }

    async fn prepare(&self, latency: Duration) -> anyhow::Result<Prepared> {
        let (messages, posts, users) = (2_000, 60, 40);
        let discord =
            FakeDiscord::start(DiscordData::generate(messages, posts, users), TOKEN).await?;
        discord.server().latency(latency);
        let (activities, members) =
            discord.edit(|d| (d.expected_activities().len(), d.expected_members().len()));
        let mut registry = Registry::new();
        registry.register(DiscordIntegration)?;
        Ok(Prepared {
            registry,
            platform: PLATFORM,
            settings: json!({ "base_url": discord.base_url(), "guild_id": GUILD.to_string() }),
            credentials: json!({ "bot_token": TOKEN }),
            description: format!(
                "a guild: {messages} + {} channel messages, a forum of {posts} posts × 3 answers, \
                 {users} authors",
                messages / 2
            ),
            expected_activities: activities,
            expected_members: members,
            requests: Box::new(move || discord.server().request_count()),
        })
    }
}
