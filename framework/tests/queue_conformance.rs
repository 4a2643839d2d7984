//! One conformance suite, two backends: every test below runs against `PgQueue` (each test in
//! its own database) and against `SqsQueue` on moto's server (each test with its own queues).
//! Visibility timeouts and delays are whole seconds (SQS counts in seconds); a wait for something
//! that must not happen is a receive with a bounded wait, never a sleep.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tributary::queue::{
    OutgoingMessage, PgQueue, PgQueueConfig, Queue, QueueError, ReceiveRequest, ReceivedMessage,
    SqsQueue, SqsQueueSettings,
};
use tributary::testkit::moto::MotoServer;

/// Makes fresh queues of one backend.
trait Backend {
    async fn queue(&self, max_receives: u32) -> Arc<dyn Queue>;
    fn records_redrive_reason(&self) -> bool;
}

struct Postgres(PgPool);

impl Backend for Postgres {
    async fn queue(&self, max_receives: u32) -> Arc<dyn Queue> {
        Arc::new(PgQueue::new(
            self.0.clone(),
            PgQueueConfig {
                name: format!("conformance-{}", uuid::Uuid::new_v4().simple()),
                max_receives,
            },
        ))
    }

    fn records_redrive_reason(&self) -> bool {
        true
    }
}

struct Sqs;

impl Backend for Sqs {
    async fn queue(&self, max_receives: u32) -> Arc<dyn Queue> {
        let settings = SqsQueueSettings {
            max_receives,
            visibility: Duration::from_secs(30),
        };
        Arc::new(MotoServer::shared().queue("conformance", &settings).await)
    }

    fn records_redrive_reason(&self) -> bool {
        false
    }
}

fn request(max: usize, wait_s: u64, visibility_s: u64) -> ReceiveRequest {
    ReceiveRequest {
        max_messages: max,
        wait: Duration::from_secs(wait_s),
        visibility: Duration::from_secs(visibility_s),
    }
}

/// Receives until one message comes, failing after `deadline`.
async fn receive_one(queue: &dyn Queue, visibility_s: u64, deadline: Duration) -> ReceivedMessage {
    let until = Instant::now() + deadline;
    loop {
        let mut got = queue.receive(request(1, 1, visibility_s)).await.unwrap();
        if let Some(message) = got.pop() {
            return message;
        }
        assert!(Instant::now() < until, "no message within {deadline:?}");
    }
}

/// Asserts that nothing is delivered during `wait_s` seconds.
async fn assert_nothing_for(queue: &dyn Queue, wait_s: u64) {
    let got = queue.receive(request(10, wait_s, 30)).await.unwrap();
    assert!(
        got.is_empty(),
        "expected no message, got {:?}",
        got.iter().map(|m| &m.body).collect::<Vec<_>>()
    );
}

fn is_invalid(result: Result<impl std::fmt::Debug, QueueError>) -> bool {
    matches!(result, Err(QueueError::InvalidRequest(_)))
}

