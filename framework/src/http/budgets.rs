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
//! Turns are taken only where they matter: a credential none of whose budgets is *tight* (spent
//! below half its limit or below [`ROOMY_LEFT`], or blocked) sends its requests without a round
//! trip, and an answer that reports no budget is not recorded for it. Each process learns which
//! budgets are tight with one query a second ([`TIGHT_REFRESH`]), and at once from its own
//! answers; a budget with more than `ROOMY_LEFT` requests left cannot be overspent by every
//! process in the second before they learn it became tight. A check of a roomy credential thus
//! costs the database one statement per answer that reports a budget (the quota in view), none
//! otherwise.
//!
//! The credential is stored as a keyed SHA-256 fingerprint, never the secret. A database error
//! never fails a request: pacing then falls back to the process's own.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Two answers whose resets are this close report the same window (a reset given in seconds from
/// now drifts with the latency of each answer).
pub const SAME_WINDOW: Duration = Duration::from_millis(1500);
/// An answer recorded sooner than this after the one the rate was last computed from leaves the
/// rate alone (the next one measures the longer span).
pub const MIN_SPAN: Duration = Duration::from_secs(1);
/// The spend rate is a moving average of the pace between answers, each weighted by
/// `1 − e^(−span / SPEND_SMOOTHING)`: a pace held for this long makes most of the estimate. The
/// admin views decay it the same way while no answer comes.
pub const SPEND_SMOOTHING: Duration = Duration::from_secs(60);

/// What an answer does to a budget's spend rate, from the answer (`EXCLUDED`) and the
/// observation before it (`b`): `keep` (nothing to measure: no remaining, too soon, or an older
/// window's answer arriving late), `restart` (the first of a window: the window reset, or what is
/// left rose) or `rate` (the pace since the previous answer of this window). $9: `SAME_WINDOW`,
/// $10: `MIN_SPAN` in seconds.
macro_rules! spend_step {
    () => {
        "CASE
            WHEN EXCLUDED.observed_remaining IS NULL THEN 'keep'
            WHEN b.observed_remaining IS NULL OR b.observed_at IS NULL THEN 'restart'
            WHEN EXCLUDED.observed_reset_at < b.observed_reset_at - make_interval(secs => $9)
                THEN 'keep'
            WHEN NOT coalesce(
                     abs(extract(epoch FROM EXCLUDED.observed_reset_at - b.observed_reset_at)) <= $9,
                     EXCLUDED.observed_reset_at IS NULL AND b.observed_reset_at IS NULL)
                THEN 'restart'
            WHEN extract(epoch FROM now() - b.observed_at) < $10 THEN 'keep'
            WHEN EXCLUDED.observed_remaining > b.observed_remaining THEN 'restart'
            ELSE 'rate'
         END"
    };
}
/// Seconds since the observation the rate was last computed from.
macro_rules! spend_span {
    () => {
        "extract(epoch FROM now() - b.observed_at)::float8"
    };
}
/// Requests per minute between that observation and this answer.
macro_rules! spend_since {
    () => {
        "((b.observed_remaining - EXCLUDED.observed_remaining) * 60.0
           / extract(epoch FROM now() - b.observed_at))::float8"
    };
}

/// A budget with at least this many requests left (and half its limit) is roomy: its turns are
/// not taken from PostgreSQL.
pub const ROOMY_LEFT: i64 = 500;
/// How often a process asks which budgets are tight.
pub const TIGHT_REFRESH: Duration = Duration::from_secs(1);

/// The budgets of every credential, in PostgreSQL.
#[derive(Debug, Clone)]
pub struct SharedBudgets {
    pool: PgPool,
    tight: Arc<Mutex<Tight>>,
}

/// The credentials (platform, fingerprint) with a tight budget, as last read.
#[derive(Debug, Default)]
struct Tight {
    credentials: HashSet<(String, String)>,
    read_at: Option<Instant>,
}

