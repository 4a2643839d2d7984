//! Acknowledgements in batches. A handled message is deleted with others in one `delete_batch`
//! (up to the queue's batch size), at most [`ACK_DELAY`] after it was handled, and every pending
//! one before the worker stops. Under load this makes the delete of a check nearly free (one
//! statement or API call for ten); a delete that is lost (the worker is killed in that moment)
//! only makes the message come back, and its redelivery finds the work done.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tributary::queue::{MAX_BATCH, Queue, ReceivedMessage};

use crate::events;

/// A handled message waits at most this long for others to share its delete.
pub const ACK_DELAY: Duration = Duration::from_millis(50);

/// Sends the deletes of handled messages in batches, from a task of its own.
pub struct Acker {
    acks: Acks,
    task: JoinHandle<()>,
}

/// Where a handled message's delete is queued (one per job).
#[derive(Clone)]
pub struct Acks {
    tx: mpsc::UnboundedSender<ReceivedMessage>,
}

impl Acker {
    pub fn start(queue: Arc<dyn Queue>, delay: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(queue, rx, delay));
        Self {
            acks: Acks { tx },
            task,
        }
    }

    pub fn acks(&self) -> Acks {
        self.acks.clone()
    }

    /// Sends every delete still waiting (once every [`Acks`] is gone), then stops.
    pub async fn close(self) {
        drop(self.acks);
        if let Err(e) = self.task.await {
            events::task_panicked(&e);
        }
    }
}

impl Acks {
    /// Queues the message's delete.
    pub fn ack(&self, message: ReceivedMessage) {
        if let Err(mpsc::error::SendError(message)) = self.tx.send(message) {
            // the acker stopped (it never does while an `Acks` lives): the message comes back
            events::ack_failed(
                &message,
                &tributary::queue::QueueError::Backend {
                    backend: "worker",
                    operation: "delete",
                    detail: "the acknowledging task has stopped".to_owned(),
                },
            );
        }
    }
}

async fn run(
    queue: Arc<dyn Queue>,
    mut rx: mpsc::UnboundedReceiver<ReceivedMessage>,
    delay: Duration,
) {
    let mut batch: Vec<ReceivedMessage> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + delay;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(message)) => batch.push(message),
                // closed: send what is here, then the loop ends
                Ok(None) | Err(_) => break,
            }
        }
        delete(queue.as_ref(), &mut batch).await;
    }
}

async fn delete(queue: &dyn Queue, batch: &mut Vec<ReceivedMessage>) {
    let receipts: Vec<_> = batch.iter().map(|m| m.receipt.clone()).collect();
    if let Err(e) = queue.delete_batch(&receipts).await {
        for message in batch.iter() {
            events::ack_failed(message, &e);
        }
    }
    batch.clear();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sqlx::PgPool;
    use tributary::queue::{OutgoingMessage, PgQueue, PgQueueConfig, QueueStats, ReceiveRequest};

    async fn stats(queue: &PgQueue) -> QueueStats {
        queue.stats().await.unwrap()
    }

    #[sqlx::test(migrator = "tributary::MIGRATOR")]
    async fn deletes_go_ten_at_a_time_and_the_rest_before_close(pool: PgPool) {
        let queue = Arc::new(PgQueue::new(pool, PgQueueConfig::default()));
        for n in 0..12 {
            queue
                .send(OutgoingMessage::new(format!("m{n}")))
                .await
                .unwrap();
        }
        let mut received = Vec::new();
        while received.len() < 12 {
            received.extend(
                queue
                    .receive(ReceiveRequest {
                        max_messages: MAX_BATCH,
                        wait: Duration::ZERO,
                        visibility: Duration::from_secs(600),
                    })
                    .await
                    .unwrap(),
            );
        }
        // a delay no test waits out: only a full batch, or the close, sends deletes
        let acker = Acker::start(queue.clone(), Duration::from_secs(3600));
        let acks = acker.acks();
        for message in received {
            acks.ack(message);
        }
        drop(acks);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while stats(&queue).await.in_flight != 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a full batch was not deleted: {:?}",
                stats(&queue).await
            );
            tokio::task::yield_now().await;
        }
        assert_eq!(stats(&queue).await.in_flight, 2, "the partial batch waits");
        acker.close().await;
        let after = stats(&queue).await;
        assert_eq!((after.in_flight, after.visible), (0, 0), "{after:?}");
    }
}
