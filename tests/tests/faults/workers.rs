//! The real `tributary-worker` and `tributary-tick-generator` processes of a scenario: started,
//! killed, terminated and replaced, with the time it took the runs a dead worker held to be
//! taken over.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use crate::common::{Proc, TICK_GENERATOR, WORKER, with};

/// The environment of a worker on `database_url`: the end-to-end tests' short leases and
/// intervals (lease 3 s, heartbeat 0.5 s, rescue every 1 s, visibility 6 s), plus `extra`.
pub fn worker_env(
    pool: &PgPool,
    database_url: &str,
    name: &str,
    extra: &[(&str, String)],
) -> Vec<(String, String)> {
    let env = with(
        crate::common::worker_env(pool, name),
        &[("DATABASE_URL", database_url.to_owned())],
    );
    with(env, extra)
}

/// Workers of a scenario.
pub struct Workers {
    pool: PgPool,
    database_url: String,
    extra: Vec<(&'static str, String)>,
    prefix: String,
    started: usize,
    pub procs: Vec<Proc>,
    pub kills: usize,
    pub terms: usize,
    /// For each fault: how long until every run the worker held was taken over (or ended).
    pub recoveries: Vec<Duration>,
}

impl Workers {
    pub fn new(pool: &PgPool, database_url: &str, prefix: &str) -> Self {
        Self {
            pool: pool.clone(),
            database_url: database_url.to_owned(),
            extra: Vec::new(),
            prefix: prefix.to_owned(),
            started: 0,
            procs: Vec::new(),
            kills: 0,
            terms: 0,
            recoveries: Vec::new(),
        }
    }

    /// Extra environment for every worker started from now on.
    pub fn env(mut self, extra: &[(&'static str, String)]) -> Self {
        self.extra.extend(extra.iter().cloned());
        self
    }

    /// Starts one more worker; returns its id.
    pub fn spawn(&mut self) -> String {
        self.spawn_with(&[])
    }

    /// Starts one more worker with `extra` environment of its own; returns its id.
    pub fn spawn_with(&mut self, extra: &[(&'static str, String)]) -> String {
        self.started += 1;
        let name = format!("{}-{}", self.prefix, self.started);
        let mut env = worker_env(&self.pool, &self.database_url, &name, &self.extra);
        env = crate::common::with(env, extra);
        self.procs.push(Proc::spawn(WORKER, &name, &env));
        name
    }

    pub fn spawn_n(&mut self, n: usize) {
        for _ in 0..n {
            self.spawn();
        }
    }

    /// The runs worker `id` holds now, with their attempt.
    async fn held(&self, id: &str) -> Vec<(Uuid, i64)> {
        sqlx::query_as(
            "SELECT id, attempt FROM integration_runs WHERE lease_owner = $1 AND state = 'processing'",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .unwrap_or_default()
    }

    /// SIGKILLs worker `index` and starts a replacement at once (as a supervisor would); returns
    /// the runs the dead worker held, to be measured with [`Workers::wait_taken_over`].
    pub async fn kill_and_replace(&mut self, index: usize) -> (Instant, Vec<(Uuid, i64)>) {
        let mut proc = self.procs.remove(index);
        let id = proc.name.clone();
        let held = self.held(&id).await;
        proc.kill().await;
        let killed = Instant::now();
        self.kills += 1;
        drop(proc);
        self.spawn();
        (killed, held)
    }

    /// Waits until every run in `held` was claimed again (a higher attempt) or ended, and
    /// records how long it took since `since`.
    pub async fn wait_taken_over(
        &mut self,
        since: Instant,
        held: &[(Uuid, i64)],
        deadline: Duration,
    ) {
        if held.is_empty() {
            return;
        }
        let until = Instant::now() + deadline;
        loop {
            if self.all_taken(held).await {
                self.recoveries.push(since.elapsed());
                return;
            }
            assert!(
                Instant::now() < until,
                "the runs {held:?} of a dead worker were not taken over within {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn all_taken(&self, held: &[(Uuid, i64)]) -> bool {
        for (id, attempt) in held {
            let now: Option<(i64, String)> =
                sqlx::query_as("SELECT attempt, state FROM integration_runs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .ok()
                    .flatten();
            match now {
                Some((a, state)) if a > *attempt || state != "processing" => {}
                _ => return false,
            }
        }
        true
    }

    /// SIGTERMs worker `index`, waits for its exit (code 0, within `deadline`), checks that it
    /// left no stream `processing`, and starts a replacement. Returns how long the exit took.
    pub async fn terminate_and_replace(&mut self, index: usize, deadline: Duration) -> Duration {
        let mut proc = self.procs.remove(index);
        let id = proc.name.clone();
        proc.signal("TERM");
        let (code, took) = proc.wait_exit(deadline).await;
        assert_eq!(code, Some(0), "{id} exited with {code:?}:\n{}", proc.log());
        self.terms += 1;
        let left: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT s.run_id, s.identifier FROM integration_streams s
             JOIN integration_runs r ON r.id = s.run_id
             WHERE s.state = 'processing' AND (r.lease_owner = $1 OR r.state <> 'processing')",
        )
        .bind(&id)
        .fetch_all(&self.pool)
        .await
        .unwrap();
        assert!(left.is_empty(), "{id} left streams processing: {left:?}");
        drop(proc);
        self.spawn();
        took
    }

    /// Stops every worker with SIGTERM (their logs are printed if the test fails, or with
    /// `TRIBUTARY_FAULT_LOGS=1`).
    pub async fn stop_all(&mut self) {
        for proc in &mut self.procs {
            proc.signal("TERM");
        }
        for proc in &mut self.procs {
            let _ = proc.wait_exit(Duration::from_secs(30)).await;
        }
        if std::env::var("TRIBUTARY_FAULT_LOGS").is_ok_and(|v| !v.is_empty() && v != "0") {
            for proc in &self.procs {
                eprintln!("----- log of {} -----\n{}", proc.name, proc.log());
            }
        }
    }

    /// Every worker's log, concatenated.
    pub fn logs(&self) -> String {
        self.procs
            .iter()
            .map(Proc::log)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A tick generator on `database_url`.
pub fn tick_generator(database_url: &str, name: &str) -> Proc {
    let env = vec![
        ("DATABASE_URL".to_owned(), database_url.to_owned()),
        ("TRIBUTARY_GENERATOR_ID".to_owned(), name.to_owned()),
        ("RUST_LOG".to_owned(), "info,sqlx=warn".to_owned()),
    ];
    Proc::spawn(TICK_GENERATOR, name, &env)
}
