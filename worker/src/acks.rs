//! Acknowledgements in batches. A handled message is deleted with others in one `delete_batch`
//! (up to the queue's batch size), at most [`ACK_DELAY`] after it was handled, and every pending
//! one before the worker stops. Under load this makes the delete of a check nearly free (one
//! statement or API call for ten); a delete that is lost (the worker is killed in that moment)
//! only makes the message come back, and its redelivery finds the work done. Where the queue
//! deletes within a receive ([`Queue::deletes_with_receive`], PostgreSQL), the worker's next
//! receive takes the pending deletes along ([`Acker::take`]), and the acker sends only those no
//! receive took within the delay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
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
    pending: Arc<Pending>,
}

/// Handled messages not yet deleted.
#[derive(Default)]
struct Pending {
    messages: Mutex<Vec<ReceivedMessage>>,
    /// A message was queued, or the acker is closing.
    wake: Notify,
    closing: AtomicBool,
}

impl Pending {
    fn take(&self) -> Vec<ReceivedMessage> {
        std::mem::take(&mut *self.lock())
    }

    /// The first `n` pending messages (the rest wait for their own batch).
    fn take_up_to(&self, n: usize) -> Vec<ReceivedMessage> {
        let mut messages = self.lock();
        let n = n.min(messages.len());
        messages.drain(..n).collect()
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ReceivedMessage>> {
        // a panic while holding the lock cannot leave the list half-changed (push, take)
        self.messages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Acker {
    pub fn start(queue: Arc<dyn Queue>, delay: Duration) -> Self {
        let pending = Arc::new(Pending::default());
        let task = tokio::spawn(run(queue, pending.clone(), delay));
        Self {
            acks: Acks { pending },
            task,
        }
    }

    pub fn acks(&self) -> Acks {
        self.acks.clone()
    }

    /// The handled messages not yet deleted, for a receive to delete.
    pub fn take(&self) -> Vec<ReceivedMessage> {
        self.acks.pending.take()
    }

    /// Queues again what [`Acker::take`] took when its receive did not happen.
    pub fn put_back(&self, messages: Vec<ReceivedMessage>) {
        if messages.is_empty() {
            return;
        }
        self.acks.pending.lock().extend(messages);
        self.acks.pending.wake.notify_one();
    }

    /// Sends every delete still waiting, then stops.
    pub async fn close(self) {
        self.acks.pending.closing.store(true, Ordering::SeqCst);
        self.acks.pending.wake.notify_one();
        if let Err(e) = self.task.await {
            events::task_panicked(&e);
        }
    }
}

impl Acks {
    /// Queues the message's delete.
    pub fn ack(&self, message: ReceivedMessage) {
        self.pending.lock().push(message);
        self.pending.wake.notify_one();
    }
}

async fn run(queue: Arc<dyn Queue>, pending: Arc<Pending>, delay: Duration) {
    loop {
        // a message queued (or the close) since the last batch
        pending.wake.notified().await;
        let deadline = tokio::time::Instant::now() + delay;
        while pending.len() < MAX_BATCH && !pending.closing.load(Ordering::SeqCst) {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                () = pending.wake.notified() => {}
            }
        }
        let closing = pending.closing.load(Ordering::SeqCst);
        // a full batch goes at once; the rest waits its delay (or the close)
        let batch = if closing {
            pending.take()
        } else {
            pending.take_up_to(MAX_BATCH)
        };
        for chunk in batch.chunks(MAX_BATCH) {
            delete(queue.as_ref(), chunk).await;
        }
        if pending.len() > 0 {
            // the rest starts its own wait
            pending.wake.notify_one();
        } else if closing {
            return;
        }
    }
}

async fn delete(queue: &dyn Queue, batch: &[ReceivedMessage]) {
    let receipts: Vec<_> = batch.iter().map(|m| m.receipt.clone()).collect();
    if let Err(e) = queue.delete_batch(&receipts).await {
        for message in batch {
            events::ack_failed(message, &e);
        }
    }
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

    /// A queue holding `n` messages.
    async fn queue_of(pool: PgPool, n: usize) -> Arc<PgQueue> {
        let queue = Arc::new(PgQueue::new(pool, PgQueueConfig::default()));
        for n in 0..n {
            queue
                .send(OutgoingMessage::new(format!("m{n}")))
                .await
                .unwrap();
        }
        queue
    }

    #[sqlx::test(migrator = "tributary::MIGRATOR")]
    async fn deletes_go_ten_at_a_time_and_the_rest_before_close(pool: PgPool) {
        let queue = queue_of(pool, 12).await;
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

    #[sqlx::test(migrator = "tributary::MIGRATOR")]
    async fn a_receive_takes_the_pending_deletes_along(pool: PgPool) {
        let queue = queue_of(pool, 3).await;
        let request = |n| ReceiveRequest {
            max_messages: n,
            wait: Duration::ZERO,
            visibility: Duration::from_secs(600),
        };
        let received = queue.receive(request(2)).await.unwrap();
        assert_eq!(received.len(), 2);
        // a delay no test waits out: the deletes wait for a receive (or the close)
        let acker = Acker::start(queue.clone(), Duration::from_secs(3600));
        let acks = acker.acks();
        for message in received {
            acks.ack(message);
        }
        let deleting = acker.take();
        assert_eq!(deleting.len(), 2);
        assert!(acker.take().is_empty(), "taken once");
        let receipts: Vec<_> = deleting.iter().map(|m| m.receipt.clone()).collect();
        let third = queue
            .receive_after_deleting(request(10), &receipts)
            .await
            .unwrap();
        assert_eq!(third.len(), 1);
        let after = stats(&queue).await;
        assert_eq!((after.in_flight, after.visible), (1, 0), "{after:?}");
        // a receive that did not happen puts its deletes back for the acker
        acker.put_back(third);
        acker.close().await;
        let after = stats(&queue).await;
        assert_eq!((after.in_flight, after.visible), (0, 0), "{after:?}");
    }
}
