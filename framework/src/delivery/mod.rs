//! Delivery of the outbox's events to subscriptions (issue 13).
//!
//! A [`Dispatcher`] numbers committed events ([`crate::store::events::sequence`]), claims
//! subscriptions that have work with a lease (`FOR UPDATE SKIP LOCKED`: several dispatchers share
//! the subscriptions, each batch is delivered by one), reads each one's next batch past its
//! cursor, sends it ([`targets`]) and moves the cursor only once the target accepted it. A
//! dispatcher that dies mid-batch leaves its lease to expire; the batch is delivered again by the
//! next holder (at least once, in order per subscription).
//!
//! Failures are retried on a [`RetrySchedule`] with jitter, never sooner than the receiver's
//! `Retry-After`; a batch that exhausts it goes to the subscription's dead letters with the last
//! answer; a subscription failing for longer than `pause_after`, or whose endpoint answers 410, is
//! paused.

pub mod signature;
pub mod targets;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::store::StoreError;
use crate::store::deliveries::{self, AfterFailure, FailedDelivery};
use crate::store::events::{self, Event};
use crate::store::subscriptions::{self, Subscription};
use targets::Sent;

/// The waits before each retry of a failed batch; after the last one fails, the batch is
/// dead-lettered.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    waits: Vec<Duration>,
    /// Each wait is drawn from ±this fraction of it.
    jitter: f64,
}

impl RetrySchedule {
    pub fn new(waits: Vec<Duration>, jitter: f64) -> Self {
        Self {
            waits,
            jitter: jitter.clamp(0.0, 1.0),
        }
    }

    /// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, each ±20 %: seven attempts over about 18 hours.
    pub fn standard() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        Self::new(
            vec![
                Duration::from_secs(5),
                minutes(5),
                minutes(30),
                minutes(120),
                minutes(300),
                minutes(600),
            ],
            0.2,
        )
    }

    /// Parses `5s,5m,30m,2h` (units s, m, h, ms).
    pub fn parse(text: &str, jitter: f64) -> Result<Self, String> {
        let waits = text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(parse_duration)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(waits, jitter))
    }

    /// The wait after the `failures`-th failure in a row, or `None` when retries are exhausted.
    pub fn after(&self, failures: u32) -> Option<Duration> {
        let base = *self
            .waits
            .get(usize::try_from(failures).ok()?.checked_sub(1)?)?;
        let spread = (fastrand::f64() * 2.0 - 1.0) * self.jitter;
        Some(base.mul_f64(1.0 + spread))
    }

    /// How many attempts a batch gets in all.
    pub fn attempts(&self) -> usize {
        self.waits.len() + 1
    }
}

/// `250ms`, `5s`, `5m`, `2h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit (ms, s, m or h)"))?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{text}` does not start with a number"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("`{text}`: unknown unit `{unit}` (ms, s, m or h)")),
    }
}

#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Names this dispatcher in leases.
    pub owner: String,
    /// The wait between polls when there was nothing to do.
    pub poll_interval: Duration,
    /// How long a claimed subscription is held; a dispatcher that dies is replaced after it.
    pub lease: Duration,
    /// The time an endpoint has to answer.
    pub request_timeout: Duration,
    pub retries: RetrySchedule,
    /// A subscription failing for this long is paused.
    pub pause_after: Duration,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
    /// Subscriptions delivered at once.
    pub concurrency: usize,
    /// Sequence numbers looked at per batch (past non-matching events).
    pub scan: i64,
    /// Events numbered per sequencer transaction.
    pub sequence_batch: i64,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            owner: format!("dispatcher-{}", uuid::Uuid::new_v4().simple()),
            poll_interval: Duration::from_millis(250),
            lease: Duration::from_secs(60),
            request_timeout: Duration::from_secs(15),
            retries: RetrySchedule::standard(),
            pause_after: Duration::from_secs(24 * 3600),
            max_retry_after: Duration::from_secs(10 * 3600),
            concurrency: 8,
            scan: 10_000,
            sequence_batch: 10_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the HTTP client")]
    Http(#[source] reqwest::Error),
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchReport {
    pub sequenced: u64,
    pub batches: u64,
    pub delivered: u64,
    pub failed: u64,
    pub dead_lettered: u64,
    pub paused: u64,
}

impl DispatchReport {
    fn add(&mut self, other: Self) {
        self.sequenced += other.sequenced;
        self.batches += other.batches;
        self.delivered += other.delivered;
        self.failed += other.failed;
        self.dead_lettered += other.dead_lettered;
        self.paused += other.paused;
    }

    fn did_work(&self) -> bool {
        self.sequenced + self.batches > 0
    }
}

/// Delivers events to subscriptions; clones share one pool and clients.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    config: DispatcherConfig,
    http: reqwest::Client,
    sqs: Option<aws_sdk_sqs::Client>,
}

