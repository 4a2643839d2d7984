//! The Tributary worker: takes messages from the queue and does what they ask, several at once.
//!
//! * `process_integration` / `continue_run`: the run is processed by the
//!   [`IntegrationProcessor`] until it ends, waits, or is released at shutdown. While it runs, the
//!   message's visibility is extended; the message is deleted only once everything the run did is
//!   committed.
//! * `tick`: check runs for the platforms due at the slot ([`TickScheduler`]), then the rescue of
//!   runs that need a message ([`RunRescuer`]); the rescuer also runs on its own interval.
//! * Anything that does not parse, or names what does not exist, gets one log line and goes to
//!   the dead-letter queue with its reason; the worker goes on.
//!
//! Delayed runs: when a run waits (rate limit, sleep, retry backoff) the worker sends a
//! `continue_run` delayed until the run is due (queues delay up to 15 minutes); a longer wait is
//! left to the rescuer, which sends the message once the run is due. A run this worker releases
//! at shutdown gets an immediate `continue_run`, so another worker resumes it at once.
//!
//! Shutdown (the token is cancelled, on SIGTERM/SIGINT): no new messages are taken; in-flight
//! streams get the processor's `shutdown_grace` to commit; runs are released (their leases
//! freed) and handed on; after `shutdown_timeout` whatever is left is stopped, its leases expire
//! and the rescuer hands it to another worker.

mod acks;
mod events;
pub mod handler;
mod health;
mod slots;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tributary::db::{self, DbError};
use tributary::maintenance::{RunRescuer, RunRescuerConfig, TickScheduler, TickSchedulerConfig};
use tributary::queue::{
    MAX_BATCH, MAX_WAIT, Queue, QueueConfig, QueueError, ReceiveRequest, ReceivedMessage,
};
use tributary::registry::{Registry, RegistryError};
use tributary::startup;
use tributary::{IntegrationProcessor, ProcessorConfig};

pub use handler::{Disposition, MessageHandler};
use health::Health;
pub use health::Stats;

/// Where the health endpoint (`GET /health`) listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthEndpoint {
    Off,
    At(SocketAddr),
    /// [`DEFAULT_HEALTH_ADDR`], or any free port of 127.0.0.1 if it is taken (two workers on one
    /// host); the log says which.
    Default,
}

pub const DEFAULT_HEALTH_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

/// Everything a worker can be told. [`WorkerConfig::new`] gives the defaults for a database.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub database_url: String,
    /// Connections of the worker's pool (default: enough for `concurrency` runs).
    pub max_connections: Option<u32>,
    pub queue: QueueConfig,
    /// Messages (runs, ticks) handled at once while the queue has no backlog.
    pub concurrency: usize,
    /// Messages handled at once at most: on a backlog the worker doubles its concurrency up to
    /// this, and halves it back when the queue is empty (see `slots`).
    pub max_concurrency: usize,
    /// Leases, heartbeats, shutdown grace: see [`ProcessorConfig`].
    pub processor: ProcessorConfig,
    /// A received message stays invisible this long, and is extended while it is handled.
    pub visibility_timeout: Duration,
    /// How long a receive waits for messages (long polling, at most 20 s).
    pub receive_wait: Duration,
    /// A message that could not be handled (database unreachable) is delivered again after this.
    pub retry_after: Duration,
    /// Where the health endpoint listens.
    pub health: HealthEndpoint,
    pub rescuer: RunRescuerConfig,
    pub scheduler: TickSchedulerConfig,
    /// A tick older than this makes no check runs (after a backlog, its slot is past).
    pub max_tick_age: Duration,
    /// What the integrations' HTTP clients may do: body cap, address guard
    /// (`HttpPolicy::from_env`).
    pub http_policy: tributary::http::HttpPolicy,
    /// After shutdown is requested, the worker exits within this.
    pub shutdown_timeout: Duration,
    /// Pace every credential from its budget shared in PostgreSQL (`rate_limit_budgets`) with
    /// the other workers and the commands.
    pub shared_budgets: bool,
}

impl WorkerConfig {
    pub fn new(database_url: impl Into<String>) -> Self {
        let processor = ProcessorConfig::default();
        Self {
            database_url: database_url.into(),
            max_connections: None,
            queue: QueueConfig::default(),
            concurrency: 4,
            max_concurrency: 32,
            shutdown_timeout: processor.shutdown_grace + Duration::from_secs(10),
            processor,
            visibility_timeout: Duration::from_secs(60),
            receive_wait: MAX_WAIT,
            retry_after: Duration::from_secs(10),
            health: HealthEndpoint::Default,
            rescuer: RunRescuerConfig::default(),
            scheduler: TickSchedulerConfig::default(),
            max_tick_age: Duration::from_secs(300),
            http_policy: tributary::http::HttpPolicy::default(),
            shared_budgets: true,
        }
    }