async fn a_sent_message_is_received_once_and_gone_once_deleted(backend: &impl Backend) {
    let queue = backend.queue(5).await;
    let id = queue
        .send(OutgoingMessage::new(r#"{"hello":"world"}"#))
        .await
        .unwrap();
    let message = receive_one(queue.as_ref(), 1, Duration::from_secs(10)).await;
    assert_eq!(message.id, id);
    assert_eq!(message.body, r#"{"hello":"world"}"#);
    assert_eq!(message.receive_count, 1);
    queue.delete(&message.receipt).await.unwrap();
    // undeleted, it would be visible again after 1 s
    assert_nothing_for(queue.as_ref(), 3).await;
    // deleting again is not an error
    queue.delete(&message.receipt).await.unwrap();
}

async fn an_unacknowledged_message_is_invisible_then_delivered_again(backend: &impl Backend) {
    let queue = backend.queue(5).await;
    queue.send(OutgoingMessage::new("again")).await.unwrap();
    let first = receive_one(queue.as_ref(), 2, Duration::from_secs(10)).await;
    let received_at = Instant::now();
    assert!(
        queue.receive(request(10, 0, 30)).await.unwrap().is_empty(),
        "a received message is invisible"
    );
    let second = receive_one(queue.as_ref(), 30, Duration::from_secs(10)).await;
    assert!(
        received_at.elapsed() >= Duration::from_millis(1500),
        "redelivered after {:?}, before its visibility timeout of 2 s",
        received_at.elapsed()
    );
    assert_eq!(
        (
            second.id.as_str(),
            second.body.as_str(),
            second.receive_count
        ),
        (first.id.as_str(), "again", 2)
    );
    queue.delete(&second.receipt).await.unwrap();
}

async fn extending_the_visibility_keeps_a_message_hidden(backend: &impl Backend) {
    let queue = backend.queue(5).await;
    queue.send(OutgoingMessage::new("in flight")).await.unwrap();
    let message = receive_one(queue.as_ref(), 1, Duration::from_secs(10)).await;
    queue
        .extend_visibility(&message.receipt, Duration::from_secs(5))
        .await
        .unwrap();
    // without the extension it would be back after 1 s
    assert_nothing_for(queue.as_ref(), 3).await;
    let again = receive_one(queue.as_ref(), 30, Duration::from_secs(10)).await;
    assert_eq!((again.id, again.receive_count), (message.id, 2));
}

async fn a_delayed_message_is_not_delivered_before_its_delay(backend: &impl Backend) {
    let queue = backend.queue(5).await;
    let sent_at = Instant::now();
    queue
        .send(OutgoingMessage::delayed("later", Duration::from_secs(2)))
        .await
        .unwrap();
    assert!(queue.receive(request(10, 0, 30)).await.unwrap().is_empty());
    let message = receive_one(queue.as_ref(), 30, Duration::from_secs(10)).await;
    assert!(
        sent_at.elapsed() >= Duration::from_millis(1500),
        "delivered after {:?}, before its delay of 2 s",
        sent_at.elapsed()
    );
    assert_eq!(message.body, "later");

    // a delay beyond 15 minutes is refused, by every backend, before anything is sent
    let too_long = Duration::from_secs(901);
    assert!(is_invalid(
        queue.send(OutgoingMessage::delayed("x", too_long)).await
    ));
    assert!(is_invalid(
        queue
            .send_batch(vec![
                OutgoingMessage::new("ok"),
                OutgoingMessage::delayed("x", too_long)
            ])
            .await
    ));
    assert!(
        queue.receive(request(10, 1, 30)).await.unwrap().is_empty(),
        "a refused batch sends nothing"
    );
}

async fn batches_hold_at_most_ten_and_send_batch_takes_any_number(backend: &impl Backend) {
    let queue = backend.queue(5).await;
    assert!(is_invalid(queue.receive(request(11, 0, 30)).await));
    assert!(is_invalid(queue.receive(request(0, 0, 30)).await));
    assert!(is_invalid(
        queue
            .receive(ReceiveRequest {
                wait: Duration::from_secs(21),
                ..request(1, 0, 30)
            })
            .await
    ));

    let bodies: BTreeSet<String> = (0..25).map(|i| format!("message {i}")).collect();
    let sent = queue
        .send_batch(bodies.iter().map(OutgoingMessage::new).collect())
        .await
        .unwrap();
    assert_eq!(sent, 25);
    // a receive may bring fewer than are there: receive until all have come
    let mut received: Vec<ReceivedMessage> = Vec::new();
    let until = Instant::now() + Duration::from_secs(20);
    while received.len() < 25 {
        let batch = queue.receive(request(10, 1, 30)).await.unwrap();
        assert!(batch.len() <= 10);
        received.extend(batch);
        assert!(
            Instant::now() < until,
            "only {} of 25 received",
            received.len()
        );
    }
    let got: BTreeSet<String> = received.iter().map(|m| m.body.clone()).collect();
    assert_eq!(got, bodies);

    let receipts: Vec<_> = received.iter().map(|m| m.receipt.clone()).collect();
    assert!(is_invalid(queue.delete_batch(&receipts[..11]).await));
    assert!(is_invalid(queue.delete_batch(&[]).await));
    for chunk in receipts.chunks(10) {
        queue.delete_batch(chunk).await.unwrap();
    }
    for message in &received {
        // all deleted: extending any of them fails or, where the backend does not tell, does no harm
        let _ = queue
            .extend_visibility(&message.receipt, Duration::from_secs(0))
            .await;
    }
    assert_nothing_for(queue.as_ref(), 2).await;
}

async fn a_waiting_receive_wakes_when_a_message_is_sent(backend: &impl Backend) {
    let queue = backend.queue(5).await;
    let receiver = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let got = queue.receive(request(1, 15, 30)).await.unwrap();
            (got, started.elapsed())
        })
    };
    // the receive is waiting (or about to): send once it has had time to start
    tokio::time::sleep(Duration::from_millis(300)).await;
    queue.send(OutgoingMessage::new("wake up")).await.unwrap();
    let (got, waited) = receiver.await.unwrap();
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["wake up"]
    );
    assert!(
        waited < Duration::from_secs(5),
        "the receive waited {waited:?} for a message sent after 0.3 s"
    );
}

