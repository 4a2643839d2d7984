//! How a run ends: its final figures, its sources' checkpoints, its integration's status and
//! settings and its event, in one statement ([`finish`]; the last stream's commit ends a run
//! with the same SQL, see [`super::outcomes`]).

use serde_json::Value;
use sqlx::PgPool;

use super::runs::Run;
use super::{Lease, StoreError, error_json};
use crate::error::ErrorRecord;

/// How a run ends.
#[derive(Debug, Clone)]
pub enum RunEnd<'a> {
    /// Every stream processed and `postprocess` done; `settings` are the ones it changed.
    Processed {
        settings: Option<&'a Value>,
    },
    Failed {
        error: &'a ErrorRecord,
    },
}

/// The figures of run `$run`'s streams, as `end_run_sql!` reads them: `processed`, `errored`,
/// `members`, `created`, `updated` (a statement may narrow the streams with `AND`).
macro_rules! run_figures_sql {
    ($run:literal) => {
        concat!(
            "SELECT count(*) FILTER (WHERE state = 'processed') AS processed,
                    count(*) FILTER (WHERE state = 'error') AS errored,
                    coalesce(sum(members_created), 0) AS members,
                    coalesce(sum(activities_created), 0) AS created,
                    coalesce(sum(activities_updated), 0) AS updated
             FROM integration_streams WHERE run_id = ",
            $run
        )
    };
}
pub(super) use run_figures_sql;

/// The CTEs that end run `$run` held by `$attempt`: `ended`
/// (the run in `$state` with `$error`, its figures from a CTE `figures` the statement defines:
/// `processed`, `errored`, `members`, `created`, `updated`), its sources' checkpoints moved
/// forward (`$processed`: see [`super::checkpoints::advance_sql`]), its integration's status set to
/// `$status` (unless disconnected) and settings to `$settings` (when not NULL), and its event
/// `$event` written, once `$after` (a condition that reads the statement's other events, which
/// must come first) is evaluated.
macro_rules! end_run_sql {
    ($run:literal, $attempt:literal, $state:literal, $error:literal, $settings:literal,
     $status:literal, $event:literal, $processed:literal, $after:literal) => {
        concat!(
            "ended AS (
                 UPDATE integration_runs r SET
                     state = ",
            $state,
            ", error = ",
            $error,
            ", finished_at = now(), updated_at = now(),
                     lease_owner = NULL, lease_expires_at = NULL,
                     streams_processed = f.processed, streams_errored = f.errored,
                     members_created = f.members, activities_created = f.created,
                     activities_updated = f.updated
                 FROM figures f
                 WHERE r.id = ",
            $run,
            " AND r.attempt = ",
            $attempt,
            " AND r.state = 'processing'
                 RETURNING r.*
             ),
             checkpoints AS (",
            $crate::store::checkpoints::advance_sql!($processed),
            "),
             integration AS (
                 UPDATE integrations i SET
                     status = CASE WHEN i.status = 'disconnected' THEN i.status ELSE ",
            $status,
            " END,
                     last_processed_at = CASE WHEN r.state = 'processed' THEN r.started_at
                                              ELSE i.last_processed_at END,
                     settings = coalesce(",
            $settings,
            ", i.settings),
                     updated_at = now()
                 FROM ended r WHERE i.id = r.integration_id
                 RETURNING i.id, i.tenant_id, i.platform
             ),
             event AS (
                 INSERT INTO events (tenant_id, platform, integration_id, event_type, data)
                 SELECT i.tenant_id, i.platform, i.id, ",
            $event,
            ", jsonb_build_object(
                     'run_id', r.id, 'integration_id', r.integration_id,
                     'onboarding', r.onboarding, 'state', r.state, 'error', r.error,
                     'streams_processed', r.streams_processed,
                     'streams_errored', r.streams_errored,
                     'members_created', r.members_created,
                     'activities_created', r.activities_created,
                     'activities_updated', r.activities_updated,
                     -- RFC 3339 in UTC, as the other events' timestamps
                     'started_at', to_char(r.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                     'finished_at', to_char(r.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))
                 FROM integration i JOIN ended r ON r.integration_id = i.id
                 WHERE ",
            $after,
            "
             )"
        )
    };
}
pub(super) use end_run_sql;

/// Ends the run, writes its final figures, moves its sources' checkpoints forward, writes its
/// event and updates its integration (status, settings `postprocess` changed, and
/// `last_processed_at` set to when this run started if it succeeded): one statement, so one round
/// trip and its own transaction.
///
/// A source's checkpoint moves as [`super::checkpoints::advance_sql`] says.
pub async fn finish(pool: &PgPool, lease: &Lease, end: RunEnd<'_>) -> Result<Run, StoreError> {
    use super::events::types::{RUN_FAILED, RUN_PROCESSED};
    let (state, error, settings, event_type, status) = match &end {
        RunEnd::Processed { settings } => (
            "processed",
            None,
            settings.map(super::storable::without_nul),
            RUN_PROCESSED,
            "done",
        ),
        RunEnd::Failed { error } => ("error", Some(error_json(error)), None, RUN_FAILED, "error"),
    };
    let run: Option<Run> = sqlx::query_as(concat!(
        "WITH figures AS (",
        run_figures_sql!("$1"),
        "), ",
        end_run_sql!(
            "$1",
            "$2",
            "$3",
            "$4",
            "$5",
            "$6",
            "$7",
            "s.state = 'processed'",
            "true"
        ),
        " SELECT * FROM ended",
    ))
    .bind(lease.run_id)
    .bind(lease.attempt)
    .bind(state)
    .bind(error)
    .bind(settings.as_deref())
    .bind(status)
    .bind(event_type)
    .fetch_optional(pool)
    .await?;
    run.ok_or(StoreError::LeaseLost {
        run_id: lease.run_id,
        attempt: lease.attempt,
    })
}
