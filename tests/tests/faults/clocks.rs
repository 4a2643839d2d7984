//! Worker clocks a few minutes apart (issue 8 item 7): workers whose own clock is 2 and 3
//! minutes behind and 5 minutes ahead (libfaketime preloaded into the real worker binary) judge
//! ticks by the database's clock: none refused as "in the future", none dropped as stale, the
//! onboarding and every check processed once.
//!
//! libfaketime comes from Debian's `faketime` package, installed by `scripts/lib/faketime.sh`
//! (sourced by scripts/test and scripts/soak), which exports `TRIBUTARY_FAKETIME_LIB`. Without
//! it the scenario fails under `CI=true` and is skipped, saying so, elsewhere.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tributary::messages::{Message, TickSlot};
use tributary::queue::Queue;
use tributary::testkit::eventually;

use crate::chaos::{ChaosPlan, ChaosProxy};
use crate::common::database_url;
use crate::harness::{Expect, Figures, Onboarding, Scale, seeded, start_forums};
use crate::workers::Workers;

/// The workers' clocks, as libfaketime offsets, and the same in seconds.
const SKEWS: [(&str, i64); 3] = [("-2m", -120), ("-3m", -180), ("+5m", 300)];

/// The library to preload, or `None` (skip) outside CI; in CI a missing library fails the test.
fn faketime_lib() -> Option<PathBuf> {
    let found = std::env::var_os("TRIBUTARY_FAKETIME_LIB")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                "/usr/lib/faketime/libfaketime.so.1",
            ]
            .map(PathBuf::from),
        )
        .find(|p| p.is_file());
    if found.is_none() {
        let why = "libfaketime is not installed: the clock-skew scenario needs it \
                   (scripts/lib/faketime.sh installs Debian's `faketime`; or set \
                   TRIBUTARY_FAKETIME_LIB to libfaketime.so.1)";
        assert!(!in_ci(), "{why}");
        eprintln!("SKIPPED: {why}");
    }
    found
}

/// `CI` set (and not empty, `0` or `false`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The time of a worker's first log line (its own clock), if it has logged.
fn first_log_time(log: &str) -> Option<DateTime<Utc>> {
    log.lines()
        .find_map(|line| line.split_whitespace().next()?.parse().ok())
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn workers_with_clocks_minutes_apart_judge_ticks_by_the_database(pool: PgPool) {
    let Some(lib) = faketime_lib() else { return };
    let (seed, _) = seeded("worker clocks minutes apart");
    let url = database_url(&pool);
    let scale = Scale::standard(10);
    // a flaky platform: retry backoffs and rate-limit deferrals are timed by skewed workers too
    let forums = start_forums(&scale, "forum-token").await;
    let plan = ChaosPlan {
        server_error: 0.10,
        rate_limit_storm: 0.02,
        storm_length: 3,
        ..ChaosPlan::default()
    };
    let mut proxies = Vec::new();
    for (i, forum) in forums.iter().enumerate() {
        proxies.push(ChaosProxy::start(forum.base_url(), plan, seed.wrapping_add(i as u64)).await);
    }
    let urls: Vec<String> = proxies.iter().map(ChaosProxy::base_url).collect();
    let onboarding = Onboarding::connect(pool.clone(), forums, &urls, scale.per_page).await;
    let mut workers = Workers::new(&pool, &url, "skewed");
    for (offset, _) in SKEWS {
        workers.spawn_with(&[
            ("LD_PRELOAD", lib.display().to_string()),
            ("FAKETIME", offset.to_owned()),
            // leases, heartbeats and timeouts run on the monotonic clock, as on a real host
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
        ]);
    }
    // each worker's clock is what it was told (the scenario proves nothing otherwise)
    for (proc, (offset, secs)) in workers.procs.iter().zip(SKEWS) {
        let own = eventually(Duration::from_secs(60), "a log line", || async {
            first_log_time(&proc.log())
        })
        .await;
        let skew = (own - Utc::now()).num_seconds();
        assert!(
            (skew - secs).abs() < 30,
            "{} runs {offset} but its clock is {skew} s off",
            proc.name
        );
    }
    let queue = onboarding.pg_queue();
    onboarding.enqueue_all(queue.as_ref()).await;
    let onboarded = Instant::now();
    onboarding.wait_settled(Duration::from_secs(120)).await;
    let onboarded = onboarded.elapsed();

    // ticks of the database's current slot, as a tick generator sends them, until every
    // worker has handled one (each judges it by the database's clock: due)
    let started = Instant::now();
    let mut sent = 0;
    let until = Instant::now() + Duration::from_secs(90);
    while !workers
        .procs
        .iter()
        .all(|p| p.log().contains("check runs scheduled"))
    {
        assert!(
            Instant::now() < until,
            "not every worker handled a tick within 90 s ({sent} sent):\n{}",
            workers.logs()
        );
        let now = tributary::store::clock::now(&pool).await.unwrap();
        let tick = Message::Tick {
            slot: TickSlot::containing(now),
        };
        queue.send((&tick).into()).await.unwrap();
        sent += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // one check per integration and slot, all processed
    onboarding.wait_checks(Duration::from_secs(90)).await;
    onboarding.wait_settled(Duration::from_secs(90)).await;
    let checks_within = started.elapsed();
    onboarding.assert_one_check_per_slot().await;
    for proc in &workers.procs {
        let log = proc.log();
        for wrong in ["stale tick", "in the future", "message refused"] {
            assert!(!log.contains(wrong), "{}: `{wrong}`:\n{log}", proc.name);
        }
    }

    let figures = Figures {
        scenario: "worker clocks minutes apart".into(),
        seed,
        faults: format!(
            "3 workers at {}; platform {}; onboarding {:.1} s; {sent} ticks sent, every worker handled one, checks done within {:.1} s",
            SKEWS.map(|(o, _)| o).join(", "),
            proxies
                .iter()
                .map(|p| p.counts.describe())
                .collect::<Vec<_>>()
                .join("; "),
            onboarded.as_secs_f64(),
            checks_within.as_secs_f64()
        ),
        ..Figures::default()
    };
    onboarding
        .check(
            &Expect {
                check_runs: true,
                ..Expect::default()
            },
            figures,
        )
        .await;
    workers.stop_all().await;
}
