//! A fake Hacker News (feature `fakes`), built on the testkit's [`FakeServer`]: both APIs on one
//! server, under two prefixes —
//! * [`ALGOLIA_PREFIX`]`/search_by_date`: Algolia's search over generated stories and comments,
//!   newest first, with `query` (every word must occur in the title, url, text or author),
//!   `tags` (`,` is AND, `(a,b)` is OR; items are tagged `story`/`comment`, `author_{name}`,
//!   `story_{id}`), `numericFilters` (`created_at_i`, `points`, `num_comments` with `<`, `<=`,
//!   `=`, `>=`, `>`), `page` (from 0) and `hitsPerPage` (default 20, at most 1,000), and
//!   Algolia's pagination limit: no hit past the 1,000th of a query, `nbPages` capped to match;
//! * [`FIREBASE_PREFIX`]`/user/{id}.json`: the official API's profiles, `null` for an unknown
//!   user.
//!
//! A test changes the content between runs with [`FakeHn::edit`], injects faults and reads the
//! requests through [`FakeHn::server`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Value, json};
use tributary::testkit::{FakeServer, Reply, Request};

use super::api::User;

/// Where the fake serves Algolia's API.
pub const ALGOLIA_PREFIX: &str = "/algolia/api/v1";
/// Where the fake serves the official (Firebase) API.
pub const FIREBASE_PREFIX: &str = "/firebase/v0";
/// An author without a profile: the official API answers `null`.
pub const GHOST: &str = "ghost";
/// Algolia serves at most this many hits of one query.
const PAGINATION_LIMIT: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Story,
    Comment,
}

/// An HN item as the fake stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: u64,
    pub kind: Kind,
    /// `None`: the author is gone.
    pub author: Option<String>,
    /// Unix seconds.
    pub time: u64,
    pub title: Option<String>,
    pub url: Option<String>,
    pub text: Option<String>,
    pub points: i64,
    pub parent: Option<u64>,
    /// A comment's story.
    pub story: Option<u64>,
}

/// What a fake HN holds.
#[derive(Debug, Clone, Default)]
pub struct HnData {
    pub items: Vec<Item>,
    /// Profiles by username.
    pub users: BTreeMap<String, User>,
    next_id: u64,
}

/// The shape of a generated HN.
#[derive(Debug, Clone, Copy)]
pub struct HnSpec {
    pub users: usize,
    pub stories: usize,
    /// Comments of a commented story (every sixth story has none).
    pub comments_per_story: usize,
}

/// The terms generated stories and comments mention.
pub const KEYWORDS: [&str; 2] = ["rust", "postgres"];
pub const URL: &str = "github.com/acme/widget";

/// 2025-01-01T00:00:00Z: generated items are at least this old.
pub fn start() -> u64 {
    u64::try_from(
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
            .timestamp(),
    )
    .unwrap_or_default()
}

