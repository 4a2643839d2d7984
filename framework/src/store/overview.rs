//! What operators read: integrations with their figures, runs, streams, ticks, the chart of
//! activities written per minute, and every credential's quota. Read-only queries over the
//! tables the workers write; the admin API and the dashboard present them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::StoreError;

/// An integration with its figures. Its credentials are never read here.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct IntegrationSummary {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub platform: String,
    /// `pending`, `in-progress`, `done`, `error` or `disconnected`.
    pub status: String,
    /// The validated settings (never secrets: credentials are stored apart).
    #[schema(value_type = Object)]
    pub settings: Value,
    pub last_processed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Activities and members it has written.
    pub activities: i64,
    pub members: i64,
    /// Its active run (pending, processing or delayed), if any.
    pub active_run_id: Option<Uuid>,
    pub active_run_state: Option<String>,
    /// The latest run that stored an error, and that error.
    pub last_error_run_id: Option<Uuid>,
    #[schema(value_type = Option<ErrorView>)]
    pub last_error: Option<Value>,
}

/// A stored error: what failed, how, and the whole chain of causes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorView {
    /// `rate_limited`, `retryable`, `fatal`, `panicked`, `timed_out` or `abandoned`.
    pub kind: String,
    /// The hook that failed.
    pub hook: String,
    pub message: String,
    /// The causes, outermost first.
    pub chain: Vec<String>,
    pub failures: u32,
    pub at: DateTime<Utc>,
}

/// Which integrations to list.
#[derive(Debug, Clone, Default)]
pub struct IntegrationFilter {
    pub platform: Option<String>,
    pub status: Option<String>,
    pub tenant_id: Option<Uuid>,
    pub limit: i64,
    pub offset: i64,
}

/// The select every integration listing shares (a macro: queries are static strings).
macro_rules! integration_summary {
    () => {
        "
    SELECT i.id, i.tenant_id, i.platform, i.status, i.settings, i.last_processed_at, i.created_at,
           (SELECT count(*) FROM activities a WHERE a.integration_id = i.id) AS activities,
           (SELECT count(*) FROM members m WHERE m.integration_id = i.id) AS members,
           active.id AS active_run_id, active.state AS active_run_state,
           failed.id AS last_error_run_id, failed.error AS last_error
    FROM integrations i
    LEFT JOIN LATERAL (SELECT id, state FROM integration_runs r
                       WHERE r.integration_id = i.id AND r.state IN ('pending', 'processing', 'delayed')
                       LIMIT 1) active ON true
    LEFT JOIN LATERAL (SELECT id, error FROM integration_runs r
                       WHERE r.integration_id = i.id AND r.error IS NOT NULL
                       ORDER BY r.created_at DESC LIMIT 1) failed ON true"
    };
}

pub async fn integrations(
    pool: &PgPool,
    filter: &IntegrationFilter,
) -> Result<Vec<IntegrationSummary>, StoreError> {
    Ok(sqlx::query_as(concat!(
        integration_summary!(),
        " WHERE ($1::text IS NULL OR i.platform = $1) AND ($2::text IS NULL OR i.status = $2)
           AND ($3::uuid IS NULL OR i.tenant_id = $3)
         ORDER BY i.created_at DESC, i.id LIMIT $4 OFFSET $5"
    ))
    .bind(&filter.platform)
    .bind(&filter.status)
    .bind(filter.tenant_id)
    .bind(filter.limit)
    .bind(filter.offset)
    .fetch_all(pool)
    .await?)
}

pub async fn integration(pool: &PgPool, id: Uuid) -> Result<IntegrationSummary, StoreError> {
    sqlx::query_as(concat!(integration_summary!(), " WHERE i.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(StoreError::NotFound {
            what: "integration",
            id,
        })
}

/// Integrations counted by platform and status.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct StatusCount {
    pub platform: String,
    pub status: String,
    pub count: i64,
}

pub async fn status_counts(pool: &PgPool) -> Result<Vec<StatusCount>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT platform, status, count(*) AS count FROM integrations
         GROUP BY platform, status ORDER BY platform, status",
    )
    .fetch_all(pool)
    .await?)
}

