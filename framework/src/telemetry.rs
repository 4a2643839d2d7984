//! Metrics, in Prometheus format through the `metrics` facade and its exporter: counters the
//! processor, the HTTP toolkit and the maintenance services increment as things happen, and
//! gauges sampled from the database and the queue when `/metrics` is scraped (so every process
//! reports the same figures for shared state). Names are defined here and nowhere else.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;

use crate::queue::Queue;
use crate::store::StoreError;
use crate::store::overview;

pub const RUNS: &str = "tributary_runs";
pub const RUNS_FINISHED: &str = "tributary_runs_finished_total";
pub const STREAMS: &str = "tributary_streams_total";
pub const ACTIVITIES_WRITTEN: &str = "tributary_activities_written_total";
pub const MEMBERS_WRITTEN: &str = "tributary_members_written_total";
pub const HTTP_REQUESTS: &str = "tributary_http_requests_total";
pub const RATE_LIMIT_DEFERRALS: &str = "tributary_rate_limit_deferrals_total";
pub const QUEUE_MESSAGES: &str = "tributary_queue_messages";
pub const QUEUE_OLDEST_AGE: &str = "tributary_queue_oldest_message_age_seconds";
pub const DEAD_LETTERS: &str = "tributary_dead_letters";
pub const LEASE_RESCUES: &str = "tributary_lease_rescues_total";
pub const TICK_LAG: &str = "tributary_tick_lag_seconds";
pub const TICKS_EMITTED: &str = "tributary_ticks_emitted_total";
pub const TICKS_SKIPPED: &str = "tributary_tick_slots_skipped_total";

tokio::task_local! {
    /// The platform whose hook is running: HTTP requests are counted under it.
    static PLATFORM: String;
}

/// Runs `future` (an integration's hook) with its platform known to the HTTP toolkit's metrics.
pub fn for_platform<F: Future>(platform: String, future: F) -> impl Future<Output = F::Output> {
    PLATFORM.scope(platform, future)
}

/// Installs the process's Prometheus recorder (once; later calls return the same handle).
pub fn install() -> Result<PrometheusHandle, String> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .install_recorder()
                .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
            describe();
            Ok(handle)
        })
        .clone()
}

fn describe() {
    describe_gauge!(
        RUNS,
        "Runs by state (sampled from the database at each scrape)"
    );
    describe_counter!(RUNS_FINISHED, "Runs this process finished, by final state");
    describe_counter!(
        STREAMS,
        "Streams this process handled, by outcome: processed, failed, retried"
    );
    describe_counter!(
        ACTIVITIES_WRITTEN,
        "Activities written, by platform and kind (new, updated)"
    );
    describe_counter!(MEMBERS_WRITTEN, "Members created, by platform");
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests to platforms, by platform and status"
    );
    describe_counter!(
        RATE_LIMIT_DEFERRALS,
        "Runs deferred by a rate limit, by platform"
    );
    describe_gauge!(
        QUEUE_MESSAGES,
        "Queue messages by state: visible, in_flight, delayed"
    );
    describe_gauge!(
        QUEUE_OLDEST_AGE,
        "Age of the oldest message waiting or in flight"
    );
    describe_gauge!(DEAD_LETTERS, "Messages in the dead-letter queue");
    describe_counter!(LEASE_RESCUES, "Runs whose expired lease was rescued");
    describe_gauge!(TICK_LAG, "Seconds since the latest emitted tick slot began");
    describe_counter!(TICKS_EMITTED, "Ticks this generator emitted");
    describe_counter!(
        TICKS_SKIPPED,
        "Slots missed while no generator ran (skipped, not replayed)"
    );
}

/// A stream's outcome committed.
pub fn stream_committed(
    platform: &str,
    failed: bool,
    activities_new: u64,
    activities_updated: u64,
    members_new: u64,
) {
    let outcome = if failed { "failed" } else { "processed" };
    counter!(STREAMS, "outcome" => outcome, "platform" => platform.to_owned()).increment(1);
    counter!(ACTIVITIES_WRITTEN, "platform" => platform.to_owned(), "kind" => "new")
        .increment(activities_new);
    counter!(ACTIVITIES_WRITTEN, "platform" => platform.to_owned(), "kind" => "updated")
        .increment(activities_updated);
    counter!(MEMBERS_WRITTEN, "platform" => platform.to_owned()).increment(members_new);
}

/// A stream failed: `retried` when it will run again, else it ended in error.
pub fn stream_failed(platform: &str, retried: bool) {
    let outcome = if retried { "retried" } else { "failed" };
    counter!(STREAMS, "outcome" => outcome, "platform" => platform.to_owned()).increment(1);
}

pub fn run_finished(state: &str) {
    counter!(RUNS_FINISHED, "state" => state.to_owned()).increment(1);
}

pub fn rate_limit_deferral(platform: &str) {
    counter!(RATE_LIMIT_DEFERRALS, "platform" => platform.to_owned()).increment(1);
}

pub fn tick_emitted(skipped: i64) {
    counter!(TICKS_EMITTED).increment(1);
    counter!(TICKS_SKIPPED).increment(u64::try_from(skipped).unwrap_or(0));
}

pub fn lease_rescues(count: u64) {
    counter!(LEASE_RESCUES).increment(count);
}

/// An HTTP request answered with `status` (0: no answer), under the running hook's platform.
pub fn http_request(status: u16) {
    let platform = PLATFORM
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "unknown".to_owned());
    counter!(HTTP_REQUESTS, "platform" => platform, "status" => status.to_string()).increment(1);
}

/// Sets the gauges from the database (runs by state, tick lag) and the queue (depth, oldest
/// message, dead letters).
pub async fn sample(pool: &PgPool, queue: Option<&dyn Queue>) -> Result<(), StoreError> {
    for state in [
        "pending",
        "processing",
        "delayed",
        "processed",
        "error",
        "cancelled",
    ] {
        gauge!(RUNS, "state" => state).set(0.0);
    }
    for (state, count) in overview::run_state_counts(pool).await? {
        gauge!(RUNS, "state" => state).set(count as f64);
    }
    let lag: Option<f64> =
        sqlx::query_scalar("SELECT extract(epoch FROM now() - max(slot))::float8 FROM tick_slots")
            .fetch_one(pool)
            .await?;
    if let Some(lag) = lag {
        gauge!(TICK_LAG).set(lag);
    }
    if let Some(queue) = queue {
        // a queue that cannot report is left out of this scrape, not an error of it
        if let Ok(stats) = queue.stats().await {
            gauge!(QUEUE_MESSAGES, "state" => "visible").set(stats.visible as f64);
            gauge!(QUEUE_MESSAGES, "state" => "in_flight").set(stats.in_flight as f64);
            gauge!(QUEUE_MESSAGES, "state" => "delayed").set(stats.delayed as f64);
            gauge!(QUEUE_OLDEST_AGE).set(stats.oldest_age.unwrap_or(Duration::ZERO).as_secs_f64());
            gauge!(DEAD_LETTERS).set(stats.dead_letters as f64);
        }
    }
    Ok(())
}

/// The exposition: gauges sampled now, then everything the recorder holds.
pub async fn render(
    handle: &PrometheusHandle,
    pool: &PgPool,
    queue: Option<&dyn Queue>,
) -> Result<String, StoreError> {
    sample(pool, queue).await?;
    handle.run_upkeep();
    Ok(handle.render())
}
