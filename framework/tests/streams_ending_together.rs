//! Streams of a run that end at the same moment: their commits run concurrently and neither sees
//! the other final, so the run loop decides from both summaries (or asks the run) whether every
//! stream is final. Whatever the interleaving, the run ends as its streams say: processed when
//! all are, failed when one failed, and a page one of them added is processed first.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::Barrier;
use tributary::store::streams::StreamState;
use tributary::testkit::{Harness, ScriptedService, StreamCall};
use tributary::{IntegrationError, RunOutcome, ServiceConfig, StreamOutcome};

/// Each pair of concurrent commits interleaves differently: several runs, one after another.
const RUNS: usize = 8;

/// A service of two root streams, `a` and `b`, whose first pages are released together (each
/// waits for the other at a barrier), then answered by `answer`.
fn together<F>(answer: F) -> ScriptedService
where
    F: Fn(&StreamCall) -> Result<StreamOutcome, IntegrationError> + Send + Sync + 'static,
{
    let barrier = Arc::new(Barrier::new(2));
    let answer = Arc::new(answer);
    ScriptedService::new(PLATFORM, roots(&["a", "b"]), move |call| {
        let (barrier, answer) = (barrier.clone(), answer.clone());
        async move {
            if call.stream.page_number == 1 {
                barrier.wait().await;
            }
            answer(&call)
        }
    })
    .config(config())
}

/// More stream slots than streams: the claim of the two roots finds nothing else, so their
/// commits say how the run stands.
fn config() -> ServiceConfig {
    ServiceConfig {
        stream_concurrency: 4,
        ..fast_config()
    }
}

/// Runs `RUNS` runs (an integration each) and returns each run's outcome with its streams'
/// identifiers and states.
async fn run_all(h: &Harness) -> Vec<(RunOutcome, Vec<(String, StreamState)>)> {
    let mut ends = Vec::new();
    for _ in 0..RUNS {
        let (_, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
        let outcome = h.process(run.id).await;
        let mut streams: Vec<(String, StreamState)> = h
            .streams(run.id)
            .await
            .into_iter()
            .map(|s| (s.identifier, s.state))
            .collect();
        streams.sort_by(|x, y| x.0.cmp(&y.0));
        ends.push((outcome, streams));
    }
    ends
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn two_streams_ending_together_end_the_run_processed(pool: PgPool) {
    let service =
        together(
            |call| Ok(StreamOutcome::new().activity(activity(&call.stream.identifier, "ada"))),
        );
    let h = harness(pool, service);
    for (outcome, streams) in run_all(&h).await {
        assert_eq!(outcome, RunOutcome::Processed);
        assert_eq!(
            streams,
            [
                ("a".to_owned(), StreamState::Processed),
                ("b".to_owned(), StreamState::Processed)
            ]
        );
    }
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_stream_ending_in_error_beside_another_fails_the_run(pool: PgPool) {
    // `a` asks for a page past `max_pages_per_stream`: it ends in `error` in its own commit
    let service = together(|call| {
        let outcome = StreamOutcome::new().activity(activity(&call.stream.identifier, "ada"));
        Ok(if call.stream.identifier == "a" {
            outcome.next_page(json!(2))
        } else {
            outcome
        })
    })
    .config(ServiceConfig {
        max_pages_per_stream: 1,
        ..config()
    });
    let h = harness(pool, service);
    for (outcome, streams) in run_all(&h).await {
        let RunOutcome::Failed { message } = outcome else {
            panic!("a stream in error fails the run: {outcome:?} {streams:?}")
        };
        assert!(
            message.starts_with("1 stream(s) ended in error"),
            "{message}"
        );
        assert!(streams.contains(&("b".to_owned(), StreamState::Processed)));
    }
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_stream_failing_beside_another_fails_the_run(pool: PgPool) {
    let service = together(|call| {
        if call.stream.identifier == "a" {
            Err(IntegrationError::fatal("the platform refused"))
        } else {
            Ok(StreamOutcome::new())
        }
    });
    let h = harness(pool, service);
    for (outcome, streams) in run_all(&h).await {
        assert!(
            matches!(outcome, RunOutcome::Failed { .. }),
            "{outcome:?} {streams:?}"
        );
        assert_eq!(
            streams,
            [
                ("a".to_owned(), StreamState::Error),
                ("b".to_owned(), StreamState::Processed)
            ]
        );
    }
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_page_added_beside_another_stream_is_processed_before_the_run_ends(pool: PgPool) {
    let service = together(|call| {
        let s = &call.stream;
        let outcome = StreamOutcome::new().activity(activity(
            &format!("{}-{}", s.chain_identifier, s.page_number),
            "ada",
        ));
        Ok(if s.identifier == "a" {
            outcome.next_page(json!(2))
        } else {
            outcome
        })
    });
    let h = harness(pool, service);
    for (outcome, streams) in run_all(&h).await {
        assert_eq!(outcome, RunOutcome::Processed, "{streams:?}");
        assert_eq!(streams.len(), 3, "a, its second page, b: {streams:?}");
        assert!(
            streams
                .iter()
                .all(|(_, state)| *state == StreamState::Processed),
            "{streams:?}"
        );
    }
}
