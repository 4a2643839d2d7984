//! What a failed exchange means for the run: every non-success answer and every transport failure
//! becomes an [`IntegrationError`] kind.
//!
//! | answer | kind |
//! | --- | --- |
//! | 429 | `RateLimited` until the announced wait (or `default_wait`) |
//! | 400 with Stack Exchange's `throttle_violation` (`error_id` 502) in the body | `RateLimited` until the wait its message states |
//! | 403 with an exhausted budget (`x-ratelimit-remaining: 0`), a `Retry-After`, or a message about a rate limit / GitHub's *secondary rate limit* / abuse detection | `RateLimited` |
//! | 5xx, 408, a timeout, a refused or reset connection | `Retryable` |
//! | any other 4xx (and unexpected 1xx/3xx) | `Fatal`, with the platform's own message |
//!
//! Messages carry the method and path only: never the query string or the full URL, which may
//! hold a credential.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::body_limits::{is_body_rate_limit, stated_wait};
use super::waits::{RateLimitInfo, WaitCaps, after, announced_wait};
use crate::error::IntegrationError;

/// The error of a non-success answer; `None` for a success (2xx).
pub fn classify_response(
    what: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
    caps: WaitCaps,
) -> Option<IntegrationError> {
    if status.is_success() {
        return None;
    }
    let message = platform_message(body);
    let text = format!("{what}: {status}: {message}");
    if is_rate_limited(status, headers, &message) || is_body_rate_limit(status, body) {
        let info = RateLimitInfo::from_headers_at(headers, now);
        let wait = announced_wait(headers, body, now, caps)
            .or_else(|| info.reset_in(now, caps))
            .or_else(|| stated_wait(&message).map(|w| w.min(caps.max_wait)))
            .unwrap_or(caps.default_wait);
        return Some(IntegrationError::rate_limited(
            after(now, caps.bound(wait)),
            text,
        ));
    }
    Some(
        if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
            IntegrationError::retryable(text)
        } else {
            IntegrationError::fatal(text)
        },
    )
}

fn is_rate_limited(status: StatusCode, headers: &HeaderMap, message: &str) -> bool {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return true;
    }
    if status != StatusCode::FORBIDDEN {
        return false;
    }
    let lower = message.to_lowercase();
    RateLimitInfo::from_headers(headers).exhausted()
        || headers.contains_key("retry-after")
        || lower.contains("rate limit")
        || lower.contains("abuse detection")
}

/// Timeouts and connection failures are worth retrying; the URL (which may carry a token) is
/// left out of the message and of the kept source.
pub fn transport_error(what: &str, e: reqwest::Error) -> IntegrationError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "failed while reading the body"
    } else {
        "failed"
    };
    IntegrationError::retryable(format!("{what} {kind}")).with_source(e.without_url())
}

