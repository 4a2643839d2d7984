//! PostgreSQL persistence. SQL lives here, one module per table; every state change names the
//! state it leaves and, for a run's writes, the attempt (fencing token) of the lease it holds.
//!
//! A worker's writes to its run's streams carry the fence in the statement itself:
//! `AND EXISTS (SELECT 1 FROM integration_runs WHERE id = $run AND attempt = $attempt
//! AND state = 'processing' FOR SHARE)`. Concurrent stream commits of one run share that lock; a
//! claim by another worker waits for them and, once it has committed, makes every later write of
//! the old attempt match no row ([`StoreError::LeaseLost`]).

pub mod checkpoints;
pub mod integrations;
pub mod limits;
pub mod overview;
pub mod records;
pub mod runs;
pub mod schedule;
pub mod streams;
pub mod ticks;
pub mod tokens;

use uuid::Uuid;

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
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error(
        "run {run_id}: the lease of attempt {attempt} is no longer held (taken over, cancelled or finished)"
    )]
    LeaseLost { run_id: Uuid, attempt: i64 },
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: Uuid },
    #[error("{0}")]
    Refused(String),
}

impl StoreError {
    pub fn is_lease_lost(&self) -> bool {
        matches!(self, Self::LeaseLost { .. })
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
