//! A throwaway PostgreSQL server of the test's own, started with the project's
//! `pg_start_throwaway` (scripts/lib/common.sh), so the test may restart it under the workers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::common::free_port;

pub struct ThrowawayPg {
    dir: PathBuf,
    pub url: String,
}

fn common_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("scripts/lib/common.sh")
}

/// Runs `script` in bash after sourcing common.sh, with `$PG_AS` the prefix that runs a
/// command as the `postgres` user (when root), and `args` as `$1…`.
fn bash(script: &str, args: &[&str]) -> std::process::Output {
    let full = format!(
        r#"source "{}" || exit 1
PG_AS=(); if [ "$(id -u)" = 0 ]; then PG_AS=(runuser -u postgres --); fi
{script}"#,
        common_sh().display()
    );
    std::process::Command::new("bash")
        .arg("-c")
        .arg(full)
        .arg("throwaway-pg")
        .args(args)
        .output()
        .unwrap()
}

impl ThrowawayPg {
    /// A fresh server on a free port (about 1 s).
    pub fn start() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("tributary-faults-pg-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        let out = bash(
            r#"pg_start_throwaway "$1" "$2""#,
            &[&port.to_string(), dir.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "the throwaway PostgreSQL did not start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Self { dir, url }
    }

    /// A pool on it with the schema applied.
    pub async fn pool(&self) -> PgPool {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&self.url)
            .await
            .unwrap();
        tributary::MIGRATOR.run(&pool).await.unwrap();
        pool
    }

    /// Runs `pg_ctl` with `script` (`$1` is the server's directory, `$2` the mode); panics,
    /// saying `what` failed, unless it succeeds.
    fn pg_ctl(&self, what: &str, script: &str, mode: &str) {
        let out = bash(script, &[self.dir.to_str().unwrap(), mode]);
        assert!(
            out.status.success(),
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pg_ctl stop -m MODE`, then `down` without a server, then `pg_ctl start`: an outage of a
    /// chosen length (a crash, then a slow recovery or failover). Returns how long the server
    /// was away.
    pub fn stop_for(&self, mode: &str, down: Duration) -> Duration {
        let started = std::time::Instant::now();
        self.pg_ctl(
            &format!("pg_ctl stop -m {mode}"),
            r#""${PG_AS[@]}" "$PGBIN/pg_ctl" -D "$1/data" -w -t 60 stop -m "$2""#,
            mode,
        );
        std::thread::sleep(down);
        self.pg_ctl(
            "pg_ctl start",
            // the options of the first start (port, socket directory…), as `pg_ctl restart`
            // would reuse them
            r#"opts=$(sed 's/^[^ ]* //' "$1/data/postmaster.opts")
"${PG_AS[@]}" "$PGBIN/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 60 start -o "$opts""#,
            mode,
        );
        started.elapsed()
    }

    /// `pg_ctl restart -m MODE` (`fast` or `immediate`); returns how long the server was away.
    pub fn restart(&self, mode: &str) -> Duration {
        let started = std::time::Instant::now();
        self.pg_ctl(
            &format!("pg_ctl restart -m {mode}"),
            r#""${PG_AS[@]}" "$PGBIN/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 60 restart -m "$2""#,
            mode,
        );
        started.elapsed()
    }
}

impl Drop for ThrowawayPg {
    fn drop(&mut self) {
        let _ = bash(
            r#""${PG_AS[@]}" "$PGBIN/pg_ctl" -D "$1/data" -w -t 30 stop -m immediate"#,
            &[self.dir.to_str().unwrap()],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
