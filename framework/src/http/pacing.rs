//! Proactive pacing, per credential: a run slows down before the platform refuses it.
//!
//! Each credential gets a [`Pacer`]: a `governor` rate limiter (GCRA) running on tokio's clock
//! (so tests can pause it), fed by what the platform reports:
//!
//! * a configured steady rate ([`super::Pacing::rate`]), if the platform documents one;
//! * once the reported budget runs low (`remaining` at or below
//!   [`super::Pacing::spread_below`] of `limit`), the remaining requests are spread evenly until
//!   the reset: one every `time_left / remaining`;
//! * an exhausted budget or a refusal (429, `Retry-After`) blocks the credential until the
//!   announced time: nothing else goes out for it, from any stream of the process; so does a
//!   spent daily quota reported in a body (`quota_remaining: 0`), until midnight UTC;
//! * a `backoff` in a body holds back the same method only ([`MethodBackoffs`]):
//!   [`Pacer::acquire_for`] waits for it.
//!
//! [`Pacer::acquire`] sleeps waits up to `max_inline_wait`; a longer one returns
//! [`IntegrationError::RateLimited`], which the processor turns into a deferral of the run.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::backoff::{MethodBackoffs, method_of};
use super::body::{BodyClassifier, classify_answer};
use super::body_limits::spent_quota;
use super::config::{Pacing, RequestRate};
use super::waits::{RateLimitInfo, WaitCaps, after, body_wait};
use crate::error::IntegrationError;
use crate::secret::Secret;

/// governor's clock, read from tokio's (paused in tests, auto-advancing).
#[derive(Debug, Clone, Copy)]
struct TokioClock {
    origin: Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// The pacing of one credential.
pub struct Pacer {
    pacing: Pacing,
    caps: WaitCaps,
    clock: TokioClock,
    state: Mutex<State>,
    pub(super) backoffs: MethodBackoffs,
}

struct State {
    /// The configured steady rate.
    steady: Option<(Duration, Limiter)>,
    /// The reported budget spread until its reset: `(interval, limiter)`.
    spread: Option<(Duration, Limiter)>,
    /// The reset the spreading lasts until: past it, the window is new and its budget whole.
    spread_until: Option<Instant>,
    /// Nothing goes out before this (an exhausted budget, a refusal).
    blocked_until: Option<Instant>,
    /// Why the credential is blocked until then, when the platform said (a spent daily quota).
    why: Option<(Instant, String)>,
}

/// What a pacer is doing, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacerStatus {
    /// How long the credential is still blocked.
    pub blocked_for: Duration,
    /// The interval between requests while the reported budget is spread, if it is.
    pub spread_interval: Option<Duration>,
}

/// Spread intervals closer than this ratio to the current one keep the current limiter (a new
/// limiter starts with a fresh burst).
const RESPREAD_RATIO: f64 = 1.1;

