//! The queue between producers (scripts, the tick generator, any SQS client) and the workers.
//!
//! One [`Queue`] trait with SQS semantics, two backends that pass one conformance suite
//! (`framework/tests/queue_conformance.rs`):
//!
//! * [`PgQueue`] (`TRIBUTARY_QUEUE=postgres`, the default): tables in the same PostgreSQL,
//!   `FOR UPDATE SKIP LOCKED`, receivers woken by `LISTEN/NOTIFY`;
//! * [`SqsQueue`] (`TRIBUTARY_QUEUE=sqs`): Amazon SQS through aws-sdk-sqs.
//!
//! The semantics both keep:
//! * a received message is invisible for its visibility timeout, then delivered again (its
//!   receive count grows) unless it was deleted; a worker extends the visibility while it works
//!   and deletes the message only once the state the message caused is committed;
//! * after `max_receives` receives without a delete, the message is moved to the dead-letter
//!   queue (on SQS by the queue's RedrivePolicy); a worker may also dead-letter a message itself,
//!   with the reason, which is recorded next to the body;
//! * sends may be delayed by up to [`MAX_DELAY`] (SQS's DelaySeconds);
//! * receives and deletes take at most [`MAX_BATCH`] messages; `send_batch` takes any number
//!   and sends them in batches of that size;
//! * a receive waits (long polling) up to [`MAX_WAIT`] for a message.

mod pg;
mod sqs;
mod sqs_dead_letter;
mod sqs_errors;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;

use crate::messages::Message;
use crate::store::StoreError;

pub use pg::{PgQueue, PgQueueConfig};
#[cfg(feature = "testkit")]
pub(crate) use sqs::https_client as sqs_https_client;
pub use sqs::{SqsQueue, SqsQueueSettings};

/// Most messages one receive, delete or send request carries (SQS's limit).
pub const MAX_BATCH: usize = 10;
/// The longest delay of a send (SQS's DelaySeconds limit: 15 minutes).
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// The longest a receive waits for a message (SQS's long-polling limit).
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// The longest visibility timeout (SQS's limit: 12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    /// Not delivered before this has passed (at most [`MAX_DELAY`]).
    pub delay: Duration,
}

impl OutgoingMessage {
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn delayed(body: impl Into<String>, delay: Duration) -> Self {
        Self {
            body: body.into(),
            delay,
        }
    }
}

impl From<&Message> for OutgoingMessage {
    fn from(message: &Message) -> Self {
        Self::new(message.encode())
    }
}

/// Proof of one receive of a message: deletes and visibility changes name it. Opaque.
#[derive(Clone, PartialEq, Eq)]
pub struct Receipt(pub(crate) String);

impl Receipt {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SQS receipt handles are long; the start identifies one well enough
        let short: String = self.0.chars().take(16).collect();
        write!(f, "Receipt({short}…)")
    }
}

/// A message as received.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// The queue's id of the message: the same for every delivery of it.
    pub id: String,
    pub body: String,
    pub receipt: Receipt,
    /// 1 for the first delivery, 2 for the second…
    pub receive_count: u32,
}

/// What to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveRequest {
    /// 1 to [`MAX_BATCH`].
    pub max_messages: usize,
    /// How long to wait for a first message (up to [`MAX_WAIT`]); zero returns at once.
    pub wait: Duration,
    /// How long received messages stay invisible to other receivers.
    pub visibility: Duration,
}

