//! `scripts/bench`: the processor's throughput against what the same PostgreSQL can do at best,
//! and its memory as a run grows.

mod baseline;
pub mod checks;
pub mod github;
mod memory;
mod noop;
pub mod onboarding;
mod platforms;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tributary::admin::{self, ConnectRequest};
use tributary::{Credentials, IntegrationProcessor, ProcessorConfig, Registry, RunOutcome};
use uuid::Uuid;

pub use noop::NoopIntegration;

/// What to measure.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "bench")]
pub struct BenchArgs {
    /// Streams of the streams/s run (no records: pure bookkeeping).
    #[arg(long, default_value_t = 10_000)]
    pub streams: u32,
    /// Streams × activities of the activities/s run.
    #[arg(long, default_value_t = 200)]
    pub activity_streams: u32,
    #[arg(long, default_value_t = 1000)]
    pub activities_per_stream: u32,
    /// Activities of the memory run (in streams of `activities_per_stream`); 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    pub memory_activities: u32,
    /// Streams processed at once, and the concurrency of the transaction baseline.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
    let pool = tributary::db::connect(&url, (args.concurrency as u32) * 2 + 4).await?;
    tributary::db::migrate(&pool).await?;
    describe_server(&pool).await?;

    // The machine's load varies: the transaction baseline brackets the streams run (measured
    // just before and just after), and the bulk baseline follows the activities run.
    let tx_before =
        baseline::single_row_transactions(&pool, args.concurrency, Duration::from_secs(3)).await?;
    let streams = processor_run(&pool, &args, args.streams, 0).await?;
    let tx_after =
        baseline::single_row_transactions(&pool, args.concurrency, Duration::from_secs(3)).await?;
    let tx_rate = (tx_before + tx_after) / 2.0;
    let streams_rate = f64::from(args.streams) / streams.as_secs_f64();
    let activities_total = args.activity_streams * args.activities_per_stream;
    let activities = processor_run(
        &pool,
        &args,
        args.activity_streams,
        args.activities_per_stream,
    )
    .await?;
    let activities_rate = f64::from(activities_total) / activities.as_secs_f64();
    let memory = if args.memory_activities > 0 {
        let streams = args.memory_activities.div_ceil(args.activities_per_stream);
        Some(
            memory::measure(|| processor_run(&pool, &args, streams, args.activities_per_stream))
                .await?,
        )
    } else {
        None
    };
    // the worker's own peak: before the bulk baseline builds its rows in memory
    let peak = memory::peak_rss_kib();
    let bulk_rate = baseline::bulk_upsert(&pool, activities_total, 5000).await?;

    println!();
    println!(
        "streams     {:>9} streams in {:>6.2} s = {:>9.0} streams/s | bare single-row transactions ({} at once): {:>9.0} tx/s (before {:.0}, after {:.0}) | ratio {:>5.1}% (target ≥ 50%) {}",
        args.streams,
        streams.as_secs_f64(),
        streams_rate,
        args.concurrency,
        tx_rate,
        tx_before,
        tx_after,
        100.0 * streams_rate / tx_rate,
        verdict(streams_rate / tx_rate)
    );
    println!(
        "activities  {:>9} activities in {:>6.2} s = {:>9.0} activities/s | one bulk INSERT … ON CONFLICT of the same rows: {:>9.0} rows/s | ratio {:>5.1}% (target ≥ 50%) {}",
        activities_total,
        activities.as_secs_f64(),
        activities_rate,
        bulk_rate,
        100.0 * activities_rate / bulk_rate,
        verdict(activities_rate / bulk_rate)
    );
    if let Some(m) = memory {
        println!(
            "memory      {}-activity run in {:.1} s ({:.0} activities/s): RSS by quarter of the run {} MiB; growth first→last quarter {:+.1} MiB {}",
            args.memory_activities,
            m.elapsed.as_secs_f64(),
            f64::from(args.memory_activities) / m.elapsed.as_secs_f64(),
            m.quarters
                .iter()
                .map(|q| format!("{:.1}", *q as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(" / "),
            m.growth_kib() as f64 / 1024.0,
            if m.growth_kib() < 16 * 1024 {
                "(flat)"
            } else {
                "(GROWS)"
            }
        );
    }
    println!(
        "worker peak memory (VmHWM, processor phases): {:.1} MiB",
        peak as f64 / 1024.0
    );
    Ok(())
}

fn verdict(ratio: f64) -> &'static str {
    if ratio >= 0.5 { "MET" } else { "MISSED" }
}

async fn describe_server(pool: &PgPool) -> anyhow::Result<()> {
    let (version, sync, fsync): (String, String, String) = sqlx::query_as(
        "SELECT current_setting('server_version'), current_setting('synchronous_commit'), current_setting('fsync')",
    )
    .fetch_one(pool)
    .await?;
    println!(
        "PostgreSQL {version}, synchronous_commit={sync}, fsync={fsync}; {} CPU cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    Ok(())
}

/// Connects a no-op integration with `streams` × `activities` and onboards it through the real
/// processor; returns the wall time of the processing.
async fn processor_run(
    pool: &PgPool,
    args: &BenchArgs,
    streams: u32,
    activities: u32,
) -> anyhow::Result<Duration> {
    let mut registry = Registry::new();
    registry.register(NoopIntegration {
        concurrency: args.concurrency,
    })?;
    let registry = Arc::new(registry);
    let (_, run) = admin::connect(
        pool,
        &registry,
        ConnectRequest {
            tenant_id: Uuid::new_v4(),
            platform: noop::PLATFORM.to_owned(),
            settings: json!({"streams": streams, "activities_per_stream": activities, "members": 5000}),
            credentials: Credentials::default(),
        },
    )
    .await?;
    let processor = IntegrationProcessor::new(pool.clone(), registry, ProcessorConfig::default());
    let started = Instant::now();
    let outcome = processor
        .process_run(run.id, &CancellationToken::new())
        .await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        outcome == RunOutcome::Processed,
        "the benchmark run ended {outcome:?}"
    );
    eprintln!(
        "  processed {streams} streams × {activities} activities in {:.2} s",
        elapsed.as_secs_f64()
    );
    Ok(elapsed)
}
