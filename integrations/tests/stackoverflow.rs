//! The Stack Overflow / Stack Exchange integration through the real processor and PostgreSQL,
//! against its fake (gzip on every answer, the daily quota counting down): the conformance suite,
//! and what is particular to Stack Exchange — answers and comments fetched in batches of ids, a
//! `backoff` obeyed by the same method across two streams, an exhausted `quota_remaining`
//! deferring the run to midnight UTC, a 400 `throttle_violation` taken as a rate limit.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{Days, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use tributary::async_trait;
use tributary::processor::RunOutcome;
use tributary::testkit::{Conformance, FakeServer, Fault, Harness, Refused, Reply};
use tributary_integrations::stackoverflow::fake::{
    self, FakeStackExchange, StackData, StackSpec, unix, user_id,
};
use tributary_integrations::stackoverflow::{PLATFORM, StackoverflowIntegration};

const KEY: &str = "stack-apps-key-123";
const SPEC: StackSpec = StackSpec {
    users: 7,
    questions_per_tag: 9,
};
const TAGS: [&str; 2] = ["rust", "tokio"];
const PAGE_SIZE: usize = 4;

struct Site(FakeStackExchange);

#[async_trait]
impl Conformance for Site {
    type Service = StackoverflowIntegration;

    async fn start() -> Self {
        Self(
            FakeStackExchange::start(StackData::generate(SPEC), Some(KEY))
                .await
                .unwrap(),
        )
    }

    fn service(&self) -> StackoverflowIntegration {
        StackoverflowIntegration
    }

    fn server(&self) -> &FakeServer {
        self.0.server()
    }

    fn settings(&self) -> Value {
        json!({"base_url": self.0.base_url(), "tags": TAGS, "page_size": PAGE_SIZE,
               "max_requests_per_second": 30})
    }

    fn credentials(&self) -> Value {
        json!({"key": KEY})
    }

    fn expected_activities(&self) -> BTreeSet<String> {
        self.0.edit(|d| d.expected_activities(&TAGS, &[]))
    }

    fn expected_members(&self) -> BTreeSet<String> {
        self.0.edit(|d| d.expected_members(&TAGS, &[]))
    }

    fn expected_requests(&self) -> Option<usize> {
        Some(self.0.edit(|d| d.expected_requests(&TAGS, PAGE_SIZE)))
    }

    fn list_path(&self) -> String {
        "/questions".to_owned()
    }

    fn endless_page(&self) -> Reply {
        let items: Vec<Value> = (1..=PAGE_SIZE as u64)
            .map(|id| {
                json!({"question_id": id, "title": "Q", "creation_date": 1_700_000_000,
                       "answer_count": 0, "owner": {"user_id": 1, "display_name": "a"}})
            })
            .collect();
        Reply::json(json!({"items": items, "has_more": true, "quota_max": 10000,
                           "quota_remaining": 9000}))
        .gzipped()
    }

    /// A new question with an answer and a comment, and a new answer to an old question.
    fn add_activities(&self) -> BTreeSet<String> {
        let now = unix(Utc::now());
        self.0.edit(|d| {
            let old = d.questions[4].id;
            let late = d.answer(old, 2, now);
            let q = d.ask("tokio", "A fresh one", 3, now);
            let a = d.answer(q, 4, now + 1);
            let c = d.comment(q, 5, now + 2);
            [
                format!("answer:{late}"),
                format!("question:{q}"),
                format!("answer:{a}"),
                format!("comment:{c}"),
            ]
            .into()
        })
    }

    fn refused_credentials(&self) -> Option<Value> {
        Some(json!({"key": "wrong-key-456"}))
    }

    fn credential_refusal(&self) -> &'static str {
        "400 Bad Request: key"
    }

    fn refused_settings(&self) -> Vec<Refused> {
        vec![
            Refused::new(
                json!({"site": "stack overflow", "tags": ["ok", "not ok", "OK"],
                       "keywords": [" "], "page_size": 101, "max_requests_per_second": 31}),
                json!({}),
                "`site` must be a site name (`stackoverflow`, `serverfault`…) (letters, digits, \
                 - and _), not `stack overflow`; `tags[1]` must be a tag (letters, digits, + # . \
                 and -, at most 35), not `not ok`; `tags[2]` repeats `ok`; `keywords[0]` must \
                 not be empty; `page_size` must be between 1 and 100, not 101; \
                 `max_requests_per_second` must be between 1 and 30, not 31",
            ),
            Refused::new(
                json!({"site": "stackoverflow"}),
                json!({}),
                "name at least one of `tags` or `keywords` (what questions to read)",
            ),
        ]
    }
}

tributary::conformance_suite!(Site);