/// A message in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: String,
    pub body: String,
    /// Why it is there: a worker's reason, or the redrive after too many receives. `None` for a
    /// message SQS's RedrivePolicy moved (SQS records no reason).
    pub reason: Option<String>,
    pub receive_count: Option<u32>,
    /// When it was dead-lettered (the postgres backend knows; SQS does not say).
    pub dead_lettered_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a queue holds now, for operators and metrics. SQS's figures are approximate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Messages ready to be received.
    pub visible: u64,
    /// Received and not yet deleted.
    pub in_flight: u64,
    /// Sent with a delay that has not passed.
    pub delayed: u64,
    /// How long the oldest message has been waiting since it was sent (postgres only).
    pub oldest_age: Option<Duration>,
    pub dead_letters: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("invalid queue request: {0}")]
    InvalidRequest(String),
    #[error("queue configuration: {0}")]
    Config(String),
    #[error("{backend} queue: {operation} failed: {detail}")]
    Backend {
        backend: &'static str,
        operation: &'static str,
        detail: String,
    },
    /// The queue could not be reached, timed out, or answered that it is unavailable or
    /// throttling: an outage, worth waiting for (unlike a queue that does not exist or refuses
    /// the credentials, a [`QueueError::Backend`]).
    #[error("{backend} queue: {operation} failed, the queue is unreachable: {detail}")]
    Unreachable {
        backend: &'static str,
        operation: &'static str,
        detail: String,
    },
    #[error("the receipt no longer holds the message (it was deleted or received again)")]
    ReceiptInvalid,
    #[error("{failed} of {total} messages of a batch {operation} failed; first: {detail}")]
    PartialBatch {
        operation: &'static str,
        failed: usize,
        total: usize,
        detail: String,
    },
    #[error("queue database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl QueueError {
    /// An outage of the queue (or, for the `postgres` backend, of the database): worth waiting
    /// for.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Database(e) => crate::store::is_unavailable(e),
            _ => false,
        }
    }
}

impl From<StoreError> for QueueError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Database(e) => Self::Database(e),
            other => Self::Backend {
                backend: "postgres",
                operation: "store",
                detail: other.to_string(),
            },
        }
    }
}

/// A queue with SQS semantics (see the module docs).
#[async_trait]
pub trait Queue: Send + Sync + fmt::Debug + 'static {
    /// `postgres` or `sqs`.
    fn backend(&self) -> &'static str;

    /// The queue's name or URL, for logs.
    fn describe(&self) -> String;

    /// Sends one message; returns its id.
    async fn send(&self, message: OutgoingMessage) -> Result<String, QueueError>;

    /// Sends any number of messages, [`MAX_BATCH`] (or, in PostgreSQL, many more) per request.
    /// Returns how many were sent; on error some may have been sent.
    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Result<usize, QueueError>;

    /// Receives up to `max_messages`, waiting up to `wait` for the first one.
    async fn receive(&self, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>, QueueError>;

    /// Keeps a received message invisible for `visibility` from now.
    async fn extend_visibility(
        &self,
        receipt: &Receipt,
        visibility: Duration,
    ) -> Result<(), QueueError>;

    /// Deletes a received message: it will not be delivered again. Deleting a message that is
    /// already gone is not an error.
    async fn delete(&self, receipt: &Receipt) -> Result<(), QueueError>;

    /// Deletes up to [`MAX_BATCH`] received messages.
    async fn delete_batch(&self, receipts: &[Receipt]) -> Result<(), QueueError>;

    /// Whether [`Queue::receive_after_deleting`] deletes within the receive's own request (in
    /// PostgreSQL, its statement): a worker then leaves its handled messages' deletes to its next
    /// receive rather than sending them apart.
    fn deletes_with_receive(&self) -> bool {
        false
    }

    /// Deletes `receipts` (any number), then receives as [`Queue::receive`] does. On error the
    /// deletes may not have happened: those messages come back once visible, as after a lost
    /// delete.
    async fn receive_after_deleting(
        &self,
        request: ReceiveRequest,
        receipts: &[Receipt],
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        for chunk in receipts.chunks(MAX_BATCH) {
            self.delete_batch(chunk).await?;
        }
        self.receive(request).await
    }

    /// Moves a received message to the dead-letter queue with `reason`.
    async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) -> Result<(), QueueError>;

    /// Up to `max` messages of the dead-letter queue, oldest first, left where they are.
    async fn peek_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError>;

    /// Sends the dead letter `id` (as [`DeadLetter::id`] names it) to the queue again and removes
    /// it from the dead letters. `false`: there is no such dead letter.
    async fn redrive_dead_letter(&self, id: &str) -> Result<bool, QueueError> {
        let _ = id;
        Err(unsupported(self.backend(), "redrive a dead letter"))
    }

    /// Deletes the dead letter `id` for good. `false`: there is no such dead letter.
    async fn discard_dead_letter(&self, id: &str) -> Result<bool, QueueError> {
        let _ = id;
        Err(unsupported(self.backend(), "discard a dead letter"))
    }

    /// How many messages wait, are in flight, are delayed or dead, and the oldest one's age.
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        Err(unsupported(self.backend(), "report its figures"))
    }
}

