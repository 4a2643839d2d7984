//! `bench-onboarding`: one platform's onboarding through the real processor and PostgreSQL,
//! against that platform's fake (in this process) answering every request after a simulated
//! latency. Prints the requests, activities, members, wall and CPU time and peak memory.
//!
//! A platform takes part by implementing [`BenchPlatform`] in `bench/platforms/` (a data set of a
//! realistic size on its fake, and the settings that read it) and adding itself to
//! [`platforms`].

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tributary::admin::{self, ConnectRequest};
use tributary::store::{records, runs};
use tributary::{Credentials, IntegrationProcessor, ProcessorConfig, Registry, RunOutcome};
use uuid::Uuid;

use super::memory;
use super::platforms;

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "bench-onboarding")]
pub struct OnboardingBenchArgs {
    /// The platforms to onboard, one after the other (default: every one that takes part).
    pub platforms: Vec<String>,
    /// Simulated latency of every request, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub latency_ms: u64,
}

/// A platform's fake, started with a benchmark-sized data set, and what its onboarding must store.
pub struct Prepared {
    /// A registry holding the platform's integration.
    pub registry: Registry,
    pub platform: &'static str,
    pub settings: Value,
    pub credentials: Value,
    /// One line describing the data set.
    pub description: String,
    pub expected_activities: usize,
    pub expected_members: usize,
    /// Requests the fake has received so far; owns the fake, which stops when this is dropped.
    pub requests: Box<dyn Fn() -> usize + Send + Sync>,
}

/// A platform taking part in the onboarding benchmark.
#[async_trait]
pub trait BenchPlatform: Send + Sync {
    /// The platform's name, as registered.
    fn name(&self) -> &'static str;

    /// Starts the fake with its data set, answering after `latency`.
    async fn prepare(&self, latency: Duration) -> anyhow::Result<Prepared>;
}

pub async fn run(args: OnboardingBenchArgs) -> anyhow::Result<()> {
    let all = platforms::all();
    let chosen: Vec<&dyn BenchPlatform> = if args.platforms.is_empty() {
        all.iter().map(|p| p.as_ref()).collect()
    } else {
        args.platforms
            .iter()
            .map(|name| {
                all.iter()
                    .find(|p| p.name() == name)
                    .map(|p| p.as_ref())
                    .with_context(|| {
                        let known: Vec<&str> = all.iter().map(|p| p.name()).collect();
                        format!(
                            "no onboarding benchmark for `{name}`; known: {}",
                            known.join(", ")
                        )
                    })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
    let pool = tributary::db::connect(&url, 24).await?;
    tributary::db::migrate(&pool).await?;
    let latency = Duration::from_millis(args.latency_ms);
    println!(
        "{:<16} {:>9} {:>11} {:>8} {:>8} {:>7} {:>9}  data set",
        "platform", "requests", "activities", "members", "wall s", "CPU s", "peak MiB"
    );
    for platform in chosen {
        let prepared = platform
            .prepare(latency)
            .await
            .with_context(|| format!("starting the fake {}", platform.name()))?;
        onboard(&pool, prepared).await?;
    }
    println!("({} ms per request)", args.latency_ms);
    Ok(())
}

async fn onboard(pool: &sqlx::PgPool, prepared: Prepared) -> anyhow::Result<()> {
    let registry = std::sync::Arc::new(prepared.registry);
    let (integration, run) = admin::connect(
        pool,
        &registry,
        ConnectRequest {
            tenant_id: Uuid::new_v4(),
            platform: prepared.platform.to_owned(),
            settings: prepared.settings,
            credentials: Credentials::new(prepared.credentials),
        },
    )
    .await
    .with_context(|| format!("connecting {}", prepared.platform))?;
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
        "the {} onboarding ended {outcome:?}",
        prepared.platform
    );
    let run = runs::get(pool, run.id).await?;
    let stored = records::count_activities(pool, integration.id).await?;
    println!(
        "{:<16} {:>9} {:>11} {:>8} {:>8.2} {:>7.2} {:>9.1}  {}",
        prepared.platform,
        (prepared.requests)(),
        stored,
        run.members_created,
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        memory::peak_rss_kib() as f64 / 1024.0,
        prepared.description
    );
    anyhow::ensure!(
        stored as usize == prepared.expected_activities,
        "{}: stored {stored} activities, expected {}",
        prepared.platform,
        prepared.expected_activities
    );
    anyhow::ensure!(
        run.members_created as usize == prepared.expected_members,
        "{}: created {} members, expected {}",
        prepared.platform,
        run.members_created,
        prepared.expected_members
    );
    Ok(())
}

/// User + system CPU time of this process so far (`/proc/self/stat`, in clock ticks of 10 ms).
pub fn cpu_time() -> Duration {
    const TICKS_PER_SECOND: u64 = 100;
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // the fields after the command name, which is in parentheses
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
}
