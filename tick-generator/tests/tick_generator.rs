//! Tick generators against PostgreSQL and the `postgres` queue, with the clock given by the test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::PgPool;
use tributary::messages::{Message, TickSlot};
use tributary::queue::{PgQueue, PgQueueConfig, Queue, ReceiveRequest};
use tributary::store::ticks;
use tributary_tick_generator::TickGenerator;

fn generator(pool: &PgPool, queue: &Arc<PgQueue>, id: &str) -> TickGenerator {
    TickGenerator::new(
        pool.clone(),
        queue.clone(),
        id,
        Duration::from_secs(1),
        Duration::from_secs(7 * 24 * 3600),
    )
}

fn queue(pool: &PgPool) -> Arc<PgQueue> {
    Arc::new(PgQueue::new(pool.clone(), PgQueueConfig::default()))
}

/// Every tick in the queue: slot → how many times it was sent.
async fn ticks_sent(queue: &dyn Queue) -> BTreeMap<TickSlot, usize> {
    let mut sent = BTreeMap::new();
    loop {
        let batch = queue
            .receive(ReceiveRequest {
                max_messages: 10,
                wait: Duration::ZERO,
                visibility: Duration::from_secs(60),
            })
            .await
            .unwrap();
        if batch.is_empty() {
            return sent;
        }
        for message in batch {
            let Message::Tick { slot } = Message::decode(&message.body).unwrap() else {
                panic!("not a tick: {}", message.body);
            };
            *sent.entry(slot).or_default() += 1;
            queue.delete(&message.receipt).await.unwrap();
        }
    }
}

