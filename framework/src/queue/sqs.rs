//! The `sqs` queue backend: Amazon SQS (or a compatible server such as moto) through
//! aws-sdk-sqs. Redrive after too many receives is the queue's own RedrivePolicy; a message a
//! worker dead-letters itself is copied to the dead-letter queue with its reason in the
//! `tributary-reason` message attribute, then deleted.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use tokio::task::JoinSet;

use super::sqs_dead_letter::{MAX_MESSAGE_BYTES, fit_dead_letter};
use super::sqs_errors::{backend_error, build_error};
use super::{
    DeadLetter, MAX_BATCH, OutgoingMessage, Queue, QueueError, QueueStats, Receipt, ReceiveRequest,
    ReceivedMessage, check_batch, check_delay, check_receive, check_visibility, whole_seconds,
};

/// The message attribute that carries a dead letter's reason.
pub const REASON_ATTRIBUTE: &str = "tributary-reason";
/// The message attribute that carries the id the message had in the main queue.
pub const SOURCE_ID_ATTRIBUTE: &str = "tributary-source-message-id";
/// The message attribute that carries how often the message was received before.
pub const RECEIVE_COUNT_ATTRIBUTE: &str = "tributary-receive-count";

/// Batches of a `send_batch` sent at once.
const SEND_CONCURRENCY: usize = 8;

/// The `sqs` backend.
#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    dead_letter_url: String,
}

impl std::fmt::Debug for SqsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsQueue")
            .field("url", &self.url)
            .field("dead_letter_url", &self.dead_letter_url)
            .finish()
    }
}

/// How [`SqsQueue::create`] makes a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsQueueSettings {
    /// Receives before SQS moves a message to the dead-letter queue (RedrivePolicy
    /// `maxReceiveCount`).
    pub max_receives: u32,
    /// The queue's default visibility timeout (receives here always name their own).
    pub visibility: Duration,
}

impl Default for SqsQueueSettings {
    fn default() -> Self {
        Self {
            max_receives: super::DEFAULT_MAX_RECEIVES,
            visibility: Duration::from_secs(60),
        }
    }
}

fn string_attribute(value: &str) -> Result<MessageAttributeValue, QueueError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| build_error("building a message attribute", e))
}

/// The HTTP(S) client of the SQS SDK: hyper with rustls on ring (one TLS stack for the build).
pub(crate) fn https_client() -> aws_sdk_sqs::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

impl SqsQueue {
    /// An SQS client configured from the standard AWS variables (`AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, credentials, profiles), with an HTTPS client on rustls + ring.
    pub async fn client_from_env() -> Client {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(https_client())
            .load()
            .await;
        Client::new(&config)
    }

    /// Uses the existing queue at `url` (asking it for its attributes: an unreachable queue is a
    /// [`QueueError::Unreachable`] here, not at the first receive). Its dead-letter queue is
    /// `dead_letter_url`, or else the target of its RedrivePolicy; a queue with neither is
    /// refused, since bad messages must have somewhere to go.
    pub async fn connect(
        client: Client,
        url: String,
        dead_letter_url: Option<String>,
    ) -> Result<Self, QueueError> {
        let dead_letter_url = match dead_letter_url {
            Some(dead_letter_url) => {
                // one request, so that a queue that cannot be reached (or used) shows at once
                client
                    .get_queue_attributes()
                    .queue_url(&url)
                    .attribute_names(QueueAttributeName::QueueArn)
                    .send()
                    .await
                    .map_err(|e| backend_error("get queue attributes", &e))?;
                dead_letter_url
            }
            None => Self::redrive_target(&client, &url).await?.ok_or_else(|| {
                QueueError::Config(format!(
                    "the SQS queue {url} has no dead-letter queue: give it a RedrivePolicy or set \
                     TRIBUTARY_SQS_DEAD_LETTER_QUEUE_URL"
                ))
            })?,
        };
        Ok(Self {
            client,
            url,
            dead_letter_url,
        })
    }

