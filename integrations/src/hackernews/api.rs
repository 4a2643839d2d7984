//! The wire format of the two Hacker News APIs, as far as the integration reads them:
//! Algolia's search answers (`/search_by_date`: `hits`, `nbHits`, `nbPages`, `page`,
//! `hitsPerPage`) and the official API's users (`/user/{id}.json`). Unknown fields are ignored;
//! a field that is missing or of the wrong type fails the page with its path
//! (`hits[3].created_at_i`).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// One hit of an Algolia search: a story or a comment, with the item's data (so items are never
/// fetched one by one). Fields a story or a comment lacks are absent or `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// The HN item id (a string of digits on the wire): stories and comments share one space.
    #[serde(rename = "objectID", deserialize_with = "item_id")]
    pub object_id: u64,
    /// Unix seconds: what the searches are sorted and windowed by.
    pub created_at_i: u64,
    #[serde(default)]
    pub created_at: Option<String>,
    /// Required, `null` for an item whose author is gone: such an item yields no activity.
    #[serde(deserialize_with = "nullable")]
    pub author: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    /// The link of a story (none for Ask HN).
    #[serde(default)]
    pub url: Option<String>,
    /// The text of an Ask HN or a Show HN (HTML).
    #[serde(default)]
    pub story_text: Option<String>,
    /// The text of a comment (HTML).
    #[serde(default)]
    pub comment_text: Option<String>,
    #[serde(default)]
    pub points: Option<i64>,
    /// A story's comment count.
    #[serde(default)]
    pub num_comments: Option<u64>,
    /// A comment's story.
    #[serde(default)]
    pub story_id: Option<u64>,
    #[serde(default)]
    pub story_title: Option<String>,
    #[serde(default)]
    pub story_url: Option<String>,
    /// The item a comment answers: its story or another comment.
    #[serde(default)]
    pub parent_id: Option<u64>,
    /// `["comment", "author_pg", "story_1"]`, `["story", "author_pg", "story_8863", "ask_hn"]`.
    #[serde(default, rename = "_tags")]
    pub tags: Vec<String>,
}

impl Hit {
    /// Whether the hit is a comment (by its tags; else by having a parent).
    pub fn is_comment(&self) -> bool {
        if self.tags.iter().any(|t| t == "comment") {
            return true;
        }
        !self.tags.iter().any(|t| t == "story") && self.parent_id.is_some()
    }
}

/// An answer of `/search` or `/search_by_date`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    pub hits: Vec<Hit>,
    /// Every match of the query and its filters. Unlike `nbPages`, which Algolia caps at its
    /// 1,000-hit pagination limit (it reads 1 at 1,000 hits a page), it tells whether there is
    /// more.
    #[serde(default, rename = "nbHits")]
    pub nb_hits: Option<u64>,
    #[serde(default, rename = "nbPages")]
    pub nb_pages: Option<u64>,
    #[serde(default)]
    pub page: Option<u64>,
    #[serde(default, rename = "hitsPerPage")]
    pub hits_per_page: Option<u64>,
}

/// `GET /user/{id}.json` (the answer is `null` for an unknown user).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// The username, case-sensitive: the member's stable id.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    #[serde(default)]
    pub karma: Option<i64>,
    /// Self-description (HTML).
    #[serde(default)]
    pub about: Option<String>,
}

/// A value that must be present but may be `null`.
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)
}

/// `"8863"` (or `8863`) → 8863.
fn item_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    struct ItemId;
    impl Visitor<'_> for ItemId {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an HN item id (digits)")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            v.parse()
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }
    deserializer.deserialize_any(ItemId)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;
    use tributary::http::decode;

    fn story() -> serde_json::Value {
        json!({
            "objectID": "8863", "created_at": "2007-04-04T19:16:40Z", "created_at_i": 1_175_714_200,
            "author": "dhouston", "title": "My YC app: Dropbox", "url": "http://www.getdropbox.com/u/2/screencast.html",
            "points": 104, "num_comments": 71, "story_text": null, "comment_text": null,
            "story_id": null, "_tags": ["story", "author_dhouston", "story_8863"],
            "_highlightResult": {"title": {"value": "My YC app: Dropbox"}}
        })
    }

    #[test]
    fn stories_and_comments_decode_with_their_optional_fields() {
        let body = json!({
            "hits": [story(), {
                "objectID": "9224", "created_at_i": 1_175_816_820, "author": "BrandonM",
                "comment_text": "<p>a comment</p>", "points": null, "story_id": 8863,
                "story_title": "My YC app: Dropbox", "parent_id": 8863,
                "_tags": ["comment", "author_BrandonM", "story_8863"]
            }],
            "nbHits": 2, "page": 0, "nbPages": 1, "hitsPerPage": 1000
        });
        let page: SearchResponse =
            decode("GET /search_by_date", body.to_string().as_bytes()).unwrap();
        let [story, comment] = &page.hits[..] else {
            panic!("two hits")
        };
        assert_eq!((story.object_id, story.is_comment()), (8863, false));
        assert_eq!(story.num_comments, Some(71));
        assert_eq!((comment.object_id, comment.is_comment()), (9224, true));
        assert_eq!((comment.parent_id, comment.points), (Some(8863), None));
        assert_eq!(page.nb_hits, Some(2));
    }

    #[test]
    fn a_missing_or_wrong_field_is_named_and_a_null_author_is_kept() {
        let error = |hit: serde_json::Value| {
            let body = json!({"hits": [story(), hit], "nbHits": 2}).to_string();
            decode::<SearchResponse>("GET /search_by_date", body.as_bytes())
                .unwrap_err()
                .to_string()
        };
        let mut no_author = story();
        no_author.as_object_mut().unwrap().remove("author");
        let message = error(no_author);
        assert!(
            message.starts_with(
                "GET /search_by_date: malformed body at `hits[1]`: missing field `author`"
            ),
            "{message}"
        );
        let mut bad_id = story();
        bad_id["objectID"] = json!("abc");
        let message = error(bad_id);
        assert!(
            message.starts_with(
                "GET /search_by_date: malformed body at `hits[1].objectID`: invalid value: \
                 string \"abc\", expected an HN item id (digits)"
            ),
            "{message}"
        );
        let mut deleted = story();
        deleted["author"] = json!(null);
        let body = json!({"hits": [deleted]}).to_string();
        let page: SearchResponse = decode("GET /search_by_date", body.as_bytes()).unwrap();
        assert_eq!(page.hits[0].author, None);
        assert_eq!(page.nb_hits, None);
    }

    #[test]
    fn an_unknown_user_is_null() {
        let user: Option<User> = decode("GET /user/nobody.json", b"null").unwrap();
        assert_eq!(user, None);
        let user: Option<User> = decode(
            "GET /user/pg.json",
            br#"{"id": "pg", "created": 1160418092, "karma": 155111, "about": "Bug fixer.", "submitted": [1, 2]}"#,
        )
        .unwrap();
        assert_eq!(user.unwrap().karma, Some(155_111));
    }
}
