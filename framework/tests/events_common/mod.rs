//! Helpers of the event delivery tests: events inserted as the outbox writes them, subscriptions
//! to a local receiver, a dispatcher with a schedule of milliseconds.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use sqlx::PgPool;
use tributary::delivery::{Dispatcher, DispatcherConfig, RetrySchedule};
use tributary::secret::Secret;
use tributary::store::events;
use tributary::store::subscriptions::Subscription;
use tributary::subscriptions::{self, SubscriptionRequest, Target};
use tributary::testkit::WebhookReceiver;
use uuid::Uuid;

pub const TENANT: Uuid = Uuid::from_u128(0x7e5a);

/// Inserts `n` committed `activity.created` events of `platform` and numbers them.
pub async fn emit(pool: &PgPool, platform: &str, n: i64) {
    sqlx::query(
        "INSERT INTO events (tenant_id, platform, event_type, channel, data)
         SELECT $1, $2, 'activity.created', 'general', jsonb_build_object('n', g)
         FROM generate_series(1, $3) g",
    )
    .bind(TENANT)
    .bind(platform)
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
    while events::sequence(pool, 10_000).await.unwrap() > 0 {}
}

/// A dispatcher with retries after 50 ms each (three attempts), a 400 ms request timeout and a
/// 2 s lease.
pub fn dispatcher(pool: &PgPool) -> Dispatcher {
    Dispatcher::new(pool.clone(), fast(), None).unwrap()
}

pub fn fast() -> DispatcherConfig {
    DispatcherConfig {
        poll_interval: Duration::from_millis(20),
        lease: Duration::from_secs(2),
        request_timeout: Duration::from_millis(400),
        retries: RetrySchedule::new(vec![Duration::from_millis(50); 2], 0.0),
        ..DispatcherConfig::default()
    }
}

/// A webhook subscription of the test tenant to `receiver`, whose secret the receiver verifies.
pub async fn subscribe(
    pool: &PgPool,
    receiver: &WebhookReceiver,
    edit: impl FnOnce(&mut SubscriptionRequest),
) -> (Subscription, Secret) {
    let mut request = SubscriptionRequest::new(
        TENANT,
        "test",
        Target::Webhook {
            url: receiver.url(),
            secret: None,
        },
    );
    edit(&mut request);
    let created = subscriptions::create(pool, request).await.unwrap();
    let secret = created.secret.unwrap();
    receiver.secrets([secret.expose().to_owned()]);
    (created.subscription, secret)
}

/// Runs passes of `dispatcher` until `done` holds, failing after 20 s.
pub async fn dispatch_until<F: FnMut() -> bool>(dispatcher: &Dispatcher, what: &str, mut done: F) {
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        let report = dispatcher.run_once().await.unwrap();
        if report.batches == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

pub async fn subscription(pool: &PgPool, id: Uuid) -> Subscription {
    subscriptions::get(pool, id).await.unwrap()
}
