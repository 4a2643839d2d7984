//! Observable events of the processor, defined in one place: what is logged, at which level and
//! with which fields. Errors are logged here, where they are handled, and nowhere else.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::ErrorRecord;
use crate::store::runs::Run;
use crate::store::{Lease, StoreError};

pub fn run_claimed(run: &Run) {
    tracing::info!(
        run_id = %run.id, integration_id = %run.integration_id, attempt = run.attempt,
        onboarding = run.onboarding, "run claimed"
    );
}

pub fn run_not_claimable(run: &Run) {
    tracing::debug!(run_id = %run.id, state = %run.state, "run not claimable now");
}

pub fn abandoned_streams_rescued(lease: &Lease, count: u64) {
    tracing::warn!(
        run_id = %lease.run_id, attempt = lease.attempt, count,
        "streams left in flight by an earlier attempt are retried"
    );
}

pub fn streams_cut_off_by_restart(lease: &Lease, count: u64) {
    tracing::info!(
        run_id = %lease.run_id, attempt = lease.attempt, count,
        "streams in flight when the database server restarted are retried (no retry charged)"
    );
}

pub fn run_deferred(run_id: Uuid, until: DateTime<Utc>, reason: &str) {
    tracing::info!(%run_id, %until, reason, "run deferred");
}

pub fn run_released(run_id: Uuid) {
    tracing::info!(%run_id, "run released for another worker (shutdown)");
}

pub fn run_finished(run: &Run) {
    let figures = crate::store::outcomes::FinishedRun {
        streams_processed: run.streams_processed,
        streams_errored: run.streams_errored,
        activities_created: run.activities_created,
    };
    run_finished_with(run.id, run.state, &figures);
}

/// A run ended in `state` with `figures` (by its last stream's commit, or on its own).
pub fn run_finished_with(
    run_id: Uuid,
    state: crate::store::runs::RunState,
    figures: &crate::store::outcomes::FinishedRun,
) {
    crate::telemetry::run_finished(state.as_str());
    tracing::info!(
        %run_id, %state, streams_processed = figures.streams_processed,
        streams_errored = figures.streams_errored, activities_created = figures.activities_created,
        "run finished"
    );
}

/// The last stream's task ran `postprocess`, but its commit found another stream of the run not
/// yet `processed`: the run goes on, and `postprocess` runs again at its end.
pub fn run_not_ended_by_last_stream(run_id: Uuid, stream: &str) {
    tracing::info!(%run_id, %stream, "the last stream's commit did not end the run; it goes on");
}

pub fn run_failed(run_id: Uuid, error: &ErrorRecord) {
    crate::telemetry::run_finished("error");
    tracing::warn!(%run_id, hook = %error.hook, kind = %error.kind, error = %error.message, "run failed");
}

pub fn hook_retry_scheduled(run_id: Uuid, error: &ErrorRecord, until: DateTime<Utc>) {
    tracing::warn!(
        %run_id, hook = %error.hook, failures = error.failures, %until, error = %error.message,
        "run-level hook failed; retrying"
    );
}

pub fn lease_lost(lease: &Lease) {
    tracing::warn!(run_id = %lease.run_id, attempt = lease.attempt, "lease lost; stopping this run");
}

/// A stream's write found its claim gone while the run is still this attempt's (a claim undone
/// by a crash of the database): the stream is claimed and processed again.
pub fn stream_claim_undone(lease: &Lease, stream_id: Option<Uuid>) {
    let stream_id = stream_id.map(|id| id.to_string()).unwrap_or_default();
    tracing::warn!(
        run_id = %lease.run_id, attempt = lease.attempt, stream_id,
        "a stream's claim was undone (the database crashed after it): the stream runs again, nothing of it was written"
    );
}