/// A run as operators see it; live figures of a run in flight are in its progress.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct RunSummary {
    pub id: Uuid,
    pub integration_id: Uuid,
    pub platform: String,
    pub onboarding: bool,
    /// `pending`, `processing`, `delayed`, `processed`, `error` or `cancelled`.
    pub state: String,
    /// Why and until when a delayed run waits.
    pub delayed_until: Option<DateTime<Utc>>,
    pub delay_reason: Option<String>,
    pub attempt: i64,
    pub lease_owner: Option<String>,
    #[schema(value_type = Option<ErrorView>)]
    pub error: Option<Value>,
    pub streams_processed: i64,
    pub streams_errored: i64,
    pub members_created: i64,
    pub activities_created: i64,
    pub activities_updated: i64,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub integration_id: Option<Uuid>,
    pub platform: Option<String>,
    /// Any of these states (empty: all).
    pub states: Vec<String>,
    pub limit: i64,
    pub offset: i64,
}

/// The select every run listing shares.
macro_rules! run_summary {
    () => {
        "
    SELECT r.id, r.integration_id, i.platform, r.onboarding, r.state, r.delayed_until,
           r.delay_reason, r.attempt, r.lease_owner, r.error, r.streams_processed,
           r.streams_errored, r.members_created, r.activities_created, r.activities_updated,
           r.created_at, r.started_at, r.finished_at
    FROM integration_runs r JOIN integrations i ON i.id = r.integration_id"
    };
}

pub async fn runs(pool: &PgPool, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError> {
    Ok(sqlx::query_as(concat!(
        run_summary!(),
        " WHERE ($1::uuid IS NULL OR r.integration_id = $1) AND ($2::text IS NULL OR i.platform = $2)
           AND (cardinality($3::text[]) = 0 OR r.state = ANY($3))
         ORDER BY r.created_at DESC, r.id LIMIT $4 OFFSET $5"
    ))
    .bind(filter.integration_id)
    .bind(&filter.platform)
    .bind(&filter.states)
    .bind(filter.limit)
    .bind(filter.offset)
    .fetch_all(pool)
    .await?)
}

/// The budget (platform, credential fingerprint, resource) a delayed run waits on, if a rate
/// limit of a known budget deferred it.
pub async fn run_waiting_on(
    pool: &PgPool,
    id: Uuid,
) -> Result<Option<(String, String, String)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT waiting_platform, waiting_credential, waiting_resource FROM integration_runs
         WHERE id = $1 AND state = 'delayed' AND waiting_platform IS NOT NULL
           AND waiting_credential IS NOT NULL AND waiting_resource IS NOT NULL",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

pub async fn run(pool: &PgPool, id: Uuid) -> Result<RunSummary, StoreError> {
    sqlx::query_as(concat!(run_summary!(), " WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(StoreError::NotFound { what: "run", id })
}

/// A stream of a run, with its stored error chain.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct StreamSummary {
    pub id: Uuid,
    pub parent_id: Option<Uuid>,
    pub identifier: String,
    pub source: String,
    /// `pending`, `processing`, `processed` or `error`.
    pub state: String,
    pub retries: i32,
    pub page_number: i32,
    /// A pending stream waiting out a retry backoff.
    pub delayed_until: Option<DateTime<Utc>>,
    #[schema(value_type = Option<ErrorView>)]
    pub error: Option<Value>,
    pub records: i32,
    pub members_created: i32,
    pub activities_created: i32,
    pub activities_updated: i32,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The streams of a run in creation order, errored ones only with `errors_only`.
pub async fn streams(
    pool: &PgPool,
    run_id: Uuid,
    errors_only: bool,
    limit: i64,
    offset: i64,
) -> Result<Vec<StreamSummary>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, parent_id, identifier, source, state, retries, page_number, delayed_until,
                error, records, members_created, activities_created, activities_updated,
                created_at, finished_at
         FROM integration_streams
         WHERE run_id = $1 AND (NOT $2 OR state = 'error')
         ORDER BY seq LIMIT $3 OFFSET $4",
    )
    .bind(run_id)
    .bind(errors_only)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?)
}

/// A tick slot and the check runs it created.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct TickSummary {
    pub slot: DateTime<Utc>,
    pub emitted_by: String,
    pub emitted_at: DateTime<Utc>,
    pub runs_created: i64,
}

