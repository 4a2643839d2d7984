//! A fake X API v2 (feature `fakes`) on the testkit's [`FakeServer`]. No published API
//! description of X is in `/work/shared/specs`; the fake follows X's public API v2 documentation
//! as known, and these assumptions are its own:
//!
//! * `GET /2/users/{id}/mentions` (posts whose `entities.mentions` name the user) and
//!   `GET /2/tweets/search/recent` (posts whose text contains `query`, case-insensitively;
//!   older posts are not hidden after seven days) answer newest first, `max_results` (mentions
//!   5..=100, search 10..=100, default 10; out of range: 400), `meta.next_token` while more remain,
//!   which comes back as `pagination_token` (or `next_token` for search), `since_id` exclusive;
//! * a page with nothing is `{"meta": {"result_count": 0}}`; with `expansions=author_id` the
//!   authors are in `includes.users`, with the `user.fields` asked for only;
//! * every answer carries `x-rate-limit-limit` / `-remaining` / `-reset` (**epoch seconds**) of a
//!   15-minute window; a spent window is a 429 problem document;
//! * [`FakeX::exhaust_monthly_cap`]: every read is then the 429 `UsageCapExceeded` problem;
//! * a request without the bearer token is a 401 problem (`{"title": "Unauthorized", …}`).
//!
//! Ids are snowflakes computed from the post's time, as X's are.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use tributary::testkit::{Budget, FakeServer, Reply, Request};

use super::snowflake_at;

/// Requests per window of the fake's budget (X's app-only recent search: 450 per 15 minutes).
pub const BUDGET: (u32, Duration) = (450, Duration::from_secs(15 * 60));

#[derive(Debug, Clone, PartialEq)]
pub struct XUser {
    pub id: String,
    pub username: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct XPost {
    pub id: u64,
    /// An index of `users`.
    pub author: usize,
    pub text: String,
    pub created: DateTime<Utc>,
    /// Indexes of the users it mentions.
    pub mentions: Vec<usize>,
    pub reply_to: Option<u64>,
}

/// What a fake X holds.
#[derive(Debug, Clone, Default)]
pub struct XData {
    pub users: Vec<XUser>,
    pub posts: Vec<XPost>,
    clock: i64,
}

/// The shape of a generated X.
#[derive(Debug, Clone, Copy)]
pub struct XSpec {
    pub users: usize,
    /// Posts mentioning user 0 (the account); every third answers the one before.
    pub mentions: usize,
    /// Posts with `#rustlang`, and as many chatting about nothing.
    pub hashtag_posts: usize,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

impl XData {
    /// A deterministic X: user 0 is the account (`id` 1000), users `1000 + n`.
    pub fn generate(spec: XSpec) -> Self {
        let mut data = Self {
            users: (0..spec.users.max(2)).map(user).collect(),
            ..Self::default()
        };
        let n = data.users.len();
        let mut previous = None;
        for i in 0..spec.mentions {
            let author = 1 + i % (n - 1);
            let reply_to = if i % 3 == 2 { previous } else { None };
            let id = data.add_post(
                author,
                &format!("@{} hello {i}", data.users[0].username),
                vec![0],
                reply_to,
            );
            previous = Some(id);
        }
        for i in 0..spec.hashtag_posts {
            data.add_post(
                i % n,
                &format!("learning #rustlang day {i}"),
                Vec::new(),
                None,
            );
            data.add_post(i % n, &format!("nothing to see {i}"), Vec::new(), None);
        }
        data
    }

    /// Posts at the fake's clock (a minute after the last). Returns its id.
    pub fn add_post(
        &mut self,
        author: usize,
        text: &str,
        mentions: Vec<usize>,
        reply_to: Option<u64>,
    ) -> u64 {
        self.clock += 1;
        let created = start() + chrono::Duration::minutes(self.clock);
        let id = snowflake_at(created) + (self.clock as u64 % 4096);
        self.posts.push(XPost {
            id,
            author,
            text: text.to_owned(),
            created,
            mentions,
            reply_to,
        });
        id
    }

    /// Moves the fake's clock to `at`.
    pub fn set_clock(&mut self, at: DateTime<Utc>) {
        self.clock = (at - start()).num_minutes().max(self.clock);
    }

    fn mentioning(&self, account: &str) -> Vec<&XPost> {
        self.posts
            .iter()
            .filter(|p| p.mentions.iter().any(|m| self.users[*m].id == account))
            .collect()
    }

