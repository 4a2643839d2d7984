//! The benchmark's integration: no platform, no HTTP, only deterministic records, so that what
//! is measured is the processor and PostgreSQL.

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tributary::{
    Activity, CheckSchedule, IntegrationError, IntegrationService, Member, NewStream, RunContext,
    ServiceConfig, Stream, StreamOutcome,
};

pub const PLATFORM: &str = "bench-noop";

pub struct NoopIntegration {
    pub concurrency: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoopSettings {
    streams: u32,
    activities_per_stream: u32,
    members: u32,
}

impl tributary::Settings for NoopSettings {}

#[async_trait]
impl IntegrationService for NoopIntegration {
    type Settings = NoopSettings;

    fn platform(&self) -> &'static str {
        PLATFORM
    }

    fn config(&self) -> ServiceConfig {
        ServiceConfig {
            check_schedule: CheckSchedule::Never,
            stream_concurrency: self.concurrency,
            ..ServiceConfig::default()
        }
    }

    async fn get_streams(
        &self,
        ctx: &RunContext<NoopSettings>,
    ) -> Result<Vec<NewStream>, IntegrationError> {
        let settings = ctx.settings();
        Ok((0..settings.streams)
            .map(|i| NewStream::new(format!("s{i}"), json!({ "i": i })))
            .collect())
    }

    async fn process_stream(
        &self,
        stream: &Stream,
        ctx: &RunContext<NoopSettings>,
    ) -> Result<StreamOutcome, IntegrationError> {
        let settings = ctx.settings();
        let i = stream.data["i"].as_u64().unwrap_or(0);
        let base = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        Ok(
            StreamOutcome::new().activities((0..u64::from(settings.activities_per_stream)).map(
                |j| {
                    let n = i * u64::from(settings.activities_per_stream) + j;
                    let member = n % u64::from(settings.members.max(1));
                    benchmark_activity(n, member, base + chrono::Duration::seconds(n as i64))
                },
            )),
        )
    }
}

/// Activity `n` by member `member`: the same rows the bulk baseline writes.
pub fn benchmark_activity(n: u64, member: u64, at: chrono::DateTime<Utc>) -> Activity {
    Activity::new(
        format!("a-{n}"),
        "message",
        at,
        Member::new(format!("m-{member}"), format!("member{member}")),
    )
    .channel("bench")
    .title(format!("message {n}"))
    .body("a short benchmark message body")
}
