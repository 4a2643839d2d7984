//! What a worker does with one message, and what becomes of the message afterwards.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tributary::IntegrationProcessor;
use tributary::db;
use tributary::error::ErrorChain;
use tributary::handoff;
use tributary::maintenance::{MaintenanceError, RunRescuer, TickScheduler};
use tributary::messages::{Message, TickSlot, process_trigger_key};
use tributary::processor::ProcessorError;
use tributary::queue::{Queue, ReceivedMessage};
use tributary::registry::Registry;
use tributary::store::StoreError;
use tributary::store::integrations;
use tributary::store::runs::{self, CreatedRun};
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
    rescuer: Arc<RunRescuer>,
    max_tick_age: Duration,
    /// A redelivered run message's replacement is delivered after this (the visibility timeout).
    redelivery_delay: Duration,
}

/// Why handling stopped before the message was done.
enum Failure {
    Refused(String),
    /// The database is unreachable: handled again as soon as it answers.
    Unavailable(String),
    Retry(String),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, id } => {
                Self::Refused(format!("{what} {id} does not exist"))
            }
            StoreError::Refused(reason) => Self::Refused(reason),
            other if other.is_unavailable() => Self::Unavailable(ErrorChain(&other).to_string()),
            other => Self::Retry(ErrorChain(&other).to_string()),
        }
    }
}

impl From<ProcessorError> for Failure {
    /// A run that does not exist is bad input; anything else the processor reports is trouble
    /// of the infrastructure (the run stays leased until its lease expires and is rescued).
    fn from(e: ProcessorError) -> Self {
        match e {
            ProcessorError::Store(e) => e.into(),
        }
    }
}

impl From<MaintenanceError> for Failure {
    fn from(e: MaintenanceError) -> Self {
        match e {
            MaintenanceError::Store(e) => e.into(),
            other => Self::Retry(ErrorChain(&other).to_string()),
        }
    }
}

impl MessageHandler {
    /// The handler's pool and registry are the processor's.
    pub fn new(
        queue: Arc<dyn Queue>,
        processor: IntegrationProcessor,
        scheduler: TickScheduler,
        rescuer: Arc<RunRescuer>,
        max_tick_age: Duration,
        redelivery_delay: Duration,
    ) -> Self {
        Self {
            pool: processor.pool().clone(),
            registry: processor.registry().clone(),
            queue,
            processor,
            scheduler,
            rescuer,
            max_tick_age,
            redelivery_delay,
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
        loop {
            let result = match &decoded {
                Message::ProcessIntegration {
                    integration_id,
                    onboarding,
                    key,
                } => {
                    let trigger = process_trigger_key(key.as_deref(), &message.id);
                    self.process_integration(
                        message,
                        *integration_id,
                        *onboarding,
                        &trigger,
                        shutdown,
                    )
                    .await
                }
                Message::ContinueRun { run_id } => {
                    self.rotate_redelivered(message, *run_id).await;
                    self.process_run(*run_id, shutdown).await
                }
                Message::Tick { slot } => self.tick(*slot).await,
            };
            return match result {
                Ok(()) => Disposition::Done,
                Err(Failure::Refused(reason)) => Disposition::Refused(reason),
                Err(Failure::Retry(reason)) => Disposition::Retry(reason),
                Err(Failure::Unavailable(reason)) => {
                    // an outage is not the message's fault: it is kept (and counts no further
                    // receive) until the database answers, then handled again at once
                    events::waiting_for_database(message, &reason);
                    match db::wait_until_reachable(&self.pool, shutdown).await {
                        Some(waited) => {
                            events::database_back(message, waited);
                            continue;
                        }
                        None => Disposition::Retry(reason),
                    }
                }
            };
        }
    }

    /// Starts a run of the integration, keyed by `trigger`: the message's key, else its id (a
    /// redelivery, or another message with the key, finds the run it made); or takes the run it
    /// already has. Then processes it.
    async fn process_integration(
        &self,
        message: &ReceivedMessage,
        integration_id: Uuid,
        onboarding: bool,
        trigger: &str,
        shutdown: &CancellationToken,
    ) -> Result<(), Failure> {
        let integration = integrations::get(&self.pool, integration_id).await?;
        if let Err(unknown) = self.registry.get(&integration.platform) {
            return Err(Failure::Refused(format!(
                "integration {integration_id}: {unknown}"
            )));
        }
        let run = match runs::create(&self.pool, integration_id, onboarding, Some(trigger)).await? {
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
        self.rotate_redelivered(message, run.id).await;
        self.process_run(run.id, shutdown).await
    }

    /// A run message delivered again (its worker died, or was stopped, while it held it) is
    /// replaced by a fresh `continue_run` for the run, delivered after the visibility timeout as
    /// the redelivery would have been: receive counts thus never pile up over crashes, and the
    /// dead-letter queue holds only messages a worker refused, or could not handle at all, never
    /// a healthy run's wake-up. A run that keeps killing its workers still ends: every crash
    /// charges the streams that ran a retry.
    async fn rotate_redelivered(&self, message: &ReceivedMessage, run_id: Uuid) {
        if message.receive_count < 2 {
            return;
        }
        match handoff::replace_message(self.queue.as_ref(), message, run_id, self.redelivery_delay)
            .await
        {
            Ok(fresh) => events::message_rotated(message, run_id, &fresh),
            Err(e) => events::rotation_failed(message, &e),
        }
    }

    /// Processes the run, then sends the message it needs to go on ([`handoff::after_run`]).
    async fn process_run(&self, run_id: Uuid, shutdown: &CancellationToken) -> Result<(), Failure> {
        let outcome = self.processor.process_run(run_id, shutdown).await?;
        match handoff::after_run(&self.pool, self.queue.as_ref(), run_id, &outcome).await {
            Ok(handed) => events::handed_off(run_id, &handed),
            // the run is committed: the rescuer sends its message
            Err(e) => events::hand_off_failed(run_id, &e),
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
