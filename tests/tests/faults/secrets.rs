//! The secret sweep: a token placed everywhere the Example Forum integration and its platform can
//! put it — the credential (sent in every request's header), a post's title and body and a reply
//! quoting it, a member's login and name, a 5xx and a 429 whose bodies echo it — the worker at
//! `RUST_LOG=trace`, then `pg_dump` of the database and every captured log line contain it zero
//! times. (Not in an identifier the integration must send back, e.g. a channel id: scrubbing
//! that would break the very requests that read it.)

use std::time::Duration;

use chrono::{TimeZone, Utc};
use sqlx::PgPool;
use tributary::testkit::{Fault, Reply};
use tributary_integrations::example_forum::fake::{FakeForum, ForumData, ForumOptions};

use crate::common::database_url;
use crate::harness::{Expect, Figures, Onboarding, Scale, seeded};
use crate::workers::Workers;

/// `pg_dump` of `url` (the system's PostgreSQL binaries, found as scripts/lib/common.sh does).
fn pg_dump(url: &str) -> String {
    let common = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("scripts/lib/common.sh");
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            r#"source "{}" && "$PGBIN/pg_dump" "$1""#,
            common.display()
        ))
        .arg("pg-dump")
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Lines of `text` that contain `needle`, at most 10.
fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.contains(needle))
        .take(10)
        .collect()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_token_placed_everywhere_appears_in_no_dump_and_no_log(pool: PgPool) {
    let (seed, mut rng) = seeded("secret sweep");
    let token = format!("tok_sweep_{:016x}{:016x}", rng.u64(..), rng.u64(..));
    let scale = Scale::standard(5);
    let mut data = ForumData::generate(scale.spec);
    let at = Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).single().unwrap();
    let author = tributary_integrations::example_forum::Author {
        id: 4242,
        login: format!("login-{token}"),
        name: Some(format!("Name {token}")),
    };
    let post = data.add_post("channel-0", author.clone(), &format!("title {token}"), at);
    data.add_reply(post, author, &format!("a reply quoting {token}"), at);
    let forum = FakeForum::start(
        data,
        ForumOptions {
            token: token.clone(),
            latency: scale.latency,
            ..ForumOptions::default()
        },
    )
    .await
    .unwrap();
    // errors that echo it: a 500 (retried, its error kept while it waits) and a 429
    let echo = format!("bad request from Bearer {token} ({token})");
    forum.server().inject_later(
        Fault::on(
            "/api/v1/channels/channel-0/posts",
            1,
            Reply::error(500, &echo),
        )
        .after(1),
    );
    forum.server().inject_later(
        Fault::on(
            "/api/v1/channels/channel-1/replies",
            1,
            Reply::error(429, &echo).header("Retry-After", "1"),
        )
        .after(1),
    );
    let url = database_url(&pool);
    let base = forum.base_url();
    let onboarding = Onboarding::connect(pool.clone(), vec![forum], &[base], scale.per_page).await;
    let mut workers = Workers::new(&pool, &url, "sweep").env(&[("RUST_LOG", "trace".to_owned())]);
    workers.spawn();
    onboarding.enqueue_all(onboarding.pg_queue().as_ref()).await;
    onboarding.wait_settled(Duration::from_secs(180)).await;
    workers.stop_all().await;

    let dump = pg_dump(&url);
    let logs = workers.logs();
    assert!(
        logs.len() > 10_000,
        "the trace log was captured ({} bytes)",
        logs.len()
    );
    let in_dump = dump.matches(&token).count();
    let in_logs = logs.matches(&token).count();
    let figures = Figures {
        scenario: "secret sweep".into(),
        seed,
        faults: format!(
            "token in credential, post, reply, member, 5xx and 429 bodies; trace log {} KiB, dump {} KiB: {in_dump} in the dump, {in_logs} in the logs",
            logs.len() / 1024,
            dump.len() / 1024
        ),
        ..Figures::default()
    };
    onboarding.check(&Expect::default(), figures).await;
    assert_eq!(
        (in_dump, in_logs),
        (0, 0),
        "the token leaked; dump lines: {:#?}\nlog lines: {:#?}",
        lines_with(&dump, &token),
        lines_with(&logs, &token)
    );
}
