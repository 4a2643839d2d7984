//! A fake Forem (feature `fakes`), built on the testkit's [`FakeServer`]: it serves generated
//! users, organizations, articles and comment trees the way Forem's API v1 does —
//! `/api/articles?username=` (a user's or an organization's articles, newest first),
//! `/api/organizations/{username}/articles`, `/api/comments?a_id=` (the whole tree, replies in
//! `children`), `page` / `per_page` (default 30, at most 1,000) — and lets a test inject
//! faults and read the requests through [`FakeForem::server`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};
use tributary::testkit::{FakeServer, Reply, Request};

use super::api::{Article, Comment, Organization, User};

/// What a fake Forem holds.
#[derive(Debug, Clone, Default)]
pub struct ForemData {
    pub users: Vec<User>,
    pub organizations: Vec<Organization>,
    /// Articles without their comment counts (computed when served).
    pub articles: Vec<Article>,
    /// Comment trees by article id.
    pub comments: BTreeMap<u64, Vec<Comment>>,
    next_id: u64,
}

/// The shape of a generated Forem.
#[derive(Debug, Clone, Copy)]
pub struct ForemSpec {
    pub users: usize,
    pub organizations: usize,
    pub articles_per_user: usize,
    /// Top-level comments of a commented article (every fourth article has none).
    pub comments_per_article: usize,
    /// Each top-level comment has a chain of this many nested replies.
    pub reply_depth: usize,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

impl ForemData {
    /// A deterministic Forem: the same spec always yields the same ids, authors and times.
    /// User `u` writes articles; every third of them is published in organization
    /// `u % organizations`.
    pub fn generate(spec: ForemSpec) -> Self {
        let mut data = Self {
            next_id: 1,
            ..Self::default()
        };
        for u in 0..spec.users {
            data.users.push(user(u));
        }
        for o in 0..spec.organizations {
            data.organizations.push(Organization {
                username: format!("org{o}"),
                name: Some(format!("Organization {o}")),
                slug: Some(format!("org{o}")),
            });
        }
        let mut minute = 0;
        for u in 0..spec.users {
            for a in 0..spec.articles_per_user {
                minute += 60;
                let org =
                    (spec.organizations > 0 && a % 3 == 0).then_some(u % spec.organizations.max(1));
                let at = start() + Duration::minutes(minute);
                let id = data.add_article(u, org, &format!("Article {a} by user{u}"), at);
                if a % 4 == 3 {
                    continue;
                }
                for c in 0..spec.comments_per_article {
                    let commenter = (u + c + 1) % spec.users.max(1);
                    let mut parent =
                        data.add_comment(id, None, commenter, at + Duration::minutes(c as i64 + 1));
                    for r in 0..spec.reply_depth {
                        let replier = (commenter + r + 1) % spec.users.max(1);
                        let when = at + Duration::minutes((c * 10 + r) as i64 + 2);
                        parent = data.add_comment(id, Some(&parent), replier, when);
                    }
                }
            }
        }
        data
    }

