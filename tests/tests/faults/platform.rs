//! A platform that misbehaves: transient failures (5xx, 429 storms, hangs, cut bodies) cost
//! nothing but time; a page that is not JSON, a page that repeats forever and a record with a NUL
//! hurt only their own stream.

use std::collections::BTreeSet;
use std::time::Duration;

use sqlx::PgPool;
use tributary::testkit::{Fault, Reply};
use tributary_integrations::example_forum::Page;
use tributary_integrations::example_forum::fake::FakeForum;

use crate::chaos::{ChaosPlan, ChaosProxy};
use crate::common::database_url;
use crate::harness::{Expect, Figures, Onboarding, Scale, seeded, soak, start_forums};
use crate::workers::Workers;

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn thirty_percent_5xx_429_storms_hangs_and_cut_bodies_lose_nothing(pool: PgPool) {
    let (seed, _) = seeded("platform faults");
    let scale = Scale::standard(10);
    let url = database_url(&pool);
    let forums = start_forums(&scale, "forum-token").await;
    let plan = ChaosPlan {
        server_error: 0.30,
        rate_limit_storm: 0.02,
        storm_length: 5,
        // hangs cost the client's 30 s timeout each: soak only
        hang: if soak() { 0.01 } else { 0.0 },
        hang_for: Duration::from_secs(35),
        truncated: 0.05,
        not_json: 0.0,
    };
    let mut proxies = Vec::new();
    for (i, forum) in forums.iter().enumerate() {
        proxies.push(ChaosProxy::start(forum.base_url(), plan, seed.wrapping_add(i as u64)).await);
    }
    let urls: Vec<String> = proxies.iter().map(ChaosProxy::base_url).collect();
    let onboarding = Onboarding::connect(pool.clone(), forums, &urls, scale.per_page).await;
    let mut workers = Workers::new(&pool, &url, "flaky");
    workers.spawn_n(2);
    onboarding.enqueue_all(onboarding.pg_queue().as_ref()).await;
    onboarding.wait_settled(Duration::from_secs(420)).await;
    let injected: usize = proxies.iter().map(|p| p.counts.injected()).sum();
    let described: Vec<String> = proxies.iter().map(|p| p.counts.describe()).collect();
    let figures = Figures {
        scenario: "platform: 30% 5xx, 429 storms, cut bodies".into(),
        seed,
        faults: format!("{injected} ({})", described.join("; ")),
        ..Figures::default()
    };
    onboarding.check(&Expect::default(), figures).await;
    workers.stop_all().await;
}

