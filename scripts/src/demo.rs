//! `scripts/demo`: the main job on embedded defaults. A local Example Forum, an integration
//! connected, onboarded (riding out the forum's rate limit), then checked after new posts, and a
//! summary printed.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tributary::Credentials;
use tributary::admin::{self, ConnectRequest};
use tributary::processor::RunOutcome;
use tributary::store::{integrations, records, runs};
use tributary_integrations::example_forum::PLATFORM;
use tributary_integrations::example_forum::server::{
    DatasetSpec, ExampleForumServer, ForumData, ServerOptions, author,
};
use uuid::Uuid;

use crate::context::CommandContext;
use crate::inline;
use crate::progress::clock;

/// The forum the demo serves.
pub const SPEC: DatasetSpec = DatasetSpec {
    channels: 3,
    posts_per_channel: 40,
    replies_per_post: 3,
    members: 25,
};

pub async fn run(shutdown: &CancellationToken) -> anyhow::Result<()> {
    let ctx = CommandContext::from_env().await?;
    let data = ForumData::generate(SPEC);
    let expected = data.activity_count();
    let server = ExampleForumServer::start(
        data,
        ServerOptions {
            rate_limit: Some((25, Duration::from_secs(3))),
            ..ServerOptions::default()
        },
    )
    .await
    .context("starting the Example Forum server")?;
    println!("Tributary demo");
    println!(
        "  platform: Example Forum at {} ({} channels, {} posts, {} replies; 25 requests per 3 s)",
        server.base_url(),
        SPEC.channels,
        SPEC.channels * SPEC.posts_per_channel,
        SPEC.channels * SPEC.posts_per_channel * SPEC.replies_per_post
    );

    // a tenant of its own, so every demo starts from nothing
    let tenant = Uuid::new_v4();
    let (integration, onboarding) = admin::connect(
        &ctx.pool,
        &ctx.registry,
        ConnectRequest {
            tenant_id: tenant,
            platform: PLATFORM.to_owned(),
            settings: json!({ "base_url": server.base_url(), "per_page": 10 }),
            credentials: Credentials::new(json!({ "token": server.token() })),
        },
    )
    .await?;
    println!("connected integration {} (tenant {tenant})", integration.id);

    let started = Instant::now();
    println!("onboarding run {}:", onboarding.id);
    process_until_done(&ctx, onboarding.id, shutdown).await?;
    let run = runs::get(&ctx.pool, onboarding.id).await?;
    println!(
        "  {} in {:.1} s: {} streams, {} activities ({} expected), {} members, {} requests",
        run.state,
        started.elapsed().as_secs_f64(),
        run.streams_processed,
        run.activities_created,
        expected,
        run.members_created,
        server.requests()
    );

    let now = Utc::now();
    let post = server.edit(|d| d.add_post("channel-1", author(3), "Release notes", now));
    server.edit(|d| d.add_reply(post, author(7), "Great release", now));
    server.edit(|d| d.add_reply(1, author(9), "A late answer to the first post", now));
    println!("the forum gets 1 new post and 2 new replies");

    let before = server.requests();
    let check = admin::start_run(&ctx.pool, &ctx.registry, integration.id, false, None).await?;
    println!("check run {}:", check.id);
    process_until_done(&ctx, check.id, shutdown).await?;
    let check = runs::get(&ctx.pool, check.id).await?;
    println!(
        "  {}: {} new activities, {} requests",
        check.state,
        check.activities_created,
        server.requests() - before
    );

    let integration = integrations::get(&ctx.pool, integration.id).await?;
    let total = records::count_activities(&ctx.pool, integration.id).await?;
    println!(
        "summary: integration {} is {}, last processed at {}, {} activities stored ({} on the forum)",
        integration.id,
        integration.status,
        integration.last_processed_at.map(clock).unwrap_or_default(),
        total,
        server.edit(|d| d.activity_count())
    );
    anyhow::ensure!(
        total as usize == server.edit(|d| d.activity_count()),
        "the store does not match the forum"
    );
    Ok(())
}

/// Processes a run like a worker would: when it is delayed, waits for its time, then resumes.
async fn process_until_done(
    ctx: &CommandContext,
    run_id: Uuid,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let processor = tributary::IntegrationProcessor::new(
            ctx.pool.clone(),
            ctx.registry.clone(),
            tributary::ProcessorConfig::default(),
        );
        let outcome = processor.process_run(run_id, shutdown).await?;
        match outcome {
            RunOutcome::Processed => return Ok(()),
            RunOutcome::Delayed { until, ref reason } => {
                println!(
                    "  deferred until {} ({reason}); resuming then",
                    clock(until)
                );
                let wait = (until - Utc::now()).to_std().unwrap_or_default();
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.cancelled() => anyhow::bail!("interrupted"),
                }
            }
            other => {
                inline::report(run_id, &other);
                anyhow::bail!("run {run_id} did not finish");
            }
        }
    }
}
