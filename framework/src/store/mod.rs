//! PostgreSQL persistence. SQL lives here, one module per table; every state change names the
//! state it leaves and, for a run's writes, the attempt (fencing token) of the lease it holds.
//!
//! A worker's writes to its run's streams carry the fence in the statement itself:
//! `AND EXISTS (SELECT 1 FROM integration_runs WHERE id = $run AND attempt = $attempt
//! AND state = 'processing' FOR SHARE)`. Concurrent stream commits of one run share that lock; a
//! claim by another worker waits for them and, once it has committed, makes every later write of
//! the old attempt match no row ([`StoreError::LeaseLost`]).

/// SQL: when the database server last started or recovered from a crash — the later of the
/// postmaster's start and the last reset of the shared statistics, which crash recovery (an
/// immediate shutdown, a backend that crashed) resets with everything else. Every lease held
/// before then was cut off by the server, not by its worker's death: see [`runs::claim`] and
/// [`streams::rescue_abandoned`]. (A manual `pg_stat_reset_shared('bgwriter')` reads as a restart
/// too: it only grants the leases of that moment one more lease.)
macro_rules! server_started {
    () => {
        "greatest(pg_postmaster_start_time(), pg_stat_get_bgwriter_stat_reset_time())"
    };
}
pub(crate) use server_started;

pub mod checkpoints;
pub mod claims;
pub mod clock;
pub mod deliveries;
pub mod events;
pub mod integrations;
pub mod limits;
pub mod outcomes;
pub mod overview;
pub mod records;
pub mod run_end;
pub mod runs;
pub mod schedule;
pub mod storable;
pub mod streams;
pub mod subscriptions;
pub mod ticks;
pub mod tokens;

use serde_json::Value;
use uuid::Uuid;

use crate::error::ErrorRecord;

/// A worker's hold on a run: every write it makes names this attempt and fails once another
/// worker has claimed the run (or an operator cancelled it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub run_id: Uuid,
    pub attempt: i64,
    pub owner: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "run {run_id}: the lease of attempt {attempt} is no longer held (taken over, cancelled or finished)"
    )]
    LeaseLost { run_id: Uuid, attempt: i64 },
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: Uuid },
    #[error("{0}")]
    Refused(String),
    /// A value the store will not write ([`storable`]).
    #[error(transparent)]
    Unstorable(#[from] storable::Unstorable),
    /// Credentials that cannot be sealed or opened with this process's keys.
    #[error(transparent)]
    Credentials(#[from] crate::keyring::KeyError),
}

impl StoreError {
    pub fn is_lease_lost(&self) -> bool {
        matches!(self, Self::LeaseLost { .. })
    }

    /// The database could not be reached or went away (connection refused or reset, the pool
    /// timed out, the server shutting down or not yet accepting connections, too many
    /// connections): an outage of the infrastructure, not a fault of the run or its data. Such an
    /// error costs no stream a retry; the work resumes when the database answers.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(e) => is_unavailable(e),
            _ => false,
        }
    }

    /// A deadlock or serialization failure: the transaction may simply be tried again.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("40P01" | "40001"))
            }
            _ => false,
        }
    }
}

/// Whether a database error is an outage (see [`StoreError::is_unavailable`]).
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 57P01-03: admin/crash shutdown, cannot connect now;
            // 53300: too many connections
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// Turns "no row matched the guarded update" into a lost lease.
pub(crate) fn expect_one(rows: u64, lease: &Lease) -> Result<(), StoreError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::LeaseLost {
            run_id: lease.run_id,
            attempt: lease.attempt,
        })
    }
}

/// Whether an error is PostgreSQL's unique violation on the named constraint or index.
pub(crate) fn is_unique_violation(err: &sqlx::Error, constraint: &str) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("23505") && db.constraint() == Some(constraint)
        }
        _ => false,
    }
}

/// An error record as stored in a run's or a stream's `error` column: without NUL (an error may
/// quote what a platform sent).
pub(crate) fn error_json(record: &ErrorRecord) -> Value {
    let mut value = serde_json::to_value(record).unwrap_or(Value::Null);
    storable::strip_nul_value(&mut value);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_told_from_faults_of_the_run() {
        assert!(StoreError::from(sqlx::Error::PoolTimedOut).is_unavailable());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(StoreError::from(sqlx::Error::Io(io)).is_unavailable());
        assert!(!StoreError::from(sqlx::Error::RowNotFound).is_unavailable());
        assert!(!StoreError::Refused("no".into()).is_unavailable());
    }

    #[test]
    fn a_database_error_shows_its_cause() {
        let e = StoreError::from(sqlx::Error::PoolTimedOut);
        assert!(e.to_string().starts_with("database error: "), "{e}");
        assert!(e.to_string().contains("timed out"), "{e}");
    }
}
