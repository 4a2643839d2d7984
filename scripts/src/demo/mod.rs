//! `scripts/demo`: the main job on embedded defaults, in the real topology. A local Example Forum
//! and fake GitHub, Dev.to and Hacker News servers; a worker and a tick generator as processes over the
//! postgres queue; an integration of each connected (its onboarding handed to the queue) and
//! onboarded by the worker, the forum's riding out its rate limit; the forum then checked by the
//! next minute's tick after new posts; a summary.

mod platforms;
mod topology;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{Timelike, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tributary::Credentials;
use tributary::admin::{self, ConnectRequest};
use tributary::store::runs::{Run, RunState};
use tributary::store::{integrations, records, runs, streams};
use tributary_integrations::example_forum::PLATFORM;
use tributary_integrations::example_forum::fake::{
    DatasetSpec, FakeForum, ForumData, ForumOptions, author,
};
use uuid::Uuid;

use crate::commands::handoff;
use crate::context::CommandContext;
use crate::progress::{self, ProgressWriter, clock};
use platforms::DemoPlatform;
use topology::Topology;

/// The forum the demo serves.
pub const SPEC: DatasetSpec = DatasetSpec {
    channels: 3,
    posts_per_channel: 40,
    replies_per_post: 3,
    members: 25,
};

pub async fn run(shutdown: &CancellationToken) -> anyhow::Result<()> {
    // credentials are sealed at rest: the demo's key is the environment's, or one made for it
    let key = std::env::var(tributary::keyring::KEY_ENV)
        .ok()
        .filter(|k| !k.trim().is_empty())
        .unwrap_or_else(tributary::keyring::Keyring::generate_key);
    tributary::keyring::install(
        tributary::keyring::Keyring::new(&key, &[]).context("the demo's credentials key")?,
    );
    let ctx = CommandContext::from_env().await?;
    let database_url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
    let data = ForumData::generate(SPEC);
    let expected = data.activity_count();
    let server = FakeForum::start(
        data,
        ForumOptions {
            rate_limit: Some((25, Duration::from_secs(3))),
            ..ForumOptions::default()
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
    let others = platforms::start().await?;
    for other in &others {
        println!("  platform: {}", other.description);
    }
    let logs = std::env::var("TRIBUTARY_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("."))
        .join(".tmp/demo");
    let mut topology = Topology::start(&database_url, &logs, &key).await?;
    println!(
        "  runtime: {} on the postgres queue; logs in {}",
        topology.describe(),
        logs.display()
    );

    let result = drive(&ctx, &server, expected, &others, &mut topology, shutdown).await;
    for ended in topology.stop(Duration::from_secs(40)).await {
        println!("  {ended}");
    }
    result
}

async fn drive(
    ctx: &CommandContext,
    server: &FakeForum,
    expected: usize,
    others: &[DemoPlatform],
    topology: &mut Topology,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
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
    handoff::hand_off(ctx, &onboarding).await?;
    let started = Instant::now();
    let mut onboardings = Vec::new();
    for other in others {
        let (connected, run) = admin::connect(
            &ctx.pool,
            &ctx.registry,
            ConnectRequest {
                tenant_id: tenant,
                platform: other.platform.to_owned(),
                settings: other.settings.clone(),
                credentials: Credentials::new(other.credentials.clone()),
            },
        )
        .await?;
        println!("connected {} integration {}", other.platform, connected.id);
        handoff::hand_off(ctx, &run).await?;
        onboardings.push((other, connected.id, run.id));
    }

    let run = wait_for_end(
        ctx,
        onboarding.id,
        topology,
        shutdown,
        Duration::from_secs(300),
    )
    .await?;
    println!(
        "onboarding {} in {:.1} s: {} streams, {} activities ({} expected), {} members, {} requests",
        run.state,
        started.elapsed().as_secs_f64(),
        run.streams_processed,
        run.activities_created,
        expected,
        run.members_created,
        server.requests()
    );
    anyhow::ensure!(
        run.state == RunState::Processed,
        "the onboarding did not succeed"
    );
    for (other, integration_id, run_id) in &onboardings {
        let run = wait_for_end(ctx, *run_id, topology, shutdown, Duration::from_secs(300)).await?;
        let stored = records::count_activities(&ctx.pool, *integration_id).await?;
        let took = run
            .finished_at
            .map(|end| (end - run.created_at).num_milliseconds() as f64 / 1000.0)
            .unwrap_or_default();
        println!(
            "{} onboarding {} in {took:.1} s: {} streams, {} activities ({} expected), {} members, {} requests",
            other.platform,
            run.state,
            run.streams_processed,
            stored,
            other.expected,
            run.members_created,
            other.requests()
        );
        anyhow::ensure!(
            run.state == RunState::Processed && stored as usize == other.expected,
            "the {} onboarding did not bring exactly what the platform holds",
            other.platform
        );
        integrations::disconnect(&ctx.pool, *integration_id).await?;
    }

    let now = Utc::now();
    let post = server.edit(|d| d.add_post("channel-1", author(3), "Release notes", now));
    server.edit(|d| d.add_reply(post, author(7), "Great release", now));
    server.edit(|d| d.add_reply(1, author(9), "A late answer to the first post", now));
    let next_tick = now.with_second(0).unwrap_or(now) + chrono::Duration::minutes(1);
    println!(
        "the forum gets 1 new post and 2 new replies; the next tick ({}) checks the integration",
        next_tick.format("%H:%M")
    );
    let before = server.requests();
    let check = wait_for_check(ctx, integration.id, onboarding.id, topology, shutdown).await?;
    let check = wait_for_end(ctx, check.id, topology, shutdown, Duration::from_secs(120)).await?;
    println!(
        "check run {} {}: {} new activities, {} requests",
        check.id,
        check.state,
        check.activities_created,
        server.requests() - before
    );

    let integration = integrations::get(&ctx.pool, integration.id).await?;
    let total = records::count_activities(&ctx.pool, integration.id).await?;
    let on_forum = server.edit(|d| d.activity_count());
    println!(
        "summary: integration {} is {}, last processed at {}, {} activities stored ({} on the forum)",
        integration.id,
        integration.status,
        integration.last_processed_at.map(clock).unwrap_or_default(),
        total,
        on_forum
    );
    // the forum goes away with the demo: nothing should check it again
    integrations::disconnect(&ctx.pool, integration.id).await?;
    anyhow::ensure!(
        total as usize == on_forum,
        "the store does not match the forum"
    );
    Ok(())
}

/// Follows a run the workers process, printing its progress, until it has ended.
async fn wait_for_end(
    ctx: &CommandContext,
    run_id: Uuid,
    topology: &mut Topology,
    shutdown: &CancellationToken,
    deadline: Duration,
) -> anyhow::Result<Run> {
    let until = Instant::now() + deadline;
    let mut writer = ProgressWriter::default();
    loop {
        topology.check_alive()?;
        let run = runs::get(&ctx.pool, run_id).await?;
        let p = streams::progress(&ctx.pool, run_id).await?;
        writer.update(format!("  {}", progress::line(&run, &p)));
        if !run.state.is_active() {
            writer.finish();
            return Ok(run);
        }
        anyhow::ensure!(
            Instant::now() < until,
            "run {run_id} did not end within {deadline:?}"
        );
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            () = shutdown.cancelled() => anyhow::bail!("interrupted"),
        }
    }
}

/// Waits for the tick generator's next tick to create a check run of the integration.
async fn wait_for_check(
    ctx: &CommandContext,
    integration_id: Uuid,
    onboarding: Uuid,
    topology: &mut Topology,
    shutdown: &CancellationToken,
) -> anyhow::Result<Run> {
    let until = Instant::now() + Duration::from_secs(150);
    loop {
        topology.check_alive()?;
        let latest: Option<Run> = sqlx::query_as(
            "SELECT * FROM integration_runs WHERE integration_id = $1 AND id <> $2
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(integration_id)
        .bind(onboarding)
        .fetch_optional(&ctx.pool)
        .await?;
        if let Some(run) = latest {
            println!(
                "tick {}: check run {} created",
                run.trigger_key.as_deref().unwrap_or("?"),
                run.id
            );
            return Ok(run);
        }
        anyhow::ensure!(
            Instant::now() < until,
            "no tick created a check run within 150 s"
        );
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            () = shutdown.cancelled() => anyhow::bail!("interrupted"),
        }
    }
}
