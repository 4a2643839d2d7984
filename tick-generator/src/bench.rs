//! The fan-out benchmark: how fast one tick turns N due integrations into check runs and
//! messages on the `postgres` queue. It works in a database of its own, created from the server
//! of a given URL and dropped afterwards.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};
use tributary::db::{self, DbError};
use tributary::maintenance::{FanOut, MaintenanceError, TickScheduler, TickSchedulerConfig};
use tributary::messages::TickSlot;
use tributary::queue::{PgQueue, PgQueueConfig};
use tributary::registry::RegistryError;
use tributary_integrations::example_forum::PLATFORM;

#[derive(Debug, Clone)]
pub struct FanOutBench {
    /// The server to use: a database named `database` is created on it.
    pub database_url: String,
    pub database: String,
    pub integrations: u64,
    pub batch_size: usize,
    /// Keep the database afterwards (to look at it).
    pub keep: bool,
}

#[derive(Debug, Clone)]
pub struct FanOutFigures {
    pub integrations: u64,
    /// Creating the database and the integrations.
    pub setup: Duration,
    /// The tick: every integration due.
    pub fan_out: FanOut,
    /// The same tick again (a redelivery): nothing new.
    pub repeat: FanOut,
    pub runs_in_database: i64,
    pub messages_in_queue: i64,
}

impl FanOutFigures {
    pub fn integrations_per_second(&self) -> f64 {
        self.fan_out.runs_created as f64 / self.fan_out.elapsed.as_secs_f64().max(1e-9)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Maintenance(#[from] MaintenanceError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("the fan-out made {runs} runs and {messages} messages for {expected} integrations")]
    Wrong {
        expected: u64,
        runs: i64,
        messages: i64,
    },
}

async fn admin_pool(options: &PgConnectOptions) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await
}

/// Runs the benchmark.
pub async fn fan_out(bench: &FanOutBench) -> Result<FanOutFigures, BenchError> {
    let server = PgConnectOptions::from_str(&bench.database_url)?;
    let admin = admin_pool(&server).await?;
    // a plain identifier: nothing to quote, nothing to inject
    let name: String = bench
        .database
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&admin)
    .await?;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&admin)
        .await?;
    let result = measure(bench, server.clone().database(&name)).await;
    if !bench.keep {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&admin)
        .await?;
    }
    admin.close().await;
    result
}

async fn measure(
    bench: &FanOutBench,
    options: PgConnectOptions,
) -> Result<FanOutFigures, BenchError> {
    let started = Instant::now();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    db::migrate(&pool).await?;
    sqlx::query(
        "INSERT INTO integrations (id, tenant_id, platform, status, settings)
         SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000000', $1, 'done', '{}'
         FROM generate_series(1, $2)",
    )
    .bind(PLATFORM)
    .bind(i64::try_from(bench.integrations).unwrap_or(i64::MAX))
    .execute(&pool)
    .await?;
    sqlx::query("VACUUM ANALYZE integrations")
        .execute(&pool)
        .await?;
    let setup = started.elapsed();

    let registry = Arc::new(tributary_integrations::registry()?);
    let queue = Arc::new(PgQueue::new(pool.clone(), PgQueueConfig::default()));
    let scheduler = TickScheduler::new(
        pool.clone(),
        registry,
        queue,
        TickSchedulerConfig {
            batch_size: bench.batch_size,
            ..TickSchedulerConfig::default()
        },
    );
    let slot = TickSlot::containing(Utc::now());
    let fan_out = scheduler.run_once(slot).await?;
    let repeat = scheduler.run_once(slot).await?;
    let runs_in_database: i64 = sqlx::query_scalar("SELECT count(*) FROM integration_runs")
        .fetch_one(&pool)
        .await?;
    let messages_in_queue: i64 = sqlx::query_scalar("SELECT count(*) FROM queue_messages")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    let expected = i64::try_from(bench.integrations).unwrap_or(i64::MAX);
    if runs_in_database != expected || messages_in_queue != expected {
        return Err(BenchError::Wrong {
            expected: bench.integrations,
            runs: runs_in_database,
            messages: messages_in_queue,
        });
    }
    Ok(FanOutFigures {
        integrations: bench.integrations,
        setup,
        fan_out,
        repeat,
        runs_in_database,
        messages_in_queue,
    })
}
