//! Workers that die, compete, are told to stop, and messages that come twice or out of order.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use tributary::messages::Message;
use tributary::queue::{OutgoingMessage, Queue};

use crate::common::database_url;
use crate::harness::{Expect, Figures, Onboarding, Scale, seeded, soak};
use crate::workers::{Workers, tick_generator};

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn sigkill_of_workers_at_seeded_random_moments_loses_and_duplicates_nothing(pool: PgPool) {
    let (seed, mut rng) = seeded("sigkill");
    let scale = Scale::standard(150);
    let url = database_url(&pool);
    let onboarding = Onboarding::direct(pool.clone(), &scale).await;
    let mut workers = Workers::new(&pool, &url, "killed");
    workers.spawn_n(2);
    onboarding.enqueue_all(onboarding.pg_queue().as_ref()).await;

    let kills = if soak() { 25 } else { 4 };
    for _ in 0..kills {
        // a random moment: between 0.2 and 1.5 s after the last fault (or its recovery)
        tokio::time::sleep(Duration::from_millis(rng.u64(200..1_500))).await;
        if onboarding.settled().await {
            break;
        }
        let victim = rng.usize(..workers.procs.len());
        let (killed, held) = workers.kill_and_replace(victim).await;
        workers
            .wait_taken_over(killed, &held, Duration::from_secs(120))
            .await;
    }
    onboarding.wait_settled(Duration::from_secs(300)).await;
    let figures = Figures {
        scenario: "sigkill".into(),
        seed,
        faults: format!("{} SIGKILLs", workers.kills),
        recover: workers.recoveries.clone(),
        ..Figures::default()
    };
    onboarding.check(&Expect::default(), figures).await;
    workers.stop_all().await;
}

