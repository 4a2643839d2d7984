//! `bench-github`: a GitHub onboarding through the real processor and PostgreSQL, against the fake
//! GitHub (in this process) answering every request after a simulated latency. Prints the
//! activities, the requests, the wall time, the CPU time and the peak memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tributary::admin::{self, ConnectRequest};
use tributary::store::{records, runs};
use tributary::{Credentials, IntegrationProcessor, ProcessorConfig, Registry, RunOutcome};
use tributary_integrations::github::fake::{FakeGithub, FakeGithubOptions, GithubData, GithubSpec};
use tributary_integrations::github::{GithubIntegration, PLATFORM};
use uuid::Uuid;

use super::memory;
use super::onboarding::cpu_time;

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "bench-github")]
pub struct GithubBenchArgs {
    #[arg(long, default_value_t = 1_000)]
    pub issues: usize,
    /// Every N-th issue is a pull request.
    #[arg(long, default_value_t = 3)]
    pub pull_every: usize,
    #[arg(long, default_value_t = 1_500)]
    pub comments: usize,
    #[arg(long, default_value_t = 500)]
    pub review_comments: usize,
    #[arg(long, default_value_t = 3_000)]
    pub stars: usize,
    #[arg(long, default_value_t = 200)]
    pub forks: usize,
    /// Distinct users among the authors and stargazers.
    #[arg(long, default_value_t = 4_000)]
    pub users: usize,
    /// Simulated latency of every request, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub latency_ms: u64,
    /// Streams (so requests) in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}

const TOKEN: &str = "ghp_bench";

pub async fn run(args: GithubBenchArgs) -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
    let pool = tributary::db::connect(&url, (args.concurrency as u32) * 2 + 4).await?;
    tributary::db::migrate(&pool).await?;
    let spec = GithubSpec {
        repositories: 1,
        users: args.users,
        stars: args.stars,
        forks: args.forks,
        issues: args.issues,
        pull_every: args.pull_every,
        comments: args.comments,
        review_comments: args.review_comments,
    };
    let data = GithubData::generate(spec);
    let expected = data.expected_activities().len();
    let github = FakeGithub::start(
        data,
        FakeGithubOptions {
            token: Some(TOKEN.to_owned()),
            // GitHub's own primary limit: its headers feed the pacing
            rate_limit: Some((5_000, Duration::from_secs(3_600))),
        },
    )
    .await
    .context("starting the fake GitHub")?;
    github
        .server()
        .latency(Duration::from_millis(args.latency_ms));

    let mut registry = Registry::new();
    registry.register(GithubIntegration::new().stream_concurrency(args.concurrency))?;
    let registry = Arc::new(registry);
    let (integration, run) = admin::connect(
        &pool,
        &registry,
        ConnectRequest {
            tenant_id: Uuid::new_v4(),
            platform: PLATFORM.to_owned(),
            settings: json!({ "base_url": github.base_url(), "repositories": ["org0/project0"] }),
            credentials: Credentials::new(json!({ "token": TOKEN })),
        },
    )
    .await?;
    println!(
        "GitHub onboarding: {} issues (one in {} a pull request), {} comments, {} review comments, {} stargazers, {} forks; {} ms per request; {} streams at once",
        args.issues,
        args.pull_every,
        args.comments,
        args.review_comments,
        args.stars,
        args.forks,
        args.latency_ms,
        args.concurrency
    );

    let processor = IntegrationProcessor::new(pool.clone(), registry, ProcessorConfig::default());
    let cpu_before = cpu_time();
    let started = Instant::now();
    let outcome = processor
        .process_run(run.id, &CancellationToken::new())
        .await?;
    let wall = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    anyhow::ensure!(
        outcome == RunOutcome::Processed,
        "the onboarding ended {outcome:?}"
    );

    let run = runs::get(&pool, run.id).await?;
    let stored = records::count_activities(&pool, integration.id).await?;
    let requests = github.server().request_count();
    let serial = Duration::from_millis(args.latency_ms) * u32::try_from(requests).unwrap_or(0);
    println!(
        "activities  {stored} stored ({expected} expected, {} created), {} members, {} streams",
        run.activities_created, run.members_created, run.streams_processed
    );
    println!(
        "requests    {requests} ({} in flight at most); one at a time they would take {:.1} s",
        github.server().max_in_flight(),
        serial.as_secs_f64()
    );
    println!(
        "time        wall {:.2} s · CPU {:.2} s (this process: the worker and the fake GitHub) · {:.0} activities/s",
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        stored as f64 / wall.as_secs_f64()
    );
    println!(
        "memory      peak RSS {:.1} MiB",
        memory::peak_rss_kib() as f64 / 1024.0
    );
    anyhow::ensure!(
        stored as usize == expected,
        "stored {stored} activities, expected {expected}"
    );
    Ok(())
}
