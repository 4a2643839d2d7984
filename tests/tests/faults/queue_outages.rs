//! The queue (moto) going away: unreachable for a while under the workers, and down when the
//! workers start. The workers reach moto through a [`TcpCut`] the test cuts (every connection
//! dropped, new ones refused) and restores; the test itself talks to moto directly.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tributary::messages::Message;
use tributary::queue::{SqsQueue, SqsQueueSettings};
use tributary::testkit::moto::MotoServer;

use crate::chaos::TcpCut;
use crate::harness::{Expect, Figures, Onboarding, Scale, seeded, soak};
use crate::outages::{processed_streams, resumed};
use crate::workers::Workers;

/// What the queue scenarios expect: the clean outcome, over SQS, no retry charged.
const NO_RETRY_OVER_SQS: Expect = Expect {
    sqs: true,
    max_retries: Some(0),
    failing: BTreeMap::new(),
    either: BTreeMap::new(),
    dead_letters: 0,
    no_retries_for: BTreeSet::new(),
    check_runs: false,
};

/// A fresh queue on the shared moto server, and a proxy the workers reach it through.
struct ProxiedSqs {
    moto: &'static MotoServer,
    queue: SqsQueue,
    cut: TcpCut,
}

impl ProxiedSqs {
    async fn start() -> Self {
        let moto = MotoServer::shared();
        let queue = moto
            .queue(
                "faults",
                &SqsQueueSettings {
                    max_receives: 5,
                    visibility: Duration::from_secs(30),
                },
            )
            .await;
        let moto_addr = moto
            .endpoint()
            .trim_start_matches("http://")
            .parse()
            .unwrap();
        let cut = TcpCut::start(moto_addr).await;
        Self { moto, queue, cut }
    }

    /// A worker's environment for the queue through the proxy; with `dead_letter_url`, the
    /// dead-letter queue is named (else the worker reads it from the queue's RedrivePolicy).
    fn env(&self, dead_letter_url: bool) -> Vec<(&'static str, String)> {
        let proxied = format!("http://{}", self.cut.addr());
        let through = |url: &str| url.replace(&self.moto.endpoint(), &proxied);
        let mut env: Vec<(&'static str, String)> = self
            .moto
            .env()
            .into_iter()
            .filter(|(k, _)| *k != "AWS_ENDPOINT_URL")
            .collect();
        env.push(("AWS_ENDPOINT_URL", proxied.clone()));
        env.push(("TRIBUTARY_QUEUE", "sqs".to_owned()));
        env.push(("TRIBUTARY_SQS_QUEUE_URL", through(self.queue.url())));
        if dead_letter_url {
            env.push((
                "TRIBUTARY_SQS_DEAD_LETTER_QUEUE_URL",
                through(self.queue.dead_letter_url()),
            ));
        }
        env
    }

    /// Every message taken: what is still in the queue is a no-op for an ended run; no dead
    /// letter.
    async fn check_drained(&self, pool: &PgPool) {
        let client = self.moto.client();
        let left = client
            .receive_message()
            .queue_url(self.queue.url())
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
        for m in left.messages() {
            let body = m.body().unwrap_or_default();
            let Ok(Message::ContinueRun { run_id }) = Message::decode(body) else {
                panic!("a message left that is not a no-op: {body}");
            };
            let state: String =
                sqlx::query_scalar("SELECT state FROM integration_runs WHERE id = $1")
                    .bind(run_id)
                    .fetch_one(pool)
                    .await
                    .unwrap();
            assert!(
                ["processed", "error"].contains(&state.as_str()),
                "{body}: {state}"
            );
        }
        let dead = client
            .receive_message()
            .queue_url(self.queue.dead_letter_url())
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
        assert!(
            dead.messages().is_empty(),
            "dead letters: {:?}",
            dead.messages()
        );
    }
}

/// The queue unreachable for a while (1 cut; soak: 4) under two workers: nothing lost, no retry
/// charged.
#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn the_queue_unreachable_for_a_while_loses_nothing(pool: PgPool) {
    let (seed, mut rng) = seeded("queue outage");
    let sqs = ProxiedSqs::start().await;
    let url = crate::common::database_url(&pool);
    let scale = Scale::standard(60);
    let onboarding = Onboarding::direct(pool.clone(), &scale).await;
    let mut workers = Workers::new(&pool, &url, "sqsout").env(&sqs.env(false));
    workers.spawn_n(2);
    onboarding.enqueue_all(&sqs.queue).await;

