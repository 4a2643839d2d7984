//! The stream loop of one run: claims due streams, processes up to the configured number at once
//! (each committed in its own transaction), and decides when the run is done, deferred or
//! stopped.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

mod commit;

use super::hooks::{self, HookFailure};
use super::{ProcessorConfig, ProcessorError, to_chrono};
use crate::context::AnyContext;
use crate::events;
use crate::http::BudgetKey;
use crate::service::{DynService, ServiceConfig};
use crate::store::limits::{self, LimitDecision};
use crate::store::outcomes::{self, FinishRun, FinishedRun, RunSummary};
use crate::store::records::RecordScope;
use crate::store::streams::{self as stream_store, PendingWait, StreamRow};
use crate::store::{Lease, StoreError};
use crate::stream::Stream;
use crate::telemetry;

pub(super) enum LoopEnd {
    /// No stream is pending or processing; `errored` streams ended in `error`.
    /// `postprocess_failed`: the last stream's task ran `postprocess` before its commit and it
    /// failed; that failure stands for the run's `postprocess`.
    AllFinal {
        errored: i64,
        postprocess_failed: Option<HookFailure>,
    },
    /// The last stream's commit ended the run `processed` (`postprocess` run before it).
    Finished(FinishedRun),
    /// Everything in flight committed; the run must wait (on `budget`, for a rate limit the HTTP
    /// toolkit named).
    Deferred {
        until: DateTime<Utc>,
        reason: String,
        budget: Option<BudgetKey>,
    },
    /// Shutdown requested; everything in flight committed or was put back.
    Stopped,
    LeaseLost,
}

/// The streams claimed in the commit of the run's preprocessing, and how many were asked for.
pub(super) struct FirstClaim {
    pub claimed: Vec<StreamRow>,
    pub asked: usize,
}

/// What a stream task ended with.
struct StreamDone {
    /// The run must be deferred.
    deferral: Option<Deferral>,
    /// How the run's streams stood at this stream's commit, when nothing else was due to claim.
    summary: Option<RunSummary>,
    /// The commit ended the run.
    finished: Option<FinishedRun>,
    /// This task ran `postprocess` (it was the last), and its commit did not end the run.
    postprocess_failed: Option<HookFailure>,
}

/// A request to defer the run; the latest wins.
#[derive(Debug, Clone)]
struct Deferral {
    until: DateTime<Utc>,
    reason: String,
    budget: Option<BudgetKey>,
}

fn merge(current: Option<Deferral>, new: Deferral) -> Option<Deferral> {
    match current {
        Some(d) if d.until >= new.until => Some(d),
        _ => Some(new),
    }
}

pub(super) struct StreamLoop<'a> {
    pub pool: &'a PgPool,
    pub lease: &'a Lease,
    pub service: Arc<dyn DynService>,
    pub ctx: Arc<AnyContext>,
    pub service_config: &'a ServiceConfig,
    pub processor_config: &'a ProcessorConfig,
    pub lost: CancellationToken,
    pub shutdown: &'a CancellationToken,
    pub first_claim: Option<FirstClaim>,
}

/// What one stream task needs, shared by all of a run's stream tasks.
struct Shared {
    pool: PgPool,
    lease: Lease,
    service: Arc<dyn DynService>,
    ctx: Arc<AnyContext>,
    config: ServiceConfig,
    scope: RecordScope,
    /// The loop's last claim found fewer due streams than it asked for, and none is waiting to
    /// start: the run is near its end, and each commit says how the run's streams stand (the
    /// last one saves the processor asking; a run's few open streams are counted by index).
    nothing_due: AtomicBool,
    /// Stream tasks whose hooks have not returned yet.
    hooks_running: AtomicUsize,
    /// Stream tasks past their hooks whose commit has not ended yet (the last task waits for
    /// them, see [`last_ends_run`]).
    committing: watch::Sender<usize>,
    /// Since the loop's last claim, a stream added streams or pages, asked to sleep, or had its
    /// claim undone: the last task does not try to end the run (the loop claims what is due, or
    /// defers the run, and asks how the run's streams stand).
    spoiled: AtomicBool,
    /// A stream of this loop failed (in `error`, or pending a retry), or the run was preprocessed
    /// by an earlier attempt (its streams' earlier ends are not known here): the same, for good.
    failed: AtomicBool,
}

impl Shared {
    fn spoil(&self) {
        self.spoiled.store(true, Ordering::SeqCst);
    }

    fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }
}

/// Counts a task in [`Shared::committing`] until dropped.
struct Committing<'a>(&'a watch::Sender<usize>);

