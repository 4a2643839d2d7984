//! Processing one tick slot: check runs for the integrations that are due.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::PgPool;

use super::{MaintenanceError, events};
use crate::messages::{Message, TickSlot};
use crate::queue::{OutgoingMessage, Queue};
use crate::registry::Registry;
use crate::store::schedule;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickSchedulerConfig {
    /// Integrations per transaction of the fan-out.
    pub batch_size: usize,
}

impl Default for TickSchedulerConfig {
    fn default() -> Self {
        Self { batch_size: 5_000 }
    }
}

/// What one slot's fan-out did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOut {
    pub slot: TickSlot,
    /// Platforms whose check schedule is due at this slot.
    pub due_platforms: Vec<String>,
    /// Connected integrations of those platforms.
    pub integrations_scanned: u64,
    /// Check runs created (integrations with an active run, or checked by this slot already, get
    /// none).
    pub runs_created: u64,
    pub messages_sent: u64,
    pub elapsed: Duration,
}

/// Creates a check run, and sends its message, for every connected integration of a platform
/// due at the slot (`CheckSchedule::is_due(minute index)`) that has no active run. The runs are
/// keyed by the slot: a tick delivered twice, or processed by two workers, makes one run per
/// integration.
pub struct TickScheduler {
    pool: PgPool,
    registry: Arc<Registry>,
    queue: Arc<dyn Queue>,
    config: TickSchedulerConfig,
}

impl TickScheduler {
    pub fn new(
        pool: PgPool,
        registry: Arc<Registry>,
        queue: Arc<dyn Queue>,
        config: TickSchedulerConfig,
    ) -> Self {
        Self {
            pool,
            registry,
            queue,
            config,
        }
    }

    /// The platforms of the registry due at `slot`.
    pub fn due_platforms(&self, slot: TickSlot) -> Vec<String> {
        self.registry
            .services()
            .filter(|s| s.config().check_schedule.is_due(slot.minute_index()))
            .map(|s| s.platform().to_owned())
            .collect()
    }

    /// Processes the slot. Runs are committed batch by batch and their messages sent right
    /// after each batch; if sending fails the runs stay pending and the [`super::RunRescuer`]
    /// sends their messages later.
    pub async fn run_once(&self, slot: TickSlot) -> Result<FanOut, MaintenanceError> {
        let started = Instant::now();
        let due_platforms = self.due_platforms(slot);
        let mut fan_out = FanOut {
            slot,
            due_platforms,
            integrations_scanned: 0,
            runs_created: 0,
            messages_sent: 0,
            elapsed: Duration::ZERO,
        };
        if fan_out.due_platforms.is_empty() {
            fan_out.elapsed = started.elapsed();
            events::fan_out_done(&fan_out);
            return Ok(fan_out);
        }
        let trigger_key = slot.trigger_key();
        let limit = i64::try_from(self.config.batch_size.max(1)).unwrap_or(i64::MAX);
        let mut after = None;
        loop {
            let batch = schedule::create_check_runs(
                &self.pool,
                &fan_out.due_platforms,
                after,
                limit,
                &trigger_key,
            )
            .await?;
            fan_out.integrations_scanned += batch.scanned;
            fan_out.runs_created += batch.run_ids.len() as u64;
            if !batch.run_ids.is_empty() {
                let messages: Vec<OutgoingMessage> = batch
                    .run_ids
                    .iter()
                    .map(|id| OutgoingMessage::from(&Message::continue_run(*id)))
                    .collect();
                match self.queue.send_batch(messages).await {
                    Ok(sent) => fan_out.messages_sent += sent as u64,
                    Err(e) => {
                        let e = MaintenanceError::from(e);
                        events::fan_out_send_failed(slot, batch.run_ids.len(), &e);
                        // the rest of the fan-out would fail alike; the rescuer takes over
                        fan_out.elapsed = started.elapsed();
                        return Err(e);
                    }
                }
            }
            match batch.last_integration {
                Some(last) if batch.scanned >= limit as u64 => after = Some(last),
                _ => break,
            }
        }
        fan_out.elapsed = started.elapsed();
        events::fan_out_done(&fan_out);
        Ok(fan_out)
    }

    /// How old the slot is now.
    pub fn age(slot: TickSlot) -> Duration {
        (Utc::now() - slot.start()).to_std().unwrap_or_default()
    }
}
