//! `integration_streams`: the units of work of a run, claimed, completed or failed under the
//! run's lease.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::storable::{self, Unstorable};
use super::{Lease, StoreError, expect_one};
use crate::error::ErrorRecord;
use crate::stream::{NewStream, Stream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    Pending,
    Processing,
    Processed,
    Error,
}

impl StreamState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Processed => "processed",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for StreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StreamState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => Self::Pending,
            "processing" => Self::Processing,
            "processed" => Self::Processed,
            "error" => Self::Error,
            other => return Err(format!("unknown stream state `{other}`")),
        })
    }
}

impl TryFrom<String> for StreamState {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// A stream as stored, with its bookkeeping.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StreamRow {
    pub id: Uuid,
    pub seq: i64,
    pub run_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub identifier: String,
    pub chain_identifier: String,
    pub source: String,
    pub data: Value,
    pub page: Option<Value>,
    pub page_number: i32,
    #[sqlx(try_from = "String")]
    pub state: StreamState,
    pub retries: i32,
    pub delayed_until: Option<DateTime<Utc>>,
    pub claimed_attempt: Option<i64>,
    pub error: Option<Value>,
    pub records: i32,
    pub members_created: i32,
    pub activities_created: i32,
    pub activities_updated: i32,
    pub last_record: Option<Value>,
    pub last_record_timestamp: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl StreamRow {
    pub fn to_stream(&self) -> Stream {
        Stream {
            id: self.id,
            run_id: self.run_id,
            parent_id: self.parent_id,
            identifier: self.identifier.clone(),
            chain_identifier: self.chain_identifier.clone(),
            source: self.source.clone(),
            data: self.data.clone(),
            page: self.page.clone(),
            page_number: u32::try_from(self.page_number).unwrap_or(1),
            retries: u32::try_from(self.retries).unwrap_or(0),
        }
    }

    pub fn error_record(&self) -> Option<ErrorRecord> {
        self.error
            .clone()
            .and_then(|e| serde_json::from_value(e).ok())
    }
}

/// A stream to insert: a root, a child or a next page.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInsert {
    pub parent_id: Option<Uuid>,
    pub identifier: String,
    pub chain_identifier: String,
    pub source: String,
    pub data: Value,
    pub page: Option<Value>,
    pub page_number: i32,
}

impl StreamInsert {
    /// A root stream: its own source unless it declares one.
    pub fn root(stream: &NewStream) -> Self {
        let source = stream
            .source
            .clone()
            .unwrap_or_else(|| stream.identifier.clone());
        Self::first_page(None, source, stream)
    }

    /// A child of `parent`: the parent's source unless it declares one.
    pub fn child(parent: &Stream, stream: &NewStream) -> Self {
        let source = stream
            .source
            .clone()
            .unwrap_or_else(|| parent.source.clone());
        Self::first_page(Some(parent.id), source, stream)
    }

    fn first_page(parent_id: Option<Uuid>, source: String, stream: &NewStream) -> Self {
        Self {
            parent_id,
            identifier: stream.identifier.clone(),
            chain_identifier: stream.identifier.clone(),
            source,
            data: stream.data.clone(),
            page: None,
            page_number: 1,
        }
    }

    /// The page after `current`: same parent, same data, same chain.
    pub fn next_page(current: &Stream, page: Value) -> Self {
        Self {
            parent_id: current.parent_id,
            identifier: current.next_page_identifier(&page),
            chain_identifier: current.chain_identifier.clone(),
            source: current.source.clone(),
            data: current.data.clone(),
            page: Some(page),
            page_number: i32::try_from(current.page_number.saturating_add(1)).unwrap_or(i32::MAX),
        }
    }
}

impl StreamInsert {
    /// Strips NUL from the stream's text and JSON and refuses an identifier too long for its
    /// index; `field` names a first page (a next page is named `next_page`).
    pub fn make_storable(&mut self, field: impl FnOnce() -> String) -> Result<(), Unstorable> {
        storable::strip_nul(&mut self.identifier);
        storable::strip_nul(&mut self.chain_identifier);
        storable::strip_nul(&mut self.source);
        storable::strip_nul_value(&mut self.data);
        if let Some(page) = &mut self.page {
            storable::strip_nul_value(page);
            if self.identifier.len() > storable::MAX_KEY_BYTES {
                let mut refused = Unstorable::too_long("next_page", &self.identifier);
                refused.reason = format!(
                    "the next page's stream identifier (its token) {}",
                    refused.reason.trim_start_matches("it ")
                );
                return Err(refused);
            }
        }
        storable::check_key(field, &self.identifier)
    }
}

