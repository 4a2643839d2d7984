//! A fake Discourse (feature `fakes`) on the testkit's [`FakeServer`], answering as Discourse's
//! API description says: `/categories.json` (subcategories inside with
//! `include_subcategories=true`), `/c/{slug}/{id}.json` (0-based `page`, `per_page`,
//! `more_topics_url` while there is more, `no_subcategories`), `/t/{id}.json` (the first 20
//! posts and `post_stream.stream`), `/t/{id}/posts.json?post_ids[]=…`, `/posts.json?before=`
//! (50 a page, newest first); the description's nullable fields are sent as `null`. A private
//! forum refuses anonymous readers (403 `not_logged_in`) and a wrong key (403
//! `invalid_access`), as Discourse does.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};
use tributary::testkit::{FakeServer, Reply, Request};

/// Posts in a topic answer; the rest are asked for by id.
pub const TOPIC_CHUNK: usize = 20;
/// Posts a `/posts.json` page holds.
pub const LATEST_PAGE: usize = 50;

#[derive(Debug, Clone)]
pub struct FakeCategory {
    pub id: u64,
    pub slug: String,
    pub parent: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct FakeUser {
    pub id: i64,
    pub username: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct FakeTopic {
    pub id: u64,
    pub title: String,
    pub category_id: u64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct FakePost {
    pub id: u64,
    pub topic_id: u64,
    pub post_number: u64,
    pub user: usize,
    pub created_at: DateTime<Utc>,
    pub reply_to: Option<u64>,
    /// 1 regular, 3 a small action.
    pub post_type: u64,
}

/// What the fake forum holds.
#[derive(Debug, Clone, Default)]
pub struct DiscourseData {
    pub categories: Vec<FakeCategory>,
    pub users: Vec<FakeUser>,
    pub topics: Vec<FakeTopic>,
    pub posts: Vec<FakePost>,
}

/// The shape of a generated forum.
#[derive(Debug, Clone, Copy)]
pub struct ForumSpec {
    pub users: usize,
    /// Topics in each category (`general`, its subcategory `general/help`, `dev`).
    pub topics_per_category: usize,
    /// Topic `t` has `1 + (t % 4) * replies_step` posts.
    pub replies_step: usize,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

impl DiscourseData {
    /// A deterministic forum: the same spec, the same ids, authors and times. Every fifth topic
    /// ends with a small action (closed), which is no activity.
    pub fn generate(spec: ForumSpec) -> Self {
        let mut data = Self {
            categories: vec![
                category(1, "general", None),
                category(2, "dev", None),
                category(3, "help", Some(1)),
            ],
            users: (0..spec.users).map(user).collect(),
            ..Self::default()
        };
        let mut minute = 0;
        for t in 0..spec.topics_per_category * 3 {
            let category_id = [1, 2, 3][t % 3];
            minute += 90;
            let at = start() + Duration::minutes(minute);
            let topic = data.add_topic(category_id, t % spec.users.max(1), at);
            for r in 0..(t % 4) * spec.replies_step {
                let reply_to = (r % 3 == 1).then_some(r as u64 + 1);
                let author = (t + r + 1) % spec.users.max(1);
                data.add_post(
                    topic,
                    author,
                    reply_to,
                    at + Duration::minutes(r as i64 + 1),
                );
            }
            if t % 5 == 4 {
                let number = data.next_number(topic);
                data.posts.push(FakePost {
                    id: data.next_post_id(),
                    topic_id: topic,
                    post_number: number,
                    user: 0,
                    created_at: at + Duration::minutes(89),
                    reply_to: None,
                    post_type: 3,
                });
            }
        }
        data
    }

    fn next_post_id(&self) -> u64 {
        self.posts.iter().map(|p| p.id).max().unwrap_or(100) + 1
    }

    fn next_number(&self, topic_id: u64) -> u64 {
        self.posts
            .iter()
            .filter(|p| p.topic_id == topic_id)
            .map(|p| p.post_number)
            .max()
            .unwrap_or(0)
            + 1
    }

    /// Opens a topic (its first post by user `author`); returns its id.
    pub fn add_topic(&mut self, category_id: u64, author: usize, at: DateTime<Utc>) -> u64 {
        let id = self.topics.iter().map(|t| t.id).max().unwrap_or(10) + 1;
        self.topics.push(FakeTopic {
            id,
            title: format!("Topic {id}"),
            category_id,
            created_at: at,
        });
        self.add_post(id, author, None, at);
        id
    }

    /// Adds a post to a topic (a reply to post number `reply_to`, if given); returns its
    /// activity's source id.
    pub fn add_post(
        &mut self,
        topic_id: u64,
        author: usize,
        reply_to: Option<u64>,
        at: DateTime<Utc>,
    ) -> String {
        let number = self.next_number(topic_id);
        self.posts.push(FakePost {
            id: self.next_post_id(),
            topic_id,
            post_number: number,
            user: author,
            created_at: at,
            reply_to,
            post_type: 1,
        });
        source_id(topic_id, number)
    }

    fn written(&self) -> impl Iterator<Item = &FakePost> {
        self.posts.iter().filter(|p| p.post_type == 1)
    }

    pub fn expected_activities(&self) -> BTreeSet<String> {
        self.written()
            .map(|p| source_id(p.topic_id, p.post_number))
            .collect()
    }

    pub fn expected_members(&self) -> BTreeSet<String> {
        self.written()
            .map(|p| self.users[p.user].id.to_string())
            .collect()
    }

    /// Requests an onboarding needs: the category list, each category's topic-list pages, each
    /// topic, and each chunk of `posts_per_request` posts the topic answer left out.
    pub fn expected_requests(&self, topics_per_page: usize, posts_per_request: usize) -> usize {
        let lists: usize = self
            .categories
            .iter()
            .map(|c| {
                let n = self.topics.iter().filter(|t| t.category_id == c.id).count();
                n.div_ceil(topics_per_page).max(1)
            })
            .sum();
        let chunks: usize = self
            .topics
            .iter()
            .map(|t| {
                let n = self.posts.iter().filter(|p| p.topic_id == t.id).count();
                n.saturating_sub(TOPIC_CHUNK).div_ceil(posts_per_request)
            })
            .sum();
        1 + lists + self.topics.len() + chunks
    }
}

fn category(id: u64, slug: &str, parent: Option<u64>) -> FakeCategory {
    FakeCategory {
        id,
        slug: slug.to_owned(),
        parent,
    }
}

/// User `n` of a generated forum (Discourse user id 200 + n); every third has no name.
pub fn user(n: usize) -> FakeUser {
    FakeUser {
        id: 200 + n as i64,
        username: format!("user{n}"),
        name: (n % 3 != 2).then(|| format!("User {n}")),
    }
}

fn source_id(topic_id: u64, number: u64) -> String {
    if number <= 1 {
        format!("topic:{topic_id}")
    } else {
        format!("post:{topic_id}:{number}")
    }
}

/// A running fake Discourse.
pub struct FakeDiscourse {
    server: FakeServer,
    data: Arc<Mutex<DiscourseData>>,
}

impl FakeDiscourse {
    /// Serves `data`. With `key`, the forum is private: requests need `Api-Key: key` and an
    /// `Api-Username`.
    pub async fn start(data: DiscourseData, key: Option<&str>) -> std::io::Result<Self> {
        let server = FakeServer::start().await?;
        let data = Arc::new(Mutex::new(data));
        let shared = data.clone();
        let key = key.map(str::to_owned);
        server.handle("/", move |request| {
            if let Some(refusal) = refuse(key.as_deref(), request) {
                return refusal;
            }
            serve(&lock(&shared), request)
        });
        Ok(Self { server, data })
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn server(&self) -> &FakeServer {
        &self.server
    }

    pub fn edit<T>(&self, f: impl FnOnce(&mut DiscourseData) -> T) -> T {
        f(&mut lock(&self.data))
    }
}

fn lock(data: &Mutex<DiscourseData>) -> MutexGuard<'_, DiscourseData> {
    data.lock().unwrap_or_else(|p| p.into_inner())
}

fn errors(status: u16, error_type: &str, message: &str) -> Reply {
    Reply::json(json!({"errors": [message], "error_type": error_type})).with_status(status)
}

/// Discourse's 429: `Retry-After` and `extras.wait_seconds`.
pub fn rate_limited(seconds: u64) -> Reply {
    Reply::json(json!({
        "errors": [format!("You’ve performed this action too many times. Please wait {seconds} seconds before trying again.")],
        "error_type": "rate_limit",
        "extras": {"wait_seconds": seconds, "time_left": format!("{seconds} seconds")},
    }))
    .with_status(429)
    .header("Retry-After", seconds.to_string())
}

fn refuse(key: Option<&str>, request: &Request) -> Option<Reply> {
    let key = key?;
    match (request.header("api-key"), request.header("api-username")) {
        (None, _) => Some(errors(
            403,
            "not_logged_in",
            "You need to be logged in to do that.",
        )),
        (Some(given), Some(_)) if given == key => None,
        _ => Some(errors(
            403,
            "invalid_access",
            "You are not permitted to view the requested resource. The API username or key is invalid.",
        )),
    }
}

fn not_found() -> Reply {
    errors(
        404,
        "not_found",
        "The requested URL or resource could not be found.",
    )
}

fn serve(data: &DiscourseData, request: &Request) -> Reply {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["categories.json"] => {
            categories(data, request.query("include_subcategories") == Some("true"))
        }
        ["c", slug, id] => {
            let id = id.trim_end_matches(".json").parse::<u64>().ok();
            match data
                .categories
                .iter()
                .find(|c| Some(c.id) == id && c.slug == *slug)
            {
                Some(c) => topic_list(data, c, request),
                None => not_found(),
            }
        }
        ["t", id] => match id.trim_end_matches(".json").parse::<u64>() {
            Ok(id) => topic(data, id),
            Err(_) => not_found(),
        },
        ["t", id, "posts.json"] => {
            let ids: Vec<u64> = request
                .query
                .iter()
                .filter(|(k, _)| k == "post_ids[]")
                .filter_map(|(_, v)| v.parse().ok())
                .collect();
            match id.parse::<u64>() {
                Ok(topic_id) if data.topics.iter().any(|t| t.id == topic_id) => {
                    let posts: Vec<Value> = data
                        .posts
                        .iter()
                        .filter(|p| p.topic_id == topic_id && ids.contains(&p.id))
                        .map(|p| post_json(data, p, false))
                        .collect();
                    Reply::json(json!({"post_stream": {"posts": posts}, "id": topic_id}))
                }
                _ => not_found(),
            }
        }
        ["posts.json"] => latest(data, request),
        _ => not_found(),
    }
}

fn category_json(data: &DiscourseData, c: &FakeCategory, with_subs: bool) -> Value {
    let subs: Vec<&FakeCategory> = data
        .categories
        .iter()
        .filter(|s| s.parent == Some(c.id))
        .collect();
    let topics = data.topics.iter().filter(|t| t.category_id == c.id).count();
    let mut value = json!({
        "id": c.id, "name": c.slug.to_uppercase(), "color": "0088CC", "text_color": "FFFFFF",
        "style_type": "square", "emoji": null, "icon": null, "slug": c.slug,
        "topic_count": topics, "post_count": topics * 3, "position": c.id,
    });
    let more = json!({
        "description": null, "description_text": null, "description_excerpt": null,
        "topic_url": null, "read_restricted": false, "permission": null,
        "notification_level": 1, "can_edit": false, "topic_template": null,
        "topic_title_placeholder": null, "has_children": !subs.is_empty(),
        "subcategory_count": null, "sort_order": null, "sort_ascending": null,
        "show_subcategory_list": false, "num_featured_topics": 3, "default_view": null,
        "subcategory_list_style": "rows_with_featured_topics", "default_top_period": "all",
        "default_list_filter": "all", "minimum_required_tags": 0,
    });
    let rest = json!({
        "navigate_to_first_post_after_read": false, "topics_day": 0, "topics_week": 0,
        "topics_month": 0, "topics_year": 0, "topics_all_time": topics,
        "subcategory_ids": subs.iter().map(|s| s.id).collect::<Vec<_>>(),
        "uploaded_logo": null, "uploaded_logo_dark": null, "uploaded_background": null,
        "uploaded_background_dark": null,
    });
    merge(&mut value, more);
    merge(&mut value, rest);
    if with_subs && let Value::Object(map) = &mut value {
        let list: Vec<Value> = subs.iter().map(|s| category_json(data, s, true)).collect();
        map.insert("subcategory_list".into(), Value::Array(list));
    }
    value
}

fn categories(data: &DiscourseData, with_subs: bool) -> Reply {
    let top: Vec<Value> = data
        .categories
        .iter()
        .filter(|c| c.parent.is_none() || !with_subs)
        .map(|c| category_json(data, c, with_subs))
        .collect();
    Reply::json(json!({"category_list": {
        "can_create_category": false, "can_create_topic": true, "categories": top,
    }}))
}

/// Newest first; Discourse's page numbers start at 0. Subcategories' topics are left out only
/// with `no_subcategories=true`.
fn topic_list(data: &DiscourseData, c: &FakeCategory, request: &Request) -> Reply {
    let page = request
        .query("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let per_page = request
        .query("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let only_this = request.query("no_subcategories") == Some("true");
    let mut topics: Vec<&FakeTopic> = data
        .topics
        .iter()
        .filter(|t| {
            t.category_id == c.id
                || (!only_this
                    && data
                        .categories
                        .iter()
                        .any(|s| s.id == t.category_id && s.parent == Some(c.id)))
        })
        .collect();
    topics.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
    let more = (page + 1) * per_page < topics.len();
    let listed: Vec<Value> = topics
        .iter()
        .skip(page * per_page)
        .take(per_page)
        .map(|t| topic_summary(data, t))
        .collect();
    let mut list = json!({
        "can_create_topic": true, "per_page": per_page, "top_tags": [], "topics": listed,
    });
    if more && let Value::Object(map) = &mut list {
        map.insert(
            "more_topics_url".into(),
            json!(format!("/c/{}/{}/l/latest?page={}", c.slug, c.id, page + 1)),
        );
    }
    let users: Vec<Value> = data
        .users
        .iter()
        .map(|u| {
            json!({
                "id": u.id, "username": u.username, "name": u.name.clone().unwrap_or_default(),
                "avatar_template": avatar(u),
            })
        })
        .collect();
    Reply::json(json!({"users": users, "primary_groups": [], "topic_list": list}))
}

fn posts_of(data: &DiscourseData, topic_id: u64) -> Vec<&FakePost> {
    let mut posts: Vec<&FakePost> = data
        .posts
        .iter()
        .filter(|p| p.topic_id == topic_id)
        .collect();
    posts.sort_by_key(|p| p.post_number);
    posts
}

fn topic_summary(data: &DiscourseData, t: &FakeTopic) -> Value {
    let posts = posts_of(data, t.id);
    let last = posts.last().map_or(t.created_at, |p| p.created_at);
    let first_user = posts.first().map_or(0, |p| p.user);
    json!({
        "id": t.id, "title": t.title, "fancy_title": t.title, "slug": slug(t),
        "posts_count": posts.len(), "reply_count": posts.len().saturating_sub(1),
        "highest_post_number": posts.len(), "image_url": null, "created_at": t.created_at,
        "last_posted_at": last, "bumped": true, "bumped_at": last, "archetype": "regular",
        "unseen": false, "pinned": false, "unpinned": null, "excerpt": "An excerpt",
        "visible": true, "closed": false, "archived": false, "bookmarked": null, "liked": null,
        "views": 10, "like_count": 0, "has_summary": false, "last_poster_username": "user0",
        "category_id": t.category_id, "pinned_globally": false, "featured_link": null,
        "posters": [{"extras": "latest", "description": "Original Poster",
                     "user_id": data.users[first_user].id, "primary_group_id": null}],
    })
}

fn slug(t: &FakeTopic) -> String {
    t.title.to_lowercase().replace(' ', "-")
}

fn avatar(u: &FakeUser) -> String {
    format!("/user_avatar/forum.test/{}/{{size}}/1_2.png", u.username)
}

fn topic(data: &DiscourseData, id: u64) -> Reply {
    let Some(t) = data.topics.iter().find(|t| t.id == id) else {
        return not_found();
    };
    let posts = posts_of(data, id);
    let first: Vec<Value> = posts
        .iter()
        .take(TOPIC_CHUNK)
        .map(|p| post_json(data, p, false))
        .collect();
    let mut value = json!({
        "post_stream": {"posts": first, "stream": posts.iter().map(|p| p.id).collect::<Vec<_>>()},
        "timeline_lookup": [], "suggested_topics": [], "tags": [], "tags_descriptions": {},
        "id": t.id, "title": t.title, "fancy_title": t.title, "posts_count": posts.len(),
        "created_at": t.created_at, "views": 10, "reply_count": posts.len().saturating_sub(1),
        "like_count": 0, "last_posted_at": posts.last().map(|p| p.created_at), "visible": true,
        "closed": false, "archived": false, "has_summary": false, "archetype": "regular",
        "slug": slug(t), "category_id": t.category_id, "word_count": 100,
    });
    let rest = json!({
        "deleted_at": null, "user_id": posts.first().map(|p| data.users[p.user].id),
        "featured_link": null, "pinned_globally": false, "pinned_at": null,
        "pinned_until": null, "image_url": null, "slow_mode_seconds": 0, "draft": null,
        "draft_key": format!("topic_{id}"), "draft_sequence": 0, "unpinned": null,
        "pinned": false, "current_post_number": 1, "highest_post_number": posts.len(),
        "deleted_by": null, "has_deleted": false, "actions_summary": [],
        "chunk_size": TOPIC_CHUNK, "bookmarked": false, "bookmarks": [],
        "topic_timer": null, "message_bus_last_id": 0, "participant_count": 1,
        "show_read_indicator": false, "thumbnails": null, "slow_mode_enabled_until": null,
        "details": {"can_edit": false, "notification_level": 1, "participants": [],
                    "created_by": null, "last_poster": null, "links": []},
    });
    merge(&mut value, rest);
    Reply::json(value)
}

fn post_json(data: &DiscourseData, p: &FakePost, latest: bool) -> Value {
    let u = &data.users[p.user];
    let t = data.topics.iter().find(|t| t.id == p.topic_id);
    let mut value = json!({
        "id": p.id, "name": u.name, "username": u.username, "avatar_template": avatar(u),
        "created_at": p.created_at, "cooked": format!("<p>post {} of topic {}</p>", p.post_number, p.topic_id),
        "post_number": p.post_number, "post_type": p.post_type, "updated_at": p.created_at,
        "reply_count": 0, "reply_to_post_number": p.reply_to, "quote_count": 0,
        "incoming_link_count": 0, "reads": 1, "readers_count": 0, "score": 0.2,
        "yours": false, "topic_id": p.topic_id, "topic_slug": t.map(slug),
    });
    let rest = json!({
        "display_username": u.name, "primary_group_name": null, "flair_name": null,
        "flair_url": null, "flair_bg_color": null, "flair_color": null, "version": 1,
        "can_edit": false, "can_delete": false, "can_recover": false, "can_wiki": false,
        "read": true, "user_title": null, "actions_summary": [], "moderator": false,
        "admin": false, "staff": false, "user_id": u.id, "hidden": false, "trust_level": 1,
        "deleted_at": null, "user_deleted": false, "edit_reason": null,
        "can_view_edit_history": true, "wiki": false, "reviewable_id": 0,
        "reviewable_score_count": 0, "reviewable_score_pending_count": 0,
    });
    merge(&mut value, rest);
    if latest && let Value::Object(map) = &mut value {
        map.insert("topic_title".into(), json!(t.map(|t| t.title.clone())));
        map.insert("topic_html_title".into(), json!(t.map(|t| t.title.clone())));
        map.insert("category_id".into(), json!(t.map(|t| t.category_id)));
        map.insert(
            "posts_count".into(),
            json!(posts_of(data, p.topic_id).len()),
        );
        map.insert("raw".into(), json!("post"));
        map.insert("excerpt".into(), json!("post"));
        map.insert("truncated".into(), json!(false));
        map.insert(
            "post_url".into(),
            json!(format!(
                "/t/{}/{}/{}",
                t.map(slug).unwrap_or_default(),
                p.topic_id,
                p.post_number
            )),
        );
    }
    value
}

/// The latest posts, newest (highest id) first, before `before`.
fn latest(data: &DiscourseData, request: &Request) -> Reply {
    let before = request.query("before").and_then(|v| v.parse::<u64>().ok());
    let mut posts: Vec<&FakePost> = data
        .posts
        .iter()
        .filter(|p| before.is_none_or(|b| p.id < b))
        .collect();
    posts.sort_by_key(|p| std::cmp::Reverse(p.id));
    let page: Vec<Value> = posts
        .iter()
        .take(LATEST_PAGE)
        .map(|p| post_json(data, p, true))
        .collect();
    Reply::json(json!({"latest_posts": page}))
}

/// Adds `more`'s fields to `value` (both objects): `json!` has a recursion limit.
fn merge(value: &mut Value, more: Value) {
    if let (Value::Object(map), Value::Object(more)) = (value, more) {
        map.extend(more);
    }
}