async fn a_message_received_too_often_is_dead_lettered(backend: &impl Backend) {
    let queue = backend.queue(2).await;
    queue.send(OutgoingMessage::new("poison")).await.unwrap();
    let first = receive_one(queue.as_ref(), 1, Duration::from_secs(10)).await;
    let second = receive_one(queue.as_ref(), 1, Duration::from_secs(10)).await;
    assert_eq!(
        (second.id.as_str(), second.receive_count),
        (first.id.as_str(), 2)
    );
    // received twice without a delete: never delivered a third time
    assert_nothing_for(queue.as_ref(), 3).await;
    let dead = queue.peek_dead_letters(10).await.unwrap();
    assert_eq!(
        dead.iter().map(|d| d.body.as_str()).collect::<Vec<_>>(),
        ["poison"]
    );
    if backend.records_redrive_reason() {
        let reason = dead[0].reason.clone().unwrap();
        assert!(reason.contains("received 2 times"), "{reason}");
    }
}

async fn a_refused_message_is_dead_lettered_with_its_reason(backend: &impl Backend) {
    let queue = backend.queue(5).await;
    queue.send(OutgoingMessage::new("not json")).await.unwrap();
    queue.send(OutgoingMessage::new("fine")).await.unwrap();
    let mut refused = None;
    let until = Instant::now() + Duration::from_secs(10);
    while refused.is_none() {
        for message in queue.receive(request(10, 1, 1)).await.unwrap() {
            if message.body == "not json" {
                refused = Some(message);
            }
        }
        assert!(Instant::now() < until, "the message never came");
    }
    let refused = refused.unwrap();
    queue
        .dead_letter(&refused, "the message body is not JSON: expected value")
        .await
        .unwrap();
    let dead = queue.peek_dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].body, "not json");
    assert_eq!(
        dead[0].reason.as_deref(),
        Some("the message body is not JSON: expected value")
    );
    assert_eq!(dead[0].receive_count, Some(1));
    // the other message is still there, the refused one gone for good
    let next = receive_one(queue.as_ref(), 30, Duration::from_secs(10)).await;
    assert_eq!(next.body, "fine");
    queue.delete(&next.receipt).await.unwrap();
    assert_nothing_for(queue.as_ref(), 2).await;
}

async fn a_dead_letter_is_redriven_or_discarded_by_its_id(backend: &impl Backend) {
    let queue = backend.queue(5).await;
    for body in ["first", "second"] {
        queue.send(OutgoingMessage::new(body)).await.unwrap();
        let message = receive_one(queue.as_ref(), 30, Duration::from_secs(10)).await;
        queue
            .dead_letter(&message, "the message names no run")
            .await
            .unwrap();
    }
    let dead = queue.peek_dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    let id_of = |body: &str| dead.iter().find(|d| d.body == body).unwrap().id.clone();
    let (first, second) = (id_of("first"), id_of("second"));

    assert!(queue.redrive_dead_letter(&first).await.unwrap());
    let back = receive_one(queue.as_ref(), 30, Duration::from_secs(10)).await;
    assert_eq!(back.body, "first");
    assert_eq!(
        back.receive_count, 1,
        "a redriven message starts its receives again"
    );
    queue.delete(&back.receipt).await.unwrap();

    assert!(queue.discard_dead_letter(&second).await.unwrap());
    assert!(!queue.discard_dead_letter(&second).await.unwrap(), "gone");
    assert!(!queue.redrive_dead_letter(&first).await.unwrap(), "gone");
    assert!(!queue.redrive_dead_letter("no-such-id").await.unwrap());
    assert!(queue.peek_dead_letters(10).await.unwrap().is_empty());
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.visible, stats.dead_letters), (0, 0), "{stats:?}");
    assert_nothing_for(queue.as_ref(), 1).await;
}

