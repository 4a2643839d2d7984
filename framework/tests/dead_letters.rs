//! Issue 8 item 11: a refused message keeps its reason in the dead-letter queue whatever its size.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use tributary::queue::{OutgoingMessage, Queue, ReceiveRequest, SqsQueueSettings};
use tributary::testkit::moto::MotoServer;

#[tokio::test]
async fn a_body_too_large_for_the_dead_letter_queue_is_cut_and_the_reason_kept() {
    let moto = MotoServer::shared();
    let queue = moto.queue("big-dlq", &SqsQueueSettings::default()).await;
    // a dead-letter queue that takes 1 KiB, a message of 3 KiB
    moto.client()
        .set_queue_attributes()
        .queue_url(queue.dead_letter_url())
        .attributes(QueueAttributeName::MaximumMessageSize, "1024")
        .send()
        .await
        .unwrap();
    let body = format!(
        "{{\"type\":\"nonsense\",\"pad\":\"{}\"}}",
        "x".repeat(3_000)
    );
    queue
        .send(OutgoingMessage::new(body.clone()))
        .await
        .unwrap();
    let received = queue
        .receive(ReceiveRequest {
            max_messages: 1,
            wait: Duration::from_secs(1),
            visibility: Duration::from_secs(30),
        })
        .await
        .unwrap();
    let message = received.first().expect("the message");
    queue
        .dead_letter(message, "unknown message type `nonsense`")
        .await
        .expect("the move succeeds, the body cut to fit");

    let dead = queue.peek_dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let reason = dead[0].reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("unknown message type `nonsense` [body too large"),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("of {} bytes are kept", body.len())),
        "{reason}"
    );
    assert!(dead[0].body.len() < 1024 && body.starts_with(&dead[0].body));
    // the original is gone from the queue
    let again = queue
        .receive(ReceiveRequest {
            max_messages: 1,
            wait: Duration::ZERO,
            visibility: Duration::ZERO,
        })
        .await
        .unwrap();
    assert!(again.is_empty());
}
