//! Committing a stream's outcome: its records, its child streams and next page, and the stream
//! `processed`, in one transaction under the run's lease (one statement when the outcome brings
//! no new streams, as most pages of a check do). The last stream in flight may ask, in
//! the same statement, how the run's other streams stand ([`RunSummary`]): a run whose streams are
//! all final then ends without another round trip. With `postprocess` already run, that statement
//! also ends the run when every other stream is `processed` ([`Completion::finish`]): a check's
//! last commit is its last transaction.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::records::{self, RecordScope, UpsertCounts};
use super::storable::{self, Unstorable};
use super::streams::{PendingWait, StreamInsert, insert_many};
use super::{Lease, StoreError, expect_one};
use crate::error::ErrorRecord;
use crate::records::{Activity, Member};

/// A processed stream's outcome, ready to commit.
#[derive(Debug, Clone)]
pub struct Completion<'a> {
    pub stream_id: Uuid,
    pub scope: &'a RecordScope,
    pub members: Vec<Member>,
    pub activities: Vec<Activity>,
    pub new_streams: Vec<StreamInsert>,
    pub last_record: Option<Value>,
    pub last_record_timestamp: Option<DateTime<Utc>>,
    /// Set when the outcome is committed but the stream must still end in `error` (its
    /// pagination broke the rules).
    pub error: Option<&'a ErrorRecord>,
    /// Ask how the run's other streams stand after this commit ([`Completed::summary`]).
    pub summarize: bool,
    /// With `summarize`: `postprocess` is done, so end the run `processed` in this same statement
    /// when this stream ends `processed` and every other stream of the run already has
    /// ([`Completed::finished`]).
    pub finish: Option<FinishRun>,
}

/// Ends the run in the commit of its last stream ([`Completion::finish`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FinishRun {
    /// The settings `postprocess` set, as stored (`None` when unchanged).
    pub settings: Option<Value>,
}

/// The figures of a run its last stream's commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FinishedRun {
    pub streams_processed: i64,
    pub streams_errored: i64,
    pub activities_created: i64,
}

impl Completion<'_> {
    /// How many records the outcome carries (its stream's `records`).
    fn records_total(&self) -> i32 {
        i32::try_from(self.members.len() + self.activities.len()).unwrap_or(i32::MAX)
    }

    /// Of a statement's two forms, the one that asks for a summary when this completion does.
    fn statement(&self, plain: &'static str, summarizing: &'static str) -> &'static str {
        if self.summarize { summarizing } else { plain }
    }

    /// Makes the outcome storable, the same way for every integration: NUL stripped from every
    /// record, stream and last record (a record's `nul_stripped` attribute says which fields);
    /// a source id or stream identifier too long for its index refused with its field named.
    pub fn make_storable(&mut self) -> Result<(), Unstorable> {
        for (i, member) in self.members.iter_mut().enumerate() {
            storable::strip_member(member);
            storable::check_key(|| format!("members[{i}].source_id"), &member.source_id)?;
        }
        for (i, activity) in self.activities.iter_mut().enumerate() {
            storable::strip_activity(activity);
            storable::check_key(|| format!("activities[{i}].source_id"), &activity.source_id)?;
            storable::check_key(
                || format!("activities[{i}].member.source_id"),
                &activity.member.source_id,
            )?;
        }
        for (i, insert) in self.new_streams.iter_mut().enumerate() {
            insert.make_storable(|| format!("new_streams[{i}].identifier"))?;
        }
        if let Some(record) = &mut self.last_record {
            storable::strip_nul_value(record);
        }
        Ok(())
    }
}

/// What committing an outcome wrote.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Completed {
    pub records: UpsertCounts,
    /// Child streams and next pages that were new to the run.
    pub new_streams: u64,
    /// Set when the next page had already been fetched in this run: the stream ended in `error`.
    pub cycle: Option<ErrorRecord>,
    /// How the run's streams stand once this one is final, when [`Completion::summarize`] asked.
    pub summary: Option<RunSummary>,
    /// The run, when [`Completion::finish`] asked and it ended.
    pub finished: Option<FinishedRun>,
}

