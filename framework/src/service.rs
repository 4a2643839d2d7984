//! The integration contract: one async trait per platform, and the configuration the processor
//! reads from it.

use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::context::{AnyContext, RunContext};
use crate::error::{IntegrationError, SettingsError};
use crate::secret::Credentials;
use crate::settings::{self, Settings};
use crate::stream::{NewStream, Stream, StreamOutcome};

/// One platform. The framework does the rest: settings parsed and checked at connect time,
/// scheduling, leases, pagination bookkeeping, retries, rate-limit deferrals, persistence.
///
/// Hooks are called in this order for a run: `preprocess` (once; what it stores in the pipeline
/// data is persisted with the run), `get_streams` (once, the root streams), `process_stream` for
/// every stream (concurrently, up to [`ServiceConfig::stream_concurrency`]), and `postprocess` once
/// every stream has been processed: after the other streams' outcomes are committed and before
/// the last one's, which ends the run in the same statement with the settings `postprocess` set
/// (should that commit find the run not done after all, `postprocess` runs again at its end).
/// Each hook gets the run's context with the integration's settings as
/// [`IntegrationService::Settings`].
#[async_trait]
pub trait IntegrationService: Send + Sync + 'static {
    /// The integration's settings (and, through [`Settings::CREDENTIALS`], its credentials'
    /// shape): parsed, checked and normalized at connect time. `serde_json::Value` takes any
    /// object.
    type Settings: Settings;

    /// The platform's name, as stored in `integrations.platform` (`github`, `devto`, …).
    fn platform(&self) -> &'static str;

    fn config(&self) -> ServiceConfig {
        ServiceConfig::default()
    }

    async fn preprocess(
        &self,
        _ctx: &mut RunContext<Self::Settings>,
    ) -> Result<(), IntegrationError> {
        Ok(())
    }

    /// The root streams of the run.
    async fn get_streams(
        &self,
        ctx: &RunContext<Self::Settings>,
    ) -> Result<Vec<NewStream>, IntegrationError>;

    /// Fetches what one stream stands for (one page) and says what to write and what comes next.
    async fn process_stream(
        &self,
        stream: &Stream,
        ctx: &RunContext<Self::Settings>,
    ) -> Result<StreamOutcome, IntegrationError>;

    /// Called after a stream produced a next page: `true` stops paging there (a check run that has
    /// reached records older than its window, say). The outcome's records are still written.
    async fn is_processing_finished(
        &self,
        _stream: &Stream,
        _outcome: &StreamOutcome,
        _ctx: &RunContext<Self::Settings>,
    ) -> Result<bool, IntegrationError> {
        Ok(false)
    }

    async fn postprocess(
        &self,
        _ctx: &mut RunContext<Self::Settings>,
    ) -> Result<(), IntegrationError> {
        Ok(())
    }
}

/// An [`IntegrationService`] with its settings type hidden: what the [`crate::Registry`] keeps
/// and the processor calls. Every `IntegrationService` is one.
#[async_trait]
pub trait DynService: Send + Sync + 'static {
    fn platform(&self) -> &'static str;
    fn config(&self) -> ServiceConfig;
    /// Parses, checks and normalizes settings given at connect time (see [`settings::validate`]).
    fn validate_settings(
        &self,
        settings: &Value,
        credentials: &Credentials,
    ) -> Result<Value, SettingsError>;
    /// The credential fields that are not secrets (usernames, account ids).
    fn plain_credential_fields(&self) -> Vec<&'static str>;
    /// The context with the stored settings parsed as the service's settings type.
    fn open(&self, ctx: &RunContext<Value>) -> Result<AnyContext, IntegrationError>;
    /// `preprocess`; the context comes back with what it changed.
    async fn preprocess(&self, ctx: AnyContext) -> Result<AnyContext, IntegrationError>;
    async fn get_streams(&self, ctx: &AnyContext) -> Result<Vec<NewStream>, IntegrationError>;
    async fn process_stream(
        &self,
        stream: &Stream,
        ctx: &AnyContext,
    ) -> Result<StreamOutcome, IntegrationError>;
    async fn is_processing_finished(
        &self,
        stream: &Stream,
        outcome: &StreamOutcome,
        ctx: &AnyContext,
    ) -> Result<bool, IntegrationError>;
    async fn postprocess(&self, ctx: AnyContext) -> Result<AnyContext, IntegrationError>;
    /// The settings a hook set, as stored (`None` when unchanged).
    fn changed_settings(&self, ctx: &AnyContext) -> Result<Option<Value>, IntegrationError>;
}

