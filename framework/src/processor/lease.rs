//! Keeps a run's lease alive while a worker processes it, and says when it is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::events;
use crate::store::{self, Lease};

pub(crate) struct LeaseKeeper {
    lost: CancellationToken,
    /// Set when the lease was given up because heartbeats failed (an outage), not taken over.
    unreachable: Arc<AtomicBool>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl LeaseKeeper {
    /// Heartbeats every `interval`, extending the lease to `duration` from now. `lost()` fires
    /// when the lease is taken over or cancelled, or when heartbeats have failed for a whole lease.
    pub(crate) fn start(
        pool: PgPool,
        lease: Lease,
        duration: Duration,
        interval: Duration,
    ) -> Self {
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let unreachable = Arc::new(AtomicBool::new(false));
        let span = tracing::info_span!("lease", run_id = %lease.run_id, attempt = lease.attempt);
        let task = tokio::spawn(
            heartbeat_loop(
                pool,
                lease,
                duration,
                interval,
                lost.clone(),
                stop.clone(),
                unreachable.clone(),
            )
            .instrument(span),
        );
        Self {
            lost,
            unreachable,
            stop,
            task,
        }
    }

    /// Whether `lost()` fired because the database did not answer for a whole lease (the lease
    /// may still be this attempt's) rather than because another worker took the run.
    pub(crate) fn gave_up_unreachable(&self) -> bool {
        self.unreachable.load(Ordering::Relaxed)
    }

    pub(crate) fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        // the loop only ends; a panic inside it would already have been reported by tokio
        let _ = (&mut self.task).await;
    }
}

impl Drop for LeaseKeeper {
    /// A processing future dropped mid-run (its caller gave up) must not keep heartbeating: the
    /// lease then expires and another worker rescues the run.
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn heartbeat_loop(
    pool: PgPool,
    lease: Lease,
    duration: Duration,
    interval: Duration,
    lost: CancellationToken,
    stop: CancellationToken,
    unreachable: Arc<AtomicBool>,
) {
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        // bounded: a heartbeat must not sit out the pool's connect backoff (seconds, after an
        // outage) while the lease runs out; the next one tries afresh
        let beat = tokio::time::timeout(
            duration / 3,
            store::runs::heartbeat(&pool, &lease, duration),
        )
        .await
        .unwrap_or(Err(store::StoreError::Database(sqlx::Error::PoolTimedOut)));
        match beat {
            Ok(()) => last_ok = Instant::now(),
            Err(e) if e.is_lease_lost() => {
                events::lease_lost(&lease);
                lost.cancel();
                return;
            }
            Err(e) => {
                events::heartbeat_failed(&lease, &e);
                if last_ok.elapsed() >= duration {
                    unreachable.store(e.is_unavailable(), Ordering::Relaxed);
                    events::lease_lost(&lease);
                    lost.cancel();
                    return;
                }
            }
        }
    }
}
