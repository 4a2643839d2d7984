//! What a worker does with one message, and what becomes of the message afterwards.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tributary::maintenance::{MaintenanceError, RunRescuer, TickScheduler};
use tributary::messages::{Message, TickSlot};
use tributary::processor::ProcessorError;
use tributary::queue::{self, MAX_DELAY, Queue, ReceivedMessage};
use tributary::registry::Registry;
use tributary::store::StoreError;
use tributary::store::integrations::{self, IntegrationStatus};
use tributary::store::runs::{self, CreatedRun};
use tributary::{IntegrationProcessor, RunOutcome};
use uuid::Uuid;

use crate::events;

/// A tick slot further in the future than this is refused (a producer's clock is wrong).
const MAX_TICK_SKEW: Duration = Duration::from_secs(120);

/// What becomes of a message once handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Handled, and what it caused is committed: delete it.
    Done,
    /// Bad input (does not parse, names what does not exist): move it to the dead-letter queue
    /// with this reason.
    Refused(String),
    /// Not handled now (the database is unreachable, say): leave it, it is delivered again.
    Retry(String),
}

/// Turns messages into work: runs processed, ticks fanned out.
pub struct MessageHandler {
    pool: PgPool,
    registry: Arc<Registry>,
    queue: Arc<dyn Queue>,
    processor: IntegrationProcessor,
    scheduler: TickScheduler,
    rescuer: RunRescuer,
    max_tick_age: Duration,
}

/// Why handling stopped before the message was done.
enum Failure {
    Refused(String),
    Retry(String),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, id } => {
                Self::Refused(format!("{what} {id} does not exist"))
            }
            StoreError::Refused(reason) => Self::Refused(reason),
            other => Self::Retry(error_chain(&other)),
        }
    }
}

impl From<ProcessorError> for Failure {
    /// A run that does not exist is bad input; anything else the processor reports is trouble
    /// of the infrastructure (the run stays leased until its lease expires and is rescued).
    fn from(e: ProcessorError) -> Self {
        match e {
            ProcessorError::Store(StoreError::NotFound { what, id }) => {
                Self::Refused(format!("{what} {id} does not exist"))
            }
            other => Self::Retry(error_chain(&other)),
        }
    }
}

impl From<MaintenanceError> for Failure {
    fn from(e: MaintenanceError) -> Self {
        Self::Retry(error_chain(&e))
    }
}

/// An error and its sources, `: `-separated (no secrets travel in these errors).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

impl MessageHandler {
    pub fn new(
        pool: PgPool,
        registry: Arc<Registry>,
        queue: Arc<dyn Queue>,
        processor: IntegrationProcessor,
        scheduler: TickScheduler,
        rescuer: RunRescuer,
        max_tick_age: Duration,
    ) -> Self {
        Self {
            pool,
            registry,
            queue,
            processor,
            scheduler,
            rescuer,
            max_tick_age,
        }
    }

    /// Handles one message. Runs are processed until they end, wait or are released on
    /// `shutdown`; everything they did is committed when this returns.
    pub async fn handle(
        &self,
        message: &ReceivedMessage,
        shutdown: &CancellationToken,
    ) -> Disposition {
        let decoded = match Message::decode(&message.body) {
            Ok(decoded) => decoded,
            Err(e) => return Disposition::Refused(e.to_string()),
        };
        events::message_received(message, &decoded);
        let result = match decoded {
            Message::ProcessIntegration {
                integration_id,
                onboarding,
            } => {
                self.process_integration(message, integration_id, onboarding, shutdown)
                    .await
            }
            Message::ContinueRun { run_id } => self.process_run(run_id, shutdown).await,
            Message::Tick { slot } => self.tick(slot).await,
        };
        match result {
            Ok(()) => Disposition::Done,
            Err(Failure::Refused(reason)) => Disposition::Refused(reason),
            Err(Failure::Retry(reason)) => Disposition::Retry(reason),
        }
    }

    /// Starts a run of the integration, keyed by the message's id (a redelivery finds the run it
    /// made), or takes the run it already has; then processes it.
    async fn process_integration(
        &self,
        message: &ReceivedMessage,
        integration_id: Uuid,
        onboarding: bool,
        shutdown: &CancellationToken,
    ) -> Result<(), Failure> {
        let integration = integrations::get(&self.pool, integration_id).await?;
        if let Err(unknown) = self.registry.get(&integration.platform) {
            return Err(Failure::Refused(format!(
                "integration {integration_id}: {unknown}"
            )));
        }
        if integration.status == IntegrationStatus::Disconnected {
            return Err(Failure::Refused(format!(
                "integration {integration_id} is disconnected"
            )));
        }
        let trigger = format!("message:{}", message.id);
        let run = match runs::create(&self.pool, integration_id, onboarding, Some(&trigger)).await?
        {
            CreatedRun::Created(run) => run,
            CreatedRun::Duplicate(run) => {
                events::duplicate_delivery(message, &run);
                run
            }
            CreatedRun::AlreadyActive(run) => {
                events::active_run_taken(integration_id, onboarding, &run);
                run
            }
        };
        self.process_run(run.id, shutdown).await
    }