fn unsupported(backend: &'static str, operation: &str) -> QueueError {
    QueueError::Config(format!("the {backend} queue cannot {operation}"))
}

pub(crate) fn check_batch(operation: &str, n: usize) -> Result<(), QueueError> {
    if n == 0 || n > MAX_BATCH {
        return Err(QueueError::InvalidRequest(format!(
            "{operation} takes 1 to {MAX_BATCH} messages, not {n}"
        )));
    }
    Ok(())
}

pub(crate) fn check_delay(delay: Duration) -> Result<(), QueueError> {
    if delay > MAX_DELAY {
        return Err(QueueError::InvalidRequest(format!(
            "a send may be delayed by at most {} s, not {} s",
            MAX_DELAY.as_secs(),
            delay.as_secs_f64()
        )));
    }
    Ok(())
}

pub(crate) fn check_receive(request: &ReceiveRequest) -> Result<(), QueueError> {
    check_batch("receive", request.max_messages)?;
    if request.wait > MAX_WAIT {
        return Err(QueueError::InvalidRequest(format!(
            "a receive waits at most {} s, not {} s",
            MAX_WAIT.as_secs(),
            request.wait.as_secs_f64()
        )));
    }
    check_visibility(request.visibility)
}

pub(crate) fn check_visibility(visibility: Duration) -> Result<(), QueueError> {
    if visibility > MAX_VISIBILITY {
        return Err(QueueError::InvalidRequest(format!(
            "a visibility timeout is at most {} s, not {} s",
            MAX_VISIBILITY.as_secs(),
            visibility.as_secs_f64()
        )));
    }
    Ok(())
}

/// Whole seconds, rounded up (SQS counts in seconds).
pub(crate) fn whole_seconds(d: Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

/// Which backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueBackend {
    #[default]
    Postgres,
    Sqs,
}

impl std::str::FromStr for QueueBackend {
    type Err = QueueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "postgres" | "postgresql" | "pg" => Ok(Self::Postgres),
            "sqs" => Ok(Self::Sqs),
            other => Err(QueueError::Config(format!(
                "TRIBUTARY_QUEUE must be `postgres` or `sqs`, not `{other}`"
            ))),
        }
    }
}

impl fmt::Display for QueueBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Postgres => "postgres",
            Self::Sqs => "sqs",
        })
    }
}

/// Which queue to use, as the environment says:
///
/// | variable | meaning | default |
/// | --- | --- | --- |
/// | `TRIBUTARY_QUEUE` | `postgres` or `sqs` | `postgres` |
/// | `TRIBUTARY_PG_QUEUE` | the queue's name in the `postgres` backend | `tributary` |
/// | `TRIBUTARY_QUEUE_MAX_RECEIVES` | receives before the `postgres` backend dead-letters a message | `5` |
/// | `TRIBUTARY_SQS_QUEUE_URL` | the SQS queue (required for `sqs`) | |
/// | `TRIBUTARY_SQS_DEAD_LETTER_QUEUE_URL` | its dead-letter queue | the queue's RedrivePolicy target |
///
/// The SQS client reads the standard AWS variables (`AWS_REGION`, `AWS_ENDPOINT_URL`,
/// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profiles…). On SQS, `max_receives` is the
/// queue's own RedrivePolicy `maxReceiveCount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub backend: QueueBackend,
    pub pg_queue: String,
    pub max_receives: u32,
    pub sqs_queue_url: Option<String>,
    pub sqs_dead_letter_queue_url: Option<String>,
}

