//! An outcome's members and activities are written by one statement: what it cannot see (a member
//! another transaction inserted while it ran) is still updated, and the outbox holds the members'
//! events before the activities'.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use sqlx::PgPool;
use tributary::Member;
use tributary::StreamOutcome;
use tributary::store::records::{self, RecordScope, UpsertCounts};
use tributary::testkit::ScriptedService;

async fn scope(pool: &PgPool) -> RecordScope {
    let service = ScriptedService::new(PLATFORM, roots(&["a"]), |_| async move {
        Ok(StreamOutcome::new())
    });
    let h = harness(pool.clone(), service);
    let (integration, _) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    RecordScope {
        tenant_id: integration.tenant_id,
        platform: PLATFORM.to_owned(),
        integration_id: integration.id,
    }
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_member_inserted_by_another_transaction_meanwhile_is_still_updated(pool: PgPool) {
    let scope = scope(&pool).await;
    // another stream's transaction inserts the member and has not committed yet
    let other = insert_member_uncommitted(&pool, &scope, "user-ada", "old name").await;

    // this outcome's statement takes its snapshot, then waits on the other's insert
    let writer = {
        let (pool, scope) = (pool.clone(), scope.clone());
        tokio::spawn(async move {
            let mut conn = pool.acquire().await.unwrap();
            let ada = Member::new("user-ada", "new name");
            records::upsert(&mut conn, &scope, &[ada], &[activity("1", "bob")])
                .await
                .unwrap()
        })
    };
    member_insert_waiting(&pool).await;
    other.commit().await.unwrap();

    let counts = writer.await.unwrap();
    assert_eq!(
        counts,
        UpsertCounts {
            members_created: 1, // bob, the activity's member
            members_updated: 1, // ada, inserted by the other transaction
            activities_created: 1,
            activities_updated: 0,
        }
    );
    assert_eq!(username(&pool, "user-ada").await, "new name");
    assert_eq!(
        member_updates(&pool, "user-ada").await,
        1,
        "its change wrote its event"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_members_events_come_before_the_activities_events(pool: PgPool) {
    let scope = scope(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    records::upsert(
        &mut conn,
        &scope,
        &[],
        &[activity("1", "zed"), activity("2", "amy")],
    )
    .await
    .unwrap();
    // a second outcome: amy renamed, one new activity
    let (members, activities) = ([Member::new("user-amy", "Amy")], [activity("3", "bob")]);
    let counts = records::upsert(&mut conn, &scope, &members, &activities)
        .await
        .unwrap();
    assert_eq!(
        (counts.members_created, counts.members_updated),
        (1, 1),
        "bob new, amy renamed"
    );
    let order: Vec<String> = sqlx::query_scalar("SELECT event_type FROM events ORDER BY pos")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        order,
        [
            "member.created",
            "member.created",
            "activity.created",
            "activity.created",
            "member.created",
            "member.updated",
            "activity.created",
        ]
    );
    // the same records again change nothing
    let again = records::upsert(&mut conn, &scope, &members, &activities)
        .await
        .unwrap();
    assert_eq!(again, UpsertCounts::default());
}
