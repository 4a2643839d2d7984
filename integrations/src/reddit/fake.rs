//! A fake Reddit (feature `fakes`) on the testkit's [`FakeServer`]. No published API description
//! of Reddit is in `/work/shared/specs`; the fake follows Reddit's public API documentation as
//! known, and these assumptions are its own:
//!
//! * the token endpoint (`POST /api/v1/access_token`, HTTP Basic with the application's id and
//!   secret) is the testkit's [`TokenIssuer`]; API requests without a live token get 401
//!   `{"message": "Unauthorized", "error": 401}`;
//! * listings (`/r/{sub}/new`, `/search`, `/r/{sub}/comments`) are newest first, `limit` 25 by
//!   default and at most 100, `after` a fullname (`t3_…`, `t1_…`), `after: null` on the last page;
//! * a search matches `q` in a title or a self text, case-insensitively;
//! * `/comments/{id}` shows the first [`SHOWN`] top-level comments with all their replies
//!   (`"replies": ""` when none) and collapses the others, replies included, into one `more`
//!   listing their ids; `/api/morechildren` answers at most 100 asked ids, flat, each with its
//!   `parent_id`, and a JSON error for more; replies deeper than [`MAX_DEPTH`] levels are behind a
//!   "continue this thread" (`more` with no children), read with `?comment={parent}`, which
//!   answers that comment and its replies;
//! * every answer carries `x-ratelimit-used`, `x-ratelimit-remaining` as a float (`"996.0"`) and
//!   `x-ratelimit-reset` in seconds until the window (600 s) resets; a spent budget is a 429 with
//!   the same headers and no `Retry-After`;
//! * deleted accounts are `[deleted]` without `author_fullname`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use tributary::testkit::{Budget, FakeServer, Reply, Request, TokenIssuer};

