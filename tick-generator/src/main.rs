//! `tributary-tick-generator`: parses its arguments, sets up tracing, turns SIGTERM/SIGINT into a
//! shutdown, and runs the tick generator of the library.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tributary::queue::{QueueBackend, QueueConfig};
use tributary::runtime::ShutdownSignals;
use tributary_tick_generator::TickGeneratorConfig;

/// Emits one `tick` message per minute slot; any number may run, each slot is emitted once.
#[derive(Debug, Parser)]
#[command(name = "tributary-tick-generator", version)]
struct Args {
    /// PostgreSQL (migrations are applied at start; emitted slots are kept there).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Queue backend: postgres or sqs.
    #[arg(long, env = "TRIBUTARY_QUEUE", default_value = "postgres")]
    queue: QueueBackend,
    /// SQS queue URL (with --queue sqs).
    #[arg(long, env = "TRIBUTARY_SQS_QUEUE_URL")]
    sqs_queue_url: Option<String>,
    /// SQS dead-letter queue URL (default: the queue's RedrivePolicy target).
    #[arg(long, env = "TRIBUTARY_SQS_DEAD_LETTER_QUEUE_URL")]
    sqs_dead_letter_queue_url: Option<String>,
    /// Name of the queue in the postgres backend.
    #[arg(long, env = "TRIBUTARY_PG_QUEUE", default_value = tributary::queue::DEFAULT_PG_QUEUE)]
    pg_queue: String,
    /// Names this generator in the emitted slots (default: host-pid-random).
    #[arg(long, env = "TRIBUTARY_GENERATOR_ID")]
    generator_id: Option<String>,
    /// Where `GET /metrics` listens (Prometheus format); `off` for none.
    #[arg(
        long,
        env = "TRIBUTARY_TICK_METRICS_ADDR",
        default_value = "127.0.0.1:9465"
    )]
    metrics_addr: String,
    /// After a failed emission, try again after this many seconds.
    #[arg(long, env = "TRIBUTARY_TICK_RETRY_SECS", default_value_t = 5.0)]
    retry_secs: f64,
}

impl Args {
    fn config(self) -> anyhow::Result<TickGeneratorConfig> {
        let mut config = TickGeneratorConfig::new(self.database_url);
        config.queue = QueueConfig {
            backend: self.queue,
            pg_queue: self.pg_queue,
            sqs_queue_url: self.sqs_queue_url,
            sqs_dead_letter_queue_url: self.sqs_dead_letter_queue_url,
            ..QueueConfig::default()
        };
        if let Some(id) = self.generator_id {
            config.generator_id = id;
        }
        config.metrics_addr = match self.metrics_addr.as_str() {
            "off" => None,
            addr => Some(
                addr.parse()
                    .context("--metrics-addr must be HOST:PORT or `off`")?,
            ),
        };
        config.retry_after = Duration::try_from_secs_f64(self.retry_secs)
            .context("--retry-secs must be a number of seconds ≥ 0")?;
        Ok(config)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry =
        tributary::otel::init_tracing_and_export("info,sqlx=warn", "tributary-tick-generator");
    let result = generate().await;
    telemetry.shutdown().await;
    result
}

/// Emits ticks until SIGTERM or SIGINT.
async fn generate() -> anyhow::Result<()> {
    let config = Args::parse().config()?;
    let mut signals = ShutdownSignals::listen().context("cannot listen for SIGTERM/SIGINT")?;
    let shutdown = CancellationToken::new();
    let generator = tributary_tick_generator::run(config, shutdown.clone());
    tokio::pin!(generator);
    tokio::select! {
        result = &mut generator => return result.context("the tick generator stopped on an error"),
        name = signals.next() => tracing::info!("{name} received: shutting down"),
    }
    shutdown.cancel();
    generator
        .await
        .context("the tick generator stopped on an error")
}