/// How a run's streams stand, read in the commit of one of them (which sees the others as they
/// were committed when it ran).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, sqlx::FromRow)]
pub struct RunSummary {
    /// Streams pending or processing (the committed one is final, so not among them).
    pub open: i64,
    /// Of those, the ones processing: another commit may still come.
    pub processing: i64,
    /// Streams in `error`, the committed one included if it ended so.
    pub errored: i64,
    /// Some pending stream may be claimed now.
    pub due_now: bool,
    /// The earliest end of a pending stream's retry backoff.
    pub next_due: Option<DateTime<Utc>>,
}

impl RunSummary {
    /// No other stream was in flight: no commit can have come after this one, so it tells how the
    /// run's streams stand now.
    pub fn is_conclusive(&self) -> bool {
        self.processing == 0
    }

    /// When the run's pending streams can next be claimed (streams processing are their
    /// workers' business).
    pub fn pending_wait(&self) -> PendingWait {
        match (self.open - self.processing, self.due_now, self.next_due) {
            (0, _, _) => PendingWait::None,
            (_, false, Some(at)) => PendingWait::DueAt(at),
            _ => PendingWait::DueNow,
        }
    }
}

/// Commits a stream's outcome in one transaction: members and activities upserted, new streams
/// inserted (deduplicated by identifier), the stream `processed` (or `error` with
/// `completion.error`). Nothing is written unless the lease still holds the run and the stream.
/// Without new streams it is one statement (records or not): no BEGIN and COMMIT of their own.
pub async fn complete(
    pool: &PgPool,
    lease: &Lease,
    completion: &Completion<'_>,
) -> Result<Completed, StoreError> {
    let carries_records = !(completion.members.is_empty() && completion.activities.is_empty());
    match (carries_records, completion.new_streams.is_empty()) {
        // one statement each: its own transaction
        (true, true) => complete_records(pool, lease, completion).await,
        (false, true) => complete_in(&mut *pool.acquire().await?, lease, completion).await,
        _ => {
            let mut tx = crate::db::begin(pool).await?;
            let completed = complete_in(&mut tx, lease, completion).await?;
            tx.commit().await?;
            Ok(completed)
        }
    }
}

/// [`complete`] for an outcome of records and no new streams: one statement
/// ([`commit_records_sql!`]). When it missed a member that another transaction inserted
/// meanwhile, its records are committed but not the stream: the member is updated and the stream
/// marked by a second statement ([`update_missed_and_mark_sql!`]; a crash between the two leaves
/// the stream `processing`, to be fetched and written again, which changes nothing).
async fn complete_records(
    pool: &PgPool,
    lease: &Lease,
    completion: &Completion<'_>,
) -> Result<Completed, StoreError> {
    let batch = records::Batch::new(&completion.members, &completion.activities);
    let sql = completion.statement(COMMIT_RECORDS, COMMIT_RECORDS_AND_SUMMARIZE);
    let query = bind_stream(
        batch.bind(sqlx::query(sql), completion.scope),
        lease,
        completion,
    );
    let query = bind_last(query, completion, completion.error);
    let row = bind_finish(query, completion).fetch_one(pool).await?;
    expect_one(records::count_in(&row, "held")?, lease)?;
    let (mut counts, missed) = UpsertCounts::from_row(&row)?;
    let (summary, finished) = if records::count_in(&row, "updated")? == 1 {
        summary_in(&row, completion)?
    } else if missed == 0 {
        // the stream was held when the statement began, not when it was marked
        return Err(StoreError::LeaseLost {
            run_id: lease.run_id,
            attempt: lease.attempt,
        });
    } else {
        let sql =
            completion.statement(UPDATE_MISSED_AND_MARK, UPDATE_MISSED_AND_MARK_AND_SUMMARIZE);
        let query = batch.bind_members(sqlx::query(sql), completion.scope);
        let query = bind_mark(query, lease, completion, completion.error, &counts);
        let row = bind_finish(query, completion).fetch_one(pool).await?;
        expect_one(records::count_in(&row, "updated")?, lease)?;
        counts.members_updated += records::count_in(&row, "members_updated")?;
        summary_in(&row, completion)?
    };
    Ok(Completed {
        records: counts,
        new_streams: 0,
        cycle: None,
        summary,
        finished,
    })
}

