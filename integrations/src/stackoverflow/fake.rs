//! A fake Stack Exchange (feature `fakes`) on the testkit's [`FakeServer`], answering as the API
//! does: every answer gzip-compressed and wrapped (`items`, `has_more`, `quota_max`,
//! `quota_remaining`, a `backoff` when one is set), `site` required, `page` / `pagesize`
//! (default 30, at most 100), `/questions?tagged=` and `/search/advanced?q=` (`sort=activity`,
//! `min`), `/questions/{ids}/answers` and `/posts/{ids}/comments` (`fromdate`), errors as
//! `{"error_id", "error_name", "error_message"}`. The daily quota counts down with each request;
//! a test can set it, ask for a `backoff` on a method's next answer, and read when each request
//! came ([`FakeStackExchange::arrivals`]).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use tokio::time::Instant;
use tributary::testkit::{FakeServer, Reply, Request};

const SITE: &str = "stackoverflow";
pub const TAGS: [&str; 3] = ["rust", "tokio", "serde"];

#[derive(Debug, Clone)]
pub struct FakeQuestion {
    pub id: u64,
    pub title: String,
    pub tags: Vec<String>,
    /// An index of `users`; `None`: a deleted account.
    pub owner: Option<usize>,
    pub created: i64,
    pub last_activity: i64,
}

/// An answer or a comment.
#[derive(Debug, Clone)]
pub struct FakePost {
    pub id: u64,
    /// The question an answer answers, the post a comment is on.
    pub parent: u64,
    pub owner: Option<usize>,
    pub created: i64,
}

#[derive(Debug, Clone, Default)]
pub struct StackData {
    pub users: usize,
    pub questions: Vec<FakeQuestion>,
    pub answers: Vec<FakePost>,
    pub comments: Vec<FakePost>,
    next_id: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct StackSpec {
    pub users: usize,
    /// Questions of each of [`TAGS`].
    pub questions_per_tag: usize,
}

fn start() -> i64 {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
        .timestamp()
}

impl StackData {
    /// A deterministic site: question `i` has `i % 4` answers; every third question and every
    /// other answer has a comment; an answer whose id is a multiple of 7 has its author deleted their account.
    pub fn generate(spec: StackSpec) -> Self {
        let mut data = Self {
            users: spec.users,
            next_id: 1000,
            ..Self::default()
        };
        for i in 0..spec.questions_per_tag * TAGS.len() {
            let at = start() + i as i64 * 3600;
            let tag = TAGS[i % TAGS.len()];
            let q = data.ask(
                tag,
                &format!("How do I use {tag} number {i}"),
                i % spec.users,
                at,
            );
            for a in 0..i % 4 {
                let owner = (i + a + 1) % spec.users;
                let answer = data.answer(q, owner, at + 60 * (a as i64 + 1));
                if answer.is_multiple_of(7)
                    && let Some(deleted) = data.answers.last_mut()
                {
                    deleted.owner = None;
                }
                if answer.is_multiple_of(2) {
                    data.comment(answer, (owner + 1) % spec.users, at + 600);
                }
            }
            if i % 3 == 0 {
                data.comment(q, (i + 2) % spec.users, at + 30);
            }
        }
        data
    }

    fn take_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn touch(&mut self, question: u64, at: i64) {
        if let Some(q) = self.questions.iter_mut().find(|q| q.id == question) {
            q.last_activity = q.last_activity.max(at);
        }
    }

    /// Asks a question; returns its id.
    pub fn ask(&mut self, tag: &str, title: &str, owner: usize, at: i64) -> u64 {
        let id = self.take_id();
        self.questions.push(FakeQuestion {
            id,
            title: title.to_owned(),
            tags: vec![tag.to_owned()],
            owner: Some(owner),
            created: at,
            last_activity: at,
        });
        id
    }

    /// Answers a question (bumping its activity); returns the answer's id.
    pub fn answer(&mut self, question: u64, owner: usize, at: i64) -> u64 {
        let id = self.take_id();
        self.answers.push(FakePost {
            id,
            parent: question,
            owner: Some(owner),
            created: at,
        });
        self.touch(question, at);
        id
    }