impl Pacer {
    pub fn new(pacing: Pacing, caps: WaitCaps) -> Self {
        let clock = TokioClock {
            origin: Instant::now(),
        };
        let steady = pacing.rate.and_then(|rate| steady_limiter(rate, clock));
        Self {
            pacing,
            caps,
            clock,
            state: Mutex::new(State {
                steady,
                spread: None,
                spread_until: None,
                blocked_until: None,
                why: None,
            }),
            backoffs: MethodBackoffs::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes this credential's next turn: returns at once when a request may go out, sleeps a
    /// wait up to `max_inline_wait`, and returns [`IntegrationError::RateLimited`] when the wait
    /// is longer (the run is then deferred, its worker freed).
    pub async fn acquire(&self) -> Result<(), IntegrationError> {
        loop {
            let wait = match self.try_acquire() {
                Ok(()) => return Ok(()),
                Err(wait) => wait,
            };
            if wait > self.pacing.max_inline_wait {
                let now = Instant::now();
                let message = match &self.state().why {
                    Some((until, why)) if *until > now => format!("{why}; waiting {wait:.0?}"),
                    _ => {
                        format!("pacing this credential: its next request may go out in {wait:.1?}")
                    }
                };
                return Err(IntegrationError::rate_limited(
                    after(crate::clock::now(), wait),
                    message,
                ));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes a turn if one is free now; else says how long until one may be.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let mut state = self.state();
        let now = Instant::now();
        lift_spread_after_reset(&mut state, now);
        if let Some(until) = state.blocked_until
            && until > now
        {
            return Err(until - now);
        }
        let limiter = state
            .spread
            .as_ref()
            .or(state.steady.as_ref())
            .map(|(_, l)| l);
        match limiter.map(Limiter::check) {
            None | Some(Ok(())) => Ok(()),
            Some(Err(not_until)) => Err(not_until
                .wait_time_from(self.clock.now())
                .max(Duration::from_millis(1))),
        }
    }

    /// Learns from a response's figures (`now` is the wall-clock time of the response): an
    /// exhausted budget blocks until its reset, a low one is spread, a replenished one lifts
    /// the spreading.
    pub fn observe(&self, info: &RateLimitInfo, now: DateTime<Utc>) {
        let Some(remaining) = info.remaining else {
            return;
        };
        let time_left = info.reset_in(now, self.caps);
        let mut state = self.state();
        if remaining < 1.0 {
            if let Some(left) = time_left.filter(|d| !d.is_zero()) {
                block(&mut state, left);
            }
            return;
        }
        let low = match info.limit {
            Some(limit) if limit > 0.0 => remaining <= limit * self.pacing.spread_below,
            _ => remaining <= Pacing::SPREAD_BELOW_REQUESTS,
        };
        match time_left {
            Some(left) if low && !left.is_zero() => {
                let steady = state.steady.as_ref().map_or(Duration::ZERO, |(i, _)| *i);
                let interval = left.div_f64(remaining).max(steady);
                let keep = state.spread.as_ref().is_some_and(|(current, _)| {
                    let ratio = interval.as_secs_f64() / current.as_secs_f64().max(1e-9);
                    (1.0 / RESPREAD_RATIO..=RESPREAD_RATIO).contains(&ratio)
                });
                if !keep {
                    state.spread = Quota::with_period(interval)
                        .map(|q| (interval, Limiter::direct_with_clock(q, self.clock)));
                }
                state.spread_until = Some(Instant::now() + left);
            }
            _ => {
                state.spread = None;
                state.spread_until = None;
            }
        }
    }

    /// Learns from one answer: the budget it reports, the refusal it is (blocking the credential
    /// for the announced wait), the `backoff` its body asks for. Returns the answer's error, or
    /// `None` for a success. `now` is the wall-clock time of the answer.
    pub fn learn(
        &self,
        what: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Option<IntegrationError> {
        self.learn_with(None, what, status, headers, body, now)
    }

    /// [`Pacer::learn`], the answer read first by a platform's [`BodyClassifier`].
    pub fn learn_with(
        &self,
        classifier: Option<&BodyClassifier>,
        what: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Option<IntegrationError> {
        self.observe(&RateLimitInfo::read(headers, now, self.caps.reset), now);
        let error = classify_answer(classifier, what, status, headers, body, now, self.caps);
        match &error {
            Some(IntegrationError::RateLimited { until, .. }) => {
                // every stream of this credential now waits, without asking again
                self.block_for((*until - now).to_std().unwrap_or_default());
            }
            Some(_) => {}
            None => {
                if let Some(backoff) = body_wait(body).filter(|w| !w.is_zero()) {
                    // the same method waits; the credential's other methods go on
                    self.backoffs
                        .block(&method_of(what), backoff.min(self.caps.max_wait));
                }
                if let Some((left, why)) = spent_quota(body, now, self.caps) {
                    self.block_because(left, why);
                }
            }
        }
        error
    }

    /// The longest wait this pacer sleeps inline.
    pub fn max_inline_wait(&self) -> Duration {
        self.pacing.max_inline_wait
    }

    /// Blocks the credential for `wait`, saying why (the deferral's message tells it).
    pub fn block_because(&self, wait: Duration, why: String) {
        let mut state = self.state();
        block(&mut state, wait);
        state.why = Some((Instant::now() + wait, why));
    }

    /// Blocks the credential for `wait` (a refusal): nothing goes out before.
    pub fn block_for(&self, wait: Duration) {
        block(&mut self.state(), wait);
    }

    pub fn status(&self) -> PacerStatus {
        let mut state = self.state();
        lift_spread_after_reset(&mut state, Instant::now());
        PacerStatus {
            blocked_for: state.blocked_until.map_or(Duration::ZERO, |u| {
                u.saturating_duration_since(Instant::now())
            }),
            spread_interval: state.spread.as_ref().map(|(i, _)| *i),
        }
    }
}

/// A spread budget whose reset has passed is whole again: spreading ends at the reset, not at
/// the next answer (which a spread pacer would wait a long interval for).
fn lift_spread_after_reset(state: &mut State, now: Instant) {
    if state.spread_until.is_some_and(|until| until <= now) {
        state.spread = None;
        state.spread_until = None;
    }
}

fn block(state: &mut State, wait: Duration) {
    let until = Instant::now() + wait;
    state.blocked_until = Some(state.blocked_until.map_or(until, |u| u.max(until)));
}

fn steady_limiter(rate: RequestRate, clock: TokioClock) -> Option<(Duration, Limiter)> {
    let interval = rate.per / rate.requests.get();
    let quota = Quota::with_period(interval)?.allow_burst(rate.requests);
    Some((interval, Limiter::direct_with_clock(quota, clock)))
}

impl fmt::Debug for Pacer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pacer")
            .field("pacing", &self.pacing)
            .field("status", &self.status())
            .finish()
    }
}

/// One [`Pacer`] per credential. Credentials are told apart by a keyed hash, never kept or shown.
pub struct Pacers {
    pacing: Pacing,
    caps: WaitCaps,
    hasher: RandomState,
    by_credential: Mutex<HashMap<u64, Arc<Pacer>>>,
}

impl Pacers {
    pub fn new(pacing: Pacing, caps: WaitCaps) -> Self {
        Self {
            pacing,
            caps,
            hasher: RandomState::new(),
            by_credential: Mutex::new(HashMap::new()),
        }
    }

    /// The pacer of `token` (anonymous requests share one).
    pub fn get(&self, token: Option<&Secret>) -> Arc<Pacer> {
        let key = token.map_or(0, |t| self.hasher.hash_one(t.expose()) | 1);
        self.by_credential
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert_with(|| Arc::new(Pacer::new(self.pacing, self.caps)))
            .clone()
    }
}

impl fmt::Debug for Pacers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let credentials = self
            .by_credential
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        f.debug_struct("Pacers")
            .field("pacing", &self.pacing)
            .field("credentials", &credentials)
            .finish()
    }
}

/// `n` requests per second, for configs written by hand.
pub fn per_second(n: u32) -> Option<RequestRate> {
    NonZeroU32::new(n).map(RequestRate::per_second)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::error::ErrorKind;

    fn pacing(rate: Option<RequestRate>) -> Pacing {
        Pacing {
            rate,
            spread_below: 0.2,
            max_inline_wait: Duration::from_secs(5),
        }
    }

    fn info(limit: f64, remaining: f64, reset_in: i64, now: DateTime<Utc>) -> RateLimitInfo {
        RateLimitInfo {
            limit: Some(limit),
            remaining: Some(remaining),
            reset_at: Some(now + chrono::Duration::seconds(reset_in)),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_rate_allows_its_burst_then_spaces_requests() {
        let pacer = Pacer::new(pacing(per_second(2)), WaitCaps::default());
        let start = Instant::now();
        for _ in 0..6 {
            pacer.acquire().await.unwrap();
        }
        // 2 at once, then one every 500 ms
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn no_figures_and_no_rate_means_no_pacing() {
        let pacer = Pacer::new(pacing(None), WaitCaps::default());
        let start = Instant::now();
        for _ in 0..100 {
            pacer.acquire().await.unwrap();
        }
        pacer.observe(&RateLimitInfo::default(), Utc::now());
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_low_budget_is_spread_until_its_reset() {
        let pacer = Pacer::new(pacing(None), WaitCaps::default());
        let now = Utc::now();
        // plenty left: no pacing
        pacer.observe(&info(5000.0, 4000.0, 3600, now), now);
        assert_eq!(pacer.status().spread_interval, None);
        // 10 left of 100 for 20 s: one every 2 s
        pacer.observe(&info(100.0, 10.0, 20, now), now);
        assert_eq!(pacer.status().spread_interval, Some(Duration::from_secs(2)));
        let start = Instant::now();
        for _ in 0..3 {
            pacer.acquire().await.unwrap();
        }
        assert_eq!(start.elapsed(), Duration::from_secs(4));
        // a new window: spreading lifted
        pacer.observe(&info(100.0, 100.0, 60, now), now);
        assert_eq!(pacer.status().spread_interval, None);
        // no limit reported: spread below 50 requests
        pacer.observe(
            &RateLimitInfo {
                limit: None,
                remaining: Some(30.0),
                reset_at: Some(now + chrono::Duration::seconds(60)),
            },
            now,
        );
        assert_eq!(pacer.status().spread_interval, Some(Duration::from_secs(2)));
    }

    /// Issue 8 item 8: a low budget's spreading must not outlive its window.
    #[tokio::test(start_paused = true)]
    async fn spreading_ends_at_the_reset_without_waiting_for_an_answer() {
        let pacer = Pacer::new(pacing(None), WaitCaps::default());
        let now = Utc::now();
        // 2 left of 40 for 10 s: one every 5 s
        pacer.observe(&info(40.0, 2.0, 10, now), now);
        assert_eq!(pacer.status().spread_interval, Some(Duration::from_secs(5)));
        pacer.acquire().await.unwrap();
        tokio::time::advance(Duration::from_secs(10)).await;
        // the window has reset: a whole budget, requests go out at once
        assert_eq!(pacer.status().spread_interval, None);
        let start = Instant::now();
        for _ in 0..5 {
            pacer.acquire().await.unwrap();
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn an_exhausted_budget_blocks_short_waits_inline_long_ones_defer() {
        let pacer = Pacer::new(pacing(None), WaitCaps::default());
        let now = Utc::now();
        pacer.observe(&info(60.0, 0.0, 3, now), now);
        assert_eq!(pacer.status().blocked_for, Duration::from_secs(3));
        let start = Instant::now();
        pacer.acquire().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(3), "slept inline");

        let now = Utc::now();
        pacer.observe(&info(60.0, 0.0, 600, now), now);
        let err = pacer.acquire().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RateLimited);
        let IntegrationError::RateLimited { until, .. } = err else {
            unreachable!()
        };
        let wait = (until - Utc::now()).num_seconds();
        assert!((598..=600).contains(&wait), "{wait}");
        assert_eq!(start.elapsed(), Duration::from_secs(3), "no sleep");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_blocks_and_the_longest_block_wins() {
        let pacer = Pacer::new(pacing(None), WaitCaps::default());
        pacer.block_for(Duration::from_secs(4));
        pacer.block_for(Duration::from_secs(2));
        assert_eq!(pacer.try_acquire(), Err(Duration::from_secs(4)));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(pacer.try_acquire(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_decades_away_is_capped() {
        let caps = WaitCaps {
            max_wait: Duration::from_secs(3600),
            ..WaitCaps::default()
        };
        let pacer = Pacer::new(pacing(None), caps);
        let now = Utc::now();
        pacer.observe(&info(60.0, 0.0, 60 * 365 * 24 * 3600, now), now);
        assert_eq!(pacer.status().blocked_for, Duration::from_secs(3600));
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                reqwest::header::HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    /// Every announced form, from an answer to the pacer to the sleep on tokio's paused clock:
    /// the next request goes out exactly when the platform said.
    #[tokio::test(start_paused = true)]
    async fn every_announced_wait_is_slept_exactly_on_a_paused_clock() {
        // whole seconds, as dates and epochs are
        let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
        let epoch = |secs: i64| (now.timestamp() + secs).to_string();
        let date =
            |secs: i64| httpdate::fmt_http_date((now + chrono::Duration::seconds(secs)).into());
        let ms = Duration::from_millis;
        // (what, status, headers, body, the wait expected)
        type Case = (
            &'static str,
            u16,
            Vec<(&'static str, String)>,
            &'static str,
            Duration,
        );
        let cases: Vec<Case> = vec![
            (
                "Retry-After seconds",
                429,
                vec![("Retry-After", "3".into())],
                "",
                ms(3000),
            ),
            (
                "Retry-After fraction",
                429,
                vec![("retry-after", "0.5".into())],
                "",
                ms(1000),
            ),
            (
                "Retry-After date",
                429,
                vec![("Retry-After", date(4))],
                "",
                ms(4000),
            ),
            (
                "Retry-After zero",
                429,
                vec![("Retry-After", "0".into())],
                "",
                ms(1000),
            ),
            (
                "Retry-After negative",
                429,
                vec![("Retry-After", "-30".into())],
                "",
                ms(1000),
            ),
            (
                "Retry-After garbage",
                429,
                vec![("Retry-After", "soon".into())],
                "",
                ms(60_000),
            ),
            (
                "GitHub primary 403",
                403,
                vec![
                    ("X-RateLimit-Remaining", "0".into()),
                    ("X-RateLimit-Reset", epoch(5)),
                ],
                r#"{"message": "API rate limit exceeded"}"#,
                ms(5000),
            ),
            (
                "GitHub secondary 403",
                403,
                vec![("retry-after", "2".into())],
                r#"{"message": "You have exceeded a secondary rate limit"}"#,
                ms(2000),
            ),
            (
                "X x-rate-limit-reset on a success",
                200,
                vec![
                    ("x-rate-limit-remaining", "0".into()),
                    ("x-rate-limit-reset", epoch(6)),
                ],
                "{}",
                ms(6000),
            ),
            (
                "Discord reset-after, float remaining",
                200,
                vec![
                    ("X-RateLimit-Remaining", "0.0".into()),
                    ("X-RateLimit-Reset-After", "1.25".into()),
                ],
                "{}",
                ms(1250),
            ),
            (
                "Reddit seconds-from-now reset",
                200,
                vec![
                    ("x-ratelimit-remaining", "0.0".into()),
                    ("x-ratelimit-reset", "7".into()),
                ],
                "{}",
                ms(7000),
            ),
            (
                "Discord body retry_after",
                429,
                vec![],
                r#"{"retry_after": 2.5, "global": false}"#,
                ms(2500),
            ),
            (
                "Stack Exchange backoff",
                200,
                vec![],
                r#"{"items": [], "backoff": 3}"#,
                ms(3000),
            ),
            (
                "longest wins",
                429,
                vec![
                    ("Retry-After", "1".into()),
                    ("X-RateLimit-Remaining", "0".into()),
                    ("X-RateLimit-Reset-After", "4".into()),
                ],
                r#"{"retry_after": 2}"#,
                ms(4000),
            ),
            (
                "budget left: no wait",
                200,
                vec![
                    ("X-RateLimit-Remaining", "4999".into()),
                    ("X-RateLimit-Reset", epoch(3600)),
                ],
                "{}",
                Duration::ZERO,
            ),
        ];
        let pacing = Pacing {
            max_inline_wait: Duration::from_secs(600),
            ..Pacing::default()
        };
        for (name, status, pairs, body, expected) in cases {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let pacer = Pacer::new(pacing, WaitCaps::default());
            let error = pacer.learn(
                "GET /x",
                StatusCode::from_u16(status).unwrap(),
                &headers(&pairs),
                body.as_bytes(),
                now,
            );
            assert_eq!(error.is_some(), status >= 400, "{name}");
            if let Some(error) = error {
                assert_eq!(error.kind(), ErrorKind::RateLimited, "{name}");
            }
            let start = Instant::now();
            pacer.acquire_for("GET /x").await.unwrap();
            assert_eq!(start.elapsed(), expected, "{name}");
        }
    }

    #[test]
    fn credentials_get_their_own_pacer_and_are_never_shown() {
        let pacers = Pacers::new(pacing(None), WaitCaps::default());
        let a = Secret::new("token-aaaaaa");
        let b = Secret::new("token-bbbbbb");
        assert!(Arc::ptr_eq(&pacers.get(Some(&a)), &pacers.get(Some(&a))));
        assert!(!Arc::ptr_eq(&pacers.get(Some(&a)), &pacers.get(Some(&b))));
        assert!(!Arc::ptr_eq(&pacers.get(None), &pacers.get(Some(&a))));
        let shown = format!("{pacers:?} {:?}", pacers.get(Some(&a)));
        assert!(!shown.contains("token-"), "{shown}");
    }
}
