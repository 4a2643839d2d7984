//! `rotate-credentials-key` as an operator runs it: a key made with `--generate`, credentials
//! `connect-integration` sealed with an old key (or stored in the clear) sealed with the new one.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use sqlx::PgPool;
use tributary::keyring::Keyring;
use uuid::Uuid;

fn database_url(pool: &PgPool) -> String {
    let o = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap()
    )
}

async fn run(pool: &PgPool, path: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = tokio::process::Command::new(path)
        .args(args)
        .env("DATABASE_URL", database_url(pool))
        .env_remove("TRIBUTARY_SECRET_KEY")
        .env_remove("TRIBUTARY_SECRET_KEY_FILE")
        .env_remove("TRIBUTARY_SECRET_KEY_PREVIOUS")
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

async fn stored(pool: &PgPool) -> Vec<(Uuid, Value)> {
    sqlx::query_as("SELECT id, credentials FROM integrations ORDER BY created_at")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn rotation_seals_old_and_plaintext_credentials_with_the_new_key(pool: PgPool) {
    let rotate = env!("CARGO_BIN_EXE_rotate-credentials-key");
    let connect = env!("CARGO_BIN_EXE_connect-integration");
    let (code, old_key) = run(&pool, rotate, &["--generate"], &[]).await;
    let old_key = old_key.trim().to_owned();
    assert_eq!((code, old_key.len()), (0, 64), "{old_key}");
    let (_, new_key) = run(&pool, rotate, &["--generate"], &[]).await;
    let new_key = new_key.trim().to_owned();
    assert_ne!(old_key, new_key);

    let settings = r#"{"base_url":"http://127.0.0.1:9","per_page":5}"#;
    let creds = r#"{"token":"tok-rotate-me-123456"}"#;
    let args = ["-p", "example-forum", "-s", settings];
    let (code, out) = run(
        &pool,
        connect,
        &args,
        &[
            ("TRIBUTARY_SECRET_KEY", &old_key),
            ("TRIBUTARY_CREDENTIALS", creds),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&pool, connect, &args, &[("TRIBUTARY_CREDENTIALS", creds)]).await;
    assert_eq!(code, 0, "in the clear without a key: {out}");
    let before = stored(&pool).await;
    let old = Keyring::new(&old_key, &[]).unwrap();
    assert_eq!(Keyring::sealed_with(&before[0].1), old.current_key_id());
    assert_eq!(Keyring::sealed_with(&before[1].1), None);

    let (code, out) = run(&pool, rotate, &[], &[("TRIBUTARY_SECRET_KEY", &new_key)]).await;
    assert_eq!(
        code, 1,
        "without the old key it cannot open the first: {out}"
    );
    assert!(out.contains("does not have"), "{out}");

    let (code, out) = run(
        &pool,
        rotate,
        &[],
        &[
            ("TRIBUTARY_SECRET_KEY", &new_key),
            ("TRIBUTARY_SECRET_KEY_PREVIOUS", &old_key),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let new = Keyring::new(&new_key, &[]).unwrap();
    for (id, value) in stored(&pool).await {
        assert_eq!(Keyring::sealed_with(&value), new.current_key_id());
        assert_eq!(
            new.open(id, &value).unwrap(),
            json!({"token": "tok-rotate-me-123456"})
        );
    }
    assert!(!out.contains(&new_key) && !out.contains(&old_key), "{out}");
}
