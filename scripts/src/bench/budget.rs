//! `bench-budget`: GitHub onboardings under a rate-limit budget (the fake GitHub's primary limit,
//! by default 40 requests per 20 s), against the theoretical minimum, with one worker, with two
//! workers spending one credential, and with a run resumed at once by another process
//! (`continue-run --inline`). Every worker is a processor with its own HTTP clients (its own
//! in-process pacing), as separate processes would be; what they share is PostgreSQL. A run that
//! is deferred is claimed again when it is due, as a worker's delayed message would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tributary::admin::{self, ConnectRequest};
use tributary::store::records;
use tributary::{Credentials, IntegrationProcessor, ProcessorConfig, Registry, RunOutcome};
use tributary_integrations::github::fake::{FakeGithub, FakeGithubOptions, GithubData, GithubSpec};
use tributary_integrations::github::{GithubIntegration, PLATFORM};
use uuid::Uuid;

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "bench-budget")]
pub struct BudgetBenchArgs {
    /// Requests of the budget's window.
    #[arg(long, default_value_t = 40)]
    pub limit: u32,
    /// The window, in seconds.
    #[arg(long, default_value_t = 20)]
    pub window_secs: u64,
    /// Simulated latency of every request, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub latency_ms: u64,
    /// Streams in flight at once per worker.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Pace from the budgets shared in PostgreSQL (false: each worker on its own, as before).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub shared: bool,
}

/// One repository's onboarding: the repository, then 10 per page: 15 pages of stargazers, 5 of
/// forks, 15 of issues, 15 of comments, 7 of review comments (58 requests).
fn spec(repositories: usize) -> GithubSpec {
    GithubSpec {
        repositories,
        users: 120,
        stars: 150,
        forks: 50,
        issues: 150,
        pull_every: 3,
        comments: 150,
        review_comments: 70,
    }
}

struct Bench {
    pool: PgPool,
    args: BudgetBenchArgs,
}

/// What one scenario measured.
struct Measured {
    wall: Duration,
    requests: usize,
    needed: usize,
    deferrals: usize,
}

impl Bench {
    async fn github(
        &self,
        repositories: usize,
        token: &str,
        limited: bool,
    ) -> anyhow::Result<FakeGithub> {
        let github = FakeGithub::start(
            GithubData::generate(spec(repositories)),
            FakeGithubOptions {
                token: Some(token.to_owned()),
                rate_limit: limited
                    .then_some((self.args.limit, Duration::from_secs(self.args.window_secs))),
            },
        )
        .await
        .context("starting the fake GitHub")?;
        github
            .server()
            .latency(Duration::from_millis(self.args.latency_ms));
        Ok(github)
    }

    /// A worker: a processor with its own registry (its own HTTP clients and pacing).
    fn worker(&self, name: &str) -> anyhow::Result<IntegrationProcessor> {
        let mut registry = Registry::new();
        registry.register(GithubIntegration::new().stream_concurrency(self.args.concurrency))?;
        if self.args.shared {
            registry.http().share_budgets(self.pool.clone());
        }
        let config = ProcessorConfig {
            worker_id: name.to_owned(),
            ..ProcessorConfig::default()
        };
        Ok(IntegrationProcessor::new(
            self.pool.clone(),
            Arc::new(registry),
            config,
        ))
    }

    async fn connect(
        &self,
        github: &FakeGithub,
        repository: &str,
        token: &str,
    ) -> anyhow::Result<(Uuid, Uuid)> {
        let mut registry = Registry::new();
        registry.register(GithubIntegration::new())?;
        let (integration, run) = admin::connect(
            &self.pool,
            &registry,
            ConnectRequest {
                tenant_id: Uuid::new_v4(),
                platform: PLATFORM.to_owned(),
                settings: json!({
                    "base_url": github.base_url(), "repositories": [repository], "per_page": 10
                }),
                credentials: Credentials::new(json!({ "token": token })),
            },
        )
        .await?;
        Ok((integration.id, run.id))
    }

    /// The requests one onboarding needs (no budget).
    async fn needed(&self) -> anyhow::Result<usize> {
        let token = format!("ghp_{}", Uuid::new_v4().simple());
        let github = self.github(1, &token, false).await?;
        let (_, run) = self.connect(&github, "org0/project0", &token).await?;
        drive(&self.worker("baseline")?, run, None).await?;
        Ok(github.server().request_count())
    }
}

