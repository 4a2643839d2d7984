//! `scripts/bench events`: events delivered per second to a local receiver, and the processor's
//! activities/s with 0, 1 and 10 subscriptions (a dispatcher delivering while it runs), in one run.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tributary::delivery::{Dispatcher, DispatcherConfig};
use tributary::subscriptions::{self, SubscriptionRequest, Target};
use tributary::testkit::WebhookReceiver;
use uuid::Uuid;

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "bench-events")]
pub struct EventsBenchArgs {
    /// Events of the delivery run.
    #[arg(long, default_value_t = 100_000)]
    pub events: i64,
    /// Events per webhook request.
    #[arg(long, default_value_t = 100)]
    pub batch_size: u32,
    /// Subscriptions the delivery run's events go to (each gets every event).
    #[arg(long, default_value_t = 1)]
    pub subscriptions: u32,
    /// Streams × activities of each processor run.
    #[arg(long, default_value_t = 100)]
    pub activity_streams: u32,
    #[arg(long, default_value_t = 1000)]
    pub activities_per_stream: u32,
    /// Streams processed at once; subscriptions delivered at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}

async fn subscribe(
    pool: &PgPool,
    tenant: Uuid,
    receiver: &WebhookReceiver,
    batch: u32,
) -> anyhow::Result<()> {
    let mut request = SubscriptionRequest::new(
        tenant,
        "bench",
        Target::Webhook {
            url: receiver.url(),
            secret: None,
        },
    );
    request.batch_size = batch;
    subscriptions::create(pool, request).await?;
    Ok(())
}

fn dispatcher(pool: &PgPool, concurrency: usize) -> anyhow::Result<Dispatcher> {
    let config = DispatcherConfig {
        concurrency,
        poll_interval: Duration::from_millis(20),
        ..DispatcherConfig::default()
    };
    Ok(Dispatcher::new(pool.clone(), config, None)?)
}

pub async fn run(args: EventsBenchArgs) -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
    let pool = tributary::db::connect(&url, (args.concurrency as u32) * 3 + 4).await?;
    tributary::db::migrate(&pool).await?;

    // 1. delivery: committed events, numbered and delivered by one dispatcher
    let receiver = WebhookReceiver::start().await;
    receiver.count_only();
    let tenant = Uuid::new_v4();
    for _ in 0..args.subscriptions {
        subscribe(&pool, tenant, &receiver, args.batch_size).await?;
    }
    sqlx::query(
        "INSERT INTO events (tenant_id, platform, event_type, channel, data)
         SELECT $1, 'bench', 'activity.created', 'general',
                jsonb_build_object('source_id', 'act-' || g, 'title', 'an activity of the benchmark', 'n', g)
         FROM generate_series(1, $2) g",
    )
    .bind(tenant)
    .bind(args.events)
    .execute(&pool)
    .await?;
    let expected = usize::try_from(args.events)? * args.subscriptions as usize;
    let shutdown = CancellationToken::new();
    let d = dispatcher(&pool, args.concurrency)?;
    let started = Instant::now();
    let task = tokio::spawn({
        let token = shutdown.clone();
        async move { d.run(token).await }
    });
    while receiver.accepted_count() < expected {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {} of {expected} events delivered in 10 minutes",
            receiver.accepted_count()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivery = started.elapsed();
    shutdown.cancel();
    task.await?;
    let rate = expected as f64 / delivery.as_secs_f64();

    // 2. the processor with the outbox's rows discarded (a trigger of this benchmark's own
    // database), then with 0, 1 and 10 subscriptions, a dispatcher delivering meanwhile
    sqlx::raw_sql(
        "CREATE FUNCTION bench_discard() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
         CREATE TRIGGER bench_discard BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION bench_discard();",
    )
    .execute(&pool)
    .await?;
    let elapsed = super::processor_run_for(
        &pool,
        args.concurrency,
        Uuid::new_v4(),
        args.activity_streams,
        args.activities_per_stream,
    )
    .await?;
    let no_outbox =
        f64::from(args.activity_streams * args.activities_per_stream) / elapsed.as_secs_f64();
    sqlx::raw_sql("DROP TRIGGER bench_discard ON events; DROP FUNCTION bench_discard();")
        .execute(&pool)
        .await?;
    let mut rates = Vec::new();
    for subs in [0u32, 1, 10] {
        let tenant = Uuid::new_v4();
        let receiver = WebhookReceiver::start().await;
        receiver.count_only();
        for _ in 0..subs {
            subscribe(&pool, tenant, &receiver, args.batch_size).await?;
        }
        let shutdown = CancellationToken::new();
        let d = dispatcher(&pool, args.concurrency)?;
        let task = tokio::spawn({
            let token = shutdown.clone();
            async move { d.run(token).await }
        });
        let elapsed = super::processor_run_for(
            &pool,
            args.concurrency,
            tenant,
            args.activity_streams,
            args.activities_per_stream,
        )
        .await?;
        shutdown.cancel();
        task.await?;
        let activities = f64::from(args.activity_streams * args.activities_per_stream);
        rates.push((
            subs,
            activities / elapsed.as_secs_f64(),
            receiver.accepted_count(),
        ));
    }

    println!();
    println!(
        "delivery    {expected} events ({} subscription(s), batches of {}) in {:.2} s = {:.0} events/s to a local receiver (target ≥ 5,000) {}",
        args.subscriptions,
        args.batch_size,
        delivery.as_secs_f64(),
        rate,
        if rate >= 5000.0 { "MET" } else { "MISSED" }
    );
    println!(
        "processor   outbox rows discarded (a trigger): {no_outbox:>9.0} activities/s (what the outbox costs: the lines below against this one)"
    );
    let base = rates.first().map_or(1.0, |r| r.1);
    for (subs, r, delivered) in &rates {
        println!(
            "processor   {subs:>2} subscription(s): {r:>9.0} activities/s = {:>5.1}% of 0 subscriptions (target ≥ 85%) {}, {:>5.1}% of no outbox | {delivered} events delivered during the run",
            100.0 * r / base,
            if *r >= 0.85 * base { "MET" } else { "MISSED" },
            100.0 * r / no_outbox,
        );
    }
    Ok(())
}
