//! The Example Forum: 10 channels of 100 posts with 3 replies each, 200 members.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tributary::Registry;
use tributary_integrations::example_forum::fake::{
    DatasetSpec, FakeForum, ForumData, ForumOptions,
};
use tributary_integrations::example_forum::{ExampleForumIntegration, PLATFORM};

use crate::bench::onboarding::{BenchPlatform, Prepared};

pub struct Forum;

#[async_trait]
impl BenchPlatform for Forum {
    fn name(&self) -> &'static str {
        PLATFORM
    }

    async fn prepare(&self, latency: Duration) -> anyhow::Result<Prepared> {
        let spec = DatasetSpec {
            channels: 10,
            posts_per_channel: 100,
            replies_per_post: 3,
            members: 200,
        };
        let forum = FakeForum::start(
            ForumData::generate(spec),
            ForumOptions {
                latency,
                ..ForumOptions::default()
            },
        )
        .await?;
        let channels: Vec<String> = (0..spec.channels).map(|c| format!("channel-{c}")).collect();
        let mut registry = Registry::new();
        registry.register(ExampleForumIntegration)?;
        Ok(Prepared {
            registry,
            platform: PLATFORM,
            settings: json!({ "base_url": forum.base_url(), "channels": channels, "per_page": 100 }),
            credentials: json!({ "token": forum.token() }),
            description: format!(
                "{} channels × {} posts × {} replies, {} members",
                spec.channels, spec.posts_per_channel, spec.replies_per_post, spec.members
            ),
            expected_activities: forum.expected_activities().len(),
            expected_members: forum.expected_members().len(),
            requests: Box::new(move || forum.requests()),
        })
    }
}
