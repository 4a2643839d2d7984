//! Processing one tick slot: check runs for the integrations that are due.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use super::{MaintenanceError, events};
use crate::messages::{Message, TickSlot};
use crate::queue::{MAX_DELAY, OutgoingMessage, Queue};
use crate::registry::Registry;
use crate::store::schedule;

#[derive(Debug, Clone, PartialEq)]
pub struct TickSchedulerConfig {
    /// Integrations per transaction of the fan-out.
    pub batch_size: usize,
    /// The share (0 to 1) of a platform's check interval over which its integrations' checks are
    /// spread: each integration's check message is delayed by a fixed offset of its own (from its
    /// id), so a platform's checks do not all start in the second of the tick. 0: no spread.
    pub spread: f64,
}

impl Default for TickSchedulerConfig {
    fn default() -> Self {
        Self {
            batch_size: 5_000,
            spread: 0.0,
        }
    }
}

/// The delay of an integration's check message: its fixed offset (from its id, so the same every
/// interval) within `spread` of the platform's check interval, at most the queue's longest delay.
pub fn check_offset(integration_id: Uuid, interval: Duration, spread: f64) -> Duration {
    let spread = if spread.is_finite() {
        spread.clamp(0.0, 1.0)
    } else {
        0.0
    };
    // a v4 id's lowest 53 bits are random (its version and variant bits are above them): a
    // uniform fraction in [0, 1)
    const BITS: u32 = 53;
    let low = integration_id.as_u128() & ((1u128 << BITS) - 1);
    let fraction = low as f64 / (1u64 << BITS) as f64;
    interval.mul_f64(spread * fraction).min(MAX_DELAY)
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
            fan_out.runs_created += batch.runs.len() as u64;
            if !batch.runs.is_empty() {
                let delays: Vec<Duration> = batch
                    .runs
                    .iter()
                    .map(|run| self.offset(run.integration_id, &run.platform))
                    .collect();
                let messages: Vec<OutgoingMessage> = batch
                    .runs
                    .iter()
                    .zip(&delays)
                    .map(|(run, delay)| OutgoingMessage {
                        delay: *delay,
                        ..OutgoingMessage::from(&Message::continue_run(run.run_id))
                    })
                    .collect();
                match self.queue.send_batch(messages).await {
                    Ok(sent) => {
                        fan_out.messages_sent += sent as u64;
                        if delays.iter().any(|d| !d.is_zero()) {
                            // the rescuer waits for a message until it is due
                            let now = crate::clock::now();
                            let ids: Vec<Uuid> = batch.runs.iter().map(|r| r.run_id).collect();
                            let at: Vec<_> = delays
                                .iter()
                                .map(|d| now + chrono::Duration::from_std(*d).unwrap_or_default())
                                .collect();
                            schedule::mark_enqueued_each(&self.pool, &ids, &at).await?;
                        }
                    }
                    Err(e) => {
                        let e = MaintenanceError::from(e);
                        events::fan_out_send_failed(slot, batch.runs.len(), &e);
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

    /// The delay of an integration's check message (see [`TickSchedulerConfig::spread`]).
    fn offset(&self, integration_id: Uuid, platform: &str) -> Duration {
        if self.config.spread <= 0.0 {
            return Duration::ZERO;
        }
        self.registry
            .get(platform)
            .ok()
            .and_then(|s| s.config().check_schedule.interval())
            .map_or(Duration::ZERO, |interval| {
                check_offset(integration_id, interval, self.config.spread)
            })
    }

    /// How old the slot is now.
    pub fn age(slot: TickSlot) -> Duration {
        (crate::clock::now() - slot.start())
            .to_std()
            .unwrap_or_default()
    }
}