/// The platform's own message: a JSON body's `message` / `error` / `error_description` /
/// `error_message`, or the first of its `errors` (Discourse), else the start of the body.
pub fn platform_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        for key in ["message", "error_message", "error_description", "error"] {
            if let Some(text) = value.get(key).and_then(|v| v.as_str()) {
                return text.to_owned();
            }
        }
        let first_error = value
            .get("errors")
            .and_then(|v| v.get(0))
            .and_then(|v| v.as_str());
        if let Some(text) = first_error {
            return text.to_owned();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        text.chars().take(300).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use crate::error::ErrorKind;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn classify(status: u16, pairs: &[(&str, &str)], body: &str) -> IntegrationError {
        classify_response(
            "GET /x",
            StatusCode::from_u16(status).unwrap(),
            &headers(pairs),
            body.as_bytes(),
            now(),
            WaitCaps::default(),
        )
        .unwrap()
    }

    fn until(e: &IntegrationError) -> Duration {
        match e {
            IntegrationError::RateLimited { until, .. } => (*until - now()).to_std().unwrap(),
            other => panic!("not rate limited: {other:?}"),
        }
    }

    #[test]
    fn success_is_no_error() {
        assert!(
            classify_response(
                "GET /x",
                StatusCode::OK,
                &HeaderMap::new(),
                b"{}",
                now(),
                WaitCaps::default()
            )
            .is_none()
        );
    }

    #[test]
    fn a_429_waits_what_it_announces_or_the_default() {
        let e = classify(429, &[("Retry-After", "30")], "");
        assert_eq!(until(&e), Duration::from_secs(30));
        assert_eq!(e.to_string().split(": ").last(), Some("(empty body)"));
        let e = classify(429, &[], r#"{"message": "slow down"}"#);
        assert_eq!(until(&e), Duration::from_secs(60), "default wait");
        let e = classify(429, &[("Retry-After", "0")], "");
        assert_eq!(until(&e), Duration::from_secs(1), "at least min_wait");
        let e = classify(
            429,
            &[
                ("x-ratelimit-remaining", "3"),
                ("x-ratelimit-reset", "1700000090"),
            ],
            "",
        );
        assert_eq!(
            until(&e),
            Duration::from_secs(90),
            "the reset, when nothing else"
        );
    }

    #[test]
    fn githubs_primary_limit_is_a_403_with_no_budget_left() {
        let e = classify(
            403,
            &[
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1700000600"),
            ],
            r#"{"message": "API rate limit exceeded for user ID 1."}"#,
        );
        assert_eq!(until(&e), Duration::from_secs(600));
    }

    #[test]
    fn githubs_secondary_limit_with_or_without_retry_after() {
        let e = classify(
            403,
            &[("retry-after", "120"), ("x-ratelimit-remaining", "4000")],
            r#"{"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#,
        );
        assert_eq!(until(&e), Duration::from_secs(120));
        let e = classify(
            403,
            &[("x-ratelimit-remaining", "4000")],
            r#"{"message": "You have exceeded a secondary rate limit and have been temporarily blocked from content creation."}"#,
        );
        assert_eq!(until(&e), Duration::from_secs(60), "default wait");
        let e = classify(
            429,
            &[("retry-after", "5")],
            r#"{"message": "secondary rate limit"}"#,
        );
        assert_eq!(until(&e), Duration::from_secs(5));
        let e = classify(
            403,
            &[],
            r#"{"message": "You have triggered an abuse detection mechanism."}"#,
        );
        assert_eq!(e.kind(), ErrorKind::RateLimited);
    }

    #[test]
    fn stack_exchanges_throttle_violation_is_a_rate_limit_for_what_it_states() {
        let e = classify(
            400,
            &[],
            r#"{"error_id": 502, "error_message": "too many requests from this IP, more requests available in 3600 seconds", "error_name": "throttle_violation"}"#,
        );
        assert_eq!(until(&e), Duration::from_secs(3600));
        let e = classify(
            400,
            &[],
            r#"{"error_id": 502, "error_message": "too many requests", "error_name": "throttle_violation"}"#,
        );
        assert_eq!(until(&e), Duration::from_secs(60), "default wait");
        let e = classify(
            429,
            &[("Retry-After", "39")],
            r#"{"errors": ["Please wait 39 seconds."], "error_type": "rate_limit", "extras": {"wait_seconds": 39}}"#,
        );
        assert_eq!(until(&e), Duration::from_secs(39), "Discourse");
        let e = classify(
            429,
            &[],
            r#"{"errors": ["too many"], "error_type": "rate_limit", "extras": {"wait_seconds": 7200}}"#,
        );
        assert_eq!(
            until(&e),
            Duration::from_secs(7200),
            "Discourse's daily limit"
        );
    }

    #[test]
    fn an_ordinary_403_is_fatal_with_the_platforms_message() {
        let e = classify(
            403,
            &[("x-ratelimit-remaining", "4999")],
            r#"{"message": "Resource not accessible by integration"}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Fatal);
        assert_eq!(
            e.to_string(),
            "GET /x: 403 Forbidden: Resource not accessible by integration"
        );
    }

    #[test]
    fn server_errors_and_408_are_retryable_other_4xx_fatal() {
        for status in [500, 502, 503, 504, 408] {
            assert_eq!(
                classify(status, &[], "").kind(),
                ErrorKind::Retryable,
                "{status}"
            );
        }
        for status in [400, 401, 404, 410, 422] {
            assert_eq!(
                classify(status, &[], "").kind(),
                ErrorKind::Fatal,
                "{status}"
            );
        }
        assert_eq!(
            classify(404, &[], r#"{"error": "not found", "status": 404}"#).to_string(),
            "GET /x: 404 Not Found: not found"
        );
        assert_eq!(
            classify(
                400,
                &[],
                r#"{"error_id": 400, "error_message": "page must be > 0"}"#
            )
            .to_string(),
            "GET /x: 400 Bad Request: page must be > 0"
        );
        assert_eq!(
            classify(
                403,
                &[],
                r#"{"errors": ["You are not permitted to view the requested resource."], "error_type": "invalid_access"}"#
            )
            .to_string(),
            "GET /x: 403 Forbidden: You are not permitted to view the requested resource."
        );
        assert_eq!(
            classify(400, &[], "  plain text\n").to_string(),
            "GET /x: 400 Bad Request: plain text"
        );
    }
}
