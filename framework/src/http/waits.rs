//! Reading the waits and budgets platforms announce, in every form they use:
//!
//! * `Retry-After`: seconds (`120`, `1.5`) or an HTTP date (`Tue, 14 Nov 2023 22:15:20 GMT`, and
//!   the obsolete RFC 850 / asctime forms);
//! * reset times: `X-RateLimit-Reset` / `X-Rate-Limit-Reset` as epoch seconds (GitHub, Discord,
//!   X; decimals allowed) or seconds from now (Reddit, under the same name). How a platform means
//!   it is [`WaitCaps::reset`] ([`ResetForm`]); by default a value too small to be a date (below
//!   10⁹, i.e. before 2001) is read as seconds from now;
//! * `X-RateLimit-Reset-After` / `X-Rate-Limit-Reset-After`: seconds from now (Discord);
//! * remaining, used and limit counts, integers or floats (`598.0`, Reddit); where no limit is
//!   sent, `used + remaining` is the limit (Reddit's `X-Ratelimit-Used`);
//! * a JSON body's `retry_after` (Discord, seconds, decimals allowed), `backoff` (Stack
//!   Exchange, seconds; sent on successful answers too) or `extras.wait_seconds` (Discourse's
//!   429s, its per-minute and per-day API limits).
//!
//! Header names are case-insensitive. When several waits apply, the longest wins. Values that
//! make no sense are bounded by [`WaitCaps`], never obeyed as such: a reset decades away waits
//! `max_wait`, a negative or unreadable value is ignored.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use serde_json::Value;

/// Bounds on what a platform may ask for: a nonsensical value is capped, not obeyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitCaps {
    /// Used when a platform refuses without saying for how long (GitHub asks for at least a
    /// minute when its secondary limit says nothing).
    pub default_wait: Duration,
    /// A refusal always waits at least this long, whatever it announced (`Retry-After: 0` or
    /// `-5` would otherwise hammer the platform).
    pub min_wait: Duration,
    /// No announced wait is longer than this.
    pub max_wait: Duration,
    /// How the platform's reset header counts: an epoch time, seconds from now, or either.
    pub reset: ResetForm,
}

/// What a reset header (`X-RateLimit-Reset`, `X-Rate-Limit-Reset`) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResetForm {
    /// An epoch time from 10⁹ up, else seconds from now.
    #[default]
    Auto,
    /// Always an epoch time in seconds (GitHub, X): a value that cannot be a date (before 2001)
    /// is ignored, never read as a delay.
    Epoch,
    /// Always seconds from now (Reddit): a huge value is capped by `max_wait`, never read as a
    /// date.
    SecondsFromNow,
}

impl Default for WaitCaps {
    fn default() -> Self {
        Self {
            default_wait: Duration::from_secs(60),
            min_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(24 * 3600),
            reset: ResetForm::Auto,
        }
    }
}

impl WaitCaps {
    /// `wait` bounded to `[min_wait, max_wait]`: how long a refusal really waits.
    pub fn bound(&self, wait: Duration) -> Duration {
        wait.clamp(self.min_wait, self.max_wait.max(self.min_wait))
    }
}

/// Below this, a "reset" value is seconds from now rather than an epoch time.
const EPOCH_FLOOR: f64 = 1e9;
/// Above this (year 5138) an epoch value is garbage, not a date.
const EPOCH_CEILING: f64 = 1e11;

/// The rate-limit figures a response reports: how much budget is left and when it comes back.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RateLimitInfo {
    pub limit: Option<f64>,
    pub remaining: Option<f64>,
    /// When the budget resets: the later of the reset headers present.
    pub reset_at: Option<DateTime<Utc>>,
}

