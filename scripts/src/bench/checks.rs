//! `bench-checks`: the fixed cost of a check, at scale. N integrations of the Example Forum (one
//! channel each: its posts and replies, two streams, or with `--streams 1` its posts) against its fake (in this process) answering every request after a simulated
//! latency, all due at the same tick; the real `tributary-worker` binary (one, then more) over the
//! postgres queue takes the check runs. Three rounds, each the fan-out of one tick slot:
//! the first check (stores the channel), a check that finds nothing new, and a check that finds
//! one new post. Per round: time from the tick to the last check processed, checks/s, database
//! transactions per check (`pg_stat_database`), worker CPU per check (`/proc/PID/stat`).
//!
//! `--queue sqs` runs the same over SQS on moto (a local SQS-compatible server, started here):
//! moto's receive cost grows with the square of the queue's depth (see the toolchain notes), so
//! there a 10,000-message queue measures moto; a thousand integrations measure the worker.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use serde_json::json;
use sqlx::PgPool;
use tokio::process::{Child, Command};
use tributary::maintenance::{TickScheduler, TickSchedulerConfig};
use tributary::messages::TickSlot;
use tributary::queue::{PgQueue, PgQueueConfig, Queue, QueueBackend, SqsQueueSettings};
use tributary::testkit::moto::MotoServer;
use tributary_integrations::example_forum::PLATFORM;
use tributary_integrations::example_forum::fake::{
    DatasetSpec, FakeForum, ForumData, ForumOptions, author,
};

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "bench-checks")]
pub struct ChecksBenchArgs {
    /// Integrations due at the same tick.
    #[arg(long, default_value_t = 10_000)]
    pub integrations: u64,
    /// Streams per check: 2 (the channel's posts and its replies) or 1 (its posts only).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub streams: u8,
    /// Workers (separate processes) taking the checks.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Messages each worker handles at once without a backlog (its --concurrency).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Messages each worker handles at once at most (its --max-concurrency; default: the
    /// worker's).
    #[arg(long)]
    pub max_concurrency: Option<usize>,
    /// Simulated latency of every request, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub latency_ms: u64,
    /// Share of the minute over which the tick's checks are spread (the worker's
    /// TRIBUTARY_CHECK_SPREAD; 0: all at the tick, which measures throughput).
    #[arg(long, default_value_t = 0.0)]
    pub spread: f64,
    /// Give up on a round after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout_secs: u64,
    /// The worker binary to measure (default: the `tributary-worker` beside this benchmark), e.g.
    /// an earlier version's build, for a baseline on the same machine and database.
    #[arg(long)]
    pub worker_binary: Option<PathBuf>,
    /// The queue the tick's checks go through: postgres, or sqs (on moto, started here).
    #[arg(long, default_value = "postgres")]
    pub queue: QueueBackend,
}

const TOKEN: &str = "forum-bench-token";
const CHANNEL: &str = "channel-0";

/// One round's figures.
struct Round {
    name: &'static str,
    checks: u64,
    elapsed: Duration,
    transactions: i64,
    /// Statements run, when the server has `pg_stat_statements`.
    statements: Option<i64>,
    cpu: Duration,
    /// Requests the fake received during the round.
    requests: usize,
}

