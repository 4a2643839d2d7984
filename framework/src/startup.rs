//! A process's start: PostgreSQL and the queue it needs, waited for while they are unreachable
//! (a worker or a tick generator started before the database, or during its restart), with a log
//! line each try. A configuration that cannot work (a malformed URL, refused credentials, a queue
//! that does not exist) is an error at once: waiting would not mend it.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db::{self, DbError};
use crate::error::ErrorChain;
use crate::queue::{Queue, QueueBackend, QueueConfig, QueueError};

/// The first pause between two tries; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(500);
/// The longest pause between two tries to reach a service at start.
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// Connects a pool of `max_connections` to PostgreSQL at `url`, waiting while the server is
/// unreachable. `process` names the process in the log line ("the worker"). `None`: `shutdown`
/// came first.
pub async fn connect_patiently(
    url: &str,
    max_connections: u32,
    process: &str,
    shutdown: &CancellationToken,
) -> Result<Option<PgPool>, DbError> {
    let what = format!("PostgreSQL at {}", db::redact_url(url));
    patiently(
        process,
        &what,
        shutdown,
        DbError::is_unavailable,
        || async {
            db::probe(url).await?;
            db::connect(url, max_connections).await
        },
    )
    .await
}

/// Opens the queue `config` names, waiting while it is unreachable (no answer, timeouts, 5xx,
/// throttling). `None`: `shutdown` came first.
pub async fn open_queue_patiently(
    config: &QueueConfig,
    pool: &PgPool,
    process: &str,
    shutdown: &CancellationToken,
) -> Result<Option<Arc<dyn Queue>>, QueueError> {
    let what = match (&config.backend, &config.sqs_queue_url) {
        (QueueBackend::Sqs, Some(url)) => format!("the sqs queue at {url}"),
        (backend, _) => format!("the {backend} queue"),
    };
    patiently(process, &what, shutdown, QueueError::is_unreachable, || {
        config.connect(pool)
    })
    .await
}

/// Tries `attempt` until it succeeds, fails in a way `worth_waiting` refuses, or `shutdown`
/// comes (`None`), pausing from [`FIRST_PAUSE`] to [`MAX_PAUSE`] with a log line each time.
async fn patiently<T, E, Fut>(
    process: &str,
    what: &str,
    shutdown: &CancellationToken,
    worth_waiting: fn(&E) -> bool,
    mut attempt: impl FnMut() -> Fut,
) -> Result<Option<T>, E>
where
    E: std::error::Error + 'static,
    Fut: Future<Output = Result<T, E>>,
{
    let mut pause = FIRST_PAUSE;
    loop {
        match attempt().await {
            Ok(done) => return Ok(Some(done)),
            Err(e) if worth_waiting(&e) => waiting(process, what, &e, pause),
            Err(e) => return Err(e),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

fn waiting(
    process: &str,
    what: &str,
    error: &(dyn std::error::Error + 'static),
    retry_in: Duration,
) {
    tracing::warn!(
        error = %ErrorChain(error), retry_in_ms = retry_in.as_millis() as u64,
        "{what} is not reachable yet: {process} waits for it (it does nothing else meanwhile)"
    );
}
