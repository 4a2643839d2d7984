//! The Tributary tick generator: one `tick` message per UTC minute slot.
//!
//! A slot is claimed by inserting its row in `tick_slots` inside a transaction that stays open
//! while the tick is sent and commits after: two generators claiming the same slot serialize on
//! that row, and only the one whose insert commits emits it. A restart finds the slot's row and
//! emits nothing. If sending fails, the transaction rolls back and the slot is tried again (by
//! this or another generator). Should the commit fail after a successful send, a tick may go out
//! twice: processing a tick is idempotent (check runs are keyed by the slot), so that costs
//! nothing but a look.
//!
//! Only the current slot is ever emitted: after downtime the missed slots are skipped (and
//! counted in the log), never replayed in a storm.

pub mod bench;
mod events;
pub mod metrics;

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tributary::db::{self, DbError};
use tributary::messages::{Message, TickSlot};
use tributary::queue::{OutgoingMessage, Queue, QueueConfig, QueueError};
use tributary::startup;
use tributary::store::{StoreError, ticks};

#[derive(Debug, Clone)]
pub struct TickGeneratorConfig {
    pub database_url: String,
    pub queue: QueueConfig,
    /// Names this generator in `tick_slots.emitted_by`.
    pub generator_id: String,
    /// After a failed emission, the next try comes this much later (within the same slot).
    pub retry_after: Duration,
    /// Emitted slots are remembered this long.
    pub keep_slots: Duration,
    /// Where `GET /metrics` listens (`None`: no endpoint).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl TickGeneratorConfig {
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            queue: QueueConfig::default(),
            generator_id: tributary::processor::default_worker_id(),
            retry_after: Duration::from_secs(5),
            keep_slots: Duration::from_secs(7 * 24 * 3600),
            metrics_addr: Some(metrics::DEFAULT_METRICS_ADDR),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sending the tick failed")]
    Queue(#[from] QueueError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Emits the tick of the current slot unless some generator already has.
pub struct TickGenerator {
    pool: PgPool,
    queue: std::sync::Arc<dyn Queue>,
    id: String,
    retry_after: Duration,
    keep_slots: Duration,
}

impl TickGenerator {
    pub fn new(
        pool: PgPool,
        queue: std::sync::Arc<dyn Queue>,
        id: impl Into<String>,
        retry_after: Duration,
        keep_slots: Duration,
    ) -> Self {
        Self {
            pool,
            queue,
            id: id.into(),
            retry_after,
            keep_slots,
        }
    }

    /// Emits the tick of the slot `now` falls in, if no generator has: `Some(slot)` when this
    /// call emitted it.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<Option<TickSlot>, TickError> {
        let slot = TickSlot::containing(now);
        let mut tx = tributary::db::begin(&self.pool).await?;
        if !ticks::claim_slot(&mut tx, slot.start(), &self.id).await? {
            tx.rollback().await?;
            events::slot_taken(slot);
            return Ok(None);
        }
        let previous: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT max(slot) FROM tick_slots WHERE slot < $1")
                .bind(slot.start())
                .fetch_one(&mut *tx)
                .await?;
        // the slot's row stays locked (uncommitted) while the tick is sent: a concurrent
        // generator waits, then finds it taken
        self.queue
            .send(OutgoingMessage::from(&Message::Tick { slot }))
            .await?;
        tx.commit().await?;
        let skipped = previous
            .map(|p| (slot.start() - p).num_minutes().saturating_sub(1).max(0))
            .unwrap_or(0);
        events::tick_emitted(slot, &self.id, skipped);
        Ok(Some(slot))
    }

    /// Emits each slot's tick as it begins, until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut last_pruned: Option<TickSlot> = None;
        loop {
            // slots by the database's clock, whatever this host's says
            if let Err(e) = tributary::clock::sync(&self.pool).await {
                tracing::debug!(error = %tributary::error::ErrorChain(&e), "clock sync failed");
            }
            let now = tributary::clock::now();
            let slot = TickSlot::containing(now);
            let attempt = self.run_once(now);
            let span = tracing::info_span!("tick", slot = %slot.start(), generator = %self.id);
            let failed = match tracing::Instrument::instrument(attempt, span).await {
                Ok(_) => false,
                Err(e) => {
                    events::emission_failed(slot, &e, self.retry_after);
                    true
                }
            };
            if last_pruned.is_none_or(|p| slot.start() - p.start() >= chrono::Duration::hours(1)) {
                let keep = chrono::Duration::from_std(self.keep_slots).unwrap_or_default();
                match ticks::prune(&self.pool, slot.start() - keep).await {
                    Ok(_) => last_pruned = Some(slot),
                    Err(e) => events::prune_failed(&e),
                }
            }
            // wake just after the next slot begins (or sooner, to retry a failed emission)
            let next = (slot.next().start() - tributary::clock::now())
                .to_std()
                .unwrap_or_default()
                + Duration::from_millis(20);
            let nap = if failed {
                next.min(self.retry_after)
            } else {
                next
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(nap) => {}
            }
        }
        events::stopped(&self.id);
    }
}

/// Connects (waiting, with a log line, while PostgreSQL or the queue is unreachable), applies the
/// migrations, opens the queue and emits ticks until `shutdown`. A configuration that cannot work
/// (a malformed URL, refused credentials, a queue that does not exist) is an error at once.
pub async fn run(
    config: TickGeneratorConfig,
    shutdown: CancellationToken,
) -> Result<(), TickError> {
    const PROCESS: &str = "the tick generator";
    let Some(pool) =
        startup::connect_patiently(&config.database_url, 4, PROCESS, &shutdown).await?
    else {
        return Ok(());
    };
    db::migrate(&pool).await?;
    let Some(queue) =
        startup::open_queue_patiently(&config.queue, &pool, PROCESS, &shutdown).await?
    else {
        return Ok(());
    };
    events::started(&config.generator_id, &queue.describe());
    let endpoint = config.metrics_addr.map(|addr| {
        tokio::spawn(metrics::serve(
            addr,
            pool.clone(),
            queue.clone(),
            shutdown.clone(),
        ))
    });
    TickGenerator::new(
        pool,
        queue,
        config.generator_id,
        config.retry_after,
        config.keep_slots,
    )
    .run(shutdown)
    .await;
    if let Some(endpoint) = endpoint {
        // it stops with the same token
        let _ = endpoint.await;
    }
    Ok(())
}
