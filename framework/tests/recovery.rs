//! Issue 8 items 2 and 10: a dead worker charges a retry only to the streams that ran, and an
//! outage of the database charges none and the run goes on as soon as the database answers.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Signal, activity, fast_config, harness, roots};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;
use tributary::store::runs::RunState;
use tributary::testkit::{PgServer, ScriptedService, eventually};
use tributary::{RunOutcome, ServiceConfig, StreamOutcome};

const PLATFORM: &str = common::PLATFORM;

fn identifiers(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_dead_worker_charges_a_retry_only_to_the_streams_that_ran(pool: sqlx::PgPool) {
    let started = Arc::new(AtomicUsize::new(0));
    let dying = Arc::new(AtomicBool::new(true));
    let (counter, hang) = (started.clone(), dying.clone());
    let service = ScriptedService::new(
        PLATFORM,
        roots(&["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"]),
        move |call| {
            let (counter, hang) = (counter.clone(), hang.clone());
            async move {
                let id = call.stream.identifier.clone();
                if hang.load(Ordering::SeqCst) && id != "s3" {
                    // the worker dies while this stream runs
                    counter.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                }
                Ok(StreamOutcome::new().activity(activity(&id, "ada")))
            }
        },
    )
    .config(ServiceConfig {
        stream_concurrency: 4,
        ..fast_config()
    });
    let h = harness(pool, service);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let first = h.clone();
    let worker = tokio::spawn(async move { first.process(run.id).await });
    // s0, s1, s2 hang; s3 ends and frees a slot for s4, which hangs too
    eventually(Duration::from_secs(30), "4 streams running", || async {
        (started.load(Ordering::SeqCst) == 4).then_some(())
    })
    .await;
    worker.abort();
    let _ = worker.await;
    dying.store(false, Ordering::SeqCst);

    h.expire_lease(run.id).await;
    let outcome = h
        .processor("rescuer")
        .process_run(run.id, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome, RunOutcome::Processed);
    let charged: BTreeSet<String> = h
        .streams(run.id)
        .await
        .into_iter()
        .filter(|s| s.retries > 0)
        .map(|s| s.identifier)
        .collect();
    assert_eq!(
        charged,
        identifiers(&["s0", "s1", "s2", "s4"]),
        "only the streams that ran when the worker died are charged"
    );
}

/// The test's own PostgreSQL, stopped while streams are in flight and started again: the commits
/// fail, the worker waits for the database, hands the run back uncharged and goes on at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_mid_run_charges_no_retry_and_the_run_goes_on_when_it_answers() {
    let server = PgServer::start_new();
    let pool = PgPoolOptions::new()
        .max_connections(10)
        // a query waits this long for a connection while the server is down, then fails
        .acquire_timeout(Duration::from_millis(500))
        .connect(&server.url())
        .await
        .unwrap();
    tributary::db::migrate(&pool).await.unwrap();

    let in_flight = Arc::new(AtomicUsize::new(0));
    let returned = Arc::new(AtomicUsize::new(0));
    let gate = Signal::new();
    let (counter, done, open) = (in_flight.clone(), returned.clone(), gate.clone());
    let service = ScriptedService::new(
        PLATFORM,
        roots(&["s0", "s1", "s2", "s3", "s4", "s5"]),
        move |call| {
            let (counter, done, open) = (counter.clone(), done.clone(), open.clone());
            async move {
                let id = call.stream.identifier.clone();
                if call.call == 1 && ["s0", "s1", "s2"].contains(&id.as_str()) {
                    counter.fetch_add(1, Ordering::SeqCst);
                    open.wait().await;
                    done.fetch_add(1, Ordering::SeqCst);
                }
                Ok(StreamOutcome::new().activity(activity(&id, "ada")))
            }
        },
    )
    .config(ServiceConfig {
        stream_concurrency: 3,
        ..fast_config()
    });
    let h = harness(pool.clone(), service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let worker = {
        let h = h.clone();
        tokio::spawn(async move { h.process(run.id).await })
    };
    eventually(Duration::from_secs(30), "3 streams in flight", || async {
        (in_flight.load(Ordering::SeqCst) == 3).then_some(())
    })
    .await;

    server.stop("fast");
    gate.fire();
    eventually(Duration::from_secs(30), "the pages fetched", || async {
        (returned.load(Ordering::SeqCst) == 3).then_some(())
    })
    .await;
    // the outage lasts well past the commits' connection timeout: they fail
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.start();
    let back = tokio::time::Instant::now();

    let outcome = tokio::time::timeout(Duration::from_secs(30), worker)
        .await
        .expect("the run did not go on after the database came back")
        .unwrap();
    assert_eq!(outcome, RunOutcome::Processed);
    assert!(
        back.elapsed() < Duration::from_secs(10),
        "resumed {:?} after the database answered (the lease is 30 s)",
        back.elapsed()
    );
    let run = h.run(run.id).await;
    assert_eq!(run.state, RunState::Processed);
    assert!(
        run.attempt >= 2,
        "the run was handed back and claimed again"
    );
    let streams = h.streams(run.id).await;
    assert_eq!(streams.len(), 6);
    assert!(
        streams.iter().all(|s| s.retries == 0),
        "no stream charged: {:?}",
        streams
            .iter()
            .map(|s| (&s.identifier, s.retries))
            .collect::<Vec<_>>()
    );
    assert_eq!(h.activities(integration.id).await.len(), 6);
}

/// A restart of the database server cuts every lease off: a run whose lease ran out while the
/// server was down cannot be taken over before its holder had one lease from the server's start
/// to come back, and the streams it had in flight then go back uncharged. Streams started after
/// the restart are charged as ever when their worker is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_cut_off_by_a_database_restart_charges_no_stream() {
    use tributary::store::{runs, streams};
    let server = PgServer::start_new();
    let connect = || async {
        PgPoolOptions::new()
            .max_connections(4)
            .connect(&server.url())
            .await
            .unwrap()
    };
    let pool = connect().await;
    tributary::db::migrate(&pool).await.unwrap();
    let service = ScriptedService::new(PLATFORM, roots(&["s0", "s1", "s2"]), |call| async move {
        Ok(StreamOutcome::new().activity(activity(&call.stream.identifier, "ada")))
    });
    let h = harness(pool.clone(), service);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let long = Duration::from_secs(60);
    let first = runs::claim(&pool, run.id, "a", long)
        .await
        .unwrap()
        .unwrap();
    runs::save_preprocessed(
        &pool,
        &first.lease(),
        &json!({}),
        None,
        &roots(&["s0", "s1", "s2"]),
        0,
    )
    .await
    .unwrap();
    assert_eq!(
        streams::claim_due(&pool, &first.lease(), 2)
            .await
            .unwrap()
            .len(),
        2
    );

    // the claim of the streams does not wait for its flush; the next durable commit (here a
    // heartbeat) flushes it
    runs::heartbeat(&pool, &first.lease(), long).await.unwrap();

    // the server crashes and comes back; meanwhile the lease ran out
    pool.close().await;
    server.stop("immediate");
    server.start();
    let pool = connect().await;
    sqlx::query("UPDATE integration_runs SET lease_expires_at = now() - interval '1 second'")
        .execute(&pool)
        .await
        .unwrap();
    assert!(
        runs::claim(&pool, run.id, "b", long)
            .await
            .unwrap()
            .is_none(),
        "taken over before its holder had a lease to come back"
    );
    // a lease later (a short one here), another worker may take it over: nothing charged
    let short = Duration::from_millis(300);
    let second = eventually(Duration::from_secs(30), "the run taken over", || async {
        runs::claim(&pool, run.id, "b", short).await.unwrap()
    })
    .await;
    let rescued = streams::rescue_abandoned(&pool, &second.lease(), 5, &abandoned())
        .await
        .unwrap();
    assert_eq!(
        rescued,
        streams::Abandoned {
            charged: 0,
            cut_off_by_restart: 2
        }
    );
    let rows = streams::list(&pool, run.id).await.unwrap();
    assert!(
        rows.iter()
            .all(|s| s.retries == 0 && s.state == streams::StreamState::Pending),
        "{:?}",
        rows.iter()
            .map(|s| (&s.identifier, &s.state, s.retries))
            .collect::<Vec<_>>()
    );

    // a stream started after the restart, its worker gone: charged
    assert_eq!(
        streams::claim_due(&pool, &second.lease(), 1)
            .await
            .unwrap()
            .len(),
        1
    );
    let third = eventually(
        Duration::from_secs(30),
        "the run taken over again",
        || async { runs::claim(&pool, run.id, "c", short).await.unwrap() },
    )
    .await;
    let rescued = streams::rescue_abandoned(&pool, &third.lease(), 5, &abandoned())
        .await
        .unwrap();
    assert_eq!(
        rescued,
        streams::Abandoned {
            charged: 1,
            cut_off_by_restart: 0
        }
    );
}

