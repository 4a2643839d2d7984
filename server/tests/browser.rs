//! The dashboard in a real browser: Debian's chromium driven headless over WebDriver
//! (chromedriver, plain HTTP). Opens the overview during an onboarding and sees its progress
//! change, opens a failed run and reads its error chain, redrives a dead letter. Screenshots go to
//! target/browser-screenshots/. `scripts/test` installs chromium and chromium-driver when missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{TestServer, connect_forum, start_forum, start_worker};
use serde_json::{Value, json};
use sqlx::PgPool;
use tributary::queue::OutgoingMessage;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn executable(variable: &str, candidates: &[&str]) -> PathBuf {
    if let Ok(path) = std::env::var(variable) {
        return PathBuf::from(path);
    }
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{} not found (set {variable}); scripts/test installs it: apt-get install -y chromium chromium-driver",
                candidates[0]
            )
        })
}

/// A headless chromium session through chromedriver.
struct Browser {
    http: reqwest::Client,
    session: String,
    driver: String,
    _process: tokio::process::Child,
}

impl Browser {
    async fn start() -> Self {
        let chromedriver = executable(
            "TRIBUTARY_CHROMEDRIVER",
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
        );
        let chromium = executable("TRIBUTARY_CHROMIUM", &["/usr/bin/chromium"]);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = tokio::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting chromedriver");
        let driver = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{driver}/status")).send().await;
            if let Ok(r) = ready
                && let Ok(status) = r.json::<Value>().await
                && status["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1300,1000"]
            }
        }}});
        let created: Value = http
            .post(format!("{driver}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_owned();
        Self {
            http,
            session,
            driver,
            _process: process,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.driver, self.session);
        let mut request = self.http.request(method.clone(), url);
        if method == reqwest::Method::POST {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        answer["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// The element matching `css`, if there is one.
    async fn find(&self, css: &str) -> Option<String> {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found[ELEMENT].as_str().map(str::to_owned)
    }

    async fn text(&self, css: &str) -> Option<String> {
        let element = self.find(css).await?;
        let text = self
            .command(
                reqwest::Method::GET,
                &format!("/element/{element}/text"),
                Value::Null,
            )
            .await;
        text.as_str().map(str::to_owned)
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await.unwrap_or_else(|| panic!("no {css}"));
        let answer = self
            .command(
                reqwest::Method::POST,
                &format!("/element/{element}/click"),
                json!({}),
            )
            .await;
        assert!(answer.get("error").is_none(), "clicking {css}: {answer}");
    }

    /// The text of `css` on the page the browser is on, waited for: a click
    /// that submits a form returns before the next page has loaded.
    async fn text_once_shown(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(text) = self.text(css).await {
                return text;
            }
            if Instant::now() >= deadline {
                let page = self.text("body").await.unwrap_or_default();
                panic!("timed out waiting for {css}; the page says: {page}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a screenshot as target/browser-screenshots/NAME.png.
    async fn screenshot(&self, name: &str) {
        let shot = self
            .command(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().expect("a screenshot"))
            .unwrap();
        let dir = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/browser-screenshots"
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Reloads `url` until `css` has a text for which `done` holds.
    async fn wait_for_text(&self, url: &str, css: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.goto(url).await;
            if let Some(text) = self.text(css).await
                && done(&text)
            {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {css} on {url}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Browser {
    /// Ends the session: chromedriver closes chromium.
    async fn quit(&self) {
        let url = format!("{}/session/{}", self.driver, self.session);
        let _ = self.http.delete(url).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver is killed with its process handle; chromium goes only if `quit` ended
        // the session first (a failed assertion skips it and leaves chromium to the machine)
    }
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_dashboard_shows_progress_error_chains_and_redrives_a_dead_letter(pool: PgPool) {
    let server = TestServer::start(pool.clone()).await;
    // slow enough that the onboarding's progress can be watched: 49 requests of 250 ms
    let forum = start_forum(Duration::from_millis(250)).await;
    let browser = Browser::start().await;

    // an unknown token is turned away; the operator's signs in
    browser.goto(&server.url("/")).await;
    let found = browser.find("form[action='/login']").await;
    let source = browser
        .command(reqwest::Method::GET, "/source", Value::Null)
        .await;
    assert!(found.is_some(), "the login page: {source}");
    browser
        .goto(&server.url(&format!("/login?token={}", server.operator)))
        .await;
    assert_eq!(browser.text("h1").await.as_deref(), Some("Overview"));

    let (_, failed_run) = connect_forum(&server, &forum.base_url(), "not-the-token").await;
    let worker = start_worker(&pool);
    let (_, run) = connect_forum(&server, &forum.base_url(), forum.token()).await;

    // the overview during the onboarding: its streams figure changes
    let row = format!("tr[data-run='{run}'] .done");
    let first = browser
        .wait_for_text(&server.url("/"), &row, |t| !t.starts_with("0 /"))
        .await;
    browser.screenshot("overview-during-onboarding").await;
    let later = browser
        .wait_for_text(&server.url("/"), &row, |t| t != first)
        .await;
    assert_ne!(first, later, "progress changes");
    let done = server
        .wait_for(
            &format!("/api/v1/runs/{run}"),
            Duration::from_secs(90),
            |d| d["run"]["state"] == "processed",
        )
        .await;
    browser.goto(&server.url(&format!("/runs/{run}"))).await;
    let figures = browser.text("#streams-done").await.unwrap();
    let total = done["progress"]["streams_total"].as_i64().unwrap();
    assert_eq!(figures, format!("{total} / {total}"));
    browser.screenshot("run-processed").await;

    // the failed run and its whole error chain
    server
        .wait_for(
            &format!("/api/v1/runs/{failed_run}"),
            Duration::from_secs(60),
            |d| d["run"]["state"] == "error",
        )
        .await;
    browser
        .goto(&server.url(&format!("/runs/{failed_run}")))
        .await;
    let chain = browser
        .text("#run-error .chain")
        .await
        .expect("the error chain");
    assert!(
        chain.contains("401"),
        "the chain names the refusal: {chain}"
    );
    assert!(!chain.contains(forum.token()));
    browser.screenshot("failed-run").await;

    // a malformed message is dead-lettered by the worker; the dashboard redrives it
    server
        .queue
        .send(OutgoingMessage::new("{\"type\":\"nonsense\"}"))
        .await
        .unwrap();
    browser
        .wait_for_text(&server.url("/dead-letters"), "#dead-letters tbody", |t| {
            t.contains("nonsense")
        })
        .await;
    browser.screenshot("dead-letters").await;
    let before = server.queue.stats().await.unwrap();
    assert_eq!(before.dead_letters, 1);
    browser
        .click("#dead-letters form[action$='/redrive'] button")
        .await;
    let flash = browser.text_once_shown("#flash").await;
    assert!(flash.contains("sent to the workers again"), "{flash}");
    browser.screenshot("dead-letter-redriven").await;
    browser.quit().await;
    worker.cancel();
}
