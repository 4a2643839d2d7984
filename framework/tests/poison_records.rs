//! Records PostgreSQL cannot store as given: a NUL is stripped (and the record says so); a key too
//! long for its index, or a value the database refuses, ends only its own stream in `error` on
//! the first attempt, with the field or the SQLSTATE stored; the run-level variant ends the run.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{TimeZone, Utc};
use common::*;
use serde_json::json;
use sqlx::PgPool;
use tributary::store::runs::RunState;
use tributary::store::streams::StreamState;
use tributary::testkit::ScriptedService;
use tributary::{Activity, ErrorKind, Member, NewStream, RunOutcome, StreamOutcome};

const FOUR: [&str; 4] = ["a", "b", "c", "d"];

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_nul_in_one_streams_records_is_stripped_and_the_record_says_so(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&FOUR), |call| async move {
        let id = call.stream.identifier.clone();
        let mut outcome = StreamOutcome::new().activity(activity(&id, "ada"));
        if id == "b" {
            let poisoned = Activity::new(
                "act-b\0x",
                "post",
                at(1),
                Member::new("user-\0nul", "nul\0name").display_name("N\0L"),
            )
            .title("a\0title")
            .body("body with \0 a NUL")
            .attributes(json!({"k\0ey": "v\0alue", "n": 1}));
            outcome = outcome
                .activity(poisoned)
                .last_record(json!({"text": "last\0"}), None)
                .child(NewStream::new("b-child\0", json!({"q": "x\0y"})));
        }
        Ok(outcome)
    })
    .config(fast_config());
    let h = harness(pool, service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let (outcomes, run) = h.run_to_end(run.id).await;
    assert_eq!(
        run.state,
        RunState::Processed,
        "{outcomes:?} {:?}",
        run.error
    );
    assert_eq!(run.attempt, 1, "processed on the first attempt");

    let streams = h.streams(run.id).await;
    assert_eq!(streams.len(), 5, "the child was stored too");
    for stream in &streams {
        assert_eq!(
            stream.state,
            StreamState::Processed,
            "{}",
            stream.identifier
        );
        assert_eq!(stream.retries, 0, "{}: no retry charged", stream.identifier);
    }
    assert!(streams.iter().any(|s| s.identifier == "b-child"));
    let activities = h.activities(integration.id).await;
    assert_eq!(
        activities.len(),
        6,
        "four roots, the poisoned one, the child's"
    );
    let stripped = activities.iter().find(|a| a.source_id == "act-bx").unwrap();
    assert_eq!(stripped.body.as_deref(), Some("body with  a NUL"));
    assert_eq!(stripped.title.as_deref(), Some("atitle"));
    assert_eq!(stripped.member_source_id, "user-nul");
    assert_eq!(stripped.attributes["key"], json!("value"));
    assert_eq!(
        stripped.attributes["nul_stripped"],
        json!([
            "source_id",
            "member.source_id",
            "title",
            "body",
            "attributes"
        ])
    );
    let member = h
        .members(PLATFORM)
        .await
        .into_iter()
        .find(|m| m.source_id == "user-nul")
        .unwrap();
    assert_eq!(member.username, "nulname");
    assert_eq!(
        member.attributes["nul_stripped"],
        json!(["source_id", "username", "display_name"])
    );
    let untouched = activities.iter().find(|a| a.source_id == "act-a").unwrap();
    assert!(untouched.attributes.get("nul_stripped").is_none());
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_source_id_too_long_for_its_index_ends_only_its_stream_on_the_first_attempt(
    pool: PgPool,
) {
    let service = ScriptedService::new(PLATFORM, roots(&FOUR), |call| async move {
        let id = call.stream.identifier.clone();
        if id == "c" {
            let long = "x".repeat(3000);
            return Ok(StreamOutcome::new()
                .activity(activity("c-ok", "ada"))
                .activity(activity(&long, "ada")));
        }
        Ok(StreamOutcome::new().activity(activity(&id, "ada")))
    })
    .config(fast_config());
    let h = harness(pool, service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let (outcomes, run) = h.run_to_end(run.id).await;
    assert_eq!(run.state, RunState::Error, "{outcomes:?}");
    assert_eq!(run.attempt, 1, "no lease expired, no second attempt");

    let streams = h.streams(run.id).await;
    for stream in &streams {
        // the bad stream's one failure is its own; no other stream is charged
        let failures = i32::from(stream.identifier == "c");
        assert_eq!(stream.retries, failures, "{}", stream.identifier);
        let want = if stream.identifier == "c" {
            StreamState::Error
        } else {
            StreamState::Processed
        };
        assert_eq!(stream.state, want, "{}", stream.identifier);
    }
    let bad = streams.iter().find(|s| s.identifier == "c").unwrap();
    let error = bad.error_record().unwrap();
    assert_eq!(error.kind, ErrorKind::Fatal);
    assert_eq!(error.failures, 1);
    assert!(
        error.message.contains("activities[1].source_id")
            && error.message.contains("3004 bytes")
            && error.message.contains("2000"),
        "{}",
        error.message
    );
    assert!(
        run.error.as_ref().unwrap().to_string().contains("`c`"),
        "the run names the stream: {:?}",
        run.error
    );
    assert_eq!(
        source_ids(&h.activities(integration.id).await),
        ["act-a", "act-b", "act-d"],
        "the refused outcome wrote nothing; the others are whole"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_page_token_too_long_is_refused_at_the_outcome(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["a", "b"]), |call| async move {
        let id = call.stream.identifier.clone();
        let mut outcome = StreamOutcome::new().activity(activity(&id, "ada"));
        if id == "a" {
            outcome = outcome.next_page(json!("t".repeat(5000)));
        }
        Ok(outcome)
    })
    .config(fast_config());
    let h = harness(pool, service);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let (_, run) = h.run_to_end(run.id).await;
    assert_eq!(run.state, RunState::Error);
    let streams = h.streams(run.id).await;
    assert_eq!(streams.len(), 2);
    let error = streams[0].error_record().unwrap();
    assert_eq!((streams[0].state, error.failures), (StreamState::Error, 1));
    assert!(
        error.message.contains("next_page") && error.message.contains("identifier"),
        "{}",
        error.message
    );
    assert_eq!(
        (streams[1].state, streams[1].retries),
        (StreamState::Processed, 0)
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_value_the_database_refuses_ends_its_stream_with_the_sqlstate(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&FOUR), |call| async move {
        let id = call.stream.identifier.clone();
        if id == "d" {
            // before 4713 BC: PostgreSQL's timestamptz cannot hold it (22008)
            let ancient = Utc.with_ymd_and_hms(-10000, 1, 1, 0, 0, 0).unwrap();
            return Ok(StreamOutcome::new().activity(Activity::new(
                "act-d",
                "post",
                ancient,
                Member::new("user-ada", "ada"),
            )));
        }
        Ok(StreamOutcome::new().activity(activity(&id, "ada")))
    })
    .config(fast_config());
    let h = harness(pool, service);
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let (_, run) = h.run_to_end(run.id).await;
    assert_eq!((run.state, run.attempt), (RunState::Error, 1));
    let streams = h.streams(run.id).await;
    for stream in &streams {
        let failures = i32::from(stream.identifier == "d");
        assert_eq!(stream.retries, failures, "{}", stream.identifier);
    }
    let bad = streams.iter().find(|s| s.identifier == "d").unwrap();
    let error = bad.error_record().unwrap();
    assert_eq!((bad.state, error.failures), (StreamState::Error, 1));
    assert!(
        error.message.contains("SQLSTATE 22008"),
        "{}",
        error.message
    );
    assert_eq!(h.activities(integration.id).await.len(), 3);
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn pipeline_data_and_settings_with_a_nul_are_stored_stripped(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["a"]), |call| async move {
        Ok(StreamOutcome::new().activity(activity(&call.stream.identifier, "ada")))
    })
    .preprocess(|ctx| ctx.set_pipeline_data(&json!({"cursor": "c\0d"})))
    .config(fast_config());
    let h = harness(pool, service);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let (_, run) = h.run_to_end(run.id).await;
    assert_eq!(run.state, RunState::Processed, "{:?}", run.error);
    assert_eq!(run.pipeline_data, json!({"cursor": "cd"}));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_root_identifier_too_long_ends_the_run_in_error_at_once(pool: PgPool) {
    let long = "r".repeat(3000);
    let service = ScriptedService::new(
        PLATFORM,
        vec![
            NewStream::new("ok", json!({})),
            NewStream::new(&long, json!({})),
        ],
        |_| async move { Ok(StreamOutcome::new()) },
    )
    .config(fast_config());
    let h = harness(pool, service);
    let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let outcome = h.process(run.id).await;
    let RunOutcome::Failed { message } = outcome else {
        panic!("expected the run to fail at once: {outcome:?}")
    };
    assert!(
        message.contains("roots[1].identifier") && message.contains("3000 bytes"),
        "{message}"
    );
    let run = h.run(run.id).await;
    assert_eq!((run.state, run.attempt), (RunState::Error, 1));
    assert!(h.streams(run.id).await.is_empty());
}
