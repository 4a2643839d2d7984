//! Observable events of the tick generator, defined in one place.

use std::time::Duration;

use tributary::error::ErrorChain;
use tributary::messages::TickSlot;
use tributary::store::StoreError;

use crate::TickError;

pub fn started(generator_id: &str, queue: &str) {
    tracing::info!(generator_id, queue, "tick generator started");
}

pub fn tick_emitted(slot: TickSlot, generator_id: &str, skipped: i64) {
    if skipped > 0 {
        tracing::info!(
            %slot, generator_id, skipped,
            "tick emitted; slots missed while no generator ran are skipped, not replayed"
        );
    } else {
        tracing::info!(%slot, generator_id, "tick emitted");
    }
}

pub fn slot_taken(slot: TickSlot) {
    tracing::debug!(%slot, "slot already emitted (by another generator, or before a restart)");
}

pub fn emission_failed(slot: TickSlot, error: &TickError, retry_in: Duration) {
    tracing::warn!(%slot, error = %ErrorChain(error), retry_in_s = retry_in.as_secs(), "emitting the tick failed");
}

pub fn prune_failed(error: &StoreError) {
    tracing::warn!(error = %ErrorChain(error), "forgetting old tick slots failed");
}

pub fn stopped(generator_id: &str) {
    tracing::info!(generator_id, "tick generator stopped");
}