/// A stream's write found the run no longer held by this attempt: the run stops here. `now` is
/// the run as it stands (who holds it, in which attempt), when it could be read.
pub fn stream_write_lease_lost(lease: &Lease, stream_id: Option<Uuid>, now: Option<&Run>) {
    let stream_id = stream_id.map(|id| id.to_string()).unwrap_or_default();
    match now {
        Some(run) => tracing::warn!(
            run_id = %lease.run_id, attempt = lease.attempt, stream_id,
            now_attempt = run.attempt, now_state = %run.state,
            now_owner = run.lease_owner.as_deref().unwrap_or(""),
            now_lease_expires_at = ?run.lease_expires_at,
            "a stream's write found the run's lease gone; stopping this run"
        ),
        None => tracing::warn!(
            run_id = %lease.run_id, attempt = lease.attempt, stream_id,
            "a stream's write found the run's lease gone; stopping this run"
        ),
    }
}

pub fn heartbeat_failed(lease: &Lease, error: &StoreError) {
    tracing::warn!(run_id = %lease.run_id, attempt = lease.attempt, error = %crate::error::ErrorChain(error), "heartbeat failed");
}

pub fn stream_failed(
    run_id: Uuid,
    identifier: &str,
    error: &ErrorRecord,
    retry_at: Option<DateTime<Utc>>,
) {
    match retry_at {
        Some(at) => tracing::info!(
            %run_id, stream = identifier, kind = %error.kind, failures = error.failures,
            retry_at = %at, error = %error.message, "stream failed; will retry"
        ),
        None => tracing::warn!(
            %run_id, stream = identifier, kind = %error.kind, failures = error.failures,
            error = %error.message, "stream failed for good"
        ),
    }
}

pub fn next_page_known(run_id: Uuid, identifier: &str) {
    tracing::debug!(%run_id, stream = identifier, "next page already in the run; not stored twice");
}

pub fn run_interrupted(lease: &Lease, error: &StoreError) {
    tracing::warn!(
        run_id = %lease.run_id, attempt = lease.attempt, error = %crate::error::ErrorChain(error),
        "database unreachable: the run's streams in flight stopped (no retry charged); it resumes as soon as the database answers"
    );
}

pub fn run_resumes_after_outage(lease: &Lease, streams: u64, waited: std::time::Duration) {
    tracing::info!(
        run_id = %lease.run_id, attempt = lease.attempt, streams_put_back = streams,
        waited_ms = waited.as_millis() as u64, "database answers again: resuming the run"
    );
}

// --- event delivery (crate::delivery) ---

pub fn dispatcher_started(owner: &str) {
    tracing::info!(owner, "event dispatcher started");
}

pub fn dispatcher_failed(error: &crate::delivery::DispatchError) {
    tracing::warn!(error = %error, source = ?std::error::Error::source(error), "event dispatch pass failed; retrying");
}

pub fn dispatcher_task_panicked(error: &tokio::task::JoinError) {
    tracing::error!(error = %error, "a delivery task panicked");
}

pub fn subscription_lease_lost(error: &StoreError) {
    tracing::info!(error = %error, "subscription lease taken over; its new holder delivers the batch");
}

pub fn delivery_failed(
    sub: &crate::store::subscriptions::Subscription,
    failure: &crate::store::deliveries::FailedDelivery,
    after: &crate::store::deliveries::AfterFailure,
) {
    use crate::store::deliveries::AfterFailure;
    match after {
        AfterFailure::RetryAt(at) => tracing::info!(
            subscription_id = %sub.id, status = ?failure.status, error = %failure.error,
            failures = sub.failures + 1, retry_at = %at, "delivery failed; will retry"
        ),
        AfterFailure::DeadLetter { events, .. } => tracing::warn!(
            subscription_id = %sub.id, status = ?failure.status, error = %failure.error,
            events = events.len(), "delivery failed for good; events dead-lettered"
        ),
        AfterFailure::Pause(reason) => tracing::warn!(
            subscription_id = %sub.id, status = ?failure.status, reason = %reason, "delivery refused"
        ),
    }
}

pub fn subscription_paused(
    sub: &crate::store::subscriptions::Subscription,
    failure: &crate::store::deliveries::FailedDelivery,
) {
    tracing::error!(
        subscription_id = %sub.id, tenant_id = %sub.tenant_id, name = %sub.name,
        error = %failure.error, "subscription paused; resume it with `scripts/subscriptions resume`"
    );
}