/// Top-level comments a tree shows before collapsing the rest.
pub const SHOWN: usize = 3;
/// Levels of replies a tree shows; deeper ones are behind a "continue this thread".
pub const MAX_DEPTH: usize = 4;
/// The token endpoint's path.
pub const TOKEN_PATH: &str = "/api/v1/access_token";
/// Requests per window of the fake's budget, and the window.
pub const BUDGET: (u32, Duration) = (1000, Duration::from_secs(600));

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// `t2_…`
    pub fullname: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PostRec {
    pub id: String,
    pub subreddit: String,
    /// An index of `users`; `None`: a deleted account.
    pub author: Option<usize>,
    pub title: String,
    pub selftext: String,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommentRec {
    pub id: String,
    pub post: String,
    /// The comment it answers; `None`: top level.
    pub parent: Option<String>,
    pub author: Option<usize>,
    pub body: String,
    pub created: DateTime<Utc>,
}

/// What a fake Reddit holds.
#[derive(Debug, Clone, Default)]
pub struct RedditData {
    pub users: Vec<User>,
    pub posts: Vec<PostRec>,
    pub comments: Vec<CommentRec>,
    next_id: u64,
    clock: i64,
}

/// The shape of a generated Reddit.
#[derive(Debug, Clone, Copy)]
pub struct RedditSpec {
    pub subreddits: usize,
    pub users: usize,
    pub posts_per_subreddit: usize,
    /// Top-level comments of a commented post (every third post has none).
    pub comments_per_post: usize,
    /// Each top-level comment has a chain of this many replies.
    pub reply_depth: usize,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Base 36, as Reddit writes ids.
pub fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

impl RedditData {
    /// A deterministic Reddit: subreddits `sub0`, `sub1`…, users `user0`… (`t2_u0`…); the
    /// posts' titles say "rust" in every fourth one (for searches); user 1 deleted their account
    /// after writing their posts.
    pub fn generate(spec: RedditSpec) -> Self {
        let mut data = Self {
            next_id: 1000,
            ..Self::default()
        };
        data.users = (0..spec.users.max(1)).map(user).collect();
        for s in 0..spec.subreddits {
            for p in 0..spec.posts_per_subreddit {
                let author = Some((s + p) % data.users.len());
                let topic = if p % 4 == 0 { "rust" } else { "chat" };
                let post =
                    data.add_post(&format!("sub{s}"), author, &format!("A {topic} post {p}"));
                if p % 3 == 2 {
                    continue;
                }
                for c in 0..spec.comments_per_post {
                    let mut parent =
                        data.add_comment(&post, None, Some((p + c + 1) % data.users.len()));
                    for r in 0..spec.reply_depth {
                        parent = data.add_comment(
                            &post,
                            Some(&parent),
                            Some((p + c + r + 2) % data.users.len()),
                        );
                    }
                }
            }
        }
        data
    }

    fn take(&mut self) -> (String, DateTime<Utc>) {
        self.next_id += 1;
        self.clock += 1;
        (
            base36(self.next_id),
            start() + chrono::Duration::minutes(self.clock),
        )
    }

    /// A post now-ish in the fake's clock (later than everything before it). Returns its id.
    pub fn add_post(&mut self, subreddit: &str, author: Option<usize>, title: &str) -> String {
        let (id, created) = self.take();
        self.posts.push(PostRec {
            id: id.clone(),
            subreddit: subreddit.to_owned(),
            author,
            title: title.to_owned(),
            selftext: format!("{title}: the text"),
            created,
        });
        id
    }

    /// A comment on `post`, answering `parent` if given. Returns its id.
    pub fn add_comment(
        &mut self,
        post: &str,
        parent: Option<&str>,
        author: Option<usize>,
    ) -> String {
        let (id, created) = self.take();
        self.comments.push(CommentRec {
            id: id.clone(),
            post: post.to_owned(),
            parent: parent.map(str::to_owned),
            author,
            body: format!("comment {id}"),
            created,
        });
        id
    }

    /// Moves the fake's clock to `at`: what is added next happens then.
    pub fn set_clock(&mut self, at: DateTime<Utc>) {
        self.clock = (at - start()).num_minutes().max(self.clock);
    }

    /// The posts of the subreddits and searches configured.
    pub fn posts_of(&self, subreddits: &[&str], searches: &[&str]) -> Vec<&PostRec> {
        self.posts
            .iter()
            .filter(|p| subreddits.contains(&p.subreddit.as_str()) || matches_any(p, searches))
            .collect()
    }

    fn comments_of<'a>(&'a self, post: &'a str) -> impl Iterator<Item = &'a CommentRec> + 'a {
        self.comments.iter().filter(move |c| c.post == post)
    }

    /// Source ids an onboarding of these subreddits and searches stores.
    pub fn expected_activities(&self, subreddits: &[&str], searches: &[&str]) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for post in self.posts_of(subreddits, searches) {
            if post.author.is_some_and(|a| a != 1) {
                ids.insert(format!("post:{}", post.id));
            }
            for comment in self.comments_of(&post.id) {
                if comment.author.is_some_and(|a| a != 1) {
                    ids.insert(format!("comment:{}", comment.id));
                }
            }
        }
        ids
    }

    /// Member ids (fullnames) an onboarding stores.
    pub fn expected_members(&self, subreddits: &[&str], searches: &[&str]) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        let mut add = |author: Option<usize>| {
            if let Some(a) = author.filter(|a| *a != 1) {
                ids.insert(self.users[a].fullname.clone());
            }
        };
        for post in self.posts_of(subreddits, searches) {
            add(post.author);
            for comment in self.comments_of(&post.id) {
                add(comment.author);
            }
        }
        ids
    }

    /// Requests an onboarding needs at `per_page`: the token, listing pages, threads and
    /// `morechildren` batches.
    pub fn expected_requests(
        &self,
        subreddits: &[&str],
        searches: &[&str],
        per_page: usize,
    ) -> usize {
        let pages = |n: usize| n.div_ceil(per_page).max(1);
        let listings: usize = subreddits
            .iter()
            .map(|s| pages(self.posts.iter().filter(|p| p.subreddit == *s).count()))
            .chain(
                searches
                    .iter()
                    .map(|q| pages(self.posts.iter().filter(|p| matches_any(p, &[q])).count())),
            )
            .sum();
        let threads: usize = self
            .posts_of(subreddits, searches)
            .iter()
            .filter(|p| self.comments_of(&p.id).next().is_some())
            .map(|p| 1 + self.collapsed(&p.id).len().div_ceil(100) + self.continuations(&p.id))
            .sum();
        1 + listings + threads
    }

    /// The "continue this thread" reads a post's tree needs (those of its shown comments).
    pub fn continuations(&self, post: &str) -> usize {
        self.comments_of(post)
            .filter(|c| c.parent.is_none())
            .take(SHOWN)
            .map(|c| self.cuts(c, 0))
            .sum()
    }

    /// Threads continued below `comment`, shown at `depth` of its thread.
    fn cuts(&self, comment: &CommentRec, depth: usize) -> usize {
        let answers = self
            .comments
            .iter()
            .filter(|c| c.parent.as_deref() == Some(comment.id.as_str()));
        if depth + 1 >= MAX_DEPTH {
            // its replies are a thread of their own, starting at it
            return usize::from(answers.clone().next().is_some())
                + answers.map(|a| self.cuts(a, 1)).sum::<usize>();
        }
        answers.map(|a| self.cuts(a, depth + 1)).sum()
    }

    /// The ids `/comments/{post}` collapses into its `more`.
    pub fn collapsed(&self, post: &str) -> Vec<String> {
        let tops: Vec<&CommentRec> = self
            .comments_of(post)
            .filter(|c| c.parent.is_none())
            .collect();
        let mut ids = Vec::new();
        for top in tops.iter().skip(SHOWN) {
            self.subtree(top, &mut |c| ids.push(c.id.clone()));
        }
        ids
    }

    fn subtree<'a>(&'a self, comment: &'a CommentRec, visit: &mut impl FnMut(&'a CommentRec)) {
        visit(comment);
        for reply in self
            .comments
            .iter()
            .filter(|c| c.parent.as_deref() == Some(comment.id.as_str()))
        {
            self.subtree(reply, visit);
        }
    }
}