#[async_trait]
impl<T: IntegrationService> DynService for T {
    fn platform(&self) -> &'static str {
        IntegrationService::platform(self)
    }

    fn config(&self) -> ServiceConfig {
        IntegrationService::config(self)
    }

    fn validate_settings(
        &self,
        settings: &Value,
        credentials: &Credentials,
    ) -> Result<Value, SettingsError> {
        settings::validate_json::<T::Settings>(settings, credentials)
    }

    fn plain_credential_fields(&self) -> Vec<&'static str> {
        settings::plain_fields(<T::Settings as Settings>::CREDENTIALS)
    }

    fn open(&self, ctx: &RunContext<Value>) -> Result<AnyContext, IntegrationError> {
        Ok(ctx.parse::<T::Settings>()?.erase())
    }

    async fn preprocess(&self, ctx: AnyContext) -> Result<AnyContext, IntegrationError> {
        let mut typed = ctx.typed::<T::Settings>()?;
        IntegrationService::preprocess(self, &mut typed).await?;
        Ok(typed.erase())
    }

    async fn get_streams(&self, ctx: &AnyContext) -> Result<Vec<NewStream>, IntegrationError> {
        IntegrationService::get_streams(self, &ctx.typed::<T::Settings>()?).await
    }

    async fn process_stream(
        &self,
        stream: &Stream,
        ctx: &AnyContext,
    ) -> Result<StreamOutcome, IntegrationError> {
        IntegrationService::process_stream(self, stream, &ctx.typed::<T::Settings>()?).await
    }

    async fn is_processing_finished(
        &self,
        stream: &Stream,
        outcome: &StreamOutcome,
        ctx: &AnyContext,
    ) -> Result<bool, IntegrationError> {
        IntegrationService::is_processing_finished(
            self,
            stream,
            outcome,
            &ctx.typed::<T::Settings>()?,
        )
        .await
    }

    async fn postprocess(&self, ctx: AnyContext) -> Result<AnyContext, IntegrationError> {
        let mut typed = ctx.typed::<T::Settings>()?;
        IntegrationService::postprocess(self, &mut typed).await?;
        Ok(typed.erase())
    }

    fn changed_settings(&self, ctx: &AnyContext) -> Result<Option<Value>, IntegrationError> {
        if !ctx.settings_changed() {
            return Ok(None);
        }
        let typed = ctx.typed::<T::Settings>()?;
        serde_json::to_value(typed.settings())
            .map(Some)
            .map_err(|e| IntegrationError::fatal("settings do not serialize").with_source(e))
    }
}

/// How often a platform's integrations are checked, in ticks (minutes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckSchedule {
    /// `ticks_between_checks = -1`: only onboarding and explicit runs.
    Never,
    /// `ticks_between_checks = 0`: every tick.
    EveryTick,
    /// `ticks_between_checks = N`: ticks whose minute index is divisible by N.
    EveryNTicks(NonZeroU32),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "ticks_between_checks must be -1 (never), 0 (every tick) or a positive number of ticks, not {0}"
)]
pub struct InvalidTicksBetweenChecks(pub i64);

impl CheckSchedule {
    /// The classic `ticks_between_checks` form: −1 never, 0 every tick, N every N ticks.
    pub fn from_ticks_between_checks(ticks: i64) -> Result<Self, InvalidTicksBetweenChecks> {
        match ticks {
            -1 => Ok(Self::Never),
            0 => Ok(Self::EveryTick),
            n => u32::try_from(n)
                .ok()
                .and_then(NonZeroU32::new)
                .map(Self::EveryNTicks)
                .ok_or(InvalidTicksBetweenChecks(n)),
        }
    }

    pub fn ticks_between_checks(self) -> i64 {
        match self {
            Self::Never => -1,
            Self::EveryTick => 0,
            Self::EveryNTicks(n) => i64::from(n.get()),
        }
    }

    /// Whether the tick with this minute index (minutes since the Unix epoch) checks the platform.
    pub fn is_due(self, minute_index: i64) -> bool {
        match self {
            Self::Never => false,
            Self::EveryTick => true,
            Self::EveryNTicks(n) => minute_index.rem_euclid(i64::from(n.get())) == 0,
        }
    }

    /// The time between two checks (`None`: never checked).
    pub fn interval(self) -> Option<Duration> {
        match self {
            Self::Never => None,
            Self::EveryTick => Some(Duration::from_secs(60)),
            Self::EveryNTicks(n) => Some(Duration::from_secs(60 * u64::from(n.get()))),
        }
    }
}

/// A budget of work units (streams processed) per window, shared by every worker of a platform.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlobalLimit {
    pub units: u32,
    pub window: Duration,
}

/// Exponential backoff with jitter for retryable failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBackoff {
    /// The wait after the first failure (before jitter).
    pub base: Duration,
    /// No wait is longer than this.
    pub max: Duration,
}

impl RetryBackoff {
    /// The wait after failure number `failures` (1-based): `base · 2^(failures−1)` capped at `max`,
    /// with "equal jitter" (uniform in the upper half) so retries of many streams spread out.
    pub fn delay(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(30);
        let full = self
            .base
            .saturating_mul(1u32 << exponent)
            .min(self.max)
            .max(Duration::from_millis(1));
        let half = full / 2;
        let jitter_ms = fastrand::u64(0..=u64::try_from(half.as_millis()).unwrap_or(u64::MAX));
        half + Duration::from_millis(jitter_ms)
    }
}