    /// Comments on a question or an answer (comments do not bump a question's activity);
    /// returns the comment's id.
    pub fn comment(&mut self, post: u64, owner: usize, at: i64) -> u64 {
        let id = self.take_id();
        self.comments.push(FakePost {
            id,
            parent: post,
            owner: Some(owner),
            created: at,
        });
        id
    }

    /// Questions a configuration reads: tagged with one of `tags` or matching one of `keywords`.
    fn read_questions(&self, tags: &[&str], keywords: &[&str]) -> Vec<&FakeQuestion> {
        self.questions
            .iter()
            .filter(|q| {
                q.tags.iter().any(|t| tags.contains(&t.as_str()))
                    || keywords.iter().any(|k| matches(q, k))
            })
            .collect()
    }

    pub fn expected_activities(&self, tags: &[&str], keywords: &[&str]) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for q in self.read_questions(tags, keywords) {
            if q.owner.is_some() {
                ids.insert(format!("question:{}", q.id));
            }
            for c in self
                .comments
                .iter()
                .filter(|c| c.parent == q.id && c.owner.is_some())
            {
                ids.insert(format!("comment:{}", c.id));
            }
            for a in self.answers.iter().filter(|a| a.parent == q.id) {
                if a.owner.is_some() {
                    ids.insert(format!("answer:{}", a.id));
                }
                for c in self
                    .comments
                    .iter()
                    .filter(|c| c.parent == a.id && c.owner.is_some())
                {
                    ids.insert(format!("comment:{}", c.id));
                }
            }
        }
        ids
    }

    pub fn expected_members(&self, tags: &[&str], keywords: &[&str]) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for q in self.read_questions(tags, keywords) {
            let answers: Vec<&FakePost> =
                self.answers.iter().filter(|a| a.parent == q.id).collect();
            let owners = std::iter::once(q.owner)
                .chain(answers.iter().map(|a| a.owner))
                .chain(
                    self.comments
                        .iter()
                        .filter(|c| c.parent == q.id || answers.iter().any(|a| a.id == c.parent))
                        .map(|c| c.owner),
                );
            ids.extend(owners.flatten().map(|u| user_id(u).to_string()));
        }
        ids
    }

    /// Requests an onboarding of `tags` (no keywords) needs at `page_size`: the question pages
    /// of each tag, and per page one comments request (more if they span pages), the answers of
    /// its answered questions, and per page of answers one comments request.
    pub fn expected_requests(&self, tags: &[&str], page_size: usize) -> usize {
        let pages = |n: usize| n.div_ceil(page_size).max(1);
        let mut total = 0;
        for tag in tags {
            let mut listed: Vec<&FakeQuestion> = self
                .questions
                .iter()
                .filter(|q| q.tags.iter().any(|t| t == tag))
                .collect();
            sort_by_activity(&mut listed);
            total += pages(listed.len());
            for page in listed.chunks(page_size) {
                let ids: Vec<u64> = page.iter().map(|q| q.id).collect();
                total += pages(
                    self.comments
                        .iter()
                        .filter(|c| ids.contains(&c.parent))
                        .count(),
                );
                let mut answers: Vec<&FakePost> = self
                    .answers
                    .iter()
                    .filter(|a| ids.contains(&a.parent))
                    .collect();
                if answers.is_empty() {
                    continue;
                }
                answers.sort_by_key(|a| std::cmp::Reverse((a.created, a.id)));
                total += pages(answers.len());
                for chunk in answers.chunks(page_size) {
                    let ids: Vec<u64> = chunk.iter().map(|a| a.id).collect();
                    total += pages(
                        self.comments
                            .iter()
                            .filter(|c| ids.contains(&c.parent))
                            .count(),
                    );
                }
            }
        }
        total
    }
}

fn matches(q: &FakeQuestion, keyword: &str) -> bool {
    q.title.to_lowercase().contains(&keyword.to_lowercase())
}

fn sort_by_activity(questions: &mut [&FakeQuestion]) {
    questions.sort_by_key(|q| std::cmp::Reverse((q.last_activity, q.id)));
}