pub async fn ticks(pool: &PgPool, limit: i64) -> Result<Vec<TickSummary>, StoreError> {
    Ok(sqlx::query_as(
        "WITH recent AS (SELECT slot, emitted_by, emitted_at FROM tick_slots
                         ORDER BY slot DESC LIMIT $1)
         SELECT t.slot, t.emitted_by, t.emitted_at,
                (SELECT count(*) FROM integration_runs r
                 WHERE r.trigger_key = 'tick:' || to_char(t.slot AT TIME ZONE 'UTC',
                                                          'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')) AS runs_created
         FROM recent t ORDER BY t.slot DESC",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Activities written (new or updated) in one minute by one platform's streams.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct ActivityRate {
    pub platform: String,
    pub minute: DateTime<Utc>,
    pub activities: i64,
}

/// The last `minutes` minutes, per platform (from the streams' commits).
pub async fn activity_rates(pool: &PgPool, minutes: i32) -> Result<Vec<ActivityRate>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT i.platform, date_trunc('minute', s.finished_at) AS minute,
                sum(s.activities_created + s.activities_updated)::int8 AS activities
         FROM integration_streams s
         JOIN integration_runs r ON r.id = s.run_id
         JOIN integrations i ON i.id = r.integration_id
         WHERE s.finished_at > now() - make_interval(mins => $1)
         GROUP BY 1, 2 ORDER BY 2, 1",
    )
    .bind(minutes)
    .fetch_all(pool)
    .await?)
}

/// The most waiting runs a budget lists (all are counted).
pub const WAITING_RUNS_LISTED: i32 = 20;

/// A credential's budget as its platform last reported it (`rate_limit_budgets`), and the runs
/// deferred by a rate limit that wait on exactly this budget (the deferral records its key).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BudgetRow {
    pub platform: String,
    pub credential: String,
    pub resource: String,
    pub limit_total: Option<i64>,
    pub remaining: Option<i64>,
    pub reset_at: Option<DateTime<Utc>>,
    pub blocked_until: Option<DateTime<Utc>>,
    pub spend_per_min: Option<f64>,
    /// When the answer the spend rate was last computed from was recorded.
    pub observed_at: Option<DateTime<Utc>>,
    pub requests: i64,
    pub updated_at: DateTime<Utc>,
    pub runs_waiting: i64,
    /// The first [`WAITING_RUNS_LISTED`] of them, soonest due first.
    pub waiting_run_ids: Vec<Uuid>,
}

pub async fn budgets(pool: &PgPool, platform: Option<&str>) -> Result<Vec<BudgetRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT b.platform, b.credential, b.resource, b.limit_total, b.remaining, b.reset_at,
                b.blocked_until, b.spend_per_min, b.observed_at, b.requests, b.updated_at,
                coalesce(w.runs, 0) AS runs_waiting, coalesce(w.ids, '{}') AS waiting_run_ids
         FROM rate_limit_budgets b
         LEFT JOIN LATERAL (
             SELECT count(*) AS runs, (array_agg(r.id ORDER BY r.delayed_until, r.id))[1:$2] AS ids
             FROM integration_runs r
             WHERE r.state = 'delayed' AND r.waiting_platform IS NOT NULL
               AND r.waiting_platform = b.platform AND r.waiting_credential = b.credential
               AND r.waiting_resource = b.resource) w ON true
         WHERE $1::text IS NULL OR b.platform = $1
         ORDER BY b.platform, b.credential, b.resource",
    )
    .bind(platform)
    .bind(WAITING_RUNS_LISTED)
    .fetch_all(pool)
    .await?)
}

/// Runs by state, for metrics.
pub async fn run_state_counts(pool: &PgPool) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT state, count(*) FROM integration_runs GROUP BY state")
            .fetch_all(pool)
            .await?,
    )
}

/// Live figures of runs in flight, summed from their streams.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct RunProgress {
    pub run_id: Uuid,
    pub streams_total: i64,
    /// Processed or in error.
    pub streams_done: i64,
    pub activities_new: i64,
    pub activities_updated: i64,
}

pub async fn live_progress(
    pool: &PgPool,
    run_ids: &[Uuid],
) -> Result<Vec<RunProgress>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT run_id, count(*) AS streams_total,
                count(*) FILTER (WHERE state IN ('processed', 'error')) AS streams_done,
                coalesce(sum(activities_created), 0)::int8 AS activities_new,
                coalesce(sum(activities_updated), 0)::int8 AS activities_updated
         FROM integration_streams WHERE run_id = ANY($1) GROUP BY run_id",
    )
    .bind(run_ids)
    .fetch_all(pool)
    .await?)
}
