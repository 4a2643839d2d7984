//! The `postgres` queue backend: SQS semantics in the `queue_messages` and `queue_dead_letters`
//! tables. Receivers take messages with `FOR UPDATE SKIP LOCKED` and, when there are none, sleep
//! until a `NOTIFY` says one was sent or until the next one becomes visible (a delayed send, an
//! expired visibility timeout): no tight polling.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{OnceCell, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

use super::{
    DeadLetter, OutgoingMessage, Queue, QueueError, QueueStats, Receipt, ReceiveRequest,
    ReceivedMessage, check_batch, check_delay, check_receive, check_visibility,
};

/// The channel every send notifies, with the queue's name as payload.
const CHANNEL: &str = "tributary_queue";
/// A receiver re-checks at least this often, in case a notification was lost (the listening
/// connection was re-established, say).
const MAX_IDLE: Duration = Duration::from_secs(5);
/// Rows per INSERT of a `send_batch`.
const SEND_CHUNK: usize = 5_000;
/// Messages redriven to the dead letters per receive, at most.
const REDRIVE_CHUNK: i64 = 100;
/// A receive redrives at most this often (a message past its receives is never delivered again,
/// so it waits at most this long to show in the dead letters): one statement per receive fewer.
const REDRIVE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgQueueConfig {
    /// Several queues may share the tables; each has a name.
    pub name: String,
    /// A message received this many times without being deleted is dead-lettered instead of
    /// being delivered again.
    pub max_receives: u32,
}

impl Default for PgQueueConfig {
    fn default() -> Self {
        Self {
            name: super::DEFAULT_PG_QUEUE.to_owned(),
            max_receives: super::DEFAULT_MAX_RECEIVES,
        }
    }
}

/// The `postgres` backend.
pub struct PgQueue {
    pool: PgPool,
    config: PgQueueConfig,
    /// Started by the first receive; aborted when the queue is dropped.
    listener: OnceCell<Listener>,
    /// When a receive last redrove.
    redriven_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl std::fmt::Debug for PgQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgQueue")
            .field("name", &self.config.name)
            .field("max_receives", &self.config.max_receives)
            .finish()
    }
}

/// The task that listens on [`CHANNEL`] and bumps a counter for each notification about this
/// queue; receivers wait for the counter to change.
struct Listener {
    wakeups: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: Uuid,
    body: String,
    receipt: Option<Uuid>,
    receive_count: i32,
}

