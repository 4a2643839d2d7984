//! The onboarding every scenario runs, and the one invariant every scenario checks.
//!
//! An onboarding: several Example Forum integrations (each its own tenant and its own fake forum,
//! so members are counted per integration), no channel configured (a `channels` root whose page
//! publishes `posts:{channel}` and `replies:{channel}` child streams, each paged), all handed to
//! the workers through the queue.
//!
//! The invariant (see [`Onboarding::check`]): every expected activity and member stored exactly
//! once; every run `processed`, or `error` only where the scenario makes a stream fail for good,
//! with its reason stored; no run or stream left active; every message taken (none visible left,
//! what is left is a delayed no-op for an ended run) and no dead letter the scenario did not
//! cause.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::PgPool;
use tributary::admin::{self, ConnectRequest};
use tributary::messages::Message;
use tributary::queue::{PgQueue, PgQueueConfig, Queue};
use tributary::testkit::eventually;
use tributary_integrations::example_forum::PLATFORM;
use tributary_integrations::example_forum::fake::{
    DatasetSpec, FakeForum, ForumData, ForumOptions,
};
use uuid::Uuid;

/// `TRIBUTARY_SOAK=1`: the long version of every scenario (bigger forums, more faults), and the
/// scenarios that are too slow for CI.
pub fn soak() -> bool {
    std::env::var("TRIBUTARY_SOAK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The scenario's random source: `TRIBUTARY_FAULT_SEED` if set, else a fresh seed; printed
/// either way so a failure can be replayed.
pub fn seeded(scenario: &str) -> (u64, fastrand::Rng) {
    let seed = std::env::var("TRIBUTARY_FAULT_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("{scenario}: fault seed {seed} (replay with TRIBUTARY_FAULT_SEED={seed})");
    (seed, fastrand::Rng::with_seed(seed))
}

/// How big an onboarding is.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub integrations: usize,
    pub spec: DatasetSpec,
    pub per_page: u32,
    /// Added by the fake forum to every answer.
    pub latency: Duration,
}

impl Scale {
    /// Quick: 3 integrations × (1 + 2 × (4 + 8)) = 75 pages, 180 activities. Soak: 6 integrations
    /// × (1 + 4 × (12 + 36)) = 1,158 pages, 5,760 activities.
    pub fn standard(latency_ms: u64) -> Self {
        let (integrations, channels, posts, replies) =
            if soak() { (6, 4, 60, 3) } else { (3, 2, 20, 2) };
        Self {
            integrations,
            spec: DatasetSpec {
                channels,
                posts_per_channel: posts,
                replies_per_post: replies,
                members: 12,
            },
            per_page: 5,
            latency: Duration::from_millis(latency_ms),
        }
    }
}

/// One fake forum per integration, each with `token` as its credential.
pub async fn start_forums(scale: &Scale, token: &str) -> Vec<FakeForum> {
    let mut forums = Vec::new();
    for _ in 0..scale.integrations {
        forums.push(
            FakeForum::start(
                ForumData::generate(scale.spec),
                ForumOptions {
                    token: token.to_owned(),
                    latency: scale.latency,
                    ..ForumOptions::default()
                },
            )
            .await
            .unwrap(),
        );
    }
    forums
}

/// A connected integration and its onboarding run.
#[derive(Debug, Clone, Copy)]
pub struct Connected {
    pub integration_id: Uuid,
    pub tenant_id: Uuid,
    pub run_id: Uuid,
}

/// What a scenario allows besides the clean outcome.
#[derive(Debug, Default, Clone)]
pub struct Expect {
    /// Integrations (by index) whose run the scenario makes fail for good: `error`, reason
    /// stored, and these activity ids (the failed stream's) may be missing.
    pub failing: BTreeMap<usize, BTreeSet<String>>,
    /// Integrations (by index) whose run may end either way (a defect fixed by either outcome,
    /// e.g. a NUL stripped, or that stream ended with its SQLSTATE): what may be missing if it
    /// ends `error`, and words its stored error must contain.
    pub either: BTreeMap<usize, (BTreeSet<String>, Vec<&'static str>)>,
    /// Dead letters the scenario causes.
    pub dead_letters: usize,
    /// The most retries (stream retries + run retries) the scenario may charge, if bounded.
    pub max_retries: Option<i64>,
    /// Integrations whose retries must be 0 whatever the others do (innocent bystanders).
    pub no_retries_for: BTreeSet<usize>,
    /// Check runs (from ticks) are expected besides the onboarding.
    pub check_runs: bool,
    /// The scenario uses SQS: the postgres queue tables are not looked at.
    pub sqs: bool,
}

/// The measured result of a scenario, printed as one line and appended to
/// `TRIBUTARY_FAULT_REPORT` when set (the soak collects them there).
#[derive(Debug, Default)]
pub struct Figures {
    pub scenario: String,
    pub seed: u64,
    pub faults: String,
    pub runs_processed: usize,
    pub runs_error: usize,
    pub activities_expected: usize,
    pub activities_found: usize,
    pub members_expected: usize,
    pub members_found: usize,
    pub duplicates: usize,
    pub retries: i64,
    pub recover: Vec<Duration>,
    pub wall: Duration,
}

impl Figures {
    pub fn line(&self) -> String {
        let recover = if self.recover.is_empty() {
            "-".to_owned()
        } else {
            let max = self.recover.iter().max().copied().unwrap_or_default();
            let mean = self.recover.iter().sum::<Duration>() / self.recover.len() as u32;
            format!(
                "mean {:.1} s, max {:.1} s",
                mean.as_secs_f64(),
                max.as_secs_f64()
            )
        };
        format!(
            "FAULTS {} | seed {} | faults: {} | runs processed {}, error {} | activities {}/{} | members {}/{} | duplicates {} | retries charged {} | recovery {} | wall {:.1} s",
            self.scenario,
            self.seed,
            self.faults,
            self.runs_processed,
            self.runs_error,
            self.activities_found,
            self.activities_expected,
            self.members_found,
            self.members_expected,
            self.duplicates,
            self.retries,
            recover,
            self.wall.as_secs_f64()
        )
    }

    pub fn publish(&self) {
        let line = self.line();
        println!("{line}");
        eprintln!("{line}");
        if let Ok(path) = std::env::var("TRIBUTARY_FAULT_REPORT")
            && let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// The onboarding of a scenario.
pub struct Onboarding {
    pub pool: PgPool,
    pub forums: Vec<FakeForum>,
    pub integrations: Vec<Connected>,
    pub started: Instant,
}

impl Onboarding {
    /// Connects one integration per forum, reading it at `base_urls[i]` (the forum itself, or a
    /// proxy in front of it).
    pub async fn connect(
        pool: PgPool,
        forums: Vec<FakeForum>,
        base_urls: &[String],
        per_page: u32,
    ) -> Self {
        // the binaries are built before the clock starts
        crate::common::binary(crate::common::WORKER);
        // credentials sealed as in production, with the key the workers are given
        tributary::testkit::install_test_key();
        let registry = tributary_integrations::registry().unwrap();
        let mut integrations = Vec::new();
        for (forum, base_url) in forums.iter().zip(base_urls) {
            let tenant_id = Uuid::new_v4();
            let (integration, run) = admin::connect(
                &pool,
                &registry,
                ConnectRequest {
                    tenant_id,
                    platform: PLATFORM.to_owned(),
                    settings: json!({"base_url": base_url, "per_page": per_page}),
                    credentials: tributary::Credentials::new(json!({"token": forum.token()})),
                },
            )
            .await
            .unwrap();
            integrations.push(Connected {
                integration_id: integration.id,
                tenant_id,
                run_id: run.id,
            });
        }
        Self {
            pool,
            forums,
            integrations,
            started: Instant::now(),
        }
    }

    /// Forums read directly (no proxy).
    pub async fn direct(pool: PgPool, scale: &Scale) -> Self {
        let forums = start_forums(scale, "forum-token").await;
        let urls: Vec<String> = forums.iter().map(FakeForum::base_url).collect();
        Self::connect(pool, forums, &urls, scale.per_page).await
    }

    pub fn pg_queue(&self) -> Arc<PgQueue> {
        Arc::new(PgQueue::new(self.pool.clone(), PgQueueConfig::default()))
    }

    /// Hands every onboarding run to the workers (one message each) through `queue`.
    pub async fn enqueue_all(&self, queue: &dyn Queue) {
        for c in &self.integrations {
            tributary::queue::enqueue_run(&self.pool, queue, c.run_id)
                .await
                .unwrap();
        }
    }

    /// The messages of every run, `copies` times each.
    pub fn continue_messages(&self, copies: usize) -> Vec<Message> {
        self.integrations
            .iter()
            .flat_map(|c| std::iter::repeat_n(Message::continue_run(c.run_id), copies))
            .collect()
    }

    /// Activities stored so far (0 while the database does not answer).
    pub async fn stored(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM activities")
            .fetch_one(&self.pool)
            .await
            .unwrap_or(0)
    }

    /// Runs still active (`None` while the database does not answer).
    pub async fn active_runs(&self) -> Option<i64> {
        sqlx::query_scalar(
            "SELECT count(*) FROM integration_runs WHERE state IN ('pending', 'processing', 'delayed')",
        )
        .fetch_one(&self.pool)
        .await
        .ok()
    }

    /// Whether every run has ended.
    pub async fn settled(&self) -> bool {
        self.active_runs().await == Some(0)
    }

    /// Waits until every run has ended.
    pub async fn wait_settled(&self, deadline: Duration) {
        eventually(deadline, "every run to end", || async {
            self.settled().await.then_some(())
        })
        .await;
    }

    /// Waits until at least `n` activities are stored.
    pub async fn wait_progress(&self, n: i64, deadline: Duration) {
        eventually(deadline, &format!("{n} activities stored"), || async {
            (self.stored().await >= n).then_some(())
        })
        .await;
    }

    /// Waits until there is a processed check run per integration.
    pub async fn wait_checks(&self, deadline: Duration) {
        let n = self.integrations.len() as i64;
        eventually(deadline, "a check run per integration", || async {
            let checks: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM integration_runs WHERE NOT onboarding AND state = 'processed'",
            )
            .fetch_one(&self.pool)
            .await
            .unwrap_or(0);
            (checks >= n).then_some(())
        })
        .await;
    }

    /// Every check run is keyed by its slot, and no (integration, slot) was checked twice.
    pub async fn assert_one_check_per_slot(&self) {
        let per_slot: Vec<(Uuid, Option<String>, i64)> = sqlx::query_as(
            "SELECT integration_id, trigger_key, count(*) FROM integration_runs WHERE NOT onboarding
             GROUP BY 1, 2 HAVING count(*) > 1 OR trigger_key IS NULL",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap();
        assert!(
            per_slot.is_empty(),
            "checks not keyed by one slot: {per_slot:?}"
        );
    }

    /// Checks the invariant; returns the figures (panics, naming every violation, if it does
    /// not hold).
    pub async fn check(&self, expect: &Expect, mut figures: Figures) -> Figures {
        figures.wall = self.started.elapsed();
        let mut violations = Vec::new();
        let pool = &self.pool;
        let stuck: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, state FROM integration_runs WHERE state IN ('pending', 'processing', 'delayed')",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        if !stuck.is_empty() {
            violations.push(format!("runs left active: {stuck:?}"));
        }
        let processing: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT run_id, identifier FROM integration_streams WHERE state = 'processing'",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        if !processing.is_empty() {
            violations.push(format!("streams left processing: {processing:?}"));
        }
        let pending: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT s.run_id, s.identifier FROM integration_streams s
             JOIN integration_runs r ON r.id = s.run_id
             WHERE s.state = 'pending' AND r.state = 'processed'",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        if !pending.is_empty() {
            violations.push(format!("streams pending in processed runs: {pending:?}"));
        }

        for (i, (c, forum)) in self.integrations.iter().zip(&self.forums).enumerate() {
            self.check_integration(i, c, forum, expect, &mut figures, &mut violations)
                .await;
        }
        figures.retries = sqlx::query_scalar::<_, i64>(
            "SELECT (SELECT coalesce(sum(retries), 0) FROM integration_streams)
                  + (SELECT coalesce(sum(retries), 0) FROM integration_runs)",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if let Some(max) = expect.max_retries
            && figures.retries > max
        {
            violations.push(format!(
                "{} retries charged, at most {max} expected",
                figures.retries
            ));
        }
        if !expect.sqs {
            self.check_messages(expect, &mut violations).await;
        }
        figures.publish();
        assert!(
            violations.is_empty(),
            "the invariant does not hold ({}):\n  {}",
            figures.line(),
            violations.join("\n  ")
        );
        figures
    }

    async fn check_integration(
        &self,
        i: usize,
        c: &Connected,
        forum: &FakeForum,
        expect: &Expect,
        figures: &mut Figures,
        violations: &mut Vec<String>,
    ) {
        let pool = &self.pool;
        let runs: Vec<(Uuid, String, bool, Option<serde_json::Value>)> = sqlx::query_as(
            "SELECT id, state, onboarding, error FROM integration_runs WHERE integration_id = $1
             ORDER BY created_at",
        )
        .bind(c.integration_id)
        .fetch_all(pool)
        .await
        .unwrap();
        let onboardings = runs.iter().filter(|r| r.2).count();
        if onboardings != 1 || (!expect.check_runs && runs.len() != 1) {
            violations.push(format!(
                "integration {i}: runs {runs:?}, one onboarding expected"
            ));
        }
        let stream_errors: Vec<String> = sqlx::query_scalar(
            "SELECT s.identifier || ': ' || s.error::text FROM integration_streams s
             JOIN integration_runs r ON r.id = s.run_id
             WHERE r.integration_id = $1 AND s.state = 'error'",
        )
        .bind(c.integration_id)
        .fetch_all(pool)
        .await
        .unwrap();
        let mut excused = BTreeSet::new();
        for (id, state, _, error) in &runs {
            match state.as_str() {
                "processed" => figures.runs_processed += 1,
                "error" => {
                    figures.runs_error += 1;
                    let reason = format!("{error:?} {}", stream_errors.join("; "));
                    if let Some(missing) = expect.failing.get(&i) {
                        excused.extend(missing.iter().cloned());
                        if stream_errors.is_empty() && error.is_none() {
                            violations.push(format!(
                                "integration {i}: run {id} ended error with no reason stored"
                            ));
                        }
                    } else if let Some((missing, words)) = expect.either.get(&i) {
                        excused.extend(missing.iter().cloned());
                        if !words.iter().any(|w| reason.contains(w)) {
                            violations.push(format!(
                                "integration {i}: run {id} ended error without any of {words:?} in its reason: {reason}"
                            ));
                        }
                    } else {
                        violations.push(format!("integration {i}: run {id} ended error: {reason}"));
                    }
                }
                other => violations.push(format!("integration {i}: run {id} is {other}")),
            }
        }
        if expect.failing.contains_key(&i) && !runs.iter().any(|r| r.1 == "error") {
            violations.push(format!(
                "integration {i}: the scenario makes a stream fail for good, but no run ended error"
            ));
        }

        let expected = forum.expected_activities();
        let found: Vec<(String, i64)> = sqlx::query_as(
            "SELECT source_id, count(*) FROM activities WHERE tenant_id = $1 GROUP BY source_id",
        )
        .bind(c.tenant_id)
        .fetch_all(pool)
        .await
        .unwrap();
        figures.activities_expected += expected.len();
        figures.activities_found += found.len();
        figures.duplicates += found.iter().map(|(_, n)| (*n - 1) as usize).sum::<usize>();
        let found: BTreeSet<String> = found.into_iter().map(|(id, _)| id).collect();
        let missing: Vec<&String> = expected
            .difference(&found)
            .filter(|id| !excused.contains(*id))
            .collect();
        let unexpected: Vec<&String> = found.difference(&expected).collect();
        if !missing.is_empty() {
            violations.push(format!(
                "integration {i}: {} activities missing, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            ));
        }
        if !unexpected.is_empty() {
            violations.push(format!(
                "integration {i}: activities not on the forum: {unexpected:?}"
            ));
        }

        let members_expected = forum.expected_members();
        let members: BTreeSet<String> =
            sqlx::query_scalar("SELECT source_id FROM members WHERE tenant_id = $1")
                .bind(c.tenant_id)
                .fetch_all(pool)
                .await
                .unwrap()
                .into_iter()
                .collect();
        figures.members_expected += members_expected.len();
        figures.members_found += members.len();
        let members_missing = members_expected.difference(&members).count();
        if (members_missing > 0 && excused.is_empty()) || !members.is_subset(&members_expected) {
            violations.push(format!(
                "integration {i}: members {:?}, expected {members_expected:?}",
                members
            ));
        }
        if expect.no_retries_for.contains(&i) {
            let retries: i64 = sqlx::query_scalar(
                "SELECT coalesce(sum(s.retries), 0)::bigint + coalesce(max(r.retries), 0)::bigint
                 FROM integration_runs r LEFT JOIN integration_streams s ON s.run_id = r.id
                 WHERE r.integration_id = $1",
            )
            .bind(c.integration_id)
            .fetch_one(pool)
            .await
            .unwrap();
            if retries != 0 {
                violations.push(format!(
                    "integration {i}: an innocent bystander was charged {retries} retries"
                ));
            }
        }
    }

    /// Every message taken: none visible is left once the workers had time to take it, what is
    /// left (delayed) names an ended run; dead letters are the ones the scenario causes, each
    /// with its reason.
    async fn check_messages(&self, expect: &Expect, violations: &mut Vec<String>) {
        let pool = &self.pool;
        let visible = || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM queue_messages WHERE visible_at <= now()",
            )
            .fetch_one(pool)
            .await
            .ok()
        };
        let until = Instant::now() + Duration::from_secs(30);
        while visible().await != Some(0) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some(n) = visible().await.filter(|n| *n > 0) {
            violations.push(format!("{n} visible messages nobody took"));
        }
        // a handled message is deleted up to `ACK_DELAY` late (acks are batched): what is left
        // is judged once the workers had a moment to delete it
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.messages_not_noop().await;
            if left.is_empty() {
                break;
            }
            if Instant::now() >= until {
                for body in left {
                    violations.push(format!("a message left that is not a no-op: {body}"));
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let dead: Vec<(String, String)> =
            sqlx::query_as("SELECT body, reason FROM queue_dead_letters")
                .fetch_all(pool)
                .await
                .unwrap();
        if dead.len() != expect.dead_letters || dead.iter().any(|(_, r)| r.trim().is_empty()) {
            violations.push(format!(
                "dead letters {dead:?}, {} expected (each with its reason)",
                expect.dead_letters
            ));
        }
    }

    /// The messages still in the queue that would do something if delivered: anything but a
    /// tick or a `continue_run` of an ended run.
    async fn messages_not_noop(&self) -> Vec<String> {
        let pool = &self.pool;
        let left: Vec<String> = sqlx::query_scalar("SELECT body FROM queue_messages")
            .fetch_all(pool)
            .await
            .unwrap();
        let mut not_noop = Vec::new();
        for body in left {
            let ended = match Message::decode(&body) {
                Ok(Message::ContinueRun { run_id }) => sqlx::query_scalar::<_, String>(
                    "SELECT state FROM integration_runs WHERE id = $1",
                )
                .bind(run_id)
                .fetch_optional(pool)
                .await
                .unwrap()
                .is_some_and(|s| ["processed", "error", "cancelled"].contains(&s.as_str())),
                // a tick still in flight is handled like any tick: at most one run per slot
                Ok(Message::Tick { .. }) => true,
                _ => false,
            };
            if !ended {
                not_noop.push(body);
            }
        }
        not_noop
    }
}