    fn matching(&self, query: &str) -> Vec<&XPost> {
        let q = query.to_lowercase();
        self.posts
            .iter()
            .filter(|p| p.text.to_lowercase().contains(&q))
            .collect()
    }

    fn read_by(&self, account: Option<&str>, searches: &[&str]) -> Vec<&XPost> {
        let mut posts: Vec<&XPost> = account.map(|a| self.mentioning(a)).unwrap_or_default();
        for q in searches {
            posts.extend(self.matching(q));
        }
        posts.sort_by_key(|p| p.id);
        posts.dedup_by_key(|p| p.id);
        posts
    }

    /// Source ids an onboarding of `account` and `searches` stores.
    pub fn expected_activities(
        &self,
        account: Option<&str>,
        searches: &[&str],
    ) -> BTreeSet<String> {
        self.read_by(account, searches)
            .iter()
            .map(|p| format!("tweet:{}", p.id))
            .collect()
    }

    /// User ids of the authors an onboarding stores.
    pub fn expected_members(&self, account: Option<&str>, searches: &[&str]) -> BTreeSet<String> {
        self.read_by(account, searches)
            .iter()
            .map(|p| self.users[p.author].id.clone())
            .collect()
    }

    /// Requests an onboarding needs at `per_page`.
    pub fn expected_requests(
        &self,
        account: Option<&str>,
        searches: &[&str],
        per_page: usize,
    ) -> usize {
        let pages = |n: usize| n.div_ceil(per_page).max(1);
        account.map_or(0, |a| pages(self.mentioning(a).len()))
            + searches
                .iter()
                .map(|q| pages(self.matching(q).len()))
                .sum::<usize>()
    }
}

/// User `n`: id `1000 + n`, `user{n}`.
pub fn user(n: usize) -> XUser {
    XUser {
        id: (1000 + n).to_string(),
        username: format!("user{n}"),
        name: format!("User {n}"),
    }
}

/// A running fake X.
pub struct FakeX {
    server: FakeServer,
    data: Arc<Mutex<XData>>,
    capped: Arc<AtomicBool>,
}

impl FakeX {
    /// Serves `data` to requests bearing `token`.
    pub async fn start(data: XData, token: &str) -> std::io::Result<Self> {
        let server = FakeServer::start().await?;
        server.budget(Budget {
            headers: |state| {
                vec![
                    ("x-rate-limit-limit".into(), state.limit.to_string()),
                    (
                        "x-rate-limit-remaining".into(),
                        state.remaining().to_string(),
                    ),
                    ("x-rate-limit-reset".into(), state.reset_epoch().to_string()),
                ]
            },
            refusal: |_| problem(429, "Too Many Requests", "Too Many Requests"),
            ..Budget::per_window(BUDGET.0, BUDGET.1)
        });
        let data = Arc::new(Mutex::new(data));
        let capped = Arc::new(AtomicBool::new(false));
        let (shared, cap) = (data.clone(), capped.clone());
        let bearer = format!("Bearer {token}");
        server.handle("/2/", move |request| {
            if request.header("authorization") != Some(bearer.as_str()) {
                return problem(401, "Unauthorized", "Unauthorized");
            }
            if cap.load(Ordering::SeqCst) {
                return usage_capped();
            }
            serve(&lock(&shared), request)
        });
        Ok(Self {
            server,
            data,
            capped,
        })
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn server(&self) -> &FakeServer {
        &self.server
    }

    /// From now on every read is refused: the monthly cap is spent.
    pub fn exhaust_monthly_cap(&self) {
        self.capped.store(true, Ordering::SeqCst);
    }

    pub fn edit<T>(&self, f: impl FnOnce(&mut XData) -> T) -> T {
        f(&mut lock(&self.data))
    }
}

fn lock(data: &Mutex<XData>) -> MutexGuard<'_, XData> {
    data.lock().unwrap_or_else(|p| p.into_inner())
}

/// An RFC 7807 problem, as X answers errors.
pub fn problem(status: u16, title: &str, detail: &str) -> Reply {
    Reply::json(json!({"title": title, "detail": detail, "type": "about:blank", "status": status}))
        .with_status(status)
}

/// X's answer once the monthly cap is spent.
pub fn usage_capped() -> Reply {
    Reply::json(json!({
        "title": "UsageCapExceeded",
        "detail": "Usage cap exceeded: Monthly product cap",
        "type": "https://api.twitter.com/2/problems/usage-capped",
        "period": "Monthly",
        "scope": "Product",
    }))
    .with_status(429)
}

fn serve(data: &XData, request: &Request) -> Reply {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let (posts, min, token) = match segments.as_slice() {
        ["2", "users", id, "mentions"] => (data.mentioning(id), 5, "pagination_token"),
        ["2", "tweets", "search", "recent"] => match request.query("query") {
            Some(q) if !q.trim().is_empty() => (data.matching(q), 10, "next_token"),
            _ => {
                return problem(
                    400,
                    "Invalid Request",
                    "The `query` query parameter can not be empty",
                );
            }
        },
        _ => {
            return problem(
                404,
                "Not Found Error",
                "Could not find the requested resource",
            );
        }
    };
    let per_page = match request.query("max_results").map(str::parse::<usize>) {
        None => 10,
        Some(Ok(n)) if (min..=100).contains(&n) => n,
        Some(_) => {
            return problem(
                400,
                "Invalid Request",
                &format!("The `max_results` query parameter value is not between {min} and 100"),
            );
        }
    };
    let since = request
        .query("since_id")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let mut posts: Vec<&XPost> = posts.into_iter().filter(|p| p.id > since).collect();
    posts.sort_by_key(|p| std::cmp::Reverse(p.id));
    // the page token is the id the page starts below
    let below = request
        .query(token)
        .or_else(|| request.query("pagination_token"))
        .and_then(|t| t.strip_prefix("tok"))
        .and_then(|t| t.parse::<u64>().ok());
    if let Some(below) = below {
        posts.retain(|p| p.id < below);
    }
    let page: Vec<&XPost> = posts.iter().take(per_page).copied().collect();
    if page.is_empty() {
        return Reply::json(json!({"meta": {"result_count": 0}}));
    }
    let mut meta = json!({
        "result_count": page.len(),
        "newest_id": page[0].id.to_string(),
        "oldest_id": page[page.len() - 1].id.to_string(),
    });
    if posts.len() > page.len() {
        meta["next_token"] = json!(format!("tok{}", page[page.len() - 1].id));
    }
    let mut body = json!({
        "data": page.iter().map(|p| post_json(data, p)).collect::<Vec<_>>(),
        "meta": meta,
    });
    if request
        .query("expansions")
        .is_some_and(|e| e.split(',').any(|x| x == "author_id"))
    {
        let fields = request.query("user.fields").unwrap_or_default();
        let mut ids: Vec<usize> = page.iter().map(|p| p.author).collect();
        ids.sort_unstable();
        ids.dedup();
        let users: Vec<Value> = ids
            .into_iter()
            .map(|a| {
                let u = &data.users[a];
                let mut v = json!({"id": u.id, "name": u.name, "username": u.username});
                if fields.contains("profile_image_url") {
                    v["profile_image_url"] = json!(format!(
                        "https://pbs.twimg.com/profile_images/{}/avatar_normal.jpg",
                        u.id
                    ));
                }
                v
            })
            .collect();
        body["includes"] = json!({"users": users});
    }
    Reply::json(body)
}

fn post_json(data: &XData, post: &XPost) -> Value {
    let mut value = json!({
        "id": post.id.to_string(),
        "text": post.text,
        "author_id": data.users[post.author].id,
        "created_at": post.created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "conversation_id": post.reply_to.unwrap_or(post.id).to_string(),
        "edit_history_tweet_ids": [post.id.to_string()],
        "lang": "en",
        "public_metrics": {"retweet_count": 0, "reply_count": 0, "like_count": post.id % 5, "quote_count": 0},
    });
    let mentions: Vec<Value> = post
        .mentions
        .iter()
        .map(|m| json!({"start": 0, "end": 6, "username": data.users[*m].username, "id": data.users[*m].id}))
        .collect();
    let hashtags: Vec<Value> = post
        .text
        .split_whitespace()
        .filter_map(|w| w.strip_prefix('#'))
        .map(|tag| json!({"start": 0, "end": tag.len() + 1, "tag": tag}))
        .collect();
    if !mentions.is_empty() || !hashtags.is_empty() {
        value["entities"] = json!({"mentions": mentions, "hashtags": hashtags});
    }
    if let Some(parent) = post.reply_to {
        value["referenced_tweets"] = json!([{"type": "replied_to", "id": parent.to_string()}]);
        if let Some(p) = data.posts.iter().find(|p| p.id == parent) {
            value["in_reply_to_user_id"] = json!(data.users[p.author].id);
        }
    }
    value
}
