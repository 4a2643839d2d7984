//! Rate-limit budgets shared by every worker and command, in PostgreSQL (`rate_limit_budgets`):
//! one row per platform and credential with the window's limit, what is left of it and when it
//! resets, as the platform last reported them, and any refusal's block.
//!
//! Opt-in per process ([`super::HttpClients::share_budgets`]); once on, every client built
//! through a run's context ([`crate::RunContext::client`]) uses it, with no code in the
//! integration. Before each request a turn is taken from the row in one statement: the budget
//! left is counted down (requests in flight included, in every process), a spent or blocked
//! budget says how long to wait, and a window whose reset has passed is cleared (a full budget
//! again) at once, not when a later answer says so. After each answer its figures are merged in:
//! a newer window replaces the row, the same window keeps the lower count.
//!
//! The credential is stored as a keyed SHA-256 fingerprint, never the secret. A database error
//! never fails a request: pacing then falls back to the process's own.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use super::waits::RateLimitInfo;
use crate::error::IntegrationError;
use crate::secret::Secret;

/// A spent budget whose next reset is not known yet (it was cleared, and no answer of the new
/// window has come back) is asked again after this.
const UNKNOWN_RESET_WAIT: Duration = Duration::from_millis(250);

/// Whether `TRIBUTARY_SHARED_BUDGETS` asks for shared budgets: on unless it is `off`, `false`,
/// `no` or `0`. The worker (`--shared-budgets`) and the operator commands read it.
pub fn shared_budgets_from_env() -> bool {
    std::env::var("TRIBUTARY_SHARED_BUDGETS").map_or(true, |v| {
        !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "off" | "false" | "no" | "0"
        )
    })
}

/// The budgets of every credential, in PostgreSQL.
#[derive(Debug, Clone)]
pub struct SharedBudgets {
    pool: PgPool,
}

/// One budget's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetKey {
    pub platform: String,
    /// The credential's fingerprint (`""` for anonymous requests).
    pub credential: String,
    pub resource: String,
}

impl BudgetKey {
    pub fn new(platform: &str, token: Option<&Secret>) -> Self {
        Self {
            platform: platform.to_owned(),
            credential: token
                .map(|t| credential_fingerprint(platform, t))
                .unwrap_or_default(),
            resource: String::new(),
        }
    }
}

