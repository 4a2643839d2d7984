//! Every credential's quota in view: what its platform last reported, how fast it is being
//! spent, when it runs out at that pace, and which runs wait on it.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use super::AdminError;
use crate::store::overview::{self, BudgetRow};

/// A credential's budget for one platform resource. `credential` is a fingerprint, never the
/// secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuotaView {
    pub platform: String,
    /// A stable fingerprint of the credential ('' for anonymous requests).
    pub credential: String,
    /// The platform's resource or bucket ('' for one budget).
    pub resource: String,
    pub limit: Option<i64>,
    pub remaining: Option<i64>,
    pub reset_at: Option<DateTime<Utc>>,
    /// A refusal said: nothing before this.
    pub blocked_until: Option<DateTime<Utc>>,
    /// Requests per minute, a moving estimate.
    pub spend_per_min: Option<f64>,
    pub requests: i64,
    pub updated_at: DateTime<Utc>,
    /// When the remaining budget is spent at the current pace, if before the reset.
    pub runs_out_at: Option<DateTime<Utc>>,
    /// `exhausted`, `blocked`, `runs out before reset`, `lasts until reset` or `unknown`.
    pub outlook: String,
    /// Runs of this platform deferred by a rate limit until about this budget's reset.
    pub runs_waiting: i64,
}

impl QuotaView {
    /// The view of a stored budget at `now`.
    pub fn at(row: BudgetRow, now: DateTime<Utc>) -> Self {
        let runs_out_at = match (row.remaining, row.spend_per_min) {
            (Some(remaining), Some(rate)) if rate > 0.0 && remaining > 0 => {
                let minutes = remaining as f64 / rate;
                let millis = (minutes * 60_000.0).min(1e15) as i64;
                Some(row.updated_at + Duration::milliseconds(millis))
            }
            (Some(0), _) => Some(row.updated_at),
            _ => None,
        };
        let reset_passed = row.reset_at.is_some_and(|r| r <= now);
        let outlook = if row.blocked_until.is_some_and(|b| b > now) {
            "blocked"
        } else if row.remaining == Some(0) && !reset_passed {
            "exhausted"
        } else {
            match (runs_out_at, row.reset_at) {
                (Some(out), Some(reset)) if out < reset => "runs out before reset",
                (Some(_), None) => "runs out before reset",
                (_, Some(_)) if row.remaining.is_some() => "lasts until reset",
                _ => "unknown",
            }
        };
        let runs_out_at = runs_out_at.filter(|out| row.reset_at.is_none_or(|reset| *out < reset));
        Self {
            platform: row.platform,
            credential: row.credential,
            resource: row.resource,
            limit: row.limit_total,
            remaining: row.remaining,
            reset_at: row.reset_at,
            blocked_until: row.blocked_until,
            spend_per_min: row.spend_per_min,
            requests: row.requests,
            updated_at: row.updated_at,
            runs_out_at,
            outlook: outlook.to_owned(),
            runs_waiting: row.runs_waiting,
        }
    }
}

/// Every budget, or a platform's.
pub async fn list(pool: &PgPool, platform: Option<&str>) -> Result<Vec<QuotaView>, AdminError> {
    let now = Utc::now();
    Ok(overview::budgets(pool, platform)
        .await?
        .into_iter()
        .map(|row| QuotaView::at(row, now))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(remaining: Option<i64>, rate: Option<f64>, reset_in_min: i64) -> BudgetRow {
        let now = Utc::now();
        BudgetRow {
            platform: "github".into(),
            credential: "fp".into(),
            resource: "core".into(),
            limit_total: Some(5000),
            remaining,
            reset_at: Some(now + Duration::minutes(reset_in_min)),
            blocked_until: None,
            spend_per_min: rate,
            requests: 10,
            updated_at: now,
            runs_waiting: 0,
        }
    }

    #[test]
    fn a_budget_spent_faster_than_it_resets_runs_out_first() {
        let view = QuotaView::at(row(Some(100), Some(10.0), 30), Utc::now());
        assert_eq!(view.outlook, "runs out before reset");
        let out = view.runs_out_at.expect("runs out");
        let minutes = (out - view.updated_at).num_seconds() as f64 / 60.0;
        assert!((minutes - 10.0).abs() < 0.1, "{minutes}");
    }

    #[test]
    fn a_slow_spend_lasts_until_the_reset() {
        let view = QuotaView::at(row(Some(100), Some(1.0), 30), Utc::now());
        assert_eq!(view.outlook, "lasts until reset");
        assert_eq!(view.runs_out_at, None);
    }

    #[test]
    fn nothing_left_is_exhausted_and_nothing_known_is_unknown() {
        assert_eq!(
            QuotaView::at(row(Some(0), None, 5), Utc::now()).outlook,
            "exhausted"
        );
        let mut unknown = row(None, None, 5);
        unknown.reset_at = None;
        assert_eq!(QuotaView::at(unknown, Utc::now()).outlook, "unknown");
    }
}
