//! A subscription's signing secret is stored sealed with the credentials key. Alone in its test
//! binary: it installs the process's keyring, which any other test touching credentials or
//! secrets would otherwise have set first, from the environment.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sqlx::PgPool;
use tributary::subscriptions::{self, SubscriptionError, SubscriptionRequest, Target};

const TENANT: uuid::Uuid = uuid::Uuid::from_u128(0x7e5a);

fn webhook(url: &str) -> SubscriptionRequest {
    SubscriptionRequest::new(
        TENANT,
        "t",
        Target::Webhook {
            url: url.to_owned(),
            secret: None,
        },
    )
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn signing_secrets_are_stored_sealed_with_the_credentials_key(pool: PgPool) {
    use tributary::keyring::{self, Keyring};
    let key = Keyring::generate_key();
    assert!(
        keyring::install(Keyring::new(&key, &[]).unwrap()),
        "no keyring was in use before"
    );
    let created = subscriptions::create(&pool, webhook("https://crm.example/hook"))
        .await
        .unwrap();
    let secret = created.secret.unwrap();
    let id = created.subscription.id;
    let stored: String = sqlx::query_scalar("SELECT secret FROM subscriptions WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!stored.contains(secret.expose()), "{stored}");
    assert!(stored.contains("$encrypted"), "{stored}");
    assert_eq!(
        subscriptions::signing_secrets(&pool, id).await.unwrap(),
        [secret.expose().to_owned()]
    );
    let new = subscriptions::rotate_secret(&pool, id, None, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        subscriptions::signing_secrets(&pool, id).await.unwrap(),
        [new.expose().to_owned(), secret.expose().to_owned()]
    );
    // a sealed secret copied to another subscription does not open there
    let other = subscriptions::create(&pool, webhook("https://crm.example/other"))
        .await
        .unwrap();
    sqlx::query("UPDATE subscriptions SET secret = $1 WHERE id = $2")
        .bind(&stored)
        .bind(other.subscription.id)
        .execute(&pool)
        .await
        .unwrap();
    let error = subscriptions::signing_secrets(&pool, other.subscription.id)
        .await
        .unwrap_err();
    assert!(matches!(error, SubscriptionError::Key(_)), "{error:?}");
}
