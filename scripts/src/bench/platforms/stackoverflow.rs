//! Stack Overflow: three tags of 300 questions, 0 to 3 answers each, comments on every third
//! question and on every other answer, 100 members; gzip on every answer, as the API sends.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tributary::Registry;
use tributary_integrations::stackoverflow::fake::{FakeStackExchange, StackData, StackSpec, TAGS};
use tributary_integrations::stackoverflow::{PLATFORM, StackoverflowIntegration};

use crate::bench::onboarding::{BenchPlatform, Prepared};

const KEY: &str = "bench-stack-apps-key";

pub struct StackOverflow;

#[async_trait]
impl BenchPlatform for StackOverflow {
    fn name(&self) -> &'static str {
        PLATFORM
    }

    async fn prepare(&self, latency: Duration) -> anyhow::Result<Prepared> {
        let spec = StackSpec {
            users: 100,
            questions_per_tag: 300,
        };
        let data = StackData::generate(spec);
        let expected_activities = data.expected_activities(&TAGS, &[]).len();
        let expected_members = data.expected_members(&TAGS, &[]).len();
        let description = format!(
            "3 tags × {} questions, {} answers, {} comments, {} members",
            spec.questions_per_tag,
            data.answers.len(),
            data.comments.len(),
            spec.users
        );
        let site = FakeStackExchange::start(data, Some(KEY)).await?;
        site.server().latency(latency);
        let mut registry = Registry::new();
        registry.register(StackoverflowIntegration)?;
        Ok(Prepared {
            registry,
            platform: PLATFORM,
            settings: json!({"base_url": site.base_url(), "tags": TAGS}),
            credentials: json!({"key": KEY}),
            description,
            expected_activities,
            expected_members,
            requests: Box::new(move || site.server().request_count()),
        })
    }
}
