//! Observable events of the maintenance services, defined in one place.

use std::time::Duration;

use crate::messages::TickSlot;

use super::{FanOut, MaintenanceError, Rescued};

pub fn fan_out_done(fan_out: &FanOut) {
    if fan_out.runs_created > 0 || fan_out.integrations_scanned > 0 {
        tracing::info!(
            slot = %fan_out.slot, platforms = ?fan_out.due_platforms,
            integrations = fan_out.integrations_scanned, runs_created = fan_out.runs_created,
            messages_sent = fan_out.messages_sent, elapsed_ms = fan_out.elapsed.as_millis() as u64,
            "check runs scheduled"
        );
    } else {
        tracing::debug!(slot = %fan_out.slot, platforms = ?fan_out.due_platforms, "no check due");
    }
}

pub fn fan_out_send_failed(slot: TickSlot, runs: usize, error: &MaintenanceError) {
    tracing::warn!(
        %slot, runs, error = %crate::error::ErrorChain(error),
        "sending check-run messages failed; the rescuer re-sends them"
    );
}

pub fn runs_rescued(rescued: &Rescued) {
    if rescued.total() > 0 {
        tracing::info!(
            expired_leases = rescued.expired_leases,
            due_delayed = rescued.due_delayed,
            stale_pending = rescued.stale_pending,
            "messages re-sent for runs that needed one"
        );
    }
}

pub fn rescue_failed(error: &MaintenanceError, retry_in: Duration) {
    tracing::warn!(error = %crate::error::ErrorChain(error), retry_in_s = retry_in.as_secs(), "run rescue failed");
}
