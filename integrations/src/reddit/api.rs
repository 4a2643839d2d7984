//! Reddit's wire format (no published API description is in `/work/shared/specs`: these follow
//! Reddit's public API documentation, https://www.reddit.com/dev/api, and the shapes its
//! answers have): `Listing`s of `Thing`s (`{"kind": "t3", "data": {…}}`), a comment's `replies`
//! either a listing or `""`, collapsed branches as `more` things, deleted authors as
//! `[deleted]` with no `author_fullname`, `created_utc` as float epoch seconds.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// `{"kind": "Listing", "data": {"after": …, "children": […]}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Listing<T> {
    pub data: ListingData<T>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct ListingData<T> {
    /// The fullname (`t3_…`) to pass as `after` for the next page; `null` at the end.
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub children: Vec<T>,
}

/// A post (`t3`) in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostThing {
    pub kind: String,
    pub data: Post,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Post {
    /// The base-36 id (`1abcde`); the fullname is `t3_{id}`.
    pub id: String,
    pub subreddit: String,
    pub title: String,
    #[serde(default)]
    pub selftext: Option<String>,
    /// `[deleted]` when the account is gone.
    pub author: String,
    /// `t2_{id}`: the author's account; missing when it was deleted.
    #[serde(default)]
    pub author_fullname: Option<String>,
    #[serde(deserialize_with = "epoch")]
    pub created_utc: DateTime<Utc>,
    pub permalink: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub num_comments: u64,
    #[serde(default)]
    pub score: i64,
    #[serde(default)]
    pub link_flair_text: Option<String>,
    #[serde(default)]
    pub is_self: bool,
}

/// A thing in a comment tree or a `morechildren` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data")]
pub enum CommentThing {
    #[serde(rename = "t1")]
    Comment(Box<Comment>),
    /// A collapsed branch: the ids of its comments (`children`), or none when it is a "continue
    /// this thread" link (read with `?comment={parent}`).
    #[serde(rename = "more")]
    More(More),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    pub id: String,
    /// `t3_…` (a top-level comment) or `t1_…` (a reply).
    pub parent_id: String,
    /// The post: `t3_…`.
    pub link_id: String,
    pub author: String,
    #[serde(default)]
    pub author_fullname: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(deserialize_with = "epoch")]
    pub created_utc: DateTime<Utc>,
    #[serde(default)]
    pub permalink: Option<String>,
    #[serde(default)]
    pub subreddit: Option<String>,
    #[serde(default)]
    pub score: i64,
    #[serde(default)]
    pub depth: Option<u32>,
    /// Nested replies: a listing, or `""` when there are none.
    #[serde(default, deserialize_with = "replies")]
    pub replies: Vec<CommentThing>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct More {
    #[serde(default)]
    pub count: u64,
    pub parent_id: String,
    #[serde(default)]
    pub children: Vec<String>,
}

/// `GET /comments/{id}`: the post's listing, then the comments' listing.
pub type CommentPage = (Listing<PostThing>, Listing<CommentThing>);

/// `GET /api/morechildren?api_type=json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoreChildren {
    pub json: MoreChildrenJson,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoreChildrenJson {
    #[serde(default)]
    pub errors: Vec<serde_json::Value>,
    #[serde(default)]
    pub data: Option<Things>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Things {
    #[serde(default)]
    pub things: Vec<CommentThing>,
}

fn epoch<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let seconds = f64::deserialize(d)?;
    DateTime::from_timestamp_millis((seconds * 1000.0) as i64)
        .ok_or_else(|| serde::de::Error::custom(format!("`{seconds}` is not a time")))
}

fn replies<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<CommentThing>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        Some(value @ serde_json::Value::Object(_)) => {
            let listing: Listing<CommentThing> =
                serde_json::from_value(value).map_err(serde::de::Error::custom)?;
            Ok(listing.data.children)
        }
        Some(serde_json::Value::String(_)) | None => Ok(Vec::new()),
        Some(other) => Err(serde::de::Error::custom(format!(
            "`replies` is a listing or \"\", not `{other}`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A `/comments/{id}` answer as Reddit's documentation and answers show it: a post, a
    /// comment with a nested reply, a reply-less comment (`"replies": ""`), a deleted author, a
    /// collapsed branch and a "continue this thread".
    const COMMENTS: &str = r#"[
      {"kind": "Listing", "data": {"after": null, "dist": 1, "modhash": "", "geo_filter": "", "before": null,
        "children": [{"kind": "t3", "data": {"id": "1abcde", "name": "t3_1abcde", "subreddit": "rust",
          "title": "Hello", "selftext": "", "author": "ferris", "author_fullname": "t2_7x9q",
          "created_utc": 1700000000.0, "permalink": "/r/rust/comments/1abcde/hello/",
          "url": "https://www.reddit.com/r/rust/comments/1abcde/hello/", "num_comments": 4,
          "score": 12, "link_flair_text": null, "is_self": true}}]}},
      {"kind": "Listing", "data": {"after": null, "dist": null, "modhash": "", "geo_filter": "", "before": null,
        "children": [
          {"kind": "t1", "data": {"id": "k1", "name": "t1_k1", "parent_id": "t3_1abcde", "link_id": "t3_1abcde",
            "author": "crab", "author_fullname": "t2_aa", "body": "first", "created_utc": 1700000100,
            "permalink": "/r/rust/comments/1abcde/hello/k1/", "subreddit": "rust", "score": 3, "depth": 0,
            "replies": {"kind": "Listing", "data": {"after": null, "before": null, "children": [
              {"kind": "t1", "data": {"id": "k2", "name": "t1_k2", "parent_id": "t1_k1", "link_id": "t3_1abcde",
                "author": "[deleted]", "body": "[deleted]", "created_utc": 1700000200.5, "depth": 1,
                "replies": ""}},
              {"kind": "more", "data": {"count": 0, "name": "t1__", "id": "_", "parent_id": "t1_k2",
                "depth": 10, "children": []}}]}}}},
          {"kind": "more", "data": {"count": 2, "name": "t1_k3", "id": "k3", "parent_id": "t3_1abcde",
            "depth": 0, "children": ["k3", "k4"]}}
        ]}}
    ]"#;

    #[test]
    fn a_comment_tree_parses_with_its_odd_shapes() {
        let (post, comments): CommentPage = serde_json::from_str(COMMENTS).unwrap();
        assert_eq!(
            post.data.children[0].data.author_fullname.as_deref(),
            Some("t2_7x9q")
        );
        let [CommentThing::Comment(first), CommentThing::More(more)] =
            comments.data.children.as_slice()
        else {
            panic!("{comments:?}")
        };
        assert_eq!(first.replies.len(), 2);
        let CommentThing::Comment(deleted) = &first.replies[0] else {
            panic!()
        };
        assert_eq!(
            (deleted.author.as_str(), deleted.author_fullname.as_deref()),
            ("[deleted]", None)
        );
        assert!(deleted.replies.is_empty(), "`\"\"` is no replies");
        assert_eq!(more.children, ["k3", "k4"]);
    }

    #[test]
    fn a_morechildren_answer_parses() {
        let answer: MoreChildren = serde_json::from_str(
            r#"{"json": {"errors": [], "data": {"things": [
                {"kind": "t1", "data": {"id": "k3", "parent_id": "t3_1abcde", "link_id": "t3_1abcde",
                 "author": "crab", "author_fullname": "t2_aa", "body": "late", "created_utc": 1700000300,
                 "replies": ""}}]}}}"#,
        )
        .unwrap();
        assert_eq!(answer.json.data.unwrap().things.len(), 1);
    }
}
