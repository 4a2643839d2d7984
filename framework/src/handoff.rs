//! What happens after a worker stops processing a run: the one place that decides which message
//! the run needs next and sends it, and that notes when it was sent (so the rescuer, which covers
//! whatever was not sent, does not send it twice).
//!
//! * a run that ended (processed, error), was taken over or is not claimable needs nothing;
//! * a deferred run gets a `continue_run` delayed until it is due, if the queue can delay that
//!   long ([`MAX_DELAY`]); a longer wait is left to the rescuer, which sends it once due;
//! * a run released by a worker shutting down, or interrupted by an outage, gets an immediate
//!   `continue_run`, so another worker resumes it at once;
//! * a failed send is not fatal: the run is committed, and the rescuer re-sends for it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::messages::Message;
use crate::processor::RunOutcome;
use crate::queue::{MAX_DELAY, OutgoingMessage, Queue, QueueError, ReceivedMessage, check_delay};
use crate::store;

/// A due run's message is sent this long after its time, so that it finds the run claimable.
const DUE_MARGIN: Duration = Duration::from_millis(500);

/// What [`after_run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandOff {
    /// The run needs no message (it ended, another worker holds it, it is not claimable).
    Nothing,
    /// A `continue_run` is on its way, delivered when the run is due.
    WakeUpAt(DateTime<Utc>),
    /// The run waits beyond the queue's longest delay: the rescuer sends its message once due.
    LeftToRescuer(DateTime<Utc>),
    /// A `continue_run` was sent for at once (released at shutdown, interrupted by an outage).
    Now,
}

/// Sends the message the run needs after `outcome` (see the module docs).
pub async fn after_run(
    pool: &PgPool,
    queue: &dyn Queue,
    run_id: Uuid,
    outcome: &RunOutcome,
) -> Result<HandOff, QueueError> {
    match outcome {
        RunOutcome::Processed
        | RunOutcome::Failed { .. }
        | RunOutcome::LeaseLost
        | RunOutcome::NotClaimable { .. } => Ok(HandOff::Nothing),
        RunOutcome::Delayed { until, .. } => {
            let wait = (*until - crate::clock::now()).to_std().unwrap_or_default();
            if wait > MAX_DELAY {
                return Ok(HandOff::LeftToRescuer(*until));
            }
            let delay = (wait + DUE_MARGIN).min(MAX_DELAY);
            enqueue_run_at(pool, queue, run_id, delay).await?;
            Ok(HandOff::WakeUpAt(*until))
        }
        RunOutcome::Released => {
            enqueue_run(pool, queue, run_id).await?;
            Ok(HandOff::Now)
        }
    }
}

/// Hands a run to the workers: sends the `continue_run` message that makes one of them process
/// it, and notes when (the rescuer re-sends a message for a run left pending only once it has
/// waited `resend_after` since). Call it after the run is committed, e.g. after
/// [`crate::admin::connect`], [`crate::admin::start_run`] or [`crate::admin::continue_run`].
/// Returns the message's id.
pub async fn enqueue_run(
    pool: &PgPool,
    queue: &dyn Queue,
    run_id: Uuid,
) -> Result<String, QueueError> {
    enqueue_run_at(pool, queue, run_id, Duration::ZERO).await
}

/// [`enqueue_run`] with a delay of up to [`MAX_DELAY`]: the message is delivered when the run is due.
pub async fn enqueue_run_at(
    pool: &PgPool,
    queue: &dyn Queue,
    run_id: Uuid,
    delay: Duration,
) -> Result<String, QueueError> {
    check_delay(delay)?;
    let id = queue
        .send(OutgoingMessage::delayed(
            Message::continue_run(run_id).encode(),
            delay,
        ))
        .await?;
    let delivered_at: DateTime<Utc> =
        crate::clock::now() + chrono::Duration::from_std(delay).unwrap_or_default();
    store::schedule::mark_enqueued(pool, &[run_id], delivered_at).await?;
    Ok(id)
}

/// Sends a `continue_run` for each of `run_ids` at once (the rescuer, which has already noted the
/// send in the store). Returns how many were sent.
pub async fn send_continue_runs(queue: &dyn Queue, run_ids: &[Uuid]) -> Result<usize, QueueError> {
    let messages = run_ids
        .iter()
        .map(|id| OutgoingMessage::from(&Message::continue_run(*id)))
        .collect();
    queue.send_batch(messages).await
}

/// Replaces a received run message by a fresh `continue_run` for `run_id` delivered after
/// `delay` (at most [`MAX_DELAY`]), then deletes the received one. The fresh message comes first:
/// a crash between the two leaves a duplicate (a no-op), never no message. Returns the fresh id.
pub async fn replace_message(
    queue: &dyn Queue,
    message: &ReceivedMessage,
    run_id: Uuid,
    delay: Duration,
) -> Result<String, QueueError> {
    let fresh = queue
        .send(OutgoingMessage::delayed(
            Message::continue_run(run_id).encode(),
            delay.min(MAX_DELAY),
        ))
        .await?;
    queue.delete(&message.receipt).await?;
    Ok(fresh)
}