/// A receive that carries handled messages' receipts deletes them and takes none of them, even
/// when their visibility ran out before it.
async fn a_receive_deletes_the_handled_messages_it_carries(backend: &impl Backend) {
    let queue = backend.queue(5).await;
    let mut handled = Vec::new();
    for body in ["a", "b"] {
        queue.send(OutgoingMessage::new(body)).await.unwrap();
        handled.push(receive_one(queue.as_ref(), 1, Duration::from_secs(10)).await);
    }
    // wait until both have become visible again, undeleted
    let until = Instant::now() + Duration::from_secs(10);
    while queue.stats().await.unwrap().visible < 2 {
        assert!(Instant::now() < until, "{:?}", queue.stats().await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    queue.send(OutgoingMessage::new("c")).await.unwrap();
    let receipts: Vec<_> = handled.iter().map(|m| m.receipt.clone()).collect();
    let mut got: Vec<String> = queue
        .receive_after_deleting(request(10, 1, 30), &receipts)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    let until = Instant::now() + Duration::from_secs(10);
    while got.is_empty() && Instant::now() < until {
        got.extend(
            queue
                .receive(request(10, 1, 30))
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.body),
        );
    }
    assert_eq!(got, ["c"], "the handled messages were deleted, not taken");
    assert_nothing_for(queue.as_ref(), 2).await;
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod postgres {
            use super::*;
            $(
                #[sqlx::test(migrator = "tributary::MIGRATOR")]
                async fn $test(pool: PgPool) {
                    super::$test(&Postgres(pool)).await;
                }
            )*
        }
        mod sqs {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(&Sqs).await;
                }
            )*
        }
    };
}

conformance!(
    a_sent_message_is_received_once_and_gone_once_deleted,
    an_unacknowledged_message_is_invisible_then_delivered_again,
    extending_the_visibility_keeps_a_message_hidden,
    a_delayed_message_is_not_delivered_before_its_delay,
    batches_hold_at_most_ten_and_send_batch_takes_any_number,
    a_waiting_receive_wakes_when_a_message_is_sent,
    a_message_received_too_often_is_dead_lettered,
    a_refused_message_is_dead_lettered_with_its_reason,
    a_dead_letter_is_redriven_or_discarded_by_its_id,
    a_receive_deletes_the_handled_messages_it_carries,
);

/// At the start, an SQS queue that cannot be reached is an outage (the worker waits for it); a
/// queue that does not exist, on a server that answers, is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_tells_an_unreachable_sqs_queue_from_a_refused_one() {
    let moto = MotoServer::shared();
    let settings = SqsQueueSettings {
        max_receives: 3,
        visibility: Duration::from_secs(30),
    };
    let queue = moto.queue("connect", &settings).await;
    let dead = Some(queue.dead_letter_url().to_owned());
    let missing = format!("{}/no-such-queue", queue.url().rsplit_once('/').unwrap().0);
    let refused = SqsQueue::connect(moto.client(), missing, dead.clone())
        .await
        .unwrap_err();
    assert!(!refused.is_unreachable(), "{refused}");

    let nobody = format!(
        "http://127.0.0.1:{}",
        tributary::testkit::pg_server::free_port()
    );
    let url = queue.url().replace(&moto.endpoint(), &nobody);
    let down = SqsQueue::connect(MotoServer::client_at(&nobody), url, dead)
        .await
        .unwrap_err();
    assert!(down.is_unreachable(), "{down}");
    assert!(down.to_string().contains("unreachable"), "{down}");
}