fn ids_asked(site: &Site, suffix: &str) -> Vec<usize> {
    site.server()
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(suffix))
        .map(|r| r.path.split('/').nth(2).unwrap().split(';').count())
        .collect()
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn answers_and_comments_come_in_batches_of_ids_gzipped(pool: PgPool) {
    let site = Site::start().await;
    let h = Harness::with_service(pool, StackoverflowIntegration);
    let report = h
        .onboard(PLATFORM, site.settings(), site.credentials())
        .await;
    report.assert_processed();
    assert_eq!(report.activity_ids(), site.expected_activities());
    // one request per page of questions for their answers and one for their comments
    let answers = ids_asked(&site, "/answers");
    assert!(!answers.is_empty() && answers.iter().all(|n| *n <= PAGE_SIZE));
    let comments = ids_asked(&site, "/comments");
    assert!(comments.iter().any(|n| *n > 1), "{comments:?}");
    let requests = site.server().requests();
    assert!(requests.iter().all(|r| {
        r.query("site") == Some("stackoverflow")
            && r.query("filter") == Some("withbody")
            && r.query("key") == Some(KEY)
            && r.header("accept-encoding")
                .is_some_and(|v| v.contains("gzip"))
    }));
    // parents and members
    let (question, answer, comment) = site.0.edit(|d| {
        let a = d
            .answers
            .iter()
            .find(|a| a.owner.is_some())
            .unwrap()
            .clone();
        let c = d.comments.iter().find(|c| c.parent == a.id);
        (a.parent, a.id, c.map(|c| c.id))
    });
    let stored = report.activity(&format!("answer:{answer}"));
    assert_eq!(
        stored.source_parent_id,
        Some(format!("question:{question}"))
    );
    assert_eq!(stored.channel.as_deref(), Some("stackoverflow"));
    if let Some(comment) = comment {
        assert_eq!(
            report
                .activity(&format!("comment:{comment}"))
                .source_parent_id,
            Some(format!("answer:{answer}"))
        );
    }
    let member = report.member(&user_id(3).to_string());
    assert_eq!(
        member.display_name.as_deref(),
        Some("User &amp; 3"),
        "as the API sends it"
    );
    assert!(member.url.as_deref().unwrap().contains("/users/5003/"));
    assert!(
        member.attributes["profile_image"]
            .as_str()
            .unwrap()
            .ends_with("/3.png")
    );
    // a deleted account's answer is no activity
    let deleted = site
        .0
        .edit(|d| d.answers.iter().find(|a| a.owner.is_none()).map(|a| a.id));
    if let Some(id) = deleted {
        assert!(!report.activity_ids().contains(&format!("answer:{id}")));
    }
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_backoff_holds_the_same_method_across_two_streams(pool: PgPool) {
    let site = Site::start().await;
    let h = Harness::with_service(pool, StackoverflowIntegration);
    // the first `/questions` answer asks that method to wait 2 s: the next pages of both tags
    // (two streams) wait for it, while answers and comments go on meanwhile
    site.0.backoff_next("/questions", 2);
    let report = h
        .onboard(PLATFORM, site.settings(), site.credentials())
        .await;
    report.assert_processed();
    let arrivals = site.0.arrivals();
    let lists: Vec<_> = arrivals
        .iter()
        .filter(|(target, _)| target.starts_with("/questions?"))
        .collect();
    let first = lists
        .first()
        .map(|(_, at)| *at)
        .unwrap_or_else(|| panic!("{arrivals:?}"));
    let (firsts, later): (Vec<&(String, _)>, Vec<&(String, _)>) = lists
        .iter()
        .copied()
        .partition(|(target, _)| target.contains("page=1&"));
    assert_eq!(firsts.len(), 2, "each tag's first page: {lists:?}");
    assert!(later.len() >= 2, "later pages: {lists:?}");
    for (target, at) in &later {
        assert!(
            *at - first >= Duration::from_millis(1900),
            "{target} came {:?} after the backoff",
            *at - first
        );
    }
    for tag in TAGS {
        assert!(
            later
                .iter()
                .any(|(t, _)| t.contains(&format!("tagged={tag}"))),
            "{tag}'s stream waited too"
        );
    }
    let backoff_ends = first + Duration::from_millis(1900);
    let meanwhile = arrivals
        .iter()
        .filter(|(t, at)| !t.starts_with("/questions?") && *at > first && *at < backoff_ends)
        .count();
    assert!(meanwhile >= 1, "other methods went on: {arrivals:?}");
    assert_eq!(report.retries(), 0);
    assert_eq!(report.activity_ids(), site.expected_activities());
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn an_exhausted_quota_defers_the_run_to_midnight_utc(pool: PgPool) {
    let site = Site::start().await;
    let h = Harness::with_service(pool, StackoverflowIntegration);
    // the next answer leaves nothing of the day's quota
    site.0.set_quota_remaining(1);
    let settings = json!({"base_url": site.0.base_url(), "tags": ["rust"]});
    let (_, run) = h
        .connect(PLATFORM, settings, site.credentials())
        .await
        .unwrap();
    let midnight = Utc::now()
        .date_naive()
        .checked_add_days(Days::new(1))
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    match h.process(run.id).await {
        RunOutcome::Delayed { until, reason } => {
            assert!(
                (until - midnight).num_seconds().abs() <= 5,
                "deferred to {until}, not midnight UTC ({midnight}): {reason}"
            );
            assert!(reason.contains("rate limited"), "{reason}");
        }
        other => panic!("not deferred: {other:?}"),
    }
    assert_eq!(
        site.server().request_count(),
        1,
        "nothing sent once the quota is spent"
    );
    let streams = h.streams(run.id).await;
    assert!(
        streams.iter().all(|s| s.retries == 0),
        "the quota costs no retry"
    );
}

#[sqlx::test(migrator = "tributary::MIGRATOR")]
async fn a_throttle_violation_defers_the_run_for_the_wait_it_states(pool: PgPool) {
    let site = Site::start().await;
    let h = Harness::with_service(pool, StackoverflowIntegration);
    site.server().inject(Fault::on(
        "/questions",
        1,
        fake::throttle_violation(600).gzipped(),
    ));
    let (_, run) = h
        .connect(PLATFORM, site.settings(), site.credentials())
        .await
        .unwrap();
    let before = Utc::now();
    match h.process(run.id).await {
        RunOutcome::Delayed { until, .. } => {
            let wait = (until - before).num_seconds();
            assert!((595..=605).contains(&wait), "deferred {wait} s");
        }
        other => panic!("not deferred: {other:?}"),
    }
    let streams = h.streams(run.id).await;
    assert!(
        streams.iter().all(|s| s.retries == 0),
        "a rate limit costs no retry"
    );
}
