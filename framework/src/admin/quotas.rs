//! Every credential's quota in view: what its platform last reported, how fast it is being
//! spent, when it runs out at that pace, and which runs wait on it.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AdminError;
use crate::http::SPEND_SMOOTHING;
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
    /// Requests per minute at the current pace: a moving average of the pace between the
    /// platform's answers of the current window (null until two of them were recorded), fading
    /// while no answer comes.
    pub spend_per_min: Option<f64>,
    pub requests: i64,
    pub updated_at: DateTime<Utc>,
    /// When the remaining budget is spent at the current pace; null when it will not be before
    /// the reset (or nothing is known of the pace).
    pub runs_out_at: Option<DateTime<Utc>>,
    /// `exhausted`, `blocked`, `runs out before reset`, `lasts until reset` or `unknown`.
    pub outlook: String,
    /// Runs deferred by a rate limit of exactly this budget (platform, credential, resource).
    pub runs_waiting: i64,
    /// The first of them (at most 20), soonest due first.
    pub waiting_runs: Vec<Uuid>,
}

impl QuotaView {
    /// The view of a stored budget at `now`.
    pub fn at(row: BudgetRow, now: DateTime<Utc>) -> Self {
        let spend_per_min = current_pace(row.spend_per_min, row.observed_at, now);
        let runs_out_at = match (row.remaining, spend_per_min) {
            (Some(remaining), Some(rate)) if rate > 0.0 && remaining > 0 => {
                let minutes = remaining as f64 / rate;
                let millis = (minutes * 60_000.0).min(1e15) as i64;
                Some(now.max(row.updated_at) + Duration::milliseconds(millis))
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
            spend_per_min,
            requests: row.requests,
            updated_at: row.updated_at,
            runs_out_at,
            outlook: outlook.to_owned(),
            runs_waiting: row.runs_waiting,
            waiting_runs: row.waiting_run_ids,
        }
    }
}

/// The stored spend rate, faded for the time since it was measured as the moving average would
/// fade it were every answer since reporting nothing spent.
fn current_pace(
    rate: Option<f64>,
    measured_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<f64> {
    let rate = rate?;
    let idle = measured_at.map_or(0.0, |at| {
        (now - at).num_milliseconds().max(0) as f64 / 1000.0
    });
    Some(rate * (-idle / SPEND_SMOOTHING.as_secs_f64()).exp())
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
            observed_at: Some(now),
            requests: 10,
            updated_at: now,
            runs_waiting: 0,
            waiting_run_ids: Vec::new(),
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
    fn a_pace_not_measured_for_a_while_fades() {
        let mut stale = row(Some(100), Some(10.0), 30);
        stale.observed_at = Some(Utc::now() - Duration::minutes(3));
        let view = QuotaView::at(stale, Utc::now());
        let rate = view.spend_per_min.expect("a rate");
        assert!((rate - 10.0 * (-3.0_f64).exp()).abs() < 0.05, "{rate}");
        assert_eq!(view.outlook, "lasts until reset");
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
