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

pub fn run_deferred(run_id: Uuid, until: DateTime<Utc>, reason: &str) {
    tracing::info!(%run_id, %until, reason, "run deferred");
}

pub fn run_released(run_id: Uuid) {
    tracing::info!(%run_id, "run released for another worker (shutdown)");
}

pub fn run_finished(run: &Run) {
    tracing::info!(
        run_id = %run.id, state = %run.state, streams_processed = run.streams_processed,
        streams_errored = run.streams_errored, activities_created = run.activities_created,
        "run finished"
    );
}

pub fn run_failed(run_id: Uuid, error: &ErrorRecord) {
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