    /// Creates (or finds, if it exists with the same attributes) the queue `name` and its
    /// dead-letter queue `name-dlq`, with a RedrivePolicy of `settings.max_receives`.
    pub async fn create(
        client: Client,
        name: &str,
        settings: &SqsQueueSettings,
    ) -> Result<Self, QueueError> {
        let dead_letter_url = client
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
            .send()
            .await
            .map_err(|e| backend_error("create dead-letter queue", &e))?
            .queue_url
            .ok_or_else(|| build_error("create dead-letter queue", "no queue URL returned"))?;
        let dead_letter_arn = client
            .get_queue_attributes()
            .queue_url(&dead_letter_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| backend_error("get dead-letter queue ARN", &e))?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| build_error("get dead-letter queue ARN", "no QueueArn returned"))?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dead_letter_arn,
            "maxReceiveCount": settings.max_receives.to_string(),
        });
        let url = client
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                whole_seconds(settings.visibility).to_string(),
            )
            .send()
            .await
            .map_err(|e| backend_error("create queue", &e))?
            .queue_url
            .ok_or_else(|| build_error("create queue", "no queue URL returned"))?;
        Ok(Self {
            client,
            url,
            dead_letter_url,
        })
    }

    /// The dead-letter queue's largest message (its `MaximumMessageSize`; SQS's 256 KiB if it
    /// cannot be read).
    async fn dead_letter_limit(&self) -> usize {
        self.client
            .get_queue_attributes()
            .queue_url(&self.dead_letter_url)
            .attribute_names(QueueAttributeName::MaximumMessageSize)
            .send()
            .await
            .ok()
            .and_then(|o| o.attributes)
            .and_then(|a| a.get(&QueueAttributeName::MaximumMessageSize).cloned())
            .and_then(|v| v.parse().ok())
            .unwrap_or(MAX_MESSAGE_BYTES)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn dead_letter_url(&self) -> &str {
        &self.dead_letter_url
    }

    /// The URL of the dead-letter queue the RedrivePolicy of `url` names, if any.
    async fn redrive_target(client: &Client, url: &str) -> Result<Option<String>, QueueError> {
        let attributes = client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| backend_error("get queue attributes", &e))?
            .attributes
            .unwrap_or_default();
        let Some(policy) = attributes.get(&QueueAttributeName::RedrivePolicy) else {
            return Ok(None);
        };
        let policy: serde_json::Value = serde_json::from_str(policy)
            .map_err(|e| build_error("reading the RedrivePolicy", e))?;
        let Some(arn) = policy.get("deadLetterTargetArn").and_then(|a| a.as_str()) else {
            return Ok(None);
        };
        // arn:aws:sqs:REGION:ACCOUNT:NAME
        let mut parts = arn.rsplit(':');
        let (Some(name), Some(account)) = (parts.next(), parts.next()) else {
            return Err(build_error(
                "reading the RedrivePolicy",
                format!("`{arn}` is not an SQS queue ARN"),
            ));
        };
        let url = client
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(|e| backend_error("get dead-letter queue URL", &e))?
            .queue_url;
        Ok(url)
    }

    async fn send_chunk(
        client: Client,
        url: String,
        chunk: Vec<OutgoingMessage>,
    ) -> Result<usize, QueueError> {
        let total = chunk.len();
        let entries = chunk
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(m.body)
                    .delay_seconds(whole_seconds(m.delay))
                    .build()
                    .map_err(|e| build_error("building a batch entry", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| backend_error("send message batch", &e))?;
        match output.failed().first() {
            None => Ok(total),
            Some(first) => Err(QueueError::PartialBatch {
                operation: "send",
                failed: output.failed().len(),
                total,
                detail: format!("{}: {}", first.code(), first.message().unwrap_or_default()),
            }),
        }
    }
}