pub async fn run(args: ChecksBenchArgs) -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
    let pool = tributary::db::connect(&url, 4).await?;
    tributary::db::migrate(&pool).await?;
    let forum = FakeForum::start(
        ForumData::generate(DatasetSpec {
            channels: 1,
            posts_per_channel: 5,
            replies_per_post: 1,
            members: 5,
        }),
        ForumOptions {
            token: TOKEN.to_owned(),
            latency: Duration::from_millis(args.latency_ms),
            ..ForumOptions::default()
        },
    )
    .await
    .context("starting the fake forum")?;
    insert_integrations(&pool, &args, &forum.base_url()).await?;
    let (queue, queue_env) = open_queue(&pool, &args.queue).await?;
    println!(
        "{} Example Forum integrations ({} stream(s) a check) due at one tick (spread over {:.0}% of the minute); {} worker(s) × concurrency {} (at most {}); {} ms per request; {}",
        args.integrations,
        args.streams,
        args.spread * 100.0,
        args.workers,
        args.concurrency,
        args.max_concurrency
            .map_or_else(|| "the worker's default".to_owned(), |m| m.to_string()),
        args.latency_ms,
        queue.describe()
    );
    let mut workers = Vec::new();
    for n in 0..args.workers {
        workers.push(start_worker(&url, n, &args, &queue_env)?);
    }
    let registry = Arc::new(tributary_integrations::registry()?);
    let scheduler = TickScheduler::new(
        pool.clone(),
        registry,
        queue,
        TickSchedulerConfig {
            spread: args.spread,
            ..TickSchedulerConfig::default()
        },
    );
    let timeout = Duration::from_secs(args.timeout_secs);
    let counts = counts_statements(&pool).await;
    let mut slot = TickSlot::containing(Utc::now());
    let mut rounds = Vec::new();
    for name in ["first check", "nothing new", "one new post"] {
        if name == "one new post" {
            forum.edit(|data| data.add_post(CHANNEL, author(1), "News", Utc::now()));
        }
        let requests_before = forum.requests();
        let round =
            match measure_round(&pool, &scheduler, slot, name, &workers, timeout, counts).await {
                Ok(round) => Round {
                    requests: forum.requests() - requests_before,
                    ..round
                },
                Err(e) => {
                    stop_workers(workers).await;
                    return Err(e);
                }
            };
        print_round(&round);
        rounds.push(round);
        slot = slot.next();
    }
    stop_workers(workers).await;
    Ok(())
}

/// Inserts `args.integrations` connected, onboarded integrations reading one channel of the fake
/// (its posts, and its replies when `args.streams` is 2).
async fn insert_integrations(
    pool: &PgPool,
    args: &ChecksBenchArgs,
    base_url: &str,
) -> anyhow::Result<()> {
    let mut settings = json!({ "base_url": base_url, "channels": [CHANNEL], "per_page": 100 });
    if args.streams == 1 {
        // only then: a worker built before the setting (a baseline) refuses it
        settings["replies"] = json!(false);
    }
    sqlx::query(
        "INSERT INTO integrations (id, tenant_id, platform, status, settings, credentials)
         SELECT gen_random_uuid(), gen_random_uuid(), $1, 'done', $2, $3
         FROM generate_series(1, $4)",
    )
    .bind(PLATFORM)
    .bind(&settings)
    .bind(json!({ "token": TOKEN }))
    .bind(i64::try_from(args.integrations).unwrap_or(i64::MAX))
    .execute(pool)
    .await
    .context("inserting the integrations")?;
    sqlx::query("VACUUM ANALYZE integrations")
        .execute(pool)
        .await?;
    Ok(())
}

fn worker_binary(args: &ChecksBenchArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.worker_binary {
        anyhow::ensure!(path.exists(), "{} does not exist", path.display());
        return Ok(path.clone());
    }
    let exe = std::env::current_exe().context("locating this benchmark's binary")?;
    let path = exe
        .parent()
        .context("the benchmark's binary has no folder")?
        .join("tributary-worker");
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build the worker with the benchmark (scripts/bench does)",
        path.display()
    );
    Ok(path)
}