/// Binds the stream, the run, the attempt and the stream's record count (after the records').
fn bind_stream<'q>(
    query: records::Query<'q>,
    lease: &Lease,
    completion: &Completion<'_>,
) -> records::Query<'q> {
    query
        .bind(completion.stream_id)
        .bind(lease.run_id)
        .bind(lease.attempt)
        .bind(completion.records_total())
}

/// Binds the stream's last record, its timestamp and `error` (a statement's last three).
fn bind_last<'q>(
    query: records::Query<'q>,
    completion: &Completion<'q>,
    error: Option<&ErrorRecord>,
) -> records::Query<'q> {
    query
        .bind(&completion.last_record)
        .bind(completion.last_record_timestamp)
        .bind(error.map(super::error_json))
}

/// Binds what [`mark_sql!`] marks the stream with, after the statement's earlier placeholders:
/// the stream, run, attempt, its figures, its last record and `error`.
fn bind_mark<'q>(
    query: records::Query<'q>,
    lease: &Lease,
    completion: &Completion<'q>,
    error: Option<&ErrorRecord>,
    counts: &UpsertCounts,
) -> records::Query<'q> {
    let query = bind_stream(query, lease, completion)
        .bind(clamp(counts.members_created))
        .bind(clamp(counts.activities_created))
        .bind(clamp(counts.activities_updated));
    bind_last(query, completion, error)
}

/// With a summarizing statement: whether to end the run, the settings `postprocess` set, and the
/// event to write (after the statement's other placeholders; see [`finish_sql!`]).
fn bind_finish<'q>(query: records::Query<'q>, completion: &Completion<'q>) -> records::Query<'q> {
    if !completion.summarize {
        return query;
    }
    let settings = completion.finish.as_ref().and_then(|f| f.settings.as_ref());
    query
        .bind(completion.finish.is_some())
        .bind(settings.map(super::storable::without_nul))
        .bind(super::events::types::RUN_PROCESSED)
}

/// The run's summary a commit's row carries, when the completion asked for one, and the run's
/// figures when that commit ended it.
fn summary_in(
    row: &sqlx::postgres::PgRow,
    completion: &Completion<'_>,
) -> Result<(Option<RunSummary>, Option<FinishedRun>), sqlx::Error> {
    if !completion.summarize {
        return Ok((None, None));
    }
    let summary = <RunSummary as sqlx::FromRow<_>>::from_row(row)?;
    let finished = (records::count_in(row, "finished")? == 1)
        .then(|| {
            Ok::<_, sqlx::Error>(FinishedRun {
                streams_processed: sqlx::Row::try_get(row, "run_streams_processed")?,
                streams_errored: sqlx::Row::try_get(row, "run_streams_errored")?,
                activities_created: sqlx::Row::try_get(row, "run_activities_created")?,
            })
        })
        .transpose()?;
    Ok((Some(summary), finished))
}

async fn complete_in(
    conn: &mut PgConnection,
    lease: &Lease,
    completion: &Completion<'_>,
) -> Result<Completed, StoreError> {
    let counts = records::upsert(
        conn,
        completion.scope,
        &completion.members,
        &completion.activities,
    )
    .await?;
    // the next page, if any, is last: a page the chain already fetched in this run is a cycle
    // (A → B → A), which ends the stream in `error` with its records kept
    let (children, next_page) = match completion.new_streams.split_last() {
        Some((last, children)) if last.page.is_some() => (children, Some(last)),
        _ => (completion.new_streams.as_slice(), None),
    };
    let mut new_streams = insert_many(conn, lease, children).await?;
    let mut cycle = None;
    if let Some(page) = next_page {
        let inserted = insert_many(conn, lease, std::slice::from_ref(page)).await?;
        new_streams += inserted;
        // (a child of this same outcome with that identifier is the page, not a cycle)
        if inserted == 0 && !children.iter().any(|c| c.identifier == page.identifier) {
            cycle = Some(cycle_error(page));
        }
    }
    let error = completion.error.cloned().or(cycle);
    let (updated, (summary, finished)) =
        mark_processed(conn, lease, completion, error.as_ref(), &counts).await?;
    expect_one(updated, lease)?;
    Ok(Completed {
        records: counts,
        new_streams,
        cycle: error.filter(|_| completion.error.is_none()),
        summary,
        finished,
    })
}

