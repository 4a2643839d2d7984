//! Reading the waits platforms announce: `Retry-After` (seconds or an HTTP date),
//! `X-RateLimit-Reset` (epoch seconds) and the remaining budget.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;

/// Bounds on what a platform may ask for: a nonsensical value is capped, not obeyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitCaps {
    /// Used when a platform refuses without saying for how long.
    pub default_wait: Duration,
    pub max_wait: Duration,
}

impl Default for WaitCaps {
    fn default() -> Self {
        Self {
            default_wait: Duration::from_secs(60),
            max_wait: Duration::from_secs(24 * 3600),
        }
    }
}

/// The rate-limit figures a response reports.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RateLimitInfo {
    pub limit: Option<f64>,
    pub remaining: Option<f64>,
    pub reset_at: Option<DateTime<Utc>>,
}

impl RateLimitInfo {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self {
            limit: header_f64(headers, &["x-ratelimit-limit", "x-rate-limit-limit"]),
            remaining: header_f64(
                headers,
                &["x-ratelimit-remaining", "x-rate-limit-remaining"],
            ),
            reset_at: header_f64(headers, &["x-ratelimit-reset", "x-rate-limit-reset"])
                .and_then(epoch_to_datetime),
        }
    }

    /// Whether the budget is spent.
    pub fn exhausted(&self) -> bool {
        self.remaining.is_some_and(|r| r < 1.0)
    }
}

/// The wait a response announces, from `now`, capped to `caps.max_wait`. `None` when it
/// announces none. When several headers apply, the longest wait wins.
pub fn announced_wait(headers: &HeaderMap, now: DateTime<Utc>, caps: WaitCaps) -> Option<Duration> {
    let mut waits: Vec<Duration> = Vec::new();
    if let Some(value) = header_str(headers, "retry-after") {
        if let Ok(seconds) = value.trim().parse::<f64>() {
            waits.push(seconds_to_wait(seconds));
        } else if let Ok(at) = DateTime::parse_from_rfc2822(value.trim()) {
            waits.push(until(now, at.with_timezone(&Utc)));
        }
    }
    let info = RateLimitInfo::from_headers(headers);
    if info.exhausted()
        && let Some(reset) = info.reset_at
    {
        waits.push(until(now, reset));
    }
    waits.into_iter().max().map(|w| w.min(caps.max_wait))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn header_f64(headers: &HeaderMap, names: &[&str]) -> Option<f64> {
    names
        .iter()
        .find_map(|name| header_str(headers, name))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
}

fn seconds_to_wait(seconds: f64) -> Duration {
    if seconds.is_finite() && seconds > 0.0 {
        Duration::from_secs_f64(seconds.min(1e9))
    } else {
        Duration::ZERO
    }
}

fn epoch_to_datetime(seconds: f64) -> Option<DateTime<Utc>> {
    if !(0.0..1e11).contains(&seconds) {
        return None;
    }
    DateTime::from_timestamp_millis((seconds * 1000.0) as i64)
}

fn until(now: DateTime<Utc>, at: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
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

    #[test]
    fn retry_after_in_seconds_and_as_an_http_date() {
        let caps = WaitCaps::default();
        assert_eq!(
            announced_wait(&headers(&[("Retry-After", "120")]), now(), caps),
            Some(Duration::from_secs(120))
        );
        // 1_700_000_000 is Tue, 14 Nov 2023 22:13:20 GMT
        assert_eq!(
            announced_wait(
                &headers(&[("retry-after", "Tue, 14 Nov 2023 22:15:20 GMT")]),
                now(),
                caps
            ),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            announced_wait(&headers(&[("Retry-After", "soon")]), now(), caps),
            None
        );
    }

    #[test]
    fn an_exhausted_budget_waits_for_its_reset_and_the_longest_wait_wins() {
        let h = headers(&[
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", "1700000300"),
            ("Retry-After", "60"),
        ]);
        assert_eq!(
            announced_wait(&h, now(), WaitCaps::default()),
            Some(Duration::from_secs(300))
        );
        let not_exhausted = headers(&[
            ("X-RateLimit-Remaining", "12.0"),
            ("X-RateLimit-Reset", "1700000300"),
        ]);
        assert_eq!(
            announced_wait(&not_exhausted, now(), WaitCaps::default()),
            None
        );
    }

    #[test]
    fn nonsense_is_capped() {
        let caps = WaitCaps {
            default_wait: Duration::from_secs(60),
            max_wait: Duration::from_secs(3600),
        };
        assert_eq!(
            announced_wait(&headers(&[("Retry-After", "999999999")]), now(), caps),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            announced_wait(&headers(&[("Retry-After", "-5")]), now(), caps),
            Some(Duration::ZERO)
        );
    }
}
