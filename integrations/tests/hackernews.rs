//! The Hacker News integration through the real processor and PostgreSQL, against the fake HN
//! (Algolia and the official API on one testkit server): the conformance suite, and what is
//! particular to HN (keyset pages by time, threads read once, a check's 14-day reply window,
//! profiles once per author).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use sqlx::PgPool;
use tributary::async_trait;
use tributary::store::streams::StreamState;
use tributary::testkit::{Conformance, FakeServer, Harness, Refused, Reply, Request};
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

struct Hn(FakeHn);

impl Hn {
    async fn with(data: HnData) -> Self {
        Self(FakeHn::start(data).await.unwrap())
    }
}

fn harness(pool: PgPool) -> Harness {
    Harness::with_service(pool, HackerNewsIntegration).max_inline_wait(Duration::from_millis(500))
}

#[async_trait]
impl Conformance for Hn {
    type Service = HackerNewsIntegration;

    async fn start() -> Self {
        Self::with(HnData::generate(SPEC)).await
    }

    fn service(&self) -> HackerNewsIntegration {
        HackerNewsIntegration
    }

    fn server(&self) -> &FakeServer {
        self.0.server()
    }

    fn settings(&self) -> Value {
        settings(&self.0)
    }

    fn credentials(&self) -> Value {
        json!({})
    }

    fn expected_activities(&self) -> BTreeSet<String> {
        expected_activities(&self.0)
    }

    fn expected_members(&self) -> BTreeSet<String> {
        self.0.edit(|d| d.expected_members(&TERMS))
    }

    fn expected_requests(&self) -> Option<usize> {
        let (searches, threads, users) = expected_requests(&self.0);
        Some(searches + threads.values().sum::<usize>() + users)
    }

    fn list_path(&self) -> String {
        search_path()
    }

    /// A full page, and more to come, whatever window is asked for.
    fn endless_page(&self) -> Reply {
        Reply::json(json!({
            "hits": (1..=5).map(|id| json!({
                "objectID": id.to_string(), "created_at_i": 1_700_000_000 - id, "author": "user0",
                "title": format!("Rust {id}"), "url": null, "points": 1, "num_comments": 0,
                "_tags": ["story", "author_user0", format!("story_{id}")]
            })).collect::<Vec<_>>(),
            "nbHits": 500, "page": 0, "nbPages": 100, "hitsPerPage": 5
        }))
    }

    fn add_activities(&self) -> BTreeSet<String> {
        let now = u64::try_from(Utc::now().timestamp()).unwrap();
        self.0.edit(|d| {
            let story = d.add_story("user3", "Rust news", None, now);
            let comment = d.add_comment(story, "user4", "congrats", now);
            [format!("item:{story}"), format!("item:{comment}")].into()
        })
    }

    fn refused_credentials(&self) -> Option<Value> {
        None
    }

    fn refused_settings(&self) -> Vec<Refused> {
        vec![
            Refused::new(
                json!({"algolia_base_url": self.0.algolia_base_url()}),
                json!({}),
                "name at least one of `keywords` or `urls` (what to search Hacker News for)",
            ),
            Refused::new(
                json!({
                    "keywords": ["rust", "", "RUST"], "urls": ["no spaces please"],
                    "firebase_base_url": "firebase", "hits_per_page": 0
                }),
                json!({"token": "t0ps3cret"}),
                "`firebase_base_url` must be an http(s) URL without query, such as \
                 `https://hacker-news.firebaseio.com/v0`, not `firebase`; `keywords[1]` must not \
                 be empty, not ``; `keywords[2]` repeats `RUST`; `urls[0]` must be a domain or a \
                 URL, such as `github.com/acme/widget` or `https://acme.dev`, not `no spaces \
                 please`; `hits_per_page` must be between 1 and 1000, not 0; `credentials` must \
                 be empty: this platform takes none (got `token`)",
            ),
            Refused::new(
                json!({"keywords": ["rust"], "tags": ["story"]}),
                json!({}),
                "unknown field `tags`, expected one of `keywords`, `urls`, `algolia_base_url`, \
                 `firebase_base_url`, `hits_per_page`, `max_requests_per_second`",
            ),
        ]
    }
}

tributary::conformance_suite!(Hn);

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

/// Requests an onboarding of [`TERMS`] needs: (search pages, thread pages by story, users).
fn expected_requests(hn: &FakeHn) -> (usize, BTreeMap<u64, usize>, usize) {
    hn.edit(|d| d.expected_requests(&TERMS, HITS_PER_PAGE))
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
async fn onboarding_reads_each_window_thread_and_author_once_and_links_comments(pool: PgPool) {
    let hn = Hn::start().await.0;
    let h = harness(pool);
    hn.server().latency(Duration::from_millis(20));
    let report = h.onboard(PLATFORM, settings(&hn), json!({})).await;
    report.assert_processed();
    assert_eq!(report.activity_ids(), expected_activities(&hn));
    assert_eq!(
        report.run.activities_updated, 0,
        "an item found by several searches (or by a search and its thread) is written the same \
         way by each: its channel comes from the item"
    );

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
    let by_id = |id: u64| report.activity(&format!("item:{id}"));
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
    let member = report.member("user1");
    assert_eq!(member.username, "user1");
    assert_eq!(
        member.url.as_deref(),
        Some("https://news.ycombinator.com/user?id=user1")
    );
    assert_eq!(member.attributes["karma"], 17);
    assert_eq!(member.attributes["about"], "I am user 1");
    assert!(member.joined_at.is_some());
    let ghost = report.member(GHOST);
    assert_eq!(ghost.attributes, json!({}), "no profile: the member stays");
    assert!(report.stream_errors().is_empty());
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_check_reads_the_threads_that_may_still_grow_and_new_authors_only(pool: PgPool) {
    let hn = Hn::start().await.0;
    let h = harness(pool);
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
    onboarding.assert_processed();
    let integration = onboarding.integration.id;

    hn.server().clear_requests();
    let check = h.check_to_end(integration).await;
    check.assert_processed();
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
    check.assert_processed();
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
async fn an_unknown_user_is_not_an_error(pool: PgPool) {
    let mut data = HnData::default();
    data.add_story(GHOST, "Rust from beyond", None, 1_700_000_000);
    let hn = Hn::with(data).await.0;
    let h = harness(pool);
    let settings = json!({
        "keywords": ["rust"],
        "algolia_base_url": hn.algolia_base_url(), "firebase_base_url": hn.firebase_base_url(),
    });
    let report = h.onboard(PLATFORM, settings, json!({})).await;
    report.assert_processed();
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