impl HnData {
    /// A deterministic HN: the same spec always yields the same ids, authors and times.
    ///
    /// Story `s` is posted an hour after story `s - 1` and mentions, by `s % 5`: the URL (as its
    /// link), `rust`, `postgres`, both keywords, or nothing. Its comments reply to the story or to
    /// the comment before; two comments in a row share their second; some mention `rust`, the
    /// URL or `postgres`. The second story's first comment is by [`GHOST`] (no profile), the third story's
    /// first comment has no author (deleted; its replies stay).
    pub fn generate(spec: HnSpec) -> Self {
        let mut data = Self {
            next_id: 1,
            ..Self::default()
        };
        for n in 0..spec.users {
            let name = username(n);
            let offset = 86_400 * 30 * (n as u64 + 1);
            data.users.insert(
                name.clone(),
                User {
                    id: name,
                    created: i64::try_from(start().saturating_sub(offset)).unwrap_or_default(),
                    karma: Some(10 + 7 * n as i64),
                    about: Some(format!("I am user {n}")),
                },
            );
        }
        let author = |n: usize| username(n % spec.users.max(1));
        for s in 0..spec.stories {
            let at = start() + 3600 * s as u64;
            let (title, url) = match s % 5 {
                0 => (
                    format!("Show HN: Widget {s}"),
                    format!("https://{URL}/releases/{s}"),
                ),
                1 => (
                    format!("Why rust, part {s}"),
                    format!("https://example.com/{s}"),
                ),
                2 => (
                    format!("Postgres tips, part {s}"),
                    format!("https://example.org/{s}"),
                ),
                3 => (
                    format!("Rust and Postgres, part {s}"),
                    format!("https://example.net/{s}"),
                ),
                _ => (
                    format!("Unrelated story {s}"),
                    format!("https://example.edu/{s}"),
                ),
            };
            let story = data.add_story(&author(s), &title, Some(&url), at);
            if s % 6 == 5 {
                continue;
            }
            let mut previous = story;
            for c in 0..spec.comments_per_story {
                let parent = if c % 3 == 0 { story } else { previous };
                let text = match c % 4 {
                    1 => format!("comment {c}: I tried rust for this"),
                    2 if s % 2 == 0 => format!("comment {c}: see https://{URL}/issues/{s}"),
                    3 if s % 3 == 0 => format!("comment {c}: postgres does this"),
                    _ => format!("comment {c}: interesting"),
                };
                let by = match (s, c) {
                    (1, 0) => GHOST.to_owned(),
                    _ => author(s + c + 1),
                };
                let when = at + 60 * (c as u64 / 2 + 1);
                previous = data.add_comment(parent, &by, &text, when);
                if (s, c) == (2, 0) {
                    data.delete_author(previous);
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

    /// Posts a story at `at` (unix seconds). Returns its id.
    pub fn add_story(&mut self, author: &str, title: &str, url: Option<&str>, at: u64) -> u64 {
        let id = self.take_id();
        self.items.push(Item {
            id,
            kind: Kind::Story,
            author: Some(author.to_owned()),
            time: at,
            title: Some(title.to_owned()),
            url: url.map(str::to_owned),
            text: None,
            points: 1 + (id % 50) as i64,
            parent: None,
            story: None,
        });
        id
    }

    /// Adds a comment answering `parent` (a story or a comment). Returns its id.
    pub fn add_comment(&mut self, parent: u64, author: &str, text: &str, at: u64) -> u64 {
        let story = self
            .item(parent)
            .map(|p| p.story.unwrap_or(p.id))
            .unwrap_or(parent);
        let id = self.take_id();
        self.items.push(Item {
            id,
            kind: Kind::Comment,
            author: Some(author.to_owned()),
            time: at,
            title: None,
            url: None,
            text: Some(format!("<p>{text}</p>")),
            points: 1,
            parent: Some(parent),
            story: Some(story),
        });
        id
    }

    /// The item's author is gone (HN keeps the item without `by`).
    pub fn delete_author(&mut self, id: u64) {
        if let Some(item) = self.items.iter_mut().find(|i| i.id == id) {
            item.author = None;
        }
    }

    pub fn item(&self, id: u64) -> Option<&Item> {
        self.items.iter().find(|i| i.id == id)
    }

    /// The comments of a story, all depths.
    pub fn comments_of(&self, story: u64) -> Vec<&Item> {
        self.items
            .iter()
            .filter(|i| i.kind == Kind::Comment && i.story == Some(story))
            .collect()
    }

    /// The stories and comments a search for `term` finds (every word of it occurs).
    pub fn matches(&self, term: &str) -> Vec<&Item> {
        self.items.iter().filter(|i| mentions(i, term)).collect()
    }

    /// The items searches for `terms` store: every match with an author, and every comment
    /// with an author of a matching story.
    fn expected_items(&self, terms: &[&str]) -> Vec<&Item> {
        let mut found = BTreeMap::new();
        for term in terms {
            for item in self.matches(term) {
                found.insert(item.id, item);
                if item.kind == Kind::Story {
                    found.extend(self.comments_of(item.id).into_iter().map(|c| (c.id, c)));
                }
            }
        }
        found.into_values().filter(|i| i.author.is_some()).collect()
    }

    /// Source ids (`item:{id}`) of the activities an onboarding of `terms` produces.
    pub fn expected_activities(&self, terms: &[&str]) -> BTreeSet<String> {
        self.expected_items(terms)
            .into_iter()
            .map(|i| format!("item:{}", i.id))
            .collect()
    }

    /// Source ids (usernames) of the members an onboarding of `terms` produces.
    /// Requests an onboarding of `terms` needs at `per_page` hits a page: (search pages, thread
    /// pages by story, profiles).
    pub fn expected_requests(
        &self,
        terms: &[&str],
        per_page: usize,
    ) -> (usize, BTreeMap<u64, usize>, usize) {
        let mut searches = 0;
        let mut threads = BTreeMap::new();
        for term in terms {
            let matches = self.matches(term);
            searches += keyset_pages(matches.iter().map(|i| i.time).collect(), per_page);
            for story in matches.iter().filter(|i| i.kind == Kind::Story) {
                let comments = self.comments_of(story.id);
                if !comments.is_empty() {
                    let times = comments.iter().map(|c| c.time).collect();
                    threads.insert(story.id, keyset_pages(times, per_page));
                }
            }
        }
        (searches, threads, self.expected_members(terms).len())
    }

    pub fn expected_members(&self, terms: &[&str]) -> BTreeSet<String> {
        self.expected_items(terms)
            .into_iter()
            .filter_map(|i| i.author.clone())
            .collect()
    }
}

/// User `n` of a generated HN.
pub fn username(n: usize) -> String {
    format!("user{n}")
}

/// The lowercase words of a query: what must all occur.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn mentions(item: &Item, query: &str) -> bool {
    let haystack = [&item.title, &item.url, &item.text, &item.author]
        .iter()
        .filter_map(|f| f.as_deref())
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    words(query).iter().all(|w| haystack.contains(w.as_str()))
}

/// A running fake HN.
pub struct FakeHn {
    server: FakeServer,
    data: Arc<Mutex<HnData>>,
}

impl FakeHn {
    /// Serves `data` on a free port.
    pub async fn start(data: HnData) -> std::io::Result<Self> {
        let server = FakeServer::start().await?;
        let data = Arc::new(Mutex::new(data));
        let shared = data.clone();
        server.handle(&format!("{ALGOLIA_PREFIX}/"), move |request| {
            let data = shared.lock().unwrap_or_else(|p| p.into_inner());
            serve_algolia(&data, request)
        });
        let shared = data.clone();
        server.handle(&format!("{FIREBASE_PREFIX}/"), move |request| {
            let data = shared.lock().unwrap_or_else(|p| p.into_inner());
            serve_firebase(&data, request)
        });
        Ok(Self { server, data })
    }

    /// The Algolia root to configure: `http://127.0.0.1:PORT/algolia/api/v1`.
    pub fn algolia_base_url(&self) -> String {
        self.server.url(ALGOLIA_PREFIX)
    }

    /// The official API root to configure: `http://127.0.0.1:PORT/firebase/v0`.
    pub fn firebase_base_url(&self) -> String {
        self.server.url(FIREBASE_PREFIX)
    }

    /// The underlying server: inject faults, read the requests.
    pub fn server(&self) -> &FakeServer {
        &self.server
    }

    fn data(&self) -> MutexGuard<'_, HnData> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads or changes the content (new stories and comments between runs).
    pub fn edit<T>(&self, f: impl FnOnce(&mut HnData) -> T) -> T {
        f(&mut self.data())
    }
}

fn bad_request(message: String) -> Reply {
    Reply::json(json!({"message": message, "status": 400})).with_status(400)
}

fn serve_firebase(data: &HnData, request: &Request) -> Reply {
    let path = request.path.trim_start_matches(FIREBASE_PREFIX);
    let Some(name) = path
        .strip_prefix("/user/")
        .and_then(|p| p.strip_suffix(".json"))
    else {
        return Reply::error(404, "not found");
    };
    let Some(user) = data.users.get(name) else {
        return Reply::json(Value::Null);
    };
    let submitted: Vec<u64> = data
        .items
        .iter()
        .rev()
        .filter(|i| i.author.as_deref() == Some(name))
        .map(|i| i.id)
        .collect();
    Reply::json(json!({
        "id": user.id,
        "created": user.created,
        "karma": user.karma,
        "about": user.about,
        "submitted": submitted,
    }))
}

/// `story,(author_a,author_b)` → `[["story"], ["author_a", "author_b"]]`.
fn parse_tags(tags: &str) -> Result<Vec<Vec<String>>, String> {
    let mut groups = Vec::new();
    let mut rest = tags.trim();
    while !rest.is_empty() {
        let (group, tail) = if let Some(open) = rest.strip_prefix('(') {
            let (inside, tail) = open
                .split_once(')')
                .ok_or_else(|| format!("invalid tags: unbalanced `(` in `{tags}`"))?;
            let group = inside.split(',').map(|t| t.trim().to_owned()).collect();
            (group, tail)
        } else {
            let (tag, tail) = rest.split_once(',').unwrap_or((rest, ""));
            (vec![tag.trim().to_owned()], tail)
        };
        groups.push(group);
        rest = tail.trim_start_matches(',').trim();
    }
    Ok(groups)
}

type NumericFilter = (String, &'static str, i64);

/// `created_at_i>5,points>=3` → the filters, each `(attribute, operator, value)`.
fn parse_numeric_filters(filters: &str) -> Result<Vec<NumericFilter>, String> {
    const OPERATORS: [&str; 5] = ["<=", ">=", "<", ">", "="];
    filters
        .split(',')
        .filter(|f| !f.trim().is_empty())
        .map(|filter| {
            OPERATORS
                .iter()
                .find_map(|op| {
                    let (attribute, value) = filter.split_once(op)?;
                    let value = value.trim().parse().ok()?;
                    Some((attribute.trim().to_owned(), *op, value))
                })
                .ok_or_else(|| format!("invalid numericFilters: `{filter}`"))
        })
        .collect()
}

fn tags_of(item: &Item) -> Vec<String> {
    let mut tags = vec![match item.kind {
        Kind::Story => "story".to_owned(),
        Kind::Comment => "comment".to_owned(),
    }];
    if let Some(author) = &item.author {
        tags.push(format!("author_{author}"));
    }
    tags.push(format!("story_{}", item.story.unwrap_or(item.id)));
    if item
        .title
        .as_deref()
        .is_some_and(|t| t.starts_with("Show HN"))
    {
        tags.push("show_hn".to_owned());
    }
    tags
}

fn numeric(data: &HnData, item: &Item, attribute: &str) -> Option<i64> {
    match attribute {
        "created_at_i" => i64::try_from(item.time).ok(),
        "points" => Some(item.points),
        "num_comments" if item.kind == Kind::Story => {
            i64::try_from(data.comments_of(item.id).len()).ok()
        }
        _ => None,
    }
}

fn passes(value: Option<i64>, op: &str, bound: i64) -> bool {
    value.is_some_and(|v| match op {
        "<=" => v <= bound,
        ">=" => v >= bound,
        "<" => v < bound,
        ">" => v > bound,
        _ => v == bound,
    })
}

fn serve_algolia(data: &HnData, request: &Request) -> Reply {
    if request.path != format!("{ALGOLIA_PREFIX}/search_by_date") {
        return Reply::error(404, "not found");
    }
    let query = request.query("query").unwrap_or_default();
    let tags = match parse_tags(request.query("tags").unwrap_or_default()) {
        Ok(tags) => tags,
        Err(message) => return bad_request(message),
    };
    let filters = match parse_numeric_filters(request.query("numericFilters").unwrap_or_default()) {
        Ok(filters) => filters,
        Err(message) => return bad_request(message),
    };
    let per_page = request
        .query("hitsPerPage")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(20)
        .min(1000);
    let page = request
        .query("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut found: Vec<&Item> = data
        .items
        .iter()
        .filter(|item| {
            let tags_of = tags_of(item);
            mentions(item, query)
                && tags
                    .iter()
                    .all(|group| group.iter().any(|t| tags_of.contains(t)))
                && filters.iter().all(|(attribute, op, bound)| {
                    passes(numeric(data, item, attribute), op, *bound)
                })
        })
        .collect();
    found.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
    let reachable = found.len().min(PAGINATION_LIMIT);
    let nb_pages = if per_page == 0 {
        0
    } else {
        reachable.div_ceil(per_page)
    };
    let offset = page.saturating_mul(per_page).min(reachable);
    let hits: Vec<Value> = found[offset..reachable]
        .iter()
        .take(per_page)
        .map(|item| hit_json(data, item))
        .collect();
    Reply::json(json!({
        "hits": hits,
        "nbHits": found.len(),
        "page": page,
        "nbPages": nb_pages,
        "hitsPerPage": per_page,
        "exhaustiveNbHits": true,
        "query": query,
        "params": request.target().split_once('?').map(|(_, q)| q.to_owned()),
        "processingTimeMS": 1,
    }))
}

fn hit_json(data: &HnData, item: &Item) -> Value {
    let created_at = i64::try_from(item.time)
        .ok()
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
    let common = json!({
        "objectID": item.id.to_string(),
        "created_at": created_at,
        "created_at_i": item.time,
        "author": item.author,
        "_tags": tags_of(item),
    });
    let specific = match item.kind {
        Kind::Story => json!({
            "title": item.title,
            "url": item.url,
            "story_text": item.text,
            "comment_text": null,
            "points": item.points,
            "num_comments": data.comments_of(item.id).len(),
            "story_id": null,
            "parent_id": null,
        }),
        Kind::Comment => {
            let story = item.story.and_then(|s| data.item(s));
            json!({
                "title": null,
                "url": null,
                "story_text": null,
                "comment_text": item.text,
                "points": null,
                "num_comments": null,
                "story_id": item.story,
                "story_title": story.and_then(|s| s.title.clone()),
                "story_url": story.and_then(|s| s.url.clone()),
                "parent_id": item.parent,
            })
        }
    };
    let mut hit = common;
    if let (Some(hit), Value::Object(more)) = (hit.as_object_mut(), specific) {
        hit.extend(more);
    }
    hit
}

/// Requests of a keyset-paged search over items created at `times`: a page of `per_page`
/// newest, then the next window `created_at_i<=` its oldest, while pages are full and more match.
fn keyset_pages(mut times: Vec<u64>, per_page: usize) -> usize {
    times.sort_unstable_by(|a, b| b.cmp(a));
    let mut bound: Option<u64> = None;
    let mut pages = 1;
    loop {
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
        pages += 1;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tags_and_numeric_filters_parse_as_algolia_reads_them() {
        assert_eq!(
            parse_tags("comment,story_7").unwrap(),
            vec![vec!["comment".to_owned()], vec!["story_7".to_owned()]]
        );
        assert_eq!(
            parse_tags("(story,comment),author_pg").unwrap(),
            vec![
                vec!["story".to_owned(), "comment".to_owned()],
                vec!["author_pg".to_owned()]
            ]
        );
        assert!(parse_tags("(story").is_err());
        assert_eq!(
            parse_numeric_filters("created_at_i>5,created_at_i<=9").unwrap(),
            vec![
                ("created_at_i".to_owned(), ">", 5),
                ("created_at_i".to_owned(), "<=", 9)
            ]
        );
        assert!(parse_numeric_filters("created_at_i~5").is_err());
    }

    #[test]
    fn generated_data_is_deterministic_and_mentions_the_terms() {
        let spec = HnSpec {
            users: 4,
            stories: 10,
            comments_per_story: 4,
        };
        let (a, b) = (HnData::generate(spec), HnData::generate(spec));
        assert_eq!(a.items, b.items);
        assert!(a.matches("rust").len() > 5);
        assert!(a.matches(URL).iter().any(|i| i.kind == Kind::Comment));
        assert!(a.items.iter().any(|i| i.author.is_none()));
        assert!(a.items.iter().any(|i| i.author.as_deref() == Some(GHOST)));
    }
}