    let outages = if soak() { 4 } else { 1 };
    let mut recoveries = Vec::new();
    let mut downtime = Duration::ZERO;
    for round in 0..outages {
        onboarding
            .wait_progress(10 * (round as i64 + 1), Duration::from_secs(120))
            .await;
        if onboarding.settled().await {
            break;
        }
        let down_for = Duration::from_millis(rng.u64(3_000..if soak() { 30_000 } else { 8_000 }));
        sqs.cut.cut();
        tokio::time::sleep(down_for).await;
        downtime += down_for;
        sqs.cut.restore();
        let before = processed_streams(&pool).await.unwrap_or(0);
        recoveries.push(
            resumed(
                &onboarding,
                before,
                Instant::now(),
                Duration::from_secs(120),
            )
            .await,
        );
    }
    onboarding.wait_settled(Duration::from_secs(300)).await;
    sqs.check_drained(&pool).await;

    let figures = Figures {
        scenario: "queue (moto) unreachable".into(),
        seed,
        faults: format!(
            "{} cut(s), {:.1} s without the queue",
            sqs.cut.cuts.load(std::sync::atomic::Ordering::SeqCst),
            downtime.as_secs_f64()
        ),
        recover: recoveries,
        ..Figures::default()
    };
    onboarding.check(&NO_RETRY_OVER_SQS, figures).await;
    workers.stop_all().await;
}

/// What a worker logs while the queue it was started with does not answer.
const WAITING_FOR_QUEUE: &str = "is not reachable yet: the worker waits for it";

/// Workers started while the queue is down (one told its dead-letter queue, one reading it
/// from the queue's RedrivePolicy): each logs that it waits for the queue, takes nothing, is
/// alive but not ready; once the queue answers, everything is processed once.
#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn workers_started_while_the_queue_is_down_wait_for_it_then_work(pool: PgPool) {
    let (seed, mut rng) = seeded("queue down at worker start");
    let sqs = ProxiedSqs::start().await;
    let url = crate::common::database_url(&pool);
    let scale = Scale::standard(60);
    let onboarding = Onboarding::direct(pool.clone(), &scale).await;
    // the messages are there before any worker: only the queue is missing
    onboarding.enqueue_all(&sqs.queue).await;
    sqs.cut.cut();
    let down = Instant::now();
    let mut named = Workers::new(&pool, &url, "sqsdown-dlq").env(&sqs.env(true));
    let mut redrive = Workers::new(&pool, &url, "sqsdown-redrive").env(&sqs.env(false));
    named.spawn();
    redrive.spawn();
    let mut procs: Vec<_> = named.procs.iter().chain(&redrive.procs).collect();
    for proc in &procs {
        proc.wait_for_log(WAITING_FOR_QUEUE, Duration::from_secs(60))
            .await;
        let (live, _) = crate::common::http_get(proc.health_port(), "/health/live").await;
        let (ready, body) = crate::common::http_get(proc.health_port(), "/health/ready").await;
        assert_eq!((live, ready), (200, 503), "{}: {body}", proc.name);
    }
    // a while longer without the queue (each worker tries again with a growing pause)
    tokio::time::sleep(Duration::from_millis(rng.u64(1_000..4_000))).await;
    assert_eq!(onboarding.stored().await, 0, "work done without a queue");
    sqs.cut.restore();
    let restored = Instant::now();
    let without = down.elapsed();
    let first = resumed(&onboarding, 0, restored, Duration::from_secs(120)).await;
    onboarding.wait_settled(Duration::from_secs(300)).await;
    let all_done = restored.elapsed();
    sqs.check_drained(&pool).await;
    for proc in procs.drain(..) {
        let log = proc.log();
        assert!(
            log.contains("the sqs queue at http://"),
            "{}: the waiting line names the queue:\n{log}",
            proc.name
        );
    }

    let figures = Figures {
        scenario: "queue (moto) down at worker start".into(),
        seed,
        faults: format!(
            "2 workers started without the queue (one with its dead-letter URL, one reading the \
             RedrivePolicy), {:.1} s without the queue; all runs done {:.1} s after it answered",
            without.as_secs_f64(),
            all_done.as_secs_f64()
        ),
        recover: vec![first],
        ..Figures::default()
    };
    onboarding.check(&NO_RETRY_OVER_SQS, figures).await;
    named.stop_all().await;
    redrive.stop_all().await;
}