/// A stable fingerprint of a credential: the same in every process, useless to recover it.
pub fn credential_fingerprint(platform: &str, token: &Secret) -> String {
    let mut hash = Sha256::new();
    hash.update(b"tributary rate-limit budget\0");
    hash.update(platform.as_bytes());
    hash.update(b"\0");
    hash.update(token.expose().as_bytes());
    hash.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What taking a turn found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Turn {
    /// A request may go out (counted).
    Go,
    /// The budget is spent or blocked: ask again after this.
    Wait(Duration),
}

impl SharedBudgets {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Takes a turn of `key`'s budget (see the module docs).
    pub async fn take(&self, key: &BudgetKey) -> Result<Turn, sqlx::Error> {
        let row: Option<(bool, Option<f64>)> = sqlx::query_as(
            "WITH cur AS (
                 SELECT platform, credential, resource, limit_total, remaining, blocked_until,
                        reset_at IS NOT NULL AND reset_at <= now() AS reset,
                        blocked_until IS NOT NULL AND blocked_until > now() AS blocked,
                        CASE WHEN reset_at IS NOT NULL AND reset_at <= now()
                             THEN limit_total ELSE remaining END AS left_now,
                        CASE WHEN reset_at IS NOT NULL AND reset_at <= now()
                             THEN NULL ELSE reset_at END AS next_reset
                 FROM rate_limit_budgets
                 WHERE platform = $1 AND credential = $2 AND resource = $3
                 FOR UPDATE),
             turn AS (
                 SELECT cur.*, NOT blocked AND (left_now IS NULL OR left_now > 0) AS go FROM cur)
             UPDATE rate_limit_budgets b SET
                 remaining = CASE WHEN t.go AND t.left_now IS NOT NULL
                                  THEN t.left_now - 1 ELSE t.left_now END,
                 reset_at = t.next_reset,
                 blocked_until = CASE WHEN t.blocked THEN b.blocked_until END,
                 requests = b.requests + CASE WHEN t.go THEN 1 ELSE 0 END,
                 updated_at = now()
             FROM turn t
             WHERE b.platform = t.platform AND b.credential = t.credential
               AND b.resource = t.resource
             RETURNING t.go,
                 extract(epoch FROM (CASE WHEN t.blocked THEN t.blocked_until
                                          ELSE t.next_reset END) - now())::float8",
        )
        .bind(&key.platform)
        .bind(&key.credential)
        .bind(&key.resource)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some((true, _)) => Ok(Turn::Go),
            Some((false, wait)) => Ok(Turn::Wait(
                wait.and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .filter(|d| !d.is_zero())
                    .unwrap_or(UNKNOWN_RESET_WAIT),
            )),
            None => {
                // first request of this credential anywhere: its budget is not known yet
                sqlx::query(
                    "INSERT INTO rate_limit_budgets (platform, credential, resource, requests)
                     VALUES ($1, $2, $3, 1) ON CONFLICT DO NOTHING",
                )
                .bind(&key.platform)
                .bind(&key.credential)
                .bind(&key.resource)
                .execute(&self.pool)
                .await?;
                Ok(Turn::Go)
            }
        }
    }

    /// Merges an answer's figures, and a refusal's block, into `key`'s row.
    pub async fn record(
        &self,
        key: &BudgetKey,
        info: &RateLimitInfo,
        blocked_until: Option<DateTime<Utc>>,
    ) -> Result<(), sqlx::Error> {
        if !info.is_reported() && blocked_until.is_none() {
            return Ok(());
        }
        let whole = |v: Option<f64>| v.map(|v| v.floor() as i64);
        sqlx::query(
            "INSERT INTO rate_limit_budgets AS b
                 (platform, credential, resource, limit_total, remaining, reset_at, blocked_until)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (platform, credential, resource) DO UPDATE SET
                 limit_total = coalesce(EXCLUDED.limit_total, b.limit_total),
                 remaining = CASE
                     -- an answer of a window that has already reset tells nothing now
                     WHEN EXCLUDED.remaining IS NULL
                          OR (EXCLUDED.reset_at IS NOT NULL AND EXCLUDED.reset_at <= now())
                         THEN b.remaining
                     -- a newer window than the row's
                     WHEN b.reset_at IS NOT NULL AND EXCLUDED.reset_at > b.reset_at
                         THEN EXCLUDED.remaining
                     -- the same window, or the row's was cleared at its reset: the lower count
                     -- (turns taken for requests still in flight are in the row's)
                     ELSE least(coalesce(b.remaining, EXCLUDED.remaining), EXCLUDED.remaining)
                 END,
                 reset_at = CASE
                     WHEN EXCLUDED.reset_at IS NULL OR EXCLUDED.reset_at <= now() THEN b.reset_at
                     ELSE greatest(b.reset_at, EXCLUDED.reset_at)
                 END,
                 blocked_until = CASE
                     WHEN EXCLUDED.blocked_until IS NULL THEN b.blocked_until
                     ELSE greatest(b.blocked_until, EXCLUDED.blocked_until)
                 END,
                 updated_at = now()",
        )
        .bind(&key.platform)
        .bind(&key.credential)
        .bind(&key.resource)
        .bind(whole(info.limit))
        .bind(whole(info.remaining))
        .bind(info.reset_at)
        .bind(blocked_until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes a turn, sleeping waits up to `max_inline_wait`; a longer one is
    /// [`IntegrationError::RateLimited`] (the run is deferred). A database error lets the request
    /// go (the process's own pacing still holds).
    pub async fn acquire(
        &self,
        key: &BudgetKey,
        max_inline_wait: Duration,
    ) -> Result<(), IntegrationError> {
        loop {
            let wait = match self.take(key).await {
                Ok(Turn::Go) => return Ok(()),
                Ok(Turn::Wait(wait)) => wait,
                Err(e) => {
                    tracing::debug!(error = %crate::error::ErrorChain(&e), "shared budget unavailable; pacing locally");
                    return Ok(());
                }
            };
            if wait > max_inline_wait {
                let until =
                    crate::clock::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                return Err(IntegrationError::rate_limited(
                    until,
                    format!(
                        "the credential's budget (shared by every worker) is spent until its reset in {wait:.1?}"
                    ),
                ));
            }
            tokio::time::sleep(wait).await;
        }
    }
}
