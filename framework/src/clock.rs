//! The one clock of a process: this host's clock corrected by its measured offset to the
//! database server's clock.
//!
//! Every time a worker writes beside the database's `now()` (a run deferred until, a stream's
//! retry, a rate-limit budget's reset, when a message was sent) or compares with one (a lease, a
//! tick's slot) must be on the same clock, whatever the hosts' own clocks say: a worker whose
//! clock runs 5 minutes ahead would otherwise defer every rate-limited run, and block every
//! worker's shared budget, by 5 minutes more than asked. [`sync`] measures the offset (the
//! worker does at start and then every minute); [`now`] applies it. Until a sync the offset is
//! 0: the host's clock as it is.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::store::StoreError;

/// The database's clock minus this host's, in microseconds.
static OFFSET_MICROS: AtomicI64 = AtomicI64::new(0);

/// A measurement whose round trip took longer than this is not used.
const MAX_ROUND_TRIP: Duration = Duration::from_secs(1);

/// An offset smaller than this is taken as none: it is within what one measurement can tell
/// (half a round trip), and nothing a worker decides depends on less than a second.
const MIN_OFFSET: chrono::Duration = chrono::Duration::seconds(1);

/// Now, by the database's clock (this host's clock plus the last measured offset).
pub fn now() -> DateTime<Utc> {
    Utc::now() + offset()
}

/// The last measured offset: the database's clock minus this host's.
pub fn offset() -> chrono::Duration {
    chrono::Duration::microseconds(OFFSET_MICROS.load(Ordering::Relaxed))
}

/// Measures the offset of this host's clock to the database's (the database's `now` against
/// the middle of the round trip) and applies it from now on; under a second it is taken as none.
/// `None` when the round trip was too slow to tell (the previous offset is kept).
pub async fn sync(pool: &PgPool) -> Result<Option<chrono::Duration>, StoreError> {
    let sent = Utc::now();
    let started = std::time::Instant::now();
    let database = crate::store::clock::now(pool).await?;
    let round_trip = started.elapsed();
    if round_trip > MAX_ROUND_TRIP {
        return Ok(None);
    }
    let half = chrono::Duration::from_std(round_trip / 2).unwrap_or_default();
    let mut offset = database - (sent + half);
    if offset.abs() < MIN_OFFSET {
        offset = chrono::Duration::zero();
    }
    let micros = offset.num_microseconds().unwrap_or(0);
    let before = OFFSET_MICROS.swap(micros, Ordering::Relaxed);
    if (micros - before).abs() >= 1_000_000 {
        tracing::info!(
            offset_ms = offset.num_milliseconds(),
            "this host's clock differs from the database's: times are taken by the database's clock"
        );
    }
    Ok(Some(offset))
}

/// Syncs at once, then every `every`, until `shutdown`. A failed sync keeps the last offset.
pub async fn keep_synced(
    pool: PgPool,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        if let Err(e) = sync(&pool).await {
            tracing::debug!(error = %crate::error::ErrorChain(&e), "clock sync failed; keeping the last offset");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_a_sync_the_clock_is_the_hosts() {
        // no test of this process syncs: the offset stays 0
        assert_eq!(offset(), chrono::Duration::zero());
        assert!((now() - Utc::now()).num_milliseconds().abs() < 1_000);
    }
}
