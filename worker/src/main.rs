//! `tributary-worker`: parses its arguments, sets up tracing, turns SIGTERM/SIGINT into a
//! shutdown, and runs the worker of the library.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tributary::ProcessorConfig;
use tributary::maintenance::{RunRescuerConfig, TickSchedulerConfig};
use tributary::processor::default_worker_id;
use tributary::queue::{QueueBackend, QueueConfig};
use tributary::runtime::ShutdownSignals;
use tributary_worker::{HealthEndpoint, WorkerConfig};

/// Takes messages from the queue and processes the runs they ask for.
#[derive(Debug, Parser)]
#[command(name = "tributary-worker", version)]
struct Args {
    /// PostgreSQL (migrations are applied at start).
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
    /// Receives before the postgres backend dead-letters a message (SQS: the RedrivePolicy).
    #[arg(long, env = "TRIBUTARY_QUEUE_MAX_RECEIVES", default_value_t = tributary::queue::DEFAULT_MAX_RECEIVES)]
    max_receives: u32,
    /// Messages (runs, ticks) handled at once while the queue has no backlog.
    #[arg(long, env = "TRIBUTARY_WORKER_CONCURRENCY", default_value_t = 4)]
    concurrency: usize,
    /// Messages handled at once at most: on a backlog the worker doubles its concurrency up to
    /// this, and halves it back when the queue is empty (default: 32, at least --concurrency).
    #[arg(long, env = "TRIBUTARY_WORKER_MAX_CONCURRENCY")]
    max_concurrency: Option<usize>,
    /// Names this worker in leases (default: host-pid-random).
    #[arg(long, env = "TRIBUTARY_WORKER_ID")]
    worker_id: Option<String>,
    /// Health endpoint address (GET /health/live, GET /health/ready); "off" for none. Default: 127.0.0.1:9464, or any
    /// free port if another worker of this host has that one (the log says which).
    #[arg(long, env = "TRIBUTARY_HEALTH_ADDR")]
    health_addr: Option<String>,
    /// Lease duration, seconds. A dead worker's run is resumed by another within this (after
    /// its last heartbeat) plus about a second: this sets how fast recovery is.
    #[arg(long, env = "TRIBUTARY_LEASE_SECS", default_value_t = 60.0)]
    lease_secs: f64,
    /// Heartbeat interval, seconds.
    #[arg(long, env = "TRIBUTARY_HEARTBEAT_SECS", default_value_t = 15.0)]
    heartbeat_secs: f64,
    /// Time in-flight streams get to commit at shutdown, seconds.
    #[arg(long, env = "TRIBUTARY_SHUTDOWN_GRACE_SECS", default_value_t = 20.0)]
    shutdown_grace_secs: f64,
    /// The worker exits within this after SIGTERM/SIGINT, seconds (default: grace + 10).
    #[arg(long, env = "TRIBUTARY_SHUTDOWN_TIMEOUT_SECS")]
    shutdown_timeout_secs: Option<f64>,
    /// Message visibility timeout, seconds (extended while a message is handled). Recovery from
    /// a dead worker does not wait for it: the rescuer follows the lease.
    #[arg(long, env = "TRIBUTARY_VISIBILITY_SECS", default_value_t = 60.0)]
    visibility_secs: f64,
    /// Long-polling wait of a receive, seconds (at most 20).
    #[arg(long, env = "TRIBUTARY_RECEIVE_WAIT_SECS", default_value_t = 20.0)]
    receive_wait_secs: f64,
    /// How often the run rescuer looks at least for runs that need a message, seconds (it also
    /// wakes up at every lease expiry).
    #[arg(long, env = "TRIBUTARY_RESCUE_INTERVAL_SECS", default_value_t = 60.0)]
    rescue_interval_secs: f64,
    /// A delayed run whose delay ended gets a message again once none was sent for this long
    /// (then with backoff), seconds. A run whose lease expired gets one at once.
    #[arg(long, env = "TRIBUTARY_RESEND_AFTER_SECS", default_value_t = 60.0)]
    resend_after_secs: f64,
    /// A pending run (its message presumably lost) gets one again after this, seconds.
    #[arg(
        long,
        env = "TRIBUTARY_PENDING_RESEND_AFTER_SECS",
        default_value_t = 300.0
    )]
    pending_resend_after_secs: f64,
    /// A tick older than this makes no check runs, seconds.
    #[arg(long, env = "TRIBUTARY_MAX_TICK_AGE_SECS", default_value_t = 300.0)]
    max_tick_age_secs: f64,
    /// Integrations per transaction of a tick's fan-out.
    #[arg(long, env = "TRIBUTARY_FANOUT_BATCH", default_value_t = 5_000)]
    fanout_batch: usize,
    /// Pace every credential from its rate-limit budget shared in PostgreSQL with the other
    /// workers and the commands (true or false).
    #[arg(long, env = "TRIBUTARY_SHARED_BUDGETS", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    shared_budgets: bool,
    /// Share (0 to 1) of a platform's check interval over which its integrations' checks are
    /// spread, each at a fixed offset of its own, so load is flat (0: all at the tick).
    #[arg(long, env = "TRIBUTARY_CHECK_SPREAD", default_value_t = 0.8)]
    check_spread: f64,
    /// PostgreSQL connections (default: 6 per concurrent message + 5).
    #[arg(long, env = "TRIBUTARY_DB_MAX_CONNECTIONS")]
    max_connections: Option<u32>,
}

