//! Shared by the end-to-end tests: the real binaries (built once per test process), their
//! environment, PostgreSQL of the test, the example forum, and a few probes.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tributary::store::runs::RunState;
use tributary::testkit::{Harness, eventually};
use tributary_integrations::example_forum::PLATFORM;
use tributary_integrations::example_forum::fake::{
    DatasetSpec, FakeForum, ForumData, ForumOptions,
};
use uuid::Uuid;

pub const WORKER: &str = "tributary-worker";
pub const TICK_GENERATOR: &str = "tributary-tick-generator";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `target/debug` (or wherever this test binary was built).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/e2e-HASH → target/debug
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

static BUILT: OnceLock<Result<(), String>> = OnceLock::new();

/// The path of a binary of the workspace, built (once per test process) by cargo.
pub fn binary(name: &str) -> PathBuf {
    let built = BUILT.get_or_init(|| {
        let mut command = tributary::testkit::cargo::cargo(&workspace());
        command.args([
            "build",
            "--quiet",
            "-p",
            "tributary-worker",
            "-p",
            "tributary-tick-generator",
            "--bins",
        ]);
        // the binaries of the same profile as this test, next to it
        if bin_dir().ends_with("release") {
            command.arg("--release");
        }
        let status = command
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("cargo build of the binaries failed: {status}"))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    let path = bin_dir().join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The URL of the test's own database (the one `#[sqlx::test]` made for `pool`).
pub fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL must be set for these tests");
    let (base, query) = match base.split_once('?') {
        Some((b, q)) => (b.to_owned(), format!("?{q}")),
        None => (base, String::new()),
    };
    let server = base.rsplit_once('/').map(|(s, _)| s).unwrap_or(&base);
    let database = pool
        .connect_options()
        .get_database()
        .expect("the test pool names its database")
        .to_owned();
    format!("{server}/{database}{query}")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process of the test: killed when dropped; its output, in a log file, is printed if the
/// test fails.
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
    /// The port of its `TRIBUTARY_HEALTH_ADDR`, if it was given one.
    health: Option<u16>,
}

impl Proc {
    pub fn spawn(binary: &str, name: &str, env: &[(String, String)]) -> Proc {
        let log = std::env::temp_dir().join(format!(
            "tributary-e2e-{name}-{}.log",
            Uuid::new_v4().simple()
        ));
        let file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(self::binary(binary));
        // nothing of the test runner's own configuration leaks in: only what the test gives
        for (key, _) in std::env::vars() {
            if key.starts_with("TRIBUTARY_") || key.starts_with("AWS_") {
                command.env_remove(key);
            }
        }
        command
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true);
        let child = command.spawn().unwrap();
        let health = env
            .iter()
            .any(|(k, _)| k == "TRIBUTARY_HEALTH_ADDR")
            .then(|| health_port(env));
        Proc {
            name: name.to_owned(),
            child,
            log,
            health,
        }
    }

    /// The port of its health endpoint.
    pub fn health_port(&self) -> u16 {
        self.health
            .unwrap_or_else(|| panic!("{} has no health endpoint", self.name))
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_for_log(&self, needle: &str, deadline: Duration) {
        eventually(
            deadline,
            &format!("{} to log `{needle}`", self.name),
            || async { self.log().contains(needle).then_some(()) },
        )
        .await;
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    pub async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }

    /// Waits for the process to exit; returns its exit code and how long it took.
    pub async fn wait_exit(&mut self, deadline: Duration) -> (Option<i32>, Duration) {
        let started = std::time::Instant::now();
        let status = tokio::time::timeout(deadline, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit within {deadline:?}", self.name))
            .unwrap();
        (status.code(), started.elapsed())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- log of {} -----\n{}", self.name, self.log());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The environment of a worker on the test's database, with short leases and intervals.
pub fn worker_env(pool: &PgPool, name: &str) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", database_url(pool)),
        ("TRIBUTARY_WORKER_ID", name.to_owned()),
        (
            "TRIBUTARY_HEALTH_ADDR",
            format!("127.0.0.1:{}", free_port()),
        ),
        ("TRIBUTARY_WORKER_CONCURRENCY", "4".to_owned()),
        // a tick's checks start at once, not spread over the minute
        ("TRIBUTARY_CHECK_SPREAD", "0".to_owned()),
        ("TRIBUTARY_LEASE_SECS", "3".to_owned()),
        ("TRIBUTARY_HEARTBEAT_SECS", "0.5".to_owned()),
        ("TRIBUTARY_SHUTDOWN_GRACE_SECS", "5".to_owned()),
        ("TRIBUTARY_SHUTDOWN_TIMEOUT_SECS", "10".to_owned()),
        ("TRIBUTARY_VISIBILITY_SECS", "6".to_owned()),
        ("TRIBUTARY_RECEIVE_WAIT_SECS", "1".to_owned()),
        ("TRIBUTARY_RESCUE_INTERVAL_SECS", "1".to_owned()),
        ("TRIBUTARY_RESEND_AFTER_SECS", "2".to_owned()),
        ("TRIBUTARY_DB_MAX_CONNECTIONS", "20".to_owned()),
        // the key the test's own harness seals credentials with
        (
            "TRIBUTARY_SECRET_KEY",
            tributary::testkit::test_key().to_owned(),
        ),
        // TRIBUTARY_TEST_RUST_LOG: the workers' log filter when debugging a test
        (
            "RUST_LOG",
            std::env::var("TRIBUTARY_TEST_RUST_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn".to_owned()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub fn with(mut env: Vec<(String, String)>, extra: &[(&str, String)]) -> Vec<(String, String)> {
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push(((*k).to_owned(), v.clone()));
    }
    env
}

/// A small forum: 2 channels × 10 posts × 2 replies (60 activities), read 5 a page.
pub const SPEC: DatasetSpec = DatasetSpec {
    channels: 2,
    posts_per_channel: 10,
    replies_per_post: 2,
    members: 5,
};

pub async fn forum(latency: Duration) -> FakeForum {
    FakeForum::start(
        ForumData::generate(SPEC),
        ForumOptions {
            latency,
            ..ForumOptions::default()
        },
    )
    .await
    .unwrap()
}

pub fn harness(pool: PgPool) -> Harness {
    Harness::new(pool, tributary_integrations::registry().unwrap())
}

/// Connects an Example Forum integration: the integration and its pending onboarding run.
pub async fn connect(
    h: &Harness,
    server: &FakeForum,
) -> (
    tributary::store::integrations::Integration,
    tributary::store::runs::Run,
) {
    h.connect(
        PLATFORM,
        json!({"base_url": server.base_url(), "per_page": 5}),
        json!({"token": server.token()}),
    )
    .await
    .unwrap()
}

pub fn expected_ids(server: &FakeForum) -> BTreeSet<String> {
    server.edit(|d| {
        d.posts
            .iter()
            .map(|p| format!("post:{}", p.id))
            .chain(d.replies.iter().map(|r| format!("reply:{}", r.id)))
            .collect()
    })
}

pub async fn stored_ids(h: &Harness, integration_id: Uuid) -> Vec<String> {
    let mut ids: Vec<String> = h
        .activities(integration_id)
        .await
        .into_iter()
        .map(|a| a.source_id)
        .collect();
    ids.sort();
    ids
}

pub async fn wait_for_run(h: &Harness, run_id: Uuid, state: RunState, deadline: Duration) {
    eventually(deadline, &format!("run {run_id} to be {state}"), || async {
        (h.run(run_id).await.state == state).then_some(())
    })
    .await;
}

pub async fn runs_of(pool: &PgPool, integration_id: Uuid) -> Vec<(Uuid, RunState, Option<String>)> {
    sqlx::query_as::<_, (Uuid, String, Option<String>)>(
        "SELECT id, state, trigger_key FROM integration_runs WHERE integration_id = $1
         ORDER BY created_at",
    )
    .bind(integration_id)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(id, state, key)| (id, state.parse().unwrap(), key))
    .collect()
}

/// `GET path` on 127.0.0.1:port; the status code and the body.
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The port of `TRIBUTARY_HEALTH_ADDR` in an environment.
pub fn health_port(env: &[(String, String)]) -> u16 {
    env.iter()
        .find(|(k, _)| k == "TRIBUTARY_HEALTH_ADDR")
        .and_then(|(_, v)| v.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .unwrap()
}
