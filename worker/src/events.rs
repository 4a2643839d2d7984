//! Observable events of the worker, defined in one place: what is logged, at which level, with
//! which fields. Errors are logged here, where they are handled, and nowhere else.

use std::net::SocketAddr;
use std::time::Duration;

use tributary::error::ErrorChain;
use tributary::handoff::HandOff;
use tributary::messages::{Message, TickSlot};
use tributary::queue::{QueueError, ReceivedMessage};
use tributary::store::runs::Run;
use tributary::{RunOutcome, db};
use uuid::Uuid;

pub fn started(
    worker_id: &str,
    queue: &str,
    concurrency: usize,
    max_concurrency: usize,
    database_url: &str,
) {
    tracing::info!(
        worker_id, queue, concurrency, max_concurrency, database = %db::redact_url(database_url),
        "worker started"
    );
}

pub fn concurrency_changed(now: usize, received: usize) {
    tracing::debug!(
        concurrency = now,
        received,
        "messages handled at once: {now}"
    );
}

pub fn health_listening(addr: SocketAddr) {
    tracing::info!(
        %addr,
        "health endpoint listening: http://{addr}/health/live (alive), http://{addr}/health/ready (takes work)"
    );
}

pub fn health_failed(error: &std::io::Error) {
    tracing::warn!(error = %error, "health endpoint stopped");
}

pub fn message_received(message: &ReceivedMessage, decoded: &Message) {
    tracing::debug!(
        message_id = %message.id, receive_count = message.receive_count, message = %decoded,
        "message received"
    );
}

/// The one line a refused message gets.
pub fn message_refused(message: &ReceivedMessage, reason: &str) {
    tracing::warn!(
        message_id = %message.id, receive_count = message.receive_count, reason,
        "message refused; moved to the dead-letter queue"
    );
}

pub fn dead_letter_failed(message: &ReceivedMessage, reason: &str, error: &QueueError) {
    tracing::error!(
        message_id = %message.id, receive_count = message.receive_count, reason,
        error = %ErrorChain(error),
        "message refused, but moving it to the dead-letter queue failed; it will be delivered again"
    );
}

pub fn message_retry(message: &ReceivedMessage, reason: &str, retry_in: Duration) {
    tracing::warn!(
        message_id = %message.id, receive_count = message.receive_count, reason,
        retry_in_s = retry_in.as_secs(), "message not handled; it will be delivered again"
    );
}

pub fn ack_failed(message: &ReceivedMessage, error: &QueueError) {
    tracing::warn!(
        message_id = %message.id, error = %ErrorChain(error),
        "deleting a handled message failed; its redelivery will find the work done"
    );
}

pub fn visibility_lost(message: &ReceivedMessage, error: &QueueError) {
    tracing::warn!(
        message_id = %message.id, error = %ErrorChain(error),
        "extending a message's visibility failed; it may be delivered to another worker (harmless: runs are leased)"
    );
}

pub fn receive_failed(error: &QueueError, retry_in: Duration) {
    tracing::warn!(error = %ErrorChain(error), retry_in_ms = retry_in.as_millis() as u64, "receiving messages failed");
}

pub fn duplicate_delivery(message: &ReceivedMessage, run: &Run) {
    tracing::info!(
        message_id = %message.id, run_id = %run.id, state = %run.state,
        "message delivered again; its run already exists"
    );
}

pub fn active_run_taken(integration_id: Uuid, onboarding: bool, run: &Run) {
    tracing::info!(
        %integration_id, requested_onboarding = onboarding, run_id = %run.id,
        run_onboarding = run.onboarding, state = %run.state,
        "integration already has an active run; processing that one"
    );
}

pub fn run_outcome(run_id: Uuid, outcome: &RunOutcome) {
    tracing::debug!(%run_id, ?outcome, "run handled");
}

pub fn handed_off(run_id: Uuid, handed: &HandOff) {
    match handed {
        HandOff::Nothing => {}
        HandOff::WakeUpAt(at) => {
            tracing::info!(%run_id, %at, "delayed run: message sent for when it is due");
        }
        HandOff::LeftToRescuer(until) => tracing::info!(
            %run_id, %until,
            "delayed beyond the queue's longest delay; the rescuer sends it once due"
        ),
        HandOff::Now => tracing::info!(%run_id, "released run handed to the next worker"),
    }
}

pub fn hand_off_failed(run_id: Uuid, error: &QueueError) {
    tracing::warn!(
        %run_id, error = %ErrorChain(error),
        "sending the run's next message failed; the rescuer re-sends it"
    );
}

pub fn stale_tick(slot: TickSlot, age: Duration) {
    tracing::info!(%slot, age_s = age.as_secs(), "stale tick: no check runs for it (rescue only)");
}

pub fn task_panicked(error: &tokio::task::JoinError) {
    tracing::error!(error = %error, "a message task panicked; its message will be delivered again");
}

pub fn draining(in_flight: usize, timeout: Duration) {
    tracing::info!(
        in_flight,
        timeout_s = timeout.as_secs(),
        "shutdown: no new messages; letting in-flight runs commit and release"
    );
}

pub fn drain_timed_out(left: usize) {
    tracing::warn!(
        left,
        "shutdown: in-flight work did not finish in time and was stopped; its leases expire and another worker resumes it"
    );
}

pub fn stopped() {
    tracing::info!("worker stopped");
}

pub fn waiting_for_database(message: &ReceivedMessage, reason: &str) {
    tracing::warn!(
        message_id = %message.id, reason,
        "database unreachable: the message is kept and handled again as soon as it answers"
    );
}

pub fn database_back(message: &ReceivedMessage, waited: Duration) {
    tracing::info!(
        message_id = %message.id, waited_ms = waited.as_millis() as u64,
        "database answers again: handling the message"
    );
}

pub fn message_rotated(message: &ReceivedMessage, run_id: Uuid, fresh: &str) {
    tracing::info!(
        message_id = %message.id, receive_count = message.receive_count, %run_id, fresh_message_id = fresh,
        "run message delivered again: replaced by a fresh one (receive counts do not pile up over crashes)"
    );
}

pub fn rotation_failed(message: &ReceivedMessage, error: &QueueError) {
    tracing::warn!(
        message_id = %message.id, receive_count = message.receive_count, error = %ErrorChain(error),
        "replacing a redelivered run message failed; it keeps its receive count"
    );
}

pub fn metrics_failed(error: &tributary::store::StoreError) {
    tracing::warn!(error = %error, "sampling metrics failed");
}

pub fn metrics_unavailable(error: &str) {
    tracing::warn!(error, "no /metrics: the recorder could not be installed");
}
