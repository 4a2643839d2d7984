//! Rate limits a platform states in a body rather than in its status or headers:
//!
//! * Stack Exchange refuses a throttled request with HTTP **400** and
//!   `{"error_id": 502, "error_name": "throttle_violation", "error_message": "too many requests
//!   from this IP, more requests available in 82475 seconds"}`: a rate limit, not a bad request
//!   ([`is_body_rate_limit`]), whose wait is the one its message states ([`stated_wait`]);
//! * Stack Exchange's daily quota, `quota_max` / `quota_remaining` on every answer, which comes
//!   back at midnight UTC ([`daily_quota`]): surfaced as the answer's [`RateLimitInfo`], and once
//!   spent the credential waits for the reset (the run is deferred to it).
//!
//! Discourse's `extras.wait_seconds` and Stack Exchange's `backoff` are body waits, read by
//! [`super::body_wait`].

use std::time::Duration;

use chrono::{DateTime, Days, Utc};
use reqwest::StatusCode;
use serde_json::Value;

use super::waits::RateLimitInfo;

/// Stack Exchange's `error_id` for a throttle violation.
const THROTTLE_VIOLATION_ID: u64 = 502;

/// Whether an answer that is not a 429 is still a rate-limit refusal by what its body says
/// (Stack Exchange's `throttle_violation`, sent with HTTP 400).
pub fn is_body_rate_limit(status: StatusCode, body: &[u8]) -> bool {
    if status.is_success() || (!mentions(body, b"throttle_violation") && !mentions(body, b"502")) {
        return false;
    }
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    object.get("error_name").and_then(Value::as_str) == Some("throttle_violation")
        || object.get("error_id").and_then(Value::as_u64) == Some(THROTTLE_VIOLATION_ID)
}

/// A wait stated in words: the number before `second(s)` in `… available in 82475 seconds`.
pub fn stated_wait(message: &str) -> Option<Duration> {
    let words: Vec<&str> = message.split_whitespace().collect();
    words.windows(2).find_map(|pair| {
        let unit = pair[1]
            .trim_matches(|c: char| !c.is_alphabetic())
            .to_lowercase();
        let seconds = pair[0].parse::<f64>().ok()?;
        (unit.starts_with("second") && seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(1e9)))
    })
}

/// A daily quota a body reports (`quota_max`, `quota_remaining`), as rate-limit figures whose
/// reset is the next midnight UTC after `now`; `None` when the body reports none.
pub fn daily_quota(body: &[u8], now: DateTime<Utc>) -> Option<RateLimitInfo> {
    if !mentions(body, b"quota_remaining") {
        return None;
    }
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let remaining = object.get("quota_remaining").and_then(Value::as_f64)?;
    let limit = object.get("quota_max").and_then(Value::as_f64);
    let midnight = now
        .date_naive()
        .checked_add_days(Days::new(1))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc());
    Some(RateLimitInfo {
        limit: limit.filter(|l| *l >= 0.0),
        remaining: Some(remaining.max(0.0)),
        reset_at: midnight,
    })
}

