//! What the same PostgreSQL does at best, for comparison.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use super::noop::benchmark_activity;

/// Transactions per second of `concurrency` tasks each committing one single-row transaction
/// after another (BEGIN; INSERT one row; COMMIT), durable like the server is configured.
pub async fn single_row_transactions(
    pool: &PgPool,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_transactions (id uuid PRIMARY KEY, n bigint NOT NULL)",
    )
    .execute(pool)
    .await?;
    sqlx::query("TRUNCATE bench_transactions")
        .execute(pool)
        .await?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let pool = pool.clone();
        tasks.spawn(async move {
            let mut n: u64 = 0;
            while started.elapsed() < duration {
                let mut tx = tributary::db::begin(&pool).await?;
                sqlx::query("INSERT INTO bench_transactions (id, n) VALUES ($1, $2)")
                    .bind(Uuid::new_v4())
                    .bind(n as i64)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                n += 1;
            }
            Ok::<u64, sqlx::Error>(n)
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done??;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "  baseline: {total} single-row transactions in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(rate)
}

/// Rows per second of ONE `INSERT … SELECT FROM UNNEST … ON CONFLICT DO UPDATE` writing `rows`
/// activities (the same rows, into a fresh tenant).
pub async fn bulk_upsert(pool: &PgPool, rows: u32, members: u64) -> anyhow::Result<f64> {
    let base = chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default();
    let activities: Vec<_> = (0..u64::from(rows))
        .map(|n| benchmark_activity(n, n % members, base + chrono::Duration::seconds(n as i64)))
        .collect();
    let tenant = Uuid::new_v4();
    let source_ids: Vec<&str> = activities.iter().map(|a| a.source_id.as_str()).collect();
    let types: Vec<&str> = activities
        .iter()
        .map(|a| a.activity_type.as_str())
        .collect();
    let occurred: Vec<_> = activities.iter().map(|a| a.occurred_at).collect();
    let member_ids: Vec<&str> = activities
        .iter()
        .map(|a| a.member.source_id.as_str())
        .collect();
    let channels: Vec<Option<&str>> = activities.iter().map(|a| a.channel.as_deref()).collect();
    let titles: Vec<Option<&str>> = activities.iter().map(|a| a.title.as_deref()).collect();
    let bodies: Vec<Option<&str>> = activities.iter().map(|a| a.body.as_deref()).collect();
    let started = Instant::now();
    let written = sqlx::query(
        "INSERT INTO activities AS a
             (tenant_id, platform, source_id, activity_type, occurred_at, member_source_id, channel, title, body)
         SELECT $1, 'bench-bulk', u.* FROM UNNEST($2::text[], $3::text[], $4::timestamptz[], $5::text[],
                                                  $6::text[], $7::text[], $8::text[])
             AS u(source_id, activity_type, occurred_at, member_source_id, channel, title, body)
         ON CONFLICT (tenant_id, platform, source_id) DO UPDATE SET
             activity_type = EXCLUDED.activity_type, occurred_at = EXCLUDED.occurred_at,
             member_source_id = EXCLUDED.member_source_id, channel = EXCLUDED.channel,
             title = EXCLUDED.title, body = EXCLUDED.body, updated_at = now()",
    )
    .bind(tenant)
    .bind(&source_ids)
    .bind(&types)
    .bind(&occurred)
    .bind(&member_ids)
    .bind(&channels)
    .bind(&titles)
    .bind(&bodies)
    .execute(pool)
    .await?
    .rows_affected();
    let elapsed = started.elapsed();
    eprintln!(
        "  baseline: one bulk upsert of {written} rows in {:.2} s",
        elapsed.as_secs_f64()
    );
    Ok(written as f64 / elapsed.as_secs_f64())
}