    fn pool_size(&self) -> u32 {
        self.max_connections.unwrap_or_else(|| {
            // per run: its streams, the heartbeat, the claim; plus listener, rescuer, health. The
            // runs beyond `concurrency` (a backlog, mostly checks waiting on their platform) hold
            // a connection only while they write: one more each
            let extra = self.max_concurrency.saturating_sub(self.concurrency);
            u32::try_from(
                self.concurrency
                    .saturating_mul(6)
                    .saturating_add(extra)
                    .saturating_add(5),
            )
            .unwrap_or(100)
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot open the queue")]
    Queue(#[from] QueueError),
    #[error("cannot build the registry of integrations")]
    Registry(#[from] RegistryError),
    #[error("cannot listen on {addr} for the health endpoint")]
    Health {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Runs a worker with every integration of `tributary-integrations` until `shutdown`.
pub async fn run(config: WorkerConfig, shutdown: CancellationToken) -> Result<(), WorkerError> {
    let mut registry = tributary_integrations::registry()?;
    registry.set_http_policy(config.http_policy.clone());
    run_with_registry(config, Arc::new(registry), shutdown).await
}

/// Runs a worker with the integrations of `registry` until `shutdown`: serves the health
/// endpoint, connects (waiting, with a log line, while PostgreSQL or the queue is unreachable),
/// applies the migrations (refusing a schema newer than this build), opens the queue, takes
/// messages. A configuration the worker cannot use (a malformed URL, refused credentials) is an
/// error at once; an unreachable service is waited for.
pub async fn run_with_registry(
    config: WorkerConfig,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    if config.concurrency == 0 {
        return Err(WorkerError::Config(
            "concurrency must be at least 1".to_owned(),
        ));
    }
    if config.max_concurrency < config.concurrency {
        return Err(WorkerError::Config(format!(
            "the maximum concurrency ({}) is below the concurrency ({})",
            config.max_concurrency, config.concurrency
        )));
    }
    if config.receive_wait > MAX_WAIT {
        return Err(WorkerError::Config(format!(
            "the receive wait is at most {} s",
            MAX_WAIT.as_secs()
        )));
    }
    let stats = Arc::new(Stats::default());
    let health = Health::new(stats.clone(), config.processor.worker_id.clone());
    let health_stop = CancellationToken::new();
    let health_task = bind_health(config.health).await?.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            events::health_listening(addr);
        }
        tokio::spawn(
            health::serve(listener, health.clone(), health_stop.clone())
                .instrument(tracing::info_span!("health")),
        )
    });
    let result = async {
        let Some(pool) =
            startup::connect_patiently(&config.database_url, config.pool_size(), WORKER, &shutdown)
                .await?
        else {
            return Ok(());
        };
        db::migrate(&pool).await?;
        // before any message: the first times it takes are already on the database's clock
        if let Err(e) = tributary::clock::sync(&pool).await {
            tracing::debug!(error = %tributary::error::ErrorChain(&e), "clock sync failed");
        }
        let Some(queue) =
            startup::open_queue_patiently(&config.queue, &pool, WORKER, &shutdown).await?
        else {
            return Ok(());
        };
        health.connected(pool.clone(), queue.clone());
        let mut worker = Worker::new(pool, registry, queue, config);
        worker.stats = stats;
        worker.run(None, shutdown).await;
        Ok(())
    }
    .await;
    health_stop.cancel();
    if let Some(task) = health_task {
        let _ = task.await;
    }
    result
}

async fn bind_health(
    endpoint: HealthEndpoint,
) -> Result<Option<tokio::net::TcpListener>, WorkerError> {
    Ok(match endpoint {
        HealthEndpoint::Off => None,
        HealthEndpoint::At(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| WorkerError::Health { addr, source })?,
        ),
        HealthEndpoint::Default => match tokio::net::TcpListener::bind(DEFAULT_HEALTH_ADDR).await {
            Ok(listener) => Some(listener),
            Err(_) => {
                let any = SocketAddr::new(DEFAULT_HEALTH_ADDR.ip(), 0);
                Some(
                    tokio::net::TcpListener::bind(any)
                        .await
                        .map_err(|source| WorkerError::Health { addr: any, source })?,
                )
            }
        },
    })
}

/// Names the worker in the log lines of its start.
const WORKER: &str = "the worker";

/// How often the offset of this host's clock to the database's is measured again.
const CLOCK_SYNC_EVERY: Duration = Duration::from_secs(60);

/// On a backlog, a receive waits up to this for free slots, to take messages ten at a time.
const GATHER: Duration = Duration::from_millis(20);

/// A worker over an open pool and queue.
pub struct Worker {
    pool: PgPool,
    queue: Arc<dyn Queue>,
    handler: Arc<MessageHandler>,
    rescuer: Arc<RunRescuer>,
    config: WorkerConfig,
    stats: Arc<Stats>,
}

impl Worker {
    pub fn new(
        pool: PgPool,
        registry: Arc<Registry>,
        queue: Arc<dyn Queue>,
        config: WorkerConfig,
    ) -> Self {
        if config.shared_budgets {
            registry.http().share_budgets(pool.clone());
        }
        let processor =
            IntegrationProcessor::new(pool.clone(), registry.clone(), config.processor.clone());
        let scheduler = TickScheduler::new(
            pool.clone(),
            registry,
            queue.clone(),
            config.scheduler.clone(),
        );
        // one rescuer: run by ticks and on its own interval; it sees leases as this worker's
        // claims do
        let rescuer = Arc::new(RunRescuer::new(
            pool.clone(),
            queue.clone(),
            RunRescuerConfig {
                lease: config.processor.lease_duration,
                ..config.rescuer.clone()
            },
        ));
        let handler = MessageHandler::new(
            queue.clone(),
            processor,
            scheduler,
            rescuer.clone(),
            config.max_tick_age,
            config.visibility_timeout,
        );
        Self {
            pool,
            queue,
            handler: Arc::new(handler),
            rescuer,
            config,
            stats: Arc::new(Stats::default()),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Takes messages until `shutdown`, then drains (see the crate docs). `health` is the
    /// listener of the health endpoint, if any.
    pub async fn run(self, health: Option<tokio::net::TcpListener>, shutdown: CancellationToken) {
        let config = &self.config;
        events::started(
            &config.processor.worker_id,
            &self.queue.describe(),
            config.concurrency,
            config.max_concurrency,
            &config.database_url,
        );
        // background services, stopped after the drain
        let services_stop = CancellationToken::new();
        let mut services = JoinSet::new();
        if let Some(listener) = health {
            if let Ok(addr) = listener.local_addr() {
                events::health_listening(addr);
            }
            let state = Health::new(self.stats.clone(), config.processor.worker_id.clone());
            state.connected(self.pool.clone(), self.queue.clone());
            services.spawn(
                health::serve(listener, state, services_stop.clone())
                    .instrument(tracing::info_span!("health")),
            );
        }
        // every time this worker writes or compares beside the database's is on its clock
        services.spawn(
            tributary::clock::keep_synced(
                self.pool.clone(),
                CLOCK_SYNC_EVERY,
                services_stop.clone(),
            )
            .instrument(tracing::info_span!("clock")),
        );
        {
            let rescuer = self.rescuer.clone();
            let stop = shutdown.clone();
            services.spawn(
                async move { rescuer.run(stop).await }.instrument(tracing::info_span!("rescuer")),
            );
        }

        let acker = acks::Acker::start(self.queue.clone(), acks::ACK_DELAY);
        let mut slots = slots::Slots::new(config.concurrency, config.max_concurrency);
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut receive_failures = 0u32;
        loop {
            while let Some(joined) = tasks.try_join_next() {
                if let Err(e) = joined {
                    events::task_panicked(&e);
                }
            }
            // wait for a free slot, then take as many as are free (at most a batch)
            let mut permits = tokio::select! {
                () = shutdown.cancelled() => break,
                permits = slots.take(MAX_BATCH, GATHER) => match permits {
                    Ok(permits) => permits,
                    Err(_) => break,
                },
            };
            let request = ReceiveRequest {
                max_messages: permits.len(),
                wait: config.receive_wait,
                visibility: config.visibility_timeout,
            };
            // the handled messages' deletes ride on this receive where the queue can do that
            let deleting = if self.queue.deletes_with_receive() {
                acker.take()
            } else {
                Vec::new()
            };
            let receipts: Vec<_> = deleting.iter().map(|m| m.receipt.clone()).collect();
            let received = tokio::select! {
                () = shutdown.cancelled() => {
                    // deleted or not, the acker deletes them (again) before the worker stops
                    acker.put_back(deleting);
                    break;
                }
                received = self.queue.receive_after_deleting(request, &receipts) => received,
            };
            if received.is_err() {
                // not deleted: the acker tries again (a message that comes back meanwhile finds
                // its work done)
                acker.put_back(deleting);
            }
            let messages = match received {
                Ok(messages) => {
                    receive_failures = 0;
                    if let Some(now) = slots.follow(request.max_messages, messages.len()) {
                        events::concurrency_changed(now, messages.len());
                    }
                    messages
                }
                Err(e) => {
                    receive_failures = receive_failures.saturating_add(1);
                    let pause = Duration::from_millis(250)
                        .saturating_mul(1 << receive_failures.min(6))
                        .min(Duration::from_secs(10));
                    events::receive_failed(&e, pause);
                    drop(permits);
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(pause) => continue,
                    }
                }
            };
            for message in messages {
                let Some(permit) = permits.pop() else { break };
                let span = tracing::info_span!("message", message_id = %message.id);
                let job = Job {
                    queue: self.queue.clone(),
                    acks: acker.acks(),
                    handler: self.handler.clone(),
                    stats: self.stats.clone(),
                    visibility: config.visibility_timeout,
                    retry_after: config.retry_after,
                };
                let shutdown = shutdown.clone();
                tasks.spawn(
                    async move {
                        job.run(message, &shutdown).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
        }

        self.stats.stopping.store(true, Ordering::Relaxed);
        events::draining(tasks.len(), config.shutdown_timeout);
        let drained = tokio::time::timeout(config.shutdown_timeout, async {
            while let Some(joined) = tasks.join_next().await {
                if let Err(e) = joined {
                    events::task_panicked(&e);
                }
            }
        })
        .await;
        if drained.is_err() {
            events::drain_timed_out(tasks.len());
            tasks.shutdown().await;
        }
        // every handled message's delete is sent before the worker stops
        acker.close().await;
        services_stop.cancel();
        while services.join_next().await.is_some() {}
        events::stopped();
    }
}

/// One message's handling: keeps it invisible while the handler works, then deletes it,
/// dead-letters it, or lets it come back.
struct Job {
    queue: Arc<dyn Queue>,
    acks: acks::Acks,
    handler: Arc<MessageHandler>,
    stats: Arc<Stats>,
    visibility: Duration,
    retry_after: Duration,
}

impl Job {
    async fn run(self, message: ReceivedMessage, shutdown: &CancellationToken) {
        if shutdown.is_cancelled() {
            // received just before the shutdown: hand it straight back for another worker
            let _ = self
                .queue
                .extend_visibility(&message.receipt, Duration::ZERO)
                .await;
            return;
        }
        let _in_flight = InFlight::count(&self.stats);
        // the keeper runs in this task, beside the handler: if the handler panics, the keeper
        // goes with it and the message comes back after its visibility timeout
        let done = CancellationToken::new();
        let (disposition, ()) = tokio::join!(
            async {
                let disposition = self.handler.handle(&message, shutdown).await;
                done.cancel();
                disposition
            },
            keep_invisible(self.queue.as_ref(), &message, self.visibility, &done),
        );
        match disposition {
            Disposition::Done => {
                self.stats.handled.fetch_add(1, Ordering::Relaxed);
                self.acks.ack(message);
            }
            Disposition::Refused(reason) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                // logged once the move happened (or failed), never before
                match self.queue.dead_letter(&message, &reason).await {
                    Ok(()) => events::message_refused(&message, &reason),
                    Err(e) => events::dead_letter_failed(&message, &reason, &e),
                }
            }
            Disposition::Retry(reason) => {
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                events::message_retry(&message, &reason, self.retry_after);
                // best effort: if this fails, the message comes back after its visibility timeout
                let _ = self
                    .queue
                    .extend_visibility(&message.receipt, self.retry_after)
                    .await;
            }
        }
    }
}

/// Counts a message in flight for as long as it lives (a panic included).
struct InFlight<'a>(&'a Stats);

impl<'a> InFlight<'a> {
    fn count(stats: &'a Stats) -> Self {
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Extends the message's visibility every third of its timeout until `stop`.
async fn keep_invisible(
    queue: &dyn Queue,
    message: &ReceivedMessage,
    visibility: Duration,
    stop: &CancellationToken,
) {
    let every = (visibility / 3).max(Duration::from_millis(200));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match queue.extend_visibility(&message.receipt, visibility).await {
            Ok(()) => {}
            // deleted (a redelivered message replaced by a fresh one) or received again
            Err(QueueError::ReceiptInvalid) => return,
            Err(e) => events::visibility_lost(message, &e),
        }
    }
}