fn at(minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, minute, second)
        .unwrap()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn two_generators_at_once_emit_each_slot_exactly_once(pool: PgPool) {
    let queue = queue(&pool);
    let a = Arc::new(generator(&pool, &queue, "a"));
    let b = Arc::new(generator(&pool, &queue, "b"));
    // both look at every slot, several times within each minute, at the same moments
    for minute in 0..20 {
        for second in [0, 1, 30, 59] {
            let now = at(minute, second);
            let (ra, rb) = tokio::join!(a.run_once(now), b.run_once(now));
            let emitted = usize::from(ra.unwrap().is_some()) + usize::from(rb.unwrap().is_some());
            assert!(emitted <= 1);
        }
    }
    let sent = ticks_sent(queue.as_ref()).await;
    assert_eq!(sent.len(), 20);
    assert!(sent.values().all(|n| *n == 1), "{sent:?}");
    let slots = ticks::list(&pool).await.unwrap();
    assert_eq!(slots.len(), 20);
    let by: std::collections::BTreeSet<&str> = slots.iter().map(|(_, g)| g.as_str()).collect();
    assert!(!by.is_empty());
    assert_eq!(
        sent.keys().next().unwrap().to_string(),
        "2026-11-22T12:00:00Z"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_restart_does_not_emit_a_slot_again_and_downtime_is_skipped_not_replayed(pool: PgPool) {
    let queue = queue(&pool);
    let first = generator(&pool, &queue, "first");
    assert!(first.run_once(at(0, 10)).await.unwrap().is_some());
    drop(first);
    // restarted in the same minute: nothing
    let restarted = generator(&pool, &queue, "restarted");
    assert!(restarted.run_once(at(0, 40)).await.unwrap().is_none());
    // down for 30 minutes: only the current slot, no storm of the missed ones
    let slot = restarted.run_once(at(31, 5)).await.unwrap().unwrap();
    assert_eq!(slot.to_string(), "2026-11-22T12:31:00Z");
    let sent = ticks_sent(queue.as_ref()).await;
    assert_eq!(
        sent.keys().map(ToString::to_string).collect::<Vec<_>>(),
        ["2026-11-22T12:00:00Z", "2026-11-22T12:31:00Z"]
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn many_generators_racing_for_the_current_slot_emit_it_once(pool: PgPool) {
    let queue = queue(&pool);
    let now = Utc::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        // each generator a process of its own: its own pool, its own queue client
        let own = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_with((*pool.connect_options()).clone())
            .await
            .unwrap();
        let g = generator(&own, &self::queue(&own), &format!("g{i}"));
        tasks.spawn(async move { g.run_once(now).await.unwrap() });
    }
    let mut emitted = 0;
    while let Some(result) = tasks.join_next().await {
        emitted += usize::from(result.unwrap().is_some());
    }
    assert_eq!(emitted, 1);
    let sent = ticks_sent(queue.as_ref()).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent.keys().next(), Some(&TickSlot::containing(now)));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_failed_send_leaves_the_slot_to_the_next_try(pool: PgPool) {
    let failing = TickGenerator::new(
        pool.clone(),
        Arc::new(FailingQueue(queue(&pool))),
        "failing",
        Duration::from_secs(1),
        Duration::from_secs(3600),
    );
    assert!(failing.run_once(at(5, 0)).await.is_err());
    assert!(ticks::list(&pool).await.unwrap().is_empty(), "rolled back");
    let queue = queue(&pool);
    let working = generator(&pool, &queue, "working");
    assert!(working.run_once(at(5, 30)).await.unwrap().is_some());
}

/// A queue that refuses every send.
#[derive(Debug)]
struct FailingQueue(Arc<PgQueue>);

#[tributary::async_trait]
impl Queue for FailingQueue {
    fn backend(&self) -> &'static str {
        "failing"
    }
    fn describe(&self) -> String {
        "failing".into()
    }
    async fn send(
        &self,
        _: tributary::queue::OutgoingMessage,
    ) -> Result<String, tributary::queue::QueueError> {
        Err(tributary::queue::QueueError::Config("down".into()))
    }
    async fn send_batch(
        &self,
        _: Vec<tributary::queue::OutgoingMessage>,
    ) -> Result<usize, tributary::queue::QueueError> {
        Err(tributary::queue::QueueError::Config("down".into()))
    }
    async fn receive(
        &self,
        r: ReceiveRequest,
    ) -> Result<Vec<tributary::queue::ReceivedMessage>, tributary::queue::QueueError> {
        self.0.receive(r).await
    }
    async fn extend_visibility(
        &self,
        r: &tributary::queue::Receipt,
        v: Duration,
    ) -> Result<(), tributary::queue::QueueError> {
        self.0.extend_visibility(r, v).await
    }
    async fn delete(
        &self,
        r: &tributary::queue::Receipt,
    ) -> Result<(), tributary::queue::QueueError> {
        self.0.delete(r).await
    }
    async fn delete_batch(
        &self,
        r: &[tributary::queue::Receipt],
    ) -> Result<(), tributary::queue::QueueError> {
        self.0.delete_batch(r).await
    }
    async fn dead_letter(
        &self,
        m: &tributary::queue::ReceivedMessage,
        reason: &str,
    ) -> Result<(), tributary::queue::QueueError> {
        self.0.dead_letter(m, reason).await
    }
    async fn peek_dead_letters(
        &self,
        max: usize,
    ) -> Result<Vec<tributary::queue::DeadLetter>, tributary::queue::QueueError> {
        self.0.peek_dead_letters(max).await
    }
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn metrics_report_the_ticks_emitted_and_the_tick_lag(pool: PgPool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tributary::telemetry::install().unwrap();
    let queue = queue(&pool);
    let now = Utc::now();
    generator(&pool, &queue, "metered")
        .run_once(now)
        .await
        .unwrap()
        .expect("the slot is this generator's");
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let endpoint = tokio::spawn(tributary_tick_generator::metrics::serve(
        addr,
        pool.clone(),
        queue.clone(),
        stop.clone(),
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => break stream,
            Err(e) => assert!(std::time::Instant::now() < deadline, "no endpoint: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.contains("tributary_ticks_emitted_total 1"),
        "{answer}"
    );
    assert!(
        answer.contains("tributary_queue_messages{state=\"visible\"} 1"),
        "{answer}"
    );
    let lag: f64 = answer
        .lines()
        .find_map(|l| l.strip_prefix("tributary_tick_lag_seconds "))
        .expect("the tick lag")
        .parse()
        .unwrap();
    // the slot began at most a minute before the scrape
    assert!((0.0..=70.0).contains(&lag), "{lag}");
    stop.cancel();
    endpoint.await.unwrap();
}
