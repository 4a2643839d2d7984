//! PostgreSQL going away under the workers: restarted fast and immediate, on a throwaway server
//! of the test's own. (The queue going away: `queue_outages`.)

use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::harness::{Expect, Figures, Onboarding, Scale, seeded, soak};
use crate::throwaway_pg::ThrowawayPg;
use crate::workers::Workers;

/// Streams processed so far (`None` while the database does not answer).
pub async fn processed_streams(pool: &PgPool) -> Option<i64> {
    sqlx::query_scalar("SELECT count(*) FROM integration_streams WHERE state = 'processed'")
        .fetch_one(pool)
        .await
        .ok()
}

/// Waits until a stream more than `before` was processed (or every run has ended); how long
/// since `since`.
pub async fn resumed(
    onboarding: &Onboarding,
    before: i64,
    since: Instant,
    deadline: Duration,
) -> Duration {
    let until = Instant::now() + deadline;
    loop {
        if processed_streams(&onboarding.pool)
            .await
            .is_some_and(|n| n > before)
            || onboarding.settled().await
        {
            return since.elapsed();
        }
        assert!(
            Instant::now() < until,
            "no stream processed within {deadline:?} of the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn postgres_restarted_fast_mid_run_costs_no_retry() {
    postgres_restarts("fast").await;
}

/// Immediate restarts (a crash: no connection is closed cleanly, and the first outage lasts
/// past every lease), then the recovery: no stream charged. Before the claim and the rescuer
/// learnt the server's start, the first worker to reach the database again took over the runs
/// whose lease had run out during the outage and charged their streams in flight ("streams left
/// in flight by an earlier attempt are retried"; seen: 6 retries after 2 restarts).
#[tokio::test]
async fn postgres_restarted_immediate_mid_run_costs_no_retry() {
    postgres_restarts("immediate").await;
}

/// The workers' lease (`worker_env`): an outage longer than this lets every lease expire while
/// the database is away.
const LEASE: Duration = Duration::from_secs(3);

/// How long the server stays down in round `round`: `None` is a plain `pg_ctl restart`. Immediate
/// mode alternates an outage longer than the lease (1 to 2 s past it: by the time the database
/// answers, every lease held before has expired, and whichever worker claims the run first finds
/// the others' streams `processing`) with a plain restart.
fn outage(mode: &str, round: usize, rng: &mut fastrand::Rng) -> Option<Duration> {
    (mode == "immediate" && round.is_multiple_of(2))
        .then(|| LEASE + Duration::from_millis(rng.u64(1_000..2_000)))
}

/// PostgreSQL restarted (`pg_ctl restart -m MODE`, or stopped and started: see [`outage`])
/// under two workers, 2 times (soak: 6): no retry charged, every run ends `processed`.
async fn postgres_restarts(mode: &str) {
    let (seed, mut rng) = seeded(&format!("postgres {mode} restarts"));
    let pg = ThrowawayPg::start();
    let pool = pg.pool().await;
    // slow enough a forum that the onboarding outlasts the first outage
    let scale = Scale::standard(120);
    let onboarding = Onboarding::direct(pool.clone(), &scale).await;
    let mut workers = Workers::new(&pool, &pg.url, "pgrestart");
    workers.spawn_n(2);
    onboarding.enqueue_all(onboarding.pg_queue().as_ref()).await;

    let rounds = if soak() { 6 } else { 2 };
    let mut recoveries = Vec::new();
    let mut restarts = Vec::new();
    for round in 0..rounds {
        onboarding
            .wait_progress(10 * (round as i64 + 1), Duration::from_secs(120))
            .await;
        tokio::time::sleep(Duration::from_millis(rng.u64(0..800))).await;
        if onboarding.settled().await {
            break;
        }
        let before = processed_streams(&pool).await.unwrap_or(0);
        let since = Instant::now();
        let away = match outage(mode, round, &mut rng) {
            Some(down) => pg.stop_for(mode, down),
            None => pg.restart(mode),
        };
        restarts.push(format!("{mode} ({:.1} s)", away.as_secs_f64()));
        recoveries.push(resumed(&onboarding, before, since, Duration::from_secs(120)).await);
    }
    onboarding.wait_settled(Duration::from_secs(300)).await;
    let figures = Figures {
        scenario: format!("PostgreSQL restarted ({mode}) mid-run"),
        seed,
        faults: format!("restarts: {}", restarts.join(", ")),
        recover: recoveries,
        ..Figures::default()
    };
    onboarding
        .check(
            &Expect {
                max_retries: Some(0),
                ..Expect::default()
            },
            figures,
        )
        .await;
    workers.stop_all().await;
}