impl RateLimitInfo {
    /// The figures of `headers`, relative to the current time.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self::from_headers_at(headers, crate::clock::now())
    }

    /// The figures of `headers`, reading seconds-from-now values relative to `now`.
    pub fn from_headers_at(headers: &HeaderMap, now: DateTime<Utc>) -> Self {
        Self::read(headers, now, ResetForm::Auto)
    }

    /// The figures of `headers`, the reset header read as `form` says.
    pub fn read(headers: &HeaderMap, now: DateTime<Utc>, form: ResetForm) -> Self {
        let epoch_or_delta = header_f64(headers, &["x-ratelimit-reset", "x-rate-limit-reset"])
            .and_then(|v| match form {
                ResetForm::Auto if v < EPOCH_FLOOR => delta_to_datetime(now, v),
                ResetForm::Auto => epoch_to_datetime(v),
                ResetForm::Epoch if v < EPOCH_FLOOR => None,
                ResetForm::Epoch => epoch_to_datetime(v),
                ResetForm::SecondsFromNow => delta_to_datetime(now, v),
            });
        let after = header_f64(
            headers,
            &["x-ratelimit-reset-after", "x-rate-limit-reset-after"],
        )
        .and_then(|v| delta_to_datetime(now, v));
        let remaining = header_f64(
            headers,
            &["x-ratelimit-remaining", "x-rate-limit-remaining"],
        )
        .filter(|v| *v >= 0.0);
        let used =
            header_f64(headers, &["x-ratelimit-used", "x-rate-limit-used"]).filter(|v| *v >= 0.0);
        Self {
            limit: header_f64(headers, &["x-ratelimit-limit", "x-rate-limit-limit"])
                .filter(|v| *v >= 0.0)
                .or_else(|| Some(used? + remaining?)),
            remaining,
            reset_at: epoch_or_delta.max(after),
        }
    }

    /// Whether the budget is spent (`remaining` below one request).
    pub fn exhausted(&self) -> bool {
        self.remaining.is_some_and(|r| r < 1.0)
    }

    /// Time until the reset, from `now`, capped; `None` when no reset was reported.
    pub fn reset_in(&self, now: DateTime<Utc>, caps: WaitCaps) -> Option<Duration> {
        self.reset_at.map(|at| until(now, at).min(caps.max_wait))
    }

    /// Whether any figure was reported.
    pub fn is_reported(&self) -> bool {
        self.limit.is_some() || self.remaining.is_some() || self.reset_at.is_some()
    }
}

/// The wait a response announces, from `now`, capped to `caps.max_wait`; `None` when it
/// announces none. Counted: `Retry-After`, the reset time when the budget is exhausted, and a
/// JSON body's `retry_after` / `backoff`. When several apply, the longest wins.
pub fn announced_wait(
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
    caps: WaitCaps,
) -> Option<Duration> {
    let mut waits: Vec<Duration> = Vec::new();
    waits.extend(retry_after(headers, now));
    let info = RateLimitInfo::read(headers, now, caps.reset);
    if info.exhausted()
        && let Some(reset) = info.reset_at
    {
        waits.push(until(now, reset));
    }
    waits.extend(body_wait(body));
    waits.into_iter().max().map(|w| w.min(caps.max_wait))
}

/// `Retry-After` as seconds or as an HTTP date; `None` when absent or unreadable.
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = header_str(headers, "retry-after")?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return seconds.is_finite().then(|| seconds_to_wait(seconds));
    }
    let at: DateTime<Utc> = httpdate::parse_http_date(value)
        .ok()
        .map(DateTime::<Utc>::from)
        .or_else(|| {
            DateTime::parse_from_rfc2822(value)
                .ok()
                .map(|d| d.with_timezone(&Utc))
        })?;
    Some(until(now, at))
}

