//! Sending a batch to a subscription's target: an HTTP(S) endpoint (one signed POST per batch) or
//! an SQS queue (one message per event, sent ten at a time).

use std::time::Duration;

use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use serde_json::{Value, json};
use uuid::Uuid;

use super::signature;
use crate::store::deliveries::FailedDelivery;
use crate::store::events::Event;

/// The version of the event envelope (`schema_version`); see docs/events.md.
pub const SCHEMA_VERSION: u32 = 1;

/// How much of a failed response's body is kept with its dead letters.
const RESPONSE_KEPT: usize = 2048;

/// What came of one delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    Delivered,
    Failed {
        failure: FailedDelivery,
        /// The wait the receiver asked for (`Retry-After`).
        retry_after: Option<Duration>,
        /// The endpoint answered 410 Gone: it wants no more deliveries.
        gone: bool,
    },
}

impl Sent {
    fn failed(error: String) -> Self {
        Self::Failed {
            failure: FailedDelivery {
                status: None,
                response: None,
                error,
            },
            retry_after: None,
            gone: false,
        }
    }
}

/// An event as delivered (schema version 1).
pub fn envelope(event: &Event) -> Value {
    json!({
        "id": event.id,
        "seq": event.seq,
        "type": event.event_type,
        "schema_version": SCHEMA_VERSION,
        "tenant_id": event.tenant_id,
        "platform": event.platform,
        "integration_id": event.integration_id,
        "channel": event.channel,
        "created_at": event.created_at,
        "data": event.data,
    })
}

/// The `webhook-id` of a batch: the event's id for one event, else the subscription and the seq
/// range (the same batch delivered again has the same id).
pub fn message_id(subscription_id: Uuid, events: &[Event]) -> String {
    match events {
        [one] => format!("evt_{}", one.id.simple()),
        _ => {
            let first = events.first().map_or(0, |e| e.seq);
            let last = events.last().map_or(0, |e| e.seq);
            format!("batch_{}_{first}_{last}", subscription_id.simple())
        }
    }
}

/// The JSON body of a webhook delivery.
pub fn webhook_body(subscription_id: Uuid, events: &[Event]) -> Vec<u8> {
    let body = json!({
        "subscription_id": subscription_id,
        "events": events.iter().map(envelope).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// POSTs the batch, signed with every secret given.
pub async fn post_webhook(
    client: &reqwest::Client,
    url: &str,
    secrets: &[String],
    subscription_id: Uuid,
    events: &[Event],
) -> Sent {
    let id = message_id(subscription_id, events);
    let body = webhook_body(subscription_id, events);
    let now = crate::clock::now();
    let timestamp = now.timestamp();
    let signature = match signature::sign(secrets, &id, timestamp, &body) {
        Ok(s) => s,
        Err(e) => return Sent::failed(format!("cannot sign: {e}")),
    };
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return Sent::failed("the endpoint did not answer in time".into());
        }
        Err(e) => {
            return Sent::failed(format!("cannot reach the endpoint: {}", e.without_url()));
        }
    };
    let status = response.status();
    if status.is_success() {
        return Sent::Delivered;
    }
    let retry_after = crate::http::retry_after(response.headers(), crate::clock::now());
    let text = response.text().await.unwrap_or_default();
    let kept: String = text.chars().take(RESPONSE_KEPT).collect();
    Sent::Failed {
        failure: FailedDelivery {
            status: Some(i32::from(status.as_u16())),
            response: Some(kept),
            error: format!("the endpoint answered {status}"),
        },
        retry_after,
        gone: status == reqwest::StatusCode::GONE,
    }
}

/// Sends each event as one SQS message (body: its envelope; attributes: id, type, seq).
pub async fn send_sqs(client: &aws_sdk_sqs::Client, queue_url: &str, events: &[Event]) -> Sent {
    for chunk in events.chunks(10) {
        let mut entries = Vec::with_capacity(chunk.len());
        for (i, event) in chunk.iter().enumerate() {
            match entry(i, event) {
                Ok(e) => entries.push(e),
                Err(e) => return Sent::failed(format!("cannot build an SQS message: {e}")),
            }
        }
        let sent = client
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        match sent {
            Ok(out) if out.failed().is_empty() => {}
            Ok(out) => {
                let reasons: Vec<String> = out
                    .failed()
                    .iter()
                    .map(|f| format!("{}: {}", f.code(), f.message().unwrap_or("")))
                    .collect();
                return Sent::failed(format!("SQS refused messages: {}", reasons.join("; ")));
            }
            Err(e) => {
                return Sent::failed(format!(
                    "cannot send to SQS: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                ));
            }
        }
    }
    Sent::Delivered
}

fn entry(
    i: usize,
    event: &Event,
) -> Result<SendMessageBatchRequestEntry, aws_sdk_sqs::error::BuildError> {
    let attribute = |value: String| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
    };
    SendMessageBatchRequestEntry::builder()
        .id(i.to_string())
        .message_body(envelope(event).to_string())
        .message_attributes("event_id", attribute(event.id.to_string())?)
        .message_attributes("event_type", attribute(event.event_type.clone())?)
        .message_attributes("seq", attribute(event.seq.to_string())?)
        .build()
}