fn matches_any(post: &PostRec, searches: &[&str]) -> bool {
    searches.iter().any(|q| {
        let q = q.to_lowercase();
        post.title.to_lowercase().contains(&q) || post.selftext.to_lowercase().contains(&q)
    })
}

/// User `n`: `user{n}`, `t2_u{n}`.
pub fn user(n: usize) -> User {
    User {
        fullname: format!("t2_u{n}"),
        name: format!("user{n}"),
    }
}

/// A running fake Reddit.
pub struct FakeReddit {
    server: FakeServer,
    issuer: TokenIssuer,
    data: Arc<Mutex<RedditData>>,
}

impl FakeReddit {
    /// Serves `data` for the application `client_id` / `secret`; tokens live `token_lifetime`
    /// seconds.
    pub async fn start(
        data: RedditData,
        client_id: &str,
        secret: &str,
        token_lifetime: u64,
    ) -> std::io::Result<Self> {
        let server = FakeServer::start().await?;
        let issuer = TokenIssuer::serve(&server, TOKEN_PATH, client_id, secret, token_lifetime);
        server.budget(budget(BUDGET.0, BUDGET.1));
        let data = Arc::new(Mutex::new(data));
        let shared = data.clone();
        let guard = issuer.clone();
        server.handle("/", move |request| {
            if !guard.authorizes(request) {
                return Reply::json(json!({"message": "Unauthorized", "error": 401}))
                    .with_status(401);
            }
            serve(&lock(&shared), request)
        });
        Ok(Self {
            server,
            issuer,
            data,
        })
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn token_url(&self) -> String {
        self.server.url(TOKEN_PATH)
    }

    pub fn server(&self) -> &FakeServer {
        &self.server
    }

    /// The token endpoint: tokens issued, revocation.
    pub fn issuer(&self) -> &TokenIssuer {
        &self.issuer
    }

    /// Reads or changes the content.
    pub fn edit<T>(&self, f: impl FnOnce(&mut RedditData) -> T) -> T {
        f(&mut lock(&self.data))
    }
}

/// Reddit's budget: `limit` requests per `window`, reported as `x-ratelimit-used`,
/// `x-ratelimit-remaining` (a float) and `x-ratelimit-reset` (seconds until the window resets);
/// a spent one is a 429 with the same headers and no `Retry-After`.
pub fn budget(limit: u32, window: Duration) -> Budget {
    Budget {
        headers: |state| {
            vec![
                ("x-ratelimit-used".into(), state.used.to_string()),
                (
                    "x-ratelimit-remaining".into(),
                    format!("{:.1}", f64::from(state.remaining())),
                ),
                (
                    "x-ratelimit-reset".into(),
                    state.retry_after_secs().to_string(),
                ),
            ]
        },
        refusal: |_| Reply::error(429, "Too Many Requests"),
        ..Budget::per_window(limit, window)
    }
}

fn lock(data: &Mutex<RedditData>) -> MutexGuard<'_, RedditData> {
    data.lock().unwrap_or_else(|p| p.into_inner())
}

