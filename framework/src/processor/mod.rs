//! The IntegrationProcessor: leases a run, calls the integration's hooks in order, commits each
//! stream's outcome in one transaction, and ends, defers or releases the run.

mod hooks;
mod lease;
mod scrub;
mod streams;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::context::{AnyContext, HttpPool, RunContext, RunInfo};
use crate::db;
use crate::error::{ErrorKind, ErrorRecord};
use crate::events;
use crate::registry::Registry;
use crate::service::{DynService, ServiceConfig};
use crate::store::claims::ClaimedRun;
use crate::store::integrations::Integration;
use crate::store::run_end::RunEnd;
use crate::store::runs::{Run, RunState};
use crate::store::{self, Lease, StoreError};
use hooks::HookFailure;
use lease::LeaseKeeper;
use streams::{FirstClaim, LoopEnd, StreamLoop};

/// How a worker processes runs.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// Names this worker in leases.
    pub worker_id: String,
    /// A lease not heartbeated for this long is expired: another worker may take the run over.
    pub lease_duration: Duration,
    pub heartbeat_interval: Duration,
    /// Retry backoffs up to this long are waited out in place; longer ones defer the run.
    pub max_inline_wait: Duration,
    /// After shutdown is requested, in-flight streams get this long to commit; the rest are put
    /// back, unharmed, for the next worker.
    pub shutdown_grace: Duration,
    /// No deferral is longer than this, whatever a platform asked for.
    pub max_deferral: Duration,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            worker_id: default_worker_id(),
            lease_duration: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(15),
            max_inline_wait: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(20),
            max_deferral: Duration::from_secs(24 * 3600),
        }
    }
}

/// `host-pid-random`: unique per process.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