impl<'a> Committing<'a> {
    fn start(committing: &'a watch::Sender<usize>) -> Self {
        committing.send_modify(|n| *n += 1);
        Self(committing)
    }
}

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl StreamLoop<'_> {
    /// `run` (as read now) is still held by this loop's attempt.
    fn holds(&self, run: &crate::store::runs::Run) -> bool {
        run.attempt == self.lease.attempt && run.state == crate::store::runs::RunState::Processing
    }

    pub(super) async fn run(mut self) -> Result<LoopEnd, ProcessorError> {
        let shared = Arc::new(Shared {
            pool: self.pool.clone(),
            lease: self.lease.clone(),
            service: self.service.clone(),
            ctx: self.ctx.clone(),
            config: self.service_config.clone(),
            scope: RecordScope {
                tenant_id: self.ctx.tenant_id(),
                platform: self.ctx.platform().to_owned(),
                integration_id: self.ctx.integration_id(),
            },
            nothing_due: AtomicBool::new(false),
            hooks_running: AtomicUsize::new(0),
            committing: watch::Sender::new(0),
            spoiled: AtomicBool::new(false),
            failed: AtomicBool::new(self.first_claim.is_none()),
        });
        let concurrency = self.service_config.stream_concurrency.max(1);
        let limit = self
            .service_config
            .effective_limit(self.ctx.is_onboarding());
        let limit_key = format!("platform:{}", self.ctx.platform());
        let mut in_flight: JoinSet<Result<StreamDone, StoreError>> = JoinSet::new();
        let mut in_flight_ids: HashMap<tokio::task::Id, Uuid> = HashMap::new();
        let mut deferral: Option<Deferral> = None;
        let mut buffer: VecDeque<StreamRow> = VecDeque::new();
        // the last claim found fewer than it asked for: no use claiming again until a stream
        // ends (its commit may add streams) or a retry backoff ends
        let mut exhausted = false;
        if let Some(first) = self.first_claim.take() {
            exhausted = first.claimed.len() < first.asked;
            buffer.extend(first.claimed);
        }
        // a conclusive summary of a commit since the last claim, if one came
        let mut settled: Option<RunSummary> = None;
        // concurrent commits since the last claim that each found nothing pending nor failed
        let mut quiet = Quiet::default();
        // the last stream's task ran `postprocess`, and it failed
        let mut postprocess_failed = None;
        let grace = tokio::time::sleep(self.processor_config.shutdown_grace);
        tokio::pin!(grace);
        let mut grace_started = false;

        loop {
            if self.lost.is_cancelled() {
                in_flight.abort_all();
                return Ok(LoopEnd::LeaseLost);
            }
            let stopping = self.shutdown.is_cancelled();
            if stopping && !grace_started {
                grace
                    .as_mut()
                    .reset(tokio::time::Instant::now() + self.processor_config.shutdown_grace);
                grace_started = true;
            }

            if deferral.is_none() && !stopping {
                let mut fresh = false;
                while in_flight.len() < concurrency {
                    // as many streams are claimed as there are free slots, in one statement,
                    // and all of them start now: a worker that dies leaves in `processing` only
                    // streams that ran (and only those are charged a retry)
                    if buffer.is_empty() {
                        if exhausted {
                            break;
                        }
                        let free = concurrency - in_flight.len();
                        let claimed = stream_store::claim_due(self.pool, self.lease, free).await?;
                        exhausted = claimed.len() < free;
                        if !claimed.is_empty() {
                            settled = None;
                            quiet = Quiet::default();
                            postprocess_failed = None;
                            fresh = true;
                        }
                        buffer.extend(claimed);
                    }
                    let Some(row) = buffer.pop_front() else { break };
                    if let Some((units, window)) = limit
                        && let LimitDecision::Exhausted { reset_at } =
                            limits::try_acquire(self.pool, &limit_key, units, window).await?
                    {
                        deferral = merge(
                            deferral,
                            Deferral {
                                until: reset_at,
                                reason: format!(
                                    "global limit of {units} per {window:?} reached for {}",
                                    self.ctx.platform()
                                ),
                                budget: None,
                            },
                        );
                        buffer.push_front(row);
                        break;
                    }
                    let stream_id = row.id;
                    // counted before `spoiled` is cleared below: a task deciding whether it is
                    // the last sees one or the other
                    shared.hooks_running.fetch_add(1, Ordering::SeqCst);
                    let span = tracing::info_span!(
                        "stream", stream = %row.identifier, stream_id = %row.id,
                        run_id = %self.lease.run_id, platform = self.ctx.platform()
                    );
                    let handle = in_flight.spawn(tracing::Instrument::instrument(
                        process_one(shared.clone(), row),
                        span,
                    ));
                    in_flight_ids.insert(handle.id(), stream_id);
                }
                shared
                    .nothing_due
                    .store(exhausted && buffer.is_empty(), Ordering::SeqCst);
                if fresh {
                    // what spoiled it is claimed now (new streams, pages, claims undone)
                    shared.spoiled.store(false, Ordering::SeqCst);
                }
            }
            if (deferral.is_some() || stopping) && !buffer.is_empty() {
                // claimed but never started: back to pending, untouched
                let unstarted: Vec<Uuid> = buffer.drain(..).map(|r| r.id).collect();
                stream_store::unclaim(self.pool, self.lease, &unstarted).await?;
            }

            if in_flight.is_empty() {
                if let Some(d) = deferral {
                    return Ok(LoopEnd::Deferred {
                        until: d.until,
                        reason: d.reason,
                        budget: d.budget,
                    });
                }
                if stopping {
                    return Ok(LoopEnd::Stopped);
                }
                // the last stream's commit said how the run stands, or it is asked now
                let summary = match (settled.take(), quiet.take()) {
                    (Some(summary), _) | (None, Some(summary)) if buffer.is_empty() => summary,
                    _ => outcomes::summary(self.pool, self.lease.run_id).await?,
                };
                exhausted = false;
                match summary.pending_wait() {
                    PendingWait::None => {
                        return Ok(LoopEnd::AllFinal {
                            errored: summary.errored,
                            postprocess_failed,
                        });
                    }
                    PendingWait::DueNow => continue,
                    PendingWait::DueAt(at) => {
                        let wait = (at - crate::clock::now()).to_std().unwrap_or_default();
                        if wait > self.processor_config.max_inline_wait {
                            return Ok(LoopEnd::Deferred {
                                until: at,
                                reason: "waiting for a stream's retry backoff".to_owned(),
                                budget: None,
                            });
                        }
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = self.shutdown.cancelled() => {}
                            () = self.lost.cancelled() => {}
                        }
                        continue;
                    }
                }
            }

            tokio::select! {
                joined = in_flight.join_next_with_id() => {
                    let Some(joined) = joined else { continue };
                    match joined {
                        Ok((id, result)) => {
                            let stream_id = in_flight_ids.remove(&id);
                            match result {
                                Ok(done) => {
                                    if let Some(figures) = done.finished {
                                        in_flight.abort_all();
                                        return Ok(LoopEnd::Finished(figures));
                                    }
                                    if let Some(failure) = done.postprocess_failed {
                                        postprocess_failed = Some(failure);
                                    }
                                    if let Some(d) = done.deferral {
                                        deferral = merge(deferral, d);
                                    }
                                    // its commit may have added streams, or said none is due
                                    // (a later commit that adds some says so in its own)
                                    exhausted = done.summary.is_some_and(|s| !s.due_now);
                                    quiet.add(done.summary.as_ref());
                                    if let Some(s) = done.summary.filter(RunSummary::is_conclusive) {
                                        settled = Some(s);
                                    }
                                }
                                Err(e) if e.is_lease_lost() => {
                                    // who holds the run now says why: another attempt, or none
                                    let now = crate::store::runs::get(self.pool, self.lease.run_id)
                                        .await
                                        .ok();
                                    if now.as_ref().is_some_and(|run| self.holds(run)) {
                                        // the run is still this attempt's: only the stream's
                                        // claim is gone (written without waiting for its flush,
                                        // a crash of the database undid it). Nothing of its
                                        // outcome was written; it is pending and claimed anew.
                                        events::stream_claim_undone(self.lease, stream_id);
                                        shared.spoil();
                                        exhausted = false;
                                        settled = None;
                                        quiet.add(None);
                                        continue;
                                    }
                                    in_flight.abort_all();
                                    events::stream_write_lease_lost(self.lease, stream_id, now.as_ref());
                                    return Ok(LoopEnd::LeaseLost);
                                }
                                Err(e) => {
                                    in_flight.abort_all();
                                    return Err(e.into());
                                }
                            }
                        }
                        Err(join) => {
                            // `process_one` catches the integration's panics; reaching this is a
                            // bug of the framework's own: leave the stream to the lease rescue
                            in_flight.abort_all();
                            return Err(StoreError::Refused(format!("stream task failed: {join}")).into());
                        }
                    }
                }
                () = self.lost.cancelled() => {
                    in_flight.abort_all();
                    return Ok(LoopEnd::LeaseLost);
                }
                // wake up to start the grace period and stop claiming
                () = self.shutdown.cancelled(), if !grace_started => {}
                () = &mut grace, if grace_started => {
                    // grace is over: abandon what is still running and put it back untouched
                    in_flight.abort_all();
                    while in_flight.join_next().await.is_some() {}
                    let ids: Vec<Uuid> = in_flight_ids.drain().map(|(_, id)| id).collect();
                    stream_store::unclaim(self.pool, self.lease, &ids).await?;
                    return Ok(LoopEnd::Stopped);
                }
            }
        }
    }
}