    fn take_id(&mut self) -> u64 {
        self.next_id = self.next_id.max(1);
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Publishes an article by user `author` (an index of `users`), in organization `org` (an
    /// index of `organizations`) if given. Returns its id.
    pub fn add_article(
        &mut self,
        author: usize,
        org: Option<usize>,
        title: &str,
        at: DateTime<Utc>,
    ) -> u64 {
        let id = self.take_id();
        let user = self
            .users
            .get(author)
            .cloned()
            .unwrap_or_else(|| user(author));
        let organization = org.and_then(|o| self.organizations.get(o).cloned());
        let owner = organization
            .as_ref()
            .map_or(user.username.clone(), |o| o.username.clone());
        self.articles.push(Article {
            id,
            title: title.to_owned(),
            description: Some(format!("{title}: a description")),
            url: format!("https://forem.test/{owner}/article-{id}"),
            comments_count: 0,
            public_reactions_count: id % 7,
            reading_time_minutes: Some(1 + id % 5),
            published_at: at,
            last_comment_at: Some(at),
            tag_list: vec!["rust".into(), "discuss".into()],
            user,
            organization,
        });
        id
    }

    /// Adds a comment to an article, as a reply to `parent` (an `id_code`) if given. Returns
    /// its `id_code`.
    pub fn add_comment(
        &mut self,
        article_id: u64,
        parent: Option<&str>,
        author: usize,
        at: DateTime<Utc>,
    ) -> String {
        let id_code = format!("c{}", self.take_id());
        let comment = Comment {
            id_code: id_code.clone(),
            created_at: at,
            body_html: Some(format!("<p>comment {id_code}</p>")),
            user: Some(
                self.users
                    .get(author)
                    .cloned()
                    .unwrap_or_else(|| user(author)),
            ),
            children: Vec::new(),
        };
        let tree = self.comments.entry(article_id).or_default();
        match parent.and_then(|p| find_mut(tree, p)) {
            Some(parent) => parent.children.push(comment),
            None => tree.push(comment),
        }
        if let Some(article) = self.articles.iter_mut().find(|a| a.id == article_id) {
            article.last_comment_at = article.last_comment_at.max(Some(at));
        }
        id_code
    }

    /// Forem keeps a comment whose author deleted their account, without its `user`.
    pub fn delete_comment_author(&mut self, id_code: &str) {
        for tree in self.comments.values_mut() {
            if let Some(comment) = find_mut(tree, id_code) {
                comment.user = None;
            }
        }
    }

    /// The articles a configuration reads: those of the users (theirs, in organizations too)
    /// and of the organizations.
    pub fn articles_of(&self, users: &[&str], orgs: &[&str]) -> Vec<&Article> {
        self.articles
            .iter()
            .filter(|a| {
                users.contains(&a.user.username.as_str())
                    || a.organization
                        .as_ref()
                        .is_some_and(|o| orgs.contains(&o.username.as_str()))
            })
            .collect()
    }

    /// Source ids of the activities an onboarding of `users` and `orgs` produces.
    pub fn expected_activities(&self, users: &[&str], orgs: &[&str]) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for article in self.articles_of(users, orgs) {
            ids.insert(format!("article:{}", article.id));
            walk(
                self.comments
                    .get(&article.id)
                    .map_or(&[][..], Vec::as_slice),
                &mut |c| {
                    if c.user.is_some() {
                        ids.insert(format!("comment:{}", c.id_code));
                    }
                },
            );
        }
        ids
    }

    /// Source ids (Forem user ids) of the members an onboarding of `users` and `orgs` produces.
    pub fn expected_members(&self, users: &[&str], orgs: &[&str]) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        for article in self.articles_of(users, orgs) {
            ids.insert(article.user.user_id.to_string());
            walk(
                self.comments
                    .get(&article.id)
                    .map_or(&[][..], Vec::as_slice),
                &mut |c| {
                    if let Some(user) = &c.user {
                        ids.insert(user.user_id.to_string());
                    }
                },
            );
        }
        ids
    }

    /// Comments of an article, all depths.
    /// Requests an onboarding of these users and organizations needs at `per_page`: (article
    /// list pages, comment threads of commented articles).
    pub fn expected_requests(
        &self,
        users: &[&str],
        orgs: &[&str],
        per_page: usize,
    ) -> (usize, usize) {
        let pages = |n: usize| n / per_page + 1;
        let of_user = |u: &str| {
            self.articles
                .iter()
                .filter(|a| a.user.username == u)
                .count()
        };
        let of_org = |o: &str| {
            self.articles
                .iter()
                .filter(|a| a.organization.as_ref().is_some_and(|x| x.username == o))
                .count()
        };
        let list_pages = users.iter().map(|u| pages(of_user(u))).sum::<usize>()
            + orgs.iter().map(|o| pages(of_org(o))).sum::<usize>();
        let commented = self
            .articles_of(users, orgs)
            .iter()
            .filter(|a| self.comment_count(a.id) > 0)
            .count();
        (list_pages, commented)
    }

    pub fn comment_count(&self, article_id: u64) -> u64 {
        let mut n = 0;
        walk(
            self.comments
                .get(&article_id)
                .map_or(&[][..], Vec::as_slice),
            &mut |_| n += 1,
        );
        n
    }
}

/// User `n` of a generated Forem (`user_id` 1000 + n).
pub fn user(n: usize) -> User {
    User {
        user_id: 1000 + n as u64,
        username: format!("user{n}"),
        name: Some(format!("User {n}")),
        twitter_username: None,
        github_username: Some(format!("gh-user{n}")),
        website_url: None,
        profile_image: Some(format!("/uploads/user/profile_image/{n}/avatar.png")),
    }
}

fn find_mut<'a>(tree: &'a mut [Comment], id_code: &str) -> Option<&'a mut Comment> {
    for comment in tree {
        if comment.id_code == id_code {
            return Some(comment);
        }
        if let Some(found) = find_mut(&mut comment.children, id_code) {
            return Some(found);
        }
    }
    None
}

fn walk(tree: &[Comment], visit: &mut impl FnMut(&Comment)) {
    for comment in tree {
        visit(comment);
        walk(&comment.children, visit);
    }
}

/// A running fake Forem.
pub struct FakeForem {
    server: FakeServer,
    data: Arc<Mutex<ForemData>>,
}

