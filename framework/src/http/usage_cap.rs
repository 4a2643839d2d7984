//! Usage caps: a budget far longer than a rate-limit window (X's monthly read cap, a daily
//! quota), announced in a refusal's body rather than in headers. A platform declares the marker
//! its body carries ([`super::HttpConfig::usage_cap`]); a refusal (429 or 403) carrying it becomes
//! a [`IntegrationError::RateLimited`] for the cap's wait, with a message that names the cap, so
//! the deferred run says plainly why it stopped, and the credential is blocked for that long.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;

use super::classify::platform_message;
use super::waits::after;
use crate::error::IntegrationError;

/// A cap a platform reports in a refusal's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCap {
    /// Text the refusal's body contains when this cap is spent (e.g. X's `UsageCapExceeded`).
    pub marker: String,
    /// What the cap is, for people: `X's monthly read cap`.
    pub name: String,
    /// How long the run is deferred once the cap is spent (the platform does not say when it
    /// resets).
    pub wait: Duration,
}

impl UsageCap {
    pub fn new(marker: impl Into<String>, name: impl Into<String>, wait: Duration) -> Self {
        Self {
            marker: marker.into(),
            name: name.into(),
            wait,
        }
    }

    /// The error of a refusal that reports this cap spent; `None` for anything else.
    pub fn refusal(
        &self,
        what: &str,
        status: StatusCode,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Option<IntegrationError> {
        let refused = matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::FORBIDDEN
        );
        let marked = !self.marker.is_empty()
            && body
                .windows(self.marker.len())
                .any(|w| w == self.marker.as_bytes());
        if !(refused && marked) {
            return None;
        }
        let until = after(now, self.wait);
        Some(IntegrationError::rate_limited(
            until,
            format!(
                "{what}: {status}: {} is exhausted ({}); nothing more can be read until it \
                 resets: the run is deferred to {}",
                self.name,
                platform_message(body),
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn a_marked_refusal_names_the_cap_and_waits_its_wait() {
        let cap = UsageCap::new(
            "UsageCapExceeded",
            "X's monthly read cap",
            Duration::from_secs(86_400),
        );
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let body = br#"{"title":"UsageCapExceeded","detail":"Usage cap exceeded: Monthly product cap","type":"https://api.twitter.com/2/problems/usage-capped"}"#;
        let e = cap
            .refusal(
                "GET /2/tweets/search/recent",
                StatusCode::TOO_MANY_REQUESTS,
                body,
                now,
            )
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        let IntegrationError::RateLimited { until, .. } = &e else {
            unreachable!()
        };
        assert_eq!((*until - now).num_seconds(), 86_400);
        let text = e.to_string();
        assert!(text.contains("X's monthly read cap is exhausted"), "{text}");
        assert!(
            text.contains("Usage cap exceeded: Monthly product cap"),
            "{text}"
        );
        // an ordinary 429, or the marker in a success, is not the cap
        assert!(
            cap.refusal("GET /x", StatusCode::TOO_MANY_REQUESTS, b"{}", now)
                .is_none()
        );
        assert!(cap.refusal("GET /x", StatusCode::OK, body, now).is_none());
    }
}