async fn competing(pool: PgPool, n: usize) {
    let (seed, _) = seeded("competing");
    let scale = Scale::standard(20);
    let url = database_url(&pool);
    let onboarding = Onboarding::direct(pool.clone(), &scale).await;
    let queue = onboarding.pg_queue();
    // every run's message twice, so that the workers really compete for the same runs
    onboarding.enqueue_all(queue.as_ref()).await;
    onboarding.enqueue_all(queue.as_ref()).await;
    let mut workers = Workers::new(&pool, &url, &format!("competing{n}"));
    workers.spawn_n(n);
    onboarding.wait_settled(Duration::from_secs(180)).await;
    let figures = Figures {
        scenario: format!("{n} competing workers"),
        seed,
        faults: format!("{n} workers, every message sent twice"),
        ..Figures::default()
    };
    onboarding
        .check(
            &Expect {
                max_retries: Some(0),
                ..Expect::default()
            },
            figures,
        )
        .await;
    workers.stop_all().await;
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn two_competing_workers_store_everything_once(pool: PgPool) {
    competing(pool, 2).await;
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn three_competing_workers_store_everything_once(pool: PgPool) {
    competing(pool, 3).await;
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn duplicated_and_reordered_messages_make_one_run_each(pool: PgPool) {
    let (seed, mut rng) = seeded("duplicates");
    let scale = Scale::standard(30);
    let url = database_url(&pool);
    let onboarding = Onboarding::direct(pool.clone(), &scale).await;
    let queue = onboarding.pg_queue();
    // per integration: the `process_integration` a producer sends three times (its retried
    // sends: one key), and four `continue_run` of its run, all shuffled; a third of the
    // `continue_run` are delayed by up to 4 s, so they arrive mid-run and after its end
    let mut messages: Vec<(Message, Duration)> = Vec::new();
    let mut delayed = 0;
    for c in &onboarding.integrations {
        for _ in 0..3 {
            let process = Message::ProcessIntegration {
                integration_id: c.integration_id,
                onboarding: true,
                key: Some(format!("onboard-{}", c.integration_id)),
            };
            messages.push((process, Duration::ZERO));
        }
    }
    for message in onboarding.continue_messages(4) {
        let delay = if rng.u8(..3) == 0 {
            delayed += 1;
            Duration::from_millis(rng.u64(500..4_000))
        } else {
            Duration::ZERO
        };
        messages.push((message, delay));
    }
    rng.shuffle(&mut messages);
    for (message, delay) in &messages {
        queue
            .send(OutgoingMessage::delayed(message.encode(), *delay))
            .await
            .unwrap();
    }
    let mut workers = Workers::new(&pool, &url, "dup");
    workers.spawn_n(2);
    onboarding.wait_settled(Duration::from_secs(180)).await;
    let figures = Figures {
        scenario: "duplicated and reordered messages".into(),
        seed,
        faults: format!(
            "{} messages for {} runs, shuffled, {delayed} delayed",
            messages.len(),
            onboarding.integrations.len()
        ),
        ..Figures::default()
    };
    // the delayed copies that arrive after the end are no-ops: the check waits for them
    onboarding
        .check(
            &Expect {
                max_retries: Some(0),
                ..Expect::default()
            },
            figures,
        )
        .await;
    workers.stop_all().await;
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn sigterm_under_load_hands_every_run_over(pool: PgPool) {
    let (seed, mut rng) = seeded("sigterm");
    let scale = Scale::standard(60);
    let url = database_url(&pool);
    let onboarding = Onboarding::direct(pool.clone(), &scale).await;
    let mut workers = Workers::new(&pool, &url, "termed");
    workers.spawn_n(2);
    onboarding.enqueue_all(onboarding.pg_queue().as_ref()).await;
    let terms = if soak() { 15 } else { 3 };
    let mut exits = Vec::new();
    for _ in 0..terms {
        tokio::time::sleep(Duration::from_millis(rng.u64(300..2_000))).await;
        if onboarding.settled().await {
            break;
        }
        let victim = rng.usize(..workers.procs.len());
        exits.push(
            workers
                .terminate_and_replace(victim, Duration::from_secs(20))
                .await,
        );
    }
    onboarding.wait_settled(Duration::from_secs(300)).await;
    let slowest = exits.iter().max().copied().unwrap_or_default();
    let figures = Figures {
        scenario: "SIGTERM under load".into(),
        seed,
        faults: format!(
            "{} SIGTERMs, each exit 0 within {:.1} s, no stream left processing",
            workers.terms,
            slowest.as_secs_f64()
        ),
        recover: exits,
        ..Figures::default()
    };
    // a shutdown consumes no retry
    onboarding
        .check(
            &Expect {
                max_retries: Some(0),
                ..Expect::default()
            },
            figures,
        )
        .await;
    workers.stop_all().await;
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn two_tick_generators_make_one_check_per_integration_and_slot(pool: PgPool) {
    let (seed, _) = seeded("two tick generators");
    let scale = Scale::standard(0);
    let url = database_url(&pool);
    let onboarding = Onboarding::direct(pool.clone(), &scale).await;
    let mut workers = Workers::new(&pool, &url, "ticked");
    workers.spawn_n(2);
    onboarding.enqueue_all(onboarding.pg_queue().as_ref()).await;
    onboarding.wait_settled(Duration::from_secs(120)).await;

    let started = Instant::now();
    let mut a = tick_generator(&url, "gen-a");
    let mut b = tick_generator(&url, "gen-b");
    // the checks of the first slot they emit: one per integration, all processed
    onboarding.wait_checks(Duration::from_secs(90)).await;
    onboarding.wait_settled(Duration::from_secs(60)).await;
    for g in [&mut a, &mut b] {
        g.signal("TERM");
        let (code, _) = g.wait_exit(Duration::from_secs(15)).await;
        assert_eq!(code, Some(0), "{}", g.log());
    }
    // each (integration, slot) checked once
    onboarding.assert_one_check_per_slot().await;
    let slots: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT trigger_key) FROM integration_runs WHERE NOT onboarding",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let emitted: i64 = sqlx::query_scalar("SELECT count(*) FROM tick_slots")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(slots <= emitted, "{slots} slots checked, {emitted} emitted");
    let figures = Figures {
        scenario: "two tick generators".into(),
        seed,
        faults: format!(
            "2 generators; {} slot(s) emitted, checks within {:.1} s",
            emitted,
            started.elapsed().as_secs_f64()
        ),
        ..Figures::default()
    };
    onboarding
        .check(
            &Expect {
                check_runs: true,
                max_retries: Some(0),
                ..Expect::default()
            },
            figures,
        )
        .await;
    workers.stop_all().await;
}
