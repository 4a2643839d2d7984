//! The tick scheduler (check runs for due platforms) and the run rescuer (messages for runs that
//! need one), on PostgreSQL and the `postgres` queue.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::*;
use serde_json::json;
use sqlx::PgPool;
use tributary::maintenance::{RunRescuer, RunRescuerConfig, TickScheduler, TickSchedulerConfig};
use tributary::messages::{Message, TickSlot};
use tributary::queue::{PgQueue, PgQueueConfig, Queue, ReceiveRequest};
use tributary::store::integrations;
use tributary::store::runs::{self, RunState};
use tributary::testkit::{Harness, ScriptedService};
use tributary::{CheckSchedule, Registry, ServiceConfig, StreamOutcome};
use uuid::Uuid;

fn service(platform: &'static str, schedule: CheckSchedule) -> ScriptedService {
    ScriptedService::new(platform, roots(&["s"]), |_| async {
        Ok(StreamOutcome::new())
    })
    .config(ServiceConfig {
        check_schedule: schedule,
        ..fast_config()
    })
}

fn every(n: u32) -> CheckSchedule {
    CheckSchedule::EveryNTicks(NonZeroU32::new(n).unwrap())
}

struct Setup {
    h: Harness,
    queue: Arc<PgQueue>,
    scheduler: TickScheduler,
}

fn setup(pool: PgPool, batch_size: usize) -> Setup {
    let mut registry = Registry::new();
    registry
        .register(service("always", CheckSchedule::EveryTick))
        .unwrap()
        .register(service("five", every(5)))
        .unwrap()
        .register(service("never", CheckSchedule::Never))
        .unwrap();
    let h = Harness::new(pool.clone(), registry);
    let queue = Arc::new(PgQueue::new(pool.clone(), PgQueueConfig::default()));
    let scheduler = TickScheduler::new(
        pool,
        h.registry.clone(),
        queue.clone(),
        TickSchedulerConfig {
            batch_size,
            ..TickSchedulerConfig::default()
        },
    );
    Setup {
        h,
        queue,
        scheduler,
    }
}

/// A connected integration of `platform` whose onboarding is over (no active run).
async fn connected(h: &Harness, platform: &str) -> Uuid {
    let (integration, run) = h.connect(platform, json!({}), json!({})).await.unwrap();
    runs::cancel(&h.pool, run.id).await.unwrap();
    integration.id
}

/// The run ids of every `continue_run` message in the queue (received and deleted).
async fn drain_run_messages(queue: &dyn Queue) -> Vec<Uuid> {
    let mut ids = Vec::new();
    loop {
        let batch = queue
            .receive(ReceiveRequest {
                max_messages: 10,
                wait: Duration::ZERO,
                visibility: Duration::from_secs(30),
            })
            .await
            .unwrap();
        if batch.is_empty() {
            return ids;
        }
        for message in batch {
            match Message::decode(&message.body).unwrap() {
                Message::ContinueRun { run_id } => ids.push(run_id),
                other => panic!("unexpected message {other}"),
            }
            queue.delete(&message.receipt).await.unwrap();
        }
    }
}

/// The recent slot with this remainder of its minute index modulo 5.
fn slot_with_remainder(remainder: i64) -> TickSlot {
    let mut slot = TickSlot::containing(Utc::now());
    while slot.minute_index().rem_euclid(5) != remainder {
        slot = TickSlot::exact(slot.start() - chrono::Duration::minutes(1)).unwrap();
    }
    slot
}

