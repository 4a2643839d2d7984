//! Connecting to PostgreSQL and bringing its schema up to date.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::MIGRATOR;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to PostgreSQL at {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot apply the migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "the database has migration {version} that this build does not know: it was migrated by a newer Tributary; refusing to run on it"
    )]
    UnknownMigration { version: i64 },
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
}

impl DbError {
    /// The server could not be reached (refused, reset, timed out, starting up, shutting down):
    /// worth waiting for, unlike a malformed URL or refused credentials.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Connect { source, .. } | Self::Query(source) => {
                crate::store::is_unavailable(source)
            }
            _ => false,
        }
    }
}

/// Tries one connection to `url` (within 5 s) and closes it: whether the server answers now.
pub async fn probe(url: &str) -> Result<(), DbError> {
    use sqlx::Connection;
    let connect_error = |source| DbError::Connect {
        url: redact_url(url),
        source,
    };
    let conn = tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(url))
        .await
        .map_err(|_| connect_error(sqlx::Error::PoolTimedOut))?
        .map_err(connect_error)?;
    let _ = conn.close().await;
    Ok(())
}

/// Opens a pool of `max_connections` to `url` (shown in errors without its password).
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, DbError> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await
        .map_err(|source| DbError::Connect {
            url: redact_url(url),
            source,
        })
}

/// Begins a transaction on a connection of `pool`, safely even if the caller gives up.
///
/// Use this, never `Pool::begin`: sqlx's `begin` cancelled after its `BEGIN` reached the server
/// but before the answer (a task aborted, a timeout) forgets the transaction, and the connection
/// goes back to the pool inside it. Its next user's statements then run in a transaction nobody
/// commits (a heartbeat that "succeeds" and is never seen) and are lost when something rolls it
/// back. Here the `BEGIN` runs in a task of its own, which finishes whatever the caller does: a
/// transaction nobody takes is dropped there, and rolled back as sqlx does for any dropped
/// transaction.
pub async fn begin(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let pool = pool.clone();
    #[allow(clippy::disallowed_methods)] // the one safe use: in a task of its own
    tokio::spawn(async move { pool.begin().await })
        .await
        .map_err(|_| sqlx::Error::WorkerCrashed)?
}

/// Waits until the database answers `SELECT 1` through `pool`, polling with a backoff from
/// 100 ms to 1 s, each try at most 1 s (a try left to the pool's own connect backoff could sit
/// out seconds after the server is back). Returns how long it waited, or `None` if `shutdown`
/// came first.
pub async fn wait_until_reachable(
    pool: &PgPool,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<Duration> {
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        let answered = tokio::time::timeout(
            Duration::from_secs(1),
            sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(pool),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if answered {
            return Some(started.elapsed());
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Applies pending migrations; refuses a database that has migrations this build does not know.
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    let known: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    let applied: Vec<i64> = match sqlx::query_scalar(
        "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(pool)
    .await
    {
        Ok(v) => v,
        // a fresh database has no migrations table yet
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    if let Some(version) = applied.iter().find(|v| !known.contains(v)) {
        return Err(DbError::UnknownMigration { version: *version });
    }
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// `postgres://user:secret@host/db?password=x` → `postgres://user:***@host/db?password=***`.
/// The user information ends at the *last* `@` before the path (a password may hold `@`), and a
/// `password` (or `sslpassword`) query parameter is redacted too.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, format!("#{f}")),
                None => (query, String::new()),
            };
            let params: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.to_ascii_lowercase().ends_with("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}{fragment}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
    }

    #[test]
    fn a_password_with_an_at_sign_or_in_the_query_is_redacted_whole() {
        assert_eq!(
            redact_url("postgres://app:p@ss@w0rd@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(
            redact_url("postgres://db/x?user=app&password=s3cret&sslmode=require"),
            "postgres://db/x?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://app:a@b@db/x?sslpassword=k#f"),
            "postgres://app:***@db/x?sslpassword=***#f"
        );
        assert_eq!(redact_url("postgres://db"), "postgres://db");
    }
}