/// The `UNNEST` of streams to insert, in the order given: columns `id, parent_id, identifier,
/// chain_identifier, source, data, page, page_number` from parameters `$3`–`$10` (`$1` and `$2`
/// are the statement's own).
macro_rules! unnest_streams {
    () => {
        "UNNEST($3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::jsonb[],
                $9::jsonb[], $10::int4[])
             WITH ORDINALITY
             AS u(id, parent_id, identifier, chain_identifier, source, data, page, page_number, n)"
    };
}
pub(crate) use unnest_streams;

/// Binds `rows` as the arrays of [`unnest_streams!`] (`$3`–`$10`), each with a new id.
pub(crate) fn bind_streams<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    rows: &'q [StreamInsert],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let ids: Vec<Uuid> = rows.iter().map(|_| Uuid::new_v4()).collect();
    let parents: Vec<Option<Uuid>> = rows.iter().map(|r| r.parent_id).collect();
    let identifiers: Vec<&str> = rows.iter().map(|r| r.identifier.as_str()).collect();
    let chains: Vec<&str> = rows.iter().map(|r| r.chain_identifier.as_str()).collect();
    let sources: Vec<&str> = rows.iter().map(|r| r.source.as_str()).collect();
    let data: Vec<&Value> = rows.iter().map(|r| &r.data).collect();
    let pages: Vec<Option<&Value>> = rows.iter().map(|r| r.page.as_ref()).collect();
    let numbers: Vec<i32> = rows.iter().map(|r| r.page_number).collect();
    query
        .bind(ids)
        .bind(parents)
        .bind(identifiers)
        .bind(chains)
        .bind(sources)
        .bind(data)
        .bind(pages)
        .bind(numbers)
}

/// Inserts streams, skipping identifiers the run already has, while `lease` holds the run.
/// Returns how many were new.
pub(crate) async fn insert_many(
    conn: &mut PgConnection,
    lease: &Lease,
    rows: &[StreamInsert],
) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    const INSERT: &str = concat!(
        "INSERT INTO integration_streams
             (id, run_id, parent_id, identifier, chain_identifier, source, data, page, page_number)
         SELECT u.id, $1, u.parent_id, u.identifier, u.chain_identifier, u.source, u.data, u.page,
                u.page_number
         FROM ",
        unnest_streams!(),
        " WHERE EXISTS (SELECT 1 FROM integration_runs
                        WHERE id = $1 AND attempt = $2 AND state = 'processing')
         -- kept in the order the integration gave (claims follow it); the rare deadlock of two
         -- commits inserting the same identifiers in opposite orders is retried by the processor
         ORDER BY u.n
         ON CONFLICT (run_id, identifier) DO NOTHING"
    );
    let query = sqlx::query(INSERT).bind(lease.run_id).bind(lease.attempt);
    let done = bind_streams(query, rows).execute(conn).await?;
    Ok(done.rows_affected())
}