impl FakeForem {
    /// Serves `data` on a free port; with `api_key`, requests without that `api-key` get 401.
    pub async fn start(data: ForemData, api_key: Option<&str>) -> std::io::Result<Self> {
        let server = FakeServer::start().await?;
        let data = Arc::new(Mutex::new(data));
        if let Some(key) = api_key {
            server.require_header("api-key", key);
        }
        let shared = data.clone();
        server.handle("/api/", move |request| {
            let data = shared.lock().unwrap_or_else(|p| p.into_inner());
            serve(&data, request)
        });
        Ok(Self { server, data })
    }

    /// The API root to configure: `http://127.0.0.1:PORT/api`.
    pub fn base_url(&self) -> String {
        self.server.url("/api")
    }

    /// The underlying server: inject faults, read the requests.
    pub fn server(&self) -> &FakeServer {
        &self.server
    }

    fn data(&self) -> MutexGuard<'_, ForemData> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads or changes the content (new articles and comments between runs).
    pub fn edit<T>(&self, f: impl FnOnce(&mut ForemData) -> T) -> T {
        f(&mut self.data())
    }
}

fn not_found() -> Reply {
    Reply::json(json!({"error": "not found", "status": 404})).with_status(404)
}

fn serve(data: &ForemData, request: &Request) -> Reply {
    let path = request.path.trim_start_matches("/api");
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["articles"] => {
            let Some(username) = request.query("username") else {
                return Reply::json(json!([]));
            };
            let articles = data.articles.iter().filter(|a| {
                a.user.username == username
                    || a.organization
                        .as_ref()
                        .is_some_and(|o| o.username == username)
            });
            page(data, articles.collect(), request)
        }
        ["organizations", org, "articles"] => {
            if !data.organizations.iter().any(|o| o.username == *org) {
                return not_found();
            }
            let articles = data
                .articles
                .iter()
                .filter(|a| a.organization.as_ref().is_some_and(|o| o.username == *org));
            page(data, articles.collect(), request)
        }
        ["comments"] => {
            let Some(id) = request.query("a_id").and_then(|v| v.parse::<u64>().ok()) else {
                return Reply::json(json!({"error": "a_id or p_id is required", "status": 400}))
                    .with_status(400);
            };
            if !data.articles.iter().any(|a| a.id == id) {
                return not_found();
            }
            let tree = data.comments.get(&id).map_or(&[][..], Vec::as_slice);
            Reply::json(Value::Array(tree.iter().map(comment_json).collect()))
        }
        _ => not_found(),
    }
}

/// Newest first, `page` / `per_page` as Forem reads them.
fn page(data: &ForemData, mut articles: Vec<&Article>, request: &Request) -> Reply {
    articles.sort_by(|a, b| b.published_at.cmp(&a.published_at).then(b.id.cmp(&a.id)));
    let per_page = request
        .query("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 1000);
    let page = request
        .query("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let body: Vec<Value> = articles
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|a| article_json(data, a))
        .collect();
    Reply::json(body)
}

fn user_json(user: &User) -> Value {
    json!({
        "name": user.name,
        "username": user.username,
        "twitter_username": user.twitter_username,
        "github_username": user.github_username,
        "user_id": user.user_id,
        "website_url": user.website_url,
        "profile_image": user.profile_image,
        "profile_image_90": user.profile_image,
    })
}

fn article_json(data: &ForemData, article: &Article) -> Value {
    let published = article
        .published_at
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({
        "type_of": "article",
        "id": article.id,
        "title": article.title,
        "description": article.description,
        "readable_publish_date": article.published_at.format("%b %-d").to_string(),
        "slug": format!("article-{}", article.id),
        "path": article.url.trim_start_matches("https://forem.test"),
        "url": article.url,
        "comments_count": data.comment_count(article.id),
        "public_reactions_count": article.public_reactions_count,
        "positive_reactions_count": article.public_reactions_count,
        "collection_id": null,
        "published_timestamp": published,
        "cover_image": null,
        "social_image": "https://forem.test/social.png",
        "canonical_url": article.url,
        "created_at": published,
        "edited_at": null,
        "crossposted_at": null,
        "published_at": published,
        "last_comment_at": article.last_comment_at,
        "reading_time_minutes": article.reading_time_minutes,
        "tag_list": article.tag_list,
        "tags": article.tag_list.join(", "),
        "user": user_json(&article.user),
        "organization": article.organization.as_ref().map(|o| json!({
            "name": o.name,
            "username": o.username,
            "slug": o.slug,
            "profile_image": "/uploads/organization/profile_image/1/logo.png",
            "profile_image_90": "/uploads/organization/profile_image/1/logo.png",
        })),
    })
}

fn comment_json(comment: &Comment) -> Value {
    json!({
        "type_of": "comment",
        "id_code": comment.id_code,
        "created_at": comment.created_at,
        "body_html": comment.body_html,
        "user": comment.user.as_ref().map(user_json),
        "children": comment.children.iter().map(comment_json).collect::<Vec<_>>(),
    })
}
