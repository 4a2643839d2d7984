//! The window a check reads, per source: a source's checkpoint moves forward only when a run read
//! all of it successfully, so a source that keeps failing is read again from where it failed while
//! the healthy ones stay incremental.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use serde_json::json;
use sqlx::PgPool;
use tributary::store::runs::RunState;
use tributary::testkit::{Harness, ScriptedService};
use tributary::{IntegrationError, NewStream, ServiceConfig, StreamOutcome};

type Seen = Arc<Mutex<BTreeMap<String, Option<DateTime<Utc>>>>>;

/// Two roots: `a`, and `repo`, which finds two children, `stars` (a source of its own) and
/// `issues` (part of `repo`). The streams named in `failing` fail for good. Every call records
/// the window its stream reads.
fn service(failing: Arc<Mutex<Vec<String>>>, seen: Seen) -> ScriptedService {
    ScriptedService::new(PLATFORM, roots(&["a", "repo"]), move |call| {
        let failing = failing.clone();
        let seen = seen.clone();
        async move {
            let stream = &call.stream;
            let window = call.ctx.window(stream);
            seen.lock()
                .unwrap()
                .insert(stream.identifier.clone(), window.since);
            if failing.lock().unwrap().contains(&stream.identifier) {
                return Err(IntegrationError::fatal(format!(
                    "{} is broken",
                    stream.identifier
                )));
            }
            Ok(match stream.identifier.as_str() {
                "repo" => StreamOutcome::new()
                    .child(NewStream::new("stars", json!({})).source("stars:acme"))
                    .child(NewStream::new("issues", json!({}))),
                other => StreamOutcome::new().activity(activity(other, "ada")),
            })
        }
    })
    .config(ServiceConfig {
        check_overlap: Duration::from_secs(600),
        ..fast_config()
    })
}

async fn checkpoints(h: &Harness, integration: uuid::Uuid) -> BTreeMap<String, DateTime<Utc>> {
    sqlx::query_as::<_, (String, DateTime<Utc>)>(
        "SELECT source, read_from FROM source_checkpoints WHERE integration_id = $1",
    )
    .bind(integration)
    .fetch_all(&h.pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn each_source_is_read_from_its_own_last_success(pool: PgPool) {
    let failing = Arc::new(Mutex::new(Vec::new()));
    let seen: Seen = Arc::default();
    let h = harness(pool, service(failing.clone(), seen.clone()));
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let (_, onboarding) = h.run_to_end(run.id).await;
    assert_eq!(onboarding.state, RunState::Processed);
    assert!(
        seen.lock().unwrap().values().all(Option::is_none),
        "onboarding reads everything"
    );
    let started = onboarding.started_at.unwrap();
    let sources = checkpoints(&h, integration.id).await;
    assert_eq!(
        sources,
        [
            ("a".to_owned(), started),
            ("repo".to_owned(), started),
            ("stars:acme".to_owned(), started)
        ]
        .into(),
        "a root is its own source; a child declares one or keeps its parent's"
    );

    // a check in which `stars` fails for good
    *failing.lock().unwrap() = vec!["stars".to_owned()];
    seen.lock().unwrap().clear();
    let first = h.check_to_end(integration.id).await;
    assert_eq!(first.run.state, RunState::Error);
    let overlap = chrono::Duration::minutes(10);
    let window_of = |id: &str| seen.lock().unwrap()[id];
    assert_eq!(window_of("a"), Some(started - overlap));
    assert_eq!(window_of("stars"), Some(started - overlap));
    assert_eq!(
        window_of("issues"),
        Some(started - overlap),
        "issues read `repo`'s window"
    );
    let first_started = first.run.started_at.unwrap();
    let sources = checkpoints(&h, integration.id).await;
    assert_eq!(sources["a"], first_started, "the healthy sources move on");
    assert_eq!(sources["repo"], first_started);
    assert_eq!(
        sources["stars:acme"], started,
        "the failing source keeps its checkpoint"
    );

    // the next check: the failing source is read again from where it failed
    failing.lock().unwrap().clear();
    seen.lock().unwrap().clear();
    let second = h.check_to_end(integration.id).await;
    assert_eq!(second.run.state, RunState::Processed);
    assert_eq!(window_of("a"), Some(first_started - overlap));
    assert_eq!(window_of("issues"), Some(first_started - overlap));
    assert_eq!(
        window_of("stars"),
        Some(started - overlap),
        "stars is read from its last success"
    );
    let sources = checkpoints(&h, integration.id).await;
    let second_started = second.run.started_at.unwrap();
    assert!(
        sources.values().all(|at| *at == second_started),
        "{sources:?}"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_source_never_read_successfully_is_read_whole_and_onboarding_reads_everything(
    pool: PgPool,
) {
    let failing = Arc::new(Mutex::new(vec!["a".to_owned()]));
    let seen: Seen = Arc::default();
    let h = harness(pool, service(failing.clone(), seen.clone()));
    let (integration, run) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    let (_, onboarding) = h.run_to_end(run.id).await;
    assert_eq!(
        onboarding.state,
        RunState::Error,
        "`a` failed in the onboarding"
    );
    assert!(!checkpoints(&h, integration.id).await.contains_key("a"));

    failing.lock().unwrap().clear();
    seen.lock().unwrap().clear();
    let check = h.check_to_end(integration.id).await;
    assert_eq!(check.run.state, RunState::Processed);
    let seen = seen.lock().unwrap();
    assert_eq!(seen["a"], None, "never read successfully: read whole");
    assert!(
        seen["repo"].is_some(),
        "read successfully: only what is new"
    );
}