/// Claims up to `limit` due pending streams of the leased run, oldest first, in one statement.
/// Nothing is claimed once the lease no longer holds the run.
pub async fn claim_due(
    pool: &PgPool,
    lease: &Lease,
    limit: usize,
) -> Result<Vec<StreamRow>, StoreError> {
    // A claim lost in a database crash is harmless: the streams are simply pending again, the
    // stream's own write then finds its claim gone while the run is still held, and the loop
    // claims it anew (nothing of its outcome is written); and the stream's own durable commit
    // later flushes the log in order. So this statement's transaction does not wait for fsync
    // (`no_fsync_wait`; the claim depends on it, since a CTE nothing refers to is not run).
    const CLAIM: &str =
        "WITH no_fsync_wait AS (SELECT set_config('synchronous_commit', 'off', true)),
         fence AS (SELECT 1 FROM integration_runs
                   WHERE id = $1 AND attempt = $2 AND state = 'processing' FOR SHARE)
         UPDATE integration_streams SET state = 'processing', claimed_attempt = $2,
             started_at = now(), updated_at = now()
         WHERE id IN (
             SELECT id FROM integration_streams
             WHERE run_id = $1 AND state = 'pending'
               AND (delayed_until IS NULL OR delayed_until <= now())
               AND EXISTS (SELECT 1 FROM fence) AND EXISTS (SELECT 1 FROM no_fsync_wait)
             ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING *";
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut rows: Vec<StreamRow> = sqlx::query_as(CLAIM)
        .bind(lease.run_id)
        .bind(lease.attempt)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    rows.sort_by_key(|r| r.seq);
    Ok(rows)
}

/// Records a failure: the stream is pending again from `retry_at`, or, without one, ends in
/// `error`. The error record keeps the whole chain.
pub async fn fail(
    pool: &PgPool,
    lease: &Lease,
    stream_id: Uuid,
    error: &ErrorRecord,
    retry_at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    let done = sqlx::query(
        "UPDATE integration_streams SET
             state = CASE WHEN $5::timestamptz IS NULL THEN 'error' ELSE 'pending' END,
             delayed_until = $5, retries = $6, error = $4, claimed_attempt = NULL,
             finished_at = CASE WHEN $5::timestamptz IS NULL THEN now() END, updated_at = now()
         WHERE id = $1 AND state = 'processing' AND claimed_attempt = $3
           AND EXISTS (SELECT 1 FROM integration_runs
                       WHERE id = $2 AND attempt = $3 AND state = 'processing' FOR SHARE)",
    )
    .bind(stream_id)
    .bind(lease.run_id)
    .bind(lease.attempt)
    .bind(super::error_json(error))
    .bind(retry_at)
    .bind(i32::try_from(error.failures).unwrap_or(i32::MAX))
    .execute(pool)
    .await?;
    expect_one(done.rows_affected(), lease)
}

/// Puts claimed streams back to pending without counting a failure (a rate limit, a global limit,
/// a shutdown before they started).
pub async fn unclaim(pool: &PgPool, lease: &Lease, stream_ids: &[Uuid]) -> Result<u64, StoreError> {
    if stream_ids.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "UPDATE integration_streams SET state = 'pending', claimed_attempt = NULL, updated_at = now()
         WHERE id = ANY($1) AND state = 'processing' AND claimed_attempt = $3
           AND EXISTS (SELECT 1 FROM integration_runs
                       WHERE id = $2 AND attempt = $3 AND state = 'processing' FOR SHARE)",
    )
    .bind(stream_ids)
    .bind(lease.run_id)
    .bind(lease.attempt)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Puts the streams `lease`'s attempt has in flight back to pending, uncharged.
pub(crate) async fn unclaim_attempt(
    conn: &mut PgConnection,
    lease: &Lease,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE integration_streams SET state = 'pending', claimed_attempt = NULL, updated_at = now()
         WHERE run_id = $1 AND state = 'processing' AND claimed_attempt = $2",
    )
    .bind(lease.run_id)
    .bind(lease.attempt)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Puts every stream in flight back to pending (the run is being cancelled).
pub(crate) async fn unclaim_all(conn: &mut PgConnection, run_id: Uuid) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE integration_streams SET state = 'pending', claimed_attempt = NULL, updated_at = now()
         WHERE run_id = $1 AND state = 'processing'",
    )
    .bind(run_id)
    .execute(conn)
    .await?
    .rows_affected())
}

/// What the new attempt of a run did with the streams an earlier attempt left `processing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Abandoned {
    /// Started while the database was up: their worker died or stalled. Charged a retry each.
    pub charged: u64,
    /// Started before the database server last (re)started, which cut them off: uncharged.
    pub cut_off_by_restart: u64,
}