#[async_trait]
impl Queue for SqsQueue {
    fn backend(&self) -> &'static str {
        "sqs"
    }

    fn describe(&self) -> String {
        format!("sqs queue {}", self.url)
    }

    async fn send(&self, message: OutgoingMessage) -> Result<String, QueueError> {
        check_delay(message.delay)?;
        let output = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(message.body)
            .delay_seconds(whole_seconds(message.delay))
            .send()
            .await
            .map_err(|e| backend_error("send message", &e))?;
        Ok(output.message_id.unwrap_or_default())
    }

    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Result<usize, QueueError> {
        for message in &messages {
            check_delay(message.delay)?;
        }
        let mut chunks = Vec::with_capacity(messages.len().div_ceil(MAX_BATCH));
        let mut rest = messages.into_iter().peekable();
        while rest.peek().is_some() {
            chunks.push(rest.by_ref().take(MAX_BATCH).collect::<Vec<_>>());
        }
        let mut sent = 0;
        let mut first_error = None;
        let mut in_flight = JoinSet::new();
        let mut chunks = chunks.into_iter();
        loop {
            while in_flight.len() < SEND_CONCURRENCY {
                let Some(chunk) = chunks.next() else { break };
                in_flight.spawn(Self::send_chunk(
                    self.client.clone(),
                    self.url.clone(),
                    chunk,
                ));
            }
            let Some(joined) = in_flight.join_next().await else {
                break;
            };
            match joined {
                Ok(Ok(n)) => sent += n,
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(build_error("send message batch", e));
                }
            }
        }
        match first_error {
            None => Ok(sent),
            Some(e) => Err(e),
        }
    }

    async fn receive(&self, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>, QueueError> {
        check_receive(&request)?;
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(i32::try_from(request.max_messages).unwrap_or(1))
            .wait_time_seconds(whole_seconds(request.wait))
            .visibility_timeout(whole_seconds(request.visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| backend_error("receive message", &e))?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Some(ReceivedMessage {
                    id: m.message_id?,
                    body: m.body.unwrap_or_default(),
                    receipt: Receipt(m.receipt_handle?),
                    receive_count,
                })
            })
            .collect())
    }

    async fn extend_visibility(
        &self,
        receipt: &Receipt,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        check_visibility(visibility)?;
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&receipt.0)
            .visibility_timeout(whole_seconds(visibility))
            .send()
            .await
            .map_err(|e| backend_error("change message visibility", &e))?;
        Ok(())
    }

    async fn delete(&self, receipt: &Receipt) -> Result<(), QueueError> {
        match self
            .client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(&receipt.0)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match backend_error("delete message", &e) {
                // already gone
                QueueError::ReceiptInvalid => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn delete_batch(&self, receipts: &[Receipt]) -> Result<(), QueueError> {
        check_batch("delete", receipts.len())?;
        let entries = receipts
            .iter()
            .enumerate()
            .map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&r.0)
                    .build()
                    .map_err(|e| build_error("building a batch entry", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| backend_error("delete message batch", &e))?;
        let failed: Vec<_> = output
            .failed()
            .iter()
            .filter(|f| !f.code().contains("ReceiptHandleIsInvalid"))
            .collect();
        match failed.first() {
            None => Ok(()),
            Some(first) => Err(QueueError::PartialBatch {
                operation: "delete",
                failed: failed.len(),
                total: receipts.len(),
                detail: format!("{}: {}", first.code(), first.message().unwrap_or_default()),
            }),
        }
    }

    async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) -> Result<(), QueueError> {
        // the reason always goes with the message: a body too large for the dead-letter queue
        // beside it is cut (and the reason says so), never left for the redrive to move bare
        let limit = self.dead_letter_limit().await;
        let (body, reason) = fit_dead_letter(&message.body, reason, limit);
        let attributes = HashMap::from([
            (REASON_ATTRIBUTE.to_owned(), string_attribute(&reason)?),
            (
                SOURCE_ID_ATTRIBUTE.to_owned(),
                string_attribute(&message.id)?,
            ),
            (
                RECEIVE_COUNT_ATTRIBUTE.to_owned(),
                MessageAttributeValue::builder()
                    .data_type("Number")
                    .string_value(message.receive_count.to_string())
                    .build()
                    .map_err(|e| build_error("building a message attribute", e))?,
            ),
        ]);
        // a copy first, then the delete: a crash between them leaves a duplicate dead letter,
        // never a lost message
        let body = if body.is_empty() {
            // SQS refuses empty bodies; the reason says the body was empty
            " ".to_owned()
        } else {
            body.to_owned()
        };
        self.client
            .send_message()
            .queue_url(&self.dead_letter_url)
            .message_body(body)
            .set_message_attributes(Some(attributes))
            .send()
            .await
            .map_err(|e| backend_error("send to the dead-letter queue", &e))?;
        self.delete(&message.receipt).await
    }

    async fn peek_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let mut found: Vec<DeadLetter> = Vec::new();
        // a receive may return fewer than are there: look until one brings nothing new
        while found.len() < max {
            let output = self
                .client
                .receive_message()
                .queue_url(&self.dead_letter_url)
                .max_number_of_messages(i32::try_from(max.min(MAX_BATCH)).unwrap_or(1))
                .visibility_timeout(0)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| backend_error("receive from the dead-letter queue", &e))?;
            let mut new = 0;
            for m in output.messages.unwrap_or_default() {
                let Some(id) = m.message_id.clone() else {
                    continue;
                };
                if found.iter().any(|d| d.id == id) || found.len() >= max {
                    continue;
                }
                let attribute = |name: &str| {
                    m.message_attributes()
                        .and_then(|a| a.get(name))
                        .and_then(|v| v.string_value())
                        .map(str::to_owned)
                };
                // set by `dead_letter`; SQS's redrive does not say
                let receive_count = attribute(RECEIVE_COUNT_ATTRIBUTE).and_then(|c| c.parse().ok());
                found.push(DeadLetter {
                    id,
                    body: m.body.clone().unwrap_or_default(),
                    reason: attribute(REASON_ATTRIBUTE),
                    receive_count,
                    dead_lettered_at: None,
                });
                new += 1;
            }
            if new == 0 {
                break;
            }
        }
        Ok(found)
    }

    async fn redrive_dead_letter(&self, id: &str) -> Result<bool, QueueError> {
        let Some((body, receipt)) = self.take_dead_letter(id).await? else {
            return Ok(false);
        };
        // the copy first, then the delete: a crash between them sends it twice (a duplicate is
        // a no-op for the workers), never loses it
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| backend_error("send a redriven dead letter", &e))?;
        self.delete_dead_letter(&receipt).await?;
        Ok(true)
    }

    async fn discard_dead_letter(&self, id: &str) -> Result<bool, QueueError> {
        let Some((_, receipt)) = self.take_dead_letter(id).await? else {
            return Ok(false);
        };
        self.delete_dead_letter(&receipt).await?;
        Ok(true)
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let main = self.counts(&self.url).await?;
        let dead = self.counts(&self.dead_letter_url).await?;
        Ok(QueueStats {
            visible: main.0,
            in_flight: main.1,
            delayed: main.2,
            oldest_age: None,
            dead_letters: dead.0 + dead.1 + dead.2,
        })
    }
}

