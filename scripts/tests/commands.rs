//! The operator commands as an operator runs them: real binaries, a fresh database, clear
//! refusals with their exit codes.
#![allow(clippy::unwrap_used)]

use std::process::Output;

use serde_json::json;
use sqlx::PgPool;
use tributary_integrations::example_forum::fake::{
    DatasetSpec, FakeForum, ForumData, ForumOptions,
};
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

async fn command(pool: &PgPool, bin: &str, args: &[&str]) -> Output {
    let path = match bin {
        "connect-integration" => env!("CARGO_BIN_EXE_connect-integration"),
        "process-integration" => env!("CARGO_BIN_EXE_process-integration"),
        "continue-run" => env!("CARGO_BIN_EXE_continue-run"),
        other => panic!("no binary {other}"),
    };
    tokio::process::Command::new(path)
        .args(args)
        .env("DATABASE_URL", database_url(pool))
        .env_remove("TRIBUTARY_CREDENTIALS")
        .output()
        .await
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The id printed after `label ` on stdout.
fn printed_id(o: &Output, label: &str) -> Uuid {
    stdout(o)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{label} ")))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `{label}` line in {}", stdout(o)))
        .parse()
        .unwrap()
}

async fn forum() -> FakeForum {
    let spec = DatasetSpec {
        channels: 1,
        posts_per_channel: 5,
        replies_per_post: 1,
        members: 3,
    };
    FakeForum::start(ForumData::generate(spec), ForumOptions::default())
        .await
        .unwrap()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn connect_refuses_bad_input_with_a_message_that_names_the_problem(pool: PgPool) {
    let out = command(
        &pool,
        "connect-integration",
        &["-p", "example-forum", "-s", "{base_url:"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: --settings is not valid JSON: key must be a string"),
        "{}",
        stderr(&out)
    );

    let out = command(&pool, "connect-integration", &["-p", "myspace", "-s", "{}"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: unknown platform `myspace`; known platforms: ")
            && stderr(&out).contains("example-forum"),
        "{}",
        stderr(&out)
    );

    let out = command(
        &pool,
        "connect-integration",
        &[
            "-p",
            "example-forum",
            "-s",
            r#"{"base_url":"x","per_page":500}"#,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim(),
        "error: settings for platform `example-forum` refused: invalid settings: `base_url` must be an http(s) URL without query, such as `https://forum.example.com`, not `x`; \
         `per_page` must be between 1 and 100, not 500; `credentials.token` is required (the forum's API token)"
    );

    let out = command(
        &pool,
        "connect-integration",
        &["-p", "example-forum", "-s", "{}", "--credentials", "[1]"],
    )
    .await;
    assert_eq!(
        (out.status.code(), stderr(&out).trim()),
        (Some(2), "error: --credentials must be a JSON object")
    );

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM integrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0, "nothing was created");
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn connect_inline_onboards_and_the_commands_run_checks_and_continue_runs(pool: PgPool) {
    let server = forum().await;
    let settings = json!({"base_url": server.base_url()}).to_string();
    let creds = json!({"token": server.token()}).to_string();
    let out = command(
        &pool,
        "connect-integration",
        &[
            "-p",
            "example-forum",
            "-s",
            &settings,
            "--credentials",
            &creds,
            "--inline",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let integration = printed_id(&out, "integration");
    let run = printed_id(&out, "run");
    assert!(stdout(&out).contains(&format!("run {run} processed")));
    assert!(
        !stderr(&out).contains(server.token()),
        "the token is never printed"
    );
    let activities: i64 = sqlx::query_scalar("SELECT count(*) FROM activities")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(activities, 10);

    let id = integration.to_string();
    let out = command(&pool, "process-integration", &["-i", &id, "--inline"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let check = printed_id(&out, "run");
    assert!(stdout(&out).contains(&format!("run {check} processed")));

    let out = command(&pool, "process-integration", &["-i", &id, "-p", "devto"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim(),
        format!("error: integration {id} is a `example-forum` integration, not `devto`")
    );

    // a run in error is revived by continue-run
    sqlx::query("UPDATE integration_runs SET state = 'error' WHERE id = $1")
        .bind(check)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE integration_streams SET state = 'error', retries = 3 WHERE run_id = $1 AND identifier = 'channels'")
        .bind(check)
        .execute(&pool)
        .await
        .unwrap();
    let out = command(
        &pool,
        "continue-run",
        &["-r", &check.to_string(), "--inline"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 errored stream(s) revived"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains(&format!("run {check} processed")));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn process_and_continue_refuse_unknown_ids_and_active_runs(pool: PgPool) {
    let unknown = Uuid::new_v4().to_string();
    let out = command(&pool, "process-integration", &["-i", &unknown]).await;
    assert_eq!(
        (out.status.code(), stderr(&out).trim().to_owned()),
        (
            Some(2),
            format!("error: integration {unknown} does not exist")
        )
    );

    let out = command(&pool, "process-integration", &["-i", "not-a-uuid"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid value 'not-a-uuid' for '--integration <INTEGRATIONS>'"),
        "{}",
        stderr(&out)
    );

    let out = command(&pool, "continue-run", &["-r", &unknown]).await;
    assert_eq!(
        (out.status.code(), stderr(&out).trim().to_owned()),
        (Some(2), format!("error: run {unknown} does not exist"))
    );

    let server = forum().await;
    let settings = json!({"base_url": server.base_url()}).to_string();
    let out = command(
        &pool,
        "connect-integration",
        &[
            "-p",
            "example-forum",
            "-s",
            &settings,
            "--credentials",
            r#"{"token":"forum-token"}"#,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let integration = printed_id(&out, "integration");
    let run = printed_id(&out, "run");
    let out = command(
        &pool,
        "process-integration",
        &["-i", &integration.to_string(), "-o"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "error: integration {integration} already has an active run {run} (pending); continue it with continue-run"
        )
    );
    // one id refused does not stop the others
    let both = format!("{unknown},{integration}");
    let out = command(&pool, "process-integration", &["-i", &both]).await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out).lines().count(), 2);
}

#[tokio::test]
async fn every_command_explains_itself() {
    for bin in [
        env!("CARGO_BIN_EXE_connect-integration"),
        env!("CARGO_BIN_EXE_process-integration"),
        env!("CARGO_BIN_EXE_continue-run"),
    ] {
        let out = tokio::process::Command::new(bin)
            .arg("--help")
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("--inline") && help.contains("Exit codes: 0 done"),
            "{help}"
        );
    }
}