fn mentions(body: &[u8], needle: &[u8]) -> bool {
    body.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const THROTTLED: &str = r#"{"error_id": 502, "error_message": "too many requests from this IP, more requests available in 82475 seconds", "error_name": "throttle_violation"}"#;

    #[test]
    fn a_throttle_violation_is_a_rate_limit_whatever_its_status() {
        assert!(is_body_rate_limit(
            StatusCode::BAD_REQUEST,
            THROTTLED.as_bytes()
        ));
        assert!(is_body_rate_limit(
            StatusCode::BAD_REQUEST,
            br#"{"error_id": 502, "error_message": "slow down"}"#
        ));
        assert!(!is_body_rate_limit(
            StatusCode::BAD_REQUEST,
            br#"{"error_id": 400, "error_name": "bad_parameter", "error_message": "site is required"}"#
        ));
        assert!(!is_body_rate_limit(StatusCode::OK, THROTTLED.as_bytes()));
        assert!(!is_body_rate_limit(
            StatusCode::BAD_REQUEST,
            b"502 bad gateway"
        ));
    }

    #[test]
    fn waits_stated_in_words() {
        assert_eq!(
            stated_wait("too many requests from this IP, more requests available in 82475 seconds"),
            Some(Duration::from_secs(82475))
        );
        assert_eq!(stated_wait("wait 1 second."), Some(Duration::from_secs(1)));
        assert_eq!(
            stated_wait("Please wait 39 seconds before trying again."),
            Some(Duration::from_secs(39))
        );
        assert_eq!(stated_wait("slow down"), None);
        assert_eq!(stated_wait("-5 seconds"), None);
        assert_eq!(stated_wait("in 3 minutes"), None);
    }

    #[test]
    fn a_daily_quota_resets_at_midnight_utc() {
        let now = DateTime::parse_from_rfc3339("2026-11-26T03:50:00Z")
            .unwrap()
            .to_utc();
        let info = daily_quota(
            br#"{"items": [], "has_more": false, "quota_max": 10000, "quota_remaining": 0}"#,
            now,
        )
        .unwrap();
        assert!(info.exhausted());
        assert_eq!(info.limit, Some(10000.0));
        assert_eq!(
            info.reset_at.unwrap().to_rfc3339(),
            "2026-11-27T00:00:00+00:00"
        );
        let info = daily_quota(br#"{"items": [], "quota_remaining": 299}"#, now).unwrap();
        assert_eq!((info.limit, info.remaining), (None, Some(299.0)));
        assert!(!info.exhausted());
        assert_eq!(daily_quota(br#"{"items": []}"#, now), None);
        assert_eq!(daily_quota(br#"{"quota_remaining": "lots"}"#, now), None);
    }
}

#[cfg(test)]
mod pacer_tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use chrono::Utc;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;
    use tokio::time::Instant;

    use crate::error::ErrorKind;
    use crate::http::{Pacer, Pacing, WaitCaps};

    fn pacer() -> Pacer {
        Pacer::new(
            Pacing {
                max_inline_wait: Duration::from_secs(30),
                ..Pacing::default()
            },
            WaitCaps::default(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_backoff_holds_the_same_method_only() {
        let pacer = pacer();
        let ok = pacer.learn(
            "GET /questions/1;2/answers",
            StatusCode::OK,
            &HeaderMap::new(),
            br#"{"items": [], "backoff": 10, "quota_remaining": 9000}"#,
            Utc::now(),
        );
        assert!(ok.is_none());
        let start = Instant::now();
        pacer.acquire_for("GET /posts/3/comments").await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO, "another method goes on");
        pacer.acquire_for("GET /questions/7/answers").await.unwrap();
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(10),
            "the same method waits"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_backoff_or_a_spent_quota_defers() {
        let pacer = pacer();
        pacer.learn(
            "GET /questions",
            StatusCode::OK,
            &HeaderMap::new(),
            br#"{"items": [], "backoff": 120}"#,
            Utc::now(),
        );
        let e = pacer.acquire_for("GET /questions").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert!(e.to_string().contains("back off"), "{e}");

        let pacer = Pacer::new(Pacing::default(), WaitCaps::default());
        let now = Utc::now();
        pacer.learn(
            "GET /questions",
            StatusCode::OK,
            &HeaderMap::new(),
            br#"{"items": [], "quota_max": 300, "quota_remaining": 0}"#,
            now,
        );
        let e = pacer.acquire_for("GET /answers").await.unwrap_err();
        assert!(
            e.to_string()
                .contains("the daily quota of 300 requests is spent"),
            "{e}"
        );
        let until = until_of(&e);
        let midnight = super::daily_quota(br#"{"quota_remaining": 0}"#, now)
            .unwrap()
            .reset_at
            .unwrap();
        assert!(
            (until - midnight).num_seconds().abs() <= 2,
            "deferred to midnight UTC: {until} vs {midnight}"
        );
    }

    fn until_of(e: &crate::error::IntegrationError) -> chrono::DateTime<Utc> {
        match e {
            crate::error::IntegrationError::RateLimited { until, .. } => *until,
            other => panic!("not rate limited: {other:?}"),
        }
    }
}
