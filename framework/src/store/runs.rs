//! `integration_runs`: one processing of an integration, from claim to its end.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::streams::{self, Revived};
use super::{Lease, StoreError, error_json, expect_one, is_unique_violation};
use crate::error::ErrorRecord;
use crate::stream::NewStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Pending,
    Processing,
    Delayed,
    Processed,
    Error,
    Cancelled,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Delayed => "delayed",
            Self::Processed => "processed",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
        }
    }

    /// Pending, processing and delayed runs are active: at most one per integration.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Pending | Self::Processing | Self::Delayed)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => Self::Pending,
            "processing" => Self::Processing,
            "delayed" => Self::Delayed,
            "processed" => Self::Processed,
            "error" => Self::Error,
            "cancelled" => Self::Cancelled,
            other => return Err(format!("unknown run state `{other}`")),
        })
    }
}

impl TryFrom<String> for RunState {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Run {
    pub id: Uuid,
    pub integration_id: Uuid,
    pub onboarding: bool,
    #[sqlx(try_from = "String")]
    pub state: RunState,
    pub trigger_key: Option<String>,
    pub delayed_until: Option<DateTime<Utc>>,
    pub delay_reason: Option<String>,
    pub attempt: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub retries: i32,
    pub preprocessed: bool,
    pub pipeline_data: Value,
    pub error: Option<Value>,
    pub streams_processed: i64,
    pub streams_errored: i64,
    pub members_created: i64,
    pub activities_created: i64,
    pub activities_updated: i64,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl Run {
    /// The lease this run's current attempt holds (meaningful while it is processing).
    pub fn lease(&self) -> Lease {
        Lease {
            run_id: self.id,
            attempt: self.attempt,
            owner: self.lease_owner.clone().unwrap_or_default(),
        }
    }

    /// The stored error, decoded.
    pub fn error_record(&self) -> Option<ErrorRecord> {
        self.error
            .clone()
            .and_then(|e| serde_json::from_value(e).ok())
    }
}

/// What asking for a new run found.
#[derive(Debug, Clone)]
pub enum CreatedRun {
    Created(Run),
    /// The integration already has an active run; no run was created.
    AlreadyActive(Run),
    /// This trigger (message, tick slot) already made this run.
    Duplicate(Run),
}

pub(crate) async fn insert(
    conn: &mut PgConnection,
    integration_id: Uuid,
    onboarding: bool,
    trigger_key: Option<&str>,
) -> Result<Run, StoreError> {
    Ok(sqlx::query_as(
        "INSERT INTO integration_runs (id, integration_id, onboarding, trigger_key)
         VALUES ($1, $2, $3, $4) RETURNING *",
    )
    .bind(Uuid::new_v4())
    .bind(integration_id)
    .bind(onboarding)
    .bind(trigger_key)
    .fetch_one(conn)
    .await?)
}

/// Creates a run (onboarding or check) unless the integration has an active one or this trigger
/// already made one. An onboarding run puts the integration `in-progress`.
pub async fn create(
    pool: &PgPool,
    integration_id: Uuid,
    onboarding: bool,
    trigger_key: Option<&str>,
) -> Result<CreatedRun, StoreError> {
    let mut tx = crate::db::begin(pool).await?;
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM integrations WHERE id = $1 FOR UPDATE")
            .bind(integration_id)
            .fetch_optional(&mut *tx)
            .await?;
    match status.as_deref() {
        None => {
            return Err(StoreError::NotFound {
                what: "integration",
                id: integration_id,
            });
        }
        Some("disconnected") => {
            return Err(StoreError::Refused(format!(
                "integration {integration_id} is disconnected"
            )));
        }
        Some(_) => {}
    }
    if let Some(key) = trigger_key {
        let existing: Option<Run> = sqlx::query_as(
            "SELECT * FROM integration_runs WHERE integration_id = $1 AND trigger_key = $2",
        )
        .bind(integration_id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(run) = existing {
            return Ok(CreatedRun::Duplicate(run));
        }
    }
    // The integration row is locked: no concurrent create can slip between this check and the
    // insert (the partial unique index would refuse it anyway).
    if let Some(active) = active_in(&mut tx, integration_id).await? {
        return Ok(CreatedRun::AlreadyActive(active));
    }
    let run = match insert(&mut tx, integration_id, onboarding, trigger_key).await {
        Ok(run) => run,
        Err(StoreError::Database(e)) if is_unique_violation(&e, "integration_runs_one_active") => {
            return Err(StoreError::Refused(format!(
                "integration {integration_id} already has an active run"
            )));
        }
        Err(e) => return Err(e),
    };
    if onboarding {
        sqlx::query(
            "UPDATE integrations SET status = 'in-progress', updated_at = now()
             WHERE id = $1 AND status <> 'disconnected'",
        )
        .bind(integration_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(CreatedRun::Created(run))
}

async fn active_in(
    conn: &mut PgConnection,
    integration_id: Uuid,
) -> Result<Option<Run>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT * FROM integration_runs
         WHERE integration_id = $1 AND state IN ('pending', 'processing', 'delayed')",
    )
    .bind(integration_id)
    .fetch_optional(conn)
    .await?)
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Run, StoreError> {
    sqlx::query_as("SELECT * FROM integration_runs WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(StoreError::NotFound { what: "run", id })
}

/// The claim of run `$1` for owner `$2` with a lease of `$3` seconds (without its `RETURNING`):
/// a pending run, a delayed run whose time has come, or a processing run whose lease expired and
/// was not cut off by a restart of the database server (held one more lease after it).
macro_rules! claim_sql {
    () => {
        concat!(
            "UPDATE integration_runs SET
                 state = 'processing', attempt = attempt + 1, lease_owner = $2,
                 lease_expires_at = now() + make_interval(secs => $3),
                 delayed_until = NULL, delay_reason = NULL,
                 started_at = coalesce(started_at, now()), updated_at = now()
             WHERE id = $1 AND (
                 state = 'pending'
                 OR (state = 'delayed' AND delayed_until <= now())
                 OR (state = 'processing' AND greatest(lease_expires_at, ",
            $crate::store::server_started!(),
            " + make_interval(secs => $3)) < now()))"
        )
    };
}
pub(crate) use claim_sql;

/// Takes the run for `owner`: a pending run, a delayed run whose time has come, or a processing
/// run whose lease expired (its worker died). Bumps the attempt, which fences off every earlier
/// holder. `None` when the run is not claimable now.
///
/// A lease that ran out while the database server was down or restarting says nothing of its
/// worker: nobody could heartbeat then. After a restart every lease therefore counts as held
/// for one more `lease` from the server's start, so a live holder heartbeats (or hands its run
/// back) before another worker may take the run over.
pub async fn claim(
    pool: &PgPool,
    run_id: Uuid,
    owner: &str,
    lease: Duration,
) -> Result<Option<Run>, StoreError> {
    Ok(sqlx::query_as(concat!(claim_sql!(), " RETURNING *"))
        .bind(run_id)
        .bind(owner)
        .bind(lease.as_secs_f64())
        .fetch_optional(pool)
        .await?)
}

/// Extends the lease. Fails with [`StoreError::LeaseLost`] once it is no longer held.
pub async fn heartbeat(pool: &PgPool, lease: &Lease, duration: Duration) -> Result<(), StoreError> {
    let done = sqlx::query(
        "UPDATE integration_runs SET lease_expires_at = now() + make_interval(secs => $3)
         WHERE id = $1 AND attempt = $2 AND state = 'processing'",
    )
    .bind(lease.run_id)
    .bind(lease.attempt)
    .bind(duration.as_secs_f64())
    .execute(pool)
    .await?;
    expect_one(done.rows_affected(), lease)
}

/// Commits what `preprocess` and `get_streams` produced: the pipeline data, changed settings and
/// the root streams, together in one statement; the first `claim` roots are stored already
/// claimed by this attempt (the first streams the worker runs, without another round trip).
/// Returns how many roots were new and the claimed ones, in order.
pub async fn save_preprocessed(
    pool: &PgPool,
    lease: &Lease,
    pipeline_data: &Value,
    settings: Option<&Value>,
    roots: &[NewStream],
    claim: usize,
) -> Result<(u64, Vec<streams::StreamRow>), StoreError> {
    use sqlx::{FromRow, Row};
    const SAVE: &str = concat!(
        "WITH run AS (
             UPDATE integration_runs SET preprocessed = true, pipeline_data = $11, retries = 0,
                 updated_at = now()
             WHERE id = $1 AND attempt = $2 AND state = 'processing'
             RETURNING integration_id),
         settings AS (
             UPDATE integrations SET settings = $12, updated_at = now()
             WHERE $12::jsonb IS NOT NULL AND id = (SELECT integration_id FROM run)),
         roots AS (
             INSERT INTO integration_streams
                 (id, run_id, parent_id, identifier, chain_identifier, source, data, page,
                  page_number, state, claimed_attempt, started_at)
             SELECT u.id, $1, u.parent_id, u.identifier, u.chain_identifier, u.source, u.data,
                    u.page, u.page_number,
                    CASE WHEN u.n <= $13 THEN 'processing' ELSE 'pending' END,
                    CASE WHEN u.n <= $13 THEN $2 END,
                    CASE WHEN u.n <= $13 THEN now() END
             FROM ",
        streams::unnest_streams!(),
        " WHERE EXISTS (SELECT 1 FROM run)
             ORDER BY u.n
             ON CONFLICT (run_id, identifier) DO NOTHING
             RETURNING *)
         SELECT held.held, (SELECT count(*) FROM roots) AS inserted, claimed.*
         FROM (SELECT EXISTS (SELECT 1 FROM run) AS held) held
         LEFT JOIN (SELECT * FROM roots WHERE state = 'processing') claimed ON true"
    );
    let roots = storable_roots(roots)?;
    let pipeline_data = super::storable::without_nul(pipeline_data);
    let settings = settings.map(super::storable::without_nul);
    let query = sqlx::query(SAVE).bind(lease.run_id).bind(lease.attempt);
    let rows = streams::bind_streams(query, &roots)
        .bind(pipeline_data.as_ref())
        .bind(settings.as_deref())
        .bind(i64::try_from(claim).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    // the statement answers at least one row: whether the lease held, and how many were new
    let (held, inserted) = match rows.first() {
        Some(row) => (
            row.try_get::<bool, _>("held")?,
            row.try_get::<i64, _>("inserted")?,
        ),
        None => (false, 0),
    };
    expect_one(u64::from(held), lease)?;
    let mut claimed = Vec::new();
    for row in &rows {
        if row.try_get::<Option<Uuid>, _>("id")?.is_some() {
            claimed.push(streams::StreamRow::from_row(row)?);
        }
    }
    claimed.sort_by_key(|r| r.seq);
    Ok((u64::try_from(inserted).unwrap_or(0), claimed))
}

/// The roots as stored: NUL stripped, identifiers short enough for their index, each identifier
/// once (the first wins, as the run's unique identifiers would have it).
fn storable_roots(roots: &[NewStream]) -> Result<Vec<streams::StreamInsert>, StoreError> {
    let mut rows = Vec::with_capacity(roots.len());
    let mut seen = std::collections::HashSet::with_capacity(roots.len());
    for (i, root) in roots.iter().enumerate() {
        let mut row = streams::StreamInsert::root(root);
        row.make_storable(|| format!("roots[{i}].identifier"))?;
        if seen.insert(row.identifier.clone()) {
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Defers the run until `until` and frees it: any worker picks it up again then. `failure` is
/// set when a run-level hook failed and will be retried.
pub async fn defer(
    pool: &PgPool,
    lease: &Lease,
    until: DateTime<Utc>,
    reason: &str,
    failure: Option<&ErrorRecord>,
) -> Result<(), StoreError> {
    defer_waiting_on(pool, lease, until, reason, failure, None).await
}

/// [`defer`], recording in the same statement the budget (`rate_limit_budgets`' key) a run
/// deferred by a rate limit waits on (none: cleared).
pub async fn defer_waiting_on(
    pool: &PgPool,
    lease: &Lease,
    until: DateTime<Utc>,
    reason: &str,
    failure: Option<&ErrorRecord>,
    budget: Option<&crate::http::BudgetKey>,
) -> Result<(), StoreError> {
    let (retries, error) = match failure {
        Some(record) => (
            Some(i32::try_from(record.failures).unwrap_or(i32::MAX)),
            Some(error_json(record)),
        ),
        None => (None, None),
    };
    let done = sqlx::query(
        "UPDATE integration_runs SET state = 'delayed', delayed_until = greatest($3, now()),
             delay_reason = $4, retries = coalesce($5, retries), error = coalesce($6, error),
             waiting_platform = $7, waiting_credential = $8, waiting_resource = $9,
             lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
         WHERE id = $1 AND attempt = $2 AND state = 'processing'",
    )
    .bind(lease.run_id)
    .bind(lease.attempt)
    .bind(until)
    .bind(reason)
    .bind(retries)
    .bind(error)
    .bind(budget.map(|b| &b.platform))
    .bind(budget.map(|b| &b.credential))
    .bind(budget.map(|b| &b.resource))
    .execute(pool)
    .await?;
    expect_one(done.rows_affected(), lease)
}

/// Hands back a run whose worker was interrupted by an outage: the streams this attempt had in
/// flight go back to pending uncharged (they were stopped by the outage, not by a fault of their
/// own) and the run is due at once, its lease freed, for any worker (this one first). One
/// transaction, guarded by the attempt alone: an expired lease that no other worker has claimed
/// yet is still this attempt's to hand back.
pub async fn interrupt(pool: &PgPool, lease: &Lease, reason: &str) -> Result<u64, StoreError> {
    let mut tx = crate::db::begin(pool).await?;
    let streams = streams::unclaim_attempt(&mut tx, lease).await?;
    let done = sqlx::query(
        "UPDATE integration_runs SET state = 'delayed', delayed_until = now(), delay_reason = $3,
             lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
         WHERE id = $1 AND attempt = $2 AND state = 'processing'",
    )
    .bind(lease.run_id)
    .bind(lease.attempt)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    expect_one(done.rows_affected(), lease)?;
    tx.commit().await?;
    Ok(streams)
}

/// Cancels an active run; streams in flight go back to pending. A worker processing it loses its
/// lease at its next write or heartbeat.
pub async fn cancel(pool: &PgPool, run_id: Uuid) -> Result<Run, StoreError> {
    let mut tx = crate::db::begin(pool).await?;
    let run: Option<Run> = sqlx::query_as(
        "UPDATE integration_runs SET state = 'cancelled', finished_at = now(), updated_at = now(),
             delayed_until = NULL, lease_owner = NULL, lease_expires_at = NULL
         WHERE id = $1 AND state IN ('pending', 'processing', 'delayed') RETURNING *",
    )
    .bind(run_id)
    .fetch_optional(&mut *tx)
    .await?;
    match run {
        Some(run) => {
            streams::unclaim_all(&mut tx, run_id).await?;
            tx.commit().await?;
            Ok(run)
        }
        None => {
            let current = get(pool, run_id).await?;
            Err(StoreError::Refused(format!(
                "run {run_id} is {} and cannot be cancelled",
                current.state
            )))
        }
    }
}

/// Resumes a run (`continue-run`): errored streams become pending with their retries reset,
/// waiting streams become due now, and the run becomes pending so that any worker takes it.
/// Refused for a run that is processed, or processing under a live lease.
pub async fn resume(pool: &PgPool, run_id: Uuid) -> Result<(Run, Revived), StoreError> {
    let mut tx = crate::db::begin(pool).await?;
    let run: Run = sqlx::query_as("SELECT * FROM integration_runs WHERE id = $1 FOR UPDATE")
        .bind(run_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound {
            what: "run",
            id: run_id,
        })?;
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM integrations WHERE id = $1 FOR SHARE")
            .bind(run.integration_id)
            .fetch_optional(&mut *tx)
            .await?;
    if status.as_deref() == Some("disconnected") {
        return Err(StoreError::Refused(format!(
            "run {run_id} cannot resume: its integration {} is disconnected",
            run.integration_id
        )));
    }
    match run.state {
        RunState::Processed => {
            return Err(StoreError::Refused(format!(
                "run {run_id} is already processed; start a new one with process-integration"
            )));
        }
        RunState::Processing
            if run
                .lease_expires_at
                .is_some_and(|at| at > crate::clock::now()) =>
        {
            return Err(StoreError::Refused(format!(
                "run {run_id} is being processed by {} (lease until {})",
                run.lease_owner.as_deref().unwrap_or("a worker"),
                run.lease_expires_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            )));
        }
        _ => {}
    }
    let revived = streams::revive(&mut tx, run_id).await?;
    let resumed: Result<Run, sqlx::Error> = sqlx::query_as(
        "UPDATE integration_runs SET state = 'pending', delayed_until = NULL, delay_reason = NULL,
             lease_owner = NULL, lease_expires_at = NULL, error = NULL, retries = 0,
             finished_at = NULL, updated_at = now()
         WHERE id = $1 RETURNING *",
    )
    .bind(run_id)
    .fetch_one(&mut *tx)
    .await;
    let resumed = match resumed {
        Ok(run) => run,
        Err(e) if is_unique_violation(&e, "integration_runs_one_active") => {
            return Err(StoreError::Refused(format!(
                "run {run_id} cannot resume: integration {} already has another active run",
                run.integration_id
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if resumed.onboarding {
        sqlx::query(
            "UPDATE integrations SET status = 'in-progress', updated_at = now()
             WHERE id = $1 AND status <> 'disconnected'",
        )
        .bind(resumed.integration_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok((resumed, revived))
}