impl SqsQueue {
    /// Receives the dead-letter queue until the message `id` comes (hidden for a minute, its body
    /// and receipt returned); every other message received is made visible again at once.
    async fn take_dead_letter(&self, id: &str) -> Result<Option<(String, String)>, QueueError> {
        const ROUNDS: usize = 20;
        for _ in 0..ROUNDS {
            let output = self
                .client
                .receive_message()
                .queue_url(&self.dead_letter_url)
                .max_number_of_messages(i32::try_from(MAX_BATCH).unwrap_or(10))
                .visibility_timeout(60)
                .send()
                .await
                .map_err(|e| backend_error("receive from the dead-letter queue", &e))?;
            let messages = output.messages.unwrap_or_default();
            if messages.is_empty() {
                return Ok(None);
            }
            let mut found = None;
            for m in messages {
                let Some(receipt) = m.receipt_handle.clone() else {
                    continue;
                };
                if found.is_none() && m.message_id.as_deref() == Some(id) {
                    found = Some((m.body.clone().unwrap_or_default(), receipt));
                } else {
                    self.client
                        .change_message_visibility()
                        .queue_url(&self.dead_letter_url)
                        .receipt_handle(receipt)
                        .visibility_timeout(0)
                        .send()
                        .await
                        .map_err(|e| backend_error("release a dead letter", &e))?;
                }
            }
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    async fn delete_dead_letter(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.dead_letter_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| backend_error("delete a dead letter", &e))?;
        Ok(())
    }

    /// (visible, in flight, delayed), approximately.
    async fn counts(&self, url: &str) -> Result<(u64, u64, u64), QueueError> {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| backend_error("get queue attributes", &e))?
            .attributes
            .unwrap_or_default();
        let get = |name: QueueAttributeName| {
            attributes
                .get(&name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok((
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        ))
    }
}