impl Dispatcher {
    /// `sqs` delivers to SQS targets; without it, they fail (and retry) with a clear error.
    pub fn new(
        pool: PgPool,
        config: DispatcherConfig,
        sqs: Option<aws_sdk_sqs::Client>,
    ) -> Result<Self, DispatchError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tributary-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(DispatchError::Http)?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                config,
                http,
                sqs,
            }),
        })
    }

    pub fn config(&self) -> &DispatcherConfig {
        &self.inner.config
    }

    /// Numbers new events, then delivers one batch of each claimable subscription.
    pub async fn run_once(&self) -> Result<DispatchReport, DispatchError> {
        let inner = &self.inner;
        let mut report = DispatchReport {
            sequenced: events::sequence(&inner.pool, inner.config.sequence_batch).await?,
            ..Default::default()
        };
        let claimed = subscriptions::claim(
            &inner.pool,
            &inner.config.owner,
            inner.config.lease,
            i64::try_from(inner.config.concurrency).unwrap_or(1),
        )
        .await?;
        let mut tasks = JoinSet::new();
        for sub in claimed {
            let inner = Arc::clone(&self.inner);
            tasks.spawn(async move { inner.deliver(sub).await });
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(done)) => report.add(done),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => crate::events::dispatcher_task_panicked(&e),
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Runs until `shutdown`, polling when idle. Errors (a database outage) are logged and the
    /// loop goes on.
    pub async fn run(&self, shutdown: CancellationToken) {
        crate::events::dispatcher_started(&self.inner.config.owner);
        while !shutdown.is_cancelled() {
            let idle = match self.run_once().await {
                Ok(report) => !report.did_work(),
                Err(e) => {
                    crate::events::dispatcher_failed(&e);
                    true
                }
            };
            if idle {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(self.inner.config.poll_interval) => {}
                }
            }
        }
    }
}

impl Inner {
    async fn deliver(&self, sub: Subscription) -> Result<DispatchReport, DispatchError> {
        let lease = sub.lease();
        let redrive = subscriptions::redrive_batch(&self.pool, &sub).await?;
        let (batch, cursor, redriving) = if redrive.is_empty() {
            let (batch, cursor) =
                subscriptions::next_events(&self.pool, &sub, self.config.scan).await?;
            (batch, Some(cursor), false)
        } else {
            (redrive, None, true)
        };
        let mut report = DispatchReport::default();
        if batch.is_empty() {
            let result = deliveries::acknowledge(&self.pool, &lease, cursor.unwrap_or(0), 0).await;
            return lease_result(result).map(|()| report);
        }
        if let Some(until) = self.lingering(&sub, &batch) {
            return lease_result(deliveries::release(&self.pool, &lease, Some(until)).await)
                .map(|()| report);
        }
        report.batches = 1;
        let n = batch.len() as u64;
        let sent = self.send(&sub, &batch).await;
        let result = match sent {
            Sent::Delivered => {
                report.delivered = n;
                if redriving {
                    let ids: Vec<_> = batch.iter().map(|e| e.id).collect();
                    deliveries::acknowledge_redrive(&self.pool, &lease, &ids).await
                } else {
                    let last = batch.last().map_or(sub.cursor_seq, |e| e.seq);
                    let cursor = cursor.unwrap_or(last).max(last);
                    deliveries::acknowledge(&self.pool, &lease, cursor, n as i64).await
                }
            }
            Sent::Failed {
                failure,
                retry_after,
                gone,
            } => {
                report.failed = n;
                let after = self.after_failure(&sub, &batch, cursor, retry_after, gone);
                if matches!(after, AfterFailure::DeadLetter { .. }) {
                    report.dead_lettered = n;
                }
                crate::events::delivery_failed(&sub, &failure, &after);
                let paused = deliveries::fail(
                    &self.pool,
                    &lease,
                    &failure,
                    &after,
                    self.config.pause_after.as_secs_f64(),
                )
                .await;
                if let Ok(true) = paused {
                    report.paused = 1;
                    crate::events::subscription_paused(&sub, &failure);
                }
                paused.map(|_| ())
            }
        };
        lease_result(result).map(|()| report)
    }

