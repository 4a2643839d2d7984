//! Issue 13 with the real binaries: `subscriptions` as an operator runs it, and a
//! `dispatch-events` process killed (SIGKILL) mid-batch, then restarted.
#![allow(clippy::unwrap_used)]

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tributary::subscriptions::{self, SubscriptionRequest, Target};
use tributary::testkit::{Answer, WebhookReceiver};
use uuid::Uuid;

const TENANT: Uuid = Uuid::from_u128(0x5ca1);

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

async fn emit(pool: &PgPool, n: i64) {
    sqlx::query(
        "INSERT INTO events (tenant_id, platform, event_type, data)
         SELECT $1, 'slack', 'activity.created', jsonb_build_object('n', g)
         FROM generate_series(1, $2) g",
    )
    .bind(TENANT)
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
}

async fn subscriptions_cmd(pool: &PgPool, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_subscriptions"))
        .args(args)
        .env("DATABASE_URL", database_url(pool))
        .env_remove("TRIBUTARY_SIGNING_SECRET")
        .output()
        .await
        .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_subscriptions_command_manages_subscriptions_and_refuses_bad_input(pool: PgPool) {
    let tenant = TENANT.to_string();
    let created = subscriptions_cmd(
        &pool,
        &[
            "create",
            "--tenant",
            &tenant,
            "--name",
            "crm",
            "--url",
            "https://crm.example/hook",
            "--platforms",
            "github,slack",
            "--batch-size",
            "50",
            "--linger",
            "200ms",
        ],
    )
    .await;
    assert!(created.status.success(), "{}", err(&created));
    let text = out(&created);
    let id: Uuid = text
        .lines()
        .find_map(|l| l.strip_prefix("subscription "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let secret = text
        .lines()
        .find_map(|l| l.strip_prefix("signing secret: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(secret.starts_with("whsec_"));

    let listed = out(&subscriptions_cmd(&pool, &["list", "--tenant", &tenant]).await);
    assert!(
        listed.contains("'crm' active webhook https://crm.example/hook platforms=github,slack")
    );
    assert!(!listed.contains(&secret), "secrets are never listed");

    let id = id.to_string();
    for (args, expect) in [
        (vec!["pause", &id], "paused"),
        (vec!["resume", &id], "resumed"),
        (
            vec!["replay", &id, "--from-seq", "1"],
            "delivering again after seq 0",
        ),
        (vec!["redrive", &id], "0 dead letter(s) queued"),
    ] {
        let o = subscriptions_cmd(&pool, &args).await;
        assert!(o.status.success(), "{args:?}: {}", err(&o));
        assert!(out(&o).contains(expect), "{args:?}: {}", out(&o));
    }
    let rotated = subscriptions_cmd(&pool, &["rotate-secret", &id, "--overlap", "1h"]).await;
    assert!(out(&rotated).contains("new signing secret whsec_"));
    assert!(!out(&rotated).contains(&secret));

    let unknown = Uuid::new_v4().to_string();
    let o = subscriptions_cmd(&pool, &["pause", &unknown]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains(&format!("subscription {unknown} does not exist")));
    let o = subscriptions_cmd(
        &pool,
        &[
            "create",
            "--tenant",
            &tenant,
            "--name",
            "x",
            "--url",
            "http://crm.example/hook",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("must be https"), "{}", err(&o));
    let o = subscriptions_cmd(&pool, &["replay", &id]).await;
    assert_eq!(
        o.status.code(),
        Some(2),
        "clap refuses a replay without a start"
    );

    let o = subscriptions_cmd(&pool, &["delete", &id]).await;
    assert!(o.status.success());
    assert!(out(&subscriptions_cmd(&pool, &["list"]).await).is_empty());
}

fn dispatcher(pool: &PgPool) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_dispatch-events"))
        .args([
            "--lease",
            "3s",
            "--request-timeout",
            "2s",
            "--poll-interval",
            "20ms",
        ])
        .args(["--retries", "100ms,100ms"])
        .env("DATABASE_URL", database_url(pool))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_dispatcher_killed_mid_batch_loses_nothing_and_its_batch_is_delivered_again(
    pool: PgPool,
) {
    let receiver = WebhookReceiver::start().await;
    receiver.script([Answer::Hang]);
    let mut request = SubscriptionRequest::new(
        TENANT,
        "crash",
        Target::Webhook {
            url: receiver.url(),
            secret: None,
        },
    );
    request.batch_size = 5;
    let created = subscriptions::create(&pool, request).await.unwrap();
    receiver.secrets([created.secret.unwrap().expose().to_owned()]);
    emit(&pool, 12).await;

    let mut first = dispatcher(&pool);
    receiver.wait_for_requests(1, Duration::from_secs(60)).await;
    first.start_kill().unwrap(); // SIGKILL, mid-batch
    first.wait().await.unwrap();
    receiver.release();
    let killed_at = Instant::now();

    let mut second = dispatcher(&pool);
    let until = Instant::now() + Duration::from_secs(60);
    while receiver.accepted_count() < 12 {
        assert!(Instant::now() < until, "{:?}", receiver.received());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // the last acknowledgement is written after the receiver answered
    while subscriptions::get(&pool, created.subscription.id)
        .await
        .unwrap()
        .cursor_seq
        < 12
    {
        assert!(Instant::now() < until, "the cursor never reached 12");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    second.start_kill().unwrap();
    second.wait().await.unwrap();

    let requests = receiver.received();
    let seqs: Vec<Vec<i64>> = requests
        .iter()
        .map(|r| r.events().iter().map(|e| e.1).collect())
        .collect();
    assert_eq!(
        seqs,
        [
            vec![1, 2, 3, 4, 5],
            vec![1, 2, 3, 4, 5],
            vec![6, 7, 8, 9, 10],
            vec![11, 12]
        ],
        "the interrupted batch came again, then the rest, in order"
    );
    assert_eq!(
        requests[0].webhook_id, requests[1].webhook_id,
        "same idempotency key"
    );
    assert!(requests.iter().all(|r| r.signature_valid));
    assert!(
        killed_at.elapsed() >= Duration::from_secs(2),
        "the batch waited for the dead dispatcher's lease"
    );
    let sub = subscriptions::get(&pool, created.subscription.id)
        .await
        .unwrap();
    assert_eq!((sub.cursor_seq, sub.delivered_count), (12, 12));
}