/// The guarded update of a committed stream, its placeholders given: `$stream`, `$run`,
/// `$attempt`; `$figures` its records, members created, activities created and updated;
/// `$last` its last record and that record's timestamp; `$error` (jsonb, NULL for none); `$gate`
/// a further condition (`true` for none).
macro_rules! mark_sql {
    ($stream:literal, $run:literal, $attempt:literal, $figures:literal, $last:literal,
     $error:literal, $gate:literal) => {
        concat!(
            "UPDATE integration_streams SET
                 state = CASE WHEN ",
            $error,
            "::jsonb IS NULL THEN 'processed' ELSE 'error' END,
                 error = ",
            $error,
            ", claimed_attempt = NULL,
                 delayed_until = NULL, finished_at = now(), updated_at = now(),
                 (records, members_created, activities_created, activities_updated) = (",
            $figures,
            "),
                 (last_record, last_record_timestamp) = (",
            $last,
            ")
             WHERE id = ",
            $stream,
            " AND state = 'processing' AND claimed_attempt = ",
            $attempt,
            " AND ",
            $gate,
            "
               AND EXISTS (SELECT 1 FROM integration_runs
                           WHERE id = ",
            $run,
            " AND attempt = ",
            $attempt,
            " AND state = 'processing' FOR SHARE)"
        )
    };
}

/// How a run's streams not yet processed stand, as a [`RunSummary`]'s columns: a statement adds
/// which run (and which streams) with `AND`.
macro_rules! standing_sql {
    () => {
        "SELECT count(*) FILTER (WHERE state IN ('pending', 'processing')) AS open,
                count(*) FILTER (WHERE state = 'processing') AS processing,
                count(*) FILTER (WHERE state = 'error') AS errored,
                coalesce(bool_or(state = 'pending'
                    AND (delayed_until IS NULL OR delayed_until <= now())), false) AS due_now,
                min(delayed_until) FILTER (WHERE state = 'pending') AS next_due
         FROM integration_streams
         WHERE state IN ('pending', 'processing', 'error')"
    };
}

/// How the run's other streams stand (`others`), for a statement whose CTE `done` marked stream
/// `$stream` of run `$run` (RETURNING its state); [`summary_columns!`] selects it as a
/// [`RunSummary`].
macro_rules! others_sql {
    ($stream:literal, $run:literal) => {
        concat!(
            "others AS (",
            standing_sql!(),
            " AND run_id = ",
            $run,
            " AND id <> ",
            $stream,
            ")"
        )
    };
}

macro_rules! summary_columns {
    () => {
        "o.open, o.processing,
         o.errored + (SELECT count(*) FROM done WHERE state = 'error') AS errored,
         o.due_now, o.next_due,
         (SELECT count(*) FROM ended) AS finished,
         (SELECT streams_processed FROM ended) AS run_streams_processed,
         (SELECT streams_errored FROM ended) AS run_streams_errored,
         (SELECT activities_created FROM ended) AS run_activities_created"
    };
}

/// For a statement whose CTE `done` marked stream `$stream` of run `$run` held by `$attempt`
/// (RETURNING its id, state and figures) and whose CTE `others` counted the run's other streams:
/// the run ended `processed` in the same statement when `$finish` (bool) asks, the stream ended
/// `processed` and no other stream is open or in `error` (`postprocess` having run), with the
/// settings `$settings` and the event type `$event`, after the statement's other events when
/// `$after` reads them (see [`super::run_end::end_run_sql!`]). The
/// statement's snapshot still sees the stream processing: the run's figures add it, and its
/// source counts it processed.
macro_rules! finish_sql {
    ($stream:literal, $run:literal, $attempt:literal, $finish:literal, $settings:literal,
     $event:literal, $after:literal) => {
        concat!(
            ", figures AS (
                 SELECT o.processed + 1 AS processed, o.errored,
                        o.members + d.members_created AS members,
                        o.created + d.activities_created AS created,
                        o.updated + d.activities_updated AS updated
                 FROM (",
            super::run_end::run_figures_sql!($run),
            " AND id <> ",
            $stream,
            ") o, done d
                 WHERE ",
            $finish,
            "::bool AND d.state = 'processed'
                   AND (SELECT open + errored FROM others) = 0), ",
            super::run_end::end_run_sql!(
                $run,
                $attempt,
                "'processed'",
                "NULL",
                $settings,
                "'done'",
                $event,
                "s.state = 'processed' OR s.id IN (SELECT id FROM done)",
                $after
            )
        )
    };
}

/// What a summarizing statement's CTE `done` returns of the stream it marked.
macro_rules! done_returning {
    () => {
        " RETURNING id, state, members_created, activities_created, activities_updated)"
    };
}

/// The stream's update alone ($1 stream, $2 run, $3 attempt, $4–$9 figures and last record, $10
/// error); summarizing, the run ended too when asked ($11 finish, $12 settings, $13 event).
const MARK: &str = mark_sql!("$1", "$2", "$3", "$4, $5, $6, $7", "$8, $9", "$10", "true");
const MARK_AND_SUMMARIZE: &str = concat!(
    "WITH done AS (",
    mark_sql!("$1", "$2", "$3", "$4, $5, $6, $7", "$8, $9", "$10", "true"),
    done_returning!(),
    ", ",
    others_sql!("$1", "$2"),
    finish_sql!("$1", "$2", "$3", "$11", "$12", "$13", "true"),
    " SELECT (SELECT count(*) FROM done) AS updated, ",
    summary_columns!(),
    " FROM others o"
);

/// `g`: the stream `$stream` of run `$run`, locked, when the lease (`$attempt`) holds both; a
/// statement writes only `WHERE EXISTS (SELECT 1 FROM g)`.
macro_rules! held_sql {
    ($stream:literal, $run:literal, $attempt:literal) => {
        concat!(
            "g AS (
                 SELECT 1 FROM integration_streams
                 WHERE id = ",
            $stream,
            " AND state = 'processing' AND claimed_attempt = ",
            $attempt,
            "
                   AND EXISTS (SELECT 1 FROM integration_runs
                               WHERE id = ",
            $run,
            " AND attempt = ",
            $attempt,
            " AND state = 'processing'
                               FOR SHARE)
                 FOR NO KEY UPDATE)"
        )
    };
}

/// An outcome of records and no new streams in one statement ($1–$19 the records, $20 stream,
/// $21 run, $22 attempt, $23 records, $24–$25 last record, $26 error): `g` holds the stream
/// (locked) when the lease holds the run and the stream, and nothing is written without it; the
/// stream is marked unless some member was missed (`missed`: another transaction inserted it
/// after this statement's snapshot, so its update could not be applied here). `held` says
/// whether the records were written, `updated` whether the stream was marked. Summarizing: the
/// run ended too when asked ([`finish_sql!`]: $27 finish, $28 settings, $29 event), after the
/// records' events.
macro_rules! commit_records_sql {
    ($($summary:literal, $finish:literal, $settings:literal, $event:literal)?) => {
        concat!(
            "WITH ",
            held_sql!("$20", "$21", "$22"),
            ", ",
            super::records::upsert_ctes!("EXISTS (SELECT 1 FROM g)"),
            ", done AS (",
            mark_sql!(
                "$20",
                "$21",
                "$22",
                "$23, (SELECT count(*) FROM ins)::int,
                 (SELECT count(*) FILTER (WHERE created) FROM act)::int,
                 (SELECT count(*) FILTER (WHERE NOT created) FROM act)::int",
                "$24, $25",
                "$26",
                "EXISTS (SELECT 1 FROM g) AND (SELECT n FROM missed) = 0"
            ),
            done_returning!(),
            $(", ", others_sql!("$20", "$21"), $summary,
              finish_sql!("$20", "$21", "$22", $finish, $settings, $event,
                  "(SELECT count(*) FROM outbox) >= 0"),)?
            " SELECT (SELECT count(*) FROM g) AS held, (SELECT count(*) FROM done) AS updated, ",
            super::records::upsert_counts!()
            $(, ", ", summary_columns!(), " FROM others o", $summary)?
        )
    };
}
const COMMIT_RECORDS: &str = commit_records_sql!();
const COMMIT_RECORDS_AND_SUMMARIZE: &str = commit_records_sql!("", "$27", "$28", "$29");

/// After [`commit_records_sql!`] missed members: the members `$1`–`$9` updated (with this
/// statement's fresh snapshot, which sees them) and the stream marked, in one statement, both only
/// while the lease holds the stream ($10 stream, $11 run, $12 attempt, $13–$16 figures, $17–$18
/// last record, $19 error). `members_updated` says how many members changed, `updated` whether
/// the stream was marked. Summarizing: the run ended too when asked ($20 finish, $21 settings,
/// $22 event).
macro_rules! update_missed_and_mark_sql {
    ($($summary:literal, $finish:literal, $settings:literal, $event:literal)?) => {
        concat!(
            "WITH ",
            held_sql!("$10", "$11", "$12"),
            ", ",
            super::records::members_update_sql!("EXISTS (SELECT 1 FROM g)"),
            ", ",
            super::records::members_updated_outbox_sql!(),
            ", done AS (",
            mark_sql!(
                "$10",
                "$11",
                "$12",
                "$13, $14, $15, $16",
                "$17, $18",
                "$19",
                "EXISTS (SELECT 1 FROM g)"
            ),
            done_returning!(),
            $(", ", others_sql!("$10", "$11"), $summary,
              finish_sql!("$10", "$11", "$12", $finish, $settings, $event,
                  "(SELECT count(*) FROM outbox) >= 0"),)?
            " SELECT (SELECT count(*) FROM done) AS updated,
                     (SELECT count(*) FROM up) AS members_updated"
            $(, ", ", summary_columns!(), " FROM others o", $summary)?
        )
    };
}
const UPDATE_MISSED_AND_MARK: &str = update_missed_and_mark_sql!();
const UPDATE_MISSED_AND_MARK_AND_SUMMARIZE: &str =
    update_missed_and_mark_sql!("", "$20", "$21", "$22");

/// The stream `processed` (or `error` with `error`), guarded by the lease; with
/// [`Completion::summarize`], the run's other streams counted in the same statement (which sees
/// them as they were before it, the committed stream excluded). Returns the rows updated.
async fn mark_processed(
    conn: &mut PgConnection,
    lease: &Lease,
    completion: &Completion<'_>,
    error: Option<&ErrorRecord>,
    counts: &UpsertCounts,
) -> Result<(u64, (Option<RunSummary>, Option<FinishedRun>)), StoreError> {
    let query = bind_mark(
        sqlx::query(completion.statement(MARK, MARK_AND_SUMMARIZE)),
        lease,
        completion,
        error,
        counts,
    );
    if !completion.summarize {
        return Ok((
            query.execute(&mut *conn).await?.rows_affected(),
            (None, None),
        ));
    }
    let row = bind_finish(query, completion).fetch_one(&mut *conn).await?;
    let updated: i64 = sqlx::Row::try_get(&row, "updated")?;
    Ok((
        u64::try_from(updated).unwrap_or(0),
        summary_in(&row, completion)?,
    ))
}

/// How the run's streams stand now, read by index without its processed ones (what a summary
/// says, when no commit said it conclusively).
pub async fn summary(pool: &PgPool, run_id: Uuid) -> Result<RunSummary, StoreError> {
    Ok(sqlx::query_as(concat!(standing_sql!(), " AND run_id = $1"))
        .bind(run_id)
        .fetch_one(pool)
        .await?)
}

fn cycle_error(page: &StreamInsert) -> ErrorRecord {
    let message = format!(
        "pagination cycles: the next page of `{}` ({}) was already fetched in this run",
        page.chain_identifier,
        page.page
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    ErrorRecord {
        kind: crate::error::ErrorKind::Fatal,
        hook: "processor".to_owned(),
        chain: vec![message.clone()],
        message,
        failures: 1,
        at: crate::clock::now(),
    }
}

fn clamp(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