fn serve(data: &RedditData, request: &Request) -> Reply {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["r", sub, "new"] => {
            let posts: Vec<&PostRec> = data.posts.iter().filter(|p| p.subreddit == *sub).collect();
            listing(request, posts, "t3", |p| post_json(data, p))
        }
        ["search"] => {
            let q = request.query("q").unwrap_or_default();
            let posts: Vec<&PostRec> = data.posts.iter().filter(|p| matches_any(p, &[q])).collect();
            listing(request, posts, "t3", |p| post_json(data, p))
        }
        ["r", sub, "comments"] => {
            let comments: Vec<&CommentRec> = data
                .comments
                .iter()
                .filter(|c| {
                    data.posts
                        .iter()
                        .any(|p| p.id == c.post && p.subreddit == *sub)
                })
                .collect();
            listing(request, comments, "t1", |c| comment_json(data, c, None))
        }
        ["comments", id] => match data.posts.iter().find(|p| p.id == *id) {
            Some(post) => match request.query("comment") {
                Some(focus) => focused(data, post, focus),
                None => tree(data, post),
            },
            None => Reply::error(404, "Not Found"),
        },
        ["api", "morechildren"] => more_children(data, request),
        _ => Reply::error(404, "Not Found"),
    }
}

trait Named {
    fn id(&self) -> &str;
    fn created(&self) -> DateTime<Utc>;
}

impl Named for PostRec {
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> DateTime<Utc> {
        self.created
    }
}

impl Named for CommentRec {
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> DateTime<Utc> {
        self.created
    }
}

