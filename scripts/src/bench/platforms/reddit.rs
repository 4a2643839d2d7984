//! Reddit: 3 subreddits of 100 posts (two in three commented: 6 top-level comments with 2 replies
//! each, 3 of them collapsed behind a `more`), one keyword search, 200 users.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tributary::Registry;
use tributary_integrations::reddit::fake::{FakeReddit, RedditData, RedditSpec};
use tributary_integrations::reddit::{PLATFORM, RedditIntegration};

use crate::bench::onboarding::{BenchPlatform, Prepared};

pub struct Reddit;

#[async_trait]
impl BenchPlatform for Reddit {
    fn name(&self) -> &'static str {
        PLATFORM
    }

    async fn prepare(&self, latency: Duration) -> anyhow::Result<Prepared> {
        let spec = RedditSpec {
            subreddits: 3,
            users: 200,
            posts_per_subreddit: 100,
            comments_per_post: 6,
            reply_depth: 2,
        };
        let subreddits = ["sub0", "sub1", "sub2"];
        let searches = ["rust"];
        let reddit = FakeReddit::start(
            RedditData::generate(spec),
            "bench-app",
            "bench-secret",
            86_400,
        )
        .await?;
        reddit.server().latency(latency);
        let (activities, members) = reddit.edit(|d| {
            (
                d.expected_activities(&subreddits, &searches).len(),
                d.expected_members(&subreddits, &searches).len(),
            )
        });
        let mut registry = Registry::new();
        registry.register(RedditIntegration)?;
        Ok(Prepared {
            registry,
            platform: PLATFORM,
            settings: json!({
                "base_url": reddit.base_url(),
                "token_url": reddit.token_url(),
                "subreddits": subreddits,
                "searches": searches,
                // the fake's own budget (1,000 per 10 minutes) paces; Reddit's 100 a minute
                // would make this run last requests / 100 minutes
                "max_requests_per_minute": 6000,
            }),
            credentials: json!({ "client_id": "bench-app", "client_secret": "bench-secret" }),
            description: format!(
                "{} subreddits × {} posts × {} comments (+{} replies each), 1 search, {} users",
                spec.subreddits,
                spec.posts_per_subreddit,
                spec.comments_per_post,
                spec.reply_depth,
                spec.users
            ),
            expected_activities: activities,
            expected_members: members,
            requests: Box::new(move || reddit.server().request_count()),
        })
    }
}