    /// A batch short of its size whose oldest event has waited less than the linger: the time it
    /// will be due.
    fn lingering(&self, sub: &Subscription, batch: &[Event]) -> Option<chrono::DateTime<Utc>> {
        if sub.linger_ms <= 0 || batch.len() >= usize::try_from(sub.batch_size).unwrap_or(0) {
            return None;
        }
        let oldest = batch.first()?.sequenced_at;
        let due = oldest + chrono::Duration::milliseconds(i64::from(sub.linger_ms));
        (due > crate::clock::now()).then_some(due)
    }

    fn after_failure(
        &self,
        sub: &Subscription,
        batch: &[Event],
        cursor: Option<i64>,
        retry_after: Option<Duration>,
        gone: bool,
    ) -> AfterFailure {
        if gone {
            return AfterFailure::Pause("the endpoint answered 410 Gone".into());
        }
        let failures = u32::try_from(sub.failures).unwrap_or(0) + 1;
        match self.config.retries.after(failures) {
            Some(wait) => {
                let asked = retry_after.map(|w| w.min(self.config.max_retry_after));
                let wait = asked.map_or(wait, |asked| wait.max(asked));
                let wait = chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1));
                AfterFailure::RetryAt(crate::clock::now() + wait)
            }
            None => {
                let last = batch.last().map_or(sub.cursor_seq, |e| e.seq);
                AfterFailure::DeadLetter {
                    events: batch.iter().map(|e| (e.id, e.seq)).collect(),
                    cursor: cursor.map(|c| c.max(last)),
                    attempts: i32::try_from(failures).unwrap_or(i32::MAX),
                }
            }
        }
    }

    async fn send(&self, sub: &Subscription, batch: &[Event]) -> Sent {
        match sub.target_kind.as_str() {
            "sqs" => match &self.sqs {
                Some(client) => targets::send_sqs(client, &sub.target_url, batch).await,
                None => failed("this dispatcher has no SQS client (set the AWS variables)"),
            },
            _ => match crate::subscriptions::signing_secrets(&self.pool, sub.id).await {
                Ok(secrets) => {
                    targets::post_webhook(&self.http, &sub.target_url, &secrets, sub.id, batch)
                        .await
                }
                Err(e) => failed(&format!("cannot read the signing secrets: {e}")),
            },
        }
    }
}

fn failed(error: &str) -> Sent {
    Sent::Failed {
        failure: FailedDelivery {
            status: None,
            response: None,
            error: error.to_owned(),
        },
        retry_after: None,
        gone: false,
    }
}

/// A lease taken over is no error of this dispatcher: the new holder delivers the batch.
fn lease_result(result: Result<(), StoreError>) -> Result<(), DispatchError> {
    match result {
        Err(e) if e.is_lease_lost() => {
            crate::events::subscription_lease_lost(&e);
            Ok(())
        }
        other => other.map_err(DispatchError::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_jitters_around_each_wait_and_ends() {
        let schedule = RetrySchedule::parse("10s, 1m", 0.2).expect("parses");
        assert_eq!(schedule.attempts(), 3);
        for _ in 0..100 {
            let first = schedule.after(1).expect("a first retry");
            assert!(first >= Duration::from_secs(8) && first <= Duration::from_secs(12));
            let second = schedule.after(2).expect("a second retry");
            assert!(second >= Duration::from_secs(48) && second <= Duration::from_secs(72));
        }
        assert_eq!(schedule.after(3), None);
        assert_eq!(schedule.after(0), None);
    }

    #[test]
    fn the_standard_schedule_spans_hours() {
        let s = RetrySchedule::standard();
        assert_eq!(s.attempts(), 7);
        assert!(s.after(6).expect("sixth") >= Duration::from_secs(8 * 3600));
    }

    #[test]
    fn durations_need_a_known_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("s").is_err());
    }
}
