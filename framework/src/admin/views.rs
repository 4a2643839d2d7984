//! What operators read, shaped for the admin API and the dashboard: integrations with their
//! figures, a run with its live progress and what it waits on, streams with their error chains,
//! ticks, and the overview.

use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AdminError;
use super::quotas::{self, QuotaView};
use crate::queue::Queue;
use crate::store::overview::{
    self, ActivityRate, IntegrationFilter, IntegrationSummary, RunFilter, RunProgress, RunSummary,
    StatusCount, StreamSummary, TickSummary,
};
use crate::store::streams;

/// The most rows one listing returns.
pub const MAX_LIMIT: i64 = 1000;

const INTEGRATION_STATUSES: [&str; 5] = ["pending", "in-progress", "done", "error", "disconnected"];
const RUN_STATES: [&str; 6] = [
    "pending",
    "processing",
    "delayed",
    "processed",
    "error",
    "cancelled",
];

/// Checks a listing's `limit` (1 to [`MAX_LIMIT`], default 100) and `offset` (≥ 0).
pub fn page(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), AdminError> {
    let limit = limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AdminError::InvalidInput {
            field: "limit".into(),
            message: format!("must be between 1 and {MAX_LIMIT}"),
        });
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(AdminError::InvalidInput {
            field: "offset".into(),
            message: "must not be negative".into(),
        });
    }
    Ok((limit, offset))
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<(), AdminError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(AdminError::InvalidInput {
            field: field.into(),
            message: format!("must be one of {}", allowed.join(", ")),
        })
    }
}

pub async fn integrations(
    pool: &PgPool,
    filter: &IntegrationFilter,
) -> Result<Vec<IntegrationSummary>, AdminError> {
    if let Some(status) = &filter.status {
        one_of("status", status, &INTEGRATION_STATUSES)?;
    }
    Ok(overview::integrations(pool, filter).await?)
}

/// An integration with its recent runs and its platform's quotas.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IntegrationDetail {
    pub integration: IntegrationSummary,
    pub recent_runs: Vec<RunSummary>,
    pub quotas: Vec<QuotaView>,
}

pub async fn integration(pool: &PgPool, id: Uuid) -> Result<IntegrationDetail, AdminError> {
    let integration = overview::integration(pool, id).await?;
    let recent_runs = overview::runs(
        pool,
        &RunFilter {
            integration_id: Some(id),
            limit: 20,
            ..RunFilter::default()
        },
    )
    .await?;
    let quotas = quotas::list(pool, Some(&integration.platform)).await?;
    Ok(IntegrationDetail {
        integration,
        recent_runs,
        quotas,
    })
}

pub async fn runs(pool: &PgPool, filter: &RunFilter) -> Result<Vec<RunSummary>, AdminError> {
    for state in &filter.states {
        one_of("state", state, &RUN_STATES)?;
    }
    Ok(overview::runs(pool, filter).await?)
}

/// Live figures of a run, summed from its streams.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct ProgressView {
    pub streams_total: i64,
    pub streams_pending: i64,
    pub streams_processing: i64,
    pub streams_processed: i64,
    pub streams_errored: i64,
    pub activities_new: i64,
    pub activities_updated: i64,
    pub members_new: i64,
}

/// A run, its live progress, and the quota it waits on when a rate limit of a known budget
/// deferred it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunDetail {
    pub run: RunSummary,
    pub progress: ProgressView,
    pub waiting_on: Vec<QuotaView>,
}

pub async fn run(pool: &PgPool, id: Uuid) -> Result<RunDetail, AdminError> {
    let run = overview::run(pool, id).await?;
    let p = streams::progress(pool, id).await?;
    let progress = ProgressView {
        streams_total: p.total(),
        streams_pending: p.pending,
        streams_processing: p.processing,
        streams_processed: p.processed,
        streams_errored: p.errored,
        activities_new: p.activities_created,
        activities_updated: p.activities_updated,
        members_new: p.members_created,
    };
    // the budget the deferral recorded, exactly
    let waiting_on = match overview::run_waiting_on(pool, id).await? {
        Some((platform, credential, resource)) => quotas::list(pool, Some(&platform))
            .await?
            .into_iter()
            .filter(|q| q.credential == credential && q.resource == resource)
            .collect(),
        None => Vec::new(),
    };
    Ok(RunDetail {
        run,
        progress,
        waiting_on,
    })
}

/// The streams of a run (refuses an unknown run).
pub async fn streams(
    pool: &PgPool,
    run_id: Uuid,
    errors_only: bool,
    limit: i64,
    offset: i64,
) -> Result<Vec<StreamSummary>, AdminError> {
    overview::run(pool, run_id).await?;
    Ok(overview::streams(pool, run_id, errors_only, limit, offset).await?)
}

pub async fn ticks(pool: &PgPool, limit: i64) -> Result<Vec<TickSummary>, AdminError> {
    Ok(overview::ticks(pool, limit).await?)
}

/// The dashboard's first page: integrations by status and platform, activities per minute per
/// platform (the last hour), runs in flight, the dead letters' count.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Overview {
    pub integrations: Vec<StatusCount>,
    pub activity_rates: Vec<ActivityRate>,
    pub runs_in_flight: Vec<RunSummary>,
    /// The live figures of the runs in flight.
    pub progress: Vec<RunProgress>,
    pub dead_letters: u64,
    pub queue_backend: String,
}

pub async fn overview(pool: &PgPool, queue: &dyn Queue) -> Result<Overview, AdminError> {
    let integrations = overview::status_counts(pool).await?;
    let activity_rates = overview::activity_rates(pool, 60).await?;
    let runs_in_flight = overview::runs(
        pool,
        &RunFilter {
            states: vec!["pending".into(), "processing".into(), "delayed".into()],
            limit: 50,
            ..RunFilter::default()
        },
    )
    .await?;
    let ids: Vec<Uuid> = runs_in_flight.iter().map(|r| r.id).collect();
    let progress = overview::live_progress(pool, &ids).await?;
    let dead_letters = queue.stats().await?.dead_letters;
    Ok(Overview {
        integrations,
        activity_rates,
        runs_in_flight,
        progress,
        dead_letters,
        queue_backend: queue.backend().to_owned(),
    })
}
