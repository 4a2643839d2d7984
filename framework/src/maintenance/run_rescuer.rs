//! Sends a message again for runs that need one and have none on the way.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{MaintenanceError, events};
use crate::handoff;
use crate::queue::Queue;
use crate::store::schedule::{self, Resend};

/// The rescuer looks this long after a lease's expiry (clocks of workers and database apart).
const LEASE_MARGIN: Duration = Duration::from_millis(500);
/// The rescuer never looks more often than this.
const MIN_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRescuerConfig {
    /// A delayed run whose delay ended gets a message once none was sent (or due) for it for
    /// this long; later ones with backoff (see [`schedule::take_runs_to_resend`]). A run whose
    /// lease expired gets one at once: the lease already waited.
    pub resend_after: Duration,
    /// The same for a pending run: its message is usually just waiting in the queue, so this is
    /// longer.
    pub pending_resend_after: Duration,
    /// How often [`RunRescuer::run`] looks at least; it also wakes up when the earliest lease of
    /// a processing run expires, so a dead worker's run is handed on within about a second of
    /// its lease's expiry, whatever this is.
    pub interval: Duration,
    /// Runs per query.
    pub batch_size: i64,
    /// The workers' lease ([`crate::ProcessorConfig::lease_duration`]): after a restart of the
    /// database server, a run's lease counts as held for this long from the server's start (see
    /// [`crate::store::runs::claim`]). The worker sets it from its own lease.
    pub lease: Duration,
}

impl Default for RunRescuerConfig {
    fn default() -> Self {
        Self {
            resend_after: Duration::from_secs(60),
            pending_resend_after: Duration::from_secs(300),
            interval: Duration::from_secs(60),
            batch_size: 1_000,
            lease: crate::ProcessorConfig::default().lease_duration,
        }
    }
}

/// What one rescue sent messages for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rescued {
    pub expired_leases: usize,
    pub due_delayed: usize,
    pub stale_pending: usize,
}

impl Rescued {
    pub fn total(&self) -> usize {
        self.expired_leases + self.due_delayed + self.stale_pending
    }
}

/// Re-sends `continue_run` for runs whose worker died (lease expired), delayed runs whose time has
/// come (a deferral longer than a queue delay, or a lost message), and pending runs nobody took.
/// The worker that receives the message claims the run and resumes it where it stopped.
pub struct RunRescuer {
    pool: PgPool,
    queue: Arc<dyn Queue>,
    config: RunRescuerConfig,
}

impl RunRescuer {
    pub fn new(pool: PgPool, queue: Arc<dyn Queue>, config: RunRescuerConfig) -> Self {
        Self {
            pool,
            queue,
            config,
        }
    }

    pub async fn run_once(&self) -> Result<Rescued, MaintenanceError> {
        let mut rescued = Rescued::default();
        for why in Resend::ALL {
            loop {
                let first_wait = match why {
                    Resend::StalePending => self.config.pending_resend_after,
                    Resend::DueDelayed => self.config.resend_after,
                    Resend::ExpiredLease => Duration::ZERO,
                };
                let runs = schedule::take_runs_to_resend(
                    &self.pool,
                    why,
                    first_wait,
                    self.config.lease,
                    self.config.batch_size,
                )
                .await?;
                if runs.is_empty() {
                    break;
                }
                let n = runs.len();
                handoff::send_continue_runs(self.queue.as_ref(), &runs).await?;
                match why {
                    Resend::ExpiredLease => rescued.expired_leases += n,
                    Resend::DueDelayed => rescued.due_delayed += n,
                    Resend::StalePending => rescued.stale_pending += n,
                }
                if (n as i64) < self.config.batch_size {
                    break;
                }
            }
        }
        events::runs_rescued(&rescued);
        Ok(rescued)
    }

    /// Rescues at once, then every `interval` and whenever the earliest lease expires, until
    /// `shutdown`. Failures are logged and retried at the next interval.
    pub async fn run(&self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.run_once().await {
                events::rescue_failed(&e, self.config.interval);
            }
            let pause = self.next_pause().await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Until the earliest lease expires (and a moment more), at most `interval`.
    async fn next_pause(&self) -> Duration {
        // a failure here is reported by the next pass
        let expiry = schedule::next_lease_expiry(&self.pool, self.config.lease)
            .await
            .unwrap_or_default();
        let Some(at) = expiry else {
            return self.config.interval;
        };
        let until = (at - crate::clock::now()).to_std().unwrap_or_default() + LEASE_MARGIN;
        until.max(MIN_PAUSE).min(self.config.interval)
    }
}