/// Processes the run to its end as workers would: a deferred run is claimed again when due.
/// Returns how many times it was deferred; with `stop_at`, returns at that many deferrals.
async fn drive(
    worker: &IntegrationProcessor,
    run: Uuid,
    stop_at: Option<usize>,
) -> anyhow::Result<usize> {
    let mut deferrals = 0;
    loop {
        match worker.process_run(run, &CancellationToken::new()).await? {
            RunOutcome::Processed => return Ok(deferrals),
            RunOutcome::Delayed { until, .. } => {
                deferrals += 1;
                if stop_at == Some(deferrals) {
                    return Ok(deferrals);
                }
                // the worker's delayed message arrives half a second after the run is due
                let wait = (until - chrono::Utc::now()).to_std().unwrap_or_default();
                tokio::time::sleep(wait + Duration::from_millis(500)).await;
            }
            RunOutcome::NotClaimable { .. } => tokio::time::sleep(Duration::from_millis(50)).await,
            other => anyhow::bail!("run {run} ended {other:?}"),
        }
    }
}

pub async fn run(args: BudgetBenchArgs) -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
    let pool = tributary::db::connect(&url, 40).await?;
    tributary::db::migrate(&pool).await?;
    let bench = Bench { pool, args };
    let args = &bench.args;
    let needed = bench.needed().await?;
    let window = Duration::from_secs(args.window_secs);
    println!(
        "budget: {} requests per {} s (the fake GitHub's primary limit, per token); one onboarding needs {needed} requests ({} ms each); {} streams per worker; shared budgets: {}",
        args.limit, args.window_secs, args.latency_ms, args.concurrency, args.shared
    );
    let minimum = |requests: usize| {
        let windows = (requests.saturating_sub(1) / args.limit as usize) as u32;
        window * windows
    };
    let report = |name: &str, m: &Measured| {
        let min = minimum(m.needed);
        let over = m.requests.saturating_sub(m.needed);
        let ratio = m.wall.as_secs_f64() / min.as_secs_f64().max(1e-9);
        println!(
            "{name:<34} {:>6.1} s (minimum {:>4.1} s, {:.2}x) · {} requests, {over} over the budget · {} deferrals",
            m.wall.as_secs_f64(),
            min.as_secs_f64(),
            ratio,
            m.requests,
            m.deferrals
        );
        (ratio, over)
    };
    let mut worst: (f64, usize) = (0.0, 0);
    let mut keep = |r: (f64, usize)| worst = (worst.0.max(r.0), worst.1 + r.1);

    // one worker
    {
        let token = format!("ghp_{}", Uuid::new_v4().simple());
        let github = bench.github(1, &token, true).await?;
        let (integration, run) = bench.connect(&github, "org0/project0", &token).await?;
        let started = Instant::now();
        let deferrals = drive(&bench.worker("w1")?, run, None).await?;
        let m = Measured {
            wall: started.elapsed(),
            requests: github.server().request_count(),
            needed,
            deferrals,
        };
        check_stored(&bench.pool, integration).await?;
        keep(report("one worker", &m));
    }
    // two workers, one credential, one repository each
    {
        let token = format!("ghp_{}", Uuid::new_v4().simple());
        let github = bench.github(2, &token, true).await?;
        let (a_integration, a) = bench.connect(&github, "org0/project0", &token).await?;
        let (b_integration, b) = bench.connect(&github, "org1/project1", &token).await?;
        let (wa, wb) = (bench.worker("w1")?, bench.worker("w2")?);
        let started = Instant::now();
        let (da, db) = tokio::try_join!(drive(&wa, a, None), drive(&wb, b, None))?;
        let m = Measured {
            wall: started.elapsed(),
            requests: github.server().request_count(),
            needed: 2 * needed,
            deferrals: da + db,
        };
        check_stored(&bench.pool, a_integration).await?;
        check_stored(&bench.pool, b_integration).await?;
        keep(report("two workers, one credential", &m));
    }
    // deferred mid-window by one process, resumed at once by another
    {
        let token = format!("ghp_{}", Uuid::new_v4().simple());
        let github = bench.github(1, &token, true).await?;
        let (integration, run) = bench.connect(&github, "org0/project0", &token).await?;
        let started = Instant::now();
        let first = drive(&bench.worker("w1")?, run, Some(1)).await?;
        // `continue-run --inline`: the run is due now, in a process that has sent nothing yet
        admin::continue_run(&bench.pool, run).await?;
        let rest = drive(&bench.worker("continue-run")?, run, None).await?;
        let m = Measured {
            wall: started.elapsed(),
            requests: github.server().request_count(),
            needed,
            deferrals: first + rest,
        };
        check_stored(&bench.pool, integration).await?;
        keep(report("resumed at once by another process", &m));
    }
    println!(
        "worst: {:.2}x the minimum (target ≤ 1.2x), {} requests over the budget (target 0)",
        worst.0, worst.1
    );
    Ok(())
}

async fn check_stored(pool: &PgPool, integration: Uuid) -> anyhow::Result<()> {
    let stored = records::count_activities(pool, integration).await?;
    anyhow::ensure!(stored > 0, "integration {integration} stored no activity");
    Ok(())
}