pub const DEFAULT_PG_QUEUE: &str = "tributary";
pub const DEFAULT_MAX_RECEIVES: u32 = 5;

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            backend: QueueBackend::Postgres,
            pg_queue: DEFAULT_PG_QUEUE.to_owned(),
            max_receives: DEFAULT_MAX_RECEIVES,
            sqs_queue_url: None,
            sqs_dead_letter_queue_url: None,
        }
    }
}

impl QueueConfig {
    /// Reads the variables of the table above.
    pub fn from_env() -> Result<Self, QueueError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut config = Self::default();
        if let Some(backend) = var("TRIBUTARY_QUEUE") {
            config.backend = backend.parse()?;
        }
        if let Some(name) = var("TRIBUTARY_PG_QUEUE") {
            config.pg_queue = name;
        }
        if let Some(n) = var("TRIBUTARY_QUEUE_MAX_RECEIVES") {
            config.max_receives = n.trim().parse().map_err(|_| {
                QueueError::Config(format!(
                    "TRIBUTARY_QUEUE_MAX_RECEIVES must be a positive number, not `{n}`"
                ))
            })?;
        }
        config.sqs_queue_url = var("TRIBUTARY_SQS_QUEUE_URL");
        config.sqs_dead_letter_queue_url = var("TRIBUTARY_SQS_DEAD_LETTER_QUEUE_URL");
        Ok(config)
    }

    /// Opens the queue. The `postgres` backend uses `pool` (whose schema must be migrated).
    pub async fn connect(&self, pool: &PgPool) -> Result<Arc<dyn Queue>, QueueError> {
        if self.max_receives == 0 {
            return Err(QueueError::Config(
                "max receives must be at least 1".to_owned(),
            ));
        }
        match self.backend {
            QueueBackend::Postgres => Ok(Arc::new(PgQueue::new(
                pool.clone(),
                PgQueueConfig {
                    name: self.pg_queue.clone(),
                    max_receives: self.max_receives,
                },
            ))),
            QueueBackend::Sqs => {
                let url = self.sqs_queue_url.clone().ok_or_else(|| {
                    QueueError::Config(
                        "TRIBUTARY_QUEUE=sqs needs TRIBUTARY_SQS_QUEUE_URL (the queue's URL)"
                            .to_owned(),
                    )
                })?;
                let client = SqsQueue::client_from_env().await;
                Ok(Arc::new(
                    SqsQueue::connect(client, url, self.sqs_dead_letter_queue_url.clone()).await?,
                ))
            }
        }
    }
}

/// The queue the environment names ([`QueueConfig::from_env`]), opened.
pub async fn from_env(pool: &PgPool) -> Result<Arc<dyn Queue>, QueueError> {
    QueueConfig::from_env()?.connect(pool).await
}

/// Handing runs to the workers lives in [`crate::handoff`]; these stay here for callers that
/// knew them as queue functions.
pub use crate::handoff::{enqueue_run, enqueue_run_at};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn limits_are_checked_before_any_request() {
        assert!(check_batch("receive", 10).is_ok());
        for n in [0, 11] {
            let e = check_batch("receive", n).unwrap_err().to_string();
            assert!(e.contains("1 to 10"), "{e}");
        }
        assert!(check_delay(MAX_DELAY).is_ok());
        assert!(check_delay(MAX_DELAY + Duration::from_millis(1)).is_err());
        let request = ReceiveRequest {
            max_messages: 1,
            wait: Duration::from_secs(21),
            visibility: Duration::from_secs(1),
        };
        assert!(check_receive(&request).is_err());
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(3)), 3);
        assert_eq!(whole_seconds(Duration::ZERO), 0);
    }

    #[test]
    fn backends_are_named() {
        assert_eq!(
            "postgres".parse::<QueueBackend>().unwrap(),
            QueueBackend::Postgres
        );
        assert_eq!("SQS".parse::<QueueBackend>().unwrap(), QueueBackend::Sqs);
        let e = "rabbit".parse::<QueueBackend>().unwrap_err().to_string();
        assert!(e.contains("`postgres` or `sqs`"), "{e}");
    }
}
