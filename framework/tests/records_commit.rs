//! An outcome of records and no new streams commits in one statement: its records are written only
//! while the lease holds the run and the stream, and the stream is marked with them; a member
//! another transaction inserted meanwhile is still updated before the stream is marked.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use sqlx::PgPool;
use tributary::store::outcomes::{self, Completed, Completion, FinishRun};
use tributary::store::records::{RecordScope, UpsertCounts};
use tributary::store::streams::{StreamRow, StreamState};
use tributary::store::{Lease, StoreError, claims, runs};
use tributary::testkit::ScriptedService;
use tributary::{Activity, Member, StreamOutcome};

struct Setup {
    lease: Lease,
    scope: RecordScope,
    /// The claimed roots `a` and `b`.
    streams: Vec<StreamRow>,
}

/// A run claimed by worker "w", its roots `a` and `b` stored and claimed.
async fn setup(pool: &PgPool) -> Setup {
    let service = ScriptedService::new(PLATFORM, roots(&["a"]), |_| async move {
        Ok(StreamOutcome::new())
    });
    let h = harness(pool.clone(), service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let lease = claims::claim(pool, run.id, "w", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap()
        .run
        .lease();
    let (_, streams) =
        runs::save_preprocessed(pool, &lease, &json!({}), None, &roots(&["a", "b"]), 4)
            .await
            .unwrap();
    Setup {
        lease,
        scope: RecordScope {
            tenant_id: integration.tenant_id,
            platform: PLATFORM.to_owned(),
            integration_id: integration.id,
        },
        streams,
    }
}

fn with_records<'a>(
    stream: &StreamRow,
    scope: &'a RecordScope,
    members: Vec<Member>,
    activities: Vec<Activity>,
) -> Completion<'a> {
    Completion {
        stream_id: stream.id,
        scope,
        members,
        activities,
        new_streams: Vec::new(),
        last_record: Some(json!({"id": "last"})),
        last_record_timestamp: Some(at(5)),
        error: None,
        summarize: false,
        finish: None,
    }
}