/// The streams that ended since the last claim, when each of them committed with a summary that
/// found no stream pending and none in `error`, only streams processing (or none): those were this
/// loop's own (the run's lease fences every other writer), and when the last of them has ended
/// too, every stream is final and none failed, though no single commit could see it (two
/// concurrent commits each saw the other still processing). Anything else that ends a stream (no
/// summary, a failure, a claim undone) spoils it until the next claim: the run is then asked.
#[derive(Debug, Default)]
struct Quiet {
    last: Option<RunSummary>,
    spoiled: bool,
}

impl Quiet {
    fn add(&mut self, summary: Option<&RunSummary>) {
        match summary {
            Some(s) if !self.spoiled && s.open == s.processing && s.errored == 0 => {
                self.last = Some(*s);
            }
            _ => {
                self.spoiled = true;
                self.last = None;
            }
        }
    }

    /// A summary that says every stream is final and none failed, if the streams ended since the
    /// last claim show it.
    fn take(&mut self) -> Option<RunSummary> {
        self.last.take()
    }
}

/// Processes one claimed stream and commits what happened to it. Returns a deferral the run must
/// honour (a rate limit, a sleep).
async fn process_one(shared: Arc<Shared>, row: StreamRow) -> Result<StreamDone, StoreError> {
    let stream = row.to_stream();
    let result = {
        let service = shared.service.clone();
        let ctx = shared.ctx.clone();
        let stream = stream.clone();
        let platform = ctx.platform().to_owned();
        hooks::call(
            shared.config.stream_timeout,
            telemetry::for_platform(platform, async move {
                service.process_stream(&stream, &ctx).await
            }),
        )
        .await
    };
    let mut outcome = match result {
        Ok(outcome) => outcome,
        Err(failure) => return failed(&shared, &stream, failure).await,
    };
    if outcome.next_page.is_some() {
        let service = shared.service.clone();
        let ctx = shared.ctx.clone();
        let for_check = stream.clone();
        // the outcome travels into the hook and back: it may be large
        let checked = hooks::call(shared.config.hook_timeout, async move {
            let finished = service
                .is_processing_finished(&for_check, &outcome, &ctx)
                .await?;
            Ok((finished, outcome))
        })
        .await;
        match checked {
            Ok((finished, back)) => {
                outcome = back;
                if finished {
                    outcome.next_page = None;
                }
            }
            Err(failure) => return failed(&shared, &stream, failure).await,
        }
    }
    let sleep = outcome.sleep;
    let ends_run = sleep.is_none() && outcome.next_page.is_none() && outcome.new_streams.is_empty();
    if !ends_run {
        shared.spoil();
    }
    let mut committing = Some(Committing::start(&shared.committing));
    let mut finish = None;
    let mut postprocess_failed = None;
    if shared.hooks_running.fetch_sub(1, Ordering::SeqCst) == 1 && ends_run {
        // no other task waits on this one's commit
        committing = None;
        if let Some(hook) = last_ends_run(&shared).await {
            match hook {
                Ok(settings) => finish = Some(FinishRun { settings }),
                Err(failure) => postprocess_failed = Some(failure),
            }
        }
    }
    let tried = finish.is_some();
    let committed = {
        let (shared, stream) = (shared.clone(), stream.clone());
        shielded(async move { commit::commit(&shared, &stream, outcome, finish).await }).await
    };
    // said before this commit counts as done: a last task waiting on it sees it
    match &committed {
        Ok(c) if c.errored => shared.fail(),
        Ok(_) => {}
        // the loop ends, or (a claim undone) claims the stream anew
        Err(_) => shared.spoil(),
    }
    drop(committing);
    let completed = committed?.completed;
    if tried && completed.finished.is_none() {
        events::run_not_ended_by_last_stream(shared.lease.run_id, &stream.identifier);
    }
    Ok(StreamDone {
        deferral: sleep.map(|d| Deferral {
            until: crate::clock::now() + to_chrono(d),
            reason: format!("stream `{}` asked to sleep {d:?}", stream.identifier),
            budget: None,
        }),
        summary: completed.summary,
        finished: completed.finished,
        postprocess_failed,
    })
}

