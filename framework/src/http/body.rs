//! A platform's own reading of its answers, by their body: the hook for platforms whose status
//! code does not say it all.
//!
//! * Slack answers `200 OK` with `{"ok": false, "error": "ratelimited"}` (a rate limit),
//!   `"invalid_auth"` (a refused credential), `"not_in_channel"`…
//! * Discourse puts its admin API waits in a 429's `extras.wait_seconds`.
//! * Stack Exchange refuses with `400` and `error_id: 502` (`throttle_violation`).
//!
//! An integration gives its [`HttpConfig`](super::HttpConfig) a [`BodyClassifier`]: a plain
//! function that looks at an [`Answer`] (status, headers, body) and returns a [`Verdict`], or
//! `None` to leave the answer to the standard classification ([`super::classify_response`]). A
//! verdict goes through the same machinery as every other refusal: a rate limit blocks the
//! credential for every stream of the process and defers the run when the wait is long; the
//! message is prefixed with the method and path (never the query string).
//!
//! ```text
//! fn slack(answer: &Answer<'_>) -> Option<Verdict> {
//!     let error = answer.json()?.get("error")?.as_str()?.to_owned();
//!     Some(match error.as_str() {
//!         "ratelimited" => Verdict::rate_limited(None, error),
//!         _ => Verdict::fatal(error),
//!     })
//! }
//! let config = HttpConfig::new(url).classify_body(BodyClassifier::new("slack", slack));
//! ```

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::classify::classify_response;
use super::waits::{WaitCaps, after, announced_wait};
use crate::error::IntegrationError;

/// One answer, as a classifier sees it.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: StatusCode,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl Answer<'_> {
    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(self.body).ok()
    }
}

/// What a classifier decided about an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A success, whatever the status said.
    Success,
    /// A rate limit: wait `wait` (else whatever the answer announces in its headers or its
    /// body's `retry_after` / `backoff`, else [`WaitCaps::default_wait`]), bounded by the
    /// client's [`WaitCaps`].
    RateLimited {
        wait: Option<Duration>,
        message: String,
    },
    /// Worth trying again (with the processor's backoff).
    Retryable(String),
    /// Ends the stream with this message.
    Fatal(String),
}

impl Verdict {
    pub fn rate_limited(wait: Option<Duration>, message: impl Into<String>) -> Self {
        Self::RateLimited {
            wait,
            message: message.into(),
        }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable(message.into())
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        Self::Fatal(message.into())
    }
}

/// A platform's classifier: `classify` returns a [`Verdict`], or `None` to leave the answer to
/// the standard classification. Two classifiers are the same when their names are.
#[derive(Clone, Copy)]
pub struct BodyClassifier {
    name: &'static str,
    classify: fn(&Answer<'_>) -> Option<Verdict>,
}

impl BodyClassifier {
    pub const fn new(name: &'static str, classify: fn(&Answer<'_>) -> Option<Verdict>) -> Self {
        Self { name, classify }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The verdict on one answer, if this classifier has one.
    pub fn verdict(&self, answer: &Answer<'_>) -> Option<Verdict> {
        (self.classify)(answer)
    }
}

impl PartialEq for BodyClassifier {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl fmt::Debug for BodyClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BodyClassifier").field(&self.name).finish()
    }
}