fn abandoned() -> tributary::ErrorRecord {
    tributary::ErrorRecord {
        kind: tributary::error::ErrorKind::Abandoned,
        hook: "process_stream".into(),
        message: "abandoned".into(),
        chain: vec!["abandoned".into()],
        failures: 1,
        at: chrono::Utc::now(),
    }
}

/// A stream's claim undone under the worker (a claim is committed without waiting for its flush,
/// and a crash of the database undoes it): its write finds the claim gone while the run is still
/// this attempt's. The stream runs again in the same attempt; the run is not given up as lost.
#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_stream_claim_undone_by_a_database_crash_runs_the_stream_again(pool: sqlx::PgPool) {
    let (running, undone) = (Signal::new(), Signal::new());
    let (running_tx, undone_rx) = (running.clone(), undone.clone());
    let service = ScriptedService::new(PLATFORM, roots(&["s"]), move |call| {
        let (running, undone) = (running_tx.clone(), undone_rx.clone());
        async move {
            if call.call == 1 {
                running.fire();
                undone.wait().await;
            }
            Ok(StreamOutcome::new().activity(activity(&call.call.to_string(), "ada")))
        }
    })
    .config(fast_config());
    let h = harness(pool.clone(), service);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let processing = tokio::spawn({
        let h = h.clone();
        async move { h.process(run.id).await }
    });
    running.wait().await;
    // what crash recovery leaves of an unflushed claim: the stream pending, as before it
    let undone_rows = sqlx::query(
        "UPDATE integration_streams SET state = 'pending', claimed_attempt = NULL, started_at = NULL
         WHERE run_id = $1 AND state = 'processing'",
    )
    .bind(run.id)
    .execute(&pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(undone_rows, 1);
    undone.fire();

    assert_eq!(processing.await.unwrap(), RunOutcome::Processed);
    let streams = h.streams(run.id).await;
    assert_eq!(streams.len(), 1);
    assert_eq!(
        (streams[0].retries, streams[0].activities_created),
        (0, 1),
        "no retry charged; only the second pass's outcome written"
    );
    let stored: Vec<String> = sqlx::query_scalar("SELECT source_id FROM activities")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(stored, ["act-2"], "the first pass wrote nothing");
}