/// 60 ticks: the default check interval.
const HOURLY: NonZeroU32 = NonZeroU32::MIN.saturating_add(59);

/// What the processor reads from a service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub check_schedule: CheckSchedule,
    pub global_limit: Option<GlobalLimit>,
    /// Onboarding runs may use `units × factor` of the global limit (below 1 keeps room for
    /// checks; above 1 lets onboarding use more).
    pub onboarding_limit_modifier_factor: f64,
    /// Failures of one stream (or of a run-level hook) retried before it ends in `error`.
    pub max_retries: u32,
    pub retry_backoff: RetryBackoff,
    /// Streams of one run processed at once.
    pub stream_concurrency: usize,
    /// A `process_stream` call that takes longer is abandoned and counted as a retryable failure.
    pub stream_timeout: Duration,
    /// The same for `preprocess`, `get_streams` and `postprocess`.
    pub hook_timeout: Duration,
    /// A pagination chain longer than this ends its stream in `error` (an API that never ends).
    pub max_pages_per_stream: u32,
    /// A check reads each source from when the last run that read it whole started, minus this:
    /// records a platform indexes late, or stamps with a skewed clock, are not missed (what is
    /// read twice is a no-op). See [`RunContext::window`].
    pub check_overlap: Duration,
    /// An outcome that would give its run more streams than this ends its stream in `error`
    /// (checked before the commit: concurrent streams may pass it by a few).
    pub max_streams_per_run: u64,
    /// An outcome with more records (members and activities) than this ends its stream in
    /// `error`: a page that large is a platform misbehaving.
    pub max_records_per_outcome: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            check_schedule: CheckSchedule::EveryNTicks(HOURLY),
            global_limit: None,
            onboarding_limit_modifier_factor: 1.0,
            max_retries: 5,
            retry_backoff: RetryBackoff {
                base: Duration::from_secs(2),
                max: Duration::from_secs(600),
            },
            stream_concurrency: 4,
            stream_timeout: Duration::from_secs(300),
            hook_timeout: Duration::from_secs(300),
            max_pages_per_stream: 10_000,
            check_overlap: Duration::from_secs(600),
            max_streams_per_run: 1_000_000,
            max_records_per_outcome: 100_000,
        }
    }
}

impl ServiceConfig {
    /// The units of the global limit a run may use: onboarding runs scale it by their factor.
    pub fn effective_limit(&self, onboarding: bool) -> Option<(u64, Duration)> {
        self.global_limit.map(|limit| {
            let units = if onboarding {
                (f64::from(limit.units) * self.onboarding_limit_modifier_factor).floor() as u64
            } else {
                u64::from(limit.units)
            };
            (units.max(1), limit.window)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_between_checks_forms() {
        assert_eq!(
            CheckSchedule::from_ticks_between_checks(-1),
            Ok(CheckSchedule::Never)
        );
        assert_eq!(
            CheckSchedule::from_ticks_between_checks(0),
            Ok(CheckSchedule::EveryTick)
        );
        let every5 = CheckSchedule::from_ticks_between_checks(5).expect("5 is valid");
        assert_eq!(every5.ticks_between_checks(), 5);
        assert!(every5.is_due(10) && !every5.is_due(11) && every5.is_due(0));
        assert!(CheckSchedule::EveryTick.is_due(7) && !CheckSchedule::Never.is_due(0));
        assert_eq!(
            CheckSchedule::from_ticks_between_checks(-2),
            Err(InvalidTicksBetweenChecks(-2))
        );
        assert!(CheckSchedule::from_ticks_between_checks(i64::from(u32::MAX) + 1).is_err());
    }

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_cap() {
        let backoff = RetryBackoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(60),
        };
        for _ in 0..100 {
            let first = backoff.delay(1);
            assert!(first >= Duration::from_secs(1) && first <= Duration::from_secs(2));
            let third = backoff.delay(3);
            assert!(third >= Duration::from_secs(4) && third <= Duration::from_secs(8));
            let capped = backoff.delay(40);
            assert!(capped >= Duration::from_secs(30) && capped <= Duration::from_secs(60));
        }
    }

    #[test]
    fn onboarding_scales_the_global_limit() {
        let config = ServiceConfig {
            global_limit: Some(GlobalLimit {
                units: 100,
                window: Duration::from_secs(3600),
            }),
            onboarding_limit_modifier_factor: 0.75,
            ..ServiceConfig::default()
        };
        assert_eq!(
            config.effective_limit(false),
            Some((100, Duration::from_secs(3600)))
        );
        assert_eq!(
            config.effective_limit(true),
            Some((75, Duration::from_secs(3600)))
        );
        assert_eq!(ServiceConfig::default().effective_limit(true), None);
    }
}
