//! Secrets (and only secrets) are scrubbed from everything a run stores: root streams, pipeline
//! data, settings written by hooks, child identifiers and data, next pages, last records,
//! records and errors. A plain credential field (a username) is data and is never rewritten.
#![allow(clippy::unwrap_used)]

mod common;

use async_trait::async_trait;
use common::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;
use tributary::store::runs::RunState;
use tributary::store::streams::StreamState;
use tributary::testkit::Harness;
use tributary::{
    Activity, CredentialField, IntegrationError, IntegrationService, Member, NewStream, RunContext,
    ServiceConfig, Settings, Stream, StreamOutcome,
};

const TOKEN: &str = "tok_9f8e7d6c5b4a";
/// A plain field whose value is an ordinary word in the platform's URLs.
const USERNAME: &str = "github";

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct LeakySettings {
    #[serde(default)]
    note: String,
}

impl Settings for LeakySettings {
    const CREDENTIALS: Option<&'static [CredentialField]> = Some(&[
        CredentialField::secret("token", "an API token"),
        CredentialField::plain("username", "the account's name"),
    ]);
}

/// An integration that puts its token everywhere it can.
struct Leaky;

fn token(ctx: &RunContext<LeakySettings>) -> String {
    ctx.credentials()
        .secret("token")
        .unwrap()
        .expose()
        .to_owned()
}

#[async_trait]
impl IntegrationService for Leaky {
    type Settings = LeakySettings;

    fn platform(&self) -> &'static str {
        "leaky"
    }

    fn config(&self) -> ServiceConfig {
        fast_config()
    }

    async fn preprocess(
        &self,
        ctx: &mut RunContext<LeakySettings>,
    ) -> Result<(), IntegrationError> {
        let t = token(ctx);
        ctx.set_pipeline_data(&json!({"auth": format!("Bearer {t}"), t.clone(): 1}))?;
        ctx.update_settings(LeakySettings {
            note: format!("token={t}"),
        });
        Ok(())
    }

    async fn get_streams(
        &self,
        ctx: &RunContext<LeakySettings>,
    ) -> Result<Vec<NewStream>, IntegrationError> {
        let t = token(ctx);
        Ok(vec![
            NewStream::new(format!("root:{t}"), json!({"auth": t, "user": USERNAME})),
            NewStream::new(
                "plain",
                json!({"url": format!("https://api.github.com/repos/{USERNAME}/x")}),
            ),
        ])
    }

    async fn process_stream(
        &self,
        stream: &Stream,
        ctx: &RunContext<LeakySettings>,
    ) -> Result<StreamOutcome, IntegrationError> {
        let t = token(ctx);
        let author =
            Member::new(format!("m-{t}"), USERNAME).url(format!("https://github.com/{USERNAME}"));
        match (stream.chain_identifier.as_str(), stream.page_number) {
            ("plain", 1) => Ok(StreamOutcome::new().next_page(json!({
                "url": format!("https://api.github.com/repos/{USERNAME}/x?page=2")
            }))),
            ("plain", _) => Ok(StreamOutcome::new().activity(
                Activity::new("plain-2", "star", at(1), Member::new("7", USERNAME))
                    .url(format!("https://github.com/{USERNAME}/x")),
            )),
            (chain, 1) if chain.starts_with("root:") => Ok(StreamOutcome::new()
                .activity(
                    Activity::new(format!("a-{t}"), "post", at(2), author)
                        .title(format!("title {t}"))
                        .body(format!("the body quotes {t} and {USERNAME}"))
                        .attributes(json!({"raw": {"auth": t}})),
                )
                .child(NewStream::new(format!("child:{t}"), json!({"k": t})))
                .next_page(json!({"url": format!("https://h/x?page=2&access_token={t}")}))
                .last_record(json!({"t": t}), None)),
            (chain, _) if chain.starts_with("root:") => Err(IntegrationError::fatal(format!(
                "401 Unauthorized for token {t}"
            ))),
            _ => Ok(StreamOutcome::new()),
        }
    }
}

async fn everything_stored(pool: &PgPool) -> String {
    let mut all = String::new();
    for query in [
        "SELECT string_agg(t::text, ' ') FROM integration_runs t",
        "SELECT string_agg(t::text, ' ') FROM integration_streams t",
        "SELECT string_agg(t::text, ' ') FROM activities t",
        "SELECT string_agg(t::text, ' ') FROM members t",
    ] {
        let text: Option<String> = sqlx::query_scalar(query).fetch_one(pool).await.unwrap();
        all.push_str(&text.unwrap_or_default());
    }
    let settings: Vec<String> = sqlx::query_scalar("SELECT settings::text FROM integrations")
        .fetch_all(pool)
        .await
        .unwrap();
    all.push_str(&settings.join(" "));
    all
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn secrets_are_scrubbed_from_everything_a_run_stores_and_plain_fields_are_data(pool: PgPool) {
    let h = Harness::with_service(pool.clone(), Leaky);
    let (integration, run) = h
        .connect(
            "leaky",
            json!({}),
            json!({"token": TOKEN, "username": USERNAME}),
        )
        .await
        .unwrap();
    let (_, run) = h.run_to_end(run.id).await;
    assert_eq!(
        run.state,
        RunState::Error,
        "the second page of the root fails"
    );

    let stored = everything_stored(&pool).await;
    assert!(!stored.contains(TOKEN), "the token was stored: {stored}");
    assert!(stored.contains("[redacted]"));

    let streams = h.streams(run.id).await;
    let plain_page = streams
        .iter()
        .find(|s| s.chain_identifier == "plain" && s.page_number == 2)
        .unwrap();
    assert_eq!(plain_page.state, StreamState::Processed);
    assert_eq!(
        plain_page.page,
        Some(json!({"url": "https://api.github.com/repos/github/x?page=2"})),
        "a plain field's value is never rewritten"
    );
    let activities = h.activities(integration.id).await;
    let star = activities
        .iter()
        .find(|a| a.source_id == "plain-2")
        .unwrap();
    assert_eq!(star.url.as_deref(), Some("https://github.com/github/x"));
    let post = activities
        .iter()
        .find(|a| a.activity_type == "post")
        .unwrap();
    assert_eq!(
        post.body.as_deref(),
        Some("the body quotes [redacted] and github")
    );
    let failed = streams
        .iter()
        .find(|s| s.state == StreamState::Error)
        .unwrap();
    assert_eq!(
        failed.error_record().unwrap().message,
        "401 Unauthorized for token [redacted]"
    );
    assert_eq!(
        h.integration(integration.id).await.settings,
        json!({"note": "token=[redacted]"})
    );
    assert!(streams.iter().any(|s| s.identifier == "child:[redacted]"));
}