/// Streams an earlier attempt left `processing`: those started before the database server last
/// (re)started go back uncharged; the others count a failure (pending, or past `max_retries` error).
pub async fn rescue_abandoned(
    pool: &PgPool,
    lease: &Lease,
    max_retries: u32,
    error: &ErrorRecord,
) -> Result<Abandoned, StoreError> {
    let charges: Vec<i32> = sqlx::query_scalar(concat!(
        "UPDATE integration_streams s SET
             retries = s.retries + v.charge, claimed_attempt = NULL, updated_at = now(),
             state = CASE WHEN s.retries + v.charge > $3 THEN 'error' ELSE 'pending' END,
             finished_at = CASE WHEN s.retries + v.charge > $3 THEN now() END,
             error = CASE WHEN v.charge > 0 THEN $4::jsonb
                          || jsonb_build_object('failures', s.retries + 1) ELSE s.error END
         FROM (SELECT id, CASE WHEN started_at < ",
        super::server_started!(),
        " THEN 0 ELSE 1 END AS charge FROM integration_streams
               WHERE run_id = $1 AND state = 'processing' AND claimed_attempt < $2) v
         WHERE s.id = v.id AND s.state = 'processing' AND s.claimed_attempt < $2
           AND EXISTS (SELECT 1 FROM integration_runs WHERE id = $1 AND attempt = $2
                       AND state = 'processing' FOR SHARE) RETURNING v.charge",
    ))
    .bind(lease.run_id)
    .bind(lease.attempt)
    .bind(i32::try_from(max_retries).unwrap_or(i32::MAX))
    .bind(super::error_json(error))
    .fetch_all(pool)
    .await?;
    let charged = charges.iter().filter(|c| **c > 0).count() as u64;
    let cut_off_by_restart = charges.len() as u64 - charged;
    Ok(Abandoned {
        charged,
        cut_off_by_restart,
    })
}

/// When the run's pending streams can next be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingWait {
    /// No pending stream left.
    None,
    DueNow,
    /// The earliest retry backoff ends then.
    DueAt(DateTime<Utc>),
}

/// What `continue-run` did to a run's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Revived {
    /// Errored streams made pending again, retries reset.
    pub errored: u64,
    /// Pending streams whose retry backoff was cut short.
    pub waiting: u64,
}

/// Errored streams become pending with retries reset; waiting ones become due now.
pub(crate) async fn revive(conn: &mut PgConnection, run_id: Uuid) -> Result<Revived, StoreError> {
    let errored = sqlx::query(
        "UPDATE integration_streams SET state = 'pending', retries = 0, delayed_until = NULL,
             finished_at = NULL, updated_at = now()
         WHERE run_id = $1 AND state = 'error'",
    )
    .bind(run_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let waiting = sqlx::query(
        "UPDATE integration_streams SET delayed_until = NULL, updated_at = now()
         WHERE run_id = $1 AND state = 'pending' AND delayed_until IS NOT NULL",
    )
    .bind(run_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(Revived { errored, waiting })
}

/// Live figures of a run, summed from its streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, sqlx::FromRow)]
pub struct Progress {
    pub pending: i64,
    pub processing: i64,
    pub processed: i64,
    pub errored: i64,
    pub members_created: i64,
    pub activities_created: i64,
    pub activities_updated: i64,
}

impl Progress {
    pub fn total(&self) -> i64 {
        self.pending + self.processing + self.processed + self.errored
    }

    pub fn is_final(&self) -> bool {
        self.pending == 0 && self.processing == 0
    }
}

pub async fn progress(pool: &PgPool, run_id: Uuid) -> Result<Progress, StoreError> {
    Ok(sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'pending') AS pending,
                count(*) FILTER (WHERE state = 'processing') AS processing,
                count(*) FILTER (WHERE state = 'processed') AS processed,
                count(*) FILTER (WHERE state = 'error') AS errored,
                coalesce(sum(members_created), 0)::int8 AS members_created,
                coalesce(sum(activities_created), 0)::int8 AS activities_created,
                coalesce(sum(activities_updated), 0)::int8 AS activities_updated
         FROM integration_streams WHERE run_id = $1",
    )
    .bind(run_id)
    .fetch_one(pool)
    .await?)
}

/// How many streams the run has.
pub async fn count(pool: &PgPool, run_id: Uuid) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM integration_streams WHERE run_id = $1")
        .bind(run_id)
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The first errored stream of the run, for the run's error.
pub async fn first_errored(pool: &PgPool, run_id: Uuid) -> Result<Option<StreamRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT * FROM integration_streams WHERE run_id = $1 AND state = 'error' ORDER BY seq LIMIT 1",
    )
    .bind(run_id)
    .fetch_optional(pool)
    .await?)
}

/// Every stream of a run, in creation order (for tests and operators; a large run has many).
pub async fn list(pool: &PgPool, run_id: Uuid) -> Result<Vec<StreamRow>, StoreError> {
    Ok(
        sqlx::query_as("SELECT * FROM integration_streams WHERE run_id = $1 ORDER BY seq")
            .bind(run_id)
            .fetch_all(pool)
            .await?,
    )
}