    /// Processes the run, then makes sure it gets a message when it must go on: a delayed
    /// message when it waits (up to the queue's longest delay; longer waits are left to the
    /// rescuer), an immediate one when it was released by this worker's shutdown.
    async fn process_run(&self, run_id: Uuid, shutdown: &CancellationToken) -> Result<(), Failure> {
        let outcome = self.processor.process_run(run_id, shutdown).await?;
        match outcome {
            RunOutcome::Processed
            | RunOutcome::Failed { .. }
            | RunOutcome::LeaseLost
            | RunOutcome::NotClaimable { .. } => {}
            RunOutcome::Delayed { until, .. } => {
                let wait = (until - Utc::now()).to_std().unwrap_or_default();
                if wait <= MAX_DELAY {
                    let delay = wait + Duration::from_millis(500);
                    let delay = delay.min(MAX_DELAY);
                    match queue::enqueue_run_at(&self.pool, self.queue.as_ref(), run_id, delay)
                        .await
                    {
                        Ok(_) => events::wake_up_scheduled(run_id, until),
                        // the run is committed as delayed: the rescuer re-sends it once due
                        Err(e) => events::hand_off_failed(run_id, &e),
                    }
                } else {
                    events::long_wait_left_to_rescuer(run_id, until);
                }
            }
            RunOutcome::Released => {
                match queue::enqueue_run(&self.pool, self.queue.as_ref(), run_id).await {
                    Ok(_) => events::released_run_handed_off(run_id),
                    Err(e) => events::hand_off_failed(run_id, &e),
                }
            }
        }
        events::run_outcome(run_id, &outcome);
        Ok(())
    }

    /// A tick: check runs for the due platforms (unless the tick is stale), then the rescue of
    /// runs that need a message.
    async fn tick(&self, slot: TickSlot) -> Result<(), Failure> {
        // the database's clock, not this host's: workers whose clocks drift agree on every tick
        let now = tributary::store::clock::now(&self.pool).await?;
        match judge_tick(slot, now, self.max_tick_age) {
            TickVerdict::Future => {
                return Err(Failure::Refused(format!(
                    "tick slot {slot} is in the future (the database's clock says {})",
                    TickSlot::containing(now)
                )));
            }
            TickVerdict::Stale(age) => events::stale_tick(slot, age),
            TickVerdict::Due => {
                self.scheduler.run_once(slot).await?;
            }
        }
        self.rescuer.run_once().await?;
        Ok(())
    }
}

/// What a tick calls for, judged by the database's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TickVerdict {
    /// Check runs for its due platforms.
    Due,
    /// Older than the maximum age: no check runs (only the rescue).
    Stale(Duration),
    /// Further ahead than the allowed skew: a producer's clock is wrong.
    Future,
}

fn judge_tick(slot: TickSlot, now: DateTime<Utc>, max_age: Duration) -> TickVerdict {
    if slot.start() > now + chrono::Duration::from_std(MAX_TICK_SKEW).unwrap_or_default() {
        return TickVerdict::Future;
    }
    let age = (now - slot.start()).to_std().unwrap_or_default();
    if age > max_age {
        TickVerdict::Stale(age)
    } else {
        TickVerdict::Due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_judged_by_the_clock_given_not_the_hosts() {
        let max_age = Duration::from_secs(300);
        // a host 5 minutes ahead or 2 minutes behind the database changes nothing
        let db_now = Utc::now() - chrono::Duration::minutes(30);
        let slot = TickSlot::containing(db_now);
        assert_eq!(judge_tick(slot, db_now, max_age), TickVerdict::Due);
        let later = TickSlot::containing(db_now + chrono::Duration::minutes(3));
        assert_eq!(judge_tick(later, db_now, max_age), TickVerdict::Future);
        let old = TickSlot::containing(db_now - chrono::Duration::minutes(6));
        assert!(matches!(
            judge_tick(old, db_now, max_age),
            TickVerdict::Stale(age) if age > max_age
        ));
    }
}