/// The queue the tick sends to, and the environment that points a worker at it.
async fn open_queue(
    pool: &PgPool,
    backend: &QueueBackend,
) -> anyhow::Result<(Arc<dyn Queue>, Vec<(&'static str, String)>)> {
    Ok(match backend {
        QueueBackend::Postgres => (
            Arc::new(PgQueue::new(pool.clone(), PgQueueConfig::default())),
            vec![("TRIBUTARY_QUEUE", "postgres".to_owned())],
        ),
        QueueBackend::Sqs => {
            let moto = MotoServer::shared();
            let queue = moto
                .queue("bench-checks", &SqsQueueSettings::default())
                .await;
            let mut env = moto.env();
            env.push(("TRIBUTARY_QUEUE", "sqs".to_owned()));
            env.push(("TRIBUTARY_SQS_QUEUE_URL", queue.url().to_owned()));
            (Arc::new(queue), env)
        }
    })
}

fn start_worker(
    database_url: &str,
    n: usize,
    args: &ChecksBenchArgs,
    queue_env: &[(&'static str, String)],
) -> anyhow::Result<Child> {
    let mut command = Command::new(worker_binary(args)?);
    command.envs(queue_env.iter().map(|(k, v)| (*k, v.as_str())));
    if let Some(max) = args.max_concurrency {
        command.env("TRIBUTARY_WORKER_MAX_CONCURRENCY", max.to_string());
    }
    command
        .env("DATABASE_URL", database_url)
        .env("TRIBUTARY_HEALTH_ADDR", "off")
        .env("TRIBUTARY_WORKER_ID", format!("bench-checks-{n}"))
        .env("TRIBUTARY_WORKER_CONCURRENCY", args.concurrency.to_string())
        .env("TRIBUTARY_ALLOW_PLAINTEXT_CREDENTIALS", "1")
        .env("RUST_LOG", "warn,sqlx=error")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting a worker")
}

async fn stop_workers(workers: Vec<Child>) {
    for mut worker in workers {
        if let Some(pid) = worker.id() {
            // SIGTERM: the worker drains and exits
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), worker.wait()).await;
    }
}

async fn measure_round(
    pool: &PgPool,
    scheduler: &TickScheduler,
    slot: TickSlot,
    name: &'static str,
    workers: &[Child],
    timeout: Duration,
    counts_statements: bool,
) -> anyhow::Result<Round> {
    let transactions_before = transactions(pool).await?;
    let statements_before = if counts_statements {
        statements(pool).await
    } else {
        None
    };
    // this process's own transactions from here on: the read above, the statements' read
    let mut own = 1 + i64::from(statements_before.is_some());
    let cpu_before: Duration = workers.iter().map(cpu_of).sum();
    let started = Instant::now();
    let fan_out = scheduler.run_once(slot).await?;
    let trigger = slot.trigger_key();
    let mut polls = 0i64;
    let mut progress = (0i64, Instant::now());
    let mut stalls_reported = 0;
    loop {
        polls += 1;
        let (done, failed): (i64, i64) = sqlx::query_as(
            "/* bench */ SELECT count(*) FILTER (WHERE state = 'processed'),
                    count(*) FILTER (WHERE state = 'error')
             FROM integration_runs WHERE trigger_key = $1",
        )
        .bind(&trigger)
        .fetch_one(pool)
        .await?;
        anyhow::ensure!(failed == 0, "{name}: {failed} checks ended in error");
        if done as u64 >= fan_out.runs_created {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "{name}: {done} of {} checks processed after {} s",
            fan_out.runs_created,
            timeout.as_secs()
        );
        if done > progress.0 {
            progress = (done, Instant::now());
        } else if progress.1.elapsed() >= STALL && stalls_reported < 3 {
            // a round that stops making progress says what the database is doing meanwhile
            stalls_reported += 1;
            own += report_stall(pool, &trigger, done, fan_out.runs_created).await?;
            progress.1 = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    let cpu = workers.iter().map(cpu_of).sum::<Duration>() - cpu_before;
    // backends report their figures at most once a second: wait until they stop changing
    let (after, reads) = settled_transactions(pool).await?;
    // and the polls and the reads before the last (which does not count itself)
    own += polls + reads - 1;
    let transactions = after - transactions_before - own;
    let statements = match statements_before {
        Some(before) => statements(pool).await.map(|after| after - before),
        None => None,
    };
    Ok(Round {
        name,
        checks: fan_out.runs_created,
        elapsed,
        transactions,
        statements,
        cpu,
        requests: 0,
    })
}

/// The database's transactions once the figures stopped changing (for [`SETTLE`], at most a
/// minute), and how many transactions reading them took.
///
/// A backend reports its figures at most once a second; one that goes idle with figures not yet
/// reported reports them only after 10 s idle (PostgreSQL 15's `PGSTAT_IDLE_INTERVAL`), so a
/// shorter wait leaves some of a round's transactions to the next round.
/// Longer than an idle backend's wait to report its figures (10 s).
const SETTLE: Duration = Duration::from_secs(11);

/// A round with no check processed for this long is reported as stalled (at most three times).
const STALL: Duration = Duration::from_secs(10);

/// Prints what a stalled round's checks, the queue and the database's sessions are doing; returns
/// the transactions this took (one per query).
async fn report_stall(pool: &PgPool, trigger: &str, done: i64, of: u64) -> anyhow::Result<i64> {
    let runs: Vec<(String, i64)> = sqlx::query_as(
        "/* bench */ SELECT state::text, count(*) FROM integration_runs WHERE trigger_key = $1
         GROUP BY 1 ORDER BY 1",
    )
    .bind(trigger)
    .fetch_all(pool)
    .await?;
    let (visible, invisible, received_again): (i64, i64, i64) = sqlx::query_as(
        "/* bench */ SELECT count(*) FILTER (WHERE visible_at <= now()),
                count(*) FILTER (WHERE visible_at > now()),
                count(*) FILTER (WHERE receive_count > 1)
         FROM queue_messages",
    )
    .fetch_one(pool)
    .await?;
    let sessions: Vec<(String, String, String, f64, String)> = sqlx::query_as(
        "/* bench */ SELECT coalesce(state, ''),
                coalesce(wait_event_type || ':' || wait_event, ''),
                coalesce(application_name, ''),
                coalesce(extract(epoch FROM now() - coalesce(xact_start, state_change)), 0)::float8,
                left(regexp_replace(query, '\\s+', ' ', 'g'), 100)
         FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND backend_type = 'client backend'
         ORDER BY state, 4 DESC",
    )
    .fetch_all(pool)
    .await?;
    println!(
        "stalled: {done} of {of} checks processed, none for {} s; runs by state {runs:?}; \
         queue: {visible} visible, {invisible} invisible, {received_again} received more than once; \
         {} sessions:",
        STALL.as_secs(),
        sessions.len()
    );
    for (state, wait, app, secs, query) in &sessions {
        println!("  {state:<20} {wait:<28} {secs:>7.1} s  {app} {query}");
    }
    Ok(3)
}

async fn settled_transactions(pool: &PgPool) -> anyhow::Result<(i64, i64)> {
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut reads = 1;
    let mut seen = vec![(Instant::now(), transactions(pool).await?)];
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        reads += 1;
        let now = transactions(pool).await?;
        seen.push((Instant::now(), now));
        // settled: over the last SETTLE, nothing reached the figures but this process's own
        // reads (one transaction each) and an idle worker's background (its once-a-second read
        // of tight budgets, its receives every 5 s: under 2 a second)
        let settled = seen
            .iter()
            .rposition(|(at, _)| at.elapsed() >= SETTLE)
            .is_some_and(|i| {
                let background = 2 * SETTLE.as_secs() as i64;
                now - seen[i].1 <= (seen.len() - 1 - i) as i64 + 1 + background
            });
        if settled || Instant::now() > give_up {
            return Ok((now, reads));
        }
    }
}

/// Whether the server counts statements (it preloads `pg_stat_statements`); makes the
/// extension's view in this database.
async fn counts_statements(pool: &PgPool) -> bool {
    sqlx::query("/* bench */ CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(pool)
        .await
        .is_ok()
        && sqlx::query("/* bench */ SELECT 1 FROM pg_stat_statements LIMIT 1")
            .execute(pool)
            .await
            .is_ok()
}

/// Statements the workers ran in this database so far (`pg_stat_statements`, if the server
/// preloads it; the benchmark's own are marked and left out).
async fn statements(pool: &PgPool) -> Option<i64> {
    sqlx::query_scalar(
        "/* bench */ SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements s
         JOIN pg_database d ON d.oid = s.dbid
         WHERE d.datname = current_database() AND s.query NOT LIKE '/* bench */%'
           AND s.query NOT IN ('BEGIN', 'COMMIT', 'ROLLBACK')",
    )
    .fetch_one(pool)
    .await
    .ok()
}

/// Transactions committed and rolled back in this database so far.
async fn transactions(pool: &PgPool) -> anyhow::Result<i64> {
    // statistics reach pg_stat_database when a backend reports them (at most once a second);
    // each read is a transaction of its own, with a fresh snapshot of the figures
    Ok(sqlx::query_scalar(
        "/* bench */ SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database
         WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await?)
}

/// User + system CPU time of a child process so far.
fn cpu_of(child: &Child) -> Duration {
    child
        .id()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .and_then(|stat| {
            let rest = stat.rsplit_once(')')?.1.to_owned();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(Duration::from_millis((utime + stime) * 10))
        })
        .unwrap_or_default()
}

fn print_round(round: &Round) {
    let per_check = |x: f64| x / round.checks.max(1) as f64;
    let statements = round.statements.map_or_else(
        || "statements n/a (no pg_stat_statements)".to_owned(),
        |s| format!("{:.1} statements/check", per_check(s as f64)),
    );
    println!(
        "{:<14} {} checks in {:.1} s ({:.0} checks/s) · {:.1} transactions/check · {statements} · worker CPU {:.2} ms/check · {:.1} requests/check",
        round.name,
        round.checks,
        round.elapsed.as_secs_f64(),
        round.checks as f64 / round.elapsed.as_secs_f64().max(1e-9),
        per_check(round.transactions as f64),
        per_check(round.cpu.as_secs_f64() * 1000.0),
        per_check(round.requests as f64),
    );
}