/// One budget's row: a platform, a credential, and the platform's resource or bucket it draws on
/// (GitHub's `x-ratelimit-resource`, Discord's `x-ratelimit-bucket` with the route's major
/// parameter, the toolkit's route bucket, or `""` for a credential's one budget).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

    /// The same credential's budget for `resource`.
    pub fn with_resource(&self, resource: &str) -> Self {
        Self {
            resource: resource.to_owned(),
            ..self.clone()
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
        Self {
            pool,
            tight: Arc::new(Mutex::new(Tight::default())),
        }
    }

    /// Whether any budget of `key`'s credential is tight (see the module docs): its requests then
    /// take their turns from PostgreSQL. Read at most every [`TIGHT_REFRESH`]; when the database
    /// cannot say, the budget is treated as tight (the turn's own error handling then applies).
    pub async fn is_tight(&self, key: &BudgetKey) -> bool {
        let credential = (key.platform.clone(), key.credential.clone());
        match self.tight.lock() {
            Ok(tight) if tight.read_at.is_some_and(|at| at.elapsed() < TIGHT_REFRESH) => {
                return tight.credentials.contains(&credential);
            }
            Ok(_) => {}
            Err(_) => return true,
        }
        let read: Result<Vec<(String, String)>, sqlx::Error> = sqlx::query_as(
            "SELECT DISTINCT platform, credential FROM rate_limit_budgets
             WHERE blocked_until > now()
                OR (remaining IS NOT NULL AND (reset_at IS NULL OR reset_at > now())
                    AND remaining < greatest($1, coalesce(limit_total, 0) / 2))",
        )
        .bind(ROOMY_LEFT)
        .fetch_all(&self.pool)
        .await;
        let Ok(rows) = read else { return true };
        let Ok(mut tight) = self.tight.lock() else {
            return true;
        };
        tight.credentials = rows.into_iter().collect();
        tight.read_at = Some(Instant::now());
        tight.credentials.contains(&credential)
    }

    /// Marks `key`'s credential tight in this process at once, when an answer says so.
    fn note(&self, key: &BudgetKey, info: &RateLimitInfo, blocked: bool) {
        let left = info.remaining.map(|r| r.floor() as i64);
        let half = info.limit.map_or(0, |l| (l / 2.0).floor() as i64);
        let tight = blocked || left.is_some_and(|left| left < ROOMY_LEFT.max(half));
        if tight && let Ok(mut set) = self.tight.lock() {
            set.credentials
                .insert((key.platform.clone(), key.credential.clone()));
        }
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

    /// The resource of the credential's only budget, if it has exactly one (a process asks this
    /// before the first request of a route whose resource it has not learnt yet).
    pub async fn only_resource(
        &self,
        platform: &str,
        credential: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        let resources: Vec<String> = sqlx::query_scalar(
            "SELECT resource FROM rate_limit_budgets WHERE platform = $1 AND credential = $2
             LIMIT 2",
        )
        .bind(platform)
        .bind(credential)
        .fetch_all(&self.pool)
        .await?;
        Ok(match resources.as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        })
    }

    /// Gives back a turn taken from `key`'s row for a request whose answer named another
    /// resource (the route's was not known yet); a row that held nothing but that turn goes.
    pub async fn refund(&self, key: &BudgetKey) -> Result<(), sqlx::Error> {
        let gone = sqlx::query(
            "DELETE FROM rate_limit_budgets
             WHERE platform = $1 AND credential = $2 AND resource = $3 AND requests <= 1
               AND limit_total IS NULL AND remaining IS NULL AND reset_at IS NULL
               AND blocked_until IS NULL",
        )
        .bind(&key.platform)
        .bind(&key.credential)
        .bind(&key.resource)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if gone == 0 {
            sqlx::query(
                "UPDATE rate_limit_budgets SET
                     requests = greatest(requests - 1, 0),
                     remaining = CASE WHEN remaining < coalesce(limit_total, remaining + 1)
                                      THEN remaining + 1 ELSE remaining END
                 WHERE platform = $1 AND credential = $2 AND resource = $3",
            )
            .bind(&key.platform)
            .bind(&key.credential)
            .bind(&key.resource)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Merges an answer's figures, and a refusal's block, into `key`'s row, and updates its spend
    /// rate (see [`SPEND_SMOOTHING`]). `counted`: the request already took a turn of this row
    /// (else it is counted here).
    pub async fn record(
        &self,
        key: &BudgetKey,
        info: &RateLimitInfo,
        blocked_until: Option<DateTime<Utc>>,
        counted: bool,
    ) -> Result<(), sqlx::Error> {
        self.note(key, info, blocked_until.is_some());
        if !info.is_reported() && blocked_until.is_none() && counted {
            return Ok(());
        }
        let whole = |v: Option<f64>| v.map(|v| v.floor() as i64);
        sqlx::query(concat!(
            "INSERT INTO rate_limit_budgets AS b
                 (platform, credential, resource, limit_total, remaining, reset_at, blocked_until,
                  requests, observed_remaining, observed_reset_at, observed_at)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8,
                    CASE WHEN o.usable THEN $5 END, CASE WHEN o.usable THEN $6 END,
                    CASE WHEN o.usable THEN now() END
             FROM (SELECT $5::int8 IS NOT NULL AND ($6::timestamptz IS NULL OR $6 > now()) AS usable) o
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
                 requests = b.requests + EXCLUDED.requests,
                 spend_per_min = CASE ", spend_step!(), "
                     WHEN 'keep' THEN b.spend_per_min
                     WHEN 'restart' THEN NULL
                     -- requests per minute since the previous answer, smoothed: the longer the
                     -- span, the more it weighs
                     ELSE coalesce(
                         b.spend_per_min + (1 - exp(-", spend_span!(), " / $11))
                             * (", spend_since!(), " - b.spend_per_min),
                         ", spend_since!(), ")
                 END,
                 observed_remaining = CASE ", spend_step!(), "
                     WHEN 'keep' THEN b.observed_remaining ELSE EXCLUDED.observed_remaining END,
                 observed_reset_at = CASE ", spend_step!(), "
                     WHEN 'keep' THEN b.observed_reset_at ELSE EXCLUDED.observed_reset_at END,
                 observed_at = CASE ", spend_step!(), "
                     WHEN 'keep' THEN b.observed_at ELSE EXCLUDED.observed_at END,
                 updated_at = now()"
        ))
        .bind(&key.platform)
        .bind(&key.credential)
        .bind(&key.resource)
        .bind(whole(info.limit))
        .bind(whole(info.remaining))
        .bind(info.reset_at)
        .bind(blocked_until)
        .bind(if counted { 0_i64 } else { 1 })
        .bind(SAME_WINDOW.as_secs_f64())
        .bind(MIN_SPAN.as_secs_f64())
        .bind(SPEND_SMOOTHING.as_secs_f64())
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