fn secs(name: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("--{name} must be a number of seconds ≥ 0"))
}

impl Args {
    fn config(self) -> anyhow::Result<WorkerConfig> {
        let grace = secs("shutdown-grace-secs", self.shutdown_grace_secs)?;
        let health = match self.health_addr.as_deref() {
            None => HealthEndpoint::Default,
            Some("off" | "none" | "") => HealthEndpoint::Off,
            Some(addr) => HealthEndpoint::At(addr.parse::<SocketAddr>().with_context(|| {
                format!("--health-addr `{addr}` is not an address like 127.0.0.1:9464")
            })?),
        };
        let mut config = WorkerConfig::new(self.database_url);
        config.max_connections = self.max_connections;
        config.queue = QueueConfig {
            backend: self.queue,
            pg_queue: self.pg_queue,
            max_receives: self.max_receives,
            sqs_queue_url: self.sqs_queue_url,
            sqs_dead_letter_queue_url: self.sqs_dead_letter_queue_url,
        };
        config.concurrency = self.concurrency;
        config.max_concurrency = self
            .max_concurrency
            .unwrap_or(config.max_concurrency.max(self.concurrency));
        config.processor = ProcessorConfig {
            worker_id: self.worker_id.unwrap_or_else(default_worker_id),
            lease_duration: secs("lease-secs", self.lease_secs)?,
            heartbeat_interval: secs("heartbeat-secs", self.heartbeat_secs)?,
            shutdown_grace: grace,
            ..ProcessorConfig::default()
        };
        config.shutdown_timeout = match self.shutdown_timeout_secs {
            Some(s) => secs("shutdown-timeout-secs", s)?,
            None => grace + Duration::from_secs(10),
        };
        config.visibility_timeout = secs("visibility-secs", self.visibility_secs)?;
        config.receive_wait = secs("receive-wait-secs", self.receive_wait_secs)?;
        config.health = health;
        config.rescuer = RunRescuerConfig {
            interval: secs("rescue-interval-secs", self.rescue_interval_secs)?,
            resend_after: secs("resend-after-secs", self.resend_after_secs)?,
            pending_resend_after: secs(
                "pending-resend-after-secs",
                self.pending_resend_after_secs,
            )?,
            ..RunRescuerConfig::default()
        };
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.check_spread),
            "--check-spread must be between 0 and 1, not {}",
            self.check_spread
        );
        config.scheduler = TickSchedulerConfig {
            batch_size: self.fanout_batch,
            spread: self.check_spread,
        };
        config.max_tick_age = secs("max-tick-age-secs", self.max_tick_age_secs)?;
        config.http_policy = tributary::http::HttpPolicy::from_env()?;
        config.shared_budgets = self.shared_budgets;
        Ok(config)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = tributary::otel::init_tracing_and_export("info,sqlx=warn", "tributary-worker");
    let result = work().await;
    // the spans still batched go out before the process ends
    telemetry.shutdown().await;
    result
}

/// Runs the worker until SIGTERM or SIGINT (a second one stops it at once).
async fn work() -> anyhow::Result<()> {
    let config = Args::parse().config()?;
    let keys = tributary::keyring::init_from_env().context("loading the credentials key")?;
    tributary::keyring::require_key(keys, tributary::keyring::plaintext_allowed())?;
    if keys.is_plaintext() {
        tracing::warn!(
            "credentials are stored in the clear (TRIBUTARY_ALLOW_PLAINTEXT_CREDENTIALS)"
        );
    }
    let mut signals = ShutdownSignals::listen().context("cannot listen for SIGTERM/SIGINT")?;
    let shutdown = CancellationToken::new();
    let worker = tributary_worker::run(config, shutdown.clone());
    tokio::pin!(worker);
    tokio::select! {
        result = &mut worker => return result.context("the worker stopped on an error"),
        name = signals.next() => {
            tracing::info!("{name} received: shutting down (send another to stop at once)");
            shutdown.cancel();
        }
    }
    tokio::select! {
        result = &mut worker => result.context("the worker stopped on an error"),
        name = signals.next() => {
            anyhow::bail!("{name} received again: stopping at once; leases left expire and are rescued")
        }
    }
}
