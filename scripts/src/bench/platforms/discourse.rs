//! Discourse: three categories (one a subcategory) of 100 topics, 1 to 31 posts each (a quarter
//! past the 20 posts a topic answer holds, so fetched in a second request), 50 members.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tributary::Registry;
use tributary_integrations::discourse::fake::{DiscourseData, FakeDiscourse, ForumSpec};
use tributary_integrations::discourse::{DiscourseIntegration, PLATFORM};

use crate::bench::onboarding::{BenchPlatform, Prepared};

const KEY: &str = "bench-discourse-key";

pub struct Discourse;

#[async_trait]
impl BenchPlatform for Discourse {
    fn name(&self) -> &'static str {
        PLATFORM
    }

    async fn prepare(&self, latency: Duration) -> anyhow::Result<Prepared> {
        let spec = ForumSpec {
            users: 50,
            topics_per_category: 100,
            replies_step: 10,
        };
        let data = DiscourseData::generate(spec);
        let expected_activities = data.expected_activities().len();
        let expected_members = data.expected_members().len();
        let posts = data.posts.len();
        let forum = FakeDiscourse::start(data, Some(KEY)).await?;
        forum.server().latency(latency);
        let mut registry = Registry::new();
        registry.register(DiscourseIntegration)?;
        Ok(Prepared {
            registry,
            platform: PLATFORM,
            settings: json!({
                "base_url": forum.base_url(),
                "max_requests_per_minute": 6000,
            }),
            credentials: json!({"api_key": KEY, "api_username": "system"}),
            description: format!(
                "3 categories × {} topics, {posts} posts, {} members",
                spec.topics_per_category, spec.users
            ),
            expected_activities,
            expected_members,
            requests: Box::new(move || forum.server().request_count()),
        })
    }
}