async fn stream(pool: &PgPool, id: uuid::Uuid) -> StreamRow {
    let run_id: uuid::Uuid =
        sqlx::query_scalar("SELECT run_id FROM integration_streams WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap();
    tributary::store::streams::list(pool, run_id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.id == id)
        .unwrap()
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn an_outcome_of_records_writes_them_and_marks_its_stream(pool: PgPool) {
    let s = setup(&pool).await;
    let mut outcome = with_records(
        &s.streams[0],
        &s.scope,
        vec![Member::new("user-ada", "ada")],
        vec![activity("1", "bob"), activity("2", "ada")],
    );
    outcome.summarize = true;
    let done = outcomes::complete(&pool, &s.lease, &outcome).await.unwrap();
    assert_eq!(
        done.records,
        UpsertCounts {
            members_created: 2,
            members_updated: 0,
            activities_created: 2,
            activities_updated: 0,
        }
    );
    assert_eq!(done.new_streams, 0);
    let summary = done.summary.expect("asked for");
    assert_eq!((summary.open, summary.processing), (1, 1), "b is in flight");

    let a = stream(&pool, s.streams[0].id).await;
    assert_eq!(a.state, StreamState::Processed);
    assert_eq!(a.claimed_attempt, None);
    assert_eq!(
        (a.records, a.members_created, a.activities_created),
        (3, 2, 2),
        "its figures are the statement's"
    );
    assert_eq!(a.last_record, Some(json!({"id": "last"})));
    assert_eq!(a.last_record_timestamp, Some(at(5)));
    assert_eq!(count(&pool, "events").await, 4, "2 members, 2 activities");

    // b: the same records, one of them changed, and an error kept with them
    let mut changed = activity("2", "ada");
    changed.title = Some("edited".to_owned());
    let broken = fatal("processor", "pagination does not advance");
    let mut outcome = with_records(
        &s.streams[1],
        &s.scope,
        vec![],
        vec![activity("1", "bob"), changed],
    );
    outcome.error = Some(&broken);
    outcome.summarize = true;
    let done = outcomes::complete(&pool, &s.lease, &outcome).await.unwrap();
    assert_eq!(
        (
            done.records.activities_created,
            done.records.activities_updated
        ),
        (0, 1)
    );
    let summary = done.summary.unwrap();
    assert_eq!(
        (summary.open, summary.errored),
        (0, 1),
        "the last commit counts its own error"
    );
    let b = stream(&pool, s.streams[1].id).await;
    assert_eq!(b.state, StreamState::Error);
    assert_eq!(b.activities_updated, 1);
    assert_eq!(count(&pool, "events").await, 5, "one more: the edit");

    // a stream commits once: its second commit writes nothing
    let again = outcomes::complete(
        &pool,
        &s.lease,
        &with_records(&s.streams[0], &s.scope, vec![], vec![activity("3", "cy")]),
    )
    .await;
    assert!(
        matches!(again, Err(StoreError::LeaseLost { .. })),
        "{again:?}"
    );
    assert_eq!(count(&pool, "activities").await, 2);
    assert_eq!(count(&pool, "members").await, 2);
    assert_eq!(count(&pool, "events").await, 5);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn records_are_not_written_once_the_lease_or_the_claim_is_gone(pool: PgPool) {
    let s = setup(&pool).await;
    // a's claim undone (a crash of the database): the stream is pending again
    sqlx::query(
        "UPDATE integration_streams SET state = 'pending', claimed_attempt = NULL WHERE id = $1",
    )
    .bind(s.streams[0].id)
    .execute(&pool)
    .await
    .unwrap();
    let records = || vec![activity("1", "bob")];
    let undone = with_records(&s.streams[0], &s.scope, vec![], records());
    let written = outcomes::complete(&pool, &s.lease, &undone).await;
    assert!(
        matches!(written, Err(StoreError::LeaseLost { .. })),
        "{written:?}"
    );
    assert_eq!(
        stream(&pool, s.streams[0].id).await.state,
        StreamState::Pending
    );

    // the run taken over by another attempt: b, still claimed by the old one, writes nothing
    sqlx::query("UPDATE integration_runs SET attempt = attempt + 1 WHERE id = $1")
        .bind(s.lease.run_id)
        .execute(&pool)
        .await
        .unwrap();
    let taken = with_records(&s.streams[1], &s.scope, vec![], records());
    let written = outcomes::complete(&pool, &s.lease, &taken).await;
    assert!(
        matches!(written, Err(StoreError::LeaseLost { .. })),
        "{written:?}"
    );
    assert_eq!(
        stream(&pool, s.streams[1].id).await.state,
        StreamState::Processing
    );
    for table in ["activities", "members", "events"] {
        assert_eq!(count(&pool, table).await, 0, "nothing in {table}");
    }
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_member_inserted_meanwhile_is_updated_before_the_stream_is_marked(pool: PgPool) {
    member_inserted_meanwhile(pool, true, false).await;
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_member_inserted_meanwhile_is_updated_and_the_last_stream_ends_the_run(pool: PgPool) {
    member_inserted_meanwhile(pool, true, true).await;
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_member_inserted_meanwhile_is_updated_when_no_summary_is_asked(pool: PgPool) {
    member_inserted_meanwhile(pool, false, false).await;
}

/// An outcome's statement misses a member another transaction inserts meanwhile: the member is
/// still updated, with its event, and the stream marked (with a summary if `summarize`; with
/// `finish`, the other stream processed first, the run ended by the same statement).
async fn member_inserted_meanwhile(pool: PgPool, summarize: bool, finish: bool) {
    let s = setup(&pool).await;
    if finish {
        let b = with_records(&s.streams[1], &s.scope, Vec::new(), Vec::new());
        outcomes::complete(&pool, &s.lease, &b).await.unwrap();
    }
    // another stream's transaction inserts the member and has not committed yet
    let other = insert_member_uncommitted(&pool, &s.scope, "user-ada", "old name").await;

    // this outcome's statement takes its snapshot, then waits on the other's insert
    let writer = {
        let (pool, lease, scope, a) = (
            pool.clone(),
            s.lease.clone(),
            s.scope.clone(),
            s.streams[0].clone(),
        );
        tokio::spawn(async move {
            let mut outcome = with_records(
                &a,
                &scope,
                vec![Member::new("user-ada", "new name")],
                vec![activity("1", "bob")],
            );
            outcome.summarize = summarize;
            outcome.finish = finish.then(FinishRun::default);
            outcomes::complete(&pool, &lease, &outcome).await.unwrap()
        })
    };
    member_insert_waiting(&pool).await;
    other.commit().await.unwrap();

    let Completed {
        records,
        summary,
        finished,
        ..
    } = writer.await.unwrap();
    assert_eq!(
        records,
        UpsertCounts {
            members_created: 1, // bob, the activity's member
            members_updated: 1, // ada, inserted by the other transaction
            activities_created: 1,
            activities_updated: 0,
        }
    );
    assert_eq!(
        summary.map(|s| s.open),
        summarize.then_some(if finish { 0 } else { 1 }),
        "b is in flight unless processed first"
    );
    let run = runs::get(&pool, s.lease.run_id).await.unwrap();
    if finish {
        assert_eq!(finished.map(|f| f.streams_processed), Some(2));
        assert_eq!(run.state, runs::RunState::Processed);
        assert_eq!((run.members_created, run.activities_created), (1, 1));
    } else {
        assert_eq!((finished, run.state), (None, runs::RunState::Processing));
    }
    assert_eq!(username(&pool, "user-ada").await, "new name");
    let a = stream(&pool, s.streams[0].id).await;
    assert_eq!(a.state, StreamState::Processed);
    assert_eq!(
        (a.records, a.members_created, a.activities_created),
        (2, 1, 1)
    );
    assert_eq!(
        member_updates(&pool, "user-ada").await,
        1,
        "its change wrote its event"
    );
}