/// Newest first, `limit` (25, at most 100) after the `after` fullname.
fn listing<T: Named>(
    request: &Request,
    mut items: Vec<&T>,
    kind: &str,
    render: impl Fn(&T) -> Value,
) -> Reply {
    items.sort_by(|a, b| b.created().cmp(&a.created()).then(b.id().cmp(a.id())));
    let limit = request
        .query("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(25)
        .clamp(1, 100);
    let skip = match request.query("after") {
        Some(after) => match items
            .iter()
            .position(|i| format!("{kind}_{}", i.id()) == after)
        {
            Some(at) => at + 1,
            None => items.len(),
        },
        None => 0,
    };
    let page: Vec<&T> = items.iter().skip(skip).take(limit).copied().collect();
    let after = (skip + page.len() < items.len())
        .then(|| page.last().map(|i| format!("{kind}_{}", i.id())))
        .flatten();
    Reply::json(json!({
        "kind": "Listing",
        "data": {
            "after": after,
            "before": null,
            "dist": page.len(),
            "modhash": "",
            "geo_filter": "",
            "children": page.iter().map(|i| json!({"kind": kind, "data": render(i)})).collect::<Vec<_>>(),
        }
    }))
}

fn author_fields(data: &RedditData, author: Option<usize>) -> (Value, Value) {
    // user 1 deleted their account
    match author.filter(|a| *a != 1).and_then(|a| data.users.get(a)) {
        Some(u) => (json!(u.name), json!(u.fullname)),
        None => (json!("[deleted]"), Value::Null),
    }
}

fn post_json(data: &RedditData, post: &PostRec) -> Value {
    let (author, fullname) = author_fields(data, post.author);
    let permalink = format!(
        "/r/{}/comments/{}/post_{}/",
        post.subreddit, post.id, post.id
    );
    let mut value = json!({
        "id": post.id,
        "name": format!("t3_{}", post.id),
        "subreddit": post.subreddit,
        "subreddit_name_prefixed": format!("r/{}", post.subreddit),
        "title": post.title,
        "selftext": post.selftext,
        "author": author,
        "created_utc": post.created.timestamp() as f64,
        "permalink": permalink,
        "url": format!("https://www.reddit.com{permalink}"),
        "num_comments": data.comments.iter().filter(|c| c.post == post.id).count(),
        "score": 1,
        "link_flair_text": null,
        "is_self": true,
        "over_18": false,
    });
    if !fullname.is_null() {
        value["author_fullname"] = fullname;
    }
    value
}

/// A comment; with its replies when `depth` is given, down to [`MAX_DEPTH`], below which a
/// "continue this thread" `more` stands for them.
fn comment_json(data: &RedditData, comment: &CommentRec, depth: Option<usize>) -> Value {
    let (author, fullname) = author_fields(data, comment.author);
    let subreddit = data
        .posts
        .iter()
        .find(|p| p.id == comment.post)
        .map_or("", |p| p.subreddit.as_str());
    let answers = data
        .comments
        .iter()
        .filter(|c| c.parent.as_deref() == Some(comment.id.as_str()));
    let replies: Vec<Value> = match depth {
        Some(depth) if depth + 1 >= MAX_DEPTH && answers.clone().next().is_some() => {
            vec![json!({"kind": "more", "data": {
                "count": 0, "name": "t1__", "id": "_", "depth": depth + 1,
                "parent_id": format!("t1_{}", comment.id), "children": [],
            }})]
        }
        Some(depth) => answers
            .map(|c| json!({"kind": "t1", "data": comment_json(data, c, Some(depth + 1))}))
            .collect(),
        None => Vec::new(),
    };
    json!({
        "id": comment.id,
        "name": format!("t1_{}", comment.id),
        "parent_id": comment.parent.as_ref().map_or_else(|| format!("t3_{}", comment.post), |p| format!("t1_{p}")),
        "link_id": format!("t3_{}", comment.post),
        "author": author,
        "author_fullname": fullname,
        "body": comment.body,
        "created_utc": comment.created.timestamp() as f64,
        "permalink": format!("/r/{subreddit}/comments/{}/_/{}/", comment.post, comment.id),
        "subreddit": subreddit,
        "score": 1,
        "replies": if replies.is_empty() { json!("") } else {
            json!({"kind": "Listing", "data": {"after": null, "before": null, "children": replies}})
        },
    })
}

fn post_listing(data: &RedditData, post: &PostRec) -> Value {
    json!({"kind": "Listing", "data": {"after": null, "before": null,
        "children": [{"kind": "t3", "data": post_json(data, post)}]}})
}

/// `/comments/{post}?comment={id}`: the comment and its replies, as a thread of their own.
fn focused(data: &RedditData, post: &PostRec, focus: &str) -> Reply {
    let Some(comment) = data
        .comments
        .iter()
        .find(|c| c.id == focus && c.post == post.id)
    else {
        return Reply::error(404, "Not Found");
    };
    let children = vec![json!({"kind": "t1", "data": comment_json(data, comment, Some(0))})];
    let comments =
        json!({"kind": "Listing", "data": {"after": null, "before": null, "children": children}});
    Reply::json(json!([post_listing(data, post), comments]))
}

fn tree(data: &RedditData, post: &PostRec) -> Reply {
    let tops: Vec<&CommentRec> = data
        .comments
        .iter()
        .filter(|c| c.post == post.id && c.parent.is_none())
        .collect();
    let mut children: Vec<Value> = tops
        .iter()
        .take(SHOWN)
        .map(|c| json!({"kind": "t1", "data": comment_json(data, c, Some(0))}))
        .collect();
    let collapsed = data.collapsed(&post.id);
    if let Some(first) = collapsed.first() {
        children.push(json!({"kind": "more", "data": {
            "count": collapsed.len(), "name": format!("t1_{first}"), "id": first,
            "parent_id": format!("t3_{}", post.id), "depth": 0, "children": collapsed,
        }}));
    }
    let post_listing = json!({"kind": "Listing", "data": {"after": null, "before": null,
        "children": [{"kind": "t3", "data": post_json(data, post)}]}});
    let comments =
        json!({"kind": "Listing", "data": {"after": null, "before": null, "children": children}});
    Reply::json(json!([post_listing, comments]))
}

fn more_children(data: &RedditData, request: &Request) -> Reply {
    let ids: Vec<&str> = request
        .query("children")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .collect();
    if ids.len() > 100 {
        return Reply::json(
            json!({"json": {"errors": [["TOO_MANY_CHILDREN", "too many children", "children"]]}}),
        );
    }
    let post = request
        .query("link_id")
        .unwrap_or_default()
        .trim_start_matches("t3_");
    let things: Vec<Value> = ids
        .iter()
        .filter_map(|id| data.comments.iter().find(|c| c.id == *id && c.post == post))
        .map(|c| json!({"kind": "t1", "data": comment_json(data, c, None)}))
        .collect();
    Reply::json(json!({"json": {"errors": [], "data": {"things": things}}}))
}
