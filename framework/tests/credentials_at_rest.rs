//! Credentials are sealed at rest with the process's key, bound to their integration, readable by
//! the integration that needs them, and resealed by a rotation.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use sqlx::PgPool;
use tributary::keyring::{KeyError, Keyring};
use tributary::store::integrations;
use tributary::store::runs::RunState;
use tributary::testkit::ScriptedService;
use tributary::{IntegrationError, StreamOutcome};
use uuid::Uuid;

const TOKEN: &str = "ghp_s3cr3t_at_rest_0123456789";

async fn stored(pool: &PgPool, id: Uuid) -> Value {
    sqlx::query_scalar("SELECT credentials FROM integrations WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn credentials_are_stored_sealed_and_the_integration_reads_them(pool: PgPool) {
    let service = ScriptedService::new(PLATFORM, roots(&["a"]), |call| async move {
        let token = call.ctx.credentials().secret("token");
        if token.as_ref().map(|t| t.expose()) != Some(TOKEN) {
            return Err(IntegrationError::fatal(
                "the token did not reach the integration",
            ));
        }
        Ok(StreamOutcome::new().activity(activity("1", "ada")))
    })
    .config(fast_config());
    let h = harness(pool.clone(), service);
    let kid = tributary::keyring::current()
        .current_key_id()
        .unwrap()
        .to_owned();
    let (integration, run) = h
        .connect(PLATFORM, json!({}), json!({"token": TOKEN}))
        .await
        .unwrap();

    let raw = stored(&pool, integration.id).await;
    assert!(!raw.to_string().contains(TOKEN), "{raw}");
    assert_eq!(Keyring::sealed_with(&raw), Some(kid.as_str()));
    let dump: String = sqlx::query_scalar("SELECT string_agg(t::text, ' ') FROM integrations t")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!dump.contains(TOKEN));

    let (_, run) = h.run_to_end(run.id).await;
    assert_eq!(run.state, RunState::Processed, "{:?}", run.error);

    // a sealed value copied onto another integration does not open there
    let other = h
        .connect(PLATFORM, json!({}), json!({"token": "another-token"}))
        .await
        .unwrap()
        .0;
    sqlx::query("UPDATE integrations SET credentials = $2 WHERE id = $1")
        .bind(other.id)
        .bind(&raw)
        .execute(&pool)
        .await
        .unwrap();
    let refused = integrations::get(&pool, other.id).await.unwrap_err();
    assert!(
        refused.to_string().contains("tampered with, or copied"),
        "{refused}"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn rotation_seals_plaintext_and_old_keys_with_the_current_key(pool: PgPool) {
    let h = harness(
        pool.clone(),
        ScriptedService::new(
            PLATFORM,
            roots(&[]),
            |_| async move { Ok(StreamOutcome::new()) },
        ),
    );
    let (integration, _) = h.connect(PLATFORM, json!({}), json!({})).await.unwrap();
    // credentials written before encryption was turned on
    sqlx::query("UPDATE integrations SET credentials = $2 WHERE id = $1")
        .bind(integration.id)
        .bind(json!({"token": TOKEN}))
        .execute(&pool)
        .await
        .unwrap();
    let old_key = Keyring::generate_key();
    let old = Keyring::new(&old_key, &[]).unwrap();
    let done = integrations::rotate_credentials(&pool, &old).await.unwrap();
    assert_eq!((done.resealed, done.unchanged), (1, 0));
    let sealed = stored(&pool, integration.id).await;
    assert_eq!(Keyring::sealed_with(&sealed), old.current_key_id());

    let new = Keyring::new(&Keyring::generate_key(), &[&old_key]).unwrap();
    let done = integrations::rotate_credentials(&pool, &new).await.unwrap();
    assert_eq!((done.resealed, done.unchanged), (1, 0));
    let resealed = stored(&pool, integration.id).await;
    assert_eq!(Keyring::sealed_with(&resealed), new.current_key_id());
    assert_eq!(
        new.open(integration.id, &resealed).unwrap(),
        json!({"token": TOKEN})
    );
    assert!(matches!(
        old.open(integration.id, &resealed),
        Err(KeyError::UnknownKey { .. })
    ));
    // again: nothing left to do
    let done = integrations::rotate_credentials(&pool, &new).await.unwrap();
    assert_eq!((done.resealed, done.unchanged), (0, 1));
    // a rotation without the old key refuses, naming the key it lacks
    let stranger = Keyring::new(&Keyring::generate_key(), &[]).unwrap();
    let err = integrations::rotate_credentials(&pool, &stranger)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not have"), "{err}");
}
