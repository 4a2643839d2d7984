//! Issue 13, the transactional outbox: an event exists if and only if its change committed;
//! unchanged records write none; run events; per-tenant sequencing in commit order.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tributary::store::events::{self, Event};
use tributary::testkit::ScriptedService;
use tributary::{IntegrationError, RunOutcome, StreamOutcome};

fn kinds(events: &[Event]) -> Vec<(String, String)> {
    let mut kinds: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            let id = e.data["source_id"]
                .as_str()
                .map_or_else(|| e.data["run_id"].to_string(), str::to_owned);
            (e.event_type.clone(), id)
        })
        .collect();
    kinds.sort();
    kinds
}

async fn sequenced(pool: &PgPool, tenant: uuid::Uuid) -> Vec<Event> {
    while events::sequence(pool, 10_000).await.unwrap() > 0 {}
    events::list(pool, tenant).await.unwrap()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn changed_records_write_one_event_each_and_unchanged_ones_none(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["a"]), |call| async move {
        let title = if call.call >= 3 { "edited" } else { "title 1" };
        Ok(StreamOutcome::new()
            .activity(activity("1", "ada").title(title))
            .activity(activity("2", "bob")))
    })
    .config(fast_config());
    let h = harness(pool.clone(), service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let tenant = tributary::admin::DEFAULT_TENANT;
    assert_eq!(h.process(run.id).await, RunOutcome::Processed);
    let first = sequenced(&pool, tenant).await;
    assert_eq!(
        kinds(&first),
        [
            ("activity.created".into(), "act-1".into()),
            ("activity.created".into(), "act-2".into()),
            ("member.created".into(), "user-ada".into()),
            ("member.created".into(), "user-bob".into()),
            ("run.processed".into(), json!(run.id).to_string()),
        ]
    );
    let created = first
        .iter()
        .find(|e| e.event_type == "activity.created")
        .unwrap();
    assert_eq!(created.platform.as_deref(), Some(PLATFORM));
    assert_eq!(created.integration_id, Some(integration.id));
    assert_eq!(created.data["title"], "title 1", "the record as stored");
    assert_eq!(
        first.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=5).collect::<Vec<_>>(),
        "the tenant's sequence is gapless from 1"
    );

    // the same records again: only the run's own event
    let again = h.check(integration.id).await.unwrap();
    assert_eq!(h.process(again.id).await, RunOutcome::Processed);
    let second = sequenced(&pool, tenant).await;
    assert_eq!(
        kinds(&second[5..]),
        [("run.processed".into(), json!(again.id).to_string())]
    );

    // an edit: one activity.updated carrying the new title
    let edit = h.check(integration.id).await.unwrap();
    assert_eq!(h.process(edit.id).await, RunOutcome::Processed);
    let third = sequenced(&pool, tenant).await;
    let new: Vec<&Event> = third[6..].iter().collect();
    assert_eq!(new.len(), 2, "{new:?}");
    assert_eq!(new[0].event_type, "activity.updated");
    assert_eq!(new[0].data["title"], "edited");
    assert_eq!(new[1].event_type, "run.processed");
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_failed_run_and_a_disconnection_write_their_events(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["a"]), |_| async move {
        Err(IntegrationError::fatal("the platform refused the token"))
    })
    .config(fast_config());
    let h = harness(pool.clone(), service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let (_, ended) = h.run_to_end(run.id).await;
    assert_eq!(ended.state.to_string(), "error");
    tributary::store::integrations::disconnect(&pool, integration.id)
        .await
        .unwrap();
    let all = sequenced(&pool, tributary::admin::DEFAULT_TENANT).await;
    let types: Vec<&str> = all.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["run.failed", "integration.disconnected"]);
    assert_eq!(all[0].data["run_id"], json!(run.id));
    let reason = all[0].data["error"].to_string();
    assert!(reason.contains("refused the token"), "{reason}");
    assert_eq!(all[1].integration_id, Some(integration.id));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_stale_workers_outcome_writes_no_event(pool: PgPool) {
    let started = Signal::new();
    let gate = Signal::new();
    let (s, g) = (started.clone(), gate.clone());
    let service = ScriptedService::new(PLATFORM, roots(&["s"]), move |call| {
        let (s, g) = (s.clone(), g.clone());
        async move {
            if call.call == 1 {
                s.fire();
                g.wait().await;
                return Ok(StreamOutcome::new().activity(activity("stale", "ada")));
            }
            Ok(StreamOutcome::new().activity(activity("fresh", "ada")))
        }
    })
    .config(fast_config());
    let mut h = harness(pool.clone(), service);
    h.config.heartbeat_interval = Duration::from_secs(3600);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let stale = h.processor("stale");
    let stale_run =
        tokio::spawn(async move { stale.process_run(run.id, &CancellationToken::new()).await });
    started.wait().await;
    h.expire_lease(run.id).await;
    let fresh = h.processor("fresh");
    assert_eq!(
        fresh
            .process_run(run.id, &CancellationToken::new())
            .await
            .unwrap(),
        RunOutcome::Processed
    );
    gate.fire();
    assert_eq!(stale_run.await.unwrap().unwrap(), RunOutcome::LeaseLost);
    let all = sequenced(&pool, tributary::admin::DEFAULT_TENANT).await;
    let ids: Vec<String> = all
        .iter()
        .filter(|e| e.event_type == "activity.created")
        .map(|e| e.data["source_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["act-fresh"], "the rolled-back outcome left no event");
    assert_eq!(
        events::count(&pool, tributary::admin::DEFAULT_TENANT)
            .await
            .unwrap(),
        all.len() as i64
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn sequences_are_per_tenant_gapless_and_follow_commit_order(pool: PgPool) {
    let (t1, t2) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let insert = |tenant: uuid::Uuid, n: i64| {
        sqlx::query(
            "INSERT INTO events (tenant_id, event_type, data)
             SELECT $1, 'run.processed', jsonb_build_object('n', g) FROM generate_series(1, $2) g",
        )
        .bind(tenant)
        .bind(n)
    };
    // a transaction that inserted first but commits last is numbered last
    let mut late = tributary::db::begin(&pool).await.unwrap();
    insert(t1, 1).execute(&mut *late).await.unwrap();
    insert(t1, 3).execute(&pool).await.unwrap();
    insert(t2, 2).execute(&pool).await.unwrap();
    assert_eq!(
        events::sequence(&pool, 2).await.unwrap(),
        2,
        "bounded batches"
    );
    assert_eq!(events::sequence(&pool, 100).await.unwrap(), 3);
    late.commit().await.unwrap();
    assert_eq!(events::sequence(&pool, 100).await.unwrap(), 1);
    let one = events::list(&pool, t1).await.unwrap();
    assert_eq!(one.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(one[3].data["n"], 1, "the late commit came last");
    let two = events::list(&pool, t2).await.unwrap();
    assert_eq!(two.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);

    // a second sequencer waits for none: it finds the lock taken and does nothing
    insert(t2, 1).execute(&pool).await.unwrap();
    let mut holder = tributary::db::begin(&pool).await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(events::SEQUENCER_LOCK)
        .execute(&mut *holder)
        .await
        .unwrap();
    assert_eq!(events::sequence(&pool, 100).await.unwrap(), 0);
    holder.rollback().await.unwrap();
    assert_eq!(events::sequence(&pool, 100).await.unwrap(), 1);
}