/// The error of an answer: `classifier`'s verdict if it has one, else the standard
/// classification. `None` for a success.
pub fn classify_answer(
    classifier: Option<&BodyClassifier>,
    what: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
    caps: WaitCaps,
) -> Option<IntegrationError> {
    let answer = Answer {
        status,
        headers,
        body,
    };
    let Some(verdict) = classifier.and_then(|c| c.verdict(&answer)) else {
        return classify_response(what, status, headers, body, now, caps);
    };
    match verdict {
        Verdict::Success => None,
        Verdict::RateLimited { wait, message } => {
            let wait = wait
                .or_else(|| announced_wait(headers, body, now, caps))
                .unwrap_or(caps.default_wait);
            Some(IntegrationError::rate_limited(
                after(now, caps.bound(wait)),
                format!("{what}: {message}"),
            ))
        }
        Verdict::Retryable(message) => {
            Some(IntegrationError::retryable(format!("{what}: {message}")))
        }
        Verdict::Fatal(message) => Some(IntegrationError::fatal(format!("{what}: {message}"))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::ErrorKind;
    use reqwest::header::HeaderValue;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    /// Slack-like: `ok: false` with an error code; `wait_seconds` like Discourse's extras.
    fn sample(answer: &Answer<'_>) -> Option<Verdict> {
        let json = answer.json()?;
        if let Some(wait) = json.pointer("/extras/wait_seconds").and_then(Value::as_f64) {
            return Some(Verdict::rate_limited(
                Some(Duration::from_secs_f64(wait)),
                "admin API limit",
            ));
        }
        if json.get("ok")? != &Value::Bool(false) {
            return None;
        }
        let error = json.get("error")?.as_str()?.to_owned();
        Some(match error.as_str() {
            "ratelimited" => Verdict::rate_limited(None, error),
            "internal_error" => Verdict::retryable(error),
            "accepted" => Verdict::Success,
            _ => Verdict::fatal(format!("{error}: the bot is not allowed")),
        })
    }

    const SAMPLE: BodyClassifier = BodyClassifier::new("sample", sample);

    fn classify(status: u16, headers: &HeaderMap, body: &str) -> Option<IntegrationError> {
        classify_answer(
            Some(&SAMPLE),
            "GET /x",
            StatusCode::from_u16(status).unwrap(),
            headers,
            body.as_bytes(),
            now(),
            WaitCaps::default(),
        )
    }

    fn wait_of(e: &IntegrationError) -> Duration {
        match e {
            IntegrationError::RateLimited { until, .. } => (*until - now()).to_std().unwrap(),
            other => panic!("not rate limited: {other:?}"),
        }
    }

    #[test]
    fn a_200_with_an_error_body_is_what_the_classifier_says() {
        let none = HeaderMap::new();
        let e = classify(200, &none, r#"{"ok": false, "error": "not_in_channel"}"#).unwrap();
        assert_eq!(e.kind(), ErrorKind::Fatal);
        assert_eq!(
            e.to_string(),
            "GET /x: not_in_channel: the bot is not allowed"
        );
        let e = classify(200, &none, r#"{"ok": false, "error": "internal_error"}"#).unwrap();
        assert_eq!(e.kind(), ErrorKind::Retryable);
        assert!(classify(200, &none, r#"{"ok": true, "messages": []}"#).is_none());
        assert!(
            classify(200, &none, "not json").is_none(),
            "left to the standard"
        );
    }

    #[test]
    fn a_rate_limit_verdict_waits_what_it_says_or_what_the_answer_announces() {
        let none = HeaderMap::new();
        let e = classify(200, &none, r#"{"ok": false, "error": "ratelimited"}"#).unwrap();
        assert_eq!(wait_of(&e), Duration::from_secs(60), "the default wait");
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        let e = classify(429, &headers, r#"{"ok": false, "error": "ratelimited"}"#).unwrap();
        assert_eq!(wait_of(&e), Duration::from_secs(7), "Retry-After");
        let e = classify(429, &none, r#"{"extras": {"wait_seconds": 42}}"#).unwrap();
        assert_eq!(wait_of(&e), Duration::from_secs(42), "the verdict's own");
        let e = classify(429, &none, r#"{"extras": {"wait_seconds": 0}}"#).unwrap();
        assert_eq!(wait_of(&e), Duration::from_secs(1), "bounded by min_wait");
    }

    #[test]
    fn no_verdict_falls_back_to_the_standard_classification() {
        let none = HeaderMap::new();
        let e = classify(503, &none, r#"{"message": "down"}"#).unwrap();
        assert_eq!(e.kind(), ErrorKind::Retryable);
        assert_eq!(e.to_string(), "GET /x: 503 Service Unavailable: down");
        assert!(classify(418, &none, r#"{"ok": false, "error": "accepted"}"#).is_none());
        let e = classify_answer(
            None,
            "GET /x",
            StatusCode::OK,
            &none,
            br#"{"ok": false, "error": "ratelimited"}"#,
            now(),
            WaitCaps::default(),
        );
        assert!(e.is_none(), "no classifier: a 200 is a success");
    }

    #[test]
    fn classifiers_compare_and_show_by_name() {
        assert_eq!(SAMPLE, BodyClassifier::new("sample", |_| None));
        assert_ne!(SAMPLE, BodyClassifier::new("other", sample));
        assert_eq!(format!("{SAMPLE:?}"), r#"BodyClassifier("sample")"#);
    }
}