/// The site's user id of user `n`.
pub fn user_id(n: usize) -> u64 {
    5000 + n as u64
}

/// What the fake does besides serving data.
#[derive(Debug)]
struct Control {
    key: Option<String>,
    quota_max: i64,
    quota_remaining: i64,
    /// A `backoff` (seconds) for the next answer of a path starting with this.
    backoffs: Vec<(String, u64)>,
    arrivals: Vec<(String, Instant)>,
}

/// A running fake Stack Exchange.
pub struct FakeStackExchange {
    server: FakeServer,
    data: Arc<Mutex<StackData>>,
    control: Arc<Mutex<Control>>,
}

impl FakeStackExchange {
    /// Serves `data`; with `key`, a request with another `key` is refused as Stack Exchange does
    /// (400 `bad_parameter`). The quota starts at 10,000 (300 without a key).
    pub async fn start(data: StackData, key: Option<&str>) -> std::io::Result<Self> {
        let server = FakeServer::start().await?;
        let data = Arc::new(Mutex::new(data));
        let quota = if key.is_some() { 10_000 } else { 300 };
        let control = Arc::new(Mutex::new(Control {
            key: key.map(str::to_owned),
            quota_max: quota,
            quota_remaining: quota,
            backoffs: Vec::new(),
            arrivals: Vec::new(),
        }));
        let (shared, ctl) = (data.clone(), control.clone());
        server.handle("/", move |request| {
            let mut control = lock(&ctl);
            control.arrivals.push((request.target(), Instant::now()));
            serve(&lock(&shared), &mut control, request).gzipped()
        });
        Ok(Self {
            server,
            data,
            control,
        })
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn server(&self) -> &FakeServer {
        &self.server
    }

    pub fn edit<T>(&self, f: impl FnOnce(&mut StackData) -> T) -> T {
        f(&mut lock(&self.data))
    }

    /// Sets what is left of the daily quota.
    pub fn set_quota_remaining(&self, remaining: i64) {
        lock(&self.control).quota_remaining = remaining;
    }

    /// The next answer of a path starting with `path` asks for a `backoff` of `seconds`.
    pub fn backoff_next(&self, path: &str, seconds: u64) {
        lock(&self.control)
            .backoffs
            .push((path.to_owned(), seconds));
    }

    /// Each request's path and query, and when it arrived (tokio's clock).
    pub fn arrivals(&self) -> Vec<(String, Instant)> {
        lock(&self.control).arrivals.clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn error(status: u16, id: u16, name: &str, message: &str) -> Reply {
    Reply::json(json!({"error_id": id, "error_name": name, "error_message": message}))
        .with_status(status)
}

/// Stack Exchange's throttle violation: HTTP 400, `error_id` 502.
pub fn throttle_violation(seconds: u64) -> Reply {
    error(
        400,
        502,
        "throttle_violation",
        &format!("too many requests from this IP, more requests available in {seconds} seconds"),
    )
}

fn serve(data: &StackData, control: &mut Control, request: &Request) -> Reply {
    if request.query("site") != Some(SITE) {
        return error(400, 400, "bad_parameter", "site is required");
    }
    if let (Some(expected), Some(given)) = (&control.key, request.query("key"))
        && expected != given
    {
        return error(400, 400, "bad_parameter", "key");
    }
    let number = |name: &str, default: i64| {
        request
            .query(name)
            .map_or(Some(default), |v| v.parse::<i64>().ok())
    };
    let (Some(page), Some(size), Some(min), Some(from)) = (
        number("page", 1),
        number("pagesize", 30),
        number("min", i64::MIN),
        number("fromdate", i64::MIN),
    ) else {
        return error(
            400,
            400,
            "bad_parameter",
            "page, pagesize, min and fromdate are numbers",
        );
    };
    if page < 1 || !(0..=100).contains(&size) {
        return error(400, 400, "bad_parameter", "pagesize");
    }
    let (page, size) = (page as usize, size as usize);
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let ids = |s: &str| -> Vec<u64> { s.split(';').filter_map(|v| v.parse().ok()).collect() };
    let items: Vec<Value> = match segments.as_slice() {
        ["questions"] | ["search", "advanced"] => {
            let tag = request.query("tagged");
            let q = request.query("q");
            let mut list: Vec<&FakeQuestion> = data
                .questions
                .iter()
                .filter(|x| tag.is_none_or(|t| x.tags.iter().any(|y| y == t)))
                .filter(|x| q.is_none_or(|k| matches(x, k)))
                .filter(|x| x.last_activity >= min)
                .collect();
            sort_by_activity(&mut list);
            list.iter().map(|x| question_json(data, x)).collect()
        }
        ["questions", list, "answers"] => {
            let ids = ids(list);
            let mut answers: Vec<&FakePost> = data
                .answers
                .iter()
                .filter(|a| ids.contains(&a.parent) && a.created >= from)
                .collect();
            answers.sort_by_key(|a| std::cmp::Reverse((a.created, a.id)));
            answers.iter().map(|a| answer_json(a)).collect()
        }
        ["posts", list, "comments"] => {
            let ids = ids(list);
            let mut comments: Vec<&FakePost> = data
                .comments
                .iter()
                .filter(|c| ids.contains(&c.parent) && c.created >= from)
                .collect();
            comments.sort_by_key(|c| std::cmp::Reverse((c.created, c.id)));
            comments.iter().map(|c| comment_json(c)).collect()
        }
        _ => return error(404, 404, "no_method", "this method does not exist"),
    };
    control.quota_remaining = (control.quota_remaining - 1).max(0);
    let has_more = page * size < items.len();
    let mut body = json!({
        "items": items.into_iter().skip((page - 1) * size).take(size).collect::<Vec<_>>(),
        "has_more": has_more,
        "quota_max": control.quota_max,
        "quota_remaining": control.quota_remaining,
    });
    if let Some(at) = control
        .backoffs
        .iter()
        .position(|(p, _)| request.path.starts_with(p.as_str()))
    {
        let (_, seconds) = control.backoffs.remove(at);
        if let Value::Object(map) = &mut body {
            map.insert("backoff".into(), json!(seconds));
        }
    }
    Reply::json(body)
}

fn owner_json(owner: Option<usize>) -> Value {
    match owner {
        Some(n) => json!({
            "account_id": 90_000 + n, "reputation": 100 + n, "user_id": user_id(n),
            "user_type": "registered", "profile_image": format!("https://i.sstatic.test/{n}.png"),
            "display_name": format!("User &amp; {n}"),
            "link": format!("https://stackoverflow.com/users/{}/user-{n}", user_id(n)),
        }),
        None => json!({"user_type": "does_not_exist", "display_name": "user-deleted"}),
    }
}

fn question_json(data: &StackData, q: &FakeQuestion) -> Value {
    let answers = data.answers.iter().filter(|a| a.parent == q.id).count();
    json!({
        "tags": q.tags, "owner": owner_json(q.owner), "is_answered": answers > 0,
        "view_count": 10, "answer_count": answers, "score": 1,
        "last_activity_date": q.last_activity, "creation_date": q.created,
        "question_id": q.id, "content_license": "CC BY-SA 4.0",
        "link": format!("https://stackoverflow.com/questions/{}/q", q.id), "title": q.title,
        "body": format!("<p>Question {}</p>", q.id),
    })
}

fn answer_json(a: &FakePost) -> Value {
    json!({
        "owner": owner_json(a.owner), "is_accepted": a.id.is_multiple_of(3), "score": 0,
        "last_activity_date": a.created, "creation_date": a.created, "answer_id": a.id,
        "question_id": a.parent, "content_license": "CC BY-SA 4.0",
        "body": format!("<p>Answer {}</p>", a.id),
    })
}

fn comment_json(c: &FakePost) -> Value {
    json!({
        "owner": owner_json(c.owner), "edited": false, "score": 0,
        "creation_date": c.created, "post_id": c.parent, "comment_id": c.id,
        "content_license": "CC BY-SA 4.0", "body": format!("comment {}", c.id),
    })
}

/// `DateTime` of Unix seconds, for tests adding data "now".
pub fn unix(at: DateTime<Utc>) -> i64 {
    at.timestamp()
}