/// A JSON body's `retry_after` (seconds, maybe fractional, maybe a string), `backoff`
/// (seconds) or `extras.wait_seconds` (Discourse); the longest of them.
pub fn body_wait(body: &[u8]) -> Option<Duration> {
    // cheap pre-check: most bodies carry none, and may be large
    let mentions = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    if !(mentions(b"retry_after") || mentions(b"backoff") || mentions(b"wait_seconds")) {
        return None;
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object()?;
    let extras = object
        .get("extras")
        .and_then(Value::as_object)
        .and_then(|extras| extras.get("wait_seconds"));
    ["retry_after", "backoff"]
        .iter()
        .filter_map(|key| object.get(*key))
        .chain(extras)
        .filter_map(|v| match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        })
        .filter(|v| v.is_finite())
        .map(seconds_to_wait)
        .max()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn header_f64(headers: &HeaderMap, names: &[&str]) -> Option<f64> {
    names
        .iter()
        .filter_map(|name| header_str(headers, name))
        .find_map(|v| v.trim().parse::<f64>().ok().filter(|v| v.is_finite()))
}

fn seconds_to_wait(seconds: f64) -> Duration {
    if seconds.is_finite() && seconds > 0.0 {
        Duration::from_secs_f64(seconds.min(1e9))
    } else {
        Duration::ZERO
    }
}

fn epoch_to_datetime(seconds: f64) -> Option<DateTime<Utc>> {
    if !(0.0..EPOCH_CEILING).contains(&seconds) {
        return None;
    }
    DateTime::from_timestamp_millis((seconds * 1000.0) as i64)
}

fn delta_to_datetime(now: DateTime<Utc>, seconds: f64) -> Option<DateTime<Utc>> {
    let wait = chrono::Duration::from_std(seconds_to_wait(seconds)).ok()?;
    now.checked_add_signed(wait)
}

fn until(now: DateTime<Utc>, at: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

/// The wall-clock time `wait` from now, saturating.
pub(crate) fn after(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(wait)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    /// 1_700_000_000 is Tue, 14 Nov 2023 22:13:20 GMT
    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn wait(pairs: &[(&str, &str)]) -> Option<Duration> {
        announced_wait(&headers(pairs), b"", now(), WaitCaps::default())
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn retry_after_in_seconds_any_case() {
        assert_eq!(wait(&[("Retry-After", "120")]), Some(S(120)));
        assert_eq!(wait(&[("RETRY-AFTER", " 7 ")]), Some(S(7)));
        assert_eq!(
            wait(&[("retry-after", "1.5")]),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn retry_after_as_an_http_date_in_every_form() {
        for date in [
            "Tue, 14 Nov 2023 22:15:20 GMT",   // IMF-fixdate
            "Tuesday, 14-Nov-23 22:15:20 GMT", // RFC 850
            "Tue Nov 14 22:15:20 2023",        // asctime
            "Tue, 14 Nov 2023 23:15:20 +0100", // RFC 2822 with an offset
        ] {
            assert_eq!(wait(&[("Retry-After", date)]), Some(S(120)), "{date}");
        }
        // a date in the past: no wait
        assert_eq!(
            wait(&[("Retry-After", "Tue, 14 Nov 2023 22:00:00 GMT")]),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn unreadable_retry_after_is_ignored() {
        for bad in ["soon", "", "NaN", "inf", "12 seconds", "Tue, 99 Nov 2023"] {
            assert_eq!(wait(&[("Retry-After", bad)]), None, "{bad:?}");
        }
    }

    #[test]
    fn an_exhausted_budget_waits_for_its_reset_in_epoch_seconds() {
        assert_eq!(
            wait(&[
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", "1700000300")
            ]),
            Some(S(300))
        );
        assert_eq!(
            wait(&[
                ("x-rate-limit-remaining", "0"),
                ("x-rate-limit-reset", "1700000060")
            ]),
            Some(S(60)),
            "X's spelling"
        );
        assert_eq!(
            wait(&[
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", "1700000000.250")
            ]),
            Some(Duration::from_millis(250)),
            "decimals (Discord)"
        );
        // not exhausted: the reset is no wait
        assert_eq!(
            wait(&[
                ("X-RateLimit-Remaining", "12.0"),
                ("X-RateLimit-Reset", "1700000300")
            ]),
            None
        );
    }

    #[test]
    fn reset_after_and_small_resets_are_seconds_from_now() {
        assert_eq!(
            wait(&[
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset-After", "2.5")
            ]),
            Some(Duration::from_millis(2500))
        );
        // Reddit: `x-ratelimit-reset` in seconds from now, remaining as a float
        assert_eq!(
            wait(&[
                ("x-ratelimit-remaining", "0.0"),
                ("x-ratelimit-reset", "42")
            ]),
            Some(S(42))
        );
    }

    #[test]
    fn remaining_counts_as_floats_and_the_limit() {
        let info = RateLimitInfo::from_headers_at(
            &headers(&[
                ("X-RateLimit-Limit", "600.0"),
                ("X-RateLimit-Remaining", "598.0"),
                ("X-RateLimit-Reset", "1700000300"),
            ]),
            now(),
        );
        assert_eq!(info.limit, Some(600.0));
        assert_eq!(info.remaining, Some(598.0));
        assert!(!info.exhausted());
        assert_eq!(info.reset_in(now(), WaitCaps::default()), Some(S(300)));
        let spent =
            RateLimitInfo::from_headers_at(&headers(&[("x-ratelimit-remaining", "0.4")]), now());
        assert!(spent.exhausted(), "less than one request left");
    }

    #[test]
    fn the_reset_form_is_the_platforms() {
        let read = |pairs: &[(&str, &str)], form| {
            RateLimitInfo::read(&headers(pairs), now(), form).reset_in(now(), WaitCaps::default())
        };
        // X: an epoch, a delay of minutes, never decades
        let x = [("x-rate-limit-reset", "1700000900")];
        assert_eq!(read(&x, ResetForm::Epoch), Some(S(900)));
        assert_eq!(read(&x, ResetForm::Auto), Some(S(900)));
        // an epoch form never reads a small value as a delay
        assert_eq!(
            read(&[("x-rate-limit-reset", "900")], ResetForm::Epoch),
            None
        );
        // Reddit: seconds from now, whatever the size (capped)
        let reddit = [("x-ratelimit-reset", "542")];
        assert_eq!(read(&reddit, ResetForm::SecondsFromNow), Some(S(542)));
        assert_eq!(
            read(
                &[("x-ratelimit-reset", "1700000900")],
                ResetForm::SecondsFromNow
            ),
            Some(WaitCaps::default().max_wait),
            "a huge delta is capped, not read as a date"
        );
        // the form travels with the caps into announced waits
        let caps = WaitCaps {
            reset: ResetForm::SecondsFromNow,
            ..WaitCaps::default()
        };
        assert_eq!(
            announced_wait(
                &headers(&[
                    ("x-ratelimit-remaining", "0.0"),
                    ("x-ratelimit-reset", "42")
                ]),
                b"",
                now(),
                caps
            ),
            Some(S(42))
        );
    }

    #[test]
    fn reddits_used_and_remaining_make_the_limit() {
        let info = RateLimitInfo::read(
            &headers(&[
                ("x-ratelimit-used", "4"),
                ("x-ratelimit-remaining", "996.0"),
                ("x-ratelimit-reset", "300"),
            ]),
            now(),
            ResetForm::SecondsFromNow,
        );
        assert_eq!(info.limit, Some(1000.0));
        assert_eq!(info.remaining, Some(996.0));
        // a sent limit wins
        let info = RateLimitInfo::from_headers_at(
            &headers(&[
                ("x-ratelimit-limit", "600"),
                ("x-ratelimit-used", "4"),
                ("x-ratelimit-remaining", "5"),
            ]),
            now(),
        );
        assert_eq!(info.limit, Some(600.0));
    }

    #[test]
    fn bad_figures_are_ignored() {
        let info = RateLimitInfo::from_headers_at(
            &headers(&[
                ("X-RateLimit-Limit", "lots"),
                ("X-RateLimit-Remaining", "-3"),
                ("X-RateLimit-Reset", "NaN"),
                ("X-RateLimit-Reset-After", "soon"),
            ]),
            now(),
        );
        assert_eq!(info, RateLimitInfo::default());
        assert!(!info.is_reported());
        // an epoch far past any sane date is garbage
        let info = RateLimitInfo::from_headers_at(
            &headers(&[("X-RateLimit-Reset", "99999999999999")]),
            now(),
        );
        assert_eq!(info.reset_at, None);
    }

    #[test]
    fn when_several_apply_the_longest_wins() {
        assert_eq!(
            wait(&[
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", "1700000300"),
                ("X-RateLimit-Reset-After", "400"),
                ("Retry-After", "60"),
            ]),
            Some(S(400))
        );
        assert_eq!(
            announced_wait(
                &headers(&[("Retry-After", "60")]),
                br#"{"message": "slow down", "retry_after": 64.5}"#,
                now(),
                WaitCaps::default()
            ),
            Some(Duration::from_millis(64_500))
        );
    }

    #[test]
    fn body_waits_discord_and_stack_exchange() {
        assert_eq!(
            body_wait(br#"{"message": "You are being rate limited.", "retry_after": 0.75, "global": false}"#),
            Some(Duration::from_millis(750))
        );
        assert_eq!(
            body_wait(br#"{"items": [], "has_more": false, "backoff": 10}"#),
            Some(S(10))
        );
        assert_eq!(body_wait(br#"{"retry_after": "3"}"#), Some(S(3)));
        // Discourse's 429, per-minute or per-day
        assert_eq!(
            body_wait(
                br#"{"errors": ["You've performed this action too many times. Please wait 39 seconds before trying again."], "error_type": "rate_limit", "extras": {"wait_seconds": 39, "time_left": "39 seconds"}}"#
            ),
            Some(S(39))
        );
        assert_eq!(
            body_wait(br#"{"wait_seconds": 39}"#),
            None,
            "only in `extras`"
        );
        assert_eq!(body_wait(br#"{"retry_after": "later"}"#), None);
        assert_eq!(body_wait(br#"{"backoff": -4}"#), Some(Duration::ZERO));
        assert_eq!(body_wait(b"retry_after: not json"), None);
        assert_eq!(
            body_wait(br#"[{"backoff": 5}]"#),
            None,
            "only a top-level object"
        );
    }

    #[test]
    fn nonsense_is_capped_not_obeyed() {
        let caps = WaitCaps {
            max_wait: S(3600),
            ..WaitCaps::default()
        };
        let w = |pairs: &[(&str, &str)]| announced_wait(&headers(pairs), b"", now(), caps);
        assert_eq!(w(&[("Retry-After", "999999999")]), Some(S(3600)));
        // a reset decades away (2096)
        assert_eq!(
            w(&[
                ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", "4000000000")
            ]),
            Some(S(3600))
        );
        assert_eq!(
            w(&[("Retry-After", "Fri, 01 Jan 2100 00:00:00 GMT")]),
            Some(S(3600))
        );
        // a negative wait is no wait; a refusal still waits `min_wait`
        assert_eq!(w(&[("Retry-After", "-5")]), Some(Duration::ZERO));
        assert_eq!(caps.bound(Duration::ZERO), caps.min_wait);
        assert_eq!(caps.bound(S(1_000_000)), S(3600));
    }
}