/// Whether the last stream task to finish its hooks ends the run in its commit: once the other
/// tasks' commits are done, when nothing is due to claim, no stream of the loop failed and none
/// since its last claim added streams or asked to sleep, it runs `postprocess` (the run is done
/// but for this commit) and returns what that gave. The commit still checks, in its statement,
/// that every other stream is `processed`; should it find otherwise (a stream put back by an
/// operator, say), the run goes on and `postprocess` runs again at its end.
async fn last_ends_run(shared: &Shared) -> Option<Result<Option<serde_json::Value>, HookFailure>> {
    if !shared.nothing_due.load(Ordering::SeqCst) {
        return None;
    }
    let mut committing = shared.committing.subscribe();
    // the sender lives in `shared`: the wait ends once the others' commits have
    let _ = committing.wait_for(|n| *n == 0).await;
    if shared.spoiled.load(Ordering::SeqCst)
        || shared.failed.load(Ordering::SeqCst)
        || shared.hooks_running.load(Ordering::SeqCst) != 0
        || !shared.nothing_due.load(Ordering::SeqCst)
    {
        return None;
    }
    Some(super::postprocess(&shared.service, (*shared.ctx).clone(), &shared.config).await)
}

/// Runs a stream's writes to their end even when the loop gives up on the stream (its run
/// stops: the lease lost, the database away, the grace over): a transaction cut off mid-way would
/// leave its pooled connection holding it, its `COMMIT` or `ROLLBACK` sent whenever that
/// connection is next used, and its locks held until then. A panic in them is passed on.
async fn shielded<T: Send + 'static>(
    writes: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::spawn(writes).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(StoreError::Database(sqlx::Error::WorkerCrashed)),
    }
}