/// The activity ids of one channel's posts or replies.
fn ids_of(forum: &FakeForum, channel: &str, replies: bool) -> BTreeSet<String> {
    forum.edit(|d| {
        if replies {
            d.replies
                .iter()
                .filter(|r| r.channel_id == channel)
                .map(|r| format!("reply:{}", r.id))
                .collect()
        } else {
            d.posts
                .iter()
                .filter(|p| p.channel_id == channel)
                .map(|p| format!("post:{}", p.id))
                .collect()
        }
    })
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_page_that_is_not_json_or_repeats_forever_fails_only_its_stream(pool: PgPool) {
    let (seed, _) = seeded("bad pages");
    let scale = Scale::standard(10);
    let url = database_url(&pool);
    let onboarding = Onboarding::direct(pool.clone(), &scale).await;
    let forums = &onboarding.forums;
    let mut expect = Expect {
        no_retries_for: [2].into(),
        ..Expect::default()
    };
    // integration 0: the second page of channel-1's replies is an HTML error page (200)
    let path = "/api/v1/channels/channel-1/replies";
    forums[0].server().inject_later(
        Fault::on(
            path,
            1,
            Reply::malformed("<html><body>Bad Gateway</body></html>"),
        )
        .after(1),
    );
    expect
        .failing
        .insert(0, ids_of(&forums[0], "channel-1", true));
    // integration 1: channel-0's posts answer the same page forever, always with a next page
    let first_page = forums[1].edit(|d| {
        let mut posts: Vec<_> = d
            .posts
            .iter()
            .filter(|p| p.channel_id == "channel-0")
            .cloned()
            .collect();
        posts.sort_by_key(|p| std::cmp::Reverse((p.created_at, p.id)));
        posts.truncate(scale.per_page as usize);
        posts
    });
    let repeating = |page: u32| {
        Reply::json(Page {
            items: first_page.clone(),
            page,
            next_page: Some(page + 1),
        })
    };
    forums[1]
        .server()
        .route("/api/v1/channels/channel-0/posts", [repeating(1)]);
    expect
        .failing
        .insert(1, ids_of(&forums[1], "channel-0", false));

    let mut workers = Workers::new(&pool, &url, "badpages");
    workers.spawn_n(2);
    onboarding.enqueue_all(onboarding.pg_queue().as_ref()).await;
    onboarding.wait_settled(Duration::from_secs(180)).await;
    let errors: Vec<(String, String)> = sqlx::query_as(
        "SELECT identifier, error::text FROM integration_streams WHERE state = 'error' ORDER BY identifier",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        errors.len(),
        2,
        "one stream of each failed for good: {errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|(id, e)| id.starts_with("replies:channel-1") && e.contains("malformed body")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|(id, e)| id.starts_with("posts:channel-0") && e.to_lowercase().contains("page")),
        "{errors:?}"
    );
    let figures = Figures {
        scenario: "platform: a non-JSON page, a page repeating forever".into(),
        seed,
        faults: "1 HTML page (200), 1 endless repeated page".into(),
        ..Figures::default()
    };
    onboarding.check(&expect, figures).await;
    workers.stop_all().await;
}

/// Issue 8 defect 1 (poison records): the NUL is stripped (or only its stream ends in `error`
/// with its SQLSTATE); no other stream is charged.
#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_record_with_a_nul_hurts_only_its_own_stream(pool: PgPool) {
    let (seed, _) = seeded("NUL record");
    let scale = Scale::standard(10);
    let url = database_url(&pool);
    let onboarding = Onboarding::direct(pool.clone(), &scale).await;
    let forum = &onboarding.forums[0];
    forum.edit(|d| {
        if let Some(post) = d.posts.iter_mut().find(|p| p.channel_id == "channel-1") {
            post.body = "before\u{0}after".to_owned();
            post.title = "a title with a \u{0} too".to_owned();
        }
    });
    let excused = ids_of(forum, "channel-1", false);
    let expect = Expect {
        either: [(0, (excused, vec!["22021", "22P05", "NUL", "\\u0000"]))].into(),
        no_retries_for: (1..onboarding.integrations.len()).collect(),
        ..Expect::default()
    };
    let mut workers = Workers::new(&pool, &url, "nul");
    workers.spawn_n(2);
    onboarding.enqueue_all(onboarding.pg_queue().as_ref()).await;
    onboarding.wait_settled(Duration::from_secs(180)).await;
    // the NUL integration's other streams were not charged either
    let charged: Vec<(String, i32)> = sqlx::query_as(
        "SELECT s.identifier, s.retries FROM integration_streams s
         JOIN integration_runs r ON r.id = s.run_id
         WHERE r.integration_id = $1 AND s.retries > 0 AND s.identifier NOT LIKE 'posts:channel-1%'",
    )
    .bind(onboarding.integrations[0].integration_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    let figures = Figures {
        scenario: "platform: a record with NUL".into(),
        seed,
        faults: format!(
            "1 post with U+0000 in its title and body; {} other streams of its run charged a retry",
            charged.len()
        ),
        ..Figures::default()
    };
    onboarding.check(&expect, figures).await;
    assert!(charged.is_empty(), "innocent streams charged: {charged:?}");
    workers.stop_all().await;
}