impl PgQueue {
    pub fn new(pool: PgPool, config: PgQueueConfig) -> Self {
        Self {
            pool,
            config,
            listener: OnceCell::new(),
            redriven_at: std::sync::Mutex::new(None),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    async fn wakeups(&self) -> Result<watch::Receiver<u64>, QueueError> {
        let listener = self
            .listener
            .get_or_try_init(|| async {
                let mut pg = PgListener::connect_with(&self.pool).await?;
                pg.listen(CHANNEL).await?;
                let (tx, rx) = watch::channel(0u64);
                let name = self.config.name.clone();
                let span = tracing::debug_span!("queue_listener", queue = %name);
                let task = tokio::spawn(listen(pg, name, tx).instrument(span));
                Ok::<_, QueueError>(Listener { wakeups: rx, task })
            })
            .await?;
        Ok(listener.wakeups.clone())
    }

    /// Whether this receive redrives (at most every [`REDRIVE_EVERY`]).
    fn redrive_due(&self) -> bool {
        let Ok(mut last) = self.redriven_at.lock() else {
            return true;
        };
        let now = std::time::Instant::now();
        match *last {
            Some(at) if now.duration_since(at) < REDRIVE_EVERY => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }

    /// Moves messages received `max_receives` times, and visible again, to the dead letters.
    async fn redrive(&self) -> Result<u64, QueueError> {
        let max = i32::try_from(self.config.max_receives).unwrap_or(i32::MAX);
        let done = sqlx::query(
            "WITH dead AS (
                 DELETE FROM queue_messages WHERE id IN (
                     SELECT id FROM queue_messages
                     WHERE queue = $1 AND visible_at <= now() AND receive_count >= $2
                     ORDER BY visible_at LIMIT $3
                     FOR UPDATE SKIP LOCKED)
                 RETURNING *)
             INSERT INTO queue_dead_letters (id, queue, body, reason, receive_count, sent_at)
             SELECT id, queue, body,
                    'received ' || receive_count || ' times without being deleted (max receives: '
                        || $2 || ')',
                    receive_count, sent_at
             FROM dead",
        )
        .bind(&self.config.name)
        .bind(max)
        .bind(REDRIVE_CHUNK)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Takes up to `request.max_messages` visible messages, deleting the messages of `deleting`
    /// (ids and receipt tokens) in the same statement (none of them is taken).
    async fn try_receive(
        &self,
        request: &ReceiveRequest,
        deleting: &Deleting,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        if self.redrive_due() {
            self.redrive().await?;
        }
        let rows: Vec<MessageRow> = sqlx::query_as(
            "WITH gone AS (
                 DELETE FROM queue_messages m
                 USING unnest($5::uuid[], $6::uuid[]) AS r(id, receipt)
                 WHERE m.id = r.id AND m.receipt = r.receipt
             )
             UPDATE queue_messages m SET
                 receive_count = m.receive_count + 1,
                 visible_at = now() + make_interval(secs => $3),
                 receipt = gen_random_uuid(),
                 first_received_at = coalesce(m.first_received_at, now())
             FROM (SELECT id FROM queue_messages
                   WHERE queue = $1 AND visible_at <= now() AND receive_count < $4
                     AND id <> ALL($5::uuid[])
                   ORDER BY visible_at, id LIMIT $2
                   FOR UPDATE SKIP LOCKED) picked
             WHERE m.id = picked.id
             RETURNING m.id, m.body, m.receipt, m.receive_count",
        )
        .bind(&self.config.name)
        .bind(i64::try_from(request.max_messages).unwrap_or(1))
        .bind(request.visibility.as_secs_f64())
        .bind(i32::try_from(self.config.max_receives).unwrap_or(i32::MAX))
        .bind(&deleting.ids)
        .bind(&deleting.tokens)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| ReceivedMessage {
                id: row.id.to_string(),
                body: row.body,
                receipt: Receipt(format!(
                    "{}:{}",
                    row.id,
                    row.receipt.unwrap_or_else(Uuid::nil)
                )),
                receive_count: u32::try_from(row.receive_count).unwrap_or(0),
            })
            .collect())
    }

    /// How long until the next message of this queue becomes visible (`None`: the queue is empty).
    async fn next_visible_in(&self) -> Result<Option<Duration>, QueueError> {
        let secs: Option<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM min(visible_at) - now())::float8
             FROM queue_messages WHERE queue = $1",
        )
        .bind(&self.config.name)
        .fetch_one(&self.pool)
        .await?;
        Ok(secs.map(|s| Duration::from_secs_f64(s.max(0.0))))
    }
}

/// Messages to delete, as ids and receipt tokens.
#[derive(Default)]
struct Deleting {
    ids: Vec<Uuid>,
    tokens: Vec<Uuid>,
}

impl Deleting {
    fn of(receipts: &[Receipt]) -> Result<Self, QueueError> {
        let mut deleting = Self::default();
        for receipt in receipts {
            let (id, token) = parse_receipt(receipt)?;
            deleting.ids.push(id);
            deleting.tokens.push(token);
        }
        Ok(deleting)
    }
}

fn parse_receipt(receipt: &Receipt) -> Result<(Uuid, Uuid), QueueError> {
    let (id, token) = receipt
        .0
        .split_once(':')
        .ok_or(QueueError::ReceiptInvalid)?;
    Ok((
        id.parse().map_err(|_| QueueError::ReceiptInvalid)?,
        token.parse().map_err(|_| QueueError::ReceiptInvalid)?,
    ))
}

