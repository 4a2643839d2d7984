//! The worker and credentials at rest: it refuses to start without a key unless told to run in
//! the clear, and a worker given the key processes an integration whose token is sealed.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use sqlx::PgPool;
use tributary::store::runs::RunState;

fn without_key(env: Vec<(String, String)>) -> Vec<(String, String)> {
    env.into_iter()
        .filter(|(k, _)| k != tributary::keyring::KEY_ENV)
        .collect()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_worker_without_a_key_refuses_to_start_unless_told_to_run_in_the_clear(pool: PgPool) {
    let env = without_key(worker_env(&pool, "keyless"));
    let mut keyless = Proc::spawn(WORKER, "keyless", &env);
    let (code, _) = keyless.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(code, Some(1), "{}", keyless.log());
    let log = keyless.log();
    assert!(
        log.contains("no key to encrypt credentials with")
            && log.contains("TRIBUTARY_ALLOW_PLAINTEXT_CREDENTIALS"),
        "{log}"
    );

    let malformed = with(
        worker_env(&pool, "malformed"),
        &[("TRIBUTARY_SECRET_KEY", "not-a-key".to_owned())],
    );
    let mut bad = Proc::spawn(WORKER, "malformed", &malformed);
    assert_eq!(bad.wait_exit(Duration::from_secs(30)).await.0, Some(1));
    assert!(bad.log().contains("is not a key"), "{}", bad.log());
    assert!(!bad.log().contains("not-a-key"), "the key is never printed");

    let allowed = with(
        env,
        &[("TRIBUTARY_ALLOW_PLAINTEXT_CREDENTIALS", "1".to_owned())],
    );
    let mut clear = Proc::spawn(WORKER, "in-the-clear", &allowed);
    clear
        .wait_for_log("worker started", Duration::from_secs(60))
        .await;
    assert!(
        clear.log().contains("stored in the clear"),
        "{}",
        clear.log()
    );
    clear.kill().await;
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_worker_with_the_key_processes_an_integration_whose_token_is_sealed(pool: PgPool) {
    let server = forum(Duration::ZERO).await;
    let h = harness(pool.clone());
    let (integration, run) = connect(&h, &server).await;
    let raw: String =
        sqlx::query_scalar("SELECT credentials::text FROM integrations WHERE id = $1")
            .bind(integration.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!raw.contains(server.token()), "{raw}");
    let worker = Proc::spawn(WORKER, "keyed", &worker_env(&pool, "keyed"));
    let queue = tributary::queue::PgQueue::new(pool.clone(), Default::default());
    tributary::queue::Queue::send(
        &queue,
        (&tributary::messages::Message::ContinueRun { run_id: run.id }).into(),
    )
    .await
    .unwrap();
    wait_for_run(&h, run.id, RunState::Processed, Duration::from_secs(60)).await;
    assert_eq!(
        stored_ids(&h, integration.id).await.len(),
        expected_ids(&server).len()
    );
    drop(worker);
}