/// How processing a run ended for this worker.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// Every stream processed, `postprocess` done.
    Processed,
    /// The run ended in `error`; `message` says why.
    Failed { message: String },
    /// Progress committed; the run waits until `until` and any worker resumes it then.
    Delayed {
        until: DateTime<Utc>,
        reason: String,
    },
    /// Shutdown: in-flight streams committed, the run handed back for another worker at once.
    Released,
    /// Another worker took the run over, or an operator cancelled it: this worker stopped writing.
    LeaseLost,
    /// The run was not claimable (another worker holds it, it is waiting, or it has ended).
    NotClaimable {
        state: RunState,
        delayed_until: Option<DateTime<Utc>>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct IntegrationProcessor {
    pool: PgPool,
    registry: Arc<Registry>,
    config: ProcessorConfig,
}

impl IntegrationProcessor {
    pub fn new(pool: PgPool, registry: Arc<Registry>, config: ProcessorConfig) -> Self {
        Self {
            pool,
            registry,
            config,
        }
    }

    pub fn config(&self) -> &ProcessorConfig {
        &self.config
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Claims the run and processes it until it ends, is deferred, is released on `shutdown`, or
    /// its lease is lost.
    ///
    /// An outage of the database while the run is processed costs no stream a retry: the worker
    /// waits until the database answers, hands the run back (its streams in flight pending again,
    /// uncharged) and claims it again at once. Only when `shutdown` comes first, or the database
    /// is unreachable at the claim, is the error returned: the run then stays leased until its
    /// lease expires and the rescuer hands it to a worker.
    pub async fn process_run(
        &self,
        run_id: Uuid,
        shutdown: &CancellationToken,
    ) -> Result<RunOutcome, ProcessorError> {
        loop {
            let claimed = store::claims::claim(
                &self.pool,
                run_id,
                &self.config.worker_id,
                self.config.lease_duration,
            )
            .await?;
            let Some(claimed) = claimed else {
                let run = store::runs::get(&self.pool, run_id).await?;
                events::run_not_claimable(&run);
                return Ok(RunOutcome::NotClaimable {
                    state: run.state,
                    delayed_until: run.delayed_until,
                });
            };
            let run = &claimed.run;
            events::run_claimed(run);
            let lease = run.lease();
            let keeper = LeaseKeeper::start(
                self.pool.clone(),
                lease.clone(),
                self.config.lease_duration,
                self.config.heartbeat_interval,
            );
            // one span per claim of the run (exported through OpenTelemetry when configured)
            let span = tracing::info_span!(
                "run", run_id = %run.id, integration_id = %run.integration_id, attempt = run.attempt,
                onboarding = run.onboarding, platform = tracing::field::Empty
            );
            let result = tracing::Instrument::instrument(
                self.drive(claimed, &lease, keeper.lost(), shutdown),
                span,
            )
            .await;
            let unreachable = keeper.gave_up_unreachable();
            keeper.stop().await;
            let outage = match result {
                Err(ProcessorError::Store(e)) if e.is_unavailable() => e,
                Ok(RunOutcome::LeaseLost) if unreachable => {
                    StoreError::Database(sqlx::Error::PoolTimedOut)
                }
                Err(ProcessorError::Store(e)) if e.is_lease_lost() => {
                    events::lease_lost(&lease);
                    return Ok(RunOutcome::LeaseLost);
                }
                other => return other,
            };
            events::run_interrupted(&lease, &outage);
            let Some(waited) = db::wait_until_reachable(&self.pool, shutdown).await else {
                return Err(outage.into());
            };
            match store::runs::interrupt(&self.pool, &lease, "interrupted by a database outage")
                .await
            {
                Ok(put_back) => events::run_resumes_after_outage(&lease, put_back, waited),
                Err(e) if e.is_lease_lost() => {
                    events::lease_lost(&lease);
                    return Ok(RunOutcome::LeaseLost);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn drive(
        &self,
        claimed: ClaimedRun,
        lease: &Lease,
        lost: CancellationToken,
        shutdown: &CancellationToken,
    ) -> Result<RunOutcome, ProcessorError> {
        let ClaimedRun {
            run,
            integration,
            checkpoints,
        } = claimed;
        let run = &run;
        tracing::Span::current().record("platform", integration.platform.as_str());
        let service = match self.registry.get(&integration.platform) {
            Ok(service) => service,
            Err(unknown) => {
                let record = framework_error("processor", unknown.to_string());
                return self.fail(lease, &record).await;
            }
        };
        let config = service.config();
        if run.attempt > 1 {
            let abandoned = framework_error(
                "process_stream",
                "the worker processing this stream stopped before committing it (its lease expired)",
            )
            .with_kind(ErrorKind::Abandoned);
            let rescued =
                store::streams::rescue_abandoned(&self.pool, lease, config.max_retries, &abandoned)
                    .await?;
            if rescued.charged > 0 {
                events::abandoned_streams_rescued(lease, rescued.charged);
            }
            if rescued.cut_off_by_restart > 0 {
                events::streams_cut_off_by_restart(lease, rescued.cut_off_by_restart);
            }
        }

        let credentials = integration
            .credentials
            .clone()
            .with_plain_fields(service.plain_credential_fields());
        let raw = self.run_context(&integration, run, &config, checkpoints, credentials.clone());
        let mut ctx = match service.open(&raw) {
            Ok(ctx) => ctx,
            Err(e) => {
                let failure = HookFailure::Error(e);
                return self
                    .hook_failed(lease, run, &config, &integration, "settings", failure)
                    .await;
            }
        };
        // the roots claimed with the preprocessing's commit: the stream loop starts with them
        let mut first_claim = None;
        if !run.preprocessed {
            match preprocess(&service, ctx, &config).await {
                Ok(mut done) => {
                    ctx = done.ctx;
                    // what the hooks wrote is stored without the secrets it may carry
                    scrub::roots(&credentials, &mut done.roots);
                    let pipeline_data = scrub::value(&credentials, ctx.pipeline_data());
                    let settings = done.settings.map(|s| scrub::value(&credentials, &s));
                    let claim = config.stream_concurrency.max(1);
                    let saved = store::runs::save_preprocessed(
                        &self.pool,
                        lease,
                        &pipeline_data,
                        settings.as_ref(),
                        &done.roots,
                        claim,
                    )
                    .await;
                    match saved {
                        Ok((_, claimed)) => {
                            first_claim = Some(FirstClaim {
                                claimed,
                                asked: claim,
                            })
                        }
                        Err(e) => {
                            return self
                                .unstorable_or(lease, "get_streams", e, &credentials)
                                .await;
                        }
                    }
                }
                Err((hook, failure)) => {
                    return self
                        .hook_failed(lease, run, &config, &integration, hook, failure)
                        .await;
                }
            }
        }

        let ctx = Arc::new(ctx);
        let end = StreamLoop {
            pool: &self.pool,
            lease,
            service: service.clone(),
            ctx: ctx.clone(),
            service_config: &config,
            processor_config: &self.config,
            lost,
            shutdown,
            first_claim,
        }
        .run()
        .await?;
        let (errored, postprocess_failed) = match end {
            LoopEnd::AllFinal {
                errored,
                postprocess_failed,
            } => (errored, postprocess_failed),
            LoopEnd::Finished(figures) => {
                // the last stream's commit ended the run, `postprocess` done before it
                events::run_finished_with(run.id, RunState::Processed, &figures);
                return Ok(RunOutcome::Processed);
            }
            LoopEnd::Deferred {
                until,
                reason,
                budget,
            } => return self.defer(lease, until, &reason, budget.as_ref()).await,
            LoopEnd::Stopped => {
                store::runs::defer(
                    &self.pool,
                    lease,
                    crate::clock::now(),
                    "released by a worker shutting down",
                    None,
                )
                .await?;
                events::run_released(lease.run_id);
                return Ok(RunOutcome::Released);
            }
            LoopEnd::LeaseLost => return Ok(RunOutcome::LeaseLost),
        };

        if errored > 0 {
            let record = streams_failed_error(&self.pool, run.id, errored).await?;
            return self.fail(lease, &record).await;
        }
        let hook = match postprocess_failed {
            // the last stream's task ran it before its commit
            Some(failure) => Err(failure),
            None => postprocess(&service, Arc::unwrap_or_clone(ctx), &config).await,
        };
        match hook {
            Ok(settings) => {
                let finished = store::run_end::finish(
                    &self.pool,
                    lease,
                    RunEnd::Processed {
                        settings: settings.as_ref(),
                    },
                )
                .await;
                match finished {
                    Ok(finished) => {
                        events::run_finished(&finished);
                        Ok(RunOutcome::Processed)
                    }
                    Err(e) => {
                        self.unstorable_or(lease, "postprocess", e, &credentials)
                            .await
                    }
                }
            }
            Err(failure) => {
                self.hook_failed(lease, run, &config, &integration, "postprocess", failure)
                    .await
            }
        }
    }

    /// The context of a run as the store holds it (settings not yet parsed).
    fn run_context(
        &self,
        integration: &Integration,
        run: &Run,
        config: &ServiceConfig,
        checkpoints: std::collections::HashMap<String, DateTime<Utc>>,
        credentials: crate::secret::Credentials,
    ) -> RunContext {
        RunContext::new(
            RunInfo {
                integration_id: integration.id,
                tenant_id: integration.tenant_id,
                platform: integration.platform.clone(),
                run_id: run.id,
                onboarding: run.onboarding,
                credentials,
                last_processed_at: integration.last_processed_at,
                checkpoints,
                check_overlap: config.check_overlap,
                http: HttpPool::new(self.registry.http().clone(), self.config.max_inline_wait),
            },
            integration.settings.clone(),
            run.pipeline_data.clone(),
        )
    }

    /// A run-level hook failed: defer (rate limit, or a retry with backoff) or end the run.
    async fn hook_failed(
        &self,
        lease: &Lease,
        run: &Run,
        config: &ServiceConfig,
        integration: &Integration,
        hook: &str,
        failure: HookFailure,
    ) -> Result<RunOutcome, ProcessorError> {
        if let Some(until) = failure.rate_limited_until() {
            crate::telemetry::rate_limit_deferral(&integration.platform);
            return self
                .defer(
                    lease,
                    until,
                    &format!("rate limited in {hook}"),
                    failure.rate_limited_budget(),
                )
                .await;
        }
        let failures = u32::try_from(run.retries).unwrap_or(0).saturating_add(1);
        let credentials = integration.credentials.clone().with_plain_fields(
            self.registry
                .get(&integration.platform)
                .map(|s| s.plain_credential_fields())
                .unwrap_or_default(),
        );
        let record = failure.record(hook, failures, &credentials);
        if failure.is_retryable() && failures <= config.max_retries {
            let until = crate::clock::now() + to_chrono(config.retry_backoff.delay(failures));
            store::runs::defer(
                &self.pool,
                lease,
                until,
                &format!("retrying {hook}"),
                Some(&record),
            )
            .await?;
            events::hook_retry_scheduled(lease.run_id, &record, until);
            return Ok(RunOutcome::Delayed {
                until,
                reason: format!("retrying {hook}"),
            });
        }
        self.fail(lease, &record).await
    }

    /// A run-level write failed: what the database can never store ends the run in `error` at
    /// once (trying again would fail the same way); anything else is returned.
    async fn unstorable_or(
        &self,
        lease: &Lease,
        hook: &str,
        error: StoreError,
        credentials: &crate::secret::Credentials,
    ) -> Result<RunOutcome, ProcessorError> {
        match error.unstorable() {
            Some(reason) => {
                let record = framework_error(
                    hook,
                    credentials.scrub(&format!(
                        "what `{hook}` produced cannot be stored: {reason}"
                    )),
                );
                self.fail(lease, &record).await
            }
            None => Err(error.into()),
        }
    }

    /// Defers the run; `budget`: the credential's budget a rate limit waits on.
    async fn defer(
        &self,
        lease: &Lease,
        until: DateTime<Utc>,
        reason: &str,
        budget: Option<&crate::http::BudgetKey>,
    ) -> Result<RunOutcome, ProcessorError> {
        let until = until
            .max(crate::clock::now())
            .min(crate::clock::now() + to_chrono(self.config.max_deferral));
        store::runs::defer_waiting_on(&self.pool, lease, until, reason, None, budget).await?;
        events::run_deferred(lease.run_id, until, reason);
        Ok(RunOutcome::Delayed {
            until,
            reason: reason.to_owned(),
        })
    }

    async fn fail(
        &self,
        lease: &Lease,
        record: &ErrorRecord,
    ) -> Result<RunOutcome, ProcessorError> {
        let run =
            store::run_end::finish(&self.pool, lease, RunEnd::Failed { error: record }).await?;
        events::run_failed(run.id, record);
        Ok(RunOutcome::Failed {
            message: record.message.clone(),
        })
    }
}

/// What `preprocess` and `get_streams` produced.
struct Preprocessed {
    ctx: AnyContext,
    /// The settings `preprocess` set, as stored.
    settings: Option<serde_json::Value>,
    roots: Vec<crate::stream::NewStream>,
}

/// `preprocess`, then `get_streams`; on failure, which hook failed and how.
async fn preprocess(
    service: &Arc<dyn DynService>,
    ctx: AnyContext,
    config: &ServiceConfig,
) -> Result<Preprocessed, (&'static str, HookFailure)> {
    let platform = service.platform();
    let svc = service.clone();
    let (ctx, settings) = hooks::call(
        config.hook_timeout,
        crate::telemetry::for_platform(platform.to_owned(), async move {
            let ctx = svc.preprocess(ctx).await?;
            let settings = svc.changed_settings(&ctx)?;
            Ok((ctx, settings))
        }),
    )
    .await
    .map_err(|f| ("preprocess", f))?;
    let svc = service.clone();
    hooks::call(
        config.hook_timeout,
        crate::telemetry::for_platform(platform.to_owned(), async move {
            let roots = svc.get_streams(&ctx).await?;
            Ok(Preprocessed {
                ctx,
                settings,
                roots,
            })
        }),
    )
    .await
    .map_err(|f| ("get_streams", f))
}

/// `postprocess`; the settings it set, as stored (secrets scrubbed), or how it failed.
async fn postprocess(
    service: &Arc<dyn DynService>,
    ctx: AnyContext,
    config: &ServiceConfig,
) -> Result<Option<serde_json::Value>, HookFailure> {
    let service = service.clone();
    let platform = service.platform().to_owned();
    let credentials = ctx.credentials().clone();
    let settings = hooks::call(
        config.hook_timeout,
        crate::telemetry::for_platform(platform, async move {
            let ctx = service.postprocess(ctx).await?;
            service.changed_settings(&ctx)
        }),
    )
    .await?;
    Ok(settings.map(|s| scrub::value(&credentials, &s)))
}

async fn streams_failed_error(
    pool: &PgPool,
    run_id: Uuid,
    errored: i64,
) -> Result<ErrorRecord, StoreError> {
    let first = store::streams::first_errored(pool, run_id).await?;
    let (kind, detail, mut chain) = match first
        .as_ref()
        .and_then(|s| s.error_record().map(|e| (s, e)))
    {
        Some((stream, error)) => (
            error.kind,
            format!("first: `{}`: {}", stream.identifier, error.message),
            error.chain,
        ),
        None => (ErrorKind::Fatal, String::new(), Vec::new()),
    };
    let message = format!("{errored} stream(s) ended in error; {detail}");
    chain.insert(0, message.clone());
    Ok(ErrorRecord {
        kind,
        hook: "process_stream".to_owned(),
        message,
        chain,
        failures: 1,
        at: crate::clock::now(),
    })
}

fn framework_error(hook: &str, message: impl Into<String>) -> ErrorRecord {
    let message = message.into();
    ErrorRecord {
        kind: ErrorKind::Fatal,
        hook: hook.to_owned(),
        chain: vec![message.clone()],
        message,
        failures: 1,
        at: crate::clock::now(),
    }
}

impl ErrorRecord {
    fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }
}

pub(crate) fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
