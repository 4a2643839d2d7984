//! `dispatch-events`: delivers the outbox's events to subscriptions until SIGTERM/Ctrl-C. Run as
//! many as you like: each batch is delivered by one of them.

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tributary::delivery::{Dispatcher, DispatcherConfig, RetrySchedule, parse_duration};

/// Deliver events to subscriptions (webhooks and SQS queues) until stopped.
#[derive(Debug, Parser)]
#[command(name = "dispatch-events")]
pub struct DispatchArgs {
    /// Subscriptions delivered at once.
    #[arg(long, env = "TRIBUTARY_DISPATCH_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,
    /// How long a claimed subscription is held (a dispatcher that dies is replaced after it).
    #[arg(long, env = "TRIBUTARY_DISPATCH_LEASE", default_value = "60s", value_parser = parse_duration)]
    pub lease: Duration,
    /// The time an endpoint has to answer.
    #[arg(long, env = "TRIBUTARY_DISPATCH_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// The waits before each retry; the batch is dead-lettered after the last.
    #[arg(
        long,
        env = "TRIBUTARY_DISPATCH_RETRIES",
        default_value = "5s,5m,30m,2h,5h,10h"
    )]
    pub retries: String,
    /// A subscription failing for this long is paused.
    #[arg(long, env = "TRIBUTARY_DISPATCH_PAUSE_AFTER", default_value = "24h", value_parser = parse_duration)]
    pub pause_after: Duration,
    /// The wait between polls when idle.
    #[arg(long, env = "TRIBUTARY_DISPATCH_POLL", default_value = "250ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Deliver to SQS targets (the standard AWS variables configure the client).
    #[arg(long, env = "TRIBUTARY_DISPATCH_SQS")]
    pub sqs: bool,
}

pub async fn run(args: DispatchArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .context("DATABASE_URL is not set (the scripts in scripts/ set it for you)")?;
    let pool =
        tributary::db::connect(&url, u32::try_from(args.concurrency).unwrap_or(8) + 4).await?;
    tributary::db::migrate(&pool)
        .await
        .context("bringing the database schema up to date")?;
    let retries =
        RetrySchedule::parse(&args.retries, 0.2).map_err(|e| anyhow::anyhow!("--retries: {e}"))?;
    let config = DispatcherConfig {
        concurrency: args.concurrency.max(1),
        lease: args.lease,
        request_timeout: args.request_timeout,
        retries,
        pause_after: args.pause_after,
        poll_interval: args.poll_interval,
        ..DispatcherConfig::default()
    };
    anyhow::ensure!(
        config.lease > config.request_timeout,
        "--lease must be longer than --request-timeout"
    );
    let sqs = if args.sqs {
        Some(tributary::queue::SqsQueue::client_from_env().await)
    } else {
        None
    };
    let dispatcher = Dispatcher::new(pool, config, sqs)?;
    dispatcher.run(shutdown).await;
    Ok(())
}