/// [`record_failure`], [`shielded`].
async fn shielded_failure(
    shared: &Arc<Shared>,
    stream: &Stream,
    failure: HookFailure,
) -> Result<Option<Deferral>, StoreError> {
    let (shared, stream) = (shared.clone(), stream.clone());
    shielded(async move { record_failure(&shared, &stream, failure).await }).await
}

/// A stream's hooks failed: what happened is written ([`record_failure`]).
async fn failed(
    shared: &Arc<Shared>,
    stream: &Stream,
    failure: HookFailure,
) -> Result<StreamDone, StoreError> {
    // before its hooks count as ended: a last task sees it
    shared.fail();
    shared.hooks_running.fetch_sub(1, Ordering::SeqCst);
    Ok(StreamDone {
        deferral: shielded_failure(shared, stream, failure).await?,
        summary: None,
        finished: None,
        postprocess_failed: None,
    })
}

/// A failed `process_stream` (or `is_processing_finished`): rate limits put the stream back and
/// defer the run without consuming a retry; retryable failures back off until `max_retries`;
/// everything else ends the stream in `error`.
async fn record_failure(
    shared: &Shared,
    stream: &Stream,
    failure: HookFailure,
) -> Result<Option<Deferral>, StoreError> {
    if let Some(until) = failure.rate_limited_until() {
        stream_store::unclaim(&shared.pool, &shared.lease, &[stream.id]).await?;
        // the platform's words (a monthly cap spent, say), credentials scrubbed
        let why = failure
            .record("process_stream", stream.retries, shared.ctx.credentials())
            .message;
        telemetry::rate_limit_deferral(shared.ctx.platform());
        return Ok(Some(Deferral {
            until,
            reason: format!(
                "rate limited while processing `{}`: {why}",
                stream.identifier
            ),
            budget: failure.rate_limited_budget().cloned(),
        }));
    }
    let failures = stream.retries.saturating_add(1);
    let record = failure.record("process_stream", failures, shared.ctx.credentials());
    let retry_at = (failure.is_retryable() && failures <= shared.config.max_retries)
        .then(|| crate::clock::now() + to_chrono(shared.config.retry_backoff.delay(failures)));
    stream_store::fail(&shared.pool, &shared.lease, stream.id, &record, retry_at).await?;
    events::stream_failed(shared.lease.run_id, &stream.identifier, &record, retry_at);
    telemetry::stream_failed(shared.ctx.platform(), retry_at.is_some());
    Ok(None)
}