async fn listen(mut pg: PgListener, name: String, wakeups: watch::Sender<u64>) {
    loop {
        match pg.try_recv().await {
            Ok(Some(notification)) => {
                if notification.payload() == name {
                    wakeups.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
            // the connection was lost and is re-established at the next call: notifications sent
            // meanwhile are lost, so wake every receiver to look for itself
            Ok(None) => {
                tracing::debug!("queue listener reconnecting");
                wakeups.send_modify(|n| *n = n.wrapping_add(1));
            }
            Err(e) => {
                tracing::warn!(error = %crate::error::ErrorChain(&e), "queue listener failed; retrying in 1 s");
                wakeups.send_modify(|n| *n = n.wrapping_add(1));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        if wakeups.is_closed() {
            return;
        }
    }
}

#[async_trait]
impl Queue for PgQueue {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn describe(&self) -> String {
        format!("postgres queue `{}`", self.config.name)
    }

    async fn send(&self, message: OutgoingMessage) -> Result<String, QueueError> {
        check_delay(message.delay)?;
        let id = Uuid::new_v4();
        sqlx::query(
            "WITH sent AS (
                 INSERT INTO queue_messages (id, queue, body, visible_at)
                 VALUES ($1, $2, $3, now() + make_interval(secs => $4)))
             SELECT pg_notify($5, $2)",
        )
        .bind(id)
        .bind(&self.config.name)
        .bind(&message.body)
        .bind(message.delay.as_secs_f64())
        .bind(CHANNEL)
        .execute(&self.pool)
        .await?;
        Ok(id.to_string())
    }

    async fn send_batch(&self, messages: Vec<OutgoingMessage>) -> Result<usize, QueueError> {
        for message in &messages {
            check_delay(message.delay)?;
        }
        let mut sent = 0;
        for chunk in messages.chunks(SEND_CHUNK) {
            let ids: Vec<Uuid> = chunk.iter().map(|_| Uuid::new_v4()).collect();
            let bodies: Vec<&str> = chunk.iter().map(|m| m.body.as_str()).collect();
            let delays: Vec<f64> = chunk.iter().map(|m| m.delay.as_secs_f64()).collect();
            sqlx::query(
                "WITH sent AS (
                     INSERT INTO queue_messages (id, queue, body, visible_at)
                     SELECT id, $2, body, now() + make_interval(secs => delay)
                     FROM unnest($1::uuid[], $3::text[], $4::float8[]) AS m(id, body, delay))
                 SELECT pg_notify($5, $2)",
            )
            .bind(&ids)
            .bind(&self.config.name)
            .bind(&bodies)
            .bind(&delays)
            .bind(CHANNEL)
            .execute(&self.pool)
            .await?;
            sent += chunk.len();
        }
        Ok(sent)
    }

    async fn receive(&self, request: ReceiveRequest) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.receive_after_deleting(request, &[]).await
    }

    fn deletes_with_receive(&self) -> bool {
        true
    }

    /// The deletes ride on the first look for messages: one statement.
    async fn receive_after_deleting(
        &self,
        request: ReceiveRequest,
        receipts: &[Receipt],
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        check_receive(&request)?;
        let mut deleting = Deleting::of(receipts)?;
        let deadline = tokio::time::Instant::now() + request.wait;
        let mut wakeups = if request.wait.is_zero() {
            None
        } else {
            Some(self.wakeups().await?)
        };
        loop {
            // seen before looking, so that a send between the look and the wait still wakes us
            if let Some(w) = wakeups.as_mut() {
                w.mark_unchanged();
            }
            let messages = self.try_receive(&request, &deleting).await?;
            deleting = Deleting::default();
            let now = tokio::time::Instant::now();
            if !messages.is_empty() || now >= deadline {
                return Ok(messages);
            }
            let Some(w) = wakeups.as_mut() else {
                return Ok(messages);
            };
            let mut nap = (deadline - now).min(MAX_IDLE);
            if let Some(next) = self.next_visible_in().await? {
                nap = nap.min(next.max(Duration::from_millis(5)));
            }
            tokio::select! {
                changed = w.changed() => {
                    if changed.is_err() {
                        // the listener is gone (the queue is being dropped): fall back to naps
                        wakeups = None;
                        tokio::time::sleep(nap).await;
                    }
                }
                () = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn extend_visibility(
        &self,
        receipt: &Receipt,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        check_visibility(visibility)?;
        let (id, token) = parse_receipt(receipt)?;
        let done = sqlx::query(
            "UPDATE queue_messages SET visible_at = now() + make_interval(secs => $3)
             WHERE id = $1 AND receipt = $2",
        )
        .bind(id)
        .bind(token)
        .bind(visibility.as_secs_f64())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(QueueError::ReceiptInvalid)
        }
    }

    async fn delete(&self, receipt: &Receipt) -> Result<(), QueueError> {
        self.delete_batch(std::slice::from_ref(receipt)).await
    }

    async fn delete_batch(&self, receipts: &[Receipt]) -> Result<(), QueueError> {
        check_batch("delete", receipts.len())?;
        let Deleting { ids, tokens } = Deleting::of(receipts)?;
        // a receipt that no longer holds its message (received again since) deletes nothing
        sqlx::query(
            "DELETE FROM queue_messages m USING unnest($1::uuid[], $2::uuid[]) AS r(id, receipt)
             WHERE m.id = r.id AND m.receipt = r.receipt",
        )
        .bind(&ids)
        .bind(&tokens)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn dead_letter(&self, message: &ReceivedMessage, reason: &str) -> Result<(), QueueError> {
        let (id, token) = parse_receipt(&message.receipt)?;
        let done = sqlx::query(
            "WITH dead AS (DELETE FROM queue_messages WHERE id = $1 AND receipt = $2 RETURNING *)
             INSERT INTO queue_dead_letters (id, queue, body, reason, receive_count, sent_at)
             SELECT id, queue, body, $3, receive_count, sent_at FROM dead",
        )
        .bind(id)
        .bind(token)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(QueueError::ReceiptInvalid)
        }
    }

    async fn peek_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        self.redrive().await?;
        let rows: Vec<(Uuid, String, String, i32, DateTime<Utc>)> = sqlx::query_as(
            "SELECT id, body, reason, receive_count, dead_lettered_at FROM queue_dead_letters
             WHERE queue = $1 ORDER BY dead_lettered_at, id LIMIT $2",
        )
        .bind(&self.config.name)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, body, reason, count, at)| DeadLetter {
                id: id.to_string(),
                body,
                reason: Some(reason),
                receive_count: u32::try_from(count).ok(),
                dead_lettered_at: Some(at),
            })
            .collect())
    }

    async fn redrive_dead_letter(&self, id: &str) -> Result<bool, QueueError> {
        let Ok(id) = Uuid::parse_str(id) else {
            return Ok(false);
        };
        // one statement: the message is either a dead letter or in the queue, never both or
        // neither; it keeps its id, and its receive count starts again
        let moved = sqlx::query(
            "WITH dead AS (DELETE FROM queue_dead_letters WHERE id = $1 AND queue = $2 RETURNING *)
             INSERT INTO queue_messages (id, queue, body, sent_at, visible_at)
             SELECT id, queue, body, sent_at, now() FROM dead",
        )
        .bind(id)
        .bind(&self.config.name)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if moved == 1 {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(&self.config.name)
                .execute(&self.pool)
                .await?;
        }
        Ok(moved == 1)
    }

    async fn discard_dead_letter(&self, id: &str) -> Result<bool, QueueError> {
        let Ok(id) = Uuid::parse_str(id) else {
            return Ok(false);
        };
        let deleted = sqlx::query("DELETE FROM queue_dead_letters WHERE id = $1 AND queue = $2")
            .bind(id)
            .bind(&self.config.name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted == 1)
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let (visible, in_flight, delayed, oldest_secs, dead): (i64, i64, i64, Option<f64>, i64) =
            sqlx::query_as(
                "SELECT count(*) FILTER (WHERE visible_at <= now()),
                        count(*) FILTER (WHERE visible_at > now() AND receipt IS NOT NULL),
                        count(*) FILTER (WHERE visible_at > now() AND receipt IS NULL),
                        extract(epoch FROM now() - min(sent_at) FILTER (WHERE visible_at <= now()
                            OR receipt IS NOT NULL))::float8,
                        (SELECT count(*) FROM queue_dead_letters WHERE queue = $1)
                 FROM queue_messages WHERE queue = $1",
            )
            .bind(&self.config.name)
            .fetch_one(&self.pool)
            .await?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(QueueStats {
            visible: count(visible),
            in_flight: count(in_flight),
            delayed: count(delayed),
            oldest_age: oldest_secs.and_then(|s| Duration::try_from_secs_f64(s.max(0.0)).ok()),
            dead_letters: count(dead),
        })
    }
}
