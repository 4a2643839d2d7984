//! The Hacker News integration through the real processor and PostgreSQL, against the fake HN
//! (Algolia and the official API on one testkit server).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use sqlx::PgPool;
use tributary::store::runs::RunState;
use tributary::store::streams::StreamState;
use tributary::testkit::{Fault, Harness, Reply, Request, first_deferral};
use tributary::{ErrorKind, RunOutcome};
use tributary_integrations::hackernews::fake::{
    ALGOLIA_PREFIX, FIREBASE_PREFIX, FakeHn, GHOST, HnData, HnSpec, Kind, URL,
};
use tributary_integrations::hackernews::{HackerNewsIntegration, PLATFORM};

const SPEC: HnSpec = HnSpec {
    users: 6,
    stories: 12,
    comments_per_story: 6,
};
const KEYWORDS: [&str; 2] = ["rust", "postgres"];
const TERMS: [&str; 3] = ["rust", "postgres", URL];
const HITS_PER_PAGE: usize = 5;

async fn setup(pool: PgPool, data: HnData) -> (Harness, FakeHn) {
    let hn = FakeHn::start(data).await.unwrap();
    let service = HackerNewsIntegration::new();
    let mut harness = Harness::with_service(pool, service);
    harness.config.max_inline_wait = Duration::from_millis(500);
    (harness, hn)
}

async fn generated(pool: PgPool) -> (Harness, FakeHn) {
    setup(pool, HnData::generate(SPEC)).await
}

fn settings(hn: &FakeHn) -> Value {
    json!({
        "keywords": KEYWORDS,
        "urls": [URL],
        "algolia_base_url": hn.algolia_base_url(),
        "firebase_base_url": hn.firebase_base_url(),
        "hits_per_page": HITS_PER_PAGE,
        "max_requests_per_second": 100,
    })
}

fn expected_activities(hn: &FakeHn) -> BTreeSet<String> {
    hn.edit(|d| d.expected_activities(&TERMS))
}

fn search_path() -> String {
    format!("{ALGOLIA_PREFIX}/search_by_date")
}

/// Requests of a keyset-paged search over items created at `times`: a page of `per_page`
/// newest, then the next window `created_at_i<=` its oldest, while pages are full and more match.
fn keyset_pages(mut times: Vec<u64>, per_page: usize) -> usize {
    times.sort_unstable_by(|a, b| b.cmp(a));
    let mut bound: Option<u64> = None;
    for pages in 1.. {
        let window: Vec<u64> = times
            .iter()
            .copied()
            .filter(|t| bound.is_none_or(|b| *t <= b))
            .collect();
        let page = &window[..window.len().min(per_page)];
        if page.len() < per_page || window.len() <= page.len() {
            return pages;
        }
        bound = page.last().copied();
    }
    unreachable!()
}

/// Requests an onboarding of [`TERMS`] needs: (search pages, thread pages by story, users).
fn expected_requests(hn: &FakeHn) -> (usize, BTreeMap<u64, usize>, usize) {
    hn.edit(|d| {
        let mut searches = 0;
        let mut threads = BTreeMap::new();
        for term in TERMS {
            let matches = d.matches(term);
            searches += keyset_pages(matches.iter().map(|i| i.time).collect(), HITS_PER_PAGE);
            for story in matches.iter().filter(|i| i.kind == Kind::Story) {
                let comments = d.comments_of(story.id);
                if !comments.is_empty() {
                    let times = comments.iter().map(|c| c.time).collect();
                    threads.insert(story.id, keyset_pages(times, HITS_PER_PAGE));
                }
            }
        }
        (searches, threads, d.expected_members(&TERMS).len())
    })
}

fn searches(hn: &FakeHn) -> Vec<Request> {
    let path = search_path();
    hn.server()
        .requests()
        .into_iter()
        .filter(|r| r.path == path)
        .collect()
}

/// The story ids of the thread requests, one per request.
fn thread_requests(hn: &FakeHn) -> Vec<u64> {
    searches(hn)
        .iter()
        .filter_map(|r| {
            r.query("tags")?
                .strip_prefix("comment,story_")?
                .parse()
                .ok()
        })
        .collect()
}