async fn active_runs(pool: &PgPool) -> BTreeSet<(Uuid, String)> {
    sqlx::query_as::<_, (Uuid, Option<String>)>(
        "SELECT integration_id, trigger_key FROM integration_runs
         WHERE state IN ('pending', 'processing', 'delayed')",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(id, key)| (id, key.unwrap_or_default()))
    .collect()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_tick_checks_due_platforms_only_and_skips_busy_and_disconnected_integrations(
    pool: PgPool,
) {
    let s = setup(pool.clone(), 2);
    let always = connected(&s.h, "always").await;
    let always_2 = connected(&s.h, "always").await;
    let five = connected(&s.h, "five").await;
    let never = connected(&s.h, "never").await;
    let disconnected = connected(&s.h, "always").await;
    integrations::disconnect(&pool, disconnected).await.unwrap();
    // still onboarding: its active run makes it skip the check
    let (busy, onboarding) = s.h.connect("always", json!({}), json!({})).await.unwrap();
    // a platform this build does not know is never checked
    sqlx::query(
        "INSERT INTO integrations (id, tenant_id, platform, status) VALUES ($1, $2, 'gone', 'done')",
    )
    .bind(Uuid::new_v4())
    .bind(Uuid::nil())
    .execute(&pool)
    .await
    .unwrap();

    let due_five = slot_with_remainder(0);
    assert_eq!(s.scheduler.due_platforms(due_five), ["always", "five"]);
    let fan_out = s.scheduler.run_once(due_five).await.unwrap();
    assert_eq!(fan_out.runs_created, 3);
    assert_eq!(fan_out.messages_sent, 3);
    let key = due_five.trigger_key();
    let expected: BTreeSet<(Uuid, String)> = [
        (always, key.clone()),
        (always_2, key.clone()),
        (five, key.clone()),
        (busy.id, String::new()),
    ]
    .into_iter()
    .collect();
    assert_eq!(active_runs(&pool).await, expected);
    let messaged: BTreeSet<Uuid> = drain_run_messages(s.queue.as_ref())
        .await
        .into_iter()
        .collect();
    let created: BTreeSet<Uuid> =
        sqlx::query_scalar("SELECT id FROM integration_runs WHERE trigger_key = $1")
            .bind(&key)
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(messaged, created, "one message per check run");
    for run_id in &created {
        let run = runs::get(&pool, *run_id).await.unwrap();
        assert!(!run.onboarding && run.state == RunState::Pending);
    }
    assert!(!active_runs(&pool).await.iter().any(|(id, _)| *id == never));

    // the same tick again (a redelivery, a second worker): nothing new
    let again = s.scheduler.run_once(due_five).await.unwrap();
    assert_eq!((again.runs_created, again.messages_sent), (0, 0));
    assert!(drain_run_messages(s.queue.as_ref()).await.is_empty());

    // the next minute: only `always` is due, and its integrations still have their runs
    let not_five = due_five.next();
    assert_eq!(s.scheduler.due_platforms(not_five), ["always"]);
    assert_eq!(
        s.scheduler.run_once(not_five).await.unwrap().runs_created,
        0
    );
    // once their runs are over, they are checked again
    for run_id in &created {
        runs::cancel(&pool, *run_id).await.unwrap();
    }
    runs::cancel(&pool, onboarding.id).await.unwrap();
    let fan_out = s.scheduler.run_once(not_five).await.unwrap();
    assert_eq!(
        fan_out.runs_created, 3,
        "always, always_2 and busy; not five"
    );
    assert_eq!(drain_run_messages(s.queue.as_ref()).await.len(), 3);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_fan_out_goes_through_every_batch(pool: PgPool) {
    let s = setup(pool.clone(), 7);
    for _ in 0..30 {
        connected(&s.h, "always").await;
    }
    let slot = slot_with_remainder(1);
    let fan_out = s.scheduler.run_once(slot).await.unwrap();
    assert_eq!(
        (
            fan_out.integrations_scanned,
            fan_out.runs_created,
            fan_out.messages_sent
        ),
        (30, 30, 30)
    );
    let ids = drain_run_messages(s.queue.as_ref()).await;
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 30);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_spread_tick_delays_each_check_by_its_integrations_own_offset(pool: PgPool) {
    let mut s = setup(pool.clone(), 100);
    s.scheduler = TickScheduler::new(
        pool.clone(),
        s.h.registry.clone(),
        s.queue.clone(),
        TickSchedulerConfig {
            batch_size: 7,
            spread: 0.5,
        },
    );
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(connected(&s.h, "always").await);
    }
    let fan_out = s.scheduler.run_once(slot_with_remainder(1)).await.unwrap();
    assert_eq!((fan_out.runs_created, fan_out.messages_sent), (40, 40));

    // each message is due at its integration's offset within half the minute, and the run says
    // so: the rescuer sends nothing for a run whose message is not due yet
    let rows: Vec<(Uuid, f64, f64)> = sqlx::query_as(
        "SELECT r.integration_id,
                extract(epoch FROM m.visible_at - now())::float8,
                extract(epoch FROM r.enqueued_at - now())::float8
         FROM integration_runs r
         JOIN queue_messages m ON m.body::jsonb ->> 'run_id' = r.id::text
         WHERE r.trigger_key IS NOT NULL",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 40);
    let mut offsets = Vec::new();
    for (integration, visible_in, enqueued_in) in rows {
        let offset =
            tributary::maintenance::check_offset(integration, Duration::from_secs(60), 0.5)
                .as_secs_f64();
        assert!(offset < 30.0, "{offset}");
        assert!(
            (visible_in - offset).abs() < 5.0,
            "{visible_in} vs {offset}"
        );
        assert!(
            (enqueued_in - offset).abs() < 5.0,
            "{enqueued_in} vs {offset}"
        );
        offsets.push(offset);
    }
    // spread, not bunched: the 40 offsets cover most of the 30 s
    offsets.sort_by(f64::total_cmp);
    assert!(offsets[39] - offsets[0] > 15.0, "{offsets:?}");
    let rescuer = RunRescuer::new(
        pool.clone(),
        s.queue.clone(),
        RunRescuerConfig {
            pending_resend_after: Duration::ZERO,
            ..RunRescuerConfig::default()
        },
    );
    let early: usize = sqlx::query_scalar(
        "SELECT count(*)::bigint FROM integration_runs WHERE enqueued_at > now() + interval '2 seconds'",
    )
    .fetch_one(&pool)
    .await
    .map(|n: i64| n as usize)
    .unwrap();
    assert!(early > 20, "{early}");
    let rescued = rescuer.run_once().await.unwrap();
    assert!(
        rescued.stale_pending <= 40 - early,
        "the rescuer re-sent {} runs whose message is not due yet",
        rescued.stale_pending
    );
    // the offset is the integration's own: fixed for every interval, none without a spread
    let long = tributary::maintenance::check_offset(ids[0], Duration::from_secs(300), 0.5);
    let short = tributary::maintenance::check_offset(ids[0], Duration::from_secs(60), 0.5);
    assert!((long.as_secs_f64() - 5.0 * short.as_secs_f64()).abs() < 1e-6);
    assert_eq!(
        tributary::maintenance::check_offset(ids[0], Duration::from_secs(60), 0.0),
        Duration::ZERO
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_rescuer_re_sends_runs_that_need_a_message_once_per_interval(pool: PgPool) {
    let s = setup(pool.clone(), 100);
    let rescuer = RunRescuer::new(
        pool.clone(),
        s.queue.clone(),
        RunRescuerConfig {
            resend_after: Duration::from_secs(3600),
            pending_resend_after: Duration::from_secs(3600),
            ..RunRescuerConfig::default()
        },
    );
    let (_, expired) = s.h.connect("always", json!({}), json!({})).await.unwrap();
    let (_, due) = s.h.connect("always", json!({}), json!({})).await.unwrap();
    let (_, waiting) = s.h.connect("always", json!({}), json!({})).await.unwrap();
    let (_, fresh) = s.h.connect("always", json!({}), json!({})).await.unwrap();
    let (_, stale) = s.h.connect("always", json!({}), json!({})).await.unwrap();
    sqlx::query(
        "UPDATE integration_runs SET state = 'processing', attempt = 1, lease_owner = 'dead',
             lease_expires_at = now() - interval '1 second' WHERE id = $1",
    )
    .bind(expired.id)
    .execute(&pool)
    .await
    .unwrap();
    for (id, until) in [
        (due.id, "now() - interval '1 second'"),
        (waiting.id, "now() + interval '1 hour'"),
    ] {
        let sql = format!(
            "UPDATE integration_runs SET state = 'delayed', delayed_until = {until} WHERE id = $1"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    // every run was created long ago; `fresh` just got its message
    sqlx::query(
        "UPDATE integration_runs SET created_at = now() - interval '2 hours',
             updated_at = now() - interval '2 hours'",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE integration_runs SET enqueued_at = now() WHERE id = $1")
        .bind(fresh.id)
        .execute(&pool)
        .await
        .unwrap();

    let rescued = rescuer.run_once().await.unwrap();
    assert_eq!(
        (
            rescued.expired_leases,
            rescued.due_delayed,
            rescued.stale_pending
        ),
        (1, 1, 1)
    );
    let sent: BTreeSet<Uuid> = drain_run_messages(s.queue.as_ref())
        .await
        .into_iter()
        .collect();
    assert_eq!(sent, [expired.id, due.id, stale.id].into_iter().collect());

    // within `resend_after` nothing is sent twice
    assert_eq!(rescuer.run_once().await.unwrap().total(), 0);
    assert!(drain_run_messages(s.queue.as_ref()).await.is_empty());

    // a message for an expired lease makes the next worker take the run over
    let outcome =
        s.h.processor("rescuer")
            .process_run(expired.id, &Default::default())
            .await;
    assert!(outcome.is_ok());
    assert_eq!(s.h.run(expired.id).await.attempt, 2);
    let _ = waiting;
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn re_sends_back_off_while_a_run_keeps_needing_a_message(pool: PgPool) {
    let s = setup(pool.clone(), 100);
    let rescuer = RunRescuer::new(pool.clone(), s.queue.clone(), RunRescuerConfig::default());
    let (_, run) = s.h.connect("always", json!({}), json!({})).await.unwrap();
    // its lease expired 1000 s ago
    let set = |enqueued_ago: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query(
                "UPDATE integration_runs SET state = 'processing', attempt = 1, lease_owner = 'x',
                     lease_expires_at = now() - interval '1000 seconds',
                     enqueued_at = now() - make_interval(secs => $2)
                 WHERE id = $1",
            )
            .bind(run.id)
            .bind(enqueued_ago as f64)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    // last message 90 s ago: more than the first wait (60 s), less than half of 1000 s
    set(90).await;
    assert_eq!(rescuer.run_once().await.unwrap().total(), 0);
    // last message 600 s ago: due again
    set(600).await;
    assert_eq!(rescuer.run_once().await.unwrap().expired_leases, 1);
    assert_eq!(drain_run_messages(s.queue.as_ref()).await, [run.id]);
}
