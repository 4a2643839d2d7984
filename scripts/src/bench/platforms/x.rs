//! X: an account with 800 mentions (a third of them replies), a hashtag search finding 800
//! posts (800 more unrelated), 200 users.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tributary::Registry;
use tributary_integrations::x::fake::{FakeX, XData, XSpec};
use tributary_integrations::x::{PLATFORM, XIntegration};

use crate::bench::onboarding::{BenchPlatform, Prepared};

pub struct X;

#[async_trait]
impl BenchPlatform for X {
    fn name(&self) -> &'static str {
        PLATFORM
    }

    async fn prepare(&self, latency: Duration) -> anyhow::Result<Prepared> {
        let spec = XSpec {
            users: 200,
            mentions: 800,
            hashtag_posts: 800,
        };
        let searches = ["#rustlang"];
        let x = FakeX::start(XData::generate(spec), "bench-token").await?;
        x.server().latency(latency);
        let (activities, members) = x.edit(|d| {
            (
                d.expected_activities(Some("1000"), &searches).len(),
                d.expected_members(Some("1000"), &searches).len(),
            )
        });
        let mut registry = Registry::new();
        registry.register(XIntegration)?;
        Ok(Prepared {
            registry,
            platform: PLATFORM,
            settings: json!({
                "base_url": x.base_url(),
                "account_id": "1000",
                "searches": searches,
            }),
            credentials: json!({ "bearer_token": "bench-token" }),
            description: format!(
                "{} mentions, {} hashtag posts (+{} unrelated), {} users",
                spec.mentions, spec.hashtag_posts, spec.hashtag_posts, spec.users
            ),
            expected_activities: activities,
            expected_members: members,
            requests: Box::new(move || x.server().request_count()),
        })
    }
}