fn user_requests(hn: &FakeHn) -> Vec<String> {
    hn.server()
        .requests()
        .into_iter()
        .filter_map(|r| {
            let name = r.path.strip_prefix(&format!("{FIREBASE_PREFIX}/user/"))?;
            Some(name.trim_end_matches(".json").to_owned())
        })
        .collect()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn onboarding_over_several_time_windows_produces_exactly_the_expected_members_and_activities(
    pool: PgPool,
) {
    let (h, hn) = generated(pool).await;
    hn.server().latency(Duration::from_millis(20));
    let report = h.onboard(PLATFORM, settings(&hn), json!({})).await;
    assert_eq!(
        report.run.state,
        RunState::Processed,
        "{:?}",
        report.outcomes
    );
    let expected = expected_activities(&hn);
    assert!(expected.len() > 60, "a sizeable HN: {}", expected.len());
    assert_eq!(report.activity_ids(), expected);
    assert_eq!(report.run.activities_created as usize, expected.len());
    assert_eq!(
        report.run.activities_updated, 0,
        "an item found by several searches (or by a search and its thread) is written the same \
         way by each: its channel comes from the item"
    );
    assert_eq!(report.member_ids(), hn.edit(|d| d.expected_members(&TERMS)));

    // request economy: every window once, every thread once, every author once
    let (search_pages, thread_pages, users) = expected_requests(&hn);
    let threads = thread_requests(&hn);
    let mut per_story: BTreeMap<u64, usize> = BTreeMap::new();
    for story in &threads {
        *per_story.entry(*story).or_default() += 1;
    }
    assert_eq!(
        per_story, thread_pages,
        "each thread read once, page by page"
    );
    let both = hn.edit(|d| {
        d.matches("rust")
            .iter()
            .find(|i| i.kind == Kind::Story && d.matches("postgres").contains(i))
            .map(|i| i.id)
            .unwrap()
    });
    assert!(
        thread_pages.contains_key(&both),
        "a story of both keywords has a thread"
    );
    let first_pages = searches(&hn)
        .iter()
        .filter(|r| {
            r.query("tags") == Some(format!("comment,story_{both}").as_str())
                && r.query("numericFilters").is_none()
        })
        .count();
    assert_eq!(first_pages, 1, "found by two keywords, read once");
    let user_names = user_requests(&hn);
    assert_eq!(user_names.len(), users, "each author once");
    assert_eq!(
        user_names.iter().collect::<BTreeSet<_>>().len(),
        user_names.len()
    );
    let thread_count: usize = thread_pages.values().sum();
    for term in TERMS {
        let windows = searches(&hn)
            .iter()
            .filter(|r| r.query("query") == Some(term))
            .count();
        assert!(windows >= 2, "several windows for `{term}`: {windows}");
    }
    assert_eq!(
        hn.server().request_count(),
        search_pages + thread_count + users
    );
    for request in searches(&hn) {
        assert_eq!(request.query("hitsPerPage"), Some("5"));
        if request.query("query").is_some() {
            assert_eq!(request.query("tags"), Some("(story,comment)"));
        }
        // onboarding reads everything: only the windows' upper bounds
        if let Some(filters) = request.query("numericFilters") {
            assert!(filters.starts_with("created_at_i<="), "{filters}");
        }
    }
    assert!(
        hn.server().max_in_flight() >= 2,
        "independent streams run concurrently"
    );

    // stories, comments with their parents, members with their profiles
    let by_id = |id: u64| {
        report
            .activities
            .iter()
            .find(|a| a.source_id == format!("item:{id}"))
            .unwrap()
    };
    let (story, comment, reply) = hn.edit(|d| {
        let story = d.item(both).unwrap().clone();
        let comments = d.comments_of(both);
        let reply = comments.iter().find(|c| c.parent != Some(both)).unwrap();
        (story, comments[0].clone(), (*reply).clone())
    });
    let stored = by_id(story.id);
    assert_eq!(stored.activity_type, "story");
    assert_eq!(stored.title, story.title);
    assert_eq!(stored.attributes["url"], json!(story.url));
    assert_eq!(stored.attributes["num_comments"], SPEC.comments_per_story);
    assert_eq!(stored.member_source_id, story.author.clone().unwrap());
    let stored = by_id(comment.id);
    assert_eq!(stored.activity_type, "comment");
    assert_eq!(stored.source_parent_id, Some(format!("item:{}", story.id)));
    assert_eq!(stored.body, comment.text);
    assert_eq!(stored.attributes["story_id"], story.id);
    assert_eq!(stored.attributes["story_title"], json!(story.title));
    assert_eq!(
        by_id(reply.id).source_parent_id,
        Some(format!("item:{}", reply.parent.unwrap()))
    );
    assert!(
        TERMS.contains(&by_id(reply.id).channel.as_deref().unwrap()),
        "a thread's comments take their story's channel"
    );
    // a comment whose author is gone: no activity, its replies keep it as their parent
    let (gone, its_reply) = hn.edit(|d| {
        let gone = d
            .items
            .iter()
            .find(|i| i.author.is_none())
            .map(|i| i.id)
            .unwrap();
        let reply = d.items.iter().find(|i| i.parent == Some(gone)).unwrap().id;
        (gone, reply)
    });
    assert!(!report.activity_ids().contains(&format!("item:{gone}")));
    assert_eq!(
        by_id(its_reply).source_parent_id,
        Some(format!("item:{gone}"))
    );
    let member = report
        .members
        .iter()
        .find(|m| m.source_id == "user1")
        .unwrap();
    assert_eq!(member.username, "user1");
    assert_eq!(
        member.url.as_deref(),
        Some("https://news.ycombinator.com/user?id=user1")
    );
    assert_eq!(member.attributes["karma"], 17);
    assert_eq!(member.attributes["about"], "I am user 1");
    assert!(member.joined_at.is_some());
    let ghost = report
        .members
        .iter()
        .find(|m| m.source_id == GHOST)
        .unwrap();
    assert_eq!(ghost.attributes, json!({}), "no profile: the member stays");
    assert!(report.stream_errors().is_empty());
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_check_reads_only_what_is_new(pool: PgPool) {
    let (h, hn) = generated(pool).await;
    let now = u64::try_from(Utc::now().timestamp()).unwrap();
    let day = 86_400;
    // a story of three days ago still takes comments; an unrelated one too
    let (recent, unrelated) = hn.edit(|d| {
        let recent = d.add_story("user1", "Rust in production", None, now - 3 * day);
        d.add_comment(recent, "user2", "first", now - 3 * day + 60);
        let unrelated = d.add_story("user3", "Gardening", None, now - 2 * day);
        (recent, unrelated)
    });
    let onboarding = h.onboard(PLATFORM, settings(&hn), json!({})).await;
    assert_eq!(onboarding.run.state, RunState::Processed);
    let integration = onboarding.integration.id;

    hn.server().clear_requests();
    let check = h.check_to_end(integration).await;
    assert_eq!(check.run.state, RunState::Processed);
    assert_eq!(check.run.activities_created, 0, "a second run adds nothing");
    assert_eq!(check.activities.len(), onboarding.activities.len());
    // one window a term, and the thread of the story that may still grow: all windowed
    assert_eq!(thread_requests(&hn), [recent]);
    assert_eq!(hn.server().request_count(), TERMS.len() + 1);
    for request in searches(&hn) {
        let filters = request.query("numericFilters").unwrap();
        assert!(filters.starts_with("created_at_i>"), "{filters}");
    }

    // new: a story with a comment, a late comment in the recent thread, a mention elsewhere
    let now = u64::try_from(Utc::now().timestamp()).unwrap();
    let new_story = hn.edit(|d| {
        let story = d.add_story("user3", "Rust news", None, now);
        d.add_comment(story, "user4", "congrats", now);
        d.add_comment(recent, "user5", "late but here", now);
        d.add_comment(unrelated, "user0", "postgres would do", now);
        story
    });
    hn.server().clear_requests();
    let check = h.check_to_end(integration).await;
    assert_eq!(check.run.state, RunState::Processed);
    assert_eq!(check.run.activities_created, 4);
    assert_eq!(check.activity_ids(), expected_activities(&hn));
    let mut threads = thread_requests(&hn);
    threads.sort_unstable();
    assert_eq!(threads, [recent, new_story], "only threads that may grow");
    let mut users = user_requests(&hn);
    users.sort();
    assert_eq!(
        users,
        ["user0", "user3", "user4", "user5"],
        "new authors only"
    );
    assert_eq!(
        h.runs(integration).await.len(),
        3,
        "onboarding and two checks"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_429_in_the_middle_defers_the_run_to_the_reset_and_the_resumed_run_loses_nothing(
    pool: PgPool,
) {
    let (h, hn) = generated(pool).await;
    hn.server()
        .inject_later(Fault::on(ALGOLIA_PREFIX, 1, Reply::rate_limited(2)).after(3));
    let (integration, run) = h.connect(PLATFORM, settings(&hn), json!({})).await.unwrap();
    let started = Utc::now();
    let (outcomes, final_run) = h
        .run_honouring_deferrals(run.id, Duration::from_secs(60))
        .await;
    assert_eq!(final_run.state, RunState::Processed, "{outcomes:?}");
    let (until, reason) = first_deferral(&outcomes);
    assert!(
        reason.starts_with("rate limited while processing `"),
        "{reason}"
    );
    let wait = (until - started).num_milliseconds();
    assert!(
        (1_500..=3_500).contains(&wait),
        "deferred to the reset: {wait} ms"
    );
    assert_eq!(outcomes.last(), Some(&RunOutcome::Processed));

    let report = h.report(integration.id, run.id, outcomes).await;
    assert!(
        report.streams.iter().all(|s| s.retries == 0),
        "a 429 costs no retry"
    );
    assert_eq!(report.activity_ids(), expected_activities(&hn));
    assert_eq!(
        report.run.activities_created as usize,
        expected_activities(&hn).len(),
        "nothing doubled"
    );
    let (search_pages, thread_pages, users) = expected_requests(&hn);
    assert_eq!(
        hn.server().request_count(),
        search_pages + thread_pages.values().sum::<usize>() + users + 1,
        "the refused request is the only extra one: a blocked API sends nothing"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_burst_of_5xx_is_retried(pool: PgPool) {
    let (h, hn) = generated(pool).await;
    hn.server()
        .inject(Fault::on(ALGOLIA_PREFIX, 3, Reply::unavailable()));
    let report = h.onboard(PLATFORM, settings(&hn), json!({})).await;
    assert_eq!(
        report.run.state,
        RunState::Processed,
        "{:?}",
        report.outcomes
    );
    assert_eq!(report.retries(), 3);
    assert_eq!(report.activity_ids(), expected_activities(&hn));
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_malformed_body_is_a_stream_error_naming_the_field(pool: PgPool) {
    let (h, hn) = generated(pool).await;
    hn.server().inject(Fault::on(
        &search_path(),
        1,
        Reply::malformed(
            r#"{"hits": [{"objectID": "1", "created_at_i": "yesterday", "author": "pg",
                          "_tags": ["story"]}], "nbHits": 1, "page": 0, "nbPages": 1}"#,
        ),
    ));
    let report = h.onboard(PLATFORM, settings(&hn), json!({})).await;
    assert_eq!(report.run.state, RunState::Error);
    let errors = report.stream_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (identifier, error) = &errors[0];
    assert!(identifier.starts_with("search:"), "{identifier}");
    assert_eq!(error.kind, ErrorKind::Fatal);
    assert!(
        error.message.starts_with(
            "GET /algolia/api/v1/search_by_date: malformed body at `hits[0].created_at_i`: \
             invalid type: string \"yesterday\""
        ),
        "{}",
        error.message
    );
    assert!(
        report
            .streams
            .iter()
            .filter(|s| &s.identifier != identifier)
            .all(|s| s.state == StreamState::Processed),
        "every other stream finished"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn settings_that_are_missing_or_wrong_are_refused_at_connect_time(pool: PgPool) {
    let (h, hn) = generated(pool).await;
    let refused = |settings: Value, creds: Value| {
        let h = h.clone();
        async move { h.refused(PLATFORM, settings, creds).await }
    };
    assert_eq!(
        refused(
            json!({"algolia_base_url": hn.algolia_base_url()}),
            json!({})
        )
        .await,
        "settings for platform `hackernews` refused: invalid settings: name at least one of \
         `keywords` or `urls` (what to search Hacker News for)"
    );
    assert_eq!(
        refused(
            json!({
                "keywords": ["rust", "", "RUST"], "urls": ["no spaces please"],
                "firebase_base_url": "firebase", "hits_per_page": 0
            }),
            json!({"token": "t0ps3cret"})
        )
        .await,
        "settings for platform `hackernews` refused: invalid settings: `firebase_base_url` must \
         be an http(s) URL without query, such as `https://hacker-news.firebaseio.com/v0`, not \
         `firebase`; `keywords[1]` must not be empty, not ``; `keywords[2]` repeats `RUST`; \
         `urls[0]` must be a domain or a URL, such as `github.com/acme/widget` or \
         `https://acme.dev`, not `no spaces please`; `hits_per_page` must be between 1 and \
         1000, not 0; `credentials` must be empty: Hacker News needs none (got `token`)"
    );
    assert!(
        refused(json!({"keywords": ["rust"], "tags": ["story"]}), json!({}))
            .await
            .contains("unknown field `tags`")
    );
    assert_eq!(
        h.integration_count().await,
        0,
        "nothing is created when settings are refused"
    );
    assert_eq!(hn.server().request_count(), 0);
    let registry = tributary_integrations::registry().unwrap();
    assert!(
        registry.get(PLATFORM).is_ok(),
        "register_all knows hackernews"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn an_algolia_that_ignores_the_time_window_ends_the_stream_with_a_clear_error(pool: PgPool) {
    let (h, hn) = setup(pool, HnData::default()).await;
    let same_page = json!({
        "hits": (1..=3).map(|id| json!({
            "objectID": id.to_string(), "created_at_i": 1_700_000_000 - id, "author": "user0",
            "title": format!("Rust {id}"), "url": null, "points": 1, "num_comments": 0,
            "_tags": ["story", "author_user0", format!("story_{id}")]
        })).collect::<Vec<_>>(),
        "nbHits": 500, "page": 0, "nbPages": 167, "hitsPerPage": 3
    });
    hn.server().route_query(
        &search_path(),
        &[("query", "rust")],
        [Reply::json(same_page)],
    );
    let settings = json!({
        "keywords": ["rust"], "hits_per_page": 3, "max_requests_per_second": 100,
        "algolia_base_url": hn.algolia_base_url(), "firebase_base_url": hn.firebase_base_url(),
    });
    let report = h.onboard(PLATFORM, settings, json!({})).await;
    assert_eq!(report.run.state, RunState::Error);
    let errors = report.stream_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].0.starts_with("search:keyword:rust#page="),
        "{}",
        errors[0].0
    );
    assert_eq!(
        errors[0].1.message,
        "pagination loops: the Before boundary of `search:keyword:rust` does not advance (id \
         1699999997 after boundary 1699999997)"
    );
    assert_eq!(report.activities.len(), 3, "the first page is kept");
    assert_eq!(
        hn.server().requests_to(&search_path()),
        2,
        "not followed further"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn an_unknown_user_is_not_an_error(pool: PgPool) {
    let mut data = HnData::default();
    data.add_story(GHOST, "Rust from beyond", None, 1_700_000_000);
    let (h, hn) = setup(pool, data).await;
    let settings = json!({
        "keywords": ["rust"],
        "algolia_base_url": hn.algolia_base_url(), "firebase_base_url": hn.firebase_base_url(),
    });
    let report = h.onboard(PLATFORM, settings, json!({})).await;
    assert_eq!(report.run.state, RunState::Processed);
    assert_eq!(user_requests(&hn), [GHOST], "asked once, answered `null`");
    let stream = report
        .streams
        .iter()
        .find(|s| s.identifier == format!("user:{GHOST}"))
        .unwrap();
    assert_eq!(stream.state, StreamState::Processed);
    let [member] = &report.members[..] else {
        panic!("one member: {:?}", report.members)
    };
    assert_eq!(member.source_id, GHOST);
    assert_eq!(
        member.url.as_deref(),
        Some("https://news.ycombinator.com/user?id=ghost")
    );
    assert_eq!(member.joined_at, None);
    assert_eq!(report.activity_ids(), BTreeSet::from(["item:1".to_owned()]));
}
